//! The worker node over HTTP, as the orchestrator and curl users drive it.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{http_raw, request_bytes, sim_task, sleep_task, wait_until, Proc};

const TEST_KERNELS: (&str, &str) = ("ORQUESTA_TEST_KERNELS", "1");

fn worker(dir: &std::path::Path, extra: &[&str]) -> Proc {
    let mut args = vec!["worker", "--worker-id", "w1", "--port", "0"];
    if !extra.contains(&"--capacity") {
        args.extend_from_slice(&["--capacity", "2"]);
    }
    args.extend_from_slice(extra);
    Proc::start(dir, &args, &[TEST_KERNELS])
}

#[test]
fn the_seeds_task_runs_through_execute_and_every_endpoint_answers() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), &[]);

    let r = w.post("/execute", &sim_task("task_001", "python", 100, 500, 123));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["task_id"], "task_001");
    assert_eq!(v["algorithm"], "python");
    assert_eq!(
        v["parameters"],
        json!({"num_particles": 100, "num_steps": 500, "seed": 123})
    );
    assert_eq!(v["worker_id"], "w1");
    assert_eq!(v["priority"], "high");
    assert!(v["completed_at"].as_str().unwrap().ends_with('Z'));
    assert!(v["execution_time"].as_f64().unwrap() > 0.0);
    assert_eq!(v["result"]["status"], "completed");
    assert_eq!(v["result"]["metrics"]["particles_processed"], 100);
    assert_eq!(v["result"]["metrics"]["steps_completed"], 500);

    let s = w.get("/status").json();
    assert_eq!(s["worker_id"], "w1");
    assert_eq!(s["capacity"], 2);
    assert_eq!(s["running"], 0);
    assert_eq!(s["state"], "idle");
    assert!(s["algorithms"].as_array().unwrap().contains(&json!("cython")));
    assert!(s["uptime_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));

    let h = w.get("/health");
    assert_eq!(h.status, 200);
    assert_eq!(h.json()["status"], "healthy");

    let m = w.get("/metrics").json();
    assert_eq!(m["tasks_completed"], 1);
    assert_eq!(m["per_algorithm"]["python"]["tasks"], 1);
    assert!(m["per_algorithm"]["python"]["p90_seconds"].as_f64().unwrap() > 0.0);
    assert!(m["particle_steps_per_second"].as_f64().unwrap() > 0.0);
    assert!(m["memory"]["resident_bytes"].as_u64().unwrap() > 0);
    assert!(m["busy_fraction"].as_f64().unwrap() > 0.0);

    w.post("/execute", &sim_task("task_002", "cython", 200, 10, 456));
    let hist = w.get("/history").json();
    assert_eq!(hist["count"], 2);
    assert_eq!(hist["results"][0]["task_id"], "task_002", "newest first");
    assert_eq!(w.get("/history?limit=1").json()["count"], 1);

    assert_eq!(w.get("/current").json()["count"], 0);
    let held = w.get("/results/task_001");
    assert_eq!(held.status, 200);
    assert_eq!(held.json()["result"]["metrics"], v["result"]["metrics"]);
    assert_eq!(w.delete("/results/task_001").status, 200);
    assert_eq!(w.get("/results/task_001").status, 404);
    let acked = w
        .post("/results/ack", r#"{"task_ids": ["task_002", "never"]}"#)
        .json();
    assert_eq!(acked, json!({"requested": 2, "acknowledged": 1}));
    assert_eq!(w.post("/cancel/nothing_running", "").status, 404);

    // the state file of this worker is kept current
    let state = dir.path().join("logs/worker_w1_state.json");
    wait_until(Duration::from_secs(5), "state file", || {
        std::fs::read_to_string(&state)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|v| v["status"]["tasks_completed"] == 2)
    });
    // written by the log's own thread, a moment after the answer
    wait_until(Duration::from_secs(30), "the task finished line", || {
        std::fs::read_to_string(dir.path().join("logs/worker_service.log"))
            .unwrap_or_default()
            .contains("task finished")
    });
}

#[test]
fn the_same_task_gives_the_same_bits() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), &[]);
    let a = w
        .post("/execute", &sim_task("a", "optimized", 500, 200, 9))
        .json();
    let b = w
        .post("/execute", &sim_task("b", "optimized", 500, 200, 9))
        .json();
    for field in [
        "total_energy_final",
        "position_checksum",
        "max_energy_drift",
        "temperature_final",
    ] {
        let (x, y) = (&a["result"]["metrics"][field], &b["result"]["metrics"][field]);
        assert_eq!(
            x.as_f64().unwrap().to_bits(),
            y.as_f64().unwrap().to_bits(),
            "{field}"
        );
    }
}

#[test]
fn a_full_worker_refuses_with_retry_after_and_duplicates_get_409() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), &["--capacity", "1"]);
    let addr = w.addr.clone();
    let long = std::thread::spawn(move || {
        crate::common::http(
            "POST",
            &addr,
            "/execute",
            Some(sleep_task("long", 1.5).as_bytes()),
        )
    });
    wait_until(Duration::from_secs(10), "the task to start", || {
        w.get("/current").json()["count"] == 1
    });
    let r = w.post("/execute", &sleep_task("other", 0.1));
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.json()["error"].as_str().unwrap().contains("full"));
    let dup = w.post(
        "/execute",
        r#"{"task_id": "long", "algorithm": "__sleep", "parameters": {"seconds": 1}, "attempt_id": 9}"#,
    );
    assert_eq!(dup.status, 409, "{}", dup.text());
    let first = long.join().unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(first.json()["result"]["status"], "completed");
    // room again
    assert_eq!(w.post("/execute", &sleep_task("other", 0.0)).status, 200);
    assert_eq!(w.get("/metrics").json()["refused_full"], 1);
}

#[test]
fn many_concurrent_requests_never_exceed_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), &["--capacity", "2"]);
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let addr = w.addr.clone();
            std::thread::spawn(move || {
                crate::common::http(
                    "POST",
                    &addr,
                    "/execute",
                    Some(sleep_task(&format!("c{i}"), 0.8).as_bytes()),
                )
                .status
            })
        })
        .collect();
    let codes: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(codes.iter().filter(|&&c| c == 200).count(), 2, "{codes:?}");
    assert_eq!(codes.iter().filter(|&&c| c == 429).count(), 4, "{codes:?}");
}

#[test]
fn cancel_stops_a_long_task_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), &[]);
    let addr = w.addr.clone();
    // a real simulation that would take minutes
    let body = sim_task("big", "optimized", 200_000, 100_000, 1);
    let running =
        std::thread::spawn(move || crate::common::http("POST", &addr, "/execute", Some(body.as_bytes())));
    wait_until(Duration::from_secs(20), "steps to be done", || {
        w.get("/current").json()["tasks"][0]["steps_done"]
            .as_u64()
            .unwrap_or(0)
            > 0
    });
    let current = w.get("/current").json();
    assert_eq!(current["tasks"][0]["task_id"], "big");
    assert!(current["tasks"][0]["elapsed_seconds"].as_f64().unwrap() > 0.0);
    let asked = Instant::now();
    let c = w.post("/cancel/big", "");
    assert_eq!(c.status, 200);
    let r = running.join().unwrap().json();
    assert!(asked.elapsed() < Duration::from_secs(10));
    assert_eq!(r["result"]["status"], "cancelled");
    let done = r["result"]["metrics"]["steps_completed"].as_u64().unwrap();
    assert!(done > 0 && done < 100_000);
    assert_eq!(w.get("/metrics").json()["tasks_cancelled"], 1);
}

#[test]
fn a_client_that_leaves_does_not_cancel_and_the_result_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), &[]);
    {
        let mut s = TcpStream::connect(&w.addr).unwrap();
        let body = r#"{"task_id": "orphan", "algorithm": "__sleep", "parameters": {"seconds": 0.5}, "attempt_id": 77}"#;
        s.write_all(&request_bytes("POST", &w.addr, "/execute", Some(body.as_bytes())))
            .unwrap();
        wait_until(Duration::from_secs(10), "the task to start", || {
            w.get("/current").json()["count"] == 1
        });
        let current = w.get("/current").json();
        assert_eq!(current["tasks"][0]["attempt_id"], 77);
    } // connection dropped mid-task
    wait_until(Duration::from_secs(10), "the orphan's result", || {
        w.get("/results/orphan").status == 200
    });
    let r = w.get("/results/orphan").json();
    assert_eq!(r["result"]["status"], "completed");
    assert_eq!(r["attempt_id"], 77);
    assert_eq!(w.delete("/results/orphan").status, 200);
    assert_eq!(w.get("/results/orphan").status, 404);
}

#[test]
fn held_results_survive_a_worker_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let w = worker(dir.path(), &[]);
        w.post("/execute", &sim_task("kept", "python", 50, 5, 1));
        w.post("/execute", &sim_task("acked", "python", 50, 5, 1));
        w.delete("/results/acked");
        // the journal is written by a background thread: both results and
        // the acknowledgement, each a whole line, before the kill
        let journal = dir.path().join("logs/worker_w1_results.jsonl");
        wait_until(Duration::from_secs(10), "the journal written", || {
            let text = std::fs::read_to_string(&journal).unwrap_or_default();
            text.ends_with('\n') && text.lines().count() >= 3
        });
    } // SIGKILL
    let w = worker(dir.path(), &[]);
    assert_eq!(w.get("/results/kept").status, 200);
    assert_eq!(w.get("/results/acked").status, 404);
}

#[test]
fn a_panicking_kernel_fails_the_task_and_the_worker_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), &["--capacity", "1"]);
    for i in 0..3 {
        let r = w.post(
            "/execute",
            &format!(r#"{{"task_id": "p{i}", "algorithm": "__panic", "parameters": {{}}}}"#),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        assert_eq!(v["result"]["status"], "failed");
        assert!(v["result"]["error"].as_str().unwrap().contains("panicked"), "{v}");
    }
    let ok = w.post("/execute", &sim_task("after", "cython", 100, 10, 1));
    assert_eq!(ok.json()["result"]["status"], "completed");
    assert_eq!(w.get("/metrics").json()["tasks_failed"], 3);
}

#[test]
fn test_kernels_are_refused_without_the_switch() {
    let dir = tempfile::tempdir().unwrap();
    let w = Proc::start(dir.path(), &["worker", "--port", "0"], &[]);
    let r = w.post("/execute", &sleep_task("s", 0.1));
    assert_eq!(r.status, 422);
    assert!(r.text().contains("ORQUESTA_TEST_KERNELS=1"), "{}", r.text());
    // default id from the port
    assert!(w.get("/status").json()["worker_id"]
        .as_str()
        .unwrap()
        .starts_with("worker-"));
}

#[test]
fn a_restricted_worker_lists_and_accepts_only_its_algorithms() {
    let dir = tempfile::tempdir().unwrap();
    let w = Proc::start(
        dir.path(),
        &["worker", "--port", "0", "--algorithms", "python,reference"],
        &[],
    );
    assert_eq!(
        w.get("/status").json()["algorithms"],
        json!(["python", "reference"])
    );
    assert_eq!(
        w.post("/execute", &sim_task("a", "cython", 100, 1, 1)).status,
        422
    );
    assert_eq!(
        w.post("/execute", &sim_task("b", "python", 100, 1, 1)).status,
        200
    );
}

#[test]
fn bad_requests_get_clear_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let w = worker(dir.path(), &[]);
    let valid_params = r#""parameters": {"num_particles": 100, "num_steps": 1, "seed": 1}"#;
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("empty body", String::new(), 400, "empty"),
        ("whitespace", "   \n".into(), 400, "empty"),
        ("truncated JSON", r#"{"task_id": "t""#.into(), 400, "malformed JSON"),
        ("not JSON", "task_id=t".into(), 400, "malformed JSON"),
        ("an array", "[1, 2]".into(), 422, "expected a task object"),
        ("a string", r#""hello""#.into(), 422, "expected a task object"),
        ("null", "null".into(), 422, "expected a task object"),
        ("missing task_id", format!(r#"{{"algorithm": "python", {valid_params}}}"#), 422, "task_id: required"),
        ("numeric task_id", format!(r#"{{"task_id": 5, "algorithm": "python", {valid_params}}}"#), 422, "task_id: expected a string"),
        ("path-like task_id", format!(r#"{{"task_id": "../../etc", "algorithm": "python", {valid_params}}}"#), 422, "task_id: expected only letters"),
        ("unknown algorithm", format!(r#"{{"task_id": "t", "algorithm": "fortran", {valid_params}}}"#), 422, "algorithm: expected one of"),
        ("missing parameters", r#"{"task_id": "t", "algorithm": "python"}"#.into(), 422, "parameters: required"),
        ("parameters not an object", r#"{"task_id": "t", "algorithm": "python", "parameters": [1]}"#.into(), 422, "parameters: expected an object"),
        ("string particles", r#"{"task_id": "t", "algorithm": "python", "parameters": {"num_particles": "100", "num_steps": 1, "seed": 1}}"#.into(), 422, "num_particles: expected a whole number"),
        ("negative steps", r#"{"task_id": "t", "algorithm": "python", "parameters": {"num_particles": 100, "num_steps": -1, "seed": 1}}"#.into(), 422, "num_steps: expected a whole number ≥ 0"),
        ("fractional seed", r#"{"task_id": "t", "algorithm": "python", "parameters": {"num_particles": 100, "num_steps": 1, "seed": 0.5}}"#.into(), 422, "seed: expected a whole number"),
        ("too few particles", r#"{"task_id": "t", "algorithm": "python", "parameters": {"num_particles": 3, "num_steps": 1, "seed": 1}}"#.into(), 422, "num_particles: expected a whole number ≥ 13"),
        ("absurd size", r#"{"task_id": "t", "algorithm": "cython", "parameters": {"num_particles": 1000000000, "num_steps": 1, "seed": 1}}"#.into(), 422, "limit"),
        ("absurd work", r#"{"task_id": "t", "algorithm": "cython", "parameters": {"num_particles": 1000000, "num_steps": 100000000, "seed": 1}}"#.into(), 422, "num_steps"),
        ("zero density", r#"{"task_id": "t", "algorithm": "cython", "parameters": {"num_particles": 100, "num_steps": 1, "seed": 1, "density": 0}}"#.into(), 422, "density: expected a number from 1e-6 to 1.2, found 0"),
        ("string dt", r#"{"task_id": "t", "algorithm": "cython", "parameters": {"num_particles": 100, "num_steps": 1, "seed": 1, "dt": "fast"}}"#.into(), 422, "dt: expected a number"),
        ("bad priority", format!(r#"{{"task_id": "t", "algorithm": "python", "priority": "urgent", {valid_params}}}"#), 422, "priority: expected"),
        ("bad attempt_id", format!(r#"{{"task_id": "t", "algorithm": "python", "attempt_id": -3, {valid_params}}}"#), 422, "attempt_id"),
        ("invalid UTF-8", "{\"task_id\": \"\u{fffd}\"}".replace('\u{fffd}', "\u{ff}"), 422, "task_id"),
    ];
    for (name, body, code, phrase) in &cases {
        let r = w.post("/execute", body);
        assert_eq!(r.status, *code, "{name}: {}", r.text());
        let v = r.json();
        let error = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no error field in {v}"));
        assert!(error.contains(phrase), "{name}: {error:?} lacks {phrase:?}");
    }
    // raw invalid UTF-8 bytes
    let mut raw = br#"{"task_id": ""#.to_vec();
    raw.extend_from_slice(&[0xff, 0xfe]);
    raw.extend_from_slice(br#"", "algorithm": "python"}"#);
    let r = http_raw(&w.addr, &request_bytes("POST", &w.addr, "/execute", Some(&raw)));
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("malformed JSON"));
    // oversize body
    let huge = format!(r#"{{"task_id": "t", "pad": "{}"}}"#, "x".repeat(2 << 20));
    let r = w.post("/execute", &huge);
    assert_eq!(r.status, 413);
    assert!(r.json()["error"].as_str().unwrap().contains("limit"));
    // unknown route, wrong method, bad path id, bad query
    assert_eq!(w.get("/nope").status, 404);
    assert!(w.get("/nope").json()["error"].as_str().is_some());
    assert_eq!(w.get("/execute").status, 405);
    assert_eq!(w.get("/results/..%2F..").status, 400);
    assert_eq!(w.get("/history?limit=many").status, 400);
    assert_eq!(w.post("/results/ack", r#"{"ids": []}"#).status, 400);
    // still serving
    assert_eq!(w.get("/health").status, 200);
    assert_eq!(w.get("/metrics").json()["tasks_completed"], 0, "nothing bad ran");
}

/// Posts a sleeping task from another thread and waits until it runs.
fn start_sleeping(w: &Proc, id: &str, seconds: f64) -> std::thread::JoinHandle<crate::common::Response> {
    let addr = w.addr.clone();
    let body = sleep_task(id, seconds);
    let running =
        std::thread::spawn(move || crate::common::http("POST", &addr, "/execute", Some(body.as_bytes())));
    wait_until(Duration::from_secs(10), "the task to start", || {
        w.get("/current").json()["count"] == 1
    });
    running
}

#[test]
fn sigterm_drains_running_tasks_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = worker(dir.path(), &["--drain-timeout", "20"]);
    let running = start_sleeping(&w, "draining", 1.0);
    w.signal(libc::SIGTERM);
    wait_until(Duration::from_secs(5), "draining", || {
        w.get("/health").status == 503
    });
    let refused = w.post("/execute", &sleep_task("late", 0.1));
    assert_eq!(refused.status, 503);
    let r = running.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["result"]["status"],
        "completed",
        "the running task finished"
    );
    assert_eq!(w.wait_exit(Duration::from_secs(20)), Some(0), "{}", w.log());
}

#[test]
fn a_stop_asked_for_as_soon_as_it_listens_is_an_orderly_stop() {
    // the handlers used to be installed by a task spawned after "listening
    // on" was printed: a SIGTERM in between (a Slurm job cancelled at
    // start, the parent of --exit-with-parent gone) ended the process by
    // the signal's default action, with no drain and no last lines
    let stops_in_order = |mut p: Proc, last_words: &str| {
        p.signal(libc::SIGTERM);
        assert_eq!(p.wait_exit(Duration::from_secs(20)), Some(0), "{}", p.log());
        assert!(p.log().contains(last_words), "{}", p.log());
    };
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        stops_in_order(worker(dir.path(), &[]), "shutdown requested");
        std::fs::write(dir.path().join("config_workers.json"), r#"{"workers": []}"#).unwrap();
        let o = Proc::start(dir.path(), &["orchestrator", "--port", "0"], &[]);
        stops_in_order(o, "orchestrator stopped");
    }
}

#[test]
fn sigterm_cancels_what_outlives_the_drain_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = worker(dir.path(), &["--drain-timeout", "0.3"]);
    let running = start_sleeping(&w, "slow", 60.0);
    let asked = Instant::now();
    w.signal(libc::SIGTERM);
    assert_eq!(w.wait_exit(Duration::from_secs(20)), Some(0), "{}", w.log());
    assert!(asked.elapsed() < Duration::from_secs(15));
    let r = running.join().unwrap();
    assert_eq!(r.json()["result"]["status"], "cancelled");
}

#[test]
fn two_workers_share_a_folder_without_clobbering() {
    let dir = tempfile::tempdir().unwrap();
    let a = Proc::start(dir.path(), &["worker", "--worker-id", "wa", "--port", "0"], &[]);
    let b = Proc::start(dir.path(), &["worker", "--worker-id", "wb", "--port", "0"], &[]);
    a.post("/execute", &sim_task("ta", "python", 50, 1, 1));
    b.post("/execute", &sim_task("tb", "python", 50, 1, 1));
    for id in ["wa", "wb"] {
        let path = dir.path().join(format!("logs/worker_{id}_state.json"));
        wait_until(Duration::from_secs(5), "state files", || {
            std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|v| v["status"]["worker_id"] == id && v["status"]["tasks_completed"] == 1)
        });
    }
    assert_eq!(a.get("/results/tb").status, 404);
    assert_eq!(b.get("/results/tb").status, 200);
}

#[test]
fn worker_id_and_port_come_from_the_environment_and_dotenv() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "WORKER_ID=from_dotenv   # a comment\nWORKER_PORT=0\n",
    )
    .unwrap();
    let w = Proc::start(dir.path(), &["worker"], &[]);
    assert_eq!(w.get("/status").json()["worker_id"], "from_dotenv");
    let w2 = Proc::start(dir.path(), &["worker"], &[("WORKER_ID", "from_env")]);
    assert_eq!(w2.get("/status").json()["worker_id"], "from_env");
}

#[test]
fn bad_worker_configuration_stops_start_up_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["worker", "--port", "0", "--capacity", "0"], "--capacity"),
        (&["worker", "--port", "0", "--algorithms", "fortran"], "fortran"),
        (
            &["worker", "--port", "0", "--worker-id", "a/b"],
            "invalid worker id",
        ),
        (
            &["worker", "--port", "0", "--drain-timeout", "-1"],
            "--drain-timeout",
        ),
    ];
    for (args, phrase) in cases {
        let out = crate::common::orquesta()
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(phrase), "{args:?}: {err}");
    }
}

#[test]
fn start_worker_sh_starts_a_worker_from_the_seeds_variables() {
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/start_worker.sh");
    let bin = env!("CARGO_BIN_EXE_orquesta");
    // the script cds to its own folder; logs go to the temp dir
    let logs = dir.path().join("logs");
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(script)
        .args(["--logs-dir", logs.to_str().unwrap()])
        .env("WORKER_ID", "script_w")
        .env("WORKER_PORT", "0")
        .env("ORQUESTA_BIN", bin)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = std::io::BufRead::lines(std::io::BufReader::new(stdout))
        .map_while(Result::ok)
        .find(|l| l.contains("listening on http://"))
        .expect("a listening line");
    let addr = line.split("http://").nth(1).unwrap().trim().to_string();
    let status = crate::common::http("GET", &addr, "/status", None).json();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status["worker_id"], "script_w");
    assert!(logs.join("worker_script_w_state.json").exists() || logs.join("worker_service.log").exists());
}
