//! The orchestrator end to end: real worker processes, a real
//! orchestrator, files dropped into task_queues/, the REST API and the
//! results on disk.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{orquesta, stderr, wait_until, Cluster, Proc, WorkerSpec, FAST, FLUSH_TICKS, SCANS};

const LONG: Duration = Duration::from_secs(60);

fn sleep_task(id: &str, seconds: f64, priority: &str) -> Value {
    json!({"task_id": id, "algorithm": "__sleep", "parameters": {"seconds": seconds}, "priority": priority})
}

fn sim_task(id: &str, algorithm: &str, n: u64, steps: u64) -> Value {
    json!({"task_id": id, "algorithm": algorithm, "parameters": {"num_particles": n, "num_steps": steps, "seed": 7}})
}

fn post_tasks(c: &Cluster, tasks: Vec<Value>) {
    let r = c.orch().post("/tasks", &json!({ "tasks": tasks }).to_string());
    assert_eq!(r.status, 201, "{}", r.text());
}

#[test]
fn the_seed_workflow_from_a_dropped_file_to_results() {
    let c = Cluster::start(
        &[WorkerSpec::new("worker1", 2), WorkerSpec::new("worker2", 2)],
        &[],
    );
    let example = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tareas_manuales_ejemplo.json"
    ))
    .unwrap();
    std::fs::create_dir_all(c.path("task_queues")).unwrap();
    std::fs::write(c.path("task_queues/tareas_manuales_ejemplo.json"), &example).unwrap();
    c.wait_count("completed", 10, LONG);

    // the file moved to processed/ with a timestamp prefix
    let processed: Vec<String> = std::fs::read_dir(c.path("task_queues/processed"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(processed.len(), 1, "{processed:?}");
    assert!(processed[0].ends_with("_tareas_manuales_ejemplo.json") && processed[0].len() == 15 + 1 + 28);
    assert!(!c.path("task_queues/tareas_manuales_ejemplo.json").exists());

    // every result once, in the seed's shape, agreeing with the API
    wait_until(LONG, "results on disk", || c.results().len() == 10);
    // a result recorded twice would be written by a later flush
    c.orch().wait_for_passes(FLUSH_TICKS, 2);
    let results = c.results();
    assert_eq!(results.len(), 10, "each task exactly once");
    let file: Value = serde_json::from_slice(&example).unwrap();
    for task in file["tasks"].as_array().unwrap() {
        let id = task["task_id"].as_str().unwrap();
        let r: Vec<&Value> = results.iter().filter(|r| r["task_id"] == id).collect();
        assert_eq!(r.len(), 1, "{id}");
        let r = r[0];
        assert_eq!(r["algorithm"], task["algorithm"]);
        assert_eq!(r["parameters"], task["parameters"]);
        assert_eq!(r["priority"], task["priority"]);
        assert_eq!(r["result"]["status"], "completed");
        assert!(r["execution_time"].as_f64().unwrap() > 0.0);
        assert!(r["completed_at"].as_str().unwrap().ends_with('Z'));
        assert!(r["worker_id"] == "worker1" || r["worker_id"] == "worker2");
        let api = c.task(id);
        assert_eq!(api["status"], "completed");
        assert_eq!(api["result"]["result"]["metrics"], r["result"]["metrics"]);
        assert_eq!(api["worker_id"], r["worker_id"]);
        assert_eq!(api["attempt_count"], 1);
        assert_eq!(api["attempts"][0]["outcome"], "completed");
    }
    let list = c.orch().get("/tasks").json();
    assert_eq!(list["total"], 10);
    assert_eq!(list["tasks"].as_array().unwrap().len(), 10);
    assert_eq!(
        c.orch().get("/tasks?status=completed&priority=high").json()["total"],
        4
    );
    assert_eq!(c.orch().get("/tasks?algorithm=python").json()["total"], 5);
    let stats = c.orch().get("/stats").json();
    assert_eq!(stats["tasks"]["by_status"]["completed"], 10);
    assert_eq!(stats["workers"]["up"], 2);
    let perf = c.orch().get("/stats/performance").json();
    assert_eq!(perf["execution_time_seconds"]["python"]["count"], 5);
    assert!(perf["queue_wait_seconds"]["cython"]["p90"].as_f64().is_some());
    let health = c.orch().get("/health").json();
    assert_eq!(health["status"], "healthy");
    let workers = c.orch().get("/workers").json();
    let done: u64 = workers["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["tasks_completed"].as_u64().unwrap())
        .sum();
    assert_eq!(done, 10);
    let w1 = c.orch().get("/workers/worker1").json();
    assert_eq!(w1["state"], "up");
    assert!(w1["last_heartbeat"].as_str().is_some());
    assert_eq!(c.orch().get("/workers/nobody").status, 404);
    // the files of the seed's layout
    wait_until(Duration::from_secs(10), "stats files", || {
        c.path("results/orchestrator_stats.json").exists() && c.path("logs/worker_state.json").exists()
    });
    assert!(std::fs::read_to_string(c.path("logs/elastic_orchestrator.log"))
        .unwrap()
        .contains("task file queued"));
}

#[test]
fn higher_priority_runs_first_on_a_busy_worker() {
    let c = Cluster::start(&[WorkerSpec::new("only", 1)], &[]);
    c.wait_workers_up();
    post_tasks(&c, vec![sleep_task("blocker", 2.0, "low")]);
    wait_until(LONG, "blocker running", || c.status_of("blocker") == "running");
    post_tasks(
        &c,
        vec![
            sleep_task("low1", 0.0, "low"),
            sleep_task("med1", 0.0, "medium"),
            sleep_task("high1", 0.0, "high"),
            sleep_task("low2", 0.0, "low"),
            sleep_task("high2", 0.0, "high"),
            sleep_task("med2", 0.0, "medium"),
        ],
    );
    // while it waits, the API says why
    let waiting = c.task("high1");
    assert_eq!(waiting["status"], "queued");
    assert!(
        waiting["waiting"]["reason"].as_str().unwrap().contains("busy"),
        "{waiting}"
    );
    c.wait_count("completed", 7, LONG);
    // attempt ids grow with every dispatch
    let mut order: Vec<(u64, String)> = ["low1", "med1", "high1", "low2", "high2", "med2"]
        .iter()
        .map(|id| {
            (
                c.task(id)["attempts"][0]["attempt_id"].as_u64().unwrap(),
                id.to_string(),
            )
        })
        .collect();
    order.sort();
    let ids: Vec<&str> = order.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids, ["high1", "high2", "med1", "med2", "low1", "low2"]);
}

fn worker_of(c: &Cluster, id: &str) -> String {
    c.task(id)["worker_id"].as_str().unwrap().to_string()
}

#[test]
fn round_robin_rotates_over_eligible_workers_and_algorithms_are_respected() {
    let mut only_python = WorkerSpec::new("py", 10);
    only_python.algorithms = "python";
    let c = Cluster::start(
        &[
            WorkerSpec::new("a", 10),
            only_python,
            WorkerSpec::new("b", 10),
            WorkerSpec::new("c", 10),
        ],
        &[("LOAD_BALANCING_ALGORITHM", "round_robin")],
    );
    c.wait_workers_up();
    let tasks: Vec<Value> = (0..9)
        .map(|i| sim_task(&format!("t{i}"), "cython", 50, 1))
        .collect();
    post_tasks(&c, tasks);
    c.wait_count("completed", 9, LONG);
    let workers: Vec<String> = (0..9).map(|i| worker_of(&c, &format!("t{i}"))).collect();
    // the worker without cython never gets one; the others take turns
    assert_eq!(workers, ["a", "b", "c", "a", "b", "c", "a", "b", "c"]);
}

#[test]
fn least_loaded_splits_one_to_three_over_capacities_one_and_three() {
    let c = Cluster::start(
        &[WorkerSpec::new("small", 1), WorkerSpec::new("big", 3)],
        &[("LOAD_BALANCING_ALGORITHM", "least_loaded")],
    );
    c.wait_workers_up();
    let tasks: Vec<Value> = (0..48)
        .map(|i| sleep_task(&format!("s{i}"), 0.1, "medium"))
        .collect();
    post_tasks(&c, tasks);
    c.wait_count("completed", 48, LONG);
    let mut counts: HashMap<String, u32> = HashMap::new();
    for i in 0..48 {
        *counts.entry(worker_of(&c, &format!("s{i}"))).or_default() += 1;
    }
    let (small, big) = (counts["small"] as f64, counts["big"] as f64);
    let ratio = big / small;
    assert!((2.0..=4.5).contains(&ratio), "{counts:?}");
}

#[test]
fn a_task_only_one_worker_supports_goes_only_there() {
    let mut py = WorkerSpec::new("py", 2);
    py.algorithms = "python";
    let mut cy = WorkerSpec::new("cy", 2);
    cy.algorithms = "cython";
    let c = Cluster::start(&[py, cy], &[]);
    c.wait_workers_up();
    let mut tasks: Vec<Value> = (0..6)
        .map(|i| sim_task(&format!("p{i}"), "python", 50, 1))
        .collect();
    tasks.extend((0..6).map(|i| sim_task(&format!("c{i}"), "optimized", 50, 1)));
    post_tasks(&c, tasks);
    c.wait_count("completed", 12, LONG);
    for i in 0..6 {
        assert_eq!(worker_of(&c, &format!("p{i}")), "py");
        assert_eq!(worker_of(&c, &format!("c{i}")), "cy");
    }
}

#[test]
fn a_task_nobody_can_run_waits_and_says_why() {
    let mut py = WorkerSpec::new("py", 1);
    py.algorithms = "python";
    let c = Cluster::start(&[py], &[]);
    c.wait_workers_up();
    post_tasks(
        &c,
        vec![
            sim_task("needs_cython", "cython", 50, 1),
            sim_task("fine", "python", 50, 1),
        ],
    );
    c.wait_count("completed", 1, LONG);
    let t = c.task("needs_cython");
    assert_eq!(t["status"], "queued");
    let reason = t["waiting"]["reason"].as_str().unwrap();
    assert!(reason.contains("no configured worker runs optimized"), "{reason}");
    assert!(t["waiting"]["workers"]["per_worker"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("does not run"));
}

#[test]
fn cancel_a_queued_and_a_running_task() {
    let c = Cluster::start(&[WorkerSpec::new("w", 1)], &[]);
    c.wait_workers_up();
    post_tasks(
        &c,
        vec![
            sleep_task("running", 30.0, "high"),
            sleep_task("queued", 0.0, "low"),
        ],
    );
    wait_until(LONG, "running", || c.status_of("running") == "running");
    assert_eq!(c.status_of("queued"), "queued");

    let r = c.orch().delete("/tasks/queued");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["was"], "queued");
    let r = c.orch().delete("/tasks/running");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["was"], "running");
    // the worker stops it promptly
    wait_until(Duration::from_secs(10), "the worker to stop it", || {
        c.workers[0].get("/current").json()["count"] == 0
    });
    assert_eq!(c.status_of("running"), "cancelled");
    let q = c.task("queued");
    assert_eq!(q["status"], "cancelled");
    assert_eq!(q["attempt_count"], 0, "a cancelled queued task never runs");
    // cancelling what has ended changes nothing
    let again = c.orch().delete("/tasks/running");
    assert_eq!(again.status, 409);
    assert_eq!(c.orch().delete("/tasks/nope").status, 404);
    // the worker is free again and the cancelled tasks are not in results/
    post_tasks(&c, vec![sleep_task("after", 0.0, "medium")]);
    c.wait_count("completed", 1, LONG);
    // "after" is on disk, and a cancelled task's result would be too
    wait_until(LONG, "after's result on disk", || !c.results().is_empty());
    c.orch().wait_for_passes(FLUSH_TICKS, 2);
    let ids: Vec<Value> = c.results().iter().map(|r| r["task_id"].clone()).collect();
    assert_eq!(ids, [json!("after")]);
    // and a cancelled task can be retried
    assert_eq!(c.orch().post("/tasks/queued/retry", "").status, 200);
    c.wait_count("completed", 2, LONG);
    assert_eq!(c.orch().post("/tasks/after/retry", "").status, 409);
}

#[test]
fn sigkill_of_the_orchestrator_loses_nothing_and_repeats_nothing() {
    let mut c = Cluster::start(&[WorkerSpec::new("w1", 2), WorkerSpec::new("w2", 2)], &[]);
    c.wait_workers_up();
    let tasks: Vec<Value> = (0..40)
        .map(|i| sleep_task(&format!("k{i:02}"), 0.1, "medium"))
        .collect();
    post_tasks(&c, tasks);
    wait_until(LONG, "some completed", || {
        c.orch().get("/stats").json()["tasks"]["by_status"]["completed"]
            .as_u64()
            .unwrap_or(0)
            >= 10
    });
    let done_before: Vec<String> = c.orch().get("/tasks?status=completed&limit=1000").json()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap().to_string())
        .collect();
    c.orchestrator.as_ref().unwrap().signal(libc::SIGKILL);
    c.orchestrator
        .as_mut()
        .unwrap()
        .wait_exit(Duration::from_secs(10));
    c.start_orchestrator();
    c.wait_count("completed", 40, LONG);
    wait_until(LONG, "all results on disk", || c.results().len() >= 40);
    // a result recorded twice would be written by a later flush
    c.orch().wait_for_passes(FLUSH_TICKS, 2);
    let results = c.results();
    let mut seen: HashMap<String, u32> = HashMap::new();
    for r in &results {
        *seen
            .entry(r["task_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(seen.len(), 40, "no task lost");
    assert!(seen.values().all(|&n| n == 1), "none recorded twice: {seen:?}");
    for id in &done_before {
        assert_eq!(c.task(id)["attempt_count"], 1, "{id} ran again after the restart");
    }
    // what the workers ran: every task at least once, the completed ones once
    let ran: u64 = c
        .workers
        .iter()
        .map(|w| w.get("/metrics").json()["tasks_completed"].as_u64().unwrap())
        .sum();
    assert!((40..=44).contains(&ran), "ran {ran} times");
}

#[test]
fn the_same_file_dropped_twice_is_rejected_the_second_time() {
    let c = Cluster::start(&[WorkerSpec::new("w", 2)], &[]);
    std::fs::create_dir_all(c.path("task_queues")).unwrap();
    let file = json!({"tasks": [sim_task("dup_a", "python", 50, 1), sim_task("dup_b", "cython", 50, 1)]});
    std::fs::write(c.path("task_queues/batch.json"), file.to_string()).unwrap();
    c.wait_count("completed", 2, LONG);
    std::fs::write(c.path("task_queues/batch.json"), file.to_string()).unwrap();
    // the report is written after the file is moved: once it is there, both are
    wait_until(LONG, "the copy rejected", || {
        c.path("task_queues/rejected/batch.json.error.txt").exists()
    });
    assert!(c.path("task_queues/rejected/batch.json").exists());
    let report = std::fs::read_to_string(c.path("task_queues/rejected/batch.json.error.txt")).unwrap();
    assert!(
        report.contains("dup_a") && report.contains("dup_b") && report.contains("already known"),
        "{report}"
    );
    // rescans (that could take the copy after all) and flushes (that
    // would write a second run's results)
    c.orch().wait_for_passes(SCANS, 2);
    c.orch().wait_for_passes(FLUSH_TICKS, 2);
    assert_eq!(c.orch().get("/tasks").json()["total"], 2);
    assert_eq!(c.results().len(), 2, "nothing ran twice");
}

#[test]
fn files_present_before_start_up_are_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let w = Proc::start(dir.path(), &["worker", "--worker-id", "w", "--port", "0"], &[]);
    let port = w.addr.rsplit(':').next().unwrap().to_string();
    std::fs::write(
        dir.path().join("config_workers.json"),
        format!(r#"{{"workers": [{{"id": "w", "host": "127.0.0.1", "port": {port}, "capacity": 2}}]}}"#),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("task_queues")).unwrap();
    std::fs::write(
        dir.path().join("task_queues/early.json"),
        json!({"tasks": [sim_task("early", "python", 50, 1)]}).to_string(),
    )
    .unwrap();
    // temporary and foreign files are left alone
    std::fs::write(dir.path().join("task_queues/.hidden.json"), "{").unwrap();
    std::fs::write(dir.path().join("task_queues/copying.json.part"), "{").unwrap();
    std::fs::write(dir.path().join("task_queues/notes.txt"), "hello").unwrap();
    let o = Proc::start(dir.path(), &["orchestrator", "--port", "0"], FAST);
    wait_until(LONG, "the early task", || {
        let r = o.get("/tasks/early");
        r.status == 200 && r.json()["status"] == "completed"
    });
    // rescans of the folder: each could have taken them
    o.wait_for_passes(SCANS, 2);
    for name in [".hidden.json", "copying.json.part", "notes.txt"] {
        assert!(
            dir.path().join("task_queues").join(name).exists(),
            "{name} was touched"
        );
    }
    assert!(std::fs::read_dir(dir.path().join("task_queues/rejected"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn tasks_can_be_posted() {
    let c = Cluster::start(&[WorkerSpec::new("w", 2)], &[]);
    // one task
    let r = c
        .orch()
        .post("/tasks", &sim_task("one", "python", 50, 5).to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["queued"], 1);
    // a list
    let r = c.orch().post(
        "/tasks",
        &json!([
            sim_task("two", "cython", 50, 5),
            sim_task("three", "cython", 50, 5)
        ])
        .to_string(),
    );
    assert_eq!(r.status, 201);
    // a file's shape
    let r = c.orch().post(
        "/tasks",
        &json!({"metadata": {"description": "api"}, "tasks": [sim_task("four", "python", 50, 5)]})
            .to_string(),
    );
    assert_eq!(r.status, 201);
    c.wait_count("completed", 4, LONG);
    // duplicates: nothing queued
    let r = c.orch().post(
        "/tasks",
        &json!([
            sim_task("five", "python", 50, 5),
            sim_task("one", "python", 50, 5)
        ])
        .to_string(),
    );
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["duplicates"], json!(["one"]));
    assert_eq!(c.orch().get("/tasks/five").status, 404);
    // invalid: every problem with its path
    let r = c.orch().post(
        "/tasks",
        &json!([{"task_id": "x", "algorithm": "java"}, {"algorithm": "python"}]).to_string(),
    );
    assert_eq!(r.status, 422);
    let errors = r.json()["errors"].as_array().unwrap().len();
    assert!(errors >= 3, "{}", r.text());
    assert_eq!(c.orch().post("/tasks", "{not json").status, 400);
    assert_eq!(c.orch().get("/tasks?status=done").status, 400);
    assert_eq!(c.orch().get("/tasks?limit=0").status, 400);
    assert_eq!(c.orch().get("/tasks/..%2Fetc").status, 400);
    assert_eq!(c.orch().get("/tasks/unknown").status, 404);
    assert_eq!(c.orch().get("/nowhere").status, 404);
    assert_eq!(c.orch().delete("/stats").status, 405);
}

#[test]
fn a_worker_on_another_loopback_address() {
    let mut far = WorkerSpec::new("far", 2);
    far.host = "127.0.0.2";
    let c = Cluster::start(&[far], &[]);
    assert!(c.workers[0].addr.starts_with("127.0.0.2:"));
    c.wait_workers_up();
    post_tasks(&c, vec![sim_task("remote", "cython", 100, 10)]);
    c.wait_count("completed", 1, LONG);
    assert_eq!(worker_of(&c, "remote"), "far");
}

#[test]
fn a_second_orchestrator_on_the_same_database_is_refused_until_the_first_dies() {
    let mut c = Cluster::start(&[WorkerSpec::new("w1", 1)], &[]);
    let first = c.orch().addr.clone();
    let out = orquesta()
        .args(["orchestrator", "--port", "0"])
        .current_dir(c.dir.path())
        .output()
        .unwrap();
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("another orchestrator already uses data/orquesta.db")
            && said.contains(&format!("pid {}, http://{first}", c.orch().pid())),
        "{said}"
    );
    // the first one was not disturbed
    assert_eq!(c.orch().get("/health").status, 200);
    // a SIGKILL leaves no stale lock behind: a new one starts at once
    c.orch().signal(libc::SIGKILL);
    c.orchestrator
        .as_mut()
        .unwrap()
        .wait_exit(Duration::from_secs(10));
    c.start_orchestrator();
    assert_eq!(c.orch().get("/health").status, 200);
}

#[test]
fn results_are_written_as_soon_as_the_queue_drains() {
    // a flush interval far longer than the test: only the drain can write
    let c = Cluster::start(&[WorkerSpec::new("w1", 2)], &[("RESULTS_FLUSH_INTERVAL", "600")]);
    c.wait_workers_up();
    let tasks: Vec<Value> = (0..5)
        .map(|i| sim_task(&format!("d{i}"), "cython", 40, 20))
        .collect();
    std::fs::write(
        c.path("task_queues/batch.json"),
        json!({ "tasks": tasks }).to_string(),
    )
    .unwrap();
    wait_until(Duration::from_secs(60), "every result on disk", || {
        c.results().len() == 5
    });
    // a second batch after a quiet spell is written as promptly
    post_tasks(&c, vec![sim_task("late", "python", 40, 20)]);
    wait_until(Duration::from_secs(60), "the late result on disk", || {
        c.results().len() == 6
    });
}
