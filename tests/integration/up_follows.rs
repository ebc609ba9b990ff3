//! `orquesta up` follows the workers file while it runs: a local worker
//! added is started, one removed is drained and its process stopped, and
//! the exit summary counts every worker that ran a task meanwhile.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{sim_task, sleep_task, wait_until, worker_row, Proc, FAST};
use crate::probes::config_port;

const LONG: Duration = Duration::from_secs(60);

/// Writes `config_workers.json` in `dir`: each worker `(id, port,
/// algorithms)` on 127.0.0.1 with one slot.
fn write_workers(dir: &Path, workers: &[(&str, u16, &[&str])]) {
    let list: Vec<Value> = workers
        .iter()
        .map(|(id, port, algorithms)| {
            json!({"id": id, "host": "127.0.0.1", "port": port, "capacity": 1, "algorithms": algorithms})
        })
        .collect();
    // written aside and renamed: the watcher never reads half a file
    let aside = dir.join("config_workers.json.new");
    std::fs::write(&aside, json!({ "workers": list }).to_string()).unwrap();
    std::fs::rename(aside, dir.join("config_workers.json")).unwrap();
}

/// `orquesta up` in `dir` with these workers in its file, on port 0.
fn up_with(dir: &Path, workers: &[(&str, u16, &[&str])]) -> Proc {
    write_workers(dir, workers);
    Proc::start(dir, &["up", "--port", "0"], FAST)
}

fn state(up: &Proc, id: &str) -> Value {
    worker_row(up, id)["state"].clone()
}

fn serves(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// The row of `worker` in the exit summary's per-worker table: completed,
/// failed; `None` when it has no row.
fn summary_row(text: &str, worker: &str) -> Option<(u64, u64)> {
    let summary = &text[text.find("summary: ")?..];
    summary.lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        match cols[..] {
            [w, c, f] if w == worker => Some((c.parse().ok()?, f.parse().ok()?)),
            _ => None,
        }
    })
}

/// Stops `up` with Ctrl-C and returns what it printed.
fn stop(mut up: Proc) -> String {
    up.signal(libc::SIGINT);
    assert_eq!(up.wait_exit(LONG), Some(0), "{}", up.log());
    up.log()
}

#[test]
fn up_starts_a_local_worker_added_to_the_workers_file() {
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (config_port(), config_port());
    let up = up_with(dir.path(), &[("a1", p1, &["python"])]);
    wait_until(LONG, "a1 up", || state(&up, "a1") == "up");
    write_workers(dir.path(), &[("a1", p1, &["python"]), ("a2", p2, &["cython"])]);
    wait_until(LONG, "a2 started by up", || state(&up, "a2") == "up");
    assert!(serves(p2), "a2 answers on the port the file names");
    // only a2 runs the optimized kernel: it takes work
    let r = up.post(
        "/tasks",
        &format!(r#"{{"tasks": [{}]}}"#, sim_task("opt1", "cython", 20, 5, 1)),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    wait_until(LONG, "opt1 done", || {
        up.get("/tasks/opt1").json()["status"] == "completed"
    });
    assert_eq!(up.get("/tasks/opt1").json()["worker_id"], "a2");
    let said = stop(up);
    assert!(
        said.contains("a2 | added to the workers file: starting it"),
        "{said}"
    );
    // started once: not stopped by its starting thread's end and restarted
    assert!(!said.contains("a2 | exited"), "{said}");
    assert_eq!(summary_row(&said, "a2"), Some((1, 0)), "{said}");
    assert!(!serves(p2), "a2 stopped with up");
}

#[test]
fn up_drains_then_stops_a_local_worker_removed_from_the_workers_file() {
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (config_port(), config_port());
    let up = up_with(dir.path(), &[("r2", p2, &["python"])]);
    wait_until(LONG, "r2 up", || state(&up, "r2") == "up");
    let r = up.post(
        "/tasks",
        &format!(r#"{{"tasks": [{}]}}"#, sleep_task("busy", 2.0)),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    wait_until(LONG, "busy running on r2", || {
        up.get("/tasks/busy").json()["status"] == "running"
    });
    // r2 out, r1 in
    write_workers(dir.path(), &[("r1", p1, &["python"])]);
    wait_until(LONG, "r2 draining", || state(&up, "r2") == "draining");
    assert!(serves(p2), "r2 still runs its task");
    wait_until(LONG, "r2 let go", || state(&up, "r2").is_null());
    let busy = up.get("/tasks/busy").json();
    assert_eq!(busy["status"], "completed", "the drain let the task end: {busy}");
    assert_eq!(busy["worker_id"], "r2", "{busy}");
    wait_until(LONG, "r2's process stopped", || !serves(p2));
    wait_until(LONG, "r1 started by up", || state(&up, "r1") == "up");
    let said = stop(up);
    assert!(
        said.contains("r2 | removed from the workers file and drained: stopping it"),
        "{said}"
    );
    assert!(!said.contains("r1 | exited"), "{said}");
}

#[test]
fn up_summary_counts_a_worker_removed_while_it_ran() {
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (config_port(), config_port());
    let up = up_with(dir.path(), &[("s1", p1, &["python"]), ("s2", p2, &["cython"])]);
    wait_until(LONG, "both up", || up.get("/workers").json()["up"] == 2);
    // one task each: the kernel decides where
    let tasks = format!(
        r#"{{"tasks": [{}, {}]}}"#,
        sim_task("ref1", "python", 20, 5, 1),
        sim_task("opt1", "cython", 20, 5, 2)
    );
    let r = up.post("/tasks", &tasks);
    assert_eq!(r.status, 201, "{}", r.text());
    wait_until(LONG, "both done", || {
        up.get("/stats").json()["tasks"]["by_status"]["completed"] == 2
    });
    write_workers(dir.path(), &[("s1", p1, &["python"])]);
    wait_until(LONG, "s2 let go", || state(&up, "s2").is_null());
    let said = stop(up);
    assert_eq!(summary_row(&said, "s1"), Some((1, 0)), "{said}");
    assert_eq!(
        summary_row(&said, "s2"),
        Some((1, 0)),
        "the removed worker keeps its share: {said}"
    );
}

#[test]
fn a_second_up_in_the_same_folder_is_refused_before_it_touches_a_worker() {
    let dir = tempfile::tempdir().unwrap();
    let p1 = config_port();
    let up = up_with(dir.path(), &[("s1", p1, &["python"])]);
    wait_until(LONG, "s1 up", || state(&up, "s1") == "up");
    let out = crate::common::orquesta()
        .args(["up", "--port", "0"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("another orchestrator already uses"), "{said}");
    // it neither adopted the first one's worker nor started one
    assert!(!said.contains("s1 |"), "{said}");
    assert_eq!(state(&up, "s1"), "up");
    let said = stop(up);
    assert!(!said.contains("s1 | exited"), "{said}");
}

#[test]
fn up_started_again_after_a_kill_replaces_the_workers_left_draining() {
    let dir = tempfile::tempdir().unwrap();
    let p1 = config_port();
    let mut first = up_with(dir.path(), &[("k1", p1, &["python"])]);
    wait_until(LONG, "k1 up", || state(&first, "k1") == "up");
    let r = first.post(
        "/tasks",
        &format!(r#"{{"tasks": [{}]}}"#, sleep_task("long", 2.0)),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    wait_until(LONG, "long running", || {
        first.get("/tasks/long").json()["status"] == "running"
    });
    // its workers are told to stop when it dies: they drain and exit
    first.signal(libc::SIGKILL);
    first.wait_exit(LONG);
    let second = Proc::start(dir.path(), &["up", "--port", "0"], FAST);
    let r = second.post(
        "/tasks",
        &format!(r#"{{"tasks": [{}]}}"#, sleep_task("after", 0.1)),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    wait_until(LONG, "a task dropped after the restart completes", || {
        second.get("/tasks/after").json()["status"] == "completed"
    });
    // the long task's result, held by the worker that drained it, is
    // picked up by the new worker; that may come after the short task
    wait_until(LONG, "the long task's held result recorded", || {
        second.get("/tasks/long").json()["status"] == "completed"
    });
    let said = stop(second);
    assert!(
        said.contains("k1 | the worker up found running is gone: starting its own"),
        "{said}"
    );
}
