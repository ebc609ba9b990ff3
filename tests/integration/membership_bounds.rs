//! Membership that cannot be stolen or bloated: a joined id is taken back
//! only by its own worker (the secret it keeps), `MAX_WORKERS` refuses
//! joins beyond it, `WORKER_EXPIRY` removes unreachable joined workers
//! (and their Prometheus series, and their database rows), and a large
//! workers file is applied while the API keeps answering.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{joined_worker, sleep_task, wait_until, worker_row, Proc, FAST};

const LONG: Duration = Duration::from_secs(60);

/// An orchestrator with an empty workers file and `FAST` timers plus `extra`.
fn orchestrator(dir: &Path, port: u16, extra: &[(&str, &str)]) -> Proc {
    if !dir.join("config_workers.json").exists() {
        std::fs::write(dir.join("config_workers.json"), r#"{"workers": []}"#).unwrap();
    }
    let mut env: Vec<(&str, &str)> = FAST.to_vec();
    env.extend_from_slice(extra);
    Proc::start(dir, &["orchestrator", "--port", &port.to_string()], &env)
}

fn hand_join(orch: &Proc, id: &str, port: u16, instance: &str) -> crate::common::Response {
    let body = json!({"id": id, "url": format!("http://127.0.0.2:{port}"), "capacity": 1,
        "algorithms": ["python"], "instance": instance, "version": "test"});
    orch.post("/workers/join", &body.to_string())
}

#[test]
fn a_joined_id_is_taken_back_by_its_own_worker_only() {
    let home = tempfile::tempdir().unwrap();
    let orch = orchestrator(home.path(), 0, &[]);
    let join = format!("http://{}", orch.addr);
    let own = tempfile::tempdir().unwrap();
    let mut jw = joined_worker(own.path(), "jw", 1, &join);
    wait_until(LONG, "jw joined and up", || {
        worker_row(&orch, "jw")["state"] == "up"
    });
    let first_address = jw.addr.clone();

    // kill -9: its entry stands, down
    jw.signal(libc::SIGKILL);
    jw.wait_exit(LONG);
    wait_until(LONG, "jw down", || worker_row(&orch, "jw")["state"] == "down");

    // another process claiming the id, from its own folder: refused, and
    // the entry still names the first
    let elsewhere = tempfile::tempdir().unwrap();
    let rogue = joined_worker(elsewhere.path(), "jw", 64, &join);
    wait_until(LONG, "the rogue refused", || {
        rogue.log().contains("another live worker has the id jw")
    });
    let by_hand = hand_join(&orch, "jw", 9, "rogue-instance");
    assert_eq!(by_hand.status, 409, "{}", by_hand.text());
    let refusal = by_hand.json();
    assert_eq!(refusal["code"], "worker_id_taken", "{refusal}");
    let message = refusal["error"].as_str().unwrap();
    assert!(
        message.contains("did not show the secret") && message.contains("DELETE /workers/jw"),
        "the refusal says why and how it ends: {message}"
    );
    let row = worker_row(&orch, "jw");
    assert_eq!(row["address"], first_address.as_str(), "{row}");
    assert_eq!(row["capacity"], 1, "{row}");

    // the real jw, restarted in its folder, shows its secret: accepted
    let jw = joined_worker(own.path(), "jw", 1, &join);
    wait_until(LONG, "the real jw back and up", || {
        let r = worker_row(&orch, "jw");
        r["state"] == "up" && r["address"] == jw.addr.as_str()
    });
    let secret = std::fs::read_to_string(own.path().join("logs/worker_jw_join_secret")).unwrap();
    assert_eq!(secret.trim().len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(own.path().join("logs/worker_jw_join_secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the secret is its owner's only: {mode:o}");
    }
    assert!(!orch.log().contains(secret.trim()), "the secret is never logged");
    assert!(!jw.log().contains(secret.trim()), "the secret is never logged");
    drop(rogue);
}

#[test]
fn max_workers_refuses_joins_and_unreachable_joined_workers_expire() {
    let home = tempfile::tempdir().unwrap();
    let bounds = [("MAX_WORKERS", "3"), ("WORKER_EXPIRY", "2")];
    let orch = orchestrator(home.path(), 0, &bounds);
    // three joins to closed ports fill it
    for (k, id) in ["z0", "z1", "z2"].iter().enumerate() {
        let r = hand_join(&orch, id, 9 + k as u16, "i");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let full = hand_join(&orch, "z3", 20, "i");
    assert_eq!(full.status, 409, "{}", full.text());
    let body = full.json();
    assert_eq!(body["code"], "too_many_workers", "{body}");
    assert_eq!(body["max_workers"], 3, "{body}");
    assert!(body["error"].as_str().unwrap().contains("MAX_WORKERS"), "{body}");
    wait_until(LONG, "a per-worker series for z0", || {
        orch.metric(r#"orquesta_worker_checks_total{worker="z0"}"#) > 0
    });

    // unreachable for WORKER_EXPIRY: removed, with their series
    wait_until(LONG, "the three expired", || {
        orch.get("/workers").json()["total"] == 0
    });
    let text = orch.get("/metrics/prometheus").text();
    assert!(!text.contains(r#"worker="z0""#), "{text}");
    // (log lines are written by a thread of their own)
    wait_until(LONG, "the expiry logged", || {
        orch.log().contains("unreachable for WORKER_EXPIRY")
    });
    let r = hand_join(&orch, "z3", 20, "i");
    assert_eq!(r.status, 200, "room again: {}", r.text());

    // and gone from the database: a restart does not bring them back
    let port: u16 = orch.addr.rsplit(':').next().unwrap().parse().unwrap();
    let mut orch = orch;
    orch.signal(libc::SIGKILL);
    orch.wait_exit(LONG);
    let orch = orchestrator(
        home.path(),
        port,
        &[("MAX_WORKERS", "3"), ("WORKER_EXPIRY", "none")],
    );
    let listed: Vec<String> = orch.get("/workers").json()["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap().to_string())
        .collect();
    // (z3, unreachable too, may have expired before the kill)
    assert!(listed.iter().all(|id| id == "z3"), "{listed:?}");
}

#[test]
fn a_large_workers_file_is_applied_while_the_api_answers() {
    let home = tempfile::tempdir().unwrap();
    // heartbeats at their default pace: 2,000 proxies at FAST's would be a
    // load test of their own
    let orch = orchestrator(
        home.path(),
        0,
        &[
            ("HEARTBEAT_INTERVAL", "1"),
            ("WORKER_TIMEOUT", "30"),
            ("MAX_WORKERS", "5000"),
        ],
    );
    const N: u16 = 2000;
    let workers: Vec<_> = (0..N)
        .map(|k| json!({"id": format!("c{k}"), "host": "127.0.0.2", "port": 40_001 + k, "capacity": 1}))
        .collect();
    let file = home.path().join("config_workers.json");
    let staged = home.path().join(".config_workers.json.tmp");
    std::fs::write(&staged, json!({ "workers": workers }).to_string()).unwrap();
    let started = Instant::now();
    std::fs::rename(&staged, &file).unwrap();

    // while it is applied, /health and POST /tasks answer
    let mut slowest = Duration::ZERO;
    let mut answered = 0;
    loop {
        let t = Instant::now();
        assert_eq!(orch.get("/health").status, 200);
        let r = orch.post("/tasks", &sleep_task(&format!("t{answered}"), 0.01));
        assert_eq!(r.status, 201, "{}", r.text());
        slowest = slowest.max(t.elapsed());
        answered += 1;
        if orch.get("/workers").json()["total"] == N {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "not applied in 10 minutes"
        );
    }
    eprintln!(
        "2,000-entry workers file applied in {:.1} s; {answered} rounds of GET /health + POST /tasks, \
         the slowest {:.2} s",
        started.elapsed().as_secs_f64(),
        slowest.as_secs_f64()
    );
    assert!(
        slowest < Duration::from_secs(10),
        "the API stalled {:.1} s while the workers file was applied",
        slowest.as_secs_f64()
    );
}
