//! Records that tell the whole truth (issue 13): a task's unknown fields
//! come back in `GET /tasks/{id}` and in its results; a cancelled running
//! task's attempt is closed; a task back in the queue shows no stale error.

use std::time::Duration;

use serde_json::{json, Value};

use super::common::*;

const LONG: Duration = Duration::from_secs(30);

fn post(c: &Cluster, tasks: Vec<Value>) {
    let r = c.orch().post("/tasks", &json!({ "tasks": tasks }).to_string());
    assert_eq!(r.status, 201, "{}", r.text());
}

#[test]
fn unknown_fields_come_back_in_the_task_view_and_in_both_results() {
    let c = Cluster::start(&[WorkerSpec::new("w", 1)], &[]);
    c.wait_workers_up();
    post(
        &c,
        vec![json!({"task_id": "owned", "algorithm": "python",
            "parameters": {"num_particles": 20, "num_steps": 5, "seed": 1},
            "owner": "ana", "tags": ["x"]})],
    );
    wait_until(LONG, "completed", || c.status_of("owned") == "completed");
    let t = c.task("owned");
    assert_eq!(t["extra"], json!({"owner": "ana", "tags": ["x"]}), "{t}");
    // the orchestrator's recorded result
    assert_eq!(t["result"]["owner"], "ana", "{t}");
    assert_eq!(t["result"]["tags"], json!(["x"]), "{t}");
    // the results file
    wait_until(LONG, "in a results file", || {
        c.results().iter().any(|r| r["task_id"] == "owned")
    });
    let r = c.results().into_iter().find(|r| r["task_id"] == "owned").unwrap();
    assert_eq!(r["owner"], "ana", "{r}");
    assert_eq!(r["tags"], json!(["x"]), "{r}");
    // a task without unknown fields shows no empty `extra`
    post(
        &c,
        vec![json!({"task_id": "plain", "algorithm": "python",
            "parameters": {"num_particles": 20, "num_steps": 5, "seed": 1}})],
    );
    wait_until(LONG, "completed", || c.status_of("plain") == "completed");
    assert!(c.task("plain").get("extra").is_none());
}

#[test]
fn cancelling_a_running_task_closes_its_attempt() {
    let c = Cluster::start(&[WorkerSpec::new("w", 1)], &[]);
    c.wait_workers_up();
    post(&c, vec![serde_json::from_str(&sleep_task("long", 60.0)).unwrap()]);
    wait_until(LONG, "running", || c.status_of("long") == "running");
    let reports = c.orch().metric(ATTEMPT_REPORTS);
    let r = c.orch().delete("/tasks/long");
    assert_eq!(r.status, 200, "{}", r.text());
    let t = c.task("long");
    assert_eq!(t["status"], "cancelled", "{t}");
    let attempts = t["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{t}");
    assert_eq!(attempts[0]["outcome"], "cancelled", "{t}");
    assert!(attempts[0]["ended_at"].is_string(), "{t}");
    // the worker's answer to the cancel does not reopen or rewrite it
    wait_until(LONG, "stopped on the worker", || {
        c.workers[0].get("/current").json()["count"] == 0
    });
    // its answer has reached the task queue, and whatever that changed
    // is in the database
    wait_until(LONG, "the worker's answer handled", || {
        c.orch().metric(ATTEMPT_REPORTS) > reports
    });
    store_barrier(c.orch());
    let t = c.task("long");
    assert_eq!(t["attempts"][0]["outcome"], "cancelled", "{t}");
}

#[test]
fn a_task_waiting_for_its_retry_shows_no_stale_error() {
    let c = Cluster::start(
        &[WorkerSpec::new("w", 1)],
        &[
            ("MAX_TASK_RETRIES", "1"),
            ("RETRY_BACKOFF_BASE", "3"),
            ("RETRY_BACKOFF_MAX", "3"),
        ],
    );
    c.wait_workers_up();
    post(
        &c,
        vec![json!({"task_id": "boom", "algorithm": "__panic", "parameters": {}})],
    );
    wait_until(LONG, "backing off", || {
        let t = c.task("boom");
        t["status"] == "queued" && t["attempt_count"] == 1
    });
    let t = c.task("boom");
    assert!(t["error"].is_null(), "a queued task has no error of its own: {t}");
    // why it waits, and the attempt's own error, are still told
    assert!(
        t["waiting"]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("panicked"),
        "{t}"
    );
    assert!(
        t["attempts"][0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("panicked"),
        "{t}"
    );
    // the retry fails too: now, and only now, the task has an error
    wait_until(LONG, "failed", || c.status_of("boom") == "failed");
    let t = c.task("boom");
    assert!(t["error"].as_str().unwrap_or("").contains("panicked"), "{t}");
    // retried by hand: it fails again and waits for its retry, again
    // with no error of its own
    let r = c.orch().post("/tasks/boom/retry", "");
    assert_eq!(r.status, 200, "{}", r.text());
    wait_until(LONG, "backing off again", || {
        let t = c.task("boom");
        t["status"] == "queued" && t["attempts"].as_array().map_or(0, Vec::len) == 3
    });
    let t = c.task("boom");
    assert!(t["error"].is_null(), "{t}");
}
