//! `orquesta workers`, `drain` and `resume` against a fake orchestrator
//! that records what it was asked, and `workers` against a real one.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{stderr, stdout, Cluster, WorkerSpec};
use crate::tools::run_in;

/// A fake orchestrator on a free loopback port: answers every request with
/// `route(method, path)` (status, JSON body) and records `METHOD path`.
struct FakeOrchestrator {
    addr: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeOrchestrator {
    fn start(route: fn(&str, &str) -> (u16, Value)) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let Some(head) = read_head(&mut stream) else {
                    continue;
                };
                let mut words = head.split_whitespace();
                let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                seen.lock().unwrap().push(format!("{method} {path}"));
                let (status, body) = route(method, path);
                let body = body.to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { addr, requests }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// The request line and headers (the tools send no body with these calls).
fn read_head(stream: &mut std::net::TcpStream) -> Option<String> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

fn not_found(id: &str) -> (u16, Value) {
    (
        404,
        json!({"error": format!("no worker {id:?}: `orquesta workers` lists them"), "code": "not_found"}),
    )
}

/// Two workers known, `ghost` unknown.
fn cluster_route(method: &str, path: &str) -> (u16, Value) {
    match (method, path) {
        ("GET", "/workers") => (
            200,
            json!({
                "workers": [
                    {"id": "worker1", "source": "config", "state": "up", "address": "127.0.0.1:5001",
                     "capacity": 4, "in_flight": 3, "load": 0.75, "tasks_completed": 42, "tasks_failed": 1,
                     "mean_execution_time": 0.25, "algorithms": ["python"], "last_heartbeat": "2026-01-01T00:00:00Z"},
                    {"id": "slurm-node07", "source": "joined", "state": "draining",
                     "state_reason": "drain requested", "address": "node07:5001", "capacity": 16,
                     "in_flight": 2, "load": 0.125, "tasks_completed": 7, "tasks_failed": 0,
                     "mean_execution_time": null, "algorithms": ["python"], "last_heartbeat": null},
                    {"id": "worker2", "source": "config", "state": "down", "state_reason": "connection refused",
                     "address": "127.0.0.1:5002", "capacity": 1, "in_flight": 0, "load": 0.0,
                     "tasks_completed": 0, "tasks_failed": 0, "mean_execution_time": null,
                     "algorithms": ["python"], "last_heartbeat": null}
                ],
                "total": 3, "up": 1,
                "config": {"path": "config_workers.json", "valid": true}
            }),
        ),
        ("POST", "/workers/worker1/drain") => (200, json!({"id": "worker1", "state": "draining"})),
        ("POST", "/workers/worker1/resume") => (200, json!({"id": "worker1", "state": "up"})),
        ("POST", p) if p.starts_with("/workers/ghost/") => not_found("ghost"),
        _ => (
            404,
            json!({"error": "no endpoint at that path", "code": "unknown_endpoint"}),
        ),
    }
}

#[test]
fn workers_lists_sources_states_and_load() {
    let fake = FakeOrchestrator::start(cluster_route);
    let here = tempfile::tempdir().unwrap();
    let out = run_in(here.path(), &["workers", "--url", &fake.url()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("orchestrator {}: 3 workers, 1 up\n", fake.url())),
        "{text}"
    );
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip_while(|l| !l.starts_with("worker "))
        .map(|l| l.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec![
                "worker",
                "source",
                "state",
                "load",
                "done",
                "failed",
                "mean time",
                "address"
            ],
            vec![
                "worker1",
                "config",
                "up",
                "3/4",
                "42",
                "1",
                "250 ms",
                "127.0.0.1:5001"
            ],
            vec![
                "slurm-node07",
                "joined",
                "draining (drain requested)",
                "2/16",
                "7",
                "0",
                "-",
                "node07:5001"
            ],
            vec![
                "worker2",
                "config",
                "down (connection refused)",
                "0/1",
                "0",
                "0",
                "-",
                "127.0.0.1:5002"
            ],
        ],
        "{text}"
    );
    assert_eq!(fake.requests(), ["GET /workers"]);

    let out = run_in(here.path(), &["workers", "--url", &fake.url(), "--json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, cluster_route("GET", "/workers").1);
}

#[test]
fn workers_takes_the_orchestrator_from_the_environment() {
    let fake = FakeOrchestrator::start(cluster_route);
    let here = tempfile::tempdir().unwrap();
    let port = fake.addr.rsplit(':').next().unwrap().to_string();
    let out = run_in(
        here.path(),
        &["workers"],
        &[("ORCHESTRATOR_HOST", "127.0.0.1"), ("ORCHESTRATOR_PORT", &port)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(fake.requests(), ["GET /workers"]);
}

#[test]
fn drain_and_resume_post_to_the_worker_and_print_its_state() {
    let fake = FakeOrchestrator::start(cluster_route);
    let here = tempfile::tempdir().unwrap();
    let out = run_in(here.path(), &["drain", "worker1", "--url", &fake.url()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("worker1: draining"), "{}", stdout(&out));
    let out = run_in(here.path(), &["resume", "worker1", "--url", &fake.url()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "worker1: up\n");
    assert_eq!(
        fake.requests(),
        ["POST /workers/worker1/drain", "POST /workers/worker1/resume"]
    );
}

#[test]
fn an_unknown_worker_exits_1_with_the_orchestrators_message() {
    let fake = FakeOrchestrator::start(cluster_route);
    let here = tempfile::tempdir().unwrap();
    for verb in ["drain", "resume"] {
        let out = run_in(here.path(), &[verb, "ghost", "--url", &fake.url()], &[]);
        assert_eq!(out.status.code(), Some(1), "{verb}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains(&format!("cannot {verb} \"ghost\"")), "{err}");
        assert!(
            err.contains("HTTP 404: no worker \"ghost\": `orquesta workers` lists them"),
            "{err}"
        );
        assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    }
    assert_eq!(
        fake.requests(),
        ["POST /workers/ghost/drain", "POST /workers/ghost/resume"]
    );
}

#[test]
fn no_orchestrator_is_said_plainly() {
    let free = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let here = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{free}");
    for args in [vec!["workers", "--url", &url], vec!["drain", "w1", "--url", &url]] {
        let out = run_in(here.path(), &args, &[]);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).contains("cannot reach the orchestrator"),
            "{}",
            stderr(&out)
        );
    }
}

/// The table reads the real orchestrator's `GET /workers`, not only the
/// fake's idea of it.
#[test]
fn workers_reads_a_real_orchestrator() {
    let c = Cluster::start(&[WorkerSpec::new("worker1", 2)], &[]);
    c.wait_workers_up();
    let here = tempfile::tempdir().unwrap();
    let url = c.orch().url("");
    let out = run_in(here.path(), &["workers", "--url", &url], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(": 1 workers, 1 up\n"), "{text}");
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("worker1 "))
        .unwrap_or_else(|| panic!("{text}"))
        .split_whitespace()
        .collect();
    assert!(row.contains(&"up") && row.contains(&"0/2"), "{text}");
    assert_eq!(row.last(), Some(&c.workers[0].addr.as_str()), "{text}");
    // an id the orchestrator does not know: exit 1 and its words
    let out = run_in(here.path(), &["drain", "ghost", "--url", &url], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("HTTP 404"), "{}", stderr(&out));
}

#[test]
fn the_commands_explain_themselves() {
    let here = tempfile::tempdir().unwrap();
    for (sub, says) in [
        ("workers", "orquesta workers --url http://10.0.0.5:5000"),
        ("drain", "wait until worker1 shows drained"),
        ("resume", "orquesta resume worker1"),
    ] {
        let out = run_in(here.path(), &[sub, "--help"], &[]);
        assert!(out.status.success(), "{sub}: {}", stderr(&out));
        let help = stdout(&out);
        assert!(
            help.contains("Examples:\n  orquesta ") && help.contains(says),
            "{sub}: {help}"
        );
    }
    let out = run_in(here.path(), &["drain"], &[]);
    assert_eq!(out.status.code(), Some(2), "drain needs an id");
}

// ---- deploy/ ----
