//! Replication around the work and across a restart: a verification run
//! gives its slot up as soon as a task could use it, and the checks still
//! waiting when the orchestrator is killed wait again after it restarts
//! and are decided there.

use serde_json::{json, Value};

use crate::common::{wait_until, Cluster, Proc, WorkerSpec};
use crate::faults::LONG;

fn verification(o: &Proc) -> Value {
    o.get("/stats").json()["since_start"]["verification"].clone()
}

/// Each its own seed: equal parameters would be answered from the stored
/// result rather than run.
fn python(id: &str, particles: u64, steps: u64, seed: u64) -> Value {
    json!({"task_id": id, "algorithm": "python",
           "parameters": {"num_particles": particles, "num_steps": steps, "seed": seed}})
}

fn status(c: &Cluster, id: &str) -> String {
    c.status_of(id)
}

#[test]
fn a_verification_run_gives_its_slot_to_work_that_arrives() {
    let c = Cluster::start(
        &[WorkerSpec::new("a", 1), WorkerSpec::new("b", 1)],
        &[("VERIFY_FRACTION", "1")],
    );
    c.wait_workers_up();
    let o = c.orch();
    // a run of some seconds, then its verification on the other worker
    let post = |tasks: Vec<Value>| {
        let r = o.post("/tasks", &json!({ "tasks": tasks }).to_string());
        assert_eq!(r.status, 201, "{}", r.text());
    };
    post(vec![python("long", 2000, 600, 1)]);
    c.wait_count("completed", 1, LONG);
    wait_until(LONG, "the verification run sent", || verification(o)["runs"] == 1);
    assert_eq!(verification(o)["agreed"], 0, "still verifying");
    // two tasks for the two slots, one of them held by the verification:
    // the short one starts at once rather than after the verification
    post(vec![python("second", 2000, 600, 2), python("short", 16, 5, 3)]);
    wait_until(LONG, "the short task completed", || {
        status(&c, "short") == "completed"
    });
    let v = verification(o);
    assert!(v["withdrawn"].as_u64() >= Some(1), "{v}");
    let log = |o: &Proc| -> String {
        o.log()
            .lines()
            .filter(|l| {
                l.contains("verification")
                    || l.contains("short")
                    || l.contains("long")
                    || l.contains("second")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        v["agreed"],
        0,
        "the short task did not wait for the verification to end: {v}\n{}\n{}",
        log(o),
        c.workers.iter().map(log).collect::<Vec<_>>().join("\n")
    );
    wait_until(LONG, "the withdrawal logged", || {
        o.log()
            .contains("verification run withdrawn: work can use its slot")
    });
    // the check waited and is decided once the work is done
    c.wait_count("completed", 3, LONG);
    let deadline = std::time::Instant::now() + LONG;
    while verification(o)["agreed"] != 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "not all verified: {}\n{}\n{}",
            verification(o),
            log(o),
            c.workers.iter().map(log).collect::<Vec<_>>().join("\n")
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let v = verification(o);
    assert_eq!(
        (v["mismatches"].as_u64(), v["waiting"].as_u64()),
        (Some(0), Some(0)),
        "{v}"
    );
    for id in ["long", "second", "short"] {
        let t = c.task(id);
        assert_eq!(t["attempt_count"], 1, "a withdrawn run is no attempt: {t}");
    }
}

#[test]
fn checks_waiting_when_the_orchestrator_is_killed_are_decided_after_a_restart() {
    // one capable worker: the checks wait for ever
    let mut c = Cluster::start(&[WorkerSpec::new("a", 2)], &[("VERIFY_FRACTION", "1")]);
    c.wait_workers_up();
    let tasks: Vec<Value> = (0..4).map(|i| python(&format!("k{i}"), 16, 5, i)).collect();
    let r = c.orch().post("/tasks", &json!({ "tasks": tasks }).to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    c.wait_count("completed", 4, LONG);
    wait_until(LONG, "four checks waiting", || {
        verification(c.orch())["waiting"] == 4
    });
    assert_eq!(verification(c.orch())["runs"], 0);
    // a second worker comes with the restart
    let b = Proc::start(
        c.dir.path(),
        &["worker", "--worker-id", "b", "--port", "0", "--capacity", "2"],
        &[("ORQUESTA_TEST_KERNELS", "1")],
    );
    let port = |p: &Proc| -> u16 { p.addr.rsplit(':').next().unwrap().parse().unwrap() };
    std::fs::write(
        c.path("config_workers.json"),
        json!({"workers": [
            {"id": "a", "host": "127.0.0.1", "port": port(&c.workers[0]), "capacity": 2},
            {"id": "b", "host": "127.0.0.1", "port": port(&b), "capacity": 2},
        ]})
        .to_string(),
    )
    .unwrap();
    // killed (SIGKILL) and started again on the same folder
    c.restart_orchestrator();
    c.workers.push(b);
    c.wait_workers_up();
    wait_until(LONG, "the restart logs the checks waiting again", || {
        c.orch()
            .log()
            .contains("verifications waiting before the restart wait again")
    });
    wait_until(LONG, "the four checks decided", || {
        verification(c.orch())["agreed"] == 4
    });
    let v = verification(c.orch());
    assert_eq!(
        (v["waiting"].as_u64(), v["mismatches"].as_u64()),
        (Some(0), Some(0)),
        "{v}"
    );
    for i in 0..4 {
        let t = c.task(&format!("k{i}"));
        assert_eq!(t["worker_id"], "a", "the recorded result stays: {t}");
        assert_eq!(t["attempt_count"], 1, "{t}");
    }
    // decided: a second start finds nothing waiting (stopped cleanly, so
    // that the last decisions are committed)
    c.orch().signal(libc::SIGTERM);
    let stopped = c.orchestrator.as_mut().unwrap().wait_exit(LONG);
    assert!(stopped.is_some(), "the orchestrator stops on SIGTERM");
    c.restart_orchestrator();
    c.wait_workers_up();
    // (the stats are asked after the start-up's recovery is handled)
    assert_eq!(verification(c.orch())["waiting"], 0);
}
