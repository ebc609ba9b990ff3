//! `orquesta sim` and `orquesta bench sim` as a user runs them.

use serde_json::Value;

use crate::common::{run, stderr, stdout};

#[test]
fn sim_prints_the_result_a_worker_would_return() {
    let out = run(&[
        "sim",
        "--particles",
        "100",
        "--steps",
        "50",
        "--seed",
        "123",
        "--algorithm",
        "python",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).expect("JSON on stdout");
    assert_eq!(v["task_id"], "local");
    assert_eq!(v["algorithm"], "python");
    assert_eq!(v["parameters"]["num_particles"], 100);
    assert!(v["execution_time"].as_f64().unwrap() > 0.0);
    let result = &v["result"];
    assert_eq!(result["status"], "completed");
    let m = &result["metrics"];
    assert_eq!(m["particles_processed"], 100);
    assert_eq!(m["steps_completed"], 50);
    assert_eq!(m["kernel"], "reference");
    for field in [
        "potential_energy_initial",
        "kinetic_energy_initial",
        "total_energy_initial",
        "potential_energy_final",
        "kinetic_energy_final",
        "total_energy_final",
        "temperature_final",
        "max_energy_drift",
        "position_checksum",
        "particle_steps_per_second",
        "memory_bytes",
    ] {
        assert!(m[field].is_number(), "{field} missing in {m}");
    }
    assert!(m["memory_used"].as_str().unwrap().ends_with(" MB"));
    assert!(result["output"].as_str().unwrap().contains("completed"));
}

#[test]
fn aliases_and_kernels_print_identical_physics() {
    let physics = |algorithm: &str| {
        let out = run(&[
            "sim",
            "-n",
            "64",
            "-s",
            "20",
            "--seed",
            "0",
            "-a",
            algorithm,
            "--compact",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
        v["result"]["metrics"]["position_checksum"].as_f64().unwrap()
    };
    assert_eq!(physics("cython").to_bits(), physics("optimized").to_bits());
    assert_eq!(physics("python").to_bits(), physics("reference").to_bits());
}

#[test]
fn bad_parameters_exit_2_and_name_the_flag() {
    let out = run(&[
        "sim",
        "--particles",
        "5",
        "--steps",
        "10",
        "--seed",
        "1",
        "--dt",
        "-1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("--dt") && err.contains("from 1e-6 to 0.1, found -1"),
        "{err}"
    );
    assert!(stdout(&out).is_empty());

    let out = run(&[
        "sim",
        "--particles",
        "100",
        "--steps",
        "10",
        "--seed",
        "1",
        "-a",
        "fortran",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown algorithm"), "{}", stderr(&out));

    let out = run(&["sim", "--particles", "many", "--steps", "10", "--seed", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--particles"), "{}", stderr(&out));
}

#[test]
fn bench_sim_prints_a_table() {
    let out = run(&[
        "bench",
        "sim",
        "--sizes",
        "100",
        "--seconds",
        "0.05",
        "--threads",
        "2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("M particle-steps/s"), "{text}");
    let rows: Vec<&str> = text.lines().skip(1).collect();
    // reference on one thread, optimized on one and two
    assert_eq!(rows.len(), 3, "{text}");
    assert!(
        rows.iter().any(|r| r.starts_with("optimized") && r.contains("x")),
        "{text}"
    );
}
