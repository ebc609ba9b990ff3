//! Process hygiene and the worker side of joining (issue 10): one worker
//! per id per folder, `up` adopting a running worker and refusing a port
//! held by something else, `up`'s children dying with it, double Ctrl-C,
//! and `worker --join` against a fake orchestrator that records what it
//! is sent.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{http, orquesta, sleep_task, wait_until, Proc, FAST};

const LONG: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `orquesta ARGS…` in `dir`, failing the test if it has not exited
/// within `limit`; its exit code and all its output.
fn run_within(
    dir: &std::path::Path,
    args: &[&str],
    envs: &[(&str, &str)],
    limit: Duration,
) -> (Option<i32>, String) {
    let mut child = orquesta()
        .args(args)
        .current_dir(dir)
        .envs(envs.iter().copied())
        .env_remove("WORKER_ID")
        .env_remove("WORKER_PORT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("orquesta {args:?} did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut text = String::new();
    child.stdout.take().unwrap().read_to_string(&mut text).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut text).unwrap();
    (status.code(), text)
}

fn write_workers(dir: &std::path::Path, workers: Value) {
    std::fs::write(
        dir.join("config_workers.json"),
        json!({ "workers": workers }).to_string(),
    )
    .unwrap();
}

/// Gone, or a zombie nobody has reaped yet (it runs nothing either way).
fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// The pids whose parent is `parent` (from /proc).
fn children_of(parent: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
                    == Some(parent)
            })
        })
        .collect()
}

#[test]
fn the_same_worker_id_twice_in_one_folder_is_refused_until_the_first_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["worker", "--worker-id", "twin", "--port", "0", "--capacity", "1"];
    let mut first = Proc::start(dir.path(), &args, &[]);
    let (code, said) = run_within(dir.path(), &args, &[], LONG);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("worker twin already runs"), "{said}");
    assert!(
        said.contains(&format!("pid {}, http://{}", first.pid(), first.addr)),
        "the message names the holder: {said}"
    );
    // a SIGKILL leaves no stale lock behind
    first.signal(libc::SIGKILL);
    first.wait_exit(LONG).unwrap();
    let second = Proc::start(dir.path(), &args, &[]);
    assert_eq!(second.get("/status").json()["worker_id"], "twin");
}

#[test]
fn up_adopts_a_worker_already_running_on_its_port_and_leaves_it_running() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let worker = Proc::start(
        dir.path(),
        &[
            "worker",
            "--worker-id",
            "early",
            "--port",
            &port,
            "--capacity",
            "1",
        ],
        &[],
    );
    write_workers(
        dir.path(),
        json!([{"id": "early", "host": "127.0.0.1", "port": port.parse::<u16>().unwrap(),
                "capacity": 1, "algorithms": ["python"]}]),
    );
    let mut up = Proc::start(dir.path(), &["up", "--port", "0"], FAST);
    wait_until(LONG, "the adopted worker up", || {
        up.get("/workers").json()["up"] == 1
    });
    assert!(up.log().contains("early | already running"), "{}", up.log());
    let r = up.post(
        "/tasks",
        &json!({"tasks": [{"task_id": "a1", "algorithm": "python",
            "parameters": {"num_particles": 20, "num_steps": 5, "seed": 1}}]})
        .to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    wait_until(LONG, "a1 completed", || {
        up.get("/tasks/a1").json()["status"] == "completed"
    });
    assert_eq!(up.get("/tasks/a1").json()["result"]["worker_id"], "early");
    assert_eq!(
        worker.get("/metrics").json()["tasks_completed"],
        1,
        "{}",
        worker.get("/metrics").text()
    );
    up.signal(libc::SIGINT);
    assert_eq!(up.wait_exit(LONG), Some(0), "{}", up.log());
    // up did not start it, so up did not stop it
    assert_eq!(worker.get("/health").status, 200);
}

#[test]
fn up_refuses_a_port_held_by_something_else_and_says_what() {
    let dir = tempfile::tempdir().unwrap();
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    write_workers(
        dir.path(),
        json!([{"id": "w1", "host": "127.0.0.1", "port": port, "capacity": 1, "algorithms": ["python"]}]),
    );
    let (code, said) = run_within(dir.path(), &["up", "--port", "0"], FAST, LONG);
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains(&format!(
            "its port 127.0.0.1:{port} is held by a process that is not an Orquesta worker"
        )),
        "{said}"
    );
    drop(squatter);

    // another worker on that port: named
    let port = free_port();
    let _other = Proc::start(
        dir.path(),
        &[
            "worker",
            "--worker-id",
            "other",
            "--port",
            &port.to_string(),
            "--capacity",
            "1",
        ],
        &[],
    );
    write_workers(
        dir.path(),
        json!([{"id": "w1", "host": "127.0.0.1", "port": port, "capacity": 1, "algorithms": ["python"]}]),
    );
    let (code, said) = run_within(dir.path(), &["up", "--port", "0"], FAST, LONG);
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("is held by another Orquesta worker, \"other\""),
        "{said}"
    );
}

#[test]
fn up_sigkilled_leaves_no_orphans() {
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2) = (free_port(), free_port());
    write_workers(
        dir.path(),
        json!([
            {"id": "k1", "host": "127.0.0.1", "port": p1, "capacity": 1, "algorithms": ["python"]},
            {"id": "k2", "host": "127.0.0.1", "port": p2, "capacity": 1, "algorithms": ["python"]},
        ]),
    );
    let mut up = Proc::start(dir.path(), &["up", "--port", "0"], FAST);
    wait_until(LONG, "both workers up", || up.get("/workers").json()["up"] == 2);
    let children = children_of(up.pid());
    assert_eq!(children.len(), 2, "up's children: {children:?}");
    up.signal(libc::SIGKILL);
    up.wait_exit(LONG).unwrap();
    wait_until(Duration::from_secs(5), "up's workers gone", || {
        children.iter().all(|&p| is_gone(p))
    });
    for p in [p1, p2] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", p)).is_err(),
            "port {p} still served"
        );
    }
}

#[test]
fn a_second_ctrl_c_stops_up_at_once_and_the_running_task_is_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write_workers(
        dir.path(),
        json!([{"id": "c1", "host": "127.0.0.1", "port": port, "capacity": 1, "algorithms": ["python"]}]),
    );
    let mut up = Proc::start(dir.path(), &["up", "--port", "0"], FAST);
    wait_until(LONG, "the worker up", || up.get("/workers").json()["up"] == 1);
    let r = up.post(
        "/tasks",
        &format!(r#"{{"tasks": [{}]}}"#, sleep_task("long", 60.0)),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    wait_until(LONG, "long running", || {
        up.get("/tasks/long").json()["status"] == "running"
    });
    let worker = children_of(up.pid());
    up.signal(libc::SIGINT);
    wait_until(LONG, "the waiting message", || {
        up.log()
            .contains("waiting for 1 running task, up to 30 s; Ctrl-C again to stop now")
    });
    let second = Instant::now();
    up.signal(libc::SIGINT);
    assert_eq!(up.wait_exit(Duration::from_secs(10)), Some(0), "{}", up.log());
    assert!(
        second.elapsed() < Duration::from_secs(5),
        "{:?}",
        second.elapsed()
    );
    assert!(worker.iter().all(|&p| is_gone(p)), "the worker outlived up");
    // the next start finds the task again: queued or running, not ended
    let orch = Proc::start(dir.path(), &["orchestrator", "--port", "0"], FAST);
    let status = orch.get("/tasks/long").json()["status"].clone();
    assert!(status == "queued" || status == "running", "{status}");
}

#[test]
fn a_worker_whose_starting_parent_is_gone_does_not_start() {
    // what a child of up sees when up died between fork and PR_SET_PDEATHSIG
    let dir = tempfile::tempdir().unwrap();
    let args = ["worker", "--worker-id", "orphan", "--port", "0"];
    let (code, said) = run_within(dir.path(), &args, &[("ORQUESTA_PARENT_PID", "999999999")], LONG);
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("the process that started this worker (pid 999999999) is gone"),
        "{said}"
    );
    // with the right parent (this test process) it starts
    let me = std::process::id().to_string();
    let w = Proc::start(dir.path(), &args, &[("ORQUESTA_PARENT_PID", &me)]);
    assert_eq!(w.get("/health").status, 200);
}

#[test]
fn no_worker_is_restarted_once_up_is_stopping() {
    // a terminal's Ctrl-C reaches up and its children at once; a child that
    // exits while up shuts its orchestrator down must not be taken for a
    // crash and started again
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    write_workers(
        dir.path(),
        json!([{"id": "t1", "host": "127.0.0.1", "port": port, "capacity": 1, "algorithms": ["python"]}]),
    );
    let mut up = Proc::start(dir.path(), &["up", "--port", "0"], FAST);
    wait_until(LONG, "the worker up", || up.get("/workers").json()["up"] == 1);
    let worker = children_of(up.pid());
    assert_eq!(worker.len(), 1, "{worker:?}");
    // a request still arriving keeps the orchestrator's graceful stop busy
    // for a few seconds: the window in which the worker exits
    let mut slow = std::net::TcpStream::connect(&up.addr).unwrap();
    slow.write_all(b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    up.signal(libc::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(worker[0], libc::SIGINT);
    }
    assert_eq!(up.wait_exit(LONG), Some(0), "{}", up.log());
    drop(slow);
    assert!(!up.log().contains("restarting"), "{}", up.log());
    wait_until(Duration::from_secs(5), "the port free", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    });
}

// ---- worker --join against a fake orchestrator ----

/// One request the fake orchestrator received.
#[derive(Debug, Clone)]
struct Seen {
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
struct FakeOrchestrator {
    addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    join_answer: Arc<Mutex<(u16, String)>>,
    /// The body of every other answer (200).
    other_answer: Arc<Mutex<String>>,
}

impl FakeOrchestrator {
    fn start(status: u16, body: Value) -> Self {
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

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn answer_joins(&self, status: u16, body: Value) {
        *self.join_answer.lock().unwrap() = (status, body.to_string());
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn joins(&self) -> Vec<Seen> {
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

fn joined(id: &str, interval: f64) -> Value {
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
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
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

#[test]
fn ping_reports_a_configured_worker_the_running_orchestrator_does_not_know() {
    let dir = tempfile::tempdir().unwrap();
    let worker = Proc::start(
        dir.path(),
        &["worker", "--worker-id", "known", "--port", "0", "--capacity", "1"],
        &[],
    );
    let port: u16 = worker.addr.rsplit(':').next().unwrap().parse().unwrap();
    let known =
        json!({"id": "known", "host": "127.0.0.1", "port": port, "capacity": 1, "algorithms": ["python"]});
    write_workers(dir.path(), json!([known]));
    let orch = Proc::start(dir.path(), &["orchestrator", "--port", "0"], FAST);
    wait_until(LONG, "the worker up", || orch.get("/workers").json()["up"] == 1);
    let url = orch.url("");
    let (code, said) = run_within(dir.path(), &["ping", "--url", &url, "--timeout", "2"], &[], LONG);
    assert_eq!(code, Some(0), "the same file: all is well\n{said}");
    // another file that also lists a worker this orchestrator never heard of
    let ghost = json!({"id": "ghost", "host": "127.0.0.1", "port": free_port(), "capacity": 1, "algorithms": ["python"]});
    std::fs::write(
        dir.path().join("other.json"),
        json!({"workers": [known, ghost]}).to_string(),
    )
    .unwrap();
    let (code, said) = run_within(
        dir.path(),
        &["ping", "--url", &url, "--config", "other.json", "--timeout", "2"],
        &[],
        LONG,
    );
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.lines()
            .any(|l| l.contains("ghost (config)") && l.contains("unknown to the running orchestrator")),
        "{said}"
    );
}

#[test]
fn config_check_accepts_no_workers_and_lists_the_joined_ones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config_workers.json"), r#"{"workers": []}"#).unwrap();
    let fake = FakeOrchestrator::start(200, joined("x", 1.0));
    *fake.other_answer.lock().unwrap() = json!({"workers": [
        {"id": "node7", "address": "10.0.0.7:5001", "capacity": 4, "state": "up", "source": "joined"},
        {"id": "cfg1", "address": "127.0.0.1:5001", "capacity": 2, "state": "up", "source": "config"},
    ]})
    .to_string();
    let port = fake.addr.rsplit(':').next().unwrap().to_string();
    let (code, said) = run_within(
        dir.path(),
        &["config", "check"],
        &[("ORCHESTRATOR_HOST", "127.0.0.1"), ("ORCHESTRATOR_PORT", &port)],
        LONG,
    );
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("no workers configured; workers may join with `orquesta worker --join"),
        "{said}"
    );
    assert!(
        said.contains("Joined workers (orchestrator at http://127.0.0.1:"),
        "{said}"
    );
    assert!(
        said.lines()
            .any(|l| l.contains("node7") && l.contains("10.0.0.7:5001")),
        "{said}"
    );
    assert!(
        !said.contains("cfg1"),
        "only joined workers are listed there: {said}"
    );
}
