//! `LOAD_BALANCING_ALGORITHM=shortest_expected_finish` end to end: real
//! workers of capacity 1 and 2 run a small mixed batch (both kernels,
//! several sizes and priorities) to completion, each task once.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{wait_until, worker_row, Cluster, WorkerSpec};

const LONG: Duration = Duration::from_secs(120);

fn task(id: String, algorithm: &str, n: u64, steps: u64, priority: &str) -> Value {
    json!({"task_id": id, "algorithm": algorithm, "priority": priority,
           "parameters": {"num_particles": n, "num_steps": steps, "seed": 5}})
}

#[test]
fn shortest_expected_finish_runs_a_mixed_batch_to_completion_on_two_workers() {
    let c = Cluster::start(
        &[WorkerSpec::new("one", 1), WorkerSpec::new("two", 2)],
        &[("LOAD_BALANCING_ALGORITHM", "shortest_expected_finish")],
    );
    c.wait_workers_up();
    let stats = c.orch().get("/stats").json();
    assert_eq!(
        stats["load_balancing_algorithm"], "shortest_expected_finish",
        "{stats}"
    );

    // reference (python) N 20–120, optimized (cython) N 100–600, three
    // priorities: small enough for a debug build on a busy machine
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let priority = ["high", "medium", "low"][i as usize % 3];
        tasks.push(task(
            format!("ref{i}"),
            "python",
            20 + 15 * i,
            10 + 5 * i,
            priority,
        ));
        tasks.push(task(
            format!("opt{i}"),
            "cython",
            100 + 70 * i,
            20 + 10 * i,
            priority,
        ));
    }
    let r = c.orch().post("/tasks", &json!({ "tasks": tasks }).to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    c.wait_count("completed", 16, LONG);

    // every task once, with its own result
    wait_until(LONG, "results on disk", || c.results().len() == 16);
    let results = c.results();
    for i in 0..8 {
        for id in [format!("ref{i}"), format!("opt{i}")] {
            let mine: Vec<&Value> = results.iter().filter(|r| r["task_id"] == id.as_str()).collect();
            assert_eq!(mine.len(), 1, "{id}: {mine:?}");
            assert_eq!(mine[0]["result"]["status"], "completed", "{:?}", mine[0]);
        }
    }
    // both workers took part, and their slots are all free again
    let mut done = 0;
    for w in ["one", "two"] {
        let row = worker_row(c.orch(), w);
        let n = row["tasks_completed"].as_u64().unwrap();
        assert!(n > 0, "{w} ran nothing: {row}");
        assert_eq!(row["in_flight"], 0, "{row}");
        done += n;
    }
    assert_eq!(done, 16);
}
