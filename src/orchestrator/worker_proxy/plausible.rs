//! Results that cannot be true of their task: a completed simulation's
//! counts must match its parameters (a resumed run reports the whole
//! task's totals), its energies must be finite and add up. A worker that
//! returns one fails the attempt and is marked suspect.

use serde_json::Value;

use super::OutcomeKind;
use crate::model::{RunStatus, TaskResult};
use crate::sim::resolve_kernel;

/// Fails an attempt whose completed simulation result cannot be true of
/// its task (see [`implausible_metrics`]); any other outcome passes as it
/// is. The second value is the reason, to mark the worker suspect with.
pub fn plausible(kind: OutcomeKind) -> (OutcomeKind, Option<String>) {
    let OutcomeKind::Result(result) = &kind else {
        return (kind, None);
    };
    match implausible_metrics(result) {
        None => (kind, None),
        Some(why) => {
            let reason = format!("the worker returned {why}; the result was not stored");
            (OutcomeKind::Failed(reason.clone()), Some(reason))
        }
    }
}

/// What is impossible in a completed simulation's `metrics`, given the
/// `parameters` the result echoes (TaskQueue checks that they are the
/// task's own), or `None`. What the kernels emit (`sim::measure`): for a
/// completed run, `particles_processed` is the task's `num_particles` and
/// `steps_completed` its `num_steps` — the whole task's, also when the
/// run resumed from a checkpoint; every energy is a finite number (a
/// non-finite one is left out, and a run that goes non-finite fails, so
/// it never completes); kinetic energy, temperature, the largest drift
/// and the speed are ≥ 0; a total is its potential plus its kinetic
/// energy. Test kernels (`__sleep`, …) report no metrics and are not
/// checked; nor are failed or cancelled runs, which are not recorded.
pub fn implausible_metrics(result: &TaskResult) -> Option<String> {
    if result.result.status != RunStatus::Completed {
        return None;
    }
    match resolve_kernel(&result.algorithm) {
        Some(k) if !k.as_str().starts_with("__") => {}
        _ => return None,
    }
    let m = match &result.result.metrics {
        Value::Object(m) => m,
        other => return Some(format!("metrics that are not an object ({other})")),
    };
    let param = |name: &str| result.parameters.get(name).and_then(whole);
    let (Some(particles), Some(steps)) = (param("num_particles"), param("num_steps")) else {
        // TaskQueue refuses a result whose parameters are not the task's
        return None;
    };
    for (field, expected, what) in [
        ("particles_processed", particles, "num_particles"),
        ("steps_completed", steps, "num_steps"),
    ] {
        match m.get(field) {
            Some(v) if v.as_u64() == Some(expected) || whole(v) == Some(expected) => {}
            Some(v) => {
                return Some(format!(
                    "metrics.{field} = {v} for a completed task of {what} = {expected} \
                     (expected {expected}: a completed run, resumed or not, reports the whole task's)"
                ))
            }
            None => return Some(format!("no metrics.{field}: expected {expected} ({what})")),
        }
    }
    let number = |field: &str| -> Result<Option<f64>, String> {
        match m.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite())
                .map(Some)
                .ok_or_else(|| format!("metrics.{field} = {v}: expected a finite number")),
        }
    };
    let mut read = std::collections::HashMap::new();
    for field in ENERGY_FIELDS.iter().chain(NON_NEGATIVE_FIELDS) {
        match number(field) {
            Ok(Some(x)) => {
                read.insert(*field, x);
            }
            Ok(None) => {}
            Err(why) => return Some(why),
        }
    }
    for field in NON_NEGATIVE_FIELDS {
        if let Some(x) = read.get(field).filter(|x| **x < 0.0) {
            return Some(format!("metrics.{field} = {x}: expected a number ≥ 0"));
        }
    }
    for (total, potential, kinetic) in [
        (
            "total_energy_initial",
            "potential_energy_initial",
            "kinetic_energy_initial",
        ),
        (
            "total_energy_final",
            "potential_energy_final",
            "kinetic_energy_final",
        ),
    ] {
        let (Some(t), Some(p), Some(k)) = (read.get(total), read.get(potential), read.get(kinetic)) else {
            continue;
        };
        // the kernels divide the sum by N, not each term: allow rounding
        if (t - (p + k)).abs() > 1e-9 * (p.abs() + k.abs()) + 1e-300 {
            return Some(format!(
                "metrics.{total} = {t}: expected {potential} + {kinetic} = {}",
                p + k
            ));
        }
    }
    if let Some(rows) = m.get("thermo").and_then(Value::as_array) {
        for row in rows {
            let step = row.get("step").and_then(whole);
            if step.is_none_or(|s| s > steps) {
                return Some(format!(
                    "a metrics.thermo row {row}: expected a step from 0 to num_steps = {steps}"
                ));
            }
            for field in ["temperature", "kinetic_energy"] {
                if row.get(field).and_then(Value::as_f64).is_none_or(|x| x < 0.0) {
                    return Some(format!("a metrics.thermo row {row}: expected a {field} ≥ 0"));
                }
            }
        }
    }
    None
}

/// The energies of `metrics` (per particle, any sign).
const ENERGY_FIELDS: [&str; 6] = [
    "potential_energy_initial",
    "total_energy_initial",
    "potential_energy_final",
    "total_energy_final",
    "pressure_initial",
    "pressure_final",
];

/// The figures of `metrics` that cannot be negative.
const NON_NEGATIVE_FIELDS: &[&str] = &[
    "kinetic_energy_initial",
    "kinetic_energy_final",
    "temperature_final",
    "max_energy_drift",
    "particle_steps_per_second",
];

/// A whole number ≥ 0 as JSON may write it (`16` or `16.0`).
fn whole(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..9.007_199_254_740_992e15).contains(f))
            .map(|f| f as u64)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// What a worker returns for `algorithm` on these parameters, run
    /// here at width `w` (resumed from a checkpoint after step `resume_at`
    /// if given), through the worker's own path to JSON and back.
    fn honest(
        algorithm: &str,
        params: &crate::sim::SimParams,
        w: crate::sim::simd::Width,
        resume_at: Option<u64>,
    ) -> TaskResult {
        use crate::sim::{simd, simulate_with, Checkpointing, Control, RunOptions};
        let options = RunOptions {
            threads: 2,
            ..RunOptions::default()
        };
        let report = simd::with_width(w, || {
            let resume = resume_at.map(|at| {
                let saved = std::sync::Mutex::new(Vec::new());
                let checkpointing = Checkpointing {
                    resume: None,
                    sink: Some(Box::new(|c| saved.lock().unwrap().push(c.encode()))),
                    at_step: Some(at),
                };
                simulate_with(algorithm, params, &options, &Control::new(), checkpointing).unwrap();
                saved.into_inner().unwrap().pop().expect("a checkpoint was saved")
            });
            let checkpointing = Checkpointing {
                resume: resume.as_deref(),
                ..Checkpointing::default()
            };
            simulate_with(algorithm, params, &options, &Control::new(), checkpointing).unwrap()
        });
        assert_eq!(report.resumed_from_step, resume_at, "{algorithm}");
        let mut parameters = json!({"num_particles": params.num_particles,
            "num_steps": params.num_steps, "seed": params.seed});
        if let Some(every) = params.thermo_every {
            parameters["thermo_every"] = json!(every);
        }
        let id = crate::model::TaskId::parse("t").unwrap();
        let r = TaskResult::from_report(&id, algorithm, parameters, &report);
        serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap()
    }

    #[test]
    fn honest_results_of_every_kernel_width_and_resume_are_plausible() {
        use crate::sim::{simd::Width, SimParams};
        for algorithm in ["python", "cython", "reference", "optimized"] {
            for w in Width::supported() {
                let cases = [
                    (16, 20, None, None),
                    (16, 0, None, None),
                    (50, 12, Some(5), None),
                    (2, 6, Some(1), Some(0.05)),
                ];
                for (n, steps, thermo_every, density) in cases {
                    let p = SimParams {
                        num_particles: n,
                        num_steps: steps,
                        seed: 7,
                        thermo_every,
                        density,
                        ..SimParams::default()
                    };
                    let r = honest(algorithm, &p, w, None);
                    assert_eq!(r.result.status, RunStatus::Completed);
                    assert_eq!(
                        implausible_metrics(&r),
                        None,
                        "{algorithm} at {w}: {:?}",
                        r.result.metrics
                    );
                    if steps > 4 {
                        // a resumed run reports the whole task's totals
                        let resumed = honest(algorithm, &p, w, Some(steps / 2));
                        assert_eq!(implausible_metrics(&resumed), None, "{algorithm} resumed at {w}");
                    }
                }
            }
        }
        // the test kernels report no metrics at all
        let sleep = json!({"task_id": "a", "algorithm": "__sleep", "parameters": {"seconds": 0.1},
            "execution_time": 0.1, "result": {"status": "completed", "metrics": {}, "output": ""},
            "attempt_id": 1});
        let sleep: TaskResult = serde_json::from_value(sleep).unwrap();
        assert_eq!(implausible_metrics(&sleep), None);
    }

    #[test]
    fn impossible_metrics_fail_the_attempt_naming_field_value_and_expectation() {
        use crate::sim::{simd::Width, SimParams};
        let p = SimParams {
            num_particles: 16,
            num_steps: 10,
            seed: 1,
            thermo_every: Some(5),
            ..SimParams::default()
        };
        let base = honest("reference", &p, Width::Base, None);
        let lie = |field: &str, value: Value| {
            let mut r = base.clone();
            match field.split_once('/') {
                Some((row, f)) => r.result.metrics["thermo"][row.parse::<usize>().unwrap()][f] = value,
                None if value.is_null() && field.starts_with('-') => {
                    r.result.metrics.as_object_mut().unwrap().remove(&field[1..]);
                }
                None => r.result.metrics[field] = value,
            }
            implausible_metrics(&r).unwrap_or_else(|| panic!("{field} accepted"))
        };
        let why = lie("particles_processed", json!(1));
        assert!(
            why.contains("metrics.particles_processed = 1") && why.contains("num_particles = 16"),
            "{why}"
        );
        assert!(lie("steps_completed", json!(9)).contains("num_steps = 10"));
        assert!(lie("steps_completed", json!(11)).contains("steps_completed = 11"));
        assert!(lie("-particles_processed", Value::Null).contains("no metrics.particles_processed"));
        assert!(lie("kinetic_energy_final", json!(-0.5))
            .contains("kinetic_energy_final = -0.5: expected a number ≥ 0"));
        assert!(lie("temperature_final", json!(-1.0)).contains("temperature_final"));
        assert!(lie("max_energy_drift", json!(-1e-9)).contains("max_energy_drift"));
        // serde writes a NaN as null; some write it as a string
        assert!(lie("potential_energy_final", Value::Null).contains("expected a finite number"));
        assert!(lie("total_energy_initial", json!("NaN")).contains("expected a finite number"));
        assert!(
            lie("total_energy_final", json!(123.0)).contains("potential_energy_final + kinetic_energy_final")
        );
        assert!(lie("1/temperature", json!(-2.0)).contains("thermo row"));
        assert!(lie("0/step", json!(11)).contains("num_steps = 10"));
        let mut not_an_object = base.clone();
        not_an_object.result.metrics = json!([]);
        assert!(implausible_metrics(&not_an_object).is_some());
        // a run that did not complete is not recorded, so not checked
        let mut failed = base.clone();
        failed.result.status = RunStatus::Failed;
        failed.result.metrics["particles_processed"] = json!(1);
        assert_eq!(implausible_metrics(&failed), None);
        // through plausible(): the attempt fails with the reason, which is
        // also the worker's suspicion
        let mut forged = base.clone();
        forged.result.metrics["particles_processed"] = json!(1);
        match plausible(OutcomeKind::Result(Box::new(forged))) {
            (OutcomeKind::Failed(m), Some(why)) => {
                assert_eq!(m, why);
                assert!(
                    m.starts_with("the worker returned metrics.particles_processed = 1"),
                    "{m}"
                );
                assert!(m.ends_with("the result was not stored"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            plausible(OutcomeKind::Result(Box::new(base))),
            (OutcomeKind::Result(_), None)
        ));
        assert!(matches!(
            plausible(OutcomeKind::Lost("x".into())),
            (OutcomeKind::Lost(_), None)
        ));
    }
}
