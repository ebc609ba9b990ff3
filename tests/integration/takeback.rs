//! No task waits behind a busy worker (issue 19, part 3): a task sent
//! ahead to a worker whose slots are all busy is taken back and run on
//! another worker that has room, or one where it would start much sooner,
//! and priority order holds across workers.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{run, stderr, stdout, unix_seconds, wait_until, Cluster, WorkerSpec};

const LONG: Duration = Duration::from_secs(90);

fn sleeper(id: &str, seconds: f64, priority: &str) -> Value {
    json!({"task_id": id, "algorithm": "__sleep", "priority": priority,
           "parameters": {"seconds": seconds}})
}

/// A task's status, once the orchestrator knows it (a dropped file is
/// read a moment after it lands).
fn status(c: &Cluster, id: &str) -> Option<String> {
    let r = c.orch().get(&format!("/tasks/{id}"));
    (r.status == 200).then(|| r.json()["status"].as_str().unwrap_or_default().to_string())
}

/// Seconds since the epoch of a task's ISO field (`started_at`, …).
fn at(task: &Value, field: &str) -> f64 {
    unix_seconds(
        task[field]
            .as_str()
            .unwrap_or_else(|| panic!("no {field}: {task}")),
    )
}

/// The scenario: two workers of capacity 1, a long blocker running
/// on `w1`, then one drop of two high-priority tasks and eight low ones.
/// Both high tasks run on `w2` before any low task starts, and neither
/// waits for the blocker (they end while it still runs).
#[test]
fn a_high_task_sent_ahead_to_a_busy_worker_is_taken_back_and_runs_before_low_ones() {
    let c = Cluster::start(&[WorkerSpec::new("w1", 1), WorkerSpec::new("w2", 1)], &[]);
    c.wait_workers_up();
    let r = c.orch().post(
        "/tasks",
        &json!({ "tasks": [sleeper("blocker", 120.0, "low")] }).to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    wait_until(LONG, "the blocker running on w1", || {
        let t = c.task("blocker");
        t["status"] == "running" && t["worker_id"] == "w1" && t["started_at"].is_string()
    });

    // one dropped file, as a user would: high tasks first in it
    let mut tasks = vec![sleeper("high0", 0.6, "high"), sleeper("high1", 0.6, "high")];
    tasks.extend((0..8).map(|i| sleeper(&format!("low{i}"), 0.2, "low")));
    let part = c.path("task_queues/drop.json.part");
    std::fs::write(&part, json!({ "tasks": tasks }).to_string()).unwrap();
    std::fs::rename(&part, c.path("task_queues/drop.json")).unwrap();

    // the low tasks all end while the blocker runs, whatever happens to
    // the high ones (before the fix, high1 waited behind the blocker)
    let lows: Vec<String> = (0..8).map(|i| format!("low{i}")).collect();
    wait_until(LONG, "every low task and high0 ended", || {
        let done = |id: &str| status(&c, id).as_deref() == Some("completed");
        done("high0") && lows.iter().all(|id| done(id))
    });
    let blocker = c.task("blocker");
    let high: Vec<Value> = ["high0", "high1"].iter().map(|id| c.task(id)).collect();
    let low: Vec<Value> = lows.iter().map(|id| c.task(id)).collect();
    let started = at(&blocker, "started_at");
    eprintln!(
        "blocker started {started:.3}; high0 started +{:.3} s; high1 {} (status {}); first low started +{:.3} s",
        at(&high[0], "started_at") - started,
        high[1]["started_at"]
            .as_str()
            .map_or("never started".to_string(), |s| format!("started +{:.3} s", unix_seconds(s) - started)),
        high[1]["status"],
        low.iter()
            .map(|t| at(t, "started_at"))
            .fold(f64::INFINITY, f64::min)
            - started,
    );

    for h in &high {
        assert_eq!(
            h["status"], "completed",
            "a high task waited behind the blocker while the low ones ran: {h}"
        );
        assert_eq!(h["worker_id"], "w2", "{h}");
        // given back uncounted: the one attempt it has is the one that ran
        let attempts = h["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "{h}");
        assert_eq!(attempts[0]["worker_id"], "w2", "{h}");
        assert_eq!(attempts[0]["outcome"], "completed", "{h}");
    }
    let highs_started = high.iter().map(|t| at(t, "started_at")).fold(0.0, f64::max);
    for l in &low {
        assert!(
            at(l, "started_at") >= highs_started,
            "a low task started before a high one: {l}\nhigh: {high:?}"
        );
        assert_eq!(l["attempts"].as_array().unwrap().len(), 1, "run once: {l}");
    }
    // neither high task waited for the blocker: it still runs, on w1, in
    // its one attempt
    let blocker = c.task("blocker");
    assert_eq!(blocker["status"], "running", "{blocker}");
    assert_eq!(blocker["worker_id"], "w1", "{blocker}");
    assert_eq!(blocker["attempts"].as_array().unwrap().len(), 1, "{blocker}");

    // every task ran once: the blocker cancelled to end the test, nothing
    // else queued or running
    assert_eq!(c.orch().delete("/tasks/blocker").status, 200);
    c.wait_count("completed", 10, LONG);
    let stats = c.orch().get("/stats").json();
    assert_eq!(stats["tasks"]["by_status"]["cancelled"], 1, "{stats}");
    assert_eq!(stats["tasks"]["by_status"]["queued"], 0, "{stats}");
    assert_eq!(stats["tasks"]["by_status"]["running"], 0, "{stats}");
}

/// An `optimized` task of N = 1,600 that runs about `seconds` on this
/// machine now (its rate measured with a short `orquesta sim` first).
fn timed(id: &str, seconds: f64) -> Value {
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
    let steps = ((seconds * rate / 1600.0) as u64).clamp(2000, 2_000_000);
    json!({"task_id": id, "algorithm": "optimized",
           "parameters": {"num_particles": 1600, "num_steps": steps, "seed": 5}})
}

/// Part 3's "or when it would start sooner there": no slot is free
/// anywhere, a small task is sent ahead (round robin) behind a long
/// blocker on `w1` while `w2` runs a task several times shorter. It is
/// taken back and sent to `w2`'s backlog while `w2`'s task still runs
/// (not when a slot frees: that is the other rule), runs there once, and
/// ends while the blocker still runs.
#[test]
fn a_task_that_would_start_much_sooner_on_another_worker_moves_there() {
    let c = Cluster::start(
        &[WorkerSpec::new("w1", 1), WorkerSpec::new("w2", 1)],
        &[("LOAD_BALANCING_ALGORITHM", "round_robin")],
    );
    c.wait_workers_up();
    let post = |t: Value| {
        let r = c.orch().post("/tasks", &json!({ "tasks": [t] }).to_string());
        assert_eq!(r.status, 201, "{}", r.text());
    };
    let running_on = |id: &str, w: &str| {
        let t = c.task(id);
        t["status"] == "running" && t["worker_id"] == w
    };
    post(timed("blocker", 60.0));
    wait_until(LONG, "the blocker running on w1", || running_on("blocker", "w1"));
    post(timed("medium", 10.0));
    wait_until(LONG, "the medium task running on w2", || {
        running_on("medium", "w2")
    });
    post(json!({"task_id": "small", "algorithm": "optimized",
                "parameters": {"num_particles": 100, "num_steps": 50, "seed": 1}}));
    wait_until(LONG, "small moved for a sooner start", || {
        c.orch().log().contains("it would start sooner on another worker")
    });
    assert_eq!(
        c.task("medium")["status"],
        "running",
        "small moved only once w2's slot freed: the free-slot rule, not this one"
    );
    wait_until(LONG, "small completed", || {
        c.task("small")["status"] == "completed"
    });
    let small = c.task("small");
    assert_eq!(small["worker_id"], "w2", "{small}");
    let attempts = small["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "given back uncounted, run once: {small}");
    let blocker = c.task("blocker");
    assert_eq!(
        blocker["status"], "running",
        "small did not wait for the blocker: {blocker}"
    );
    assert_eq!(c.orch().delete("/tasks/blocker").status, 200);
}
