//! Membership while the cluster runs (issue 10, orchestrator side):
//! `config_workers.json` edits, joins, drain / resume / delete, restarts
//! that adopt a joined worker's task, and retries that go elsewhere.
//! Workers are started standalone and joined by POSTing the join body.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{
    http, joined_worker, wait_until, worker_checks, worker_row, Cluster, DeadPort, Proc, WorkerSpec, FAST,
};

const LONG: Duration = Duration::from_secs(60);
/// How soon a config edit must take effect.
const EDIT: Duration = Duration::from_secs(2);

fn sleep_task(id: &str, seconds: f64) -> Value {
    json!({"task_id": id, "algorithm": "__sleep", "parameters": {"seconds": seconds}})
}

fn post(c: &Cluster, tasks: Vec<Value>) {
    let r = c.orch().post("/tasks", &json!({ "tasks": tasks }).to_string());
    assert_eq!(r.status, 201, "{}", r.text());
}

/// A worker process on a free port, not in any config.
fn standalone(dir: &Path, id: &str, capacity: usize) -> Proc {
    let cap = capacity.to_string();
    Proc::start(
        dir,
        &["worker", "--worker-id", id, "--port", "0", "--capacity", &cap],
        &[("ORQUESTA_TEST_KERNELS", "1")],
    )
}

fn port(p: &Proc) -> u16 {
    p.addr.rsplit(':').next().unwrap().parse().unwrap()
}

fn entry(id: &str, p: &Proc, capacity: usize) -> Value {
    json!({"id": id, "host": "127.0.0.1", "port": port(p), "capacity": capacity, "algorithms": ["python", "cython"]})
}

/// Writes the workers file the way vim and `sed -i` do: a new file
/// renamed over the old one.
fn write_by_rename(c: &Cluster, text: &str) {
    let tmp = c.path("config_workers.json.swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, c.path("config_workers.json")).unwrap();
}

/// Writes the workers file in place (truncate and write).
fn write_in_place(c: &Cluster, text: &str) {
    std::fs::write(c.path("config_workers.json"), text).unwrap();
}

fn workers_file(entries: &[Value]) -> String {
    json!({ "workers": entries }).to_string()
}

fn row(c: &Cluster, id: &str) -> Value {
    worker_row(c.orch(), id)
}

fn join_body(id: &str, p: &Proc, instance: &str) -> String {
    json!({"id": id, "url": format!("http://{}", p.addr), "capacity": 1,
           "algorithms": ["python", "cython"], "instance": instance, "version": "test"})
    .to_string()
}

fn attempts_on(c: &Cluster, task: &str) -> Vec<String> {
    c.task(task)["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["worker_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_worker_added_to_the_file_receives_tasks_within_two_seconds() {
    let c = Cluster::start(&[WorkerSpec::new("w1", 1)], &[]);
    c.wait_workers_up();
    let w2 = standalone(c.dir.path(), "w2", 1);
    let w1_entry = c.orch().get("/workers").json()["workers"][0].clone();
    let w1 = json!({"id": "w1", "host": "127.0.0.1", "port": w1_entry["port"], "capacity": 1,
                    "algorithms": ["python", "cython"]});
    let edited = Instant::now();
    write_by_rename(&c, &workers_file(&[w1, entry("w2", &w2, 1)]));
    wait_until(EDIT, "w2 up", || row(&c, "w2")["state"] == "up");
    assert!(edited.elapsed() <= EDIT);
    assert_eq!(row(&c, "w2")["source"], "config");
    // w1 is busy with a long task: the next one can only go to w2
    post(&c, vec![sleep_task("long", 3.0)]);
    wait_until(LONG, "long running", || c.status_of("long") == "running");
    post(&c, vec![sleep_task("next", 0.1)]);
    wait_until(LONG, "next completed", || c.status_of("next") == "completed");
    assert_eq!(c.task("next")["worker_id"], "w2");
    assert_eq!(c.task("long")["worker_id"], "w1");
}

#[test]
fn a_worker_removed_from_the_file_finishes_its_task_and_leaves() {
    let c = Cluster::start(&[WorkerSpec::new("w1", 1), WorkerSpec::new("w2", 1)], &[]);
    c.wait_workers_up();
    post(&c, vec![sleep_task("t", 2.0)]);
    wait_until(LONG, "t running", || c.status_of("t") == "running");
    let on = c.task("t")["worker_id"].as_str().unwrap().to_string();
    let (keep_id, keep_proc) = if on == "w1" {
        ("w2", &c.workers[1])
    } else {
        ("w1", &c.workers[0])
    };
    write_in_place(&c, &workers_file(&[entry(keep_id, keep_proc, 1)]));
    wait_until(EDIT, "draining", || row(&c, &on)["state"] == "draining");
    // no new task goes to the draining worker
    post(&c, vec![sleep_task("after", 0.1)]);
    wait_until(LONG, "after completed", || c.status_of("after") == "completed");
    assert_eq!(c.task("after")["worker_id"], keep_id);
    wait_until(LONG, "t completed", || c.status_of("t") == "completed");
    let t = c.task("t");
    assert_eq!(t["attempt_count"], 1, "{t}");
    assert_eq!(t["worker_id"], on.as_str());
    wait_until(Duration::from_secs(5), "removed", || row(&c, &on).is_null());
}

#[test]
fn a_capacity_edit_applies_without_a_restart() {
    let c = Cluster::start(&[WorkerSpec::new("w1", 2)], &[]);
    c.wait_workers_up();
    assert_eq!(row(&c, "w1")["capacity"], 2);
    let w1 = &c.workers[0];
    write_by_rename(&c, &workers_file(&[entry("w1", w1, 1)]));
    wait_until(EDIT, "capacity 1", || row(&c, "w1")["capacity"] == 1);
    post(&c, vec![sleep_task("a", 1.0), sleep_task("b", 1.0)]);
    wait_until(LONG, "a running", || c.status_of("a") == "running");
    assert_eq!(c.status_of("b"), "queued", "capacity 1 runs one task at a time");
    write_by_rename(&c, &workers_file(&[entry("w1", w1, 2)]));
    wait_until(EDIT, "capacity 2", || row(&c, "w1")["capacity"] == 2);
    assert_eq!(row(&c, "w1")["state"], "up");
    c.wait_count("completed", 2, LONG);
    assert_eq!(c.task("a")["attempt_count"], 1);
}

#[test]
fn an_invalid_edit_is_refused_until_fixed() {
    let c = Cluster::start(&[WorkerSpec::new("w1", 1)], &[]);
    c.wait_workers_up();
    let good = std::fs::read_to_string(c.path("config_workers.json")).unwrap();
    assert_eq!(c.orch().get("/workers").json()["config"]["valid"], true);
    let w1 = &c.workers[0];
    write_in_place(&c, &workers_file(&[entry("w1", w1, 1), entry("w1", w1, 2)]));
    wait_until(EDIT, "invalid", || {
        c.orch().get("/workers").json()["config"]["valid"] == false
    });
    let config = c.orch().get("/workers").json()["config"].clone();
    assert!(
        config["error"].as_str().unwrap().contains("workers[1].id"),
        "{config}"
    );
    assert!(
        config["path"].as_str().unwrap().ends_with("config_workers.json"),
        "{config}"
    );
    write_in_place(&c, "{\"workers\": [");
    wait_until(EDIT, "malformed", || {
        c.orch().get("/workers").json()["config"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("malformed"))
    });
    // the last good configuration stays in force
    assert_eq!(row(&c, "w1")["state"], "up");
    assert_eq!(row(&c, "w1")["capacity"], 1);
    post(&c, vec![sleep_task("still", 0.1)]);
    wait_until(LONG, "still completed", || c.status_of("still") == "completed");
    let refusals = c.orch().log().matches("workers file refused").count();
    assert_eq!(refusals, 2, "one line per bad edit:\n{}", c.orch().log());
    write_by_rename(&c, &good);
    wait_until(EDIT, "valid", || {
        c.orch().get("/workers").json()["config"]["valid"] == true
    });
    assert!(c.orch().get("/workers").json()["config"].get("error").is_none());
}

#[test]
fn joined_workers_are_listed_refused_on_a_clash_and_adopted_after_a_restart() {
    // no configured worker at all: valid, with a warning
    let mut c = Cluster::start(&[], &[]);
    assert!(c
        .orch()
        .log()
        .contains("no workers configured; waiting for workers to join"));
    let w9 = standalone(c.dir.path(), "w9", 1);
    let r = c.orch().post("/workers/join", &join_body("w9", &w9, "i-1"));
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json();
    assert_eq!(
        (answer["id"].clone(), answer["source"].clone()),
        (json!("w9"), json!("joined"))
    );
    assert!(answer["rejoin_interval_seconds"].as_f64().unwrap() > 0.0);
    wait_until(Duration::from_secs(5), "w9 up", || row(&c, "w9")["state"] == "up");
    assert_eq!(row(&c, "w9")["source"], "joined");
    // joining again is idempotent
    let again = c.orch().post("/workers/join", &join_body("w9", &w9, "i-1"));
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(c.orch().get("/workers").json()["total"], 1);

    // another live worker claiming the id (from its own folder: one
    // folder holds one worker per id)
    let elsewhere = tempfile::tempdir().unwrap();
    let other = standalone(elsewhere.path(), "w9", 1);
    let clash = c.orch().post("/workers/join", &join_body("w9", &other, "i-2"));
    assert_eq!(clash.status, 409, "{}", clash.text());
    assert_eq!(clash.json()["code"], "worker_id_taken");
    assert_eq!(clash.json()["address"], w9.addr.as_str());
    drop(other);
    // bad bodies say what is wrong
    let bad = c.orch().post(
        "/workers/join",
        &json!({"id": "x", "url": "127.0.0.1:9", "capacity": 0, "algorithms": ["java"]}).to_string(),
    );
    assert_eq!(bad.status, 400, "{}", bad.text());
    let text = bad.json()["error"].as_str().unwrap().to_string();
    assert!(
        text.contains("url:") && text.contains("capacity:") && text.contains("algorithms[0]"),
        "{text}"
    );

    // a task running on the joined worker survives an orchestrator SIGKILL
    post(&c, vec![sleep_task("kept", 3.0)]);
    wait_until(LONG, "kept running", || c.status_of("kept") == "running");
    assert_eq!(c.task("kept")["worker_id"], "w9");
    let mut killed = c.orchestrator.take().unwrap();
    killed.signal(libc::SIGKILL);
    assert!(killed.wait_exit(LONG).is_some(), "SIGKILL did not end it");
    c.start_orchestrator();
    let listed = row(&c, "w9");
    assert_eq!(listed["source"], "joined", "remembered from the store: {listed}");
    wait_until(LONG, "kept completed", || c.status_of("kept") == "completed");
    let kept = c.task("kept");
    assert_eq!(kept["attempt_count"], 1, "adopted, not restarted: {kept}");
    assert_eq!(kept["worker_id"], "w9");
    // the same worker re-joining after the restart is fine
    let rejoin = c.orch().post("/workers/join", &join_body("w9", &w9, "i-1"));
    assert_eq!(rejoin.status, 200, "{}", rejoin.text());
}

#[test]
fn drain_resume_and_delete() {
    let c = Cluster::start(&[WorkerSpec::new("w1", 1), WorkerSpec::new("w2", 1)], &[]);
    c.wait_workers_up();
    assert_eq!(c.orch().post("/workers/nope/drain", "").status, 404);
    assert_eq!(c.orch().delete("/workers/nope").status, 404);

    // drain with a task running: it finishes there, then the worker is drained
    post(&c, vec![sleep_task("d1", 1.5)]);
    wait_until(LONG, "d1 running", || c.status_of("d1") == "running");
    let on = c.task("d1")["worker_id"].as_str().unwrap().to_string();
    let other = if on == "w1" { "w2" } else { "w1" };
    let r = c.orch().post(&format!("/workers/{on}/drain"), "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"id": on, "state": "draining"}));
    post(&c, vec![sleep_task("d2", 0.1)]);
    wait_until(LONG, "d2 completed", || c.status_of("d2") == "completed");
    assert_eq!(c.task("d2")["worker_id"], other);
    wait_until(LONG, "d1 completed", || c.status_of("d1") == "completed");
    assert_eq!(c.task("d1")["attempt_count"], 1);
    wait_until(Duration::from_secs(5), "drained", || {
        row(&c, &on)["state"] == "drained"
    });

    // resume
    let r = c.orch().post(&format!("/workers/{on}/resume"), "");
    assert_eq!(r.status, 200, "{}", r.text());
    wait_until(Duration::from_secs(5), "up again", || {
        row(&c, &on)["state"] == "up"
    });

    // delete with a task running: it goes back to the queue uncounted and
    // completes on the other worker
    let r = c.orch().post(&format!("/workers/{other}/drain"), "");
    assert_eq!(r.json()["state"], "drained");
    post(&c, vec![sleep_task("moved", 1.5)]);
    wait_until(LONG, "moved running", || c.status_of("moved") == "running");
    assert_eq!(c.task("moved")["worker_id"], on.as_str());
    c.orch().post(&format!("/workers/{other}/resume"), "");
    let r = c.orch().delete(&format!("/workers/{on}"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"id": on, "requeued": 1}));
    assert!(row(&c, &on).is_null(), "removed at once");
    wait_until(LONG, "moved completed", || c.status_of("moved") == "completed");
    let moved = c.task("moved");
    assert_eq!(moved["worker_id"], other, "{moved}");
    assert_eq!(
        moved["attempt_count"], 1,
        "the removal is not an attempt: {moved}"
    );
    // and the worker was told to stop it
    wait_until(Duration::from_secs(5), "cancelled on the removed worker", || {
        let w = if on == "w1" { &c.workers[0] } else { &c.workers[1] };
        w.get("/current").json()["count"] == 0
    });
}

#[test]
fn a_retry_goes_to_another_worker() {
    // least_loaded breaks ties by order: without redistribution every
    // attempt would land on w1
    let c = Cluster::start(
        &[WorkerSpec::new("w1", 1), WorkerSpec::new("w2", 1)],
        &[
            ("LOAD_BALANCING_ALGORITHM", "least_loaded"),
            ("MAX_TASK_RETRIES", "2"),
        ],
    );
    c.wait_workers_up();
    post(
        &c,
        vec![json!({"task_id": "boom", "algorithm": "__panic", "parameters": {}})],
    );
    wait_until(LONG, "boom failed", || c.status_of("boom") == "failed");
    let on = attempts_on(&c, "boom");
    assert_eq!(on.len(), 3, "{on:?}");
    assert_ne!(
        on[0], on[1],
        "the retry went back to the worker that failed it: {on:?}"
    );
}

#[test]
fn a_configured_worker_that_never_answers_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    // a port nobody listens on, and nobody can take while this test runs
    let dead = DeadPort::new();
    let free = dead.port;
    std::fs::write(
        dir.path().join("config_workers.json"),
        workers_file(&[json!({"id": "ghost", "host": "127.0.0.1", "port": free, "capacity": 1})]),
    )
    .unwrap();
    let o = Proc::start(dir.path(), &["orchestrator", "--port", "0"], FAST);
    wait_until(Duration::from_secs(10), "reported", || {
        o.log().contains("has never answered")
    });
    let log = o.log();
    assert!(
        log.contains(&format!("orquesta worker --worker-id ghost --port {free}")),
        "{log}"
    );
    // more health checks of the ghost, each a chance to say it again
    o.wait_for_passes(&worker_checks("ghost"), 3);
    assert_eq!(
        o.log().matches("has never answered").count(),
        1,
        "once, then slowly"
    );
    let _ = http("GET", &o.addr, "/workers", None);
}

#[test]
fn a_worker_shutting_down_is_draining_and_its_task_finishes_there() {
    let c = Cluster::start(&[WorkerSpec::new("w1", 1), WorkerSpec::new("w2", 1)], &[]);
    c.wait_workers_up();
    post(&c, vec![sleep_task("t", 3.0)]);
    wait_until(LONG, "t running", || c.status_of("t") == "running");
    let on = c.task("t")["worker_id"].as_str().unwrap().to_string();
    let (i, other) = if on == "w1" { (0, "w2") } else { (1, "w1") };
    c.workers[i].signal(libc::SIGTERM);
    wait_until(Duration::from_secs(2), "draining", || {
        row(&c, &on)["state"] == "draining"
    });
    post(&c, vec![sleep_task("meanwhile", 0.1)]);
    wait_until(LONG, "meanwhile completed", || {
        c.status_of("meanwhile") == "completed"
    });
    assert_eq!(c.task("meanwhile")["worker_id"], other);
    wait_until(LONG, "t completed", || c.status_of("t") == "completed");
    let t = c.task("t");
    assert_eq!(
        (t["attempt_count"].clone(), t["worker_id"].clone()),
        (json!(1), json!(on)),
        "{t}"
    );
}

#[test]
fn a_new_address_applies_once_the_worker_is_idle() {
    let mut c = Cluster::start(&[WorkerSpec::new("w1", 1)], &[]);
    c.wait_workers_up();
    post(&c, vec![sleep_task("busy", 1.5)]);
    wait_until(LONG, "busy running", || c.status_of("busy") == "running");
    // the same worker id, started elsewhere (its own folder)
    let elsewhere = tempfile::tempdir().unwrap();
    let moved = standalone(elsewhere.path(), "w1", 1);
    write_by_rename(&c, &workers_file(&[entry("w1", &moved, 1)]));
    wait_until(EDIT, "moving", || {
        row(&c, "w1")["state_reason"]
            .as_str()
            .is_some_and(|r| r.contains(&moved.addr))
    });
    assert_eq!(row(&c, "w1")["state"], "draining");
    wait_until(LONG, "busy completed", || c.status_of("busy") == "completed");
    assert_eq!(
        c.task("busy")["attempt_count"],
        1,
        "the move disturbed the running task"
    );
    wait_until(Duration::from_secs(5), "up at the new address", || {
        let r = row(&c, "w1");
        r["state"] == "up" && r["port"] == port(&moved)
    });
    // the old process is gone; the next task runs at the new address
    c.workers[0].signal(libc::SIGKILL);
    c.workers[0].wait_exit(Duration::from_secs(5));
    post(&c, vec![sleep_task("there", 0.1)]);
    wait_until(LONG, "there completed", || c.status_of("there") == "completed");
    assert_eq!(c.task("there")["attempt_count"], 1);
    assert_eq!(row(&c, "w1")["state"], "up");
}

/// Found by the chaos test: a joined worker SIGKILLed and started again at
/// a new port while the orchestrator was down. The restarted orchestrator
/// remembers it at its old address, where it never answers (so it stays
/// `unknown`, never `down`), and refused the new process as a clash (409)
/// for ever. Not a live worker to protect: the new process is welcome.
#[test]
fn a_worker_restarted_while_the_orchestrator_was_down_joins_again() {
    let mut c = Cluster::start(&[WorkerSpec::new("w1", 1)], &[]);
    c.wait_workers_up();
    let own = tempfile::tempdir().unwrap();
    let join = format!("http://{}", c.orch().addr);
    let start = |dir: &Path| joined_worker(dir, "j1", 1, &join);
    let mut first = start(own.path());
    wait_until(Duration::from_secs(10), "j1 up", || {
        row(&c, "j1")["state"] == "up"
    });
    let o = c.orchestrator.as_mut().unwrap();
    o.signal(libc::SIGKILL);
    o.wait_exit(Duration::from_secs(5));
    first.signal(libc::SIGKILL);
    first.wait_exit(Duration::from_secs(5));
    let second = start(own.path());
    c.restart_orchestrator();
    wait_until(Duration::from_secs(10), "j1 up at its new port", || {
        let r = row(&c, "j1");
        r["state"] == "up" && r["port"] == port(&second) && r["source"] == "joined"
    });
    assert!(!second.log().contains("refused this worker"), "{}", second.log());
    post(&c, vec![sleep_task("a", 0.5), sleep_task("b", 0.5)]);
    c.wait_count("completed", 2, LONG);
}
