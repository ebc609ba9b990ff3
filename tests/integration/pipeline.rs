//! Pipelined dispatch (issue 12): `POST /execute/batch` on a worker (at
//! most `capacity` running, the rest waiting in its backlog, each task's
//! story streamed as it happens), and the orchestrator sending work ahead
//! through it: the backlog visible in `/workers`, capacity honest, and a
//! lost worker's backlog back in the queue without counting an attempt.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

fn worker(dir: &std::path::Path, capacity: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "worker",
        "--worker-id",
        "wb",
        "--port",
        "0",
        "--capacity",
        capacity,
    ];
    args.extend_from_slice(extra);
    Proc::start(dir, &args, &[("ORQUESTA_TEST_KERNELS", "1")])
}

fn sleep_with_attempt(id: &str, seconds: f64, attempt: u64) -> Value {
    let mut t: Value = serde_json::from_str(&sleep_task(id, seconds)).unwrap();
    t["attempt_id"] = json!(attempt);
    t
}

/// Opens `POST /execute/batch` and returns a reader of its answer's lines
/// (the head already read), so a test sees events as they come.
fn open_batch(addr: &str, tasks: &[Value]) -> (TcpStream, BufReader<TcpStream>) {
    let body = serde_json::to_vec(&json!({ "tasks": tasks })).unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(&request_bytes("POST", addr, "/execute/batch", Some(&body)))
        .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if line.to_ascii_lowercase().starts_with("content-type") {
            assert!(line.contains("application/x-ndjson"), "{line}");
        }
    }
    (s, r)
}

/// The next event of a chunked NDJSON answer (None at its end).
fn next_event(r: &mut BufReader<TcpStream>, pending: &mut Vec<Value>) -> Option<Value> {
    loop {
        if !pending.is_empty() {
            return Some(pending.remove(0));
        }
        let mut size = String::new();
        r.read_line(&mut size).ok()?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return None;
        }
        let mut chunk = vec![0u8; size + 2];
        std::io::Read::read_exact(r, &mut chunk).unwrap();
        for line in chunk[..size].split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let event: Value = serde_json::from_slice(line).unwrap();
            if event["event"] != "tick" {
                pending.push(event);
            }
        }
    }
}

fn all_events(r: &mut BufReader<TcpStream>) -> Vec<Value> {
    let mut pending = Vec::new();
    std::iter::from_fn(|| next_event(r, &mut pending)).collect()
}

#[test]
fn a_batch_runs_capacity_at_a_time_and_streams_each_tasks_story() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), "1", &[]);
    let tasks = vec![
        sleep_with_attempt("a", 0.3, 11),
        json!({"task_id": "bad", "algorithm": "python", "parameters": {"num_particles": -5}, "attempt_id": 12}),
        sleep_with_attempt("b", 0.3, 13),
        sleep_with_attempt("a", 0.1, 14),
        sleep_with_attempt("c", 0.3, 15),
    ];
    let (_s, mut r) = open_batch(&w.addr, &tasks);
    // while it runs: one slot busy, the rest waiting in the backlog
    let status = w.get("/status").json();
    assert_eq!(
        (status["running"].as_u64(), status["backlog"].as_u64()),
        (Some(1), Some(2)),
        "{status}"
    );
    assert_eq!(status["max_backlog"], 1024);
    let events = all_events(&mut r);
    let names: Vec<String> = events
        .iter()
        .map(|e| match e["event"].as_str().unwrap() {
            "result" => format!(
                "result {} {}",
                e["result"]["task_id"].as_str().unwrap(),
                e["result"]["result"]["status"].as_str().unwrap()
            ),
            "refused" => format!(
                "refused {} {} {}",
                e["index"],
                e["status"],
                e["body"]["code"].as_str().unwrap()
            ),
            other => format!("{other} {}", e["task_id"].as_str().unwrap_or_default()),
        })
        .collect();
    assert_eq!(
        names,
        [
            "refused 1 422 invalid_task",
            "started a",
            "refused 3 409 already_running",
            "result a completed",
            "started b",
            "result b completed",
            "started c",
            "result c completed",
            "end ",
        ],
        "{events:?}"
    );
    // every event carries the attempt id it was sent with
    assert_eq!(events[1]["attempt_id"], 11);
    assert_eq!(events[3]["result"]["attempt_id"], 11);
    assert_eq!(events[7]["result"]["attempt_id"], 15);
    let status = w.get("/status").json();
    assert_eq!(
        (status["running"].as_u64(), status["backlog"].as_u64()),
        (Some(0), Some(0))
    );
}

#[test]
fn a_full_backlog_refuses_each_extra_task_with_429() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), "1", &["--max-backlog", "1"]);
    let tasks: Vec<Value> = (0..4)
        .map(|i| sleep_with_attempt(&format!("t{i}"), 0.05, i))
        .collect();
    let (_s, mut r) = open_batch(&w.addr, &tasks);
    let events = all_events(&mut r);
    let refused: Vec<(u64, u64, &str)> = events
        .iter()
        .filter(|e| e["event"] == "refused")
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["status"].as_u64().unwrap(),
                e["body"]["code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(refused, [(2, 429, "worker_full"), (3, 429, "worker_full")]);
    assert!(events
        .iter()
        .all(|e| e["event"] != "refused" || e["retry_after"] == 1));
    let done = events.iter().filter(|e| e["event"] == "result").count();
    assert_eq!(done, 2);
}

#[test]
fn bad_batches_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), "1", &[]);
    let r = w.post("/execute/batch", r#"{"tasks": {"a": 1}}"#);
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"].as_str().unwrap().contains("expected an array"),
        "{}",
        r.text()
    );
    let r = w.post("/execute/batch", "[1, 2]");
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"].as_str().unwrap().contains("{\"tasks\""),
        "{}",
        r.text()
    );
    let many: Vec<Value> = (0..1025).map(|i| json!({"task_id": format!("t{i}")})).collect();
    let r = w.post("/execute/batch", &json!({ "tasks": many }).to_string());
    assert_eq!(r.status, 413);
    assert!(
        r.json()["error"].as_str().unwrap().contains("at most 1024"),
        "{}",
        r.text()
    );
    // an empty batch is answered at once: it is over
    let r = w.post("/execute/batch", r#"{"tasks": []}"#);
    assert_eq!((r.status, r.text()), (200, "{\"event\":\"end\"}\n".to_string()));
    assert_eq!(w.get("/health").status, 200);
}

#[test]
fn cancel_takes_a_task_out_of_the_backlog_and_sigterm_hands_the_rest_back() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), "1", &["--drain-timeout", "10"]);
    let tasks = vec![
        sleep_with_attempt("long", 1.0, 1),
        sleep_with_attempt("waiting", 0.1, 2),
        sleep_with_attempt("x", 0.1, 3),
        sleep_with_attempt("y", 0.1, 4),
    ];
    let (_s, mut r) = open_batch(&w.addr, &tasks);
    let mut pending = Vec::new();
    assert_eq!(next_event(&mut r, &mut pending).unwrap()["event"], "started");
    let c = w.post("/cancel/waiting", "");
    assert_eq!(c.status, 200, "{}", c.text());
    let e = next_event(&mut r, &mut pending).unwrap();
    assert_eq!(e["result"]["task_id"], "waiting", "{e}");
    assert_eq!(e["result"]["result"]["status"], "cancelled");
    assert_eq!(e["result"]["attempt_id"], 2);
    w.signal(libc::SIGTERM);
    let rest: Vec<Value> = std::iter::from_fn(|| next_event(&mut r, &mut pending)).collect();
    let story: Vec<String> = rest
        .iter()
        .map(|e| match e["event"].as_str().unwrap() {
            "refused" => format!("refused {} {}", e["task_id"].as_str().unwrap(), e["status"]),
            "result" => format!(
                "result {} {}",
                e["result"]["task_id"].as_str().unwrap(),
                e["result"]["result"]["status"].as_str().unwrap()
            ),
            other => other.to_string(),
        })
        .collect();
    // the waiting tasks never ran: handed back as the worker shuts down;
    // the running one finishes within the drain timeout
    assert_eq!(
        story,
        ["refused x 503", "refused y 503", "result long completed", "end"],
        "{rest:?}"
    );
}

#[test]
fn a_requester_that_leaves_loses_its_waiting_tasks_not_its_running_one() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), "1", &[]);
    let tasks = vec![
        sleep_with_attempt("first", 2.5, 1),
        sleep_with_attempt("second", 0.1, 2),
    ];
    let (s, r) = open_batch(&w.addr, &tasks);
    // the first runs and the second waits in the backlog: then it leaves
    wait_until(Duration::from_secs(10), "one running, one waiting", || {
        let status = w.get("/status").json();
        (status["running"].as_u64(), status["backlog"].as_u64()) == (Some(1), Some(1))
    });
    drop(r);
    s.shutdown(std::net::Shutdown::Both).unwrap();
    drop(s);
    // the running task ends and its result is held for pickup; the one
    // that waited never starts (the worker notices the requester gone
    // when a line to it fails: a tick a second at the latest)
    wait_until(Duration::from_secs(10), "the first task's result held", || {
        w.get("/results/first").status == 200
    });
    // the waiting one is dropped, not started: the worker says so, and
    // nothing is left in its slots or backlog
    wait_until(Duration::from_secs(10), "the waiting task dropped", || {
        w.log().contains("dropped from the backlog")
    });
    assert_eq!(w.get("/results/second").status, 404);
    let status = w.get("/status").json();
    assert_eq!(
        (status["running"].as_u64(), status["backlog"].as_u64()),
        (Some(0), Some(0)),
        "{status}"
    );
    assert!(w.log().contains("dropped from the backlog"), "{}", w.log());
}

#[test]
fn the_orchestrator_sends_work_ahead_and_capacity_stays_honest() {
    let c = Cluster::start(&[WorkerSpec::new("w1", 1)], &[]);
    c.wait_workers_up();
    let tasks: Vec<Value> = (0..12)
        .map(|i| serde_json::from_str(&sleep_task(&format!("s{i}"), 0.15)).unwrap())
        .collect();
    let r = c.orch().post("/tasks", &json!({ "tasks": tasks }).to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    let mut saw_backlog = false;
    let mut saw_backlog_tasks = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row = worker_row(c.orch(), "w1");
        let status = c.workers[0].get("/status").json();
        // never more than capacity running, on either side's word
        assert!(status["running"].as_u64().unwrap() <= 1, "{status}");
        assert!(row["running"].as_u64().unwrap() <= 1, "{row}");
        assert_eq!(
            row["in_flight"].as_u64().unwrap(),
            row["running"].as_u64().unwrap() + row["backlog"].as_u64().unwrap(),
            "{row}"
        );
        if row["backlog"].as_u64().unwrap() > 0 {
            saw_backlog = true;
            // a second read: the last task sent ahead may have started in
            // between, so the list is required at least once, not each time
            let one = c.orch().get("/workers/w1").json();
            saw_backlog_tasks |= !one["backlog_tasks"].as_array().unwrap().is_empty();
            assert!(one["running_tasks"].as_array().unwrap().len() <= 1, "{one}");
            assert!(row["prefetch"].as_u64().unwrap() >= 1, "{row}");
        }
        if c.orch().get("/stats").json()["tasks"]["by_status"]["completed"] == 12 {
            break;
        }
        assert!(Instant::now() < deadline, "the batch did not finish");
        std::thread::sleep(Duration::from_millis(30));
    }
    assert!(saw_backlog, "no task was ever sent ahead");
    assert!(saw_backlog_tasks, "/workers/w1 never listed a task sent ahead");
    // each task ran once: one attempt each
    for i in 0..12 {
        let t = c.task(&format!("s{i}"));
        assert_eq!(t["attempt_count"], 1, "{t}");
    }
}

#[test]
fn a_lost_workers_backlog_goes_back_without_counting_an_attempt() {
    let mut c = Cluster::start(&[WorkerSpec::new("w1", 1)], &[]);
    c.wait_workers_up();
    let tasks: Vec<Value> = (0..4)
        .map(|i| serde_json::from_str(&sleep_task(&format!("k{i}"), 2.0)).unwrap())
        .collect();
    let r = c.orch().post("/tasks", &json!({ "tasks": tasks }).to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    // both lists from one answer, once the orchestrator has heard which
    // task started: until then the started one is still listed as sent
    // ahead (the others cannot start before it ends, 2 s later)
    let mut waiting: Vec<String> = Vec::new();
    wait_until(
        Duration::from_secs(20),
        "one running and the rest sent ahead",
        || {
            let detail = c.orch().get("/workers/w1").json();
            let ids = |key: &str| -> Vec<String> {
                detail[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["task_id"].as_str().unwrap().to_string())
                    .collect()
            };
            waiting = ids("backlog_tasks");
            ids("running_tasks").len() == 1 && !waiting.is_empty()
        },
    );
    c.workers[0].signal(libc::SIGKILL);
    c.workers[0].wait_exit(Duration::from_secs(10));
    let counted = |c: &Cluster| -> u64 {
        (0..4)
            .map(|i| c.task(&format!("k{i}"))["attempt_count"].as_u64().unwrap())
            .sum()
    };
    // the start reaches the database up to 20 ms after it happened, so a
    // running task may still read queued there: wait for the requeue, which
    // counts the attempt, to be committed too
    wait_until(
        Duration::from_secs(30),
        "the worker's tasks back in the queue, the running one's attempt counted",
        || (0..4).all(|i| c.status_of(&format!("k{i}")) == "queued") && counted(&c) >= 1,
    );
    for id in &waiting {
        let t = c.task(id);
        // sent ahead, never started: not an attempt of the task
        assert_eq!(t["attempt_count"], 0, "{t}");
        // and nothing of it was written: it never left the queue there
        assert_eq!(t["attempts"], json!([]), "{t}");
    }
    assert_eq!(
        counted(&c),
        1,
        "only the task that was running counts its attempt"
    );
}
