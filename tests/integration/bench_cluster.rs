//! `orquesta bench cluster` and `bench e2e`, small: each case starts its
//! own local cluster (free loopback ports, a temporary folder), and its
//! output must carry every figure and show every task recorded exactly
//! once. Nothing here looks at how fast it went.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::orquesta;

/// Runs `orquesta ARGS…` in a temporary folder (so no `.env` of the repo
/// is read), killed if it has not ended within `limit`; (success, stdout).
fn bench(args: &[&str], limit: Duration) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = orquesta()
        .args(args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("orquesta starts");
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let mut err = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("orquesta {args:?} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    if !status.success() {
        eprintln!("orquesta {args:?} failed:\n{stdout}\n{stderr}");
    }
    (status.success(), stdout)
}

/// The one JSON object a `--json` run of one case prints.
fn json_case(args: &[&str]) -> Value {
    let (ok, out) = bench(args, Duration::from_secs(300));
    assert!(ok, "{args:?}:\n{out}");
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one JSON object per case, found:\n{out}");
    serde_json::from_str(lines[0]).expect("a JSON object")
}

fn assert_spread(v: &Value, key: &str) {
    let s = &v[key];
    for k in ["median", "min", "max"] {
        assert!(s[k].as_f64().is_some(), "{key}.{k} missing in {v}");
    }
    assert!(s["min"].as_f64() <= s["median"].as_f64() && s["median"].as_f64() <= s["max"].as_f64());
}

/// Every figure of a throughput case, and every task recorded once.
fn check_throughput(v: &Value, case: &str, tasks: u64, runs: usize) {
    assert_eq!(v["case"], case);
    assert_eq!(v["tasks"], tasks);
    assert_eq!(v["workers"], 2);
    assert_eq!(v["slots"], 1);
    assert_eq!(v["all_recorded_once"], true, "{v}");
    for key in [
        "tasks_per_second",
        "overhead_us_per_task",
        "exec_ms_per_task",
        "wall_seconds",
        "orchestrator_cpu_seconds",
        "workers_cpu_seconds",
    ] {
        assert_spread(v, key);
    }
    let list = v["runs"].as_array().expect("runs");
    assert_eq!(list.len(), runs);
    for r in list {
        assert_eq!(r["recorded"], tasks, "{r}");
        assert_eq!(r["completed"], tasks, "{r}");
        assert_eq!(r["duplicates"], 0);
        assert_eq!(r["failed"], 0);
        assert!(r["exec_ms_per_task"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["orchestrator_cpu_seconds"].as_f64().is_some(), "{r}");
        assert!(r["orchestrator_runqueue_wait_seconds"].as_f64().is_some(), "{r}");
        assert!(
            r["orchestrator_context_switches"]["voluntary"].as_u64().is_some(),
            "{r}"
        );
        // CPU is counted in 10 ms ticks: a short run's thread list may
        // be empty, but it is always there
        assert!(r["orchestrator_threads"].is_array(), "{r}");
    }
}

#[test]
fn bench_cluster_trivial_records_every_task_and_prints_every_figure() {
    let v = json_case(&["bench", "cluster", "trivial", "--tasks", "200", "--json"]);
    check_throughput(&v, "trivial", 200, 1);
    assert_eq!(v["algorithm"], "optimized");
    assert_eq!(
        (v["particles"].as_u64(), v["steps"].as_u64()),
        (Some(16), Some(1))
    );
}

#[test]
fn bench_cluster_ms_repeats_runs_and_gives_the_overhead_per_task() {
    let v = json_case(&["bench", "cluster", "ms", "--tasks", "20", "--runs", "2", "--json"]);
    check_throughput(&v, "ms", 20, 2);
    assert_eq!(v["algorithm"], "reference");
    assert_eq!(
        (v["particles"].as_u64(), v["steps"].as_u64()),
        (Some(100), Some(40))
    );
}

#[test]
fn bench_cluster_ingest_gives_rate_memory_and_read_latencies() {
    let v = json_case(&["bench", "cluster", "ingest", "--tasks", "20000", "--json"]);
    assert_eq!(v["case"], "ingest");
    assert_eq!(v["tasks"], 20000);
    assert!(v["file_bytes"].as_u64().unwrap() > 20000 * 50, "{v}");
    for key in [
        "accept_seconds",
        "tasks_per_second",
        "orchestrator_rss_peak_mb",
        "orchestrator_rss_after_mb",
    ] {
        assert_spread(&v, key);
    }
    assert!(
        v["orchestrator_rss_peak_mb"]["median"].as_f64() >= v["orchestrator_rss_after_mb"]["median"].as_f64()
    );
    let endpoints = v["endpoints"].as_object().expect("endpoints");
    for path in [
        "/health",
        "/stats",
        "/tasks?status=queued&limit=100",
        "/tasks/bulk10000",
        "/tasks?worker=w1",
    ] {
        let e = &endpoints[path];
        assert_spread(e, "median_ms");
        assert_spread(e, "max_ms");
    }
}

#[test]
fn bench_cluster_table_says_every_task_was_recorded() {
    let (ok, out) = bench(
        &[
            "bench",
            "cluster",
            "trivial",
            "--tasks",
            "100",
            "--workers",
            "1",
            "--slots",
            "2",
        ],
        Duration::from_secs(300),
    );
    assert!(ok, "{out}");
    assert!(out.contains("cluster trivial: 100 tasks"), "{out}");
    assert!(out.contains("1 workers x 2 slots"), "{out}");
    assert!(out.contains("100/100"), "{out}");
    assert!(
        out.contains("every task recorded exactly once, none failed: yes"),
        "{out}"
    );
}

#[test]
fn bench_e2e_still_reports_throughput_and_dispatch_latency() {
    let (ok, out) = bench(
        &["bench", "e2e", "--tasks", "200", "--latency-samples", "2"],
        Duration::from_secs(300),
    );
    assert!(ok, "{out}");
    assert!(out.contains("throughput"), "{out}");
    assert!(out.contains("drop-to-first-dispatch"), "{out}");
}
