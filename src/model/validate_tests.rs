//! The validator's rules, case by case (every problem named with its path).

use serde_json::json;

use super::*;

fn validator() -> Validator {
    Validator::standard()
}

fn errors(v: Value) -> Vec<String> {
    validator()
        .task(&v, "tasks[0]")
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn the_seeds_task_is_valid_and_round_trips() {
    let v = json!({"task_id": "task_001", "algorithm": "python",
        "parameters": {"num_particles": 100, "num_steps": 500, "seed": 123},
        "priority": "high", "description": "Simulación Python - 100 partículas", "owner": "ana"});
    let task = validator().task(&v, "").unwrap();
    assert_eq!(task.task_id.as_str(), "task_001");
    assert_eq!(task.priority, Priority::High);
    assert_eq!(task.work.kernel(), "reference");
    assert_eq!(task.extra["owner"], "ana");
    assert_eq!(task.to_json(), v);
}

#[test]
fn priority_defaults_to_medium() {
    let v = json!({"task_id": "a", "algorithm": "cython",
        "parameters": {"num_particles": 100, "num_steps": 5, "seed": 0}});
    assert_eq!(validator().task(&v, "").unwrap().priority, Priority::Medium);
}

#[test]
fn every_problem_has_a_path_and_an_expectation() {
    let e = errors(json!({"task_id": 7, "algorithm": "fortran", "priority": "urgent"}));
    assert_eq!(e.len(), 4, "{e:?}");
    assert!(
        e[0].starts_with("tasks[0].task_id: expected a string, found 7"),
        "{e:?}"
    );
    assert!(e[1].starts_with("tasks[0].priority: expected \"high\""), "{e:?}");
    assert!(
        e[2].contains("tasks[0].algorithm: expected one of reference, optimized"),
        "{e:?}"
    );
    assert!(e[3].starts_with("tasks[0].parameters: required"), "{e:?}");

    let e = errors(json!({"task_id": "t", "algorithm": "python",
        "parameters": {"num_particles": -4, "num_steps": "10", "seed": 1.5, "dt": "small"}}));
    assert_eq!(
        e,
        [
            "tasks[0].parameters.num_particles: expected a whole number ≥ 13, found -4",
            "tasks[0].parameters.num_steps: expected a whole number, found \"10\" (a string)",
            "tasks[0].parameters.seed: expected a whole number, found 1.5",
            "tasks[0].parameters.dt: expected a number, found \"small\" (a string)",
        ]
    );

    let e = errors(json!({"task_id": "t", "algorithm": "python",
        "parameters": {"num_particles": 4, "num_steps": 10, "seed": 1}}));
    assert!(e[0].starts_with("tasks[0].parameters.num_particles: expected a whole number ≥ 13, found 4"));

    let e = errors(json!({"task_id": "t", "algorithm": "python"}));
    assert_eq!(
        e,
        ["tasks[0].parameters: required: an object with num_particles, num_steps and seed"]
    );
    let e = errors(json!("just a string"));
    assert!(e[0].contains("expected a task object"), "{e:?}");
}

#[test]
fn an_unknown_algorithm_and_bad_parameters_are_listed_together() {
    let e = errors(json!({"task_id": "p", "algorithm": "fortran",
        "parameters": {"num_particles": 100, "num_steps": 10, "seed": 1, "density": 1e-9, "dt": 1e10}}));
    assert_eq!(
        e,
        [
            "tasks[0].algorithm: expected one of reference, optimized, python, cython, found \"fortran\"",
            "tasks[0].parameters.density: expected a number from 1e-6 to 1.2, found 1e-9",
            "tasks[0].parameters.dt: expected a number from 1e-6 to 0.1, found 1e10",
        ]
    );
    // a missing algorithm, and one of the wrong type, too
    let e = errors(json!({"task_id": "p",
        "parameters": {"num_particles": 100, "num_steps": 10, "seed": 1, "temperature": 1e300}}));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("tasks[0].algorithm: required"), "{e:?}");
    assert_eq!(
        e[1],
        "tasks[0].parameters.temperature: expected a number from 0 to 100, found 1e300"
    );
    let e = errors(json!({"task_id": "p", "algorithm": 3,
        "parameters": {"num_particles": "many", "num_steps": 10, "seed": 1}}));
    assert_eq!(e.len(), 2, "{e:?}");
    // an unknown algorithm with good parameters is one problem, not more
    let e = errors(json!({"task_id": "p", "algorithm": "fortran",
        "parameters": {"num_particles": 100, "num_steps": 10, "seed": 1}}));
    assert_eq!(e.len(), 1, "{e:?}");
}

#[test]
fn the_poison_task_is_refused_with_the_range() {
    // issue 11: this task made a worker allocate 51 GB and abort
    let e = errors(json!({"task_id": "p", "algorithm": "cython",
        "parameters": {"num_particles": 100, "num_steps": 10, "seed": 1, "density": 1e-9}}));
    assert_eq!(
        e,
        ["tasks[0].parameters.density: expected a number from 1e-6 to 1.2, found 1e-9"]
    );
    for (field, value, range) in [
        ("density", json!(1e-300), "from 1e-6 to 1.2"),
        ("density", json!(0), "from 1e-6 to 1.2"),
        ("density", json!(1e300), "from 1e-6 to 1.2"),
        ("dt", json!(1e10), "from 1e-6 to 0.1"),
        ("temperature", json!(1e300), "from 0 to 100"),
        ("cutoff", json!(0.5), "from 1 to 10"),
        ("cutoff", json!(1e6), "from 1 to 10"),
    ] {
        let mut task = json!({"task_id": "p", "algorithm": "cython",
            "parameters": {"num_particles": 100, "num_steps": 10, "seed": 1}});
        task["parameters"][field] = value.clone();
        let e = errors(task);
        assert_eq!(e.len(), 1, "{field} = {value}: {e:?}");
        assert!(
            e[0].starts_with(&format!(
                "tasks[0].parameters.{field}: expected a number {range}, found"
            )),
            "{e:?}"
        );
    }
}

#[test]
fn a_task_bigger_than_the_memory_limit_says_the_estimate_and_the_limit() {
    let v = Validator {
        limits: Limits {
            max_memory_bytes: 1e6,
            memory_setting: "WORKER_MEMORY_LIMIT",
            ..Limits::default()
        },
        ..validator()
    };
    let task = json!({"task_id": "t", "algorithm": "optimized",
        "parameters": {"num_particles": 100_000, "num_steps": 1, "seed": 0}});
    let e = v.task(&task, "").unwrap_err();
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].path, "parameters.num_particles");
    assert!(
        e[0].message.starts_with("this run needs about ")
            && e[0].message.contains(
                "MB of memory with `optimized`, more than the memory limit of 1.0 MB (WORKER_MEMORY_LIMIT)"
            ),
        "{e:?}"
    );
}

#[test]
fn ids_that_look_like_paths_are_refused() {
    for bad in ["../etc/passwd", "a/b", "", "..", "x y", "tab\t", "é"] {
        assert!(TaskId::parse(bad).is_err(), "{bad:?}");
    }
    assert!(TaskId::parse(&"x".repeat(129)).is_err());
    for good in ["task_001", "batch-7.3", "run:2024:01", "A"] {
        assert!(TaskId::parse(good).is_ok(), "{good:?}");
    }
}

#[test]
fn test_kernels_need_the_switch() {
    let v = json!({"task_id": "t", "algorithm": "__sleep", "parameters": {"seconds": 1}});
    let e = validator().task(&v, "").unwrap_err();
    assert!(e[0].message.contains("ORQUESTA_TEST_KERNELS=1"), "{e:?}");
    let on = Validator {
        test_kernels: true,
        ..validator()
    };
    assert_eq!(
        on.task(&v, "").unwrap().work,
        Work::Test(TestKernel::Sleep { seconds: 1.0 })
    );
    let bad = json!({"task_id": "t", "algorithm": "__sleep", "parameters": {"seconds": -1}});
    assert!(on.task(&bad, "").is_err());
}

#[test]
fn a_restricted_worker_refuses_other_algorithms() {
    let v = Validator {
        algorithms: Some(vec!["python".into(), "reference".into()]),
        ..validator()
    };
    let task = json!({"task_id": "t", "algorithm": "cython",
        "parameters": {"num_particles": 100, "num_steps": 5, "seed": 0}});
    let e = v.task(&task, "").unwrap_err();
    assert!(
        e[0].message.contains("expected one of python, reference"),
        "{e:?}"
    );
}

/// The seed's workers list `python` and `cython`; a task that names the
/// kernels they stand for (`reference`, `optimized`, what `gen` writes)
/// runs there, as the orchestrator's placement already assumed.
#[test]
fn a_restricted_worker_takes_the_kernel_its_alias_stands_for() {
    let v = Validator {
        algorithms: Some(vec!["python".into(), "cython".into()]),
        ..validator()
    };
    for algorithm in ["optimized", "reference", "python", "cython"] {
        let task = json!({"task_id": "t", "algorithm": algorithm,
            "parameters": {"num_particles": 100, "num_steps": 5, "seed": 0}});
        assert!(v.task(&task, "").is_ok(), "{algorithm}");
    }
    let only_python = Validator {
        algorithms: Some(vec!["python".into()]),
        ..validator()
    };
    let task = json!({"task_id": "t", "algorithm": "optimized",
        "parameters": {"num_particles": 100, "num_steps": 5, "seed": 0}});
    assert!(only_python.task(&task, "").is_err());
}

#[test]
fn whole_numbers() {
    assert_eq!(whole_number(&json!(1e3)), Ok(1000));
    assert_eq!(whole_number(&json!(u64::MAX)), Ok(u64::MAX));
    assert!(whole_number(&json!(1e30)).unwrap_err().contains("from 0 to"));
    assert!(whole_number(&json!(null)).is_err());
    assert!(whole_number(&json!(true)).is_err());
}

#[test]
fn reuse_is_true_or_false_and_kept_in_the_body() {
    let v = json!({"task_id": "r", "algorithm": "python", "reuse": false,
        "parameters": {"num_particles": 100, "num_steps": 5, "seed": 0}});
    let task = validator().task(&v, "").unwrap();
    assert_eq!(task.to_json()["reuse"], false, "the store reads it from the body");
    let e = errors(json!({"task_id": "r", "algorithm": "python", "reuse": "no",
        "parameters": {"num_particles": 100, "num_steps": 5, "seed": 0}}));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("tasks[0].reuse: expected true or false"),
        "{e:?}"
    );
}
