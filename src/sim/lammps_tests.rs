//! The kernels against LAMMPS on the same system: the values LAMMPS gave
//! for tests/lammps/in.lj2d, kept in tests/lammps/reference.json (written by
//! tests/lammps/reference.py; tests/integration/lammps.rs checks that the
//! installed LAMMPS still gives them). Step 0 compares to rounding (same
//! lattice, same temperature normalisation); the relaxed state, reached from
//! LAMMPS's own random velocities, within the spread over seeds.

use serde_json::Value;

use super::*;

fn reference() -> Value {
    serde_json::from_str(include_str!("../../tests/lammps/reference.json")).expect("reference.json is JSON")
}

fn run(algorithm: &str, p: &SimParams) -> Metrics {
    let options = RunOptions {
        threads: 2,
        limits: Limits::default(),
    };
    let report = simulate(algorithm, p, &options, &Control::new()).expect("valid parameters");
    assert_eq!(report.status, SimStatus::Completed);
    report.metrics
}

/// LAMMPS's `press` split as N_f·T/(2A) + W/(2A): the virial part, which
/// depends on the positions only.
fn virial_part(pressure: f64, temperature: f64, n: f64) -> f64 {
    let area = n / system::DEFAULT_DENSITY;
    pressure - (2.0 * n - 2.0) * temperature / (2.0 * area)
}

#[test]
fn step_zero_energy_and_pressure_equal_lammps() {
    for lammps in reference()["step0"].as_array().unwrap() {
        let side = lammps["side"].as_u64().unwrap();
        let n = side * side;
        let f = |k: &str| lammps[k].as_f64().unwrap();
        for algorithm in ["reference", "optimized"] {
            let m = run(
                algorithm,
                &SimParams {
                    num_particles: n,
                    num_steps: 0,
                    seed: 1,
                    ..SimParams::default()
                },
            );
            let pe = m.potential_energy_initial.unwrap();
            assert!(
                (pe - f("potential_energy")).abs() < 1e-12,
                "{algorithm} N={n}: {pe}"
            );
            // the kinetic part depends on the velocities, which differ:
            // the virial part is the lattice's alone
            let t = system::temperature_of(m.kinetic_energy_initial.unwrap() * n as f64, n as usize);
            let ours = virial_part(m.pressure_initial.unwrap(), t, n as f64);
            let theirs = virial_part(f("pressure"), f("temperature"), n as f64);
            assert!(
                (ours - theirs).abs() < 1e-12,
                "{algorithm} N={n}: virial part {ours} vs LAMMPS {theirs}"
            );
            // and at the same temperature normalisation (T0 = 1 both), the
            // whole pressure
            let p = m.pressure_initial.unwrap();
            assert!(
                (p - f("pressure")).abs() < 1e-12,
                "{algorithm} N={n}: {p} vs {}",
                f("pressure")
            );
        }
    }
}

/// Mean and standard error over replicas.
fn mean_sem(values: &[f64]) -> (f64, f64) {
    let s = MeanSem::of(values.iter().copied()).unwrap();
    (s.mean, s.sem.unwrap())
}

/// One observable of the averages, read off them.
type Observable = fn(&Averages) -> f64;

#[test]
fn the_relaxed_state_matches_lammps_within_the_spread_over_seeds() {
    let relaxed = &reference()["relaxed"];
    let side = relaxed["side"].as_u64().unwrap();
    let steps = relaxed["steps"].as_u64().unwrap();
    let every = relaxed["thermo_every"].as_u64().unwrap();
    let seeds = relaxed["per_seed"].as_array().unwrap();
    let mut ours: Vec<Averages> = Vec::new();
    for seed in 0..seeds.len() as u64 {
        let m = run(
            "optimized",
            &SimParams {
                num_particles: side * side,
                num_steps: steps,
                seed,
                thermo_every: Some(every),
                ..SimParams::default()
            },
        );
        let rows = m.thermo.as_ref().unwrap();
        assert_eq!(rows.len() as u64, steps / every + 1);
        // the same rows LAMMPS's means are over
        assert_eq!(
            rows.iter().filter(|r| 2 * r.step >= steps).count() as u64,
            seeds[0]["rows"].as_u64().unwrap()
        );
        ours.push(m.averages.unwrap());
    }
    let observables: [(&str, Observable); 4] = [
        ("temperature", |a| a.temperature.mean),
        ("pressure", |a| a.pressure.mean),
        ("potential_energy", |a| a.potential_energy.mean),
        ("total_energy", |a| a.total_energy.mean),
    ];
    for (name, of) in observables {
        let (mo, so) = mean_sem(&ours.iter().map(of).collect::<Vec<_>>());
        let theirs: Vec<f64> = seeds.iter().map(|s| s[name].as_f64().unwrap()).collect();
        let (ml, sl) = mean_sem(&theirs);
        let spread = (so * so + sl * sl).sqrt();
        eprintln!("{name}: orquesta {mo:.5} ± {so:.5}, LAMMPS {ml:.5} ± {sl:.5}");
        assert!(
            (mo - ml).abs() <= 4.0 * spread,
            "{name}: orquesta {mo} ± {so} against LAMMPS {ml} ± {sl}"
        );
    }
}

#[test]
fn averages_and_sem_follow_their_definition() {
    let row = |step: u64, pressure: f64| ThermoRow {
        step,
        temperature: 1.0,
        potential_energy: -1.0,
        kinetic_energy: 1.0,
        total_energy: 0.0,
        pressure,
    };
    // 10 steps, rows every 2: the second half is steps 6, 8 and 10 (5 is
    // the middle: 2·step ≥ 10)
    let rows: Vec<ThermoRow> = (0..=5).map(|k| row(2 * k, k as f64)).collect();
    let a = Averages::of(&rows, 10).unwrap();
    assert_eq!(a.pressure.mean, 4.0);
    // values 3, 4, 5: sample sd 1, over √3
    assert_eq!(a.pressure.sem, Some(1.0 / 3f64.sqrt()));
    assert_eq!(a.temperature.sem, Some(0.0));
    // one row in the second half: a mean, no sem (never NaN)
    let a = Averages::of(&rows[..1], 0).unwrap();
    assert_eq!(a.pressure, MeanSem { mean: 0.0, sem: None });
    let json = serde_json::to_string(&a).unwrap();
    assert!(!json.contains("sem") && !json.contains("null"), "{json}");
    // no row there at all: no averages
    assert!(Averages::of(&rows[..2], 10).is_none());
}
