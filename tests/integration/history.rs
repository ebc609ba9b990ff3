//! History (issue 13): failed and cancelled tasks are recorded in
//! `results/task_failures_<ts>.json` with every attempt, once, also across
//! a restart; `attempts` in `GET /tasks/{id}` is the list; `orquesta purge`
//! and `HISTORY_RETENTION_DAYS` forget old history, after which the ids
//! are accepted again.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::common::*;

const LONG: Duration = Duration::from_secs(30);

fn post(c: &Cluster, tasks: Vec<Value>) {
    let r = c.orch().post("/tasks", &json!({ "tasks": tasks }).to_string());
    assert_eq!(r.status, 201, "{}", r.text());
}

/// Every entry of `results/task_failures_*.json`, and how many files.
fn failures(dir: &Path) -> (Vec<Value>, usize) {
    let mut out = Vec::new();
    let mut files = 0;
    for e in std::fs::read_dir(dir.join("results"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("task_failures_") && name.ends_with(".json") {
            files += 1;
            let v: Value = serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
            out.extend(v.as_array().unwrap().iter().cloned());
        }
    }
    (out, files)
}

fn entries_of<'a>(all: &'a [Value], id: &str) -> Vec<&'a Value> {
    all.iter().filter(|e| e["task_id"] == id).collect()
}

fn outcomes(attempts: &Value) -> Vec<String> {
    attempts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap_or("open").to_string())
        .collect()
}

#[test]
fn failed_and_cancelled_tasks_are_written_once_with_their_attempts() {
    let mut c = Cluster::start(&[WorkerSpec::new("w", 1)], &[("MAX_TASK_RETRIES", "1")]);
    c.wait_workers_up();
    post(&c, vec![serde_json::from_str(&sleep_task("long", 60.0)).unwrap()]);
    wait_until(LONG, "long running", || c.status_of("long") == "running");
    post(
        &c,
        vec![
            serde_json::from_str(&sleep_task("waiting", 0.1)).unwrap(),
            json!({"task_id": "boom", "algorithm": "__panic", "parameters": {}, "priority": "low",
                   "owner": "ana"}),
            json!({"task_id": "fine", "algorithm": "python",
                   "parameters": {"num_particles": 20, "num_steps": 5, "seed": 1}}),
        ],
    );
    for id in ["waiting", "long"] {
        let r = c.orch().delete(&format!("/tasks/{id}"));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    wait_until(LONG, "boom failed", || c.status_of("boom") == "failed");
    wait_until(LONG, "fine completed", || c.status_of("fine") == "completed");

    // GET /tasks/{id}: the attempts as a list, their number beside it
    let t = c.task("boom");
    assert_eq!(t["attempt_count"], 2, "{t}");
    assert_eq!(outcomes(&t["attempts"]), ["failed", "failed"], "{t}");
    assert!(t.get("attempts_detail").is_none(), "{t}");

    wait_until(LONG, "three failure records", || {
        failures(c.dir.path()).0.len() == 3
    });
    let (all, _) = failures(c.dir.path());
    let boom = entries_of(&all, "boom");
    assert_eq!(boom.len(), 1, "{all:?}");
    let boom = boom[0];
    assert_eq!(boom["status"], "failed");
    assert!(
        boom["error"]
            .as_str()
            .unwrap()
            .contains("failed after 2 attempts"),
        "{boom}"
    );
    assert_eq!(boom["source"], "api");
    assert_eq!(boom["priority"], "low");
    assert_eq!(boom["algorithm"], "__panic");
    assert_eq!(
        boom["owner"], "ana",
        "unknown fields as results echo them: {boom}"
    );
    assert_eq!(outcomes(&boom["attempts"]), ["failed", "failed"], "{boom}");
    for a in boom["attempts"].as_array().unwrap() {
        assert_eq!(a["worker_id"], "w", "{a}");
        assert!(a["started_at"].is_string() && a["ended_at"].is_string(), "{a}");
        assert!(a["error"].as_str().unwrap().contains("panicked"), "{a}");
    }
    let long = entries_of(&all, "long")[0];
    assert_eq!(long["status"], "cancelled");
    assert_eq!(long["error"], "cancelled by request");
    assert_eq!(outcomes(&long["attempts"]), ["cancelled"], "{long}");
    assert_eq!(entries_of(&all, "waiting")[0]["status"], "cancelled");
    assert!(
        entries_of(&all, "fine").is_empty(),
        "a completed task is in results, not here"
    );

    // retried and completed: its failure stays in the failures file, its
    // result goes to a results file
    let r = c.orch().post("/tasks/waiting/retry", "");
    assert_eq!(r.status, 200, "{}", r.text());
    wait_until(LONG, "waiting completed", || {
        c.status_of("waiting") == "completed"
    });
    wait_until(LONG, "its result in a file", || {
        c.results().iter().any(|r| r["task_id"] == "waiting")
    });

    // a SIGKILL and a restart write nothing twice
    let (before, files) = failures(c.dir.path());
    c.orchestrator.as_ref().unwrap().signal(libc::SIGKILL);
    c.restart_orchestrator();
    c.wait_workers_up();
    // flush ticks: what the restart would write twice is written by then
    c.orch().wait_for_passes(FLUSH_TICKS, 3);
    let (after, files_after) = failures(c.dir.path());
    assert_eq!((after.len(), files_after), (before.len(), files), "{after:?}");
    assert_eq!(entries_of(&after, "waiting").len(), 1);
    assert_eq!(
        c.results().iter().filter(|r| r["task_id"] == "waiting").count(),
        1
    );
}

/// `orquesta` run in `dir` (no `.env` of the repository read).
fn orquesta_in(dir: &Path, args: &[&str]) -> std::process::Output {
    orquesta()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the orquesta binary runs")
}

#[test]
fn purge_forgets_written_history_and_the_ids_are_accepted_again() {
    let c = Cluster::start(&[WorkerSpec::new("w", 2)], &[]);
    c.wait_workers_up();
    let file = write_batch(&c.path("task_queues"), "batch.json", small_tasks("p", 5));
    drop(file);
    wait_until(LONG, "five results written", || c.results().len() == 5);
    let url = format!("http://{}", c.orch().addr);
    let tomorrow = orquesta::util::time::iso_at(orquesta::util::time::unix_now() + 86_400.0);

    let bad = orquesta_in(c.dir.path(), &["purge", "--before", "last week", "--url", &url]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("YYYY-MM-DD"), "{}", stderr(&bad));

    let dry = orquesta_in(
        c.dir.path(),
        &["purge", "--before", &tomorrow, "--dry-run", "--url", &url],
    );
    assert!(dry.status.success(), "{}", stderr(&dry));
    let text = stdout(&dry);
    assert!(text.contains("dry run: 5 ended tasks"), "{text}");
    assert!(text.contains("1 file record would be forgotten"), "{text}");
    assert!(text.contains("no longer known"), "{text}");
    assert_eq!(c.status_of("p0"), "completed", "a dry run removes nothing");

    let done = orquesta_in(
        c.dir.path(),
        &["purge", "--before", &tomorrow, "--url", &url, "--vacuum"],
    );
    assert!(done.status.success(), "{}", stderr(&done));
    let text = stdout(&done);
    assert!(text.starts_with("removed 5 ended tasks"), "{text}");
    assert!(text.contains("database rebuilt (vacuum)"), "{text}");
    let r = c.orch().get("/tasks/p0");
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(c.orch().get("/stats").json()["tasks"]["total"], 0);

    // the same ids in a new file are accepted and run again
    write_batch(&c.path("task_queues"), "again.json", small_tasks("p", 5));
    wait_until(LONG, "run again", || {
        c.orch().get("/tasks/p4").status == 200 && c.status_of("p4") == "completed"
    });
    assert!(!c.path("task_queues/rejected/again.json.error.txt").exists());
    // and a bad request is a clear JSON error
    let r = c.orch().post("/admin/purge", r#"{"before": "soon"}"#);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["code"], "bad_request");
}

#[test]
fn retention_forgets_ended_history_but_never_a_queued_task() {
    // 0.00002 days = 1.7 s, applied every second
    let c = Cluster::start(
        &[WorkerSpec {
            algorithms: "python",
            ..WorkerSpec::new("w", 2)
        }],
        &[("HISTORY_RETENTION_DAYS", "0.00002")],
    );
    c.wait_workers_up();
    post(&c, small_tasks("r", 3));
    // no worker runs cython: this one stays queued
    post(
        &c,
        vec![json!({"task_id": "stuck", "algorithm": "cython",
                    "parameters": {"num_particles": 20, "num_steps": 5, "seed": 1}})],
    );
    wait_until(LONG, "results written", || c.results().len() == 3);
    wait_until(LONG, "forgotten", || c.orch().get("/tasks/r0").status == 404);
    wait_until(LONG, "all forgotten", || {
        (0..3).all(|i| c.orch().get(&format!("/tasks/r{i}")).status == 404)
    });
    assert_eq!(c.status_of("stuck"), "queued");
    let log = || {
        std::fs::read_to_string(c.path("logs/elastic_orchestrator.log")).unwrap_or_default() + &c.orch().log()
    };
    // written by the log's own thread, a moment after the purge
    wait_until(LONG, "the purge logged", || {
        log().contains("HISTORY_RETENTION_DAYS")
    });
    assert!(
        log().contains("HISTORY_RETENTION_DAYS"),
        "the purge is logged: {}",
        log()
    );
}
