//! The attackers of issue 22 that the hostile soak (`hostile.rs`) runs
//! beside its own, each a function of its own that counts in [`Thrown`]
//! what it threw and what was refused, and records as a breach whatever
//! got through: page requests of another origin or under a rebinding
//! name, second orchestrators on the folder, id takeovers, joins past
//! `MAX_WORKERS`, lying workers, results over `MAX_RESULT_BYTES`, bodies
//! of thousands of bad tasks, and `/events` streams nobody reads beside an
//! honest dashboard's.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;
use crate::hostile::Thrown;
use crate::promises::{liar_with, Lie};
use crate::sharing::{connect_from, connect_with, open_events};

/// `MAX_WORKERS` of the soak's orchestrator: the two honest workers, the
/// bloated one, a lying one and room for a few ghosts.
pub(crate) const MAX_WORKERS: u64 = 12;

/// Bodies of bad tasks, each without a seed and with a density out of
/// range (two problems a task): 5,000 every two seconds and 140,000 every
/// tenth. Each answer lists 100 problems and counts the rest, so it stays
/// small whatever the body.
pub(crate) fn bad_task_bombs(orch: String, stop: Arc<AtomicBool>, thrown: Arc<Thrown>) {
    let body = |n: usize, round: usize| {
        let bad: Vec<_> = (0..n)
            .map(|i| {
                json!({"task_id": format!("bad-{round}-{i}"), "algorithm": "cython",
                "parameters": {"num_particles": 100, "num_steps": 10, "density": 5}})
            })
            .collect();
        json!({ "tasks": bad }).to_string()
    };
    let bomb = body(140_000, 0);
    let mut round = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let (sent, n) = if round % 10 == 9 {
            (bomb.clone(), 140_000)
        } else {
            (body(5000, round), 5000)
        };
        let r = http("POST", &orch, "/tasks", Some(sent.as_bytes()));
        if r.status == 422 {
            assert!(r.body.len() < 64 << 10, "a 422 of {} bytes", r.body.len());
            assert_eq!(
                r.json()["errors_not_listed"],
                2 * n - 100,
                "{}",
                r.json()["errors_not_listed"]
            );
            let counter = if n == 5000 {
                &thrown.bad_batches
            } else {
                &thrown.bomb_batches
            };
            counter.fetch_add(1, Ordering::Relaxed);
        } else if r.status < 500 {
            thrown.breach(format!(
                "a body of {n} bad tasks answered {}: {}",
                r.status,
                r.text()
            ));
        }
        round += 1;
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Second orchestrators started in the cluster's folder with a database
/// of their own, every few seconds: each must be refused (exit code 2)
/// while the first one holds the folder.
pub(crate) fn rivals(dir: PathBuf, stop: Arc<AtomicBool>, thrown: Arc<Thrown>) {
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut rival = orquesta()
            .args(["orchestrator", "--port", "0"])
            .env("DATABASE_PATH", format!("data/rival-{round}.db"))
            .current_dir(&dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // refused at once; one still running after 30 s was let in
        let deadline = Instant::now() + Duration::from_secs(30);
        let code = loop {
            if let Some(status) = rival.try_wait().unwrap() {
                break status.code();
            }
            if Instant::now() > deadline {
                let _ = rival.kill();
                let _ = rival.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if code == Some(2) {
            thrown.rivals.fetch_add(1, Ordering::Relaxed);
        } else {
            thrown.breach(format!(
                "a second orchestrator on the folder (DATABASE_PATH=data/rival-{round}.db) \
                 was not refused: {}",
                code.map_or("still running after 30 s".to_string(), |c| format!(
                    "exit code {c}"
                ))
            ));
        }
        round += 1;
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// The requests a page of another origin can make a browser send to the
/// state-changing routes of both servers, and what a rebinding name
/// (`Host: evil.example`) would read: every one must be refused with its
/// own code, and none may change a thing.
pub(crate) fn page_requests(orch: String, workers: Vec<String>, stop: Arc<AtomicBool>, thrown: Arc<Thrown>) {
    let task = json!({"task_id": "from-a-page", "algorithm": "python",
        "parameters": {"num_particles": 16, "num_steps": 1, "seed": 1}})
    .to_string();
    let join = json!({"id": "page-rogue", "url": "http://127.0.0.2:9", "capacity": 64,
        "algorithms": ["python"], "instance": "page", "version": "0"})
    .to_string();
    let mut shots: Vec<(String, &str, &str, String)> = vec![
        (orch.clone(), "POST", "/tasks", task.clone()),
        (orch.clone(), "POST", "/workers/join", join),
        (orch.clone(), "POST", "/workers/w1/drain", String::new()),
        (orch.clone(), "POST", "/tasks/real-0/retry", String::new()),
        (orch.clone(), "DELETE", "/tasks/real-1", String::new()),
        (
            orch.clone(),
            "POST",
            "/admin/purge",
            r#"{"before": "2100-01-01"}"#.to_string(),
        ),
        (orch.clone(), "GET", "/stats", String::new()),
    ];
    for w in &workers {
        shots.extend([
            (w.clone(), "POST", "/execute", task.clone()),
            (w.clone(), "POST", "/cancel/real-2", String::new()),
            (
                w.clone(),
                "POST",
                "/results/ack",
                r#"{"task_ids": ["real-3"]}"#.to_string(),
            ),
            (w.clone(), "DELETE", "/results/real-3", String::new()),
            (w.clone(), "GET", "/current", String::new()),
        ]);
    }
    let mut round = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let (addr, method, path, body) = &shots[round % shots.len()];
        let port = addr.rsplit(':').next().unwrap();
        let evil_host = format!("evil.example:{port}");
        // a page sends Origin with every write; reads are the browser's to
        // withhold (no CORS answer), so a read is tried only under the
        // rebinding name, where it is ours to refuse
        let disguise = if *method == "GET" {
            2
        } else {
            (round / shots.len()) % 3
        };
        let (headers, sent, code, counter): (Vec<(&str, &str)>, &[u8], &str, &AtomicU64) = match disguise {
            0 => (
                vec![
                    ("Host", addr.as_str()),
                    ("Origin", "http://evil.example"),
                    ("Content-Type", "application/json"),
                ],
                body.as_bytes(),
                "cross_origin",
                &thrown.cross_origin,
            ),
            1 => (
                vec![("Host", addr.as_str()), ("Content-Type", "text/plain")],
                if body.is_empty() { b"{}" } else { body.as_bytes() },
                "unsupported_media_type",
                &thrown.plain_text,
            ),
            _ => (
                vec![("Host", evil_host.as_str()), ("Content-Type", "application/json")],
                body.as_bytes(),
                "foreign_host",
                &thrown.foreign_host,
            ),
        };
        match raw_request(addr, method, path, &headers, sent) {
            Some((status, answer)) if (status == 403 || status == 415) && answer.contains(code) => {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            // no answer under this load is no harm; anything else got in
            None => {}
            Some((status, answer)) => thrown.breach(format!(
                "{method} http://{addr}{path} as a page ({code} expected) answered {status}: {answer}"
            )),
        }
        round += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A join from another address and another process claiming the id of a
/// worker that is already a member (`w1`, `w2` from the workers file, and
/// the joined `bloat`), with no secret or a made-up one: each must be
/// refused, and the member's row keep its address.
pub(crate) fn takeovers(
    orch: String,
    members: Vec<(String, String)>,
    stop: Arc<AtomicBool>,
    thrown: Arc<Thrown>,
) {
    let o = |path: &str| http("GET", &orch, path, None);
    let mut round = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let (id, address) = &members[round % members.len()];
        let secret = if round.is_multiple_of(2) {
            String::new()
        } else {
            format!("{round:064x}")
        };
        let body = json!({"id": id, "url": format!("http://127.0.0.2:{}", 1 + round % 20), "capacity": 64,
            "algorithms": ["python", "cython", "__sleep"], "instance": format!("rogue-{round}"),
            "version": "0", "secret": secret});
        let r = http("POST", &orch, "/workers/join", Some(body.to_string().as_bytes()));
        // at MAX_WORKERS the refusal may say that first: refused all the same
        if r.status == 409 {
            thrown.takeovers.fetch_add(1, Ordering::Relaxed);
        } else {
            thrown.breach(format!(
                "a join claiming {id} answered {}: {}",
                r.status,
                r.text()
            ));
        }
        let workers = o("/workers").json();
        let row = workers["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["id"] == id.as_str())
            .cloned()
            .unwrap_or_default();
        if !row.is_null() && row["address"] != address.as_str() {
            thrown.breach(format!("{id} now answers at {}: taken over", row["address"]));
        }
        round += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Bursts of joins to closed ports until `MAX_WORKERS` refuses them, then
/// a pause in which the joined ones expire (`WORKER_EXPIRY`): the members
/// never number more than `MAX_WORKERS`.
pub(crate) fn ghosts(orch: String, stop: Arc<AtomicBool>, thrown: Arc<Thrown>) {
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut refused = 0;
        while refused < 3 && !stop.load(Ordering::Relaxed) {
            let body = json!({"id": format!("ghost-{k}"), "url": format!("http://127.0.0.2:{}", 1 + k % 20),
                "capacity": 1, "algorithms": ["python"], "instance": format!("ghost-{k}"), "version": "0"});
            k += 1;
            let r = http("POST", &orch, "/workers/join", Some(body.to_string().as_bytes()));
            match r.status {
                200 => {
                    thrown.ghosts.fetch_add(1, Ordering::Relaxed);
                }
                409 if r.json()["code"] == "too_many_workers" => {
                    thrown.ghosts_refused.fetch_add(1, Ordering::Relaxed);
                    refused += 1;
                }
                _ => thrown.breach(format!(
                    "a join to a closed port answered {}: {}",
                    r.status,
                    r.text()
                )),
            }
            let members = http("GET", &orch, "/workers", None).json()["total"]
                .as_u64()
                .unwrap_or(0);
            thrown.most_members.fetch_max(members, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(50));
        }
        // the ghosts expire; meanwhile a lying worker may join
        std::thread::sleep(Duration::from_secs(6));
    }
}

/// Joins `body` once there is room (ghosts may fill `MAX_WORKERS` for a
/// few seconds); false when the soak ended first.
fn join_when_room(orch: &str, body: &serde_json::Value, stop: &AtomicBool) -> bool {
    loop {
        let r = http("POST", orch, "/workers/join", Some(body.to_string().as_bytes()));
        match r.status {
            200 => return true,
            409 if r.json()["code"] == "too_many_workers" => {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            _ => panic!("joining {}: {} {}", body["id"], r.status, r.text()),
        }
    }
}

/// Joined workers that lie, one after another: one claims 32 slots and
/// says `started` for all it is sent (backlog included), then only ticks;
/// the next answers a batch 200 and never writes a line. Each must be
/// caught (suspect) and every task it held must go back to the queue by
/// itself, to complete on an honest worker; then it is removed and the
/// next one joins.
///
/// Liars join back to back: each new one (all its slots free) takes the
/// tasks its predecessor gave back. An attempt lost to a worker caught
/// lying does not count against the task's `MAX_TASK_RETRIES` (before,
/// four liars in a row failed an honest task: issue 22's soak found it;
/// `promises::attempts_lost_to_workers_caught_lying_do_not_use_up_a_tasks_retries`).
/// `HOSTILE_LIAR_RELAY=0` waits instead for the tasks the last liar held
/// to complete elsewhere before the next joins.
pub(crate) fn lying_workers(orch: String, stop: Arc<AtomicBool>, thrown: Arc<Thrown>) {
    let relay = std::env::var("HOSTILE_LIAR_RELAY").map_or(true, |v| v != "0");
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("liar-{k}");
        let lie = if k.is_multiple_of(2) {
            Lie::Overstart
        } else {
            Lie::Silent
        };
        let (port, batches) = liar_with(
            lie,
            json!({"worker_id": id, "state": "idle", "capacity": 32, "max_backlog": 32,
                "algorithms": ["python", "cython"]}),
        );
        let body = json!({"id": id, "url": format!("http://127.0.0.1:{port}"), "capacity": 32,
            "algorithms": ["python", "cython"], "instance": format!("liar-{k}"), "version": "0"});
        if !join_when_room(&orch, &body, &stop) {
            return;
        }
        thrown.liars.fetch_add(1, Ordering::Relaxed);
        let row = || {
            let r = http("GET", &orch, &format!("/workers/{id}"), None);
            if r.status == 200 {
                r.json()
            } else {
                serde_json::Value::Null
            }
        };
        let mut held = std::collections::BTreeSet::new();
        let mut note = |w: &serde_json::Value| {
            for list in ["running_tasks", "backlog_tasks"] {
                for t in w[list].as_array().into_iter().flatten() {
                    held.insert(t["task_id"].as_str().unwrap_or_default().to_string());
                }
            }
        };
        // caught within 90 s of its first batch, or given nothing (the
        // queue empty while it stood)
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let w = row();
            note(&w);
            if w["suspect"].as_str().is_some_and(|s| !s.is_empty()) {
                thrown.liars_caught.fetch_add(1, Ordering::Relaxed);
                break;
            }
            let sent = batches.load(Ordering::SeqCst);
            // given nothing: the queue was empty while it stood
            if sent == 0 && (stop.load(Ordering::Relaxed) || Instant::now() > deadline) {
                break;
            }
            if Instant::now() > deadline {
                thrown.breach(format!(
                    "{id} ({}) was sent {} batches and not caught in 90 s: {w}",
                    if lie == Lie::Overstart {
                        "overstarting"
                    } else {
                        "silent"
                    },
                    batches.load(Ordering::SeqCst)
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // what it held goes back without anyone removing it
        wait_until(Duration::from_secs(90), &format!("{id}'s tasks back"), || {
            let w = row();
            note(&w);
            w["running_tasks"].as_array().is_none_or(Vec::is_empty)
                && w["backlog_tasks"].as_array().is_none_or(Vec::is_empty)
        });
        let r = http("DELETE", &orch, &format!("/workers/{id}"), None);
        assert_eq!(r.status, 200, "removing {id}: {}", r.text());
        if !relay {
            wait_until(
                Duration::from_secs(120),
                &format!("the tasks {id} held completed"),
                || {
                    held.iter().all(|t| {
                        let r = http("GET", &orch, &format!("/tasks/{t}"), None);
                        r.status != 200 || !matches!(r.json()["status"].as_str(), Some("queued" | "running"))
                    })
                },
            );
        }
        k += 1;
    }
}

/// A fake worker (`faults::lying_worker("bloated")`) joined for `__sleep`
/// tasks, each answered with 2 MB of output, over the soak's
/// `MAX_RESULT_BYTES` of 1 MB: each attempt there fails with the limit
/// named, and nothing of it is stored. (The honest workers offer the test
/// kernels too and complete some of these tasks; that is no harm.)
pub(crate) fn oversize_results(orch: String, stop: Arc<AtomicBool>, thrown: Arc<Thrown>) {
    let (addr, fake_stop, _) = crate::faults::lying_worker("bloated");
    let body = json!({"id": "bloat", "url": format!("http://{addr}"), "capacity": 4,
        "algorithms": ["__sleep"], "instance": "bloat", "version": "0"});
    if !join_when_room(&orch, &body, &stop) {
        return;
    }
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("bloat-{k}");
        let task = json!({"task_id": id, "algorithm": "__sleep", "parameters": {"seconds": 0.01}});
        let r = http("POST", &orch, "/tasks", Some(task.to_string().as_bytes()));
        assert_eq!(r.status, 201, "{}", r.text());
        let mut refused = false;
        wait_until(Duration::from_secs(90), &format!("{id}'s first attempt"), || {
            let t = http("GET", &orch, &format!("/tasks/{id}"), None);
            let attempts = t.json()["attempts"].as_array().cloned().unwrap_or_default();
            if t.body.len() > 100_000 {
                thrown.breach(format!(
                    "{id}'s record is {} bytes: the output was stored",
                    t.body.len()
                ));
                return true;
            }
            refused = attempts.iter().any(|a| {
                a["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("more than MAX_RESULT_BYTES = 1000000"))
            });
            refused || t.json()["status"] == "completed"
        });
        if refused {
            thrown.oversize.fetch_add(1, Ordering::Relaxed);
        } else {
            // the honest workers offer the test kernels too: a task they
            // ran is fine, one recorded from the bloated worker is not
            let t = http("GET", &orch, &format!("/tasks/{id}"), None).json();
            if t["worker_id"] == "bloat" {
                thrown.breach(format!("{id}: a 2 MB result was recorded: {t}"));
            }
        }
        // no more of its retries
        let _ = http("DELETE", &orch, &format!("/tasks/{id}"), None);
        k += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    fake_stop.store(true, Ordering::Relaxed);
}

/// One client (127.0.0.2) opening `/events` streams with a small receive
/// buffer and reading none: it gets a few, is refused the rest (429), and
/// the server closes the unread ones.
pub(crate) fn unread_streams(orch: String, stop: Arc<AtomicBool>, thrown: Arc<Thrown>) {
    let host = format!("localhost:{}", orch.rsplit(':').next().unwrap());
    let rogue = std::net::Ipv4Addr::new(127, 0, 0, 2);
    let mut held = std::collections::VecDeque::new();
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..6 {
            let (status, s) = open_events(connect_with(rogue, &orch, Some(1024)), &host);
            match status {
                200 => {
                    thrown.streams_held.fetch_add(1, Ordering::Relaxed);
                    held.push_back(s);
                }
                429 => {
                    thrown.streams_refused.fetch_add(1, Ordering::Relaxed);
                }
                other => thrown.breach(format!("GET /events answered {other}")),
            }
        }
        // sockets the server closed are kept a while, as a careless client would
        while held.len() > 40 {
            held.pop_front();
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The dashboard of an honest user (127.0.0.1) opening `/events` every
/// few seconds while the rogue holds its streams: each is granted and
/// its first snapshot arrives.
pub(crate) fn honest_dashboard(orch: String, stop: Arc<AtomicBool>, thrown: Arc<Thrown>) {
    let host = format!("localhost:{}", orch.rsplit(':').next().unwrap());
    while !stop.load(Ordering::Relaxed) {
        let (status, mut s) = open_events(connect_from(std::net::Ipv4Addr::LOCALHOST, &orch), &host);
        if status != 200 {
            thrown.breach(format!("an honest dashboard's /events answered {status}"));
        } else {
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            let served = loop {
                if String::from_utf8_lossy(&seen).contains("event: snapshot") {
                    break true;
                }
                match s.read(&mut buf) {
                    Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
                    _ => break false,
                }
            };
            if served {
                thrown.honest_streams.fetch_add(1, Ordering::Relaxed);
            } else {
                thrown.breach("an honest dashboard's stream ended before its first snapshot".into());
            }
        }
        std::thread::sleep(Duration::from_secs(3));
    }
}
