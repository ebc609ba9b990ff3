//! What one client may cost a server (issue 11, "Memory amplification",
//! "Slow bodies", and the small ones): body limits, the body deadline,
//! connection caps under a low open-files limit, task size and unknown
//! field caps, duplicate keys, query errors that name the parameter.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

fn task(id: &str) -> Value {
    json!({"task_id": id, "algorithm": "python",
           "parameters": {"num_particles": 100, "num_steps": 10, "seed": 1}})
}

/// An orchestrator alone (no workers) in its own folder.
fn orchestrator(dir: &std::path::Path, env: &[(&str, &str)]) -> Proc {
    std::fs::write(dir.join("config_workers.json"), r#"{"workers": []}"#).unwrap();
    let mut all: Vec<(&str, &str)> = FAST.to_vec();
    all.extend_from_slice(env);
    Proc::start(dir, &["orchestrator", "--port", "0"], &all)
}

fn worker(dir: &std::path::Path, env: &[(&str, &str)]) -> Proc {
    Proc::start(dir, &["worker", "--worker-id", "w", "--port", "0"], env)
}

/// Opens a connection and sends a request head and the first bytes of its
/// body (a client that then stalls, or waits for an early answer).
fn send_head(addr: &str, method: &str, path: &str, length: usize, first: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(first).unwrap();
    s
}

/// What the server sends on `s` until it closes or `limit` passes; None
/// if it neither answered nor closed in time.
fn answer_within(s: &mut TcpStream, limit: Duration) -> Option<String> {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                // a whole response with its JSON body is enough
                let text = String::from_utf8_lossy(&got).into_owned();
                if text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
                    return Some(text);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(String::from_utf8_lossy(&got).into_owned())
            }
            Err(_) => return None,
        }
        if Instant::now() > deadline {
            return None;
        }
    }
}

/// `GET /health` on a fresh connection, with a short deadline of its own
/// (the shared `http` helper waits 60 s).
fn health_status(addr: &str, limit: Duration) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), limit).ok()?;
    s.write_all(format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let text = answer_within(&mut s, limit)?;
    text.split(' ').nth(1)?.parse().ok()
}

#[test]
fn a_body_over_its_limit_is_a_413_before_it_is_read_and_the_process_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let o = orchestrator(dir.path(), &[("MAX_REQUEST_BYTES", "100000")]);
    // declared larger than MAX_REQUEST_BYTES: answered before a byte is sent
    let mut s = send_head(&o.addr, "POST", "/tasks", 20_000_000, b"");
    let text = answer_within(&mut s, Duration::from_secs(10)).expect("an answer before the body");
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(
        text.contains("larger than the limit of 100000 bytes (MAX_REQUEST_BYTES)")
            && text.contains("task_queues/"),
        "{text}"
    );
    // sent without a declared length (chunked): stopped at the limit
    let mut s = TcpStream::connect(&o.addr).unwrap();
    s.write_all(
        format!(
            "POST /tasks HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            o.addr
        )
        .as_bytes(),
    )
    .unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 60_000, "x".repeat(60_000));
    for _ in 0..3 {
        let _ = s.write_all(chunk.as_bytes());
    }
    let text = answer_within(&mut s, Duration::from_secs(10)).expect("an answer");
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    // the join endpoint has its own, smaller limit
    let mut s = send_head(&o.addr, "POST", "/workers/join", 1_000_000, b"");
    let text = answer_within(&mut s, Duration::from_secs(10)).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 413") && text.contains("the largest join"),
        "{text}"
    );
    assert_eq!(o.get("/health").status, 200);
    assert_eq!(o.post("/tasks", &task("small").to_string()).status, 201);
}

#[test]
fn a_20_mb_task_is_refused_by_id_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let o = orchestrator(dir.path(), &[("MAX_REQUEST_BYTES", "67108864")]);
    let mut t = task("big_one");
    let numbers: Vec<f64> = (0..2_500_000).map(|i| i as f64 * 1.5).collect();
    t["parameters"]["samples"] = json!(numbers);
    let body = t.to_string();
    assert!(body.len() > 20_000_000, "{}", body.len());
    let r = o.post("/tasks", &body);
    assert_eq!(r.status, 422, "{}", r.text());
    let e = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        e.contains("task \"big_one\" is") && e.contains("more than the limit of 1047552 bytes for one task"),
        "{e}"
    );
    // the same inside a task file posted whole
    let file = json!({"tasks": [task("fine"), t]}).to_string();
    let r = o.post("/tasks", &file);
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("tasks[1]"), "{}", r.text());
    let peak = peak_rss_bytes(o.pid());
    println!(
        "orchestrator VmHWM after two 20 MB bodies: {:.1} MB",
        peak as f64 / 1e6
    );
    assert!(peak < 300_000_000, "VmHWM {peak} bytes");
    assert_eq!(
        o.get("/tasks").json()["total"],
        0,
        "nothing of a refused batch is queued"
    );
    assert_eq!(o.get("/health").status, 200);
}

#[test]
fn many_unknown_fields_are_refused_with_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let o = orchestrator(dir.path(), &[]);
    let mut t = task("chatty");
    for i in 0..100 {
        t[format!("note_{i}")] = json!("y".repeat(100));
    }
    let r = o.post("/tasks", &t.to_string());
    assert_eq!(r.status, 422, "{}", r.text());
    let e = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        e.contains("task \"chatty\" has") && e.contains("more than the limit of 8192 kept per task"),
        "{e}"
    );
    // a few are kept as before
    let mut t = task("owned");
    t["owner"] = json!("ana");
    assert_eq!(o.post("/tasks", &t.to_string()).status, 201);
}

#[test]
fn a_key_given_twice_is_refused_in_a_file_and_in_a_body() {
    let dir = tempfile::tempdir().unwrap();
    let o = orchestrator(dir.path(), &[]);
    let twice = r#"{"task_id": "d1", "algorithm": "python",
        "parameters": {"num_particles": 100, "num_steps": 10, "seed": 1},
        "parameters": {"num_particles": 100, "num_steps": 10, "seed": 2}}"#;
    let r = o.post("/tasks", twice);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("duplicate key \\\"parameters\\\""),
        "{}",
        r.text()
    );
    let file = format!(r#"{{"tasks": [{}, {twice}]}}"#, task("d0"));
    std::fs::write(o.dir.join("task_queues/twice.json"), file).unwrap();
    let report = o.dir.join("task_queues/rejected/twice.json.error.txt");
    wait_until(Duration::from_secs(30), "the file rejected", || report.exists());
    let text = std::fs::read_to_string(report).unwrap();
    assert!(text.contains("tasks[1]: duplicate key \"parameters\""), "{text}");
    assert_eq!(o.get("/tasks").json()["total"], 0);
}

#[test]
fn query_errors_name_the_parameter_on_both_servers() {
    let dir = tempfile::tempdir().unwrap();
    let o = orchestrator(dir.path(), &[]);
    let r = o.get("/tasks?limit=abc");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "limit: expected a whole number, found \"abc\"");
    let r = o.get("/tasks?limit=1&limit=2");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("limit"), "{}", r.text());
    let w = worker(dir.path(), &[]);
    let r = w.get("/history?limit=ten");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "limit: expected a whole number, found \"ten\"");
}

#[test]
fn a_trickling_body_is_answered_408_within_the_deadline_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let o = orchestrator(dir.path(), &[("REQUEST_BODY_TIMEOUT", "1")]);
    let w = worker(dir.path(), &[("REQUEST_BODY_TIMEOUT", "1")]);
    for (server, path) in [(&o, "/tasks"), (&w, "/execute"), (&w, "/results/ack")] {
        let started = Instant::now();
        let mut stalled = send_head(&server.addr, "POST", path, 1000, b"{\"tasks\":");
        // meanwhile the server answers others
        assert_eq!(health_status(&server.addr, Duration::from_secs(5)), Some(200));
        let text = answer_within(&mut stalled, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{path}: the stalled request is still held after 10 s"));
        assert!(started.elapsed() < Duration::from_secs(10));
        if !text.is_empty() {
            assert!(text.starts_with("HTTP/1.1 408"), "{path}: {text}");
            assert!(text.contains("REQUEST_BODY_TIMEOUT"), "{path}: {text}");
        }
    }
    assert_eq!(o.get("/health").status, 200);
}

#[test]
fn hundreds_of_stalled_connections_leave_health_and_the_drop_folder_working() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config_workers.json"), r#"{"workers": []}"#).unwrap();
    // started as a login shell often starts it: a soft open-files limit
    // below the connections thrown at it (the orchestrator raises it)
    let mut cmd = orquesta();
    // SAFETY: only async-signal-safe calls (getrlimit, setrlimit) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
            lim.rlim_cur = lim.rlim_cur.min(200);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            Ok(())
        });
    }
    let mut env: Vec<(&str, &str)> = FAST.to_vec();
    env.push(("REQUEST_BODY_TIMEOUT", "60"));
    let o = Proc::start_command(cmd, dir.path(), &["orchestrator", "--port", "0"], &env);
    let stalled: Vec<TcpStream> = (0..300)
        .map(|_| send_head(&o.addr, "POST", "/tasks", 1000, b"{\"tasks\": ["))
        .collect();
    assert_eq!(health_status(&o.addr, Duration::from_secs(10)), Some(200));
    std::fs::write(
        o.dir.join("task_queues/during.json"),
        json!({"tasks": [task("during")]}).to_string(),
    )
    .unwrap();
    wait_until(Duration::from_secs(30), "the dropped file taken", || {
        !o.dir.join("task_queues/during.json").exists()
    });
    assert_eq!(o.get("/tasks/during").status, 200, "its task is queued");
    assert_eq!(health_status(&o.addr, Duration::from_secs(10)), Some(200));
    drop(stalled);
}

#[test]
fn a_huge_acknowledgement_is_a_413_and_the_worker_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), &[]);
    let mut s = send_head(&w.addr, "POST", "/results/ack", 50_000_000, b"");
    let text = answer_within(&mut s, Duration::from_secs(10)).expect("an answer before the body");
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("the largest acknowledgement"), "{text}");
    let mut s = send_head(&w.addr, "POST", "/execute", 5_000_000, b"");
    let text = answer_within(&mut s, Duration::from_secs(10)).unwrap();
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert_eq!(w.get("/health").status, 200);
    let r = w.post("/results/ack", r#"{"task_ids": ["a", "b"]}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["requested"], 2);
}

/// Connections to `port` the process `pid` has accepted and holds open:
/// its socket descriptors that `/proc/net/tcp` lists as established on
/// that local port.
fn accepted_connections(pid: i32, port: u16) -> usize {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap()
        + &std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            let f: Vec<&str> = line.split_whitespace().collect();
            f.len() > 9
                && f[3] == "01"
                && f[1].rsplit(':').next() == Some(&format!("{port:04X}"))
                && inodes.contains(f[9])
        })
        .count()
}

/// Descriptors the process has open now.
fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

#[test]
fn connections_past_max_connections_wait_and_are_served_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let o = orchestrator(
        dir.path(),
        &[("MAX_CONNECTIONS", "20"), ("REQUEST_BODY_TIMEOUT", "2")],
    );
    assert_eq!(o.get("/health").status, 200);
    let before = open_fds(o.pid());
    let stalled: Vec<TcpStream> = (0..60)
        .map(|_| send_head(&o.addr, "POST", "/tasks", 1000, b"{"))
        .collect();
    // the server takes connections up to its cap; its acceptor takes
    // whatever waits in one go, so without a cap the 21st and later would
    // be taken in the pass that took the 20th
    let port: u16 = o.addr.rsplit(':').next().unwrap().parse().unwrap();
    wait_until(Duration::from_secs(30), "the cap's worth accepted", || {
        accepted_connections(o.pid(), port) >= 20
    });
    let held = open_fds(o.pid()).saturating_sub(before);
    assert!(
        held <= 20 + 4,
        "{held} descriptors held for 60 stalled connections"
    );
    // the stalled ones are let go at the body deadline, a cap's worth at a
    // time, and then this one is served
    assert_eq!(health_status(&o.addr, Duration::from_secs(30)), Some(200));
    drop(stalled);
}
