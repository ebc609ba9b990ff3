//! Allocation queues on a real single-node Slurm (`.ci/slurm.sh` starts
//! it; `.ci/run` calls it first): an orchestrator with no configured
//! workers gets its workers from the jobs it submits, every task of a drop
//! completes once, and the jobs end by themselves after the idle timeout;
//! a job cancelled mid-task loses nothing; the `command` kind drives
//! Slurm through the user's own wrappers, and the dashboard (a real
//! headless Chromium) shows such a queue with its job, its state and its
//! workers, and a queue whose submit fails with its last error. Prints the
//! figures of a run.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{http_with, missing_tool, small_tasks, wait_until, write_batch, Proc, FAST};

const TOKEN: &str = "alloc-test-secret-0123456789";
const LONG: Duration = Duration::from_secs(240);

/// Slurm answering on this machine: started by `.ci/slurm.sh` if needed.
/// `false` (after saying so) when it cannot be had outside CI.
fn slurm_ready(test: &str) -> bool {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/slurm.sh");
    if Command::new("sbatch").arg("--version").output().is_err() {
        missing_tool(test, "Slurm (apt-get install slurm-wlm munge; then .ci/slurm.sh)");
        return false;
    }
    let out = Command::new("bash").arg(&script).output().expect("bash runs");
    if !out.status.success() {
        missing_tool(
            test,
            &format!(
                "a running Slurm (.ci/slurm.sh failed: {})",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        );
        return false;
    }
    true
}

fn call(orch: &Proc, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let auth = format!("Bearer {TOKEN}");
    let bytes = body.map(|b| b.to_string().into_bytes());
    let r = http_with(
        method,
        &orch.addr,
        path,
        bytes.as_deref(),
        &[("Authorization", &auth)],
    );
    let v = serde_json::from_str(&r.text()).unwrap_or(Value::Null);
    (r.status, v)
}

fn orchestrator(dir: &Path) -> Proc {
    std::fs::write(dir.join("config_workers.json"), r#"{"workers": []}"#).unwrap();
    let mut env = FAST.to_vec();
    env.push(("ORQUESTA_TOKEN", TOKEN));
    Proc::start(dir, &["orchestrator", "--port", "0"], &env)
}

fn count(orch: &Proc, status: &str) -> u64 {
    call(orch, "GET", "/stats", None).1["tasks"]["by_status"][status]
        .as_u64()
        .unwrap_or(0)
}

/// Slurm's jobs of a queue (by their job name).
fn squeue(name: &str) -> Vec<String> {
    let out = Command::new("squeue")
        .args(["--noheader", "--format=%i", &format!("--name=orquesta-{name}")])
        .output()
        .expect("squeue runs");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Task ids of every result record on disk.
fn recorded(dir: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    for e in std::fs::read_dir(dir.join("results")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("task_results_") {
            let v: Value = serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
            ids.extend(
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["task_id"].as_str().unwrap().to_string()),
            );
        }
    }
    ids.sort();
    ids
}

fn queue_view(orch: &Proc, name: &str) -> Value {
    let (status, list) = call(orch, "GET", "/allocations", None);
    assert_eq!(status, 200, "{list}");
    list["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Fails on anything under `dir` that holds the token (scripts, outputs).
fn assert_no_token_in_files(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            assert_no_token_in_files(&p);
        } else if !p.to_string_lossy().contains(".db") {
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default()).into_owned();
            assert!(!text.contains(TOKEN), "the token is written in {}", p.display());
        }
    }
}

/// The drop is more than one job can absorb (200 tasks of 0.2 s on a
/// job's 2 × 2 slots: 10 s of work, while a second job starts in about
/// two), so the queue reaches its `max_jobs` of 2, and never more.
#[test]
fn a_slurm_queue_brings_workers_for_a_drop_and_its_jobs_end_when_idle() {
    if !slurm_ready("a_slurm_queue_brings_workers_for_a_drop_and_its_jobs_end_when_idle") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let orch = orchestrator(home.path());
    let name = format!("drop{}", std::process::id());
    let spec = json!({"name": name, "kind": "slurm", "max_jobs": 2, "workers_per_job": 2, "capacity": 2,
                      "time_limit": "10m", "idle_timeout": "3s", "extra_args": ["--cpus-per-task=1"]});
    let (status, added) = call(&orch, "POST", "/allocations", Some(&spec));
    assert_eq!(status, 201, "{added}");
    let (status, again) = call(&orch, "POST", "/allocations", Some(&spec));
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["code"], "allocation_exists");
    // nothing queued: nothing submitted
    assert!(squeue(&name).is_empty());

    let dropped = Instant::now();
    // sleeps: no CPU taken from the two cores the jobs share with the test
    let tasks: Vec<Value> = (0..200)
        .map(|i| json!({"task_id": format!("a{i}"), "algorithm": "__sleep", "parameters": {"seconds": 0.2}}))
        .collect();
    let staged = write_batch(home.path(), "drop.json.part", tasks);
    std::fs::rename(staged, home.path().join("task_queues/drop.json")).unwrap();
    let (mut submitted, mut joined, mut first_done) = (None, None, None);
    let mut jobs_seen = std::collections::BTreeSet::new();
    let mut jobs_joined = std::collections::BTreeSet::new();
    let mut most_at_once = 0;
    wait_until(LONG, "every task of the drop completed", || {
        let q = queue_view(&orch, &name);
        let mut alive = 0;
        for j in q["jobs"].as_array().into_iter().flatten() {
            let id = j["id"].as_str().unwrap_or("").to_string();
            jobs_seen.insert(id.clone());
            submitted.get_or_insert_with(|| dropped.elapsed());
            if j["workers_joined"].as_u64().unwrap_or(0) > 0 {
                joined.get_or_insert_with(|| dropped.elapsed());
                jobs_joined.insert(id);
            }
            if j["state"] != "failed" {
                alive += 1;
            }
        }
        most_at_once = most_at_once.max(alive).max(squeue(&name).len());
        assert!(most_at_once <= 2, "more jobs than --max-jobs at once: {q}");
        let done = count(&orch, "completed");
        if done > 0 {
            first_done.get_or_insert_with(|| dropped.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
        done == 200
    });
    let q = queue_view(&orch, &name);
    assert_eq!(q["jobs_submitted"], 2, "one job could not absorb the drop: {q}");
    assert_eq!(q["jobs_failed"], 0, "{q}");
    assert_eq!(most_at_once, 2, "{q}");
    assert_eq!(
        jobs_joined.len(),
        2,
        "both jobs' workers joined: {jobs_joined:?} of {jobs_seen:?}"
    );
    let queue_empty = Instant::now();
    let all_done = dropped.elapsed();
    // every task once, on the jobs' workers
    wait_until(Duration::from_secs(30), "200 results on disk", || {
        recorded(home.path()).len() >= 200
    });
    let ids = recorded(home.path());
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!((ids.len(), unique.len()), (200, 200), "each task recorded once");
    let (_, one) = call(&orch, "GET", "/tasks/a7", None);
    assert!(
        one["worker_id"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{name}-j")),
        "{one}"
    );
    // idle workers drain, the jobs end, and Slurm forgets them
    wait_until(
        Duration::from_secs(90),
        "squeue empty after the idle timeout",
        || {
            std::thread::sleep(Duration::from_millis(200));
            squeue(&name).is_empty()
        },
    );
    let drained = queue_empty.elapsed();
    wait_until(Duration::from_secs(30), "the queue shows no live job", || {
        std::thread::sleep(Duration::from_millis(200));
        queue_view(&orch, &name)["jobs"]
            .as_array()
            .is_some_and(|j| j.is_empty())
    });
    assert_no_token_in_files(home.path());
    eprintln!(
        "figures (slurm, 200 tasks, max 2 jobs × 2 workers × 2 slots): first job submitted {:.2}s, \
         first worker joined {:.2}s, first task done {:.2}s, all done {:.2}s after the drop; {} jobs used; \
         queue empty → squeue empty {:.2}s",
        submitted.unwrap().as_secs_f64(),
        joined.unwrap().as_secs_f64(),
        first_done.unwrap().as_secs_f64(),
        all_done.as_secs_f64(),
        jobs_seen.len(),
        drained.as_secs_f64()
    );
    let (status, removed) = call(&orch, "DELETE", &format!("/allocations/{name}"), None);
    assert_eq!(status, 200, "{removed}");
    let (status, _) = call(&orch, "DELETE", &format!("/allocations/{name}"), None);
    assert_eq!(status, 404);
}

#[test]
fn a_job_cancelled_mid_task_gives_its_tasks_back_without_loss_or_double_counting() {
    if !slurm_ready("a_job_cancelled_mid_task_gives_its_tasks_back_without_loss_or_double_counting") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let orch = orchestrator(home.path());
    let name = format!("cut{}", std::process::id());
    let spec = json!({"name": name, "kind": "slurm", "max_jobs": 1, "workers_per_job": 1, "capacity": 2,
                      "time_limit": "10m", "idle_timeout": "2s"});
    assert_eq!(call(&orch, "POST", "/allocations", Some(&spec)).0, 201);
    let tasks: Vec<Value> = (0..4)
        .map(|i| json!({"task_id": format!("s{i}"), "algorithm": "__sleep", "parameters": {"seconds": 8.0}}))
        .collect();
    let (status, body) = call(&orch, "POST", "/tasks", Some(&json!({"tasks": tasks})));
    assert_eq!(status, 201, "{body}");
    // a job runs two of them: cancel it under their feet (Slurm's SIGTERM:
    // the worker drains, what it had not started goes back to the queue)
    let (mut job, mut cancelled_worker) = (String::new(), String::new());
    wait_until(LONG, "a task running on a job's worker", || {
        std::thread::sleep(Duration::from_millis(50));
        let q = queue_view(&orch, &name);
        if let Some(j) = q["jobs"].as_array().and_then(|j| j.first()) {
            job = j["id"].as_str().unwrap_or("").to_string();
            cancelled_worker = j["workers"][0].as_str().unwrap_or("").to_string();
        }
        !cancelled_worker.is_empty() && count(&orch, "running") > 0
    });
    let out = Command::new("scancel").arg(&job).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // a new job takes over; every task completes once
    wait_until(LONG, "all four tasks completed", || {
        std::thread::sleep(Duration::from_millis(100));
        count(&orch, "completed") == 4
    });
    let (_, stats) = call(&orch, "GET", "/stats", None);
    assert_eq!(stats["tasks"]["by_status"]["completed"], 4, "{stats}");
    wait_until(Duration::from_secs(30), "four results on disk", || {
        recorded(home.path()).len() >= 4
    });
    assert_eq!(recorded(home.path()), ["s0", "s1", "s2", "s3"]);
    let q = queue_view(&orch, &name);
    assert!(q["jobs_submitted"].as_u64().unwrap() >= 2, "{q}");
    // what the cancelled job had not finished ran on a later job's worker
    let elsewhere = (0..4)
        .map(|i| {
            call(&orch, "GET", &format!("/tasks/s{i}"), None).1["worker_id"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .filter(|w| w != &cancelled_worker)
        .count();
    assert!(
        elsewhere > 0,
        "every task ran on the cancelled job's worker {cancelled_worker}"
    );
    wait_until(Duration::from_secs(90), "squeue empty", || {
        std::thread::sleep(Duration::from_millis(200));
        squeue(&name).is_empty()
    });
}

/// The status wrapper of a `command` queue over Slurm: prints pending,
/// running, ended or failed for a job id.
fn status_wrapper(dir: &Path) -> std::path::PathBuf {
    let status_script = dir.join("job-status.sh");
    std::fs::write(
        &status_script,
        "#!/bin/sh\n# prints pending, running, ended or failed for a Slurm job id\n\
         s=$(squeue --noheader --format=%T --jobs \"$1\" 2>/dev/null)\n\
         case \"$s\" in\n  PENDING|CONFIGURING) echo pending ;;\n  RUNNING|COMPLETING) echo running ;;\n  \
         '') echo ended ;;\n  *) echo failed \"$s\" ;;\nesac\n",
    )
    .unwrap();
    status_script
}

#[test]
fn the_dashboard_shows_each_allocation_queue_with_its_jobs() {
    let test = "allocation::the_dashboard_shows_each_allocation_queue_with_its_jobs";
    let Some(browser) = crate::dashboard::browser::require_browser(test) else {
        return;
    };
    if !slurm_ready(test) {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let name = format!("dash{}", std::process::id());
    let status_script = status_wrapper(home.path());
    // a submit command that fails as a misconfigured cluster's would
    let refusing = home.path().join("refusing-submit.sh");
    std::fs::write(
        &refusing,
        "#!/bin/sh\necho \"sbatch: error: invalid partition specified: nowhere\" >&2\nexit 1\n",
    )
    .unwrap();
    let orch = orchestrator(home.path());
    let spec = json!({"name": name, "kind": "command", "max_jobs": 1, "workers_per_job": 1, "capacity": 2,
                      "time_limit": "5m", "idle_timeout": "2s",
                      "submit": format!("sbatch --parsable --job-name=orquesta-{name} --time=5"),
                      "status": format!("sh {}", status_script.display()),
                      "cancel": "scancel"});
    assert_eq!(call(&orch, "POST", "/allocations", Some(&spec)).0, 201);
    let broken = json!({"name": "nowhere", "kind": "command", "max_jobs": 1,
                        "submit": format!("sh {}", refusing.display()), "status": "true", "cancel": "true"});
    assert_eq!(call(&orch, "POST", "/allocations", Some(&broken)).0, 201);

    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{}/#token={TOKEN}", orch.addr);
    let mut b = crate::dashboard::browser::Browser::open(&browser, profile.path(), &url);
    // the panel as drawn (the page's script names the same attributes)
    let panel = |b: &mut crate::dashboard::browser::Browser| {
        let v = b.eval("document.getElementById('allocations').innerHTML");
        v.as_str().unwrap_or_default().to_string()
    };
    let mut html = String::new();
    wait_until(Duration::from_secs(60), "both queues shown, no job yet", || {
        html = panel(&mut b);
        html.contains(&format!("data-alloc=\"{name}\"")) && html.contains("data-alloc=\"nowhere\"")
    });
    assert!(html.contains("no job now"), "{html}");
    assert!(!html.contains("data-job="), "{html}");

    // tasks long enough to watch the job run them
    let tasks: Vec<Value> = (0..4)
        .map(|i| json!({"task_id": format!("d{i}"), "algorithm": "__sleep", "parameters": {"seconds": 3.0}}))
        .collect();
    let (status, body) = call(&orch, "POST", "/tasks", Some(&json!({"tasks": tasks})));
    assert_eq!(status, 201, "{body}");
    let mut job = String::new();
    wait_until(LONG, "the job shown running with its worker joined", || {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(j) = queue_view(&orch, &name)["jobs"]
            .as_array()
            .and_then(|j| j.first())
        {
            job = j["id"].as_str().unwrap_or("").to_string();
        }
        html = panel(&mut b);
        !job.is_empty()
            && html.contains(&format!(
                "data-job=\"{job}\" data-job-state=\"running\" data-joined=\"1\""
            ))
    });
    assert!(
        html.contains(&format!("{name}-j")),
        "the job's worker is named: {html}"
    );
    // the queue that cannot submit shows why, with what its command printed
    wait_until(
        Duration::from_secs(60),
        "the refused submit's error shown",
        || {
            html = panel(&mut b);
            html.contains("data-alloc-error=\"nowhere\"")
        },
    );
    assert!(html.contains("invalid partition specified: nowhere"), "{html}");
    let png = b.screenshot();
    std::fs::write(home.path().join("allocations.png"), &png).unwrap();
    drop(b);
    // the job is Slurm's: cancel it with its queue, and leave Slurm empty
    let (status, removed) = call(&orch, "DELETE", &format!("/allocations/{name}"), None);
    assert_eq!(status, 200, "{removed}");
    wait_until(Duration::from_secs(90), "squeue empty", || {
        std::thread::sleep(Duration::from_millis(200));
        squeue(&name).is_empty()
    });
    assert!(!orch.log().contains(TOKEN), "the token never reaches the log");
}

#[test]
fn a_command_queue_drives_slurm_through_the_users_wrappers() {
    if !slurm_ready("a_command_queue_drives_slurm_through_the_users_wrappers") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let name = format!("cmd{}", std::process::id());
    let status_script = status_wrapper(home.path());
    let orch = orchestrator(home.path());
    let spec = json!({"name": name, "kind": "command", "max_jobs": 1, "workers_per_job": 1, "capacity": 4,
                      "time_limit": "5m", "idle_timeout": "2s",
                      "submit": format!("sbatch --parsable --job-name=orquesta-{name} --time=5"),
                      "status": format!("sh {}", status_script.display()),
                      "cancel": "scancel"});
    let (status, added) = call(&orch, "POST", "/allocations", Some(&spec));
    assert_eq!(status, 201, "{added}");
    let bad = json!({"name": "x", "kind": "command", "submit": "qsub"});
    let (status, refused) = call(&orch, "POST", "/allocations", Some(&bad));
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("status: a command queue needs"),
        "{refused}"
    );

    let (status, body) = call(
        &orch,
        "POST",
        "/tasks",
        Some(&json!({"tasks": small_tasks("c", 20)})),
    );
    assert_eq!(status, 201, "{body}");
    wait_until(LONG, "every task completed", || {
        std::thread::sleep(Duration::from_millis(100));
        count(&orch, "completed") == 20
    });
    wait_until(
        Duration::from_secs(90),
        "squeue empty after the idle timeout",
        || {
            std::thread::sleep(Duration::from_millis(200));
            squeue(&name).is_empty()
        },
    );
    wait_until(Duration::from_secs(30), "the job gone from the queue", || {
        std::thread::sleep(Duration::from_millis(200));
        queue_view(&orch, &name)["jobs"]
            .as_array()
            .is_some_and(|j| j.is_empty())
    });
    let q = queue_view(&orch, &name);
    assert_eq!(q["jobs_failed"], 0, "{q}");
    // pausing and resuming answer the queue's new state
    let (_, paused) = call(&orch, "POST", &format!("/allocations/{name}/pause"), None);
    assert_eq!(paused["state"], "paused", "{paused}");
    let (_, resumed) = call(&orch, "POST", &format!("/allocations/{name}/resume"), None);
    assert_eq!(resumed["state"], "active", "{resumed}");
}

/// The orchestrator of `dir` again, on `port` (after a SIGKILL), so that
/// the jobs' workers find it at the URL they joined; retries the bind for
/// a few seconds in case the port is not free yet.
fn restart_on(dir: &Path, port: &str, extra: &[(&str, &str)]) -> Proc {
    let mut env = FAST.to_vec();
    env.push(("ORQUESTA_TOKEN", TOKEN));
    env.extend_from_slice(extra);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = std::panic::catch_unwind(|| Proc::start(dir, &["orchestrator", "--port", port], &env));
        match attempt {
            Ok(p) => return p,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => std::panic::resume_unwind(e),
        }
    }
}

/// An operator's kill -9 of the orchestrator while a job runs tasks: the
/// restarted orchestrator finds its queue and job in the database, the
/// job's worker joins it again, every task completes once, and no second
/// job is submitted past `max_jobs` meanwhile. Killed again while the job
/// sits idle, the job ends by itself (its worker's idle timeout) while
/// nobody watches; the orchestrator started after that sees it ended, not
/// failed: no failure counted, no backoff. Nothing is left in `squeue`.
#[test]
fn jobs_outlive_a_killed_orchestrator_and_are_adopted_or_forgotten_when_it_returns() {
    let test = "jobs_outlive_a_killed_orchestrator_and_are_adopted_or_forgotten_when_it_returns";
    if !slurm_ready(test) {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let mut orch = orchestrator(home.path());
    let port = orch.addr.rsplit(':').next().unwrap().to_string();
    let name = format!("kill{}", std::process::id());
    let spec = json!({"name": name, "kind": "slurm", "max_jobs": 1, "workers_per_job": 1, "capacity": 2,
                      "time_limit": "10m", "idle_timeout": "3s"});
    assert_eq!(call(&orch, "POST", "/allocations", Some(&spec)).0, 201);
    let tasks: Vec<Value> = (0..4)
        .map(|i| json!({"task_id": format!("k{i}"), "algorithm": "__sleep", "parameters": {"seconds": 3.0}}))
        .collect();
    let (status, body) = call(&orch, "POST", "/tasks", Some(&json!({"tasks": tasks})));
    assert_eq!(status, 201, "{body}");
    let mut job = String::new();
    wait_until(LONG, "a task running on the job's worker", || {
        std::thread::sleep(Duration::from_millis(50));
        if let Some(j) = queue_view(&orch, &name)["jobs"]
            .as_array()
            .and_then(|j| j.first())
        {
            if j["workers_joined"].as_u64().unwrap_or(0) > 0 {
                job = j["id"].as_str().unwrap_or("").to_string();
            }
        }
        !job.is_empty() && count(&orch, "running") > 0
    });
    orch.signal(libc::SIGKILL);
    orch.wait_exit(Duration::from_secs(10));
    assert_eq!(squeue(&name), [job.clone()], "the job outlives its orchestrator");
    let orch = restart_on(home.path(), &port, &[]);
    let mut most = 0;
    wait_until(LONG, "all four tasks completed after the restart", || {
        std::thread::sleep(Duration::from_millis(100));
        most = most.max(squeue(&name).len());
        count(&orch, "completed") == 4
    });
    assert_eq!(most, 1, "a second job while the first one lived");
    let q = queue_view(&orch, &name);
    assert_eq!(q["jobs"][0]["id"], job.as_str(), "the job adopted: {q}");
    assert_eq!(q["jobs_failed"], 0, "{q}");
    wait_until(Duration::from_secs(30), "four results on disk", || {
        recorded(home.path()).len() >= 4
    });
    assert_eq!(recorded(home.path()), ["k0", "k1", "k2", "k3"]);

    // killed again; the job goes idle and ends with nobody watching
    let mut orch = orch;
    orch.signal(libc::SIGKILL);
    orch.wait_exit(Duration::from_secs(10));
    wait_until(Duration::from_secs(90), "the idle job ended by itself", || {
        std::thread::sleep(Duration::from_millis(200));
        squeue(&name).is_empty()
    });
    let orch = restart_on(home.path(), &port, &[]);
    wait_until(Duration::from_secs(30), "the ended job forgotten", || {
        std::thread::sleep(Duration::from_millis(200));
        queue_view(&orch, &name)["jobs"]
            .as_array()
            .is_some_and(|j| j.is_empty())
    });
    let q = queue_view(&orch, &name);
    assert_eq!(
        (&q["jobs_failed"], &q["state"], &q["last_error"]),
        (&json!(0), &json!("active"), &Value::Null),
        "a job that ended while the orchestrator was away is no failure: {q}"
    );
}

/// A submit command that hangs (an `sbatch` whose controller never
/// answers, here a `sleep`) is killed at `ALLOCATION_COMMAND_TIMEOUT`
/// with what it started, while the API answers and tasks run on the
/// workers there are; the queue shows the error and backs off, and it can
/// be removed. No Slurm needed.
#[cfg(unix)]
#[test]
fn a_hanging_submit_is_killed_at_its_timeout_and_holds_nothing_up() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("config_workers.json"), r#"{"workers": []}"#).unwrap();
    let mut env = FAST.to_vec();
    env.push(("ORQUESTA_TOKEN", TOKEN));
    env.push(("ALLOCATION_COMMAND_TIMEOUT", "2"));
    let orch = Proc::start(home.path(), &["orchestrator", "--port", "0"], &env);
    let _worker = crate::common::joined_worker_with(
        home.path(),
        "w1",
        1,
        &format!("http://{}", orch.addr),
        &[("ORQUESTA_TEST_KERNELS", "1"), ("ORQUESTA_TOKEN", TOKEN)],
    );
    let pid_file = home.path().join("submit.pid");
    let spec = json!({"name": "hang", "kind": "command", "max_jobs": 1,
                      "submit": format!("sleep 300 & echo $! > {}; wait; true", pid_file.display()),
                      "status": "echo running; true", "cancel": "true"});
    assert_eq!(call(&orch, "POST", "/allocations", Some(&spec)).0, 201);
    // more than the one slot takes: the queue submits, and the submit hangs
    let tasks: Vec<Value> = (0..6)
        .map(|i| json!({"task_id": format!("h{i}"), "algorithm": "__sleep", "parameters": {"seconds": 0.5}}))
        .collect();
    let (status, body) = call(&orch, "POST", "/tasks", Some(&json!({"tasks": tasks})));
    assert_eq!(status, 201, "{body}");
    wait_until(Duration::from_secs(30), "the submit command started", || {
        std::fs::read_to_string(&pid_file).is_ok_and(|p| !p.trim().is_empty())
    });
    let sleeper: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // while it hangs: the API answers, and the worker there is runs the tasks
    let (status, list) = call(&orch, "GET", "/allocations", None);
    assert_eq!(status, 200, "{list}");
    wait_until(Duration::from_secs(60), "every task completed on w1", || {
        std::thread::sleep(Duration::from_millis(50));
        count(&orch, "completed") == 6
    });
    wait_until(Duration::from_secs(30), "the submit timed out", || {
        std::thread::sleep(Duration::from_millis(50));
        queue_view(&orch, "hang")["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("did not finish within 2s"))
    });
    let q = queue_view(&orch, "hang");
    assert_eq!(q["jobs_submitted"], 0, "{q}");
    assert_eq!(q["jobs_failed"], 1, "{q}");
    assert!(q["backoff_until"].is_string(), "{q}");
    wait_until(Duration::from_secs(10), "the submit's sleep killed", || {
        let stat = std::fs::read_to_string(format!("/proc/{sleeper}/stat")).unwrap_or_default();
        stat.is_empty() || stat.contains(") Z ")
    });
    let (status, removed) = call(&orch, "DELETE", "/allocations/hang", None);
    assert_eq!(status, 200, "{removed}");
    wait_until(Duration::from_secs(30), "the queue gone", || {
        std::thread::sleep(Duration::from_millis(50));
        queue_view(&orch, "hang").is_null()
    });
}

/// `alloc remove` of a queue whose job runs tasks: the queue goes at once,
/// its job is cancelled and leaves `squeue`, and the job's tasks (the one
/// running and those waiting in its worker's backlog) go back to the
/// queue: none completed by a job that no longer counts, none failed,
/// none lost.
#[test]
fn removing_a_queue_ends_its_running_job_and_gives_its_tasks_back() {
    if !slurm_ready("removing_a_queue_ends_its_running_job_and_gives_its_tasks_back") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let orch = orchestrator(home.path());
    let name = format!("rm{}", std::process::id());
    let spec = json!({"name": name, "kind": "slurm", "max_jobs": 1, "workers_per_job": 1, "capacity": 1,
                      "time_limit": "10m", "idle_timeout": "30s"});
    assert_eq!(call(&orch, "POST", "/allocations", Some(&spec)).0, 201);
    let tasks: Vec<Value> = (0..3)
        .map(
            |i| json!({"task_id": format!("r{i}"), "algorithm": "__sleep", "parameters": {"seconds": 120.0}}),
        )
        .collect();
    let (status, body) = call(&orch, "POST", "/tasks", Some(&json!({"tasks": tasks})));
    assert_eq!(status, 201, "{body}");
    wait_until(LONG, "a task running on the job's worker", || {
        std::thread::sleep(Duration::from_millis(50));
        count(&orch, "running") > 0
    });
    let (status, removed) = call(&orch, "DELETE", &format!("/allocations/{name}"), None);
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["state"], "removing", "{removed}");
    wait_until(Duration::from_secs(90), "the job gone from squeue", || {
        std::thread::sleep(Duration::from_millis(200));
        squeue(&name).is_empty()
    });
    wait_until(Duration::from_secs(30), "the queue gone", || {
        std::thread::sleep(Duration::from_millis(100));
        queue_view(&orch, &name).is_null()
    });
    wait_until(Duration::from_secs(60), "the three tasks queued again", || {
        std::thread::sleep(Duration::from_millis(100));
        count(&orch, "queued") == 3
    });
    let (_, stats) = call(&orch, "GET", "/stats", None);
    let by = |s: &str| stats["tasks"]["by_status"][s].as_u64().unwrap_or(0);
    assert_eq!(
        (by("completed"), by("failed"), by("running")),
        (0, 0, 0),
        "{stats}"
    );
}
