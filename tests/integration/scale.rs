//! Membership at scale: `GET /workers` pages with counts over every
//! worker, heartbeats spaced as the cluster grows (`HEARTBEAT_RATE`) never
//! declare a healthy worker down, and a storm of hundreds of joins ends
//! with every id up.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{fake_worker, joined_worker, wait_until, worker_row, Proc, FAST};

const LONG: Duration = Duration::from_secs(60);

/// An orchestrator whose workers file lists `configured` workers on
/// ports nothing listens on, `FAST` timers plus `extra`.
fn orchestrator(dir: &Path, configured: usize, extra: &[(&str, &str)]) -> Proc {
    let entries: Vec<Value> = (1..=configured)
        .map(|i| json!({"id": format!("c{i}"), "host": "127.0.0.1", "port": closed_port(), "capacity": 1}))
        .collect();
    std::fs::write(
        dir.join("config_workers.json"),
        json!({ "workers": entries }).to_string(),
    )
    .unwrap();
    let mut env: Vec<(&str, &str)> = FAST.to_vec();
    env.extend_from_slice(extra);
    Proc::start(dir, &["orchestrator", "--port", "0"], &env)
}

/// A loopback port that refuses connections (bound, then closed).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn ids(list: &Value) -> Vec<String> {
    list["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn workers_are_listed_whole_by_default_and_paged_on_request() {
    let home = tempfile::tempdir().unwrap();
    let orch = orchestrator(home.path(), 5, &[]);
    let all = orch.get("/workers").json();
    assert_eq!(ids(&all), ["c1", "c2", "c3", "c4", "c5"], "{all}");
    assert_eq!(
        (all["total"].as_u64(), all["offset"].as_u64()),
        (Some(5), Some(0))
    );
    assert!(all["config"]["valid"].as_bool().unwrap(), "{all}");

    let page = orch.get("/workers?limit=2&offset=1").json();
    assert_eq!(ids(&page), ["c2", "c3"], "{page}");
    assert_eq!(
        (page["total"].as_u64(), page["offset"].as_u64()),
        (Some(5), Some(1))
    );
    let counted: u64 = page["by_state"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(counted, 5, "every worker is counted, not only the page's: {page}");

    let counts_only = orch.get("/workers?limit=0").json();
    assert_eq!(
        (ids(&counts_only).len(), counts_only["total"].as_u64()),
        (0, Some(5))
    );
    let past_the_end = orch.get("/workers?offset=9").json();
    assert_eq!(
        (ids(&past_the_end).len(), past_the_end["total"].as_u64()),
        (0, Some(5))
    );

    let bad = orch.get("/workers?limit=many");
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(
        bad.json()["error"].as_str().unwrap().contains("limit"),
        "{}",
        bad.text()
    );
}

#[test]
fn spaced_heartbeats_never_declare_a_healthy_worker_down() {
    // 9 configured + 1 joined = 10 workers at 20 checks/s in all: every
    // 0.5 s instead of 0.05 s, and WORKER_TIMEOUT 0.2 s grows to 2 s; a
    // timeout left unscaled would call the worker down between two checks
    let home = tempfile::tempdir().unwrap();
    let orch = orchestrator(
        home.path(),
        9,
        &[
            ("HEARTBEAT_INTERVAL", "0.05"),
            ("WORKER_TIMEOUT", "0.2"),
            ("HEARTBEAT_RATE", "20"),
        ],
    );
    let own = tempfile::tempdir().unwrap();
    let _jw = joined_worker(own.path(), "jw", 1, &format!("http://{}", orch.addr));
    wait_until(LONG, "jw up", || worker_row(&orch, "jw")["state"] == "up");
    let mut beats: Vec<String> = Vec::new();
    wait_until(LONG, "five more heartbeats of jw", || {
        let row = worker_row(&orch, "jw");
        assert_eq!(row["state"], "up", "a healthy worker stays up: {row}");
        let at = row["last_heartbeat"].as_str().unwrap_or_default().to_string();
        if beats.last() != Some(&at) {
            beats.push(at);
        }
        beats.len() > 5
    });
    assert!(!orch.log().contains("worker down"), "{}", orch.log());
    // the checks are spaced: no two within 0.3 s (0.05 s unspaced)
    let times: Vec<f64> = beats[1..]
        .iter()
        .map(|t| orquesta::util::time::parse_iso(t).unwrap())
        .collect();
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] >= 0.3, "heartbeats not spaced: {beats:?}");
    }
    // and so are the re-joins: five intervals
    let join = json!({"id": "jw2", "url": "http://127.0.0.1:9", "capacity": 1,
        "algorithms": ["python"], "instance": "x", "version": "test"});
    let answer = orch.post("/workers/join", &join.to_string()).json();
    assert!(
        answer["rejoin_interval_seconds"].as_f64().unwrap() >= 2.5,
        "{answer}"
    );
}

#[test]
fn a_storm_of_hundreds_of_joins_ends_with_every_id_up() {
    const IDS: usize = 300;
    let home = tempfile::tempdir().unwrap();
    let orch = orchestrator(home.path(), 0, &[]);
    let fakes: Vec<(String, String)> = (0..IDS)
        .map(|i| {
            let id = format!("s{i}");
            let status = json!({"worker_id": id, "capacity": 1, "algorithms": ["python"]});
            let (addr, _stop, _) = fake_worker(status, |_| String::new());
            (id, addr)
        })
        .collect();
    // eight clients joining at once
    std::thread::scope(|s| {
        for lane in fakes.chunks(IDS / 8 + 1) {
            let addr = orch.addr.clone();
            s.spawn(move || {
                for (id, at) in lane {
                    let join = json!({"id": id, "url": format!("http://{at}"), "capacity": 1,
                        "algorithms": ["python"], "instance": format!("i-{id}"), "version": "test"});
                    let r = crate::common::http(
                        "POST",
                        &addr,
                        "/workers/join",
                        Some(join.to_string().as_bytes()),
                    );
                    assert_eq!(r.status, 200, "{}", r.text());
                }
            });
        }
    });
    wait_until(LONG, "every joined id up", || {
        orch.get("/stats").json()["workers"]["up"].as_u64() == Some(IDS as u64)
    });
    let page = orch.get("/workers?limit=10&offset=290").json();
    assert_eq!((ids(&page).len(), page["total"].as_u64()), (10, Some(IDS as u64)));
    assert_eq!(page["by_state"]["up"].as_u64(), Some(IDS as u64), "{page}");
}
