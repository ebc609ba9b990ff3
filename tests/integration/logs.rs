//! Logs a person can follow (issue 13): each worker's lines carry its id
//! (local workers share one `worker_service.log`), attempt ids print as
//! plain numbers, log files rotate by size (`LOG_MAX_BYTES`, `LOG_FILES`),
//! and `LOG_FORMAT=json` writes one JSON object a line.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

fn worker_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("logs/worker_service.log")).unwrap_or_default()
}

fn worker_with(dir: &Path, id: &str, envs: &[(&str, &str)]) -> Proc {
    let mut all = vec![("ORQUESTA_TEST_KERNELS", "1")];
    all.extend_from_slice(envs);
    Proc::start(dir, &["worker", "--worker-id", id, "--port", "0"], &all)
}

#[test]
fn two_workers_in_one_folder_are_told_apart_and_attempts_print_plainly() {
    let c = Cluster::start(&[WorkerSpec::new("w1", 1), WorkerSpec::new("w2", 1)], &[]);
    c.wait_workers_up();
    let r = c
        .orch()
        .post("/tasks", &json!({ "tasks": small_tasks("t", 8) }).to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    c.wait_count("completed", 8, Duration::from_secs(60));
    // lines reach the file from a writer thread of their own, a moment later
    wait_until(Duration::from_secs(30), "8 task finished lines", || {
        worker_log(c.dir.path()).matches("task finished").count() == 8
    });
    let log = worker_log(c.dir.path());
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "the workers wrote nothing");
    for l in &lines {
        assert!(
            l.starts_with("worker=w1 ") || l.starts_with("worker=w2 "),
            "line without its worker: {l}"
        );
    }
    for id in ["w1", "w2"] {
        assert!(
            lines.iter().any(|l| l.starts_with(&format!("worker={id} "))),
            "no line of {id}:\n{log}"
        );
    }
    let started: Vec<&&str> = lines.iter().filter(|l| l.contains("task started")).collect();
    assert_eq!(started.len(), 8, "{log}");
    for l in started {
        let attempt = l.split("attempt=").nth(1).expect("an attempt field");
        let number: String = attempt.chars().take_while(char::is_ascii_digit).collect();
        assert!(!number.is_empty(), "attempt is not a plain number: {l}");
    }
    assert!(!log.contains("Some("), "{log}");
}

#[test]
fn a_task_posted_by_hand_logs_attempt_none() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker_with(dir.path(), "wh", &[]);
    let r = w.post("/execute", &sleep_task("by-hand", 0.01));
    assert_eq!(r.status, 200, "{}", r.text());
    wait_until(Duration::from_secs(30), "the task finished line", || {
        worker_log(dir.path()).contains("task finished")
    });
    let log = worker_log(dir.path());
    assert!(log.contains("attempt=none"), "{log}");
    assert!(!log.contains("None"), "{log}");
}

#[test]
fn log_files_rotate_by_size_keeping_log_files() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker_with(
        dir.path(),
        "wr",
        &[("LOG_MAX_BYTES", "20000"), ("LOG_FILES", "2")],
    );
    // each task logs two lines of ~150 bytes: 200 tasks make ~60 kB
    for i in 0..200 {
        let r = w.post("/execute", &sleep_task(&format!("rot{i}"), 0.0));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let logs = dir.path().join("logs");
    // the newest task's lines are in the current file, whole (once the
    // writer thread has written them)
    wait_until(Duration::from_secs(30), "the last task's lines", || {
        std::fs::read_to_string(logs.join("worker_service.log"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("rot199") && l.contains("task finished"))
    });
    let mut names: Vec<String> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("worker_service.log"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "worker_service.log",
            "worker_service.log.1",
            "worker_service.log.2"
        ]
    );
    for n in &names {
        let size = std::fs::metadata(logs.join(n)).unwrap().len();
        assert!(size <= 20_000, "{n} is {size} bytes");
    }
    for n in &names[1..] {
        let size = std::fs::metadata(logs.join(n)).unwrap().len();
        assert!(
            size > 19_000,
            "a rotated file is near the limit: {n} is {size} bytes"
        );
    }
    // the newest task's lines are in the current file, whole
    assert!(std::fs::read_to_string(logs.join("worker_service.log"))
        .unwrap()
        .contains("rot199"));
}

#[test]
fn json_lines_carry_timestamp_level_message_and_worker() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker_with(dir.path(), "wj", &[("LOG_FORMAT", "json")]);
    let r = w.post(
        "/execute",
        &json!({"task_id": "j1", "algorithm": "__sleep",
        "parameters": {"seconds": 0.01}, "attempt_id": 7})
        .to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    wait_until(Duration::from_secs(30), "the task finished line", || {
        worker_log(dir.path()).contains("task finished")
    });
    let log = worker_log(dir.path());
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty());
    for l in &lines {
        assert!(
            l["timestamp"].is_string() && l["level"].is_string() && l["message"].is_string(),
            "{l}"
        );
        assert_eq!(l["worker"], "wj", "{l}");
    }
    let started = lines
        .iter()
        .find(|l| l["message"] == "task started")
        .expect("a task started line");
    assert_eq!(started["fields"]["task"], "j1");
    assert_eq!(started["fields"]["attempt"], "7");
}

#[test]
fn an_unknown_log_format_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = orquesta()
        .args(["worker", "--port", "0"])
        .current_dir(dir.path())
        .env("LOG_FORMAT", "yaml")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // a worker that accepted the value would serve on: stop it, and fail
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the worker started with LOG_FORMAT=yaml");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("LOG_FORMAT") && err.contains("text, json"), "{err}");
}

/// An orchestrator whose standard output nobody reads (a pipe left
/// undrained, a terminal paused with Ctrl-S) keeps working and still
/// stops when told to: its lines there are a copy of the log file's.
#[cfg(unix)]
#[test]
fn an_orchestrator_whose_output_nobody_reads_keeps_answering_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config_workers.json"), r#"{"workers": []}"#).unwrap();
    let mut child = orquesta()
        .args(["orchestrator"])
        .current_dir(dir.path())
        .env("ORCHESTRATOR_PORT", "0")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // read up to the address, then never again (the pipe stays open)
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let addr = loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).unwrap() > 0, "the orchestrator exited");
        if let Some(rest) = line.strip_prefix("listening on http://") {
            break rest.trim().to_string();
        }
    };
    // far more log than a pipe holds (64 KiB): every batch lists its ids
    let log = dir.path().join("logs/elastic_orchestrator.log");
    let log_len = || std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let mut batch = 0;
    while log_len() < 1 << 20 {
        let tasks: Vec<Value> = small_tasks(&format!("b{batch}_with_a_long_name_"), 1_000);
        let r = http(
            "POST",
            &addr,
            "/tasks",
            Some(json!({ "tasks": tasks }).to_string().as_bytes()),
        );
        assert_eq!(r.status, 201, "batch {batch}: {}", r.text());
        batch += 1;
        assert!(batch < 400, "the log did not grow: {} bytes", log_len());
    }
    // still answering
    assert_eq!(http("GET", &addr, "/health", None).status, 200);
    // and it stops
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        status.is_some(),
        "the orchestrator did not exit on SIGTERM with its output unread"
    );
    drop(out);
}
