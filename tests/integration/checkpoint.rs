//! Checkpoint and resume across real processes (issue 19): a long task
//! whose worker is SIGKILLed twice in a row resumes on the next worker from
//! the latest checkpoint and ends with the bits `orquesta sim` prints for
//! the same parameters, having run few steps twice; a draining worker
//! sends a checkpoint at once; a worker that does not run a task cannot
//! send one for it.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{joined_worker_with, run, stderr, stdout, wait_until, worker_row, Proc, FAST};
use crate::physics_results::{physics, sim_of};

const LONG: Duration = Duration::from_secs(180);

/// An orchestrator with no configured workers, quick timers and
/// checkpoints every half second of run time.
fn orchestrator(dir: &Path) -> Proc {
    std::fs::write(dir.join("config_workers.json"), r#"{"workers": []}"#).unwrap();
    let mut env = FAST.to_vec();
    env.push(("CHECKPOINT_INTERVAL", "0.5"));
    Proc::start(dir, &["orchestrator", "--port", "0"], &env)
}

/// A worker joining `orch`, checkpointing every `interval` seconds.
fn worker(dir: &Path, id: &str, orch: &Proc, interval: &str) -> Proc {
    let join = format!("http://{}", orch.addr);
    let w = joined_worker_with(
        dir,
        id,
        1,
        &join,
        &[("CHECKPOINT_INTERVAL", interval), ("WORKER_DRAIN_TIMEOUT", "60")],
    );
    wait_until(Duration::from_secs(20), &format!("{id} up"), || {
        worker_row(orch, id)["state"] == "up"
    });
    w
}

fn task(orch: &Proc, id: &str) -> Value {
    orch.get(&format!("/tasks/{id}")).json()
}

/// The step of the checkpoint the orchestrator holds for `id` (0: none).
fn checkpoint_step(orch: &Proc, id: &str) -> u64 {
    task(orch, id)["checkpoint"]["step"].as_u64().unwrap_or(0)
}

/// The worker the task's live attempt runs on.
fn running_on(orch: &Proc, id: &str) -> Option<String> {
    let t = task(orch, id);
    if t["status"] != "running" {
        return None;
    }
    let live = t["attempts"]
        .as_array()?
        .iter()
        .rev()
        .find(|a| a["ended_at"].is_null())?
        .clone();
    live["worker_id"].as_str().map(str::to_string)
}

/// Steps the worker has completed of its one task (its `GET /current`).
fn steps_done(worker: &Proc) -> u64 {
    worker.get("/current").json()["tasks"][0]["steps_done"]
        .as_u64()
        .unwrap_or(0)
}

/// Parameters of an `optimized` run of about `seconds` on this machine
/// now: its rate measured with a short `orquesta sim` first (a long task
/// has to outlive two kills, whatever the machine's speed).
fn long_run(seconds: f64) -> Value {
    let n = 1600u64;
    let out = run(&[
        "sim",
        "--compact",
        "--algorithm",
        "optimized",
        "--particles",
        "1600",
        "--steps",
        "400",
        "--seed",
        "5",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let probe: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let rate = probe["result"]["metrics"]["particle_steps_per_second"]
        .as_f64()
        .unwrap();
    let steps = ((seconds * rate / n as f64) as u64).clamp(4000, 400_000);
    json!({"num_particles": n, "num_steps": steps, "seed": 5, "thermo_every": steps / 50})
}

#[test]
fn a_long_task_survives_two_sigkills_and_ends_with_the_bits_of_orquesta_sim() {
    let home = tempfile::tempdir().unwrap();
    let orch = orchestrator(home.path());
    let params = long_run(15.0);
    let steps = params["num_steps"].as_u64().unwrap();
    let body = json!({"task_id": "long", "algorithm": "optimized", "parameters": params});
    let r = orch.post("/tasks", &body.to_string());
    assert_eq!(r.status, 201, "{}", r.text());

    // nobody but the worker running an attempt may send its checkpoint
    let forged = orch.post(
        "/tasks/long/checkpoint?attempt_id=999&worker_id=nobody&step=5",
        "bytes",
    );
    assert_eq!(forged.status, 404, "{}", forged.text());

    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut workers = vec![worker(dirs[0].path(), "c1", &orch, "0.5")];
    // steps each killed attempt had run when it died, and where it began
    let mut ran = Vec::new();
    let mut start = 0u64;
    for (round, next) in ["c2", "c3"].into_iter().enumerate() {
        let victim = format!("c{}", round + 1);
        wait_until(LONG, &format!("long running on {victim}"), || {
            running_on(&orch, "long").as_deref() == Some(victim.as_str())
        });
        // a checkpoint of this attempt (past where it started)
        wait_until(LONG, &format!("a checkpoint from {victim}"), || {
            checkpoint_step(&orch, "long") > start
        });
        // the next worker is up before the victim dies, to take the task
        workers.push(worker(dirs[round + 1].path(), next, &orch, "0.5"));
        let dying = &mut workers[round];
        let done = steps_done(dying);
        dying.signal(libc::SIGKILL);
        dying.wait_exit(Duration::from_secs(10));
        assert!(
            done < steps,
            "the task ended before {victim} was killed: make it longer"
        );
        ran.push(done - start);
        start = checkpoint_step(&orch, "long");
        // the figures of docs/performance.md "Preemption": what this lost
        // attempt makes the next one run again
        eprintln!(
            "figures (preemption, {steps} steps, checkpoint every 0.5 s): {victim} killed at step {done}; \
             steps re-run: {} with the checkpoint (resumes at {start}), {done} without (from step 0)",
            done.saturating_sub(start)
        );
    }
    wait_until(LONG, "long completed", || {
        task(&orch, "long")["status"] == "completed"
    });
    let t = task(&orch, "long");
    let result = &t["result"];
    let resumed = result["resumed_from_step"].as_u64().expect("resumed_from_step");
    assert!(resumed > 0, "{result}");
    assert_eq!(result["worker_id"], "c3", "{t}");
    // (a dispatch to a killed worker not yet marked down is `refused`:
    // nothing ran there)
    let attempts: Vec<&Value> = t["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["outcome"] != "refused")
        .collect();
    assert_eq!(attempts.len(), 3, "{t}");
    assert_eq!(attempts[0]["start_step"], 0, "{t}");
    assert!(attempts[1]["start_step"].as_u64().unwrap() > 0, "{t}");
    assert_eq!(attempts[2]["start_step"], resumed, "{t}");
    ran.push(steps - resumed);
    let total: u64 = ran.iter().sum();
    assert!(
        (total as f64) < 1.2 * steps as f64,
        "{total} steps run across attempts ({ran:?}) for a task of {steps}"
    );
    // the bits of an uninterrupted run
    let local = sim_of("optimized", &params);
    assert_eq!(
        physics(&result["result"]["metrics"]),
        physics(&local["result"]["metrics"])
    );
    // the checkpoint goes once the task has ended
    wait_until(Duration::from_secs(20), "the checkpoint removed", || {
        task(&orch, "long").get("checkpoint").is_none()
    });
}

#[test]
fn a_draining_worker_sends_a_checkpoint_at_once_and_the_next_worker_resumes_it() {
    let home = tempfile::tempdir().unwrap();
    let orch = orchestrator(home.path());
    let params = long_run(8.0);
    let body = json!({"task_id": "drained", "algorithm": "optimized", "parameters": params});
    assert_eq!(orch.post("/tasks", &body.to_string()).status, 201);
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // an interval no test outlives: only the drain makes a checkpoint
    let mut first = worker(d1.path(), "d1", &orch, "3600");
    wait_until(LONG, "drained running with steps done", || {
        running_on(&orch, "drained").as_deref() == Some("d1") && steps_done(&first) > 0
    });
    assert_eq!(checkpoint_step(&orch, "drained"), 0);
    first.signal(libc::SIGTERM);
    wait_until(Duration::from_secs(30), "a checkpoint sent on drain", || {
        checkpoint_step(&orch, "drained") > 0
    });
    let saved = task(&orch, "drained")["checkpoint"].clone();
    assert!(saved["bytes"].as_u64().unwrap() > 1600 * 64, "{saved}");
    assert!(saved["saved_at"].is_string(), "{saved}");
    // the drain ends by cancelling what still runs: the attempt is lost,
    // and the next worker resumes from the checkpoint
    first.signal(libc::SIGKILL);
    first.wait_exit(Duration::from_secs(10));
    let _second = worker(d2.path(), "d2", &orch, "3600");
    wait_until(LONG, "drained completed", || {
        task(&orch, "drained")["status"] == "completed"
    });
    let result = task(&orch, "drained")["result"].clone();
    assert!(
        result["resumed_from_step"].as_u64().unwrap() >= saved["step"].as_u64().unwrap(),
        "{result}"
    );
    let local = sim_of("optimized", &params);
    assert_eq!(
        physics(&result["result"]["metrics"]),
        physics(&local["result"]["metrics"])
    );
}

/// Whether process `pid` still runs (a zombie does not).
#[cfg(target_os = "linux")]
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// What `scancel --signal=KILL --full` does under `proctrack/linuxproc`:
/// the job script is SIGKILLed, its workers are not. A worker started with
/// `--exit-with-parent` (as the job script starts them) drains and stops.
#[cfg(target_os = "linux")]
#[test]
fn a_worker_started_with_exit_with_parent_stops_when_its_parent_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let script = "\"$0\" worker --port 0 --worker-id orphan --exit-with-parent >worker.log 2>&1 & \
                  echo $! > worker.pid; wait";
    let mut job = std::process::Command::new("sh")
        .args(["-c", script, env!("CARGO_BIN_EXE_orquesta")])
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(dir.path().join("worker.log")).unwrap_or_default();
    wait_until(Duration::from_secs(30), "the worker listening", || {
        log().contains("listening on")
    });
    let pid: u32 = std::fs::read_to_string(dir.path().join("worker.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    job.kill().unwrap();
    job.wait().unwrap();
    wait_until(Duration::from_secs(30), "the orphaned worker gone", || {
        !alive(pid)
    });
    assert!(log().contains("shutdown requested"), "{}", log());
}
