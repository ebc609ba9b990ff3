//! Workers held to what they promised, against a fake worker that speaks
//! the batch protocol and lies: it says `started` for more tasks than the
//! capacity it agreed to, or answers a batch 200 and never writes, or lets
//! its tasks stall. Each time the tasks go back and complete on an honest
//! worker, and the liar is shown suspect and given nothing more.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{sleep_task, wait_until, worker_row, Proc, FAST};

const LONG: Duration = Duration::from_secs(90);

/// How the fake worker lies in its batch answers.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Lie {
    /// `started` for every task it is sent, then ticks for ever.
    Overstart,
    /// 200, then not a byte.
    Silent,
    /// `started` (within its capacity), then ticks; `GET /current` shows
    /// no step done.
    Stall,
}

/// A fake worker of capacity 2 and a backlog of 8 that tells `lie`.
/// Answers its address and how many batches it was sent.
fn liar(lie: Lie) -> (u16, Arc<AtomicUsize>) {
    liar_with(
        lie,
        json!({"worker_id": "liar", "state": "idle", "capacity": 2, "max_backlog": 8,
            "algorithms": ["__sleep"]}),
    )
}

/// A fake worker that tells `lie` and answers `GET /status` with `status`
/// (its id, capacity, backlog and algorithms). Answers its port and how
/// many batches it was sent.
pub(crate) fn liar_with(lie: Lie, status: Value) -> (u16, Arc<AtomicUsize>) {
    let status = Arc::new(status);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let batches = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&batches);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (counted, status) = (Arc::clone(&counted), Arc::clone(&status));
            std::thread::spawn(move || serve(stream, lie, &counted, &status));
        }
    });
    (port, batches)
}

fn serve(stream: TcpStream, lie: Lie, batches: &AtomicUsize, status: &Value) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut request = String::new();
        if reader.read_line(&mut request).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mut out = stream.try_clone().unwrap();
        let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
        if path == "/execute/batch" {
            batches.fetch_add(1, Ordering::SeqCst);
            let batch: Value = serde_json::from_slice(&body).unwrap_or_default();
            let tasks = batch["tasks"].as_array().cloned().unwrap_or_default();
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
            );
            let _ = out.flush();
            let chunk = |out: &mut TcpStream, text: &str| {
                write!(out, "{:x}\r\n{text}\r\n", text.len()).and_then(|()| out.flush())
            };
            if lie != Lie::Silent {
                for t in &tasks {
                    let line =
                        json!({"event": "started", "task_id": t["task_id"], "attempt_id": t["attempt_id"]});
                    if chunk(&mut out, &format!("{line}\n")).is_err() {
                        return;
                    }
                }
            }
            // for ever: ticks (or nothing), until the orchestrator goes away
            loop {
                std::thread::sleep(Duration::from_millis(500));
                let sent = if lie == Lie::Silent {
                    // a zero-byte write notices nothing: peek for a close
                    let mut probe = [0u8; 1];
                    out.set_nonblocking(true).unwrap();
                    let closed = matches!(out.peek(&mut probe), Ok(0));
                    out.set_nonblocking(false).unwrap();
                    if closed {
                        Err(std::io::Error::other("closed"))
                    } else {
                        Ok(())
                    }
                } else {
                    chunk(&mut out, "{\"event\":\"tick\"}\n")
                };
                if sent.is_err() {
                    return;
                }
            }
        }
        let answer = match path.as_str() {
            "/health" => json!({"status": "healthy", "worker_id": status["worker_id"]}),
            "/status" => status.clone(),
            "/current" => json!({"count": 0, "tasks": []}),
            _ => json!({}),
        }
        .to_string();
        let _ = write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
    }
}

/// An orchestrator with the liar first and an honest worker of capacity 2.
fn cluster(dir: &std::path::Path, liar_port: u16, extra: &[(&str, &str)]) -> (Proc, Proc) {
    let honest = Proc::start(
        dir,
        &[
            "worker",
            "--worker-id",
            "honest",
            "--port",
            "0",
            "--capacity",
            "2",
        ],
        &[("ORQUESTA_TEST_KERNELS", "1")],
    );
    let honest_port: u16 = honest.addr.rsplit(':').next().unwrap().parse().unwrap();
    std::fs::write(
        dir.join("config_workers.json"),
        json!({"workers": [
            {"id": "liar", "host": "127.0.0.1", "port": liar_port, "capacity": 2, "algorithms": ["__sleep"]},
            {"id": "honest", "host": "127.0.0.1", "port": honest_port, "capacity": 2, "algorithms": ["__sleep"]},
        ]})
        .to_string(),
    )
    .unwrap();
    let mut env = FAST.to_vec();
    env.extend_from_slice(extra);
    let orch = Proc::start(dir, &["orchestrator", "--port", "0"], &env);
    wait_until(LONG, "both up", || {
        worker_row(&orch, "liar")["state"] == "up" && worker_row(&orch, "honest")["state"] == "up"
    });
    (orch, honest)
}

fn submit(orch: &Proc, n: usize) {
    for k in 0..n {
        let r = orch.post("/tasks", &sleep_task(&format!("t{k}"), 0.2));
        assert_eq!(r.status, 201, "{}", r.text());
    }
}

fn all_completed_on_honest(orch: &Proc, n: usize) {
    wait_until(LONG, "every task completed", || {
        orch.get("/stats").json()["tasks"]["by_status"]["completed"] == n
    });
    for k in 0..n {
        let t = orch.get(&format!("/tasks/t{k}")).json();
        assert_eq!(t["worker_id"], "honest", "{t}");
    }
}

fn suspect_reason(orch: &Proc) -> String {
    worker_row(orch, "liar")["suspect"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn a_worker_that_starts_more_than_its_capacity_is_held_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let (port, _) = liar(Lie::Overstart);
    let (orch, _honest) = cluster(dir.path(), port, &[("STALL_TIMEOUT", "3")]);
    submit(&orch, 8);
    let mut most = 0;
    wait_until(LONG, "the liar suspect", || {
        most = most.max(worker_row(&orch, "liar")["running"].as_u64().unwrap_or(0));
        suspect_reason(&orch).contains("more than the 2 slots it agreed to")
    });
    let row = worker_row(&orch, "liar");
    assert!(
        row["state_reason"].as_str().unwrap_or("").contains("/resume"),
        "{row}"
    );
    all_completed_on_honest(&orch, 8);
    eprintln!("a worker saying `started` for everything: at most {most} counted running on its 2 slots");
    let log = orch.log();
    assert!(log.contains("worker suspect"), "{log}");
}

#[test]
fn a_batch_answer_that_goes_silent_is_cut_and_its_tasks_go_back() {
    let dir = tempfile::tempdir().unwrap();
    let (port, batches) = liar(Lie::Silent);
    let (orch, _honest) = cluster(dir.path(), port, &[("WORKER_TIMEOUT", "3")]);
    submit(&orch, 6);
    wait_until(LONG, "the liar sent a batch", || {
        batches.load(Ordering::SeqCst) > 0
    });
    wait_until(LONG, "the liar suspect", || {
        suspect_reason(&orch).contains("silent")
    });
    all_completed_on_honest(&orch, 6);
}

#[test]
fn a_task_that_stops_advancing_is_taken_back() {
    let dir = tempfile::tempdir().unwrap();
    let (port, _) = liar(Lie::Stall);
    let (orch, _honest) = cluster(dir.path(), port, &[("STALL_TIMEOUT", "2")]);
    submit(&orch, 2);
    wait_until(LONG, "the liar suspect", || {
        suspect_reason(&orch).contains("stalled")
    });
    all_completed_on_honest(&orch, 2);
    let stalled: Vec<Value> = (0..2)
        .map(|k| orch.get(&format!("/tasks/t{k}")).json())
        .filter(|t| {
            t["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["error"].as_str().unwrap_or("").contains("stalled at step 0"))
        })
        .collect();
    assert!(!stalled.is_empty(), "an attempt on the liar ended as stalled");
}

#[test]
fn attempts_lost_to_workers_caught_lying_do_not_use_up_a_tasks_retries() {
    let dir = tempfile::tempdir().unwrap();
    let status = |id: &str| {
        json!({"worker_id": id, "state": "idle", "capacity": 2, "max_backlog": 8,
            "algorithms": ["__sleep"]})
    };
    let (first, _) = liar_with(Lie::Silent, status("liar1"));
    let (second, _) = liar_with(Lie::Silent, status("liar2"));
    std::fs::write(
        dir.path().join("config_workers.json"),
        json!({"workers": [
            {"id": "liar1", "host": "127.0.0.1", "port": first, "capacity": 2, "algorithms": ["__sleep"]},
            {"id": "liar2", "host": "127.0.0.1", "port": second, "capacity": 2, "algorithms": ["__sleep"]},
        ]})
        .to_string(),
    )
    .unwrap();
    let mut env = FAST.to_vec();
    env.extend([("WORKER_TIMEOUT", "3"), ("MAX_TASK_RETRIES", "1")]);
    let orch = Proc::start(dir.path(), &["orchestrator", "--port", "0"], &env);
    wait_until(LONG, "both liars up", || orch.get("/workers").json()["up"] == 2);
    submit(&orch, 1);
    // the task goes to one liar, is cut and goes back, then to the other
    wait_until(LONG, "both liars suspect", || {
        ["liar1", "liar2"].iter().all(|id| {
            worker_row(&orch, id)["suspect"]
                .as_str()
                .is_some_and(|s| s.contains("silent"))
        })
    });
    // the task did nothing wrong: it waits for a worker that keeps its word
    let t = orch.get("/tasks/t0").json();
    assert_ne!(t["status"], "failed", "two liars used up the task's retries: {t}");
    let own = tempfile::tempdir().unwrap();
    let _honest = crate::common::joined_worker(own.path(), "honest", 2, &format!("http://{}", orch.addr));
    wait_until(LONG, "t0 completed on the honest worker", || {
        let t = orch.get("/tasks/t0").json();
        assert_ne!(t["status"], "failed", "{t}");
        t["status"] == "completed"
    });
}
