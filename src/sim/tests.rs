//! Correctness tests of the simulation against independent computations,
//! between kernels, across thread counts, and for every validation path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::system::LennardJones;
use super::*;

fn params(n: u64, steps: u64, seed: u64) -> SimParams {
    SimParams {
        num_particles: n,
        num_steps: steps,
        seed,
        ..SimParams::default()
    }
}

fn run(algorithm: &str, p: &SimParams, threads: usize) -> SimReport {
    let options = RunOptions {
        threads,
        limits: Limits::default(),
    };
    simulate(algorithm, p, &options, &Control::new()).expect("valid parameters")
}

fn energy(m: &Metrics) -> (f64, f64, f64) {
    (
        m.potential_energy_initial.unwrap(),
        m.kinetic_energy_initial.unwrap(),
        m.total_energy_final.unwrap(),
    )
}

/// Potential energy per particle of a perfect square lattice, summed here
/// over lattice vectors (m, n) within the cut-off: every site sees the same
/// neighbours, each pair is shared by two sites.
fn lattice_energy_per_particle(density: f64, cutoff: f64) -> f64 {
    let a = 1.0 / density.sqrt();
    let lj = LennardJones::new(cutoff);
    let reach = (cutoff / a).ceil() as i64 + 1;
    let mut sum = 0.0;
    for m in -reach..=reach {
        for n in -reach..=reach {
            if (m, n) != (0, 0) {
                let r = a * ((m * m + n * n) as f64).sqrt();
                sum += lj.energy_at(r);
            }
        }
    }
    0.5 * sum
}

#[test]
fn lattice_potential_energy_matches_an_independent_sum() {
    for n in [16u64, 100, 400, 2500] {
        for algorithm in ["reference", "optimized"] {
            let report = run(algorithm, &params(n, 0, 1), 1);
            let got = report.metrics.potential_energy_initial.unwrap();
            let want = lattice_energy_per_particle(0.5, 2.5);
            assert!((got - want).abs() < 1e-12, "{algorithm} N={n}: {got} vs {want}");
        }
    }
    // a denser lattice and another cut-off, so the test does not only hold
    // for the defaults
    let p = SimParams {
        density: Some(0.8),
        cutoff: Some(3.0),
        ..params(900, 0, 5)
    };
    let got = run("optimized", &p, 1).metrics.potential_energy_initial.unwrap();
    let want = lattice_energy_per_particle(0.8, 3.0);
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
}

#[test]
fn kinetic_energy_at_step_zero_is_normalised() {
    for n in [13u64, 100, 777, 10_000] {
        for algorithm in ["reference", "optimized"] {
            if algorithm == "reference" && n > 1000 {
                continue;
            }
            let p = SimParams {
                temperature: Some(1.7),
                ..params(n, 0, 99)
            };
            let ke = run(algorithm, &p, 1).metrics.kinetic_energy_initial.unwrap();
            let want = (n as f64 - 1.0) / n as f64 * 1.7;
            assert!((ke - want).abs() < 1e-14, "{algorithm} N={n}: {ke} vs {want}");
        }
    }
}

#[test]
fn momentum_stays_zero() {
    let report = run("optimized", &params(1000, 200, 3), 1);
    let (px, py) = report
        .state
        .vel
        .iter()
        .fold((0.0, 0.0), |(x, y), v| (x + v[0], y + v[1]));
    assert!(px.abs() < 1e-10 && py.abs() < 1e-10, "momentum {px} {py}");
}

#[test]
fn energy_is_conserved_at_the_defaults() {
    for n in [400u64, 10_000] {
        let m = run("optimized", &params(n, 1000, 2024), 2).metrics;
        let drift = m.max_energy_drift.unwrap();
        assert!(drift <= 1e-3, "N={n}: drift {drift}");
        assert!(drift > 0.0, "N={n}: a drift of exactly zero means nothing moved");
        assert_eq!(m.steps_completed, 1000);
    }
    let m = run("reference", &params(400, 1000, 2024), 1).metrics;
    assert!(m.max_energy_drift.unwrap() <= 1e-3);
}

#[test]
fn drift_shrinks_with_the_time_step() {
    let drift = |dt: f64, steps: u64| {
        let p = SimParams {
            dt: Some(dt),
            ..params(400, steps, 11)
        };
        run("optimized", &p, 1).metrics.max_energy_drift.unwrap()
    };
    // the same simulated time, 2.5 time units
    let coarse = drift(0.01, 250);
    let fine = drift(0.005, 500);
    let finer = drift(0.0025, 1000);
    assert!(fine < coarse, "{fine} !< {coarse}");
    assert!(finer < fine, "{finer} !< {fine}");
}

#[test]
fn kernels_agree() {
    for n in [16u64, 28, 30, 100, 257, 400, 1000, 1234] {
        let p0 = params(n, 0, n);
        let a = run("reference", &p0, 1).metrics;
        let b = run("optimized", &p0, 2).metrics;
        let (pa, ka, _) = energy(&a);
        let (pb, kb, _) = energy(&b);
        assert!((pa - pb).abs() < 1e-12, "N={n} step 0 potential {pa} vs {pb}");
        assert!((ka - kb).abs() < 1e-12, "N={n} step 0 kinetic {ka} vs {kb}");

        let p100 = params(n, 100, n);
        let a = run("reference", &p100, 1).metrics;
        let b = run("optimized", &p100, 2).metrics;
        let (ea, eb) = (a.total_energy_final.unwrap(), b.total_energy_final.unwrap());
        assert!((ea - eb).abs() < 1e-8, "N={n} after 100 steps: {ea} vs {eb}");
        assert!(
            (a.position_checksum.unwrap() - b.position_checksum.unwrap()).abs() < 1e-6 * n as f64 * n as f64
        );
    }
}

/// The physics fields of a result, as bits: every number of the metrics
/// but timings and memory, the series and its averages included.
pub(super) fn physics_bits(m: &Metrics) -> Vec<u64> {
    let rows = m.thermo.iter().flatten().flat_map(|r| {
        [
            r.step as f64,
            r.temperature,
            r.potential_energy,
            r.kinetic_energy,
            r.total_energy,
            r.pressure,
        ]
    });
    let averages = m.averages.iter().flat_map(|a| {
        [a.temperature, a.pressure, a.potential_energy, a.total_energy]
            .into_iter()
            .flat_map(|s| [s.mean, s.sem.unwrap_or(-1.0)])
    });
    [
        m.potential_energy_initial,
        m.kinetic_energy_initial,
        m.total_energy_initial,
        m.potential_energy_final,
        m.kinetic_energy_final,
        m.total_energy_final,
        m.temperature_final,
        m.max_energy_drift,
        m.position_checksum,
        m.pressure_initial,
        m.pressure_final,
    ]
    .iter()
    .map(|v| v.unwrap().to_bits())
    .chain(rows.chain(averages).map(f64::to_bits))
    .chain([
        m.particles_processed,
        m.steps_completed,
        m.thermo.as_ref().map_or(0, |t| t.len() as u64),
    ])
    .collect()
}

#[test]
fn same_inputs_give_the_same_bits() {
    for algorithm in ["reference", "optimized"] {
        let p = params(300, 300, u64::MAX);
        let a = run(algorithm, &p, 1);
        let b = run(algorithm, &p, 1);
        assert_eq!(physics_bits(&a.metrics), physics_bits(&b.metrics));
        assert_eq!(a.state, b.state);
    }
}

#[test]
fn thread_count_never_changes_a_bit() {
    // large enough for the optimized kernel to use its threads and rebuild
    // its lists many times
    let p = SimParams {
        thermo_every: Some(10),
        ..params(20_000, 60, 0)
    };
    let one = run("optimized", &p, 1);
    let two = run("optimized", &p, 2);
    let three = run("optimized", &p, 3);
    assert_eq!(physics_bits(&one.metrics), physics_bits(&two.metrics));
    assert_eq!(physics_bits(&one.metrics), physics_bits(&three.metrics));
    assert_eq!(one.state, two.state);
}

#[test]
fn seeds_change_the_trajectory() {
    let a = run("optimized", &params(100, 10, 0), 1).metrics;
    let b = run("optimized", &params(100, 10, 1), 1).metrics;
    assert_ne!(a.position_checksum, b.position_checksum);
}

#[test]
fn zero_steps_reports_the_initial_state() {
    let m = run("optimized", &params(100, 0, 5), 1).metrics;
    assert_eq!(m.steps_completed, 0);
    assert_eq!(m.max_energy_drift, Some(0.0));
    assert_eq!(m.total_energy_initial, m.total_energy_final);
    assert!(m.memory_bytes > 0);
    assert!(m.memory_used.ends_with(" MB"));
}

#[test]
fn results_are_reported_in_original_order() {
    // after sorting by cell, the optimized kernel must still report particle
    // i as particle i: with zero steps the state is the lattice itself
    let report = run("optimized", &params(1000, 0, 5), 1);
    let initial = State::initial(&report_physics(1000), 5);
    assert_eq!(report.state.pos, initial.pos);
    assert_eq!(report.state.vel, initial.vel);
}

fn report_physics(n: usize) -> Physics {
    params(n as u64, 0, 0)
        .validate(lookup("optimized").unwrap(), &Limits::default())
        .unwrap()
}

#[test]
fn a_preset_cancel_stops_after_step_zero() {
    let control = Control::new();
    control.cancel();
    for algorithm in ["reference", "optimized"] {
        let report = simulate(algorithm, &params(100, 1000, 1), &RunOptions::default(), &control).unwrap();
        assert_eq!(report.status, SimStatus::Cancelled);
        assert_eq!(report.metrics.steps_completed, 0);
        assert!(report.output().contains("cancelled"));
    }
}

#[test]
fn cancel_from_another_thread_stops_promptly_and_progress_is_visible() {
    for algorithm in ["optimized", "reference"] {
        let control = Arc::new(Control::new());
        let n = if algorithm == "reference" { 2_000 } else { 50_000 };
        let p = params(n, 1_000_000, 1);
        let options = RunOptions {
            threads: 2,
            limits: Limits {
                max_pair_evaluations: f64::INFINITY,
                ..Limits::default()
            },
        };
        let runner = {
            let control = Arc::clone(&control);
            std::thread::spawn(move || simulate(algorithm, &p, &options, &control).unwrap())
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while control.steps_done() < 3 {
            assert!(Instant::now() < deadline, "{algorithm}: no progress");
            std::thread::sleep(Duration::from_millis(5));
        }
        let asked = Instant::now();
        control.cancel();
        let report = runner.join().unwrap();
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "{algorithm}: slow to stop"
        );
        assert_eq!(report.status, SimStatus::Cancelled);
        assert!(report.metrics.steps_completed >= 3);
        assert!(report.metrics.steps_completed < 1_000_000);
    }
}

#[test]
fn an_exploding_system_fails_cleanly() {
    // the densest start with the longest time step: particles collide hard
    // enough for the energy to overflow within a few steps
    let p = SimParams {
        density: Some(system::DENSITY_RANGE.max),
        dt: Some(system::DT_RANGE.max),
        ..params(2000, 100, 1)
    };
    let report = run("optimized", &p, 1);
    match &report.status {
        SimStatus::Failed(reason) => assert!(reason.starts_with(UNSTABLE), "{reason}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    // nothing non-finite reaches the metrics
    let json = serde_json::to_string(&report.metrics).unwrap();
    assert!(
        !json.contains("null") && !json.contains("NaN") && !json.contains("inf"),
        "{json}"
    );
}

/// The status and reason of a run of `algorithm`.
fn outcome(algorithm: &str, p: &SimParams) -> (SimStatus, Metrics) {
    let report = run(algorithm, p, 1);
    (report.status, report.metrics)
}

#[test]
fn runs_that_do_not_conserve_energy_fail_with_every_kernel() {
    // the longest accepted time step, at the default and at the hottest
    // temperature, and the defaults' dt at the hottest: each of these used
    // to end "completed" with E/N up to 1e26
    let cases = [
        (system::DT_RANGE.max, system::DEFAULT_TEMPERATURE),
        (system::DT_RANGE.max, system::TEMPERATURE_RANGE.max),
        (system::DEFAULT_DT, system::TEMPERATURE_RANGE.max),
        (0.05, system::DEFAULT_TEMPERATURE),
    ];
    for (dt, temperature) in cases {
        let p = SimParams {
            dt: Some(dt),
            temperature: Some(temperature),
            ..params(400, 500, 3)
        };
        let mut steps = Vec::new();
        for algorithm in ["reference", "optimized", "python", "cython"] {
            let (status, m) = outcome(algorithm, &p);
            match &status {
                SimStatus::Failed(reason) => {
                    assert!(
                        reason.starts_with(UNSTABLE),
                        "{algorithm} dt {dt} T {temperature}: {reason}"
                    );
                    assert!(reason.contains("E/N went from"), "{reason}");
                }
                other => panic!("{algorithm} dt {dt} T {temperature}: expected unstable, got {other:?}"),
            }
            assert!(m.steps_completed < 500);
            steps.push(m.steps_completed);
        }
        // every kernel stops at the same step
        assert!(
            steps.iter().all(|s| *s == steps[0]),
            "dt {dt} T {temperature}: {steps:?}"
        );
    }
}

#[test]
fn the_seeds_normal_tasks_never_trip_the_drift_bound() {
    // the seed's sizes and lengths at the defaults, over many seeds: each
    // completes with its drift at most a tenth of the bound
    let check = |algorithm: &str, n: u64, steps: u64, seed: u64| {
        let (status, m) = outcome(algorithm, &params(n, steps, seed));
        assert_eq!(status, SimStatus::Completed, "{algorithm} N={n} seed {seed}");
        let bound = kernel::drift_bound(
            m.potential_energy_initial.unwrap(),
            m.kinetic_energy_initial.unwrap(),
        );
        let drift = m.max_energy_drift.unwrap();
        assert!(
            drift < bound / 10.0,
            "{algorithm} N={n} seed {seed}: drift {drift}, bound {bound}"
        );
    };
    for seed in 0..12 {
        for (n, steps) in [(100, 2000), (250, 100), (500, 1000), (1000, 2000)] {
            check("optimized", n, steps, seed * 7919 + n);
        }
    }
    for seed in 0..3 {
        check("reference", 100, 2000, seed);
        check("reference", 400, 500, seed);
    }
}

#[test]
fn a_dense_or_hot_but_sane_run_is_not_called_unstable() {
    // the densest accepted start and a hot one, at a time step that
    // integrates them: energy moves, but far less than the bound
    for (density, temperature) in [(system::DENSITY_RANGE.max, 5.0), (0.8, 20.0), (1e-6, 100.0)] {
        let p = SimParams {
            density: Some(density),
            temperature: Some(temperature),
            dt: Some(0.001),
            ..params(400, 1000, 5)
        };
        for algorithm in ["reference", "optimized"] {
            let (status, _) = outcome(algorithm, &p);
            assert_eq!(
                status,
                SimStatus::Completed,
                "{algorithm} ρ {density} T {temperature}"
            );
        }
    }
}

#[test]
fn the_drift_bound_is_a_floor_or_half_the_energy_scale() {
    assert_eq!(kernel::drift_bound(-1.0, 1.0), 1.0);
    assert_eq!(kernel::drift_bound(-3.0, 1.0), 2.0);
    assert_eq!(kernel::drift_bound(400.0, 100.0), 250.0);
    // a start that is not finite stops the run on its own (the energies
    // are checked first); its bound is still a number
    assert_eq!(kernel::drift_bound(f64::NAN, 1.0), 1.0);
}

#[test]
fn extreme_but_accepted_parameters_run_in_little_memory() {
    // the lowest density with a handful of particles: a box of 10⁴ σ whose
    // cells of the cut-off's width would be 1.3e7; the grid is capped, the
    // estimate says so, and the run completes
    for density in [system::DENSITY_RANGE.min, 1e-3, 0.01] {
        let p = SimParams {
            density: Some(density),
            ..params(100, 20, 1)
        };
        let physics = p.physics(&Limits::default()).unwrap();
        let estimate = lookup("optimized").unwrap().estimate(&physics, 20);
        assert!(
            estimate.memory_bytes < 1e6,
            "ρ {density}: {}",
            estimate.memory_bytes
        );
        let (status, m) = outcome("cython", &p);
        assert_eq!(status, SimStatus::Completed, "ρ {density}");
        assert!(m.memory_bytes < 1_000_000);
    }
}

fn errors_of(p: &SimParams, algorithm: &str, limits: &Limits) -> Vec<ParamError> {
    p.validate(lookup(algorithm).unwrap(), limits).unwrap_err()
}

#[test]
fn every_validation_error_names_its_field() {
    let limits = Limits::default();
    let cases: Vec<(SimParams, &str, &str)> = vec![
        (params(0, 10, 1), "num_particles", "≥ 2"),
        (params(1, 10, 1), "num_particles", "≥ 2"),
        (params(12, 10, 1), "num_particles", "≥ 13"),
        (params(3_000_000, 1, 1), "num_particles", "limit"),
        (
            SimParams {
                density: Some(0.0),
                ..params(100, 1, 1)
            },
            "density",
            "expected a number from 1e-6 to 1.2, found",
        ),
        (
            SimParams {
                density: Some(-1.0),
                ..params(100, 1, 1)
            },
            "density",
            "expected a number from 1e-6 to 1.2, found",
        ),
        (
            SimParams {
                density: Some(f64::NAN),
                ..params(100, 1, 1)
            },
            "density",
            "expected a finite number from 1e-6 to 1.2, found NaN",
        ),
        (
            SimParams {
                dt: Some(0.0),
                ..params(100, 1, 1)
            },
            "dt",
            "expected a number from 1e-6 to 0.1, found 0",
        ),
        (
            SimParams {
                dt: Some(f64::INFINITY),
                ..params(100, 1, 1)
            },
            "dt",
            "expected a finite number from 1e-6 to 0.1, found inf",
        ),
        (
            SimParams {
                cutoff: Some(-2.5),
                ..params(100, 1, 1)
            },
            "cutoff",
            "expected a number from 1 to 10, found -2.5",
        ),
        (
            SimParams {
                temperature: Some(-1.0),
                ..params(100, 1, 1)
            },
            "temperature",
            "expected a number from 0 to 100, found -1",
        ),
        (
            SimParams {
                temperature: Some(f64::NAN),
                ..params(100, 1, 1)
            },
            "temperature",
            "expected a finite number from 0 to 100, found NaN",
        ),
        (params(1_000_000, 1_000_000, 1), "num_steps", "split the run"),
        (
            SimParams {
                cutoff: Some(10.0),
                ..params(100, 1, 1)
            },
            "num_particles",
            "smaller than 2 × cutoff",
        ),
    ];
    for (p, field, phrase) in cases {
        let errors = errors_of(&p, "optimized", &limits);
        assert!(
            errors
                .iter()
                .any(|e| e.field == field && e.message.contains(phrase)),
            "{p:?}: expected {field} / {phrase:?} in {errors:?}"
        );
    }
    // reference pays N² per step: a size optimized accepts, reference refuses
    let big = params(200_000, 100, 1);
    assert!(big.validate(lookup("optimized").unwrap(), &limits).is_ok());
    let errors = errors_of(&big, "reference", &limits);
    assert!(errors[0].message.contains("pair evaluations"), "{errors:?}");
    // a memory limit
    let tight = Limits {
        max_memory_bytes: 1e6,
        ..limits
    };
    let errors = errors_of(&params(100_000, 1, 1), "optimized", &tight);
    assert!(errors[0].message.contains("MB"), "{errors:?}");
}

#[test]
fn every_problem_is_listed_not_just_the_first() {
    let p = SimParams {
        density: Some(-1.0),
        dt: Some(f64::NAN),
        cutoff: Some(0.0),
        temperature: Some(-3.0),
        ..params(100, 1, 1)
    };
    let errors = errors_of(&p, "optimized", &Limits::default());
    let fields: Vec<_> = errors.iter().map(|e| e.field).collect();
    assert_eq!(fields, ["density", "dt", "cutoff", "temperature"]);
}

#[test]
fn unknown_algorithms_are_refused_with_the_known_ones() {
    let err = simulate(
        "fortran",
        &params(100, 1, 1),
        &RunOptions::default(),
        &Control::new(),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("fortran") && text.contains("optimized") && text.contains("cython"),
        "{text}"
    );
}

#[test]
fn a_thermo_series_that_could_never_fit_max_result_bytes_is_refused_with_the_fix() {
    let tight = Limits {
        max_result_bytes: Some(100_000),
        ..Limits::default()
    };
    let series = |every: u64| SimParams {
        thermo_every: Some(every),
        ..params(100, 5_000, 1)
    };
    // 5,001 rows are at least 5,001 × ~95 bytes: more than 100 kB
    let errors = errors_of(&series(1), "optimized", &tight);
    assert_eq!(errors.len(), 1, "{errors:?}");
    let said = &errors[0];
    assert_eq!(said.field, "thermo_every");
    assert!(
        said.message.contains("5001 rows") && said.message.contains("MAX_RESULT_BYTES = 100000"),
        "{said}"
    );
    // the least thermo_every it names is accepted, the one below is not
    let least: u64 = said
        .message
        .split("thermo_every ≥ ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no fix named: {said}"));
    assert!(series(least)
        .validate(lookup("optimized").unwrap(), &tight)
        .is_ok());
    assert!(series(least - 1)
        .validate(lookup("optimized").unwrap(), &tight)
        .is_err());
    // the bound is a floor: a real series is longer than it
    let mut p = series(1);
    p.num_steps = 20;
    let report = run("optimized", &p, 1);
    let real = serde_json::to_string(&report.metrics.thermo).unwrap().len() as u64;
    assert!(real > crate::sim::thermo_least_bytes(21), "{real}");
    // no limit (a worker), or the default 16 MiB: the series is not refused
    assert!(series(1)
        .validate(lookup("optimized").unwrap(), &Limits::default())
        .is_ok());
    let default = Limits {
        max_result_bytes: Some(16 << 20),
        ..Limits::default()
    };
    assert!(series(1).validate(lookup("optimized").unwrap(), &default).is_ok());
}
