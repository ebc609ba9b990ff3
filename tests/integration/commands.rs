//! `orquesta up`, `orquesta run` and `orquesta config check` as a user
//! types them.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{config_port, orquesta, stderr, stdout, wait_until, DeadPort, Proc, FAST};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tareas_manuales_ejemplo.json");

#[test]
fn up_runs_a_local_cluster_that_processes_the_example_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    // up starts its workers at the ports the file names (see config_port)
    let (p1, p2) = (config_port(), config_port());
    std::fs::write(
        dir.path().join("config_workers.json"),
        json!({"workers": [
            {"id": "worker1", "host": "127.0.0.1", "port": p1, "capacity": 1, "algorithms": ["python", "cython"]},
            {"id": "worker2", "host": "127.0.0.1", "port": p2, "capacity": 1, "algorithms": ["python", "cython"]},
        ]})
        .to_string(),
    )
    .unwrap();
    let mut up = Proc::start(dir.path(), &["up", "--port", "0", "--verbose"], FAST);
    wait_until(Duration::from_secs(30), "both workers up", || {
        up.get("/workers").json()["up"] == 2
    });
    // two workers on one machine share its cores instead of each taking all
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let status = crate::common::http("GET", &format!("127.0.0.1:{p1}"), "/status", None).json();
    assert_eq!(status["threads_per_task"], json!((cores / 2).max(1)), "{status}");
    std::fs::create_dir_all(dir.path().join("task_queues")).unwrap();
    std::fs::copy(
        EXAMPLE,
        dir.path().join("task_queues/tareas_manuales_ejemplo.json"),
    )
    .unwrap();
    wait_until(Duration::from_secs(60), "10 completed", || {
        up.get("/stats").json()["tasks"]["by_status"]["completed"] == 10
    });
    // with --verbose the workers' every line is there, prefixed with their ids
    wait_until(Duration::from_secs(10), "worker output", || {
        up.log().contains("worker1 | ")
    });
    up.signal(libc::SIGINT);
    assert_eq!(up.wait_exit(Duration::from_secs(30)), Some(0), "{}", up.log());
    // the workers went with it
    for p in [p1, p2] {
        wait_until(Duration::from_secs(10), "worker stopped", || {
            std::net::TcpStream::connect(("127.0.0.1", p)).is_err()
        });
    }
    let results: usize = std::fs::read_dir(dir.path().join("results"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("task_results_"))
        .map(|e| {
            serde_json::from_slice::<Value>(&std::fs::read(e.path()).unwrap())
                .unwrap()
                .as_array()
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(results, 10);
}

#[test]
fn run_processes_a_file_prints_a_summary_and_can_run_it_again() {
    let dir = tempfile::tempdir().unwrap();
    for round in 1..=2 {
        let out = orquesta()
            .args(["run", EXAMPLE])
            .current_dir(dir.path())
            .envs(FAST.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
        assert!(text.contains("completed          10"), "{text}");
        assert!(text.contains("worker1") && text.contains("worker2"), "{text}");
        assert!(text.contains("results/task_results_"), "{text}");
        let files = std::fs::read_dir(dir.path().join("results"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("task_results_"))
            .count();
        assert!(files >= round, "round {round}: {files} files");
    }
    // no queue state is left behind in the folder
    assert!(!dir.path().join("data").exists());
    assert!(!dir.path().join("task_queues").exists());
}

#[test]
fn run_exits_non_zero_when_a_task_fails_and_2_for_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mixed.json");
    std::fs::write(
        &file,
        json!({"tasks": [
            {"task_id": "good", "algorithm": "python", "parameters": {"num_particles": 50, "num_steps": 5, "seed": 1}},
            {"task_id": "bad", "algorithm": "__panic", "parameters": {}},
        ]})
        .to_string(),
    )
    .unwrap();
    let out = orquesta()
        .args(["run", file.to_str().unwrap()])
        .current_dir(dir.path())
        .envs(FAST.iter().copied())
        .env("MAX_TASK_RETRIES", "1")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("failed              1"), "{text}");
    assert!(text.contains("bad: failed after 2 attempts"), "{text}");

    let clean = tempfile::tempdir().unwrap();
    let bad = clean.path().join("bad.json");
    std::fs::write(&bad, r#"{"tasks": [{"task_id": "x", "algorithm": "java"}]}"#).unwrap();
    let out = orquesta()
        .args(["run", bad.to_str().unwrap()])
        .current_dir(clean.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("tasks[0].algorithm"), "{}", stderr(&out));
    assert!(!clean.path().join("results").exists(), "nothing ran");
}

fn config_check(dir: &std::path::Path) -> std::process::Output {
    orquesta()
        .args(["config", "check"])
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn config_check_validates_and_asks_every_worker() {
    let dir = tempfile::tempdir().unwrap();
    let w = Proc::start(
        dir.path(),
        &["worker", "--worker-id", "alive", "--port", "0"],
        &[],
    );
    let port = w.addr.rsplit(':').next().unwrap().to_string();
    let dead_port = DeadPort::new();
    let dead = dead_port.port;
    std::fs::write(
        dir.path().join("config_workers.json"),
        format!(
            r#"{{"workers": [{{"id": "alive", "host": "127.0.0.1", "port": {port}, "capacity": 2}},
                            {{"id": "gone", "host": "127.0.0.1", "port": {dead}, "capacity": 2}}]}}"#
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "WORKER_TIMEOUT=300  # the seed's value\n",
    )
    .unwrap();
    let out = config_check(dir.path());
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("WORKER_TIMEOUT") && text.contains("300"), "{text}");
    assert!(text.contains("answers in") && text.contains("id alive"), "{text}");
    assert!(text.contains("does not answer: connection refused"), "{text}");

    std::fs::write(
        dir.path().join(".env"),
        "MANUAL_MODE=false\nLOAD_BALANCING_ALGORITHM=random\n",
    )
    .unwrap();
    let out = config_check(dir.path());
    assert_eq!(out.status.code(), Some(2));
    let text = stdout(&out);
    assert!(
        text.contains("automatic task generation is not part of Orquesta"),
        "{text}"
    );
    assert!(
        text.contains("LOAD_BALANCING_ALGORITHM: expected round_robin or least_loaded"),
        "{text}"
    );
    // and the orchestrator refuses to start on it, naming the fix
    let out = orquesta()
        .args(["orchestrator", "--port", "0"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("MANUAL_MODE=false"), "{}", stderr(&out));
}

/// `orquesta orchestrator` in `dir`, expected to refuse to start (exit 2);
/// what it said.
fn refused_start(dir: &std::path::Path) -> String {
    let out = orquesta()
        .args(["orchestrator", "--port", "0"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    stderr(&out)
}

#[test]
fn a_missing_or_broken_workers_file_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let said = refused_start(dir.path());
    assert!(said.contains("config_workers.json not found"), "{said}");
    // a cluster whose workers all join (--join, an allocation queue) is told
    // how to say so
    assert!(said.contains(r#"{"workers": []}"#), "{said}");
    std::fs::write(
        dir.path().join("config_workers.json"),
        r#"{"workers": [{"id": "w", "host": "127.0.0.1", "port": 99999}]}"#,
    )
    .unwrap();
    let said = refused_start(dir.path());
    assert!(
        said.contains("workers[0].port: expected a port from 1 to 65535"),
        "{said}"
    );
}
