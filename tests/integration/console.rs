//! What `orquesta up` and `orquesta run` print on the terminal, `run
//! --results` beside a running cluster, and one task followed through the
//! orchestrator's log by its id.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{
    config_port, orquesta, stdout, wait_until, write_batch, Cluster, Proc, WorkerSpec, FAST,
};

const LONG: Duration = Duration::from_secs(60);

fn sleeper(id: &str, seconds: f64) -> Value {
    json!({"task_id": id, "algorithm": "__sleep", "parameters": {"seconds": seconds}})
}

fn panicker(id: &str) -> Value {
    json!({"task_id": id, "algorithm": "__panic", "parameters": {}})
}

/// A temporary folder whose `config_workers.json` names one worker, `w1`,
/// with two slots on a free port (returned): what `orquesta up` starts there.
fn one_worker_folder() -> (tempfile::TempDir, u16) {
    let dir = tempfile::tempdir().unwrap();
    // up starts the worker at the port the file names (see config_port)
    let port = config_port();
    std::fs::write(
        dir.path().join("config_workers.json"),
        json!({"workers": [{"id": "w1", "host": "127.0.0.1", "port": port, "capacity": 2,
            "algorithms": ["python", "cython"]}]})
        .to_string(),
    )
    .unwrap();
    (dir, port)
}

#[test]
fn up_shows_start_up_workers_files_progress_failures_and_a_summary_but_no_task_lines() {
    let (dir, port) = one_worker_folder();
    let mut env = FAST.to_vec();
    env.push(("MAX_TASK_RETRIES", "0"));
    let mut up = Proc::start(dir.path(), &["up", "--port", "0"], &env);
    wait_until(LONG, "the worker up", || up.get("/workers").json()["up"] == 1);
    let queue = dir.path().join("task_queues");
    std::fs::create_dir_all(&queue).unwrap();
    // long enough to span several looks at the queue: a progress line
    let mut tasks: Vec<Value> = (0..5).map(|i| sleeper(&format!("ok{i}"), 0.6)).collect();
    tasks.push(panicker("boom1"));
    write_batch(dir.path(), "batch_a.json", tasks);
    std::fs::rename(dir.path().join("batch_a.json"), queue.join("batch_a.json")).unwrap();
    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"tasks": [{"task_id": "x", "algorithm": "java"}]}"#,
    )
    .unwrap();
    std::fs::rename(dir.path().join("bad.json"), queue.join("bad.json")).unwrap();
    wait_until(LONG, "the batch over", || {
        let s = up.get("/stats").json();
        s["tasks"]["by_status"]["completed"] == 5 && s["tasks"]["by_status"]["failed"] == 1
    });
    wait_until(LONG, "the batch said done", || {
        up.log().contains("batch done: 6 tasks ended")
    });
    up.signal(libc::SIGINT);
    assert_eq!(up.wait_exit(LONG), Some(0), "{}", up.log());
    let said = up.log();
    for expected in [
        "orquesta up: orchestrator at http://127.0.0.1:",
        ", dashboard http://127.0.0.1:",
        "logs/elastic_orchestrator.log",
        "results go to",
        &format!("worker w1 up at 127.0.0.1:{port}"),
        "file taken: batch_a.json (6 tasks)",
        "file rejected: bad.json: tasks[0].algorithm",
        "bad.json.error.txt",
        "task failed: boom1 after 1 attempt: ",
        "progress ",
        "(5 completed, 1 failed, 0 cancelled)",
        "summary: 6 tasks ended: 5 completed, 1 failed, 0 cancelled",
        "results files written:",
    ] {
        assert!(said.contains(expected), "no {expected:?} in:\n{said}");
    }
    assert_eq!(worker_row(&said, "w1"), (5, 1), "{said}");
    // the reason is on the failure line
    let failure = said.lines().find(|l| l.contains("task failed: boom1")).unwrap();
    assert!(failure.contains("panic"), "{failure}");
    // not every task of every worker: those lines are in the log files
    for line in said.lines() {
        assert!(
            !line.contains("task started") && !line.contains("tasks dispatched") && !line.contains("ok3"),
            "a per-task line on the terminal: {line}\n{said}"
        );
    }
    let worker_log = std::fs::read_to_string(dir.path().join("logs/worker_service.log")).unwrap();
    assert!(
        worker_log.contains("task=ok3"),
        "the worker's lines stay in its log file"
    );
}

/// The row of `worker` in a summary's per-worker table: completed, failed.
fn worker_row(text: &str, worker: &str) -> (u64, u64) {
    text.lines()
        .find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            match cols[..] {
                [w, c, f] if w == worker => Some((c.parse().ok()?, f.parse().ok()?)),
                _ => None,
            }
        })
        .unwrap_or_else(|| panic!("no row for {worker} in:\n{text}"))
}

#[test]
fn run_beside_a_running_cluster_keeps_to_its_own_folder_and_writes_results_where_it_says() {
    let cluster = Cluster::start(&[WorkerSpec::new("w1", 1)], &[]);
    cluster.wait_workers_up();
    let lock = cluster.path("data/orquesta.db.lock");
    let lock_before = std::fs::read_to_string(&lock).unwrap();
    let results = tempfile::tempdir().unwrap();
    let file = write_batch(
        cluster.dir.path(),
        "mine.json",
        vec![sleeper("r1", 0.05), sleeper("r2", 0.05), panicker("r3")],
    );
    // from the cluster's own folder, with its workers file (the same
    // worker ids): the run starts its own workers on free ports
    let out = orquesta()
        .args(["run", file.to_str().unwrap(), "--results"])
        .arg(results.path())
        .current_dir(cluster.dir.path())
        .envs(FAST.iter().copied())
        .env("MAX_TASK_RETRIES", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = stdout(&out);
    let err = crate::common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "one task failed:\n{text}\n{err}");
    let shown = results.path().display().to_string();
    assert!(text.contains(&format!("results go to  {shown}")), "{text}");
    assert!(text.contains(&format!("Results (in {shown}):")), "{text}");
    assert!(text.contains("task failed: r3 after 2 attempts"), "{text}");
    // the failed task counts once for the worker it failed on, though it
    // ran there twice
    assert_eq!(worker_row(&text, "w1"), (2, 1), "{text}");
    let written: Vec<String> = std::fs::read_dir(results.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("task_results_"))
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    // the failed task is on disk too, and the summary names that file
    let failures: Vec<String> = std::fs::read_dir(results.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("task_failures_"))
        .collect();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        text.contains(&failures[0]),
        "the summary names {}:\n{text}",
        failures[0]
    );
    // nothing of the run in the cluster's folder, database or lock
    let cluster_results = std::fs::read_dir(cluster.path("results"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("task_results_"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(
        cluster_results, 0,
        "the run's results went into the cluster's results/"
    );
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), lock_before);
    assert_eq!(cluster.orch().get("/tasks/r1").status, 404);
    assert_eq!(cluster.orch().get("/stats").json()["tasks"]["total"], 0);
}

#[test]
fn one_task_is_followed_through_the_orchestrator_log_by_its_id() {
    let cluster = Cluster::start(&[WorkerSpec::new("w1", 2)], &[]);
    cluster.wait_workers_up();
    let queue = cluster.path("task_queues");
    std::fs::create_dir_all(&queue).unwrap();
    write_batch(
        cluster.dir.path(),
        "traced.json",
        vec![
            sleeper("trace_a", 0.01),
            sleeper("trace_b", 0.01),
            sleeper("trace_c", 0.01),
        ],
    );
    std::fs::rename(cluster.path("traced.json"), queue.join("traced.json")).unwrap();
    cluster.wait_count("completed", 3, LONG);
    let log_path = cluster.path("logs/elastic_orchestrator.log");
    // the line that records trace_b's result: every stage before it is in
    // the log by then (the lines are written in order)
    wait_until(LONG, "the results recorded line", || {
        std::fs::read_to_string(&log_path).is_ok_and(|l| {
            l.lines()
                .any(|line| line.contains("results recorded") && line.contains("trace_b"))
        })
    });
    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("trace_b")).collect();
    let at = |what: &str| {
        lines
            .iter()
            .position(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no {what:?} line naming trace_b in:\n{}", lines.join("\n")))
    };
    let read = at("task ids read");
    let dispatched = at("tasks dispatched");
    let ended = at("attempts ended");
    let written = at("results recorded");
    assert!(
        read < dispatched && dispatched < ended && ended < written,
        "{}",
        lines.join("\n")
    );
    assert!(lines[read].contains("file=traced.json"), "{}", lines[read]);
    // the attempt id of the dispatch is the one that ended
    let attempt = lines[dispatched]
        .split("trace_b@")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .unwrap()
        .to_string();
    assert!(lines[dispatched].contains("worker=w1"), "{}", lines[dispatched]);
    assert!(
        lines[ended].contains(&format!("trace_b@{attempt}=completed:")),
        "{}",
        lines[ended]
    );
    assert!(
        lines[written].contains("file=task_results_"),
        "{}",
        lines[written]
    );
    // the file's own line says it was queued (trace lines come in
    // windows, so it may stand before or after the ids)
    assert!(log.contains("task file queued file=traced.json tasks=3"), "{log}");
}

#[test]
fn up_sums_up_only_what_ended_while_it_ran() {
    let (dir, _) = one_worker_folder();
    for (round, n) in [(1, 3u64), (2, 1)] {
        let mut up = Proc::start(dir.path(), &["up", "--port", "0"], FAST);
        wait_until(LONG, "the worker up", || up.get("/workers").json()["up"] == 1);
        let tasks: Vec<Value> = (0..n).map(|i| sleeper(&format!("s{round}_{i}"), 0.01)).collect();
        let r = up.post("/tasks", &json!({ "tasks": tasks }).to_string());
        assert_eq!(r.status, 201, "{}", r.text());
        wait_until(LONG, "the tasks completed", || {
            up.get("/stats").json()["tasks"]["by_status"]["completed"]
                == json!(if round == 1 { 3 } else { 4 })
        });
        up.signal(libc::SIGINT);
        assert_eq!(up.wait_exit(LONG), Some(0), "{}", up.log());
        let said = up.log();
        assert!(
            said.contains(&format!(
                "summary: {n} task{} ended: {n} completed",
                if n == 1 { "" } else { "s" }
            )),
            "round {round}:\n{said}"
        );
        assert_eq!(worker_row(&said, "w1"), (n, 0), "round {round}:\n{said}");
    }
}
