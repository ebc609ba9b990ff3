//! The tools for people, run as the real binary: `gen` from flags,
//! `validate`, `schema`, `completions`. The guided `gen` in a terminal is in
//! `tools_terminal`; `submit`, `status` and `ping` against a cluster in
//! `tools_cluster`.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Output, Stdio};

use serde_json::Value;

use crate::common::{orquesta, stderr, stdout};

/// Runs `orquesta ARGS…` in `dir` with no terminal on stdin.
pub(crate) fn run_in(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = orquesta();
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .env_remove("TASK_QUEUE_DIR")
        .env_remove("ORCHESTRATOR_PORT")
        .env_remove("ORCHESTRATOR_HOST");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("the orquesta binary runs")
}

pub(crate) fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

pub(crate) fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

pub(crate) fn tasks(file: &Value) -> &Vec<Value> {
    file["tasks"].as_array().unwrap()
}

#[test]
fn gen_flags_shape_every_task() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(
        dir.path(),
        &[
            "gen",
            "--count",
            "60",
            "--algorithm",
            "reference,optimized",
            "--particles",
            "20..40",
            "--steps",
            "3..7",
            "--priority",
            "high,low",
            "--seed",
            "5",
            "--description",
            "my batch",
            "--output",
            "a.json",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("wrote a.json: 60 tasks ("),
        "{}",
        stdout(&out)
    );
    let file = read_json(&dir.path().join("a.json"));
    let meta: Vec<&String> = file["metadata"].as_object().unwrap().keys().collect();
    assert_eq!(
        meta,
        ["creation_date", "description", "total_tasks", "created_by"]
    );
    assert_eq!(file["metadata"]["total_tasks"], 60);
    assert_eq!(file["metadata"]["description"], "my batch");
    assert_eq!(file["metadata"]["created_by"], "orquesta gen");
    let list = tasks(&file);
    assert_eq!(list.len(), 60);
    let mut algorithms = HashSet::new();
    let mut priorities = HashSet::new();
    for t in list {
        let n = t["parameters"]["num_particles"].as_u64().unwrap();
        let s = t["parameters"]["num_steps"].as_u64().unwrap();
        assert!((20..=40).contains(&n) && (3..=7).contains(&s), "{t}");
        algorithms.insert(t["algorithm"].as_str().unwrap().to_string());
        priorities.insert(t["priority"].as_str().unwrap().to_string());
    }
    assert_eq!(
        algorithms,
        HashSet::from(["reference".into(), "optimized".into()])
    );
    assert_eq!(priorities, HashSet::from(["high".into(), "low".into()]));
    let ids: HashSet<&str> = list.iter().map(|t| t["task_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 60);

    // single values and the defaults
    let out = run_in(
        dir.path(),
        &[
            "gen", "-c", "3", "-a", "cython", "-n", "50", "-s", "0", "-p", "medium", "-o", "b.json",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for t in tasks(&read_json(&dir.path().join("b.json"))) {
        assert_eq!(t["algorithm"], "cython");
        assert_eq!(t["parameters"]["num_particles"], 50);
        assert_eq!(t["parameters"]["num_steps"], 0);
        assert_eq!(t["priority"], "medium");
    }
}

#[test]
fn gen_with_the_same_seed_repeats_itself() {
    let dir = tempfile::tempdir().unwrap();
    let gen = |out: &str, seed: &str, extra: &[&str]| {
        let mut args = vec!["gen", "--count", "20", "--seed", seed, "--output", out];
        args.extend_from_slice(extra);
        let o = run_in(dir.path(), &args, &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        read_json(&dir.path().join(out))
    };
    let a = gen("a.json", "99", &["--prefix", "run"]);
    let b = gen("b.json", "99", &["--prefix", "run"]);
    assert_eq!(tasks(&a), tasks(&b), "same seed and prefix: the same tasks");
    assert_eq!(tasks(&a)[0]["task_id"], "run_001");
    let c = gen("c.json", "99", &[]);
    let d = gen("d.json", "99", &[]);
    for ((a, c), d) in tasks(&a).iter().zip(tasks(&c)).zip(tasks(&d)) {
        assert_eq!(a["parameters"], c["parameters"]);
        assert_eq!(a["algorithm"], c["algorithm"]);
        assert_eq!(a["priority"], d["priority"]);
        assert_ne!(
            c["task_id"], d["task_id"],
            "without --prefix every run has its own ids"
        );
    }
    let e = gen("e.json", "100", &[]);
    assert_ne!(tasks(&a)[0]["parameters"], tasks(&e)[0]["parameters"]);
}

#[test]
fn gen_runs_never_share_ids_and_never_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..3 {
        let out = run_in(dir.path(), &["gen"], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let queue = dir.path().join("task_queues");
    let names = files_in(&queue);
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("tasks_") && n.ends_with(".json")),
        "{names:?}"
    );
    let mut ids = HashSet::new();
    for n in &names {
        let file = read_json(&queue.join(n));
        assert_eq!(tasks(&file).len(), 10, "the default count");
        for t in tasks(&file) {
            assert!(ids.insert(t["task_id"].as_str().unwrap().to_string()), "{t}");
        }
    }
    // the three files can be dropped together
    let paths: Vec<String> = names.iter().map(|n| format!("task_queues/{n}")).collect();
    let mut args = vec!["validate"];
    args.extend(paths.iter().map(String::as_str));
    let out = run_in(dir.path(), &args, &[]);
    assert!(out.status.success(), "{}", stdout(&out));

    // an existing --output is kept unless --force
    std::fs::write(dir.path().join("keep.json"), "mine").unwrap();
    let out = run_in(dir.path(), &["gen", "-c", "2", "-o", "keep.json"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("keep.json already exists; pass --force"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("keep.json")).unwrap(),
        "mine"
    );
    let out = run_in(dir.path(), &["gen", "-c", "2", "-o", "keep.json", "--force"], &[]);
    assert!(out.status.success());
    assert_eq!(tasks(&read_json(&dir.path().join("keep.json"))).len(), 2);
}

#[test]
fn gen_refuses_bad_flags_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    for (args, message) in [
        (
            vec!["gen", "--particles", "5..50"],
            "error: --particles: 5 particles: expected a whole number ≥ 13, found 5: at density 0.5",
        ),
        (vec!["gen", "--particles", "50..20"], "error: --particles: expected MIN ≤ MAX, found 50..20"),
        (
            vec!["gen", "--algorithm", "fortran"],
            "error: --algorithm: expected reference, optimized, python, cython, mix, or a comma-separated list of them, found \"fortran\"",
        ),
        (vec!["gen", "--count", "0"], "error: --count: expected a whole number of tasks from 1 to 1000000, found \"0\""),
        (vec!["gen", "--priority", "urgent"], "error: --priority: expected high, medium, low, mix"),
        (vec!["gen", "--prefix", "my batch"], "error: --prefix: the prefix makes ids like \"my batch\"_001"),
        (
            vec!["gen", "-a", "reference", "-n", "1000000", "-s", "1000000"],
            "error: --steps: the largest task (reference, 1000000 particles, 1000000 steps) is too big",
        ),
    ] {
        let out = run_in(dir.path(), &args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).starts_with(message), "{args:?}: {}", stderr(&out));
    }
    assert!(!dir.path().join("task_queues").exists(), "nothing written");
}

#[test]
fn validate_prints_every_problem_or_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/tareas_manuales_ejemplo.json");
    let out = run_in(dir.path(), &["validate", example], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        format!("{example}: ok, 10 tasks (cython 5, python 5; high 4, medium 3, low 3), 2,715,000 particle-steps\n")
    );

    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"metadata": {"total_tasks": "ten"}, "tasks": [
 {"task_id": "a", "algorithm": "python", "parameters": {"num_particles": 100, "num_steps": 10, "seed": 1}},
 {"task_id": "a", "algorithm": "fortran", "parameters": {"num_particles": 100, "num_steps": 10, "seed": 1}},
 {"task_id": "c", "algorithm": "python", "parameters": {"num_particles": -4, "num_steps": 10, "seed": 1}, "priority": "urgent"},
 {"task_id": "d", "algorithm": "cython", "parameters": {"num_particles": 5, "num_steps": 10, "seed": 1}}
]}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("cut.json"), r#"{"tasks": ["#).unwrap();
    let out = run_in(
        dir.path(),
        &["validate", "bad.json", "cut.json", "missing.json"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "bad.json: 6 problems found\n\
         \x20 metadata.total_tasks: expected a whole number, found \"ten\" (a string)\n\
         \x20 tasks[1].task_id: duplicate id \"a\", also used by tasks[0]: every task_id must be unique\n\
         \x20 tasks[1].algorithm: expected one of reference, optimized, python, cython, found \"fortran\"\n\
         \x20 tasks[2].priority: expected \"high\", \"medium\" or \"low\", found \"urgent\"\n\
         \x20 tasks[2].parameters.num_particles: expected a whole number ≥ 13, found -4\n\
         \x20 tasks[3].parameters.num_particles: expected a whole number ≥ 13, found 5: at density 0.5 the box \
         side would be 3.1623, smaller than 2 × cutoff = 5; use more particles, a lower density or a smaller cutoff\n\
         cut.json: 1 problem found\n\
         \x20 malformed JSON at line 1, column 11: EOF while parsing a list at line 1 column 11 (the file ends \
         too early: is it still being written, or truncated?)\n\
         missing.json: cannot read missing.json: No such file or directory (os error 2)\n"
    );
}

#[test]
fn the_schema_and_completions_come_from_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(dir.path(), &["schema"], &[]);
    assert!(out.status.success());
    let checked_in = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schema/task_file.schema.json"
    ))
    .unwrap();
    assert_eq!(stdout(&out), checked_in);
    for shell in ["bash", "zsh", "fish"] {
        let out = run_in(dir.path(), &["completions", shell], &[]);
        assert!(out.status.success(), "{shell}");
        let script = stdout(&out);
        assert!(
            script.contains("orquesta") && script.contains("validate") && script.contains("particles"),
            "{shell}"
        );
    }
    let out = run_in(dir.path(), &["completions", "powershell"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid value 'powershell'"),
        "{}",
        stderr(&out)
    );
    for sub in [
        "gen",
        "validate",
        "schema",
        "submit",
        "status",
        "ping",
        "completions",
    ] {
        let out = run_in(dir.path(), &[sub, "--help"], &[]);
        assert!(
            out.status.success() && stdout(&out).contains("Examples:\n  orquesta "),
            "{sub}"
        );
    }
}
