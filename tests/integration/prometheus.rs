//! `GET /metrics/prometheus` on the orchestrator and on each worker,
//! parsed with a real parser (Python's `prometheus_client`, which `.ci/run`
//! installs) and checked against the work a small cluster did: a file of 7
//! tasks of which 2 fail, and a bad file.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{http_with, missing_tool, small_tasks, wait_until, Cluster, Proc, WorkerSpec, FAST};

const LONG: Duration = Duration::from_secs(60);

/// Prints the families (name → type) and every sample of the exposition
/// on stdin as one JSON object.
const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
families, samples = {}, []
for family in text_string_to_metric_families(sys.stdin.read()):
    families[family.name] = family.type
    for s in family.samples:
        samples.append({"name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps({"families": families, "samples": samples}))
"#;

/// Whether Python's `prometheus_client` is here. Without it the test fails
/// under CI (`CI` set: `.ci/run` installs it) and is skipped, loudly,
/// elsewhere ([`missing_tool`]).
fn parser_available(test: &str) -> bool {
    let found = Command::new("python3")
        .args(["-c", "import prometheus_client.parser"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        missing_tool(
            test,
            "python3 with the module prometheus_client to parse the exposition \
             (python3 -m pip install prometheus_client)",
        );
    }
    found
}

/// A parsed exposition.
struct Parsed {
    /// Family name (without `_total` for counters) → type.
    families: serde_json::Map<String, Value>,
    samples: Vec<Sample>,
}

/// One parsed sample.
struct Sample {
    name: String,
    labels: serde_json::Map<String, Value>,
    value: f64,
}

/// Parses `text` with `prometheus_client.parser`; panics with its error.
fn parse(text: &str) -> Parsed {
    let mut child = Command::new("python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client cannot parse the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let samples = parsed["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Sample {
            name: s["name"].as_str().unwrap().to_string(),
            labels: s["labels"].as_object().unwrap().clone(),
            value: s["value"].as_f64().unwrap(),
        })
        .collect();
    Parsed {
        families: parsed["families"].as_object().unwrap().clone(),
        samples,
    }
}

/// The sum of the samples named `name` whose labels include `labels`.
fn sum(parsed: &Parsed, name: &str, labels: &[(&str, &str)]) -> f64 {
    parsed
        .samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k) == Some(&json!(v))))
        .map(|s| s.value)
        .sum()
}

/// Whether a family of that name and type was exposed.
fn has_family(parsed: &Parsed, family: &str, kind: &str) -> bool {
    parsed.families.get(family) == Some(&json!(kind))
}

/// `GET /metrics/prometheus`, checked to be the text format, parsed.
fn scrape(addr: &str) -> Parsed {
    let r = http_with("GET", addr, "/metrics/prometheus", None, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.headers
    );
    parse(&r.text())
}

#[test]
fn both_endpoints_count_the_work_done() {
    if !parser_available("prometheus::both_endpoints_count_the_work_done") {
        return;
    }
    let mut c = Cluster::start(
        &[WorkerSpec::new("w1", 1), WorkerSpec::new("w2", 1)],
        &[("MAX_TASK_RETRIES", "1")],
    );
    c.wait_workers_up();
    // 5 tasks that complete and 2 that fail on every attempt (2 each)
    let mut tasks = small_tasks("ok", 5);
    for i in 0..2 {
        tasks.push(
            json!({"task_id": format!("boom{i}"), "algorithm": "__panic", "parameters": {},
            "priority": "low"}),
        );
    }
    let drop_file = |name: &str, body: String| {
        let tmp = c.path(&format!("task_queues/{name}.tmp"));
        std::fs::write(&tmp, body).unwrap();
        std::fs::rename(&tmp, c.path(&format!("task_queues/{name}"))).unwrap();
    };
    drop_file("tareas_prom.json", json!({ "tasks": tasks }).to_string());
    drop_file(
        "bad.json",
        json!({"tasks": [{"task_id": "no_algorithm"}]}).to_string(),
    );
    c.wait_count("completed", 5, LONG);
    c.wait_count("failed", 2, LONG);
    wait_until(LONG, "the bad file's report", || {
        c.path("task_queues/rejected/bad.json.error.txt").exists()
    });

    let orch = scrape(&c.orch().addr);
    let v = |name: &str, labels: &[(&str, &str)]| sum(&orch, name, labels);
    let ended = "orquesta_tasks_ended_total";
    assert_eq!(v(ended, &[("outcome", "completed")]), 5.0);
    assert_eq!(
        v(ended, &[("outcome", "completed"), ("kernel", "reference")]),
        5.0
    );
    assert_eq!(v(ended, &[("outcome", "failed"), ("kernel", "__panic")]), 2.0);
    assert_eq!(v(ended, &[("outcome", "cancelled")]), 0.0);
    assert_eq!(v("orquesta_task_retries_total", &[]), 2.0);
    assert_eq!(v("orquesta_files_ingested_total", &[]), 1.0);
    assert_eq!(v("orquesta_files_rejected_total", &[]), 1.0);
    assert_eq!(v("orquesta_tasks_ingested_total", &[]), 7.0);
    assert_eq!(v("orquesta_late_results_total", &[]), 0.0);
    assert!(has_family(&orch, "orquesta_refusals", "counter"));
    // one execution time per completed task; one queue wait per attempt
    // that started (5 + 2 × 2)
    let exec = "orquesta_task_execution_seconds_count";
    assert_eq!(v(exec, &[("kernel", "reference")]), 5.0);
    assert_eq!(v(exec, &[]), 5.0);
    assert!(has_family(&orch, "orquesta_task_execution_seconds", "histogram"));
    assert_eq!(v("orquesta_task_queue_wait_seconds_count", &[]), 9.0);
    assert_eq!(
        v(
            "orquesta_task_execution_seconds_bucket",
            &[("kernel", "reference"), ("le", "+Inf")]
        ),
        5.0
    );

    // the gauges agree with /stats
    let stats = c.orch().get("/stats").json();
    for p in ["high", "medium", "low"] {
        for s in ["queued", "running", "completed", "failed", "cancelled"] {
            let want = stats["tasks"]["by_priority"][p][s].as_f64().unwrap_or(0.0);
            let got = v("orquesta_tasks", &[("status", s), ("priority", p)]);
            assert_eq!(got, want, "orquesta_tasks{{status={s},priority={p}}}: {stats}");
        }
    }
    assert_eq!(v("orquesta_tasks", &[("status", "completed")]), 5.0);
    assert_eq!(
        v("orquesta_tasks", &[("status", "failed"), ("priority", "low")]),
        2.0
    );
    assert_eq!(v("orquesta_workers", &[("state", "up")]), 2.0);
    assert_eq!(v("orquesta_workers", &[]), 2.0);
    for w in ["w1", "w2"] {
        assert_eq!(v("orquesta_worker_capacity", &[("worker", w)]), 1.0);
        assert_eq!(v("orquesta_worker_in_flight", &[("worker", w)]), 0.0);
        assert_eq!(v("orquesta_worker_running", &[("worker", w)]), 0.0);
        assert_eq!(v("orquesta_worker_backlog", &[("worker", w)]), 0.0);
    }

    // each worker's own counters add up to the orchestrator's
    let (mut completed, mut failed, mut timed) = (0.0, 0.0, 0.0);
    for (w, p) in ["w1", "w2"].iter().zip(&c.workers) {
        let s = scrape(&p.addr);
        assert!(
            s.samples
                .iter()
                .all(|x| x.labels.get("worker") == Some(&json!(w))),
            "every series names {w}"
        );
        completed += sum(&s, "orquesta_worker_tasks_total", &[("outcome", "completed")]);
        failed += sum(&s, "orquesta_worker_tasks_total", &[("outcome", "failed")]);
        timed += sum(&s, "orquesta_worker_task_execution_seconds_count", &[]);
        assert_eq!(sum(&s, "orquesta_worker_slots", &[]), 1.0);
        assert_eq!(sum(&s, "orquesta_worker_tasks_running", &[]), 0.0);
        assert_eq!(sum(&s, "orquesta_worker_tasks_backlog", &[]), 0.0);
        // the seed's JSON /metrics is still there, unchanged
        assert!(p.get("/metrics").json()["tasks_completed"].is_u64());
    }
    assert_eq!(completed, v(ended, &[("outcome", "completed")]));
    assert_eq!(timed, completed);
    // every failed attempt ran on a worker: the 2 failed tasks' last
    // attempts and the 2 that were retried
    assert_eq!(
        failed,
        v(ended, &[("outcome", "failed")]) + v("orquesta_task_retries_total", &[])
    );
    assert!(has_family(&orch, "orquesta_tasks", "gauge"));

    // a worker that stops answering: heartbeat failures, and it shows down
    c.workers[1].child.kill().unwrap();
    wait_until(LONG, "w2's heartbeat failures", || {
        let s = scrape(&c.orch().addr);
        sum(&s, "orquesta_heartbeat_failures_total", &[("worker", "w2")]) >= 1.0
            && sum(&s, "orquesta_workers", &[("state", "down")]) == 1.0
    });
}

#[test]
fn the_endpoints_need_the_token() {
    let secret = "prom-Token-4711";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config_workers.json"), r#"{"workers": []}"#).unwrap();
    let mut env = FAST.to_vec();
    env.push(("ORQUESTA_TOKEN", secret));
    let orch = Proc::start(dir.path(), &["orchestrator", "--port", "0"], &env);
    let worker = Proc::start(
        dir.path(),
        &["worker", "--worker-id", "w1", "--port", "0"],
        &[("ORQUESTA_TOKEN", secret)],
    );
    let bearer = format!("Bearer {secret}");
    for p in [&orch, &worker] {
        let r = http_with("GET", &p.addr, "/metrics/prometheus", None, &[]);
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(r.json()["code"], "unauthorized");
        let r = http_with(
            "GET",
            &p.addr,
            "/metrics/prometheus",
            None,
            &[("authorization", &bearer)],
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains("# TYPE orquesta_"), "{}", r.text());
        // another method is a JSON 405, like every route
        let r = http_with(
            "POST",
            &p.addr,
            "/metrics/prometheus",
            None,
            &[("authorization", &bearer)],
        );
        assert_eq!(r.status, 405, "{}", r.text());
    }
}
