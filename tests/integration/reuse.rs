//! Never the same run twice (issue 20): a 1,000-task study dropped again
//! with new ids is answered from the stored results at its commit: no
//! worker runs anything (the workers' own counters stay put), every task
//! has one attempt `reused`, every result equals the first's bit for bit
//! but for its ids, `reused_from`, file and time, in `GET /tasks/{id}` and
//! in `results/`; `/stats` and Prometheus count the reuses; a task asking
//! `"reuse": false` runs. Prints how long the second study took.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{run, stderr, wait_until, Cluster, WorkerSpec};

const LONG: Duration = Duration::from_secs(600);

/// Writes the study (the same `--seed`, so the same runs) with ids
/// starting `prefix` into `queue/NAME.json`, through a `.part` name.
fn drop_study(queue: &Path, prefix: &str) -> Vec<Value> {
    let part = queue.join(format!("{prefix}.json.part"));
    let out = run(&[
        "gen",
        "--grid",
        "density=0.3,0.35,0.4,0.45,0.5",
        "--grid",
        "temperature=0.5:2.0:0.5",
        "--set",
        "num_particles=20",
        "--set",
        "num_steps=5",
        "--replicas",
        "50",
        "--study",
        "again",
        "--seed",
        "3",
        "--prefix",
        prefix,
        "-o",
        part.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let file: Value = serde_json::from_slice(&std::fs::read(&part).unwrap()).unwrap();
    std::fs::rename(&part, queue.join(format!("{prefix}.json"))).unwrap();
    file["tasks"].as_array().unwrap().clone()
}

/// Simulations the worker has run to the end, by its own count.
fn runs_on(c: &Cluster) -> u64 {
    ["reference", "optimized"]
        .iter()
        .map(|k| {
            c.workers[0].metric(&format!(
                "orquesta_worker_tasks_total{{worker=\"w1\",outcome=\"completed\",kernel=\"{k}\"}}"
            ))
        })
        .sum()
}

/// A result record without what differs between two tasks of one run.
fn physics(record: &Value) -> Value {
    let mut r = record.clone();
    for k in ["task_id", "reused_from", "completed_at", "source", "attempt_id"] {
        r.as_object_mut().unwrap().remove(k);
    }
    r
}

#[test]
fn a_study_dropped_again_is_answered_from_stored_results() {
    let c = Cluster::start(&[WorkerSpec::new("w1", 4)], &[]);
    let queue = c.path("task_queues");
    std::fs::create_dir_all(&queue).unwrap();
    let started = Instant::now();
    let first = drop_study(&queue, "one");
    assert_eq!(first.len(), 1000);
    c.wait_count("completed", 1000, LONG);
    let first_took = started.elapsed();
    let ran = runs_on(&c);
    assert_eq!(ran, 1000, "every task of the first study ran");
    wait_until(LONG, "the first results on disk", || c.results().len() == 1000);

    let started = Instant::now();
    let second = drop_study(&queue, "two");
    c.wait_count("completed", 2000, LONG);
    wait_until(LONG, "the second results on disk", || c.results().len() == 2000);
    let second_took = started.elapsed();
    eprintln!(
        "reuse: a 1,000-task study took {:.2} s to run, {:.2} s the second time (every result reused, \
         written to results/)",
        first_took.as_secs_f64(),
        second_took.as_secs_f64()
    );
    assert_eq!(runs_on(&c), ran, "nothing ran for the second study");

    let stats = c.orch().get("/stats").json();
    assert_eq!(stats["tasks"]["reused"], 1000, "{stats}");
    assert_eq!(c.orch().metric("orquesta_tasks_reused_total"), 1000);

    let on_disk: HashMap<String, Value> = c
        .results()
        .into_iter()
        .map(|r| (r["task_id"].as_str().unwrap().to_string(), r))
        .collect();
    for (a, b) in first.iter().zip(&second).step_by(37) {
        let (a_id, b_id) = (a["task_id"].as_str().unwrap(), b["task_id"].as_str().unwrap());
        assert_eq!(a["parameters"], b["parameters"], "the same runs");
        let ta = c.task(a_id);
        let tb = c.task(b_id);
        assert_eq!(tb["status"], "completed");
        assert_eq!(tb["result"]["reused_from"], a_id, "{tb}");
        assert_eq!(tb["result"]["task_id"], b_id);
        assert_eq!(tb["result"]["source"], "two.json");
        assert!(ta["result"].get("reused_from").is_none());
        let attempts = tb["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "{tb}");
        assert_eq!(attempts[0]["outcome"], "reused");
        // bit for bit: serde_json keeps every f64's bits through text
        assert_eq!(
            physics(&ta["result"]),
            physics(&tb["result"]),
            "{a_id} against {b_id}"
        );
        let energy = |t: &Value| {
            t["result"]["result"]["metrics"]["total_energy_final"]
                .as_f64()
                .unwrap()
                .to_bits()
        };
        assert_eq!(energy(&ta), energy(&tb));
        assert_eq!(
            physics(&on_disk[a_id]),
            physics(&on_disk[b_id]),
            "in results/ too"
        );
        assert_eq!(on_disk[b_id]["reused_from"], a_id);
    }

    // one asking to run again runs, and one with a default spelled out
    // is the same run as one without
    let mut again = first[0].clone();
    again["task_id"] = json!("fresh");
    again["reuse"] = json!(false);
    let mut spelled = first[1].clone();
    spelled["task_id"] = json!("spelled");
    spelled["parameters"]["dt"] = json!(0.005);
    spelled["parameters"]["cutoff"] = json!(2.5);
    let r = c
        .orch()
        .post("/tasks", &json!({"tasks": [again, spelled]}).to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    c.wait_count("completed", 2002, LONG);
    wait_until(Duration::from_secs(60), "the fresh run counted", || {
        runs_on(&c) == ran + 1
    });
    assert!(c.task("fresh")["result"].get("reused_from").is_none());
    assert_eq!(c.task("spelled")["result"]["reused_from"], first[1]["task_id"]);
}
