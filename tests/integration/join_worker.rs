//! The worker's side of joining (`worker --join`) against a fake
//! orchestrator that records what it is sent: the join body, re-joins
//! after an outage, leaving after the drain, a taken id, an orchestrator
//! that is not there yet.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};

use crate::common::{http, sleep_task, wait_until, DeadPort, Proc};
use crate::hygiene::{run_within, LONG};

/// One request the fake orchestrator received.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    method: String,
    path: String,
    body: Value,
    at: Instant,
    /// The status it was answered with.
    answered: u16,
}

/// A tiny HTTP server standing in for the orchestrator: it records every
/// request and answers joins with `join_answer` (status, body), which the
/// test changes while it runs; DELETEs get 200.
pub(crate) struct FakeOrchestrator {
    pub(crate) addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    join_answer: Arc<Mutex<(u16, String)>>,
    /// The body of every other answer (200).
    pub(crate) other_answer: Arc<Mutex<String>>,
}

impl FakeOrchestrator {
    pub(crate) fn start(status: u16, body: Value) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let join_answer = Arc::new(Mutex::new((status, body.to_string())));
        let other_answer = Arc::new(Mutex::new("{}".to_string()));
        let (s, j, o) = (
            Arc::clone(&seen),
            Arc::clone(&join_answer),
            Arc::clone(&other_answer),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (s, j, o) = (Arc::clone(&s), Arc::clone(&j), Arc::clone(&o));
                std::thread::spawn(move || serve_one(stream, &s, &j, &o));
            }
        });
        FakeOrchestrator {
            addr,
            seen,
            join_answer,
            other_answer,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn answer_joins(&self, status: u16, body: Value) {
        *self.join_answer.lock().unwrap() = (status, body.to_string());
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub(crate) fn joins(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.path == "/workers/join")
            .collect()
    }
}

fn serve_one(
    stream: std::net::TcpStream,
    seen: &Mutex<Vec<Seen>>,
    join: &Mutex<(u16, String)>,
    other: &Mutex<String>,
) {
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let mut parts = first.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let (status, answer) = if path == "/workers/join" {
        join.lock().unwrap().clone()
    } else {
        (200, other.lock().unwrap().clone())
    };
    seen.lock().unwrap().push(Seen {
        method,
        path,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        at: Instant::now(),
        answered: status,
    });
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
}

pub(crate) fn joined(id: &str, interval: f64) -> Value {
    json!({"id": id, "source": "joined", "rejoin_interval_seconds": interval})
}

#[test]
fn a_joining_worker_registers_rejoins_after_an_outage_and_leaves_after_draining() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeOrchestrator::start(200, joined("j1", 0.2));
    let mut worker = Proc::start(
        dir.path(),
        &[
            "worker",
            "--worker-id",
            "j1",
            "--port",
            "0",
            "--capacity",
            "2",
            "--algorithms",
            "python,cython",
            "--join",
            &fake.url(),
        ],
        &[("ORQUESTA_TEST_KERNELS", "1")],
    );
    wait_until(LONG, "three joins", || fake.joins().len() >= 3);
    let joins = fake.joins();
    let body = &joins[0].body;
    assert_eq!(joins[0].method, "POST");
    assert_eq!(body["id"], "j1");
    assert_eq!(body["url"], format!("http://{}", worker.addr));
    assert_eq!(body["capacity"], 2);
    let algorithms: Vec<&str> = body["algorithms"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        algorithms.contains(&"python") && algorithms.contains(&"cython"),
        "{body}"
    );
    let instance = body["instance"].as_str().unwrap();
    assert!(instance.len() >= 8, "{body}");
    assert!(
        joins.iter().all(|j| j.body["instance"] == instance),
        "one instance per process start"
    );
    assert!(body["version"].as_str().is_some_and(|v| !v.is_empty()), "{body}");

    // the orchestrator is away for a while (503), then back: joined again
    fake.answer_joins(503, json!({"error": "restarting", "code": "unavailable"}));
    wait_until(LONG, "joins refused", || {
        fake.joins().iter().filter(|j| j.answered == 503).count() >= 2
    });
    fake.answer_joins(200, joined("j1", 0.2));
    let back = Instant::now();
    wait_until(LONG, "a join after the outage", || {
        fake.joins().iter().any(|j| j.answered == 200 && j.at > back)
    });
    assert_eq!(worker.get("/health").status, 200);

    // SIGTERM while a task runs: the DELETE comes after the drain
    let addr = worker.addr.clone();
    let task = std::thread::spawn(move || {
        let r = http("POST", &addr, "/execute", Some(sleep_task("s1", 1.0).as_bytes()));
        (r.status, Instant::now())
    });
    wait_until(LONG, "s1 running", || {
        worker.get("/status").json()["running"] == 1
    });
    worker.signal(libc::SIGTERM);
    assert_eq!(worker.wait_exit(LONG), Some(0), "{}", worker.log());
    let (status, finished) = task.join().unwrap();
    assert_eq!(status, 200);
    let deletes: Vec<Seen> = fake.seen().into_iter().filter(|s| s.method == "DELETE").collect();
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(deletes[0].path, "/workers/j1");
    assert!(
        deletes[0].at >= finished,
        "the worker left before its task finished"
    );
    // and it joined no more after leaving
    assert!(fake.joins().iter().all(|j| j.at <= deletes[0].at));
}

#[test]
fn a_join_refused_for_a_taken_id_is_logged_once_and_the_worker_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeOrchestrator::start(
        409,
        json!({"error": "worker id taken", "code": "worker_id_taken", "address": "http://10.9.9.9:5001"}),
    );
    let worker = Proc::start(
        dir.path(),
        &[
            "worker",
            "--worker-id",
            "dup",
            "--port",
            "0",
            "--capacity",
            "1",
            "--join",
            &fake.url(),
        ],
        &[],
    );
    wait_until(LONG, "several refused joins", || fake.joins().len() >= 3);
    assert_eq!(worker.get("/health").status, 200);
    let log = worker.log();
    assert_eq!(
        log.matches("another live worker has the id dup (at http://10.9.9.9:5001)")
            .count(),
        1,
        "{log}"
    );
}

#[test]
fn a_worker_joins_an_orchestrator_that_is_not_there_yet_without_failing() {
    let dir = tempfile::tempdir().unwrap();
    let nobody = DeadPort::new();
    let url = format!("http://127.0.0.1:{}", nobody.port);
    let worker = Proc::start(
        dir.path(),
        &[
            "worker",
            "--worker-id",
            "early",
            "--port",
            "0",
            "--capacity",
            "1",
            "--join",
            &url,
        ],
        &[],
    );
    wait_until(LONG, "the unreachable orchestrator logged", || {
        worker.log().contains("cannot reach the orchestrator to join")
    });
    assert_eq!(worker.get("/health").status, 200);
    // binding every interface without --advertise is refused at once
    let (code, said) = run_within(
        dir.path(),
        &[
            "worker",
            "--worker-id",
            "wild",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--join",
            &url,
        ],
        &[],
        LONG,
    );
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("cannot connect to 0.0.0.0") && said.contains("--advertise"),
        "{said}"
    );
}

// ---- ping and config check ----
