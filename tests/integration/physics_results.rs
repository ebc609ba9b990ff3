//! Every physics number of a task run through a worker reaches the API
//! (`GET /tasks/{id}`) and `results/` with the bits `orquesta sim` prints
//! for the same task, for both kernels, the thermo series and its averages
//! included; and every result records its effective parameters, its
//! description and the file it came from.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{run, stderr, stdout, wait_until, Cluster, WorkerSpec};

/// Metrics that measure the machine, not the physics.
const NOT_PHYSICS: [&str; 5] = [
    "particle_steps_per_second",
    "memory_used",
    "memory_bytes",
    "threads",
    "kernel",
];

/// Every number under `v`, by its path, as bits (`==` on f64 would let
/// -0.0 pass for 0.0; the text of a number is what travelled).
fn numbers(v: &Value, path: String, out: &mut Vec<(String, String)>) {
    match v {
        Value::Number(n) => out.push((path, format!("{n} = {:#018x}", n.as_f64().unwrap().to_bits()))),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                numbers(x, format!("{path}[{i}]"), out);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                if !NOT_PHYSICS.contains(&k.as_str()) {
                    numbers(x, format!("{path}.{k}"), out);
                }
            }
        }
        _ => {}
    }
}

pub(crate) fn physics(metrics: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    numbers(metrics, "metrics".into(), &mut out);
    out
}

/// `orquesta sim` of the task's parameters with its algorithm.
pub(crate) fn sim_of(algorithm: &str, p: &Value) -> Value {
    let arg = |k: &str| p[k].to_string();
    let mut args: Vec<String> = [
        "sim",
        "--compact",
        "--algorithm",
        algorithm,
        "--particles",
        &arg("num_particles"),
        "--steps",
        &arg("num_steps"),
        "--seed",
        &arg("seed"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (key, flag) in [
        ("density", "--density"),
        ("temperature", "--temperature"),
        ("dt", "--dt"),
        ("cutoff", "--cutoff"),
        ("thermo_every", "--thermo-every"),
    ] {
        if let Some(v) = p.get(key) {
            args.extend([flag.to_string(), v.to_string()]);
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("JSON on stdout")
}

#[test]
fn worker_results_carry_the_bits_of_orquesta_sim_for_both_kernels() {
    let c = Cluster::start(&[WorkerSpec::new("w", 2)], &[]);
    c.wait_workers_up();
    // both kernels under both names, defaults and every parameter given,
    // with and without a series; temperatures whose energies end in many
    // digits (issue 19 saw the last bit of kinetic_energy_initial change)
    let tasks = vec![
        json!({"task_id": "ref", "algorithm": "reference", "description": "reference, defaults",
               "parameters": {"num_particles": 400, "num_steps": 60, "seed": 7, "thermo_every": 10}}),
        json!({"task_id": "opt", "algorithm": "optimized", "description": "optimized, every parameter",
               "parameters": {"num_particles": 4000, "num_steps": 40, "seed": 11, "density": 0.7,
                              "temperature": 1.3, "dt": 0.002, "cutoff": 3.0, "thermo_every": 8}}),
        json!({"task_id": "py", "algorithm": "python",
               "parameters": {"num_particles": 144, "num_steps": 30, "seed": 3, "temperature": 0.45}}),
        json!({"task_id": "cy", "algorithm": "cython",
               "parameters": {"num_particles": 5003, "num_steps": 25, "seed": 0, "thermo_every": 25}}),
    ];
    let queue = c.path("task_queues");
    std::fs::create_dir_all(&queue).unwrap();
    let part = queue.join("physics.json.part");
    std::fs::write(&part, json!({ "tasks": tasks }).to_string()).unwrap();
    std::fs::rename(&part, queue.join("physics.json")).unwrap();
    c.wait_count("completed", tasks.len() as u64, Duration::from_secs(120));
    wait_until(Duration::from_secs(20), "every result in results/", || {
        c.results().len() == tasks.len()
    });
    let files = c.results();
    for task in &tasks {
        let id = task["task_id"].as_str().unwrap();
        let api = c.task(id)["result"].clone();
        let file = files
            .iter()
            .find(|r| r["task_id"] == id)
            .unwrap_or_else(|| panic!("{id} not in results/"))
            .clone();
        let local = sim_of(task["algorithm"].as_str().unwrap(), &task["parameters"]);
        let want = physics(&local["result"]["metrics"]);
        assert!(want.len() > 12, "{id}: {want:?}");
        assert_eq!(
            physics(&api["result"]["metrics"]),
            want,
            "{id}: the API's metrics"
        );
        assert_eq!(
            physics(&file["result"]["metrics"]),
            want,
            "{id}: results/'s metrics"
        );
        // the same effective parameters everywhere, defaults filled in
        let effective = &local["effective_parameters"];
        for key in [
            "num_particles",
            "num_steps",
            "seed",
            "density",
            "temperature",
            "dt",
            "cutoff",
        ] {
            assert!(effective[key].is_number(), "{id}: {key} in {effective}");
        }
        assert_eq!(
            effective.get("thermo_every"),
            task["parameters"].get("thermo_every")
        );
        for record in [&api, &file] {
            assert_eq!(&record["effective_parameters"], effective, "{id}");
            assert_eq!(record["source"], "physics.json", "{id}");
            assert_eq!(record.get("description"), task.get("description"), "{id}");
        }
        let m = &file["result"]["metrics"];
        assert!(
            m["pressure_initial"].is_number() && m["pressure_final"].is_number(),
            "{m}"
        );
        match task["parameters"].get("thermo_every") {
            Some(every) => {
                let every = every.as_u64().unwrap();
                let steps = task["parameters"]["num_steps"].as_u64().unwrap();
                let rows = m["thermo"].as_array().unwrap();
                assert_eq!(rows.len() as u64, steps / every + 1, "{id}");
                assert_eq!(rows.last().unwrap()["step"], json!(steps / every * every));
                assert!(m["averages"]["pressure"]["mean"].is_number(), "{m}");
            }
            None => assert!(m.get("thermo").is_none() && m.get("averages").is_none(), "{m}"),
        }
    }
    // defaults filled in where the task left them out
    let py = c.task("py")["result"]["effective_parameters"].clone();
    assert_eq!(
        py,
        json!({"num_particles": 144, "num_steps": 30, "seed": 3, "density": 0.5,
               "temperature": 0.45, "dt": 0.005, "cutoff": 2.5})
    );
}

#[test]
fn a_bad_thermo_every_is_refused_with_the_same_words_everywhere() {
    // orquesta sim, orquesta validate (the orchestrator's validator) and
    // the schema agree on what thermo_every may be
    let out = run(&[
        "sim",
        "-n",
        "100",
        "-s",
        "10",
        "--seed",
        "1",
        "--thermo-every",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("--thermo-every") && err.contains("≥ 1"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    for (every, phrase) in [
        ("0", "≥ 1"),
        ("-2", "≥ 1"),
        ("1.5", "whole number"),
        ("1", "rows"),
    ] {
        let path = dir.path().join("t.json");
        let steps = if every == "1" { 20_000 } else { 10 };
        std::fs::write(
            &path,
            format!(
                r#"{{"tasks": [{{"task_id": "a", "algorithm": "python", "parameters":
                   {{"num_particles": 100, "num_steps": {steps}, "seed": 1, "thermo_every": {every}}}}}]}}"#
            ),
        )
        .unwrap();
        let out = run(&["validate", path.to_str().unwrap()]);
        assert!(!out.status.success(), "thermo_every {every} was accepted");
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            text.contains("thermo_every") && text.contains(phrase),
            "thermo_every {every}: {text}"
        );
    }
}
