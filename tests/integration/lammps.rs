//! LAMMPS (Debian's `lammps`, binary `lmp`) on tests/lammps/in.lj2d still
//! gives the step-0 values kept in tests/lammps/reference.json, which the
//! simulation's unit tests compare the kernels with (src/sim/lammps_tests.rs);
//! and `orquesta sim` of the same lattice gives LAMMPS's pressure.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common::{run, stderr, stdout};
use crate::probes::missing_tool;

/// The first thermo row LAMMPS prints (step temp pe ke etotal press).
fn first_row(screen: &str) -> Vec<f64> {
    let mut lines = screen
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("Step Temp"));
    lines.next();
    let row = lines.next().expect("a thermo row after the header");
    row.split_whitespace().map(|w| w.parse().unwrap()).collect()
}

#[test]
fn lammps_still_gives_the_kept_step_zero_values_and_orquesta_agrees() {
    if Command::new("lmp").arg("-h").output().is_err() {
        missing_tool(
            "lammps_still_gives_the_kept_step_zero_values_and_orquesta_agrees",
            "LAMMPS (apt-get install lammps: the command lmp)",
        );
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lammps");
    let reference: Value =
        serde_json::from_slice(&std::fs::read(root.join("reference.json")).unwrap()).unwrap();
    let work = tempfile::tempdir().unwrap();
    for kept in reference["step0"].as_array().unwrap() {
        let side = kept["side"].as_u64().unwrap();
        let out = Command::new("lmp")
            .args(["-in", root.join("in.lj2d").to_str().unwrap()])
            .args([
                "-var",
                "side",
                &side.to_string(),
                "-var",
                "seed",
                "87287",
                "-var",
                "steps",
                "0",
            ])
            .args(["-log", "none"])
            .env("OMP_NUM_THREADS", "1")
            .current_dir(work.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let row = first_row(&String::from_utf8_lossy(&out.stdout));
        let names = [
            "temperature",
            "potential_energy",
            "kinetic_energy",
            "total_energy",
            "pressure",
        ];
        for (name, got) in names.iter().zip(&row[1..]) {
            let want = kept[name].as_f64().unwrap();
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                "side {side} {name}: LAMMPS now says {got}, reference.json {want}; \
                 run python3 tests/lammps/reference.py"
            );
        }
        // the same lattice here: the same potential energy and pressure
        let n = (side * side).to_string();
        let sim = run(&["sim", "-n", &n, "-s", "0", "--seed", "5", "--compact"]);
        assert!(sim.status.success(), "{}", stderr(&sim));
        let v: Value = serde_json::from_str(&stdout(&sim)).unwrap();
        let m = &v["result"]["metrics"];
        for (ours, theirs) in [("potential_energy_initial", row[2]), ("pressure_initial", row[5])] {
            let got = m[ours].as_f64().unwrap();
            assert!(
                (got - theirs).abs() < 1e-12,
                "side {side} {ours}: {got} vs LAMMPS {theirs}"
            );
        }
    }
}
