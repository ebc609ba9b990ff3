//! Faults: workers killed, frozen, lying; the orchestrator killed; poison
//! tasks; timeouts; cancellation during trouble. Every test is bounded in
//! time and in count.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{
    unix_now, unix_seconds, wait_until, worker_checks, Cluster, Proc, WorkerSpec, FLUSH_TICKS,
    INCOMPLETE_READS, SCANS, SWEEPS,
};

pub(crate) const LONG: Duration = Duration::from_secs(90);

pub(crate) fn sleep_task(id: &str, seconds: f64) -> Value {
    json!({"task_id": id, "algorithm": "__sleep", "parameters": {"seconds": seconds}})
}

pub(crate) fn sim_task(id: &str) -> Value {
    json!({"task_id": id, "algorithm": "cython", "parameters": {"num_particles": 64, "num_steps": 20, "seed": 3}})
}

pub(crate) fn post(c: &Cluster, tasks: Vec<Value>) {
    let r = c.orch().post("/tasks", &json!({ "tasks": tasks }).to_string());
    assert_eq!(r.status, 201, "{}", r.text());
}

/// Restarts worker `i` of the cluster on its old port.
pub(crate) fn restart_worker(c: &mut Cluster, i: usize, id: &str) {
    let port = c.workers[i].addr.rsplit(':').next().unwrap().to_string();
    let dir = c.dir.path().to_path_buf();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = std::panic::catch_unwind(|| {
            Proc::start(
                &dir,
                &["worker", "--worker-id", id, "--port", &port, "--capacity", "2"],
                &[("ORQUESTA_TEST_KERNELS", "1")],
            )
        });
        match attempt {
            Ok(p) => {
                c.workers[i] = p;
                return;
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => std::panic::resume_unwind(e),
        }
    }
}

/// Every result in results/, counted per task.
pub(crate) fn recorded(c: &Cluster) -> HashMap<String, u32> {
    let mut seen = HashMap::new();
    for r in c.results() {
        *seen
            .entry(r["task_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    seen
}

/// SplitMix64: the chaos test's membership changes come from a seed it
/// prints, so a failing sequence can be replayed with `CHAOS_SEED`.
#[test]
fn a_poison_task_stops_after_the_retry_limit_and_the_workers_come_back() {
    let mut c = Cluster::start(
        &[
            WorkerSpec::new("p1", 1),
            WorkerSpec::new("p2", 1),
            WorkerSpec::new("p3", 1),
        ],
        &[("MAX_TASK_RETRIES", "2")],
    );
    c.wait_workers_up();
    post(
        &c,
        vec![json!({"task_id": "poison", "algorithm": "__abort", "parameters": {}})],
    );
    wait_until(LONG, "the poison task to fail", || {
        c.status_of("poison") == "failed"
    });
    let t = c.task("poison");
    assert_eq!(t["attempt_count"], 3, "{t}");
    let attempts = t["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    assert!(attempts.iter().all(|a| a["outcome"] == "lost"), "{t}");
    assert!(
        t["error"].as_str().unwrap().contains("failed after 3 attempts"),
        "{t}"
    );
    // it killed a worker per attempt; they come back and are used again
    for (i, id) in ["p1", "p2", "p3"].iter().enumerate() {
        if c.workers[i].child.try_wait().unwrap().is_some() {
            restart_worker(&mut c, i, id);
        }
    }
    c.wait_workers_up();
    post(&c, (0..6).map(|i| sim_task(&format!("after{i}"))).collect());
    c.wait_count("completed", 6, LONG);
    assert_eq!(c.orch().get("/tasks?status=failed").json()["total"], 1);
}

#[test]
fn a_frozen_worker_is_declared_down_and_its_task_runs_elsewhere_once() {
    let c = Cluster::start(
        &[WorkerSpec::new("frozen", 1), WorkerSpec::new("healthy", 1)],
        &[
            ("WORKER_TIMEOUT", "1"),
            ("LOAD_BALANCING_ALGORITHM", "round_robin"),
        ],
    );
    c.wait_workers_up();
    post(&c, vec![sleep_task("first", 1.0)]);
    wait_until(LONG, "first running", || c.status_of("first") == "running");
    let on = c.task("first")["worker_id"].as_str().unwrap().to_string();
    let idx = if on == "frozen" { 0 } else { 1 };
    c.workers[idx].signal(libc::SIGSTOP);
    let frozen_at = Instant::now();
    wait_until(Duration::from_secs(10), "down", || {
        c.orch().get(&format!("/workers/{on}")).json()["up"] == false
    });
    assert!(
        frozen_at.elapsed() < Duration::from_secs(5),
        "declared down within the timeout"
    );
    // the task runs again on the other worker
    c.wait_count("completed", 1, LONG);
    c.workers[idx].signal(libc::SIGCONT);
    wait_until(Duration::from_secs(10), "up again", || {
        c.orch().get(&format!("/workers/{on}")).json()["up"] == true
    });
    // the thawed worker finishes its copy of "first"; then health checks
    // (each can bring its held result in) and flushes (that would write it
    // a second time)
    wait_until(LONG, "the thawed copy ended", || {
        c.workers[idx].get("/current").json()["count"] == 0
    });
    c.orch().wait_for_passes(&worker_checks(&on), 2);
    c.orch().wait_for_passes(FLUSH_TICKS, 2);
    let t = c.task("first");
    let outcomes: Vec<&str> = t["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap_or(""))
        .collect();
    assert!(outcomes.contains(&"lost"), "{t}");
    assert_eq!(recorded(&c).get("first"), Some(&1), "recorded once");
    // and the thawed worker takes work again
    post(
        &c,
        (0..4).map(|i| sleep_task(&format!("more{i}"), 0.05)).collect(),
    );
    c.wait_count("completed", 5, LONG);
    let workers = c.orch().get("/workers").json();
    assert!(workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["up"] == true));
}

/// A fake worker that answers health and status, and lies on /execute:
/// `garbage` (not JSON), `bloated` (the right task, with 2 MB of output),
/// or a result for another task.
pub(crate) fn lying_worker(mode: &'static str) -> (String, Arc<AtomicBool>, Arc<AtomicUsize>) {
    let status = json!({"worker_id": "liar", "capacity": 4, "algorithms": ["__sleep"], "state": "idle"});
    crate::common::fake_worker(status, move |task| match mode {
        "garbage" => "this is not json".to_string(),
        "bloated" => json!({"task_id": task["task_id"], "algorithm": task["algorithm"],
            "parameters": task["parameters"], "execution_time": 0.0, "attempt_id": task["attempt_id"],
            "result": {"status": "completed", "metrics": {}, "output": "x".repeat(2_000_000)}})
        .to_string(),
        _ => json!({"task_id": "somebody_else", "algorithm": "__sleep", "parameters": {},
            "execution_time": 0.0, "attempt_id": task["attempt_id"],
            "result": {"status": "completed", "metrics": {}, "output": "lies"}})
        .to_string(),
    })
}

#[test]
fn lying_workers_fail_their_attempts_and_the_truth_wins() {
    for mode in ["garbage", "wrong_id"] {
        let dir = tempfile::tempdir().unwrap();
        let (liar, stop, executes) = lying_worker(mode);
        let honest = Proc::start(
            dir.path(),
            &[
                "worker",
                "--worker-id",
                "honest",
                "--port",
                "0",
                "--capacity",
                "2",
            ],
            &[("ORQUESTA_TEST_KERNELS", "1")],
        );
        let port = |a: &str| a.rsplit(':').next().unwrap().parse::<u16>().unwrap();
        std::fs::write(
            dir.path().join("config_workers.json"),
            json!({"workers": [
                {"id": "liar", "host": "127.0.0.1", "port": port(&liar), "capacity": 4, "algorithms": ["python", "cython"]},
                {"id": "honest", "host": "127.0.0.1", "port": port(&honest.addr), "capacity": 2},
            ]})
            .to_string(),
        )
        .unwrap();
        let mut env: Vec<(&str, &str)> = crate::common::FAST.to_vec();
        env.push(("MAX_TASK_RETRIES", "10"));
        env.push(("LOAD_BALANCING_ALGORITHM", "round_robin"));
        let o = Proc::start(dir.path(), &["orchestrator", "--port", "0"], &env);
        wait_until(LONG, "both up", || o.get("/workers").json()["up"] == 2);
        let tasks: Vec<Value> = (0..6).map(|i| sleep_task(&format!("{mode}{i}"), 0.05)).collect();
        assert_eq!(
            o.post("/tasks", &json!({ "tasks": tasks }).to_string()).status,
            201
        );
        wait_until(LONG, "all completed", || {
            o.get("/stats").json()["tasks"]["by_status"]["completed"] == 6
        });
        assert!(executes.load(Ordering::Relaxed) > 0, "the liar was tried");
        let mut saw_lie = false;
        for i in 0..6 {
            let t = o.get(&format!("/tasks/{mode}{i}")).json();
            assert_eq!(t["worker_id"], "honest", "{t}");
            assert_eq!(t["result"]["task_id"], format!("{mode}{i}"));
            for a in t["attempts"].as_array().unwrap() {
                if a["worker_id"] == "liar" {
                    assert_eq!(a["outcome"], "failed", "{t}");
                    let e = a["error"].as_str().unwrap();
                    assert!(e.contains("invalid") || e.contains("instead of"), "{e}");
                    saw_lie = true;
                }
            }
        }
        assert!(saw_lie, "{mode}: no attempt went to the liar");
        stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn task_timeout_fails_the_attempt_and_stops_it_on_the_worker() {
    let c = Cluster::start(
        &[WorkerSpec::new("w", 2)],
        &[("TASK_TIMEOUT", "0.5"), ("MAX_TASK_RETRIES", "1")],
    );
    c.wait_workers_up();
    post(&c, vec![sleep_task("slowpoke", 30.0)]);
    wait_until(LONG, "failed", || c.status_of("slowpoke") == "failed");
    let t = c.task("slowpoke");
    assert_eq!(t["attempt_count"], 2);
    assert!(t["error"].as_str().unwrap().contains("TASK_TIMEOUT"), "{t}");
    wait_until(Duration::from_secs(10), "stopped on the worker", || {
        c.workers[0].get("/current").json()["count"] == 0
    });
}

#[test]
fn cancel_works_while_the_worker_is_down_and_while_backing_off() {
    let mut c = Cluster::start(
        &[WorkerSpec::new("w", 1)],
        &[
            ("RETRY_BACKOFF_BASE", "5"),
            ("RETRY_BACKOFF_MAX", "5"),
            ("MAX_TASK_RETRIES", "5"),
        ],
    );
    c.wait_workers_up();
    post(&c, vec![sleep_task("victim", 30.0), sleep_task("waiting", 0.1)]);
    wait_until(LONG, "running", || c.status_of("victim") == "running");
    // the worker dies: victim's attempt is lost and it backs off for 5 s
    c.workers[0].signal(libc::SIGKILL);
    wait_until(LONG, "backing off", || {
        let t = c.task("victim");
        t["status"] == "queued"
            && t["waiting"]["reason"]
                .as_str()
                .unwrap_or("")
                .contains("backing off")
    });
    let retry_at = unix_seconds(c.task("victim")["waiting"]["retry_at"].as_str().unwrap());
    // cancel while backing off, and the other while no worker is up
    assert_eq!(c.orch().delete("/tasks/victim").status, 200);
    assert_eq!(c.orch().delete("/tasks/waiting").status, 200);
    restart_worker(&mut c, 0, "w");
    c.wait_workers_up();
    // victim's backoff ends, then dispatch sweeps: each could send either
    wait_until(LONG, "the end of victim's backoff", || unix_now() > retry_at);
    c.orch().wait_for_passes(SWEEPS, 2);
    assert_eq!(c.status_of("victim"), "cancelled");
    assert_eq!(c.status_of("waiting"), "cancelled");
    assert_eq!(
        c.workers[0].get("/metrics").json()["tasks_completed"],
        0,
        "nothing cancelled ran"
    );
}

#[test]
fn when_every_worker_is_down_tasks_wait_and_say_why() {
    let mut c = Cluster::start(&[WorkerSpec::new("w", 2)], &[]);
    c.wait_workers_up();
    c.workers[0].signal(libc::SIGKILL);
    wait_until(LONG, "down", || c.orch().get("/workers").json()["up"] == 0);
    post(&c, (0..5).map(|i| sim_task(&format!("held{i}"))).collect());
    let t = c.task("held0");
    assert_eq!(t["status"], "queued");
    assert!(t["waiting"]["reason"].as_str().unwrap().contains("down"), "{t}");
    assert_eq!(c.orch().get("/health").json()["status"], "degraded");
    restart_worker(&mut c, 0, "w");
    c.wait_count("completed", 5, LONG);
    assert_eq!(
        c.orch().get("/tasks?status=failed").json()["total"],
        0,
        "nothing failed for lack of capacity"
    );
}

#[test]
fn a_slow_copy_is_not_rejected() {
    let c = Cluster::start(&[WorkerSpec::new("w", 2)], &[("FILE_QUIET_PERIOD", "0.2")]);
    std::fs::create_dir_all(c.path("task_queues")).unwrap();
    let incomplete = c.orch().metric(INCOMPLETE_READS);
    let text = json!({"tasks": [sim_task("slow_a"), sim_task("slow_b")]}).to_string();
    let (first, second) = text.split_at(text.len() / 2);
    let path = c.path("task_queues/slow.json");
    {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(first.as_bytes()).unwrap();
        f.flush().unwrap();
        // past the quiet period the half file is read, found incomplete,
        // and must wait
        wait_until(LONG, "the half file read", || {
            c.orch().metric(INCOMPLETE_READS) > incomplete
        });
        f.write_all(second.as_bytes()).unwrap();
    }
    c.wait_count("completed", 2, LONG);
    assert!(!c.path("task_queues/rejected/slow.json").exists());
}

#[test]
fn a_truncated_file_that_never_grows_is_rejected_in_the_end() {
    let c = Cluster::start(&[WorkerSpec::new("w", 2)], &[]);
    std::fs::create_dir_all(c.path("task_queues")).unwrap();
    let incomplete = c.orch().metric(INCOMPLETE_READS);
    let text = json!({"tasks": [sim_task("cut_a"), sim_task("cut_b")]}).to_string();
    std::fs::write(c.path("task_queues/cut.json"), &text[..text.len() - 7]).unwrap();
    // given time to grow first (a slow copy looks the same at the start):
    // read and found incomplete, then left there for rescans
    wait_until(LONG, "cut.json read", || {
        c.orch().metric(INCOMPLETE_READS) > incomplete
    });
    c.orch().wait_for_passes(SCANS, 2);
    assert!(c.path("task_queues/cut.json").exists());
    let report = c.path("task_queues/rejected/cut.json.error.txt");
    wait_until(Duration::from_secs(40), "cut.json rejected", || report.exists());
    assert!(std::fs::read_to_string(report).unwrap().contains("truncated"));
    assert_eq!(c.orch().get("/tasks").json()["total"], 0);
}
