//! Results are checked: a worker whose physics cannot be true of its task
//! fails the attempt at once and is suspect; with `VERIFY_FRACTION`,
//! completed tasks run again on another worker, and one that lies
//! consistently is quarantined and its results replaced. The liars here
//! are fake workers in this process that answer `/execute` with a
//! made-up result.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::common::{wait_until, worker_row, Proc, WorkerSpec};
use crate::faults::LONG;

/// A fake worker offering `python` with capacity 1 that answers every
/// `/execute` with `forge(task)` as its result. Answers its address, a
/// flag that stops it, and how many tasks it was sent.
pub(crate) fn forging_worker(forge: fn(&Value) -> Value) -> (String, Arc<AtomicBool>, Arc<AtomicUsize>) {
    let status = json!({"worker_id": "liar", "capacity": 1, "algorithms": ["python"], "state": "idle"});
    crate::common::fake_worker(status, move |task| {
        json!({"task_id": task["task_id"], "algorithm": task["algorithm"],
            "parameters": task["parameters"], "execution_time": 0.01,
            "attempt_id": task["attempt_id"],
            "result": {"status": "completed", "metrics": forge(task), "output": "simulation completed"}})
        .to_string()
    })
}

/// The metrics of a run that never happened: one particle processed,
/// whatever the task asked.
fn one_particle(task: &Value) -> Value {
    json!({"particles_processed": 1, "steps_completed": task["parameters"]["num_steps"],
           "kinetic_energy_final": 1.0, "potential_energy_final": -2.0, "total_energy_final": -1.0})
}

fn port(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

#[test]
fn a_result_with_impossible_counts_fails_the_attempt_and_the_worker_is_suspect() {
    let dir = tempfile::tempdir().unwrap();
    let (liar, stop, executes) = forging_worker(one_particle);
    let honest = Proc::start(
        dir.path(),
        &[
            "worker",
            "--worker-id",
            "honest",
            "--port",
            "0",
            "--capacity",
            "2",
        ],
        &[],
    );
    std::fs::write(
        dir.path().join("config_workers.json"),
        json!({"workers": [
            {"id": "liar", "host": "127.0.0.1", "port": port(&liar), "capacity": 1, "algorithms": ["python"]},
            {"id": "honest", "host": "127.0.0.1", "port": port(&honest.addr), "capacity": 2},
        ]})
        .to_string(),
    )
    .unwrap();
    let mut env: Vec<(&str, &str)> = crate::common::FAST.to_vec();
    env.push(("LOAD_BALANCING_ALGORITHM", "round_robin"));
    let o = Proc::start(dir.path(), &["orchestrator", "--port", "0"], &env);
    wait_until(LONG, "both up", || o.get("/workers").json()["up"] == 2);
    let tasks: Vec<Value> = (0..4)
        .map(|i| {
            json!({"task_id": format!("n16_{i}"), "algorithm": "python",
                   "parameters": {"num_particles": 16, "num_steps": 5, "seed": i}})
        })
        .collect();
    assert_eq!(
        o.post("/tasks", &json!({ "tasks": tasks }).to_string()).status,
        201
    );
    wait_until(LONG, "all completed", || {
        o.get("/stats").json()["tasks"]["by_status"]["completed"] == 4
    });
    assert!(executes.load(Ordering::Relaxed) > 0, "the liar was tried");
    let mut refused = 0;
    for i in 0..4 {
        let t = o.get(&format!("/tasks/n16_{i}")).json();
        // the recorded result is the honest worker's, with the true count
        assert_eq!(t["worker_id"], "honest", "{t}");
        assert_eq!(t["result"]["result"]["metrics"]["particles_processed"], 16, "{t}");
        for a in t["attempts"].as_array().unwrap() {
            if a["worker_id"] == "liar" {
                assert_eq!(a["outcome"], "failed", "{t}");
                let e = a["error"].as_str().unwrap();
                assert!(
                    e.contains("metrics.particles_processed = 1")
                        && e.contains("num_particles = 16")
                        && e.contains("not stored"),
                    "{e}"
                );
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "no attempt went to the liar");
    // a liar gets no new tasks: it is suspect, with the reason
    let row = worker_row(&o, "liar");
    let why = row["suspect"].as_str().unwrap_or_default();
    assert!(why.contains("particles_processed = 1"), "{row}");
    stop.store(true, Ordering::Relaxed);
}

/// Physics of the right shape that no run produced: the counts the task
/// asks for, energies that add up, all of it wrong.
fn made_up_physics(task: &Value) -> Value {
    let p = &task["parameters"];
    json!({"particles_processed": p["num_particles"], "steps_completed": p["num_steps"],
           "potential_energy_initial": -2.0, "kinetic_energy_initial": 1.0, "total_energy_initial": -1.0,
           "potential_energy_final": -2.0, "kinetic_energy_final": 1.0, "total_energy_final": -1.0,
           "temperature_final": 1.0, "max_energy_drift": 0.0, "position_checksum": 42.0,
           "particle_steps_per_second": 1000.0, "kernel": "reference", "threads": 1})
}

fn python_tasks(prefix: &str, n: u64) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"task_id": format!("{prefix}{i}"), "algorithm": "python",
                   "parameters": {"num_particles": 16, "num_steps": 5, "seed": i}})
        })
        .collect()
}

/// Every record in `dir/results/task_results_*.json`.
fn results_in(dir: &std::path::Path) -> Vec<Value> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir.join("results"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("task_results_") && name.ends_with(".json") {
            let v: Value = serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
            out.extend(v.as_array().unwrap().iter().cloned());
        }
    }
    out
}

fn verification(o: &Proc) -> Value {
    o.get("/stats").json()["since_start"]["verification"].clone()
}

#[test]
fn a_worker_that_lies_consistently_is_quarantined_and_its_results_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let (liar, stop, executes) = forging_worker(made_up_physics);
    let start = |id: &str| {
        Proc::start(
            dir.path(),
            &["worker", "--worker-id", id, "--port", "0", "--capacity", "1"],
            &[],
        )
    };
    let (h1, h2) = (start("h1"), start("h2"));
    std::fs::write(
        dir.path().join("config_workers.json"),
        json!({"workers": [
            {"id": "liar", "host": "127.0.0.1", "port": port(&liar), "capacity": 1, "algorithms": ["python"]},
            {"id": "h1", "host": "127.0.0.1", "port": port(&h1.addr), "capacity": 1},
            {"id": "h2", "host": "127.0.0.1", "port": port(&h2.addr), "capacity": 1},
        ]})
        .to_string(),
    )
    .unwrap();
    let mut env: Vec<(&str, &str)> = crate::common::FAST.to_vec();
    env.push(("LOAD_BALANCING_ALGORITHM", "round_robin"));
    env.push(("VERIFY_FRACTION", "1"));
    let o = Proc::start(dir.path(), &["orchestrator", "--port", "0"], &env);
    wait_until(LONG, "all three up", || o.get("/workers").json()["up"] == 3);
    let tasks = python_tasks("rep", 6);
    assert_eq!(
        o.post("/tasks", &json!({ "tasks": tasks }).to_string()).status,
        201
    );
    wait_until(LONG, "all completed", || {
        o.get("/stats").json()["tasks"]["by_status"]["completed"] == 6
    });
    assert!(executes.load(Ordering::Relaxed) > 0, "the liar was sent work");
    wait_until(LONG, "the liar quarantined", || {
        worker_row(&o, "liar")["suspect"]
            .as_str()
            .is_some_and(|s| s.starts_with("quarantined: its result of task"))
    });
    // every result the liar recorded is run again elsewhere and replaced
    wait_until(LONG, "no result of the liar left", || {
        (0..6).all(|i| o.get(&format!("/tasks/rep{i}")).json()["worker_id"] != "liar")
    });
    let mut corrected = 0;
    for i in 0..6 {
        let t = o.get(&format!("/tasks/rep{i}")).json();
        assert_eq!(t["status"], "completed", "{t}");
        assert_eq!(t["attempt_count"], 1, "a verification run is not an attempt: {t}");
        let by_liar = t["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["worker_id"] == "liar");
        let metrics = &t["result"]["result"]["metrics"];
        assert_ne!(metrics["position_checksum"], 42.0, "{t}");
        if by_liar {
            assert_eq!(t["result"]["corrected_from"], "liar", "{t}");
            corrected += 1;
        } else {
            assert!(t["result"].get("corrected_from").is_none(), "{t}");
        }
    }
    assert!(corrected > 0, "round robin gave the liar a task");
    // results/ holds each task once, and never the contradicted numbers:
    // the file that had a wrong record has the corrected one in its place
    wait_until(LONG, "results/ corrected", || {
        let records = results_in(dir.path());
        let mut ids: Vec<&str> = records.iter().filter_map(|r| r["task_id"].as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        records.len() == 6
            && ids.len() == 6
            && records
                .iter()
                .all(|r| r["worker_id"] != "liar" && r["result"]["metrics"]["position_checksum"] != 42.0)
    });
    let fixed = results_in(dir.path())
        .into_iter()
        .filter(|r| r["corrected_from"] == "liar")
        .count();
    assert_eq!(fixed, corrected);
    let v = verification(&o);
    assert_eq!(v["quarantined"], 1, "{v}");
    assert_eq!(v["corrected"], corrected, "{v}");
    // quarantined: new work goes to the honest workers only
    let sent = executes.load(Ordering::Relaxed);
    assert_eq!(
        o.post(
            "/tasks",
            &json!({ "tasks": python_tasks("later", 3) }).to_string()
        )
        .status,
        201
    );
    wait_until(LONG, "later ones completed", || {
        o.get("/stats").json()["tasks"]["by_status"]["completed"] == 9
    });
    assert_eq!(
        executes.load(Ordering::Relaxed),
        sent,
        "the liar got nothing more"
    );
    stop.store(true, Ordering::Relaxed);
}

#[test]
fn honest_workers_verified_every_time_record_each_result_once() {
    let c = crate::common::Cluster::start(
        &[WorkerSpec::new("a", 1), WorkerSpec::new("b", 1)],
        &[("VERIFY_FRACTION", "1")],
    );
    c.wait_workers_up();
    let tasks = python_tasks("hon", 6);
    assert_eq!(
        c.orch()
            .post("/tasks", &json!({ "tasks": tasks }).to_string())
            .status,
        201
    );
    c.wait_count("completed", 6, LONG);
    wait_until(LONG, "every result verified", || {
        verification(c.orch())["agreed"] == 6
    });
    let v = verification(c.orch());
    assert!(v["runs"].as_u64() >= Some(6), "{v}");
    assert_eq!(v["mismatches"], 0, "{v}");
    assert_eq!(
        (v["corrected"].as_u64(), v["quarantined"].as_u64()),
        (Some(0), Some(0)),
        "{v}"
    );
    for i in 0..6 {
        let t = c.task(&format!("hon{i}"));
        assert_eq!(t["attempt_count"], 1, "{t}");
        assert_eq!(t["attempts"].as_array().unwrap().len(), 1, "{t}");
    }
    wait_until(LONG, "results written", || c.results().len() >= 6);
    let results = c.results();
    let mut ids: Vec<&str> = results.iter().map(|r| r["task_id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!((ids.len(), results.len()), (6, 6), "each result once in results/");
    assert!(c.orch().get("/workers").json()["workers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["suspect"].is_null()));
}
