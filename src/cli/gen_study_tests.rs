//! Unit tests of the study part of `orquesta gen` (src/cli/gen_study.rs):
//! grid parsing, ranges and their tolerance, the cartesian product, seeds,
//! checks before writing.

use super::*;
use serde_json::json;

fn values(axis: &str) -> Vec<Value> {
    parse_axis(axis).unwrap().values
}

#[test]
fn lists_and_ranges_are_parsed() {
    assert_eq!(
        values("num_particles=256,1024, 4096"),
        [json!(256), json!(1024), json!(4096)]
    );
    assert_eq!(
        values("temperature=0.5:2.0:0.25"),
        [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0].map(|v| json!(v))
    );
    // rounded to the decimals written: no 0.30000000000000004
    assert_eq!(values("density=0.1:0.3:0.1"), [0.1, 0.2, 0.3].map(|v| json!(v)));
    // stop is left out when the steps do not land on it
    assert_eq!(values("dt=0:1:0.3"), [0.0, 0.3, 0.6, 0.9].map(|v| json!(v)));
    // within the tolerance of a step, stop is included exactly
    assert_eq!(
        values("dt=0.001:0.0030000000001:0.001").last(),
        Some(&json!(0.0030000000001))
    );
    assert_eq!(
        values("num_steps=100:400:100"),
        [100, 200, 300, 400].map(|v| json!(v))
    );
    assert_eq!(values("num_steps=1:10:4"), [1, 5, 9].map(|v| json!(v)));
    assert_eq!(
        values("algorithm=reference,optimized"),
        [json!("reference"), json!("optimized")]
    );
    assert_eq!(values("temperature=1"), [json!(1.0)]);
}

#[test]
fn bad_axes_are_explained() {
    let e = |s: &str| parse_axis(s).unwrap_err();
    assert!(e("tempreature=1,2").contains("unknown parameter \"tempreature\": expected one of num_particles"));
    assert!(e("seed=1,2").contains("derived from --seed"));
    assert!(e("density").contains("expected PARAM=VALUE"));
    assert!(e("density=1:0:0.1").contains("start ≤ stop and a step > 0"));
    assert!(e("density=0:1:0").contains("a step > 0"));
    assert!(e("density=0:1").contains("expected start:stop:step"));
    assert!(e("num_particles=10.5,20").contains("expected a whole number"));
    assert!(e("density=a,b").contains("expected a number such as 0.5, found \"a\""));
    assert!(e("algorithm=a:b:c").contains("a range needs a numeric parameter"));
    assert!(e("priority=urgent").contains("expected high, medium or low"));
    assert!(e("density=0.5,0.5").contains("given twice"));
    assert!(e("density=").contains("expected a number"));
    assert!(e("density=0:1e9:1e-3").contains("more than 1000000 values"));
    // a duplicate among a million values is still found (the check once
    // compared every value with every other one: a million values hung gen)
    let many = values("num_particles=1:1000000:1");
    assert_eq!((many.len(), many.last()), (1_000_000, Some(&json!(1_000_000))));
    assert_eq!(parse_set("dt=0.002").unwrap(), ("dt".into(), json!(0.002)));
    assert!(parse_set("dt=fast").is_err());
}

#[test]
fn the_product_has_one_point_per_combination_first_axis_slowest() {
    let axes = vec![
        parse_axis("num_particles=100,200").unwrap(),
        parse_axis("density=0.5,0.6,0.7").unwrap(),
    ];
    let p = points(&axes);
    assert_eq!(p.len(), 6);
    assert_eq!(p[0], [("num_particles", &json!(100)), ("density", &json!(0.5))]);
    assert_eq!(p[1], [("num_particles", &json!(100)), ("density", &json!(0.6))]);
    assert_eq!(p[5], [("num_particles", &json!(200)), ("density", &json!(0.7))]);
    let mut seen = std::collections::HashSet::new();
    for point in &p {
        assert!(seen.insert(format!("{point:?}")), "{point:?} twice");
    }
    assert_eq!(points(&[]).len(), 1, "no axis: one point");
    let grid = Grid { axes, replicas: 5 };
    assert_eq!(grid.task_count(), Some(30));
}

#[test]
fn grid_tasks_have_distinct_reproducible_seeds_and_the_study() {
    let grid = Grid {
        axes: vec![parse_axis("temperature=0.5,1.0").unwrap()],
        replicas: 3,
    };
    let base = json!({"algorithm": "reference", "parameters": {"num_particles": 100, "num_steps": 10},
        "priority": "medium", "study": "t-sweep"});
    let base = base.as_object().unwrap();
    let tasks = grid_tasks(&grid, base, 42, "s");
    assert_eq!(tasks.len(), 6);
    assert_eq!(
        tasks,
        grid_tasks(&grid, base, 42, "s"),
        "the same --seed, the same file"
    );
    assert_ne!(tasks, grid_tasks(&grid, base, 43, "s"));
    let seeds: std::collections::HashSet<u64> = tasks
        .iter()
        .map(|t| t["parameters"]["seed"].as_u64().unwrap())
        .collect();
    assert_eq!(seeds.len(), 6);
    assert_eq!(tasks[0]["task_id"], "s_001");
    assert_eq!(tasks[4]["parameters"]["temperature"], 1.0);
    assert_eq!(tasks[4]["description"], "temperature=1.0, replica 2/3");
    assert!(tasks.iter().all(|t| t["study"] == "t-sweep"));
    let v = Validator::standard();
    assert_eq!(check(&v, &grid, &[], base, &tasks), Ok(()));
}

#[test]
fn out_of_range_values_and_points_are_refused_before_writing() {
    let v = Validator::standard();
    let base = json!({"algorithm": "reference", "parameters": {"num_particles": 13, "num_steps": 10}});
    let base = base.as_object().unwrap();
    let grid = Grid {
        axes: vec![parse_axis("density=0.5,2.0").unwrap()],
        replicas: 1,
    };
    let tasks = grid_tasks(&grid, base, 1, "s");
    let e = check(&v, &grid, &[], base, &tasks).unwrap_err();
    assert!(
        e.starts_with("--grid density: the value 2.0: expected a number from 1e-6 to 1.2"),
        "{e}"
    );
    // each value in range, but a combination is not: N too small at 1.0
    let grid = Grid {
        axes: vec![parse_axis("density=0.5,1.0").unwrap()],
        replicas: 1,
    };
    let tasks = grid_tasks(&grid, base, 1, "s");
    let e = check(&v, &grid, &[], base, &tasks).unwrap_err();
    assert!(e.starts_with("1 of 2 tasks of the grid would be refused"), "{e}");
    assert!(
        e.contains("density=1.0: expected a whole number ≥ 25, found 13"),
        "{e}"
    );
    let sets = [("dt".to_string(), json!(0.5))];
    let e = check(&v, &Grid::default(), &sets, base, &[]).unwrap_err();
    assert!(
        e.starts_with("--set dt=0.5: expected a number from 1e-6 to 0.1"),
        "{e}"
    );
}
