//! Unit tests of `orquesta gen` (src/cli/gen.rs): answers parsed or
//! explained, the particle minimum, the same seed giving the same file.

use super::*;

fn plan(seed: u64) -> Plan {
    Plan {
        count: 200,
        algorithms: parse_algorithms("mix").unwrap(),
        particles: parse_range("13..40").unwrap(),
        steps: parse_range("0..5").unwrap(),
        priorities: parse_priorities("mix").unwrap(),
        seed,
        description: "d".into(),
        prefix: "t".into(),
        study: None,
        sets: Vec::new(),
        grid: None,
    }
}

#[test]
fn answers_are_parsed_or_explained() {
    assert_eq!(parse_range("100..1000"), Ok(Range { min: 100, max: 1000 }));
    assert_eq!(parse_range(" 50 "), Ok(Range { min: 50, max: 50 }));
    assert_eq!(parse_range("1..=3"), Ok(Range { min: 1, max: 3 }));
    assert_eq!(parse_range("9..2").unwrap_err(), "expected MIN ≤ MAX, found 9..2");
    assert!(parse_range("lots").unwrap_err().contains("such as 100..1000"));
    assert_eq!(
        parse_count("0").unwrap_err(),
        "expected a whole number of tasks from 1 to 1000000, found \"0\""
    );
    assert_eq!(
        parse_algorithms("reference, python").unwrap(),
        ["reference", "python"]
    );
    assert!(parse_algorithms("fortran")
        .unwrap_err()
        .contains("found \"fortran\""));
    assert_eq!(
        parse_priorities("low,high,low").unwrap(),
        [Priority::Low, Priority::High]
    );
    assert!(parse_priorities("urgent").is_err());
    assert!(parse_prefix("my batch").is_err());
    assert_eq!(parse_prefix("task").unwrap(), "task");
}

#[test]
fn the_particle_minimum_is_the_simulations() {
    let v = Validator::default();
    assert_eq!(v.min_particles(), 13);
    let e = check_particles(&v, &["python".into()], Range { min: 5, max: 100 }).unwrap_err();
    assert!(
        e.starts_with("5 particles: expected a whole number ≥ 13, found 5"),
        "{e}"
    );
    let e = check_steps(
        &v,
        &["python".into()],
        Range {
            min: 13,
            max: 1_000_000,
        },
        Range {
            min: 0,
            max: 1_000_000,
        },
    )
    .unwrap_err();
    assert!(
        e.starts_with("the largest task (python, 1000000 particles, 1000000 steps) is too big"),
        "{e}"
    );
}

#[test]
fn the_same_seed_gives_the_same_file_and_ranges_hold() {
    let a = build(&plan(7), "2024-01-15");
    assert_eq!(a, build(&plan(7), "2024-01-15"));
    assert_ne!(a["tasks"], build(&plan(8), "2024-01-15")["tasks"]);
    let tasks = a["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 200);
    assert_eq!(a["metadata"]["total_tasks"], 200);
    assert_eq!(tasks[0]["task_id"], "t_001");
    for t in tasks {
        let n = t["parameters"]["num_particles"].as_u64().unwrap();
        assert!((13..=40).contains(&n));
        assert!(t["parameters"]["num_steps"].as_u64().unwrap() <= 5);
    }
    for p in ["high", "medium", "low"] {
        assert!(tasks.iter().any(|t| t["priority"] == p), "{p}");
    }
    let keys: Vec<&String> = tasks[0].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["task_id", "algorithm", "parameters", "priority", "description"]
    );
}

#[test]
fn batch_prefixes_differ() {
    let now = Utc::now();
    assert_ne!(batch_prefix(&now), batch_prefix(&now));
    assert!(parse_prefix(&batch_prefix(&now)).is_ok());
}
