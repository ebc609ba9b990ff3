//! `submit --wait`, `status` and `ping` against a real local cluster and
//! against fakes that fail the ways a real worker does not.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{stderr, stdout, submit_wait_args, write_batch, Cluster, WorkerSpec};

use crate::tools::{files_in, run_in};

#[test]
fn submit_waits_for_the_batch_against_a_real_cluster() {
    let c = Cluster::start(
        &[WorkerSpec::new("worker1", 2), WorkerSpec::new("worker2", 2)],
        &[("MAX_TASK_RETRIES", "0")],
    );
    c.wait_workers_up();
    let url = c.orch().url("");
    let port = c.orch().addr.rsplit(':').next().unwrap().to_string();
    let here = tempfile::tempdir().unwrap();

    // gen, then POST with --url and wait
    let out = run_in(
        here.path(),
        &[
            "gen",
            "-c",
            "6",
            "-n",
            "20..60",
            "-s",
            "10..50",
            "-o",
            "remote.json",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run_in(
        here.path(),
        &["submit", "remote.json", "--url", &url, "--wait"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("submitted remote.json to {url}: 6 tasks")),
        "{text}"
    );
    assert!(
        text.contains("algorithm  tasks  completed  failed  cancelled  unfinished  mean time"),
        "{text}"
    );
    assert!(text.contains("all 6 tasks completed in"), "{text}");

    // the same ids again: the orchestrator refuses them, nothing queued
    let out = run_in(here.path(), &["submit", "remote.json", "--url", &url], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("already exist; nothing was queued"),
        "{}",
        stderr(&out)
    );

    // dropped into the cluster's own task_queues/, followed through ORCHESTRATOR_PORT
    let out = run_in(
        c.dir.path(),
        &["gen", "-c", "4", "-n", "30", "-s", "20", "-o", "local.json"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run_in(
        c.dir.path(),
        &["submit", "local.json", "--wait"],
        &[("ORCHESTRATOR_PORT", &port)],
    );
    assert_eq!(out.status.code(), Some(0), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).starts_with("dropped local.json into task_queues/local.json: 4 tasks"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("all 4 tasks completed in"),
        "{}",
        stdout(&out)
    );
    assert!(files_in(&c.path("task_queues/processed"))
        .iter()
        .any(|n| n.ends_with("_local.json")));

    // dropped again: the orchestrator rejects the file, and submit says so
    let out = run_in(
        c.dir.path(),
        &["submit", "local.json", "--wait", "--timeout", "30"],
        &[("ORCHESTRATOR_PORT", &port)],
    );
    assert_eq!(out.status.code(), Some(1), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("the orchestrator rejected the file; nothing was queued"),
        "{}",
        stderr(&out)
    );

    // a task that fails: exit 1 and the table names it
    let file = write_batch(
        here.path(),
        "mixed.json",
        vec![
            json!({"task_id": "ok_1", "algorithm": "python", "parameters": {"num_particles": 20, "num_steps": 5, "seed": 1}}),
            json!({"task_id": "boom_1", "algorithm": "__panic", "parameters": {}}),
        ],
    );
    let out = run_in(
        here.path(),
        &submit_wait_args(&file, &url, "60", &[]),
        &[("ORQUESTA_TEST_KERNELS", "1")],
    );
    assert_eq!(out.status.code(), Some(1), "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("not completed:")
            && text.lines().any(
                |l| l.split_whitespace().take(3).eq(["boom_1", "failed", "worker1"])
                    || l.split_whitespace().take(3).eq(["boom_1", "failed", "worker2"])
            ),
        "{text}"
    );
    assert!(text.contains("1 of 2 tasks completed, 1 failed"), "{text}");

    // a bad file is refused before anything is sent
    let bad = write_batch(
        here.path(),
        "bad.json",
        vec![json!({"task_id": "x", "algorithm": "python"})],
    );
    let out = run_in(
        here.path(),
        &["submit", bad.to_str().unwrap(), "--url", &url],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("tasks[0].parameters: required"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("nothing was submitted"));

    // no orchestrator there: a clear message, nothing dropped
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let out = run_in(
        here.path(),
        &["submit", "remote.json", "--wait"],
        &[("ORCHESTRATOR_PORT", &free)],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("connection refused") && stderr(&out).contains("nothing was submitted"));
    assert!(!here.path().join("task_queues").exists());
}

/// A one-answer-per-connection HTTP server that always says `body` with
/// `status`, for the failures a real worker does not produce.
fn fake_server(status: u16, body: &'static str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

#[test]
fn status_and_ping_against_a_real_cluster() {
    let c = Cluster::start(
        &[WorkerSpec::new("worker1", 2), WorkerSpec::new("worker2", 3)],
        &[],
    );
    c.wait_workers_up();
    let url = c.orch().url("");
    let here = tempfile::tempdir().unwrap();
    let r = c.orch().post(
        "/tasks",
        &json!({"tasks": [{"task_id": "s1", "algorithm": "python", "priority": "low",
            "parameters": {"num_particles": 20, "num_steps": 5, "seed": 1}}]})
        .to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    c.wait_count("completed", 1, Duration::from_secs(30));

    let out = run_in(here.path(), &["status", "--url", &url], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("2 of 2 workers up"), "{text}");
    assert!(text.contains("worker   state  load"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("worker2  ") && l.contains("0/3")),
        "{text}"
    );
    assert!(
        text.contains("priority  queued  running  completed  failed  cancelled  total"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["low", "0", "0", "1", "0", "0", "1"]),
        "{text}"
    );

    let out = run_in(here.path(), &["status", "--url", &url, "--json"], &[]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["workers"]["up"], 2);
    assert_eq!(v["stats"]["tasks"]["by_status"]["completed"], 1);

    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run_in(
        here.path(),
        &["status", "--url", &format!("http://127.0.0.1:{free}")],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("connection refused"), "{}", stderr(&out));

    // ping from the cluster's folder: the orchestrator, and both workers known to both
    let out = run_in(c.dir.path(), &["ping", "--url", &url], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("5 of 5 checks ok"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("worker1 (both)") && l.contains("/status  ok")),
        "{text}"
    );

    // every kind of failure, from a workers file of bad addresses
    let old = fake_server(200, r#"{"status": "healthy", "version": "0.0.1"}"#);
    let locked = fake_server(401, "");
    let config = json!({"workers": [
        {"id": "gone", "host": "127.0.0.1", "port": free, "capacity": 1, "algorithms": ["python"]},
        {"id": "nowhere", "host": "no-such-host.invalid", "port": 5001, "capacity": 1, "algorithms": ["python"]},
        {"id": "old", "host": "127.0.0.1", "port": old.rsplit(':').next().unwrap().parse::<u16>().unwrap(), "capacity": 1, "algorithms": ["python"]},
        {"id": "locked", "host": "127.0.0.1", "port": locked.rsplit(':').next().unwrap().parse::<u16>().unwrap(), "capacity": 1, "algorithms": ["python"]},
    ]});
    std::fs::write(here.path().join("w.json"), config.to_string()).unwrap();
    let out = run_in(
        here.path(),
        &["ping", "--url", &url, "--config", "w.json", "--timeout", "2"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    for expected in [
        format!("connection refused: nothing listens on 127.0.0.1:{free}"),
        "name resolution failed: cannot resolve no-such-host.invalid:5001".to_string(),
        format!("wrong version: 0.0.1, expected {}", env!("CARGO_PKG_VERSION")),
        "authentication refused (HTTP 401)".to_string(),
    ] {
        assert!(text.contains(&expected), "{expected}\n---\n{text}");
    }
    // and each of the four is also unknown to the running orchestrator
    assert_eq!(
        text.matches("listed in w.json but unknown to the running orchestrator")
            .count(),
        4,
        "{text}"
    );
    assert!(text.contains("5 of 13 checks ok, 8 failed"), "{text}");
}
