//! What a worker's answers mean, as plain functions of the answer (no
//! actor, no I/O), so each is unit-tested: is this result acceptable,
//! did a request reach the worker, which kernels and capacity to agree on.

use std::time::Duration;

use serde_json::Value;

use super::OutcomeKind;
use crate::model::{AttemptId, KernelName, RunStatus, TaskResult};
use crate::orchestrator::config::WorkerEntry;
use crate::protocol::{ErrorBody, ExecuteAnswer, StatusAnswer};
use crate::sim::resolve_kernel;

/// Checks what a worker returned for an attempt; a worker that lies
/// (garbage, another task's id, another attempt's id or none, a status
/// that does not exist, a negative or non-finite time) fails the attempt.
/// The attempt id is the one this orchestrator issued (sent with the
/// attempt, or recorded before a restart for an adopted one): a result
/// without it is a run nobody here asked for (a hand-made `/execute`), and
/// is never recorded. Whether the result is for the stored task's algorithm
/// and parameters is checked by TaskQueue, which holds the task.
pub fn check_result(task_id: &str, attempt_id: AttemptId, v: Value) -> OutcomeKind {
    // read the status word first: an unknown one is named as such, not as
    // a generic parse error
    let status = v
        .pointer("/result/status")
        .and_then(Value::as_str)
        .map(String::from);
    let result: ExecuteAnswer = match serde_json::from_value(v) {
        Ok(r) => r,
        Err(e) => {
            return match status {
                Some(s) if s.parse::<RunStatus>().is_err() => {
                    OutcomeKind::Failed(format!("the worker returned an unknown status {s:?}"))
                }
                _ => OutcomeKind::Failed(format!("the worker returned an invalid result: {e}")),
            };
        }
    };
    judge_result(task_id, attempt_id, result)
}

/// The checks of [`check_result`] on a result already read into its type
/// (the batch path reads each result line straight into it, with no
/// `Value` between).
pub fn judge_result(task_id: &str, attempt_id: AttemptId, result: ExecuteAnswer) -> OutcomeKind {
    if result.task_id != task_id {
        return OutcomeKind::Failed(format!(
            "the worker returned a result for task {:?} instead of {task_id:?}",
            result.task_id
        ));
    }
    match result.attempt_id {
        Some(theirs) if theirs == attempt_id => {}
        Some(theirs) => {
            return OutcomeKind::Forged(format!(
                "the worker returned attempt {theirs} for attempt {attempt_id}"
            ))
        }
        None => {
            return OutcomeKind::Forged(format!(
                "the worker returned a result without an attempt id for attempt {attempt_id} \
                 (a run posted to the worker by hand?)"
            ))
        }
    }
    if !result.execution_time.is_finite() || result.execution_time < 0.0 {
        return OutcomeKind::Failed(format!(
            "the worker returned an impossible execution_time {}: expected a finite number of seconds ≥ 0",
            result.execution_time
        ));
    }
    OutcomeKind::Result(Box::new(result))
}

/// Fails an attempt whose result is larger, as JSON, than `max_bytes`
/// (`MAX_RESULT_BYTES`): such a result is never stored, and the attempt's
/// error says its size and the limit. Any other outcome passes as it is.
pub fn bounded(kind: OutcomeKind, max_bytes: usize) -> OutcomeKind {
    let OutcomeKind::Result(result) = &kind else {
        return kind;
    };
    let mut counted = ByteCount(0);
    if serde_json::to_writer(&mut counted, result).is_err() || counted.0 <= max_bytes {
        return kind;
    }
    OutcomeKind::Failed(format!(
        "the worker returned a result of {} bytes, more than MAX_RESULT_BYTES = {max_bytes}; \
         it was not stored (a task whose output is this large needs a larger MAX_RESULT_BYTES)",
        counted.0
    ))
}

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

/// Counts the bytes written to it and keeps none.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What an `/execute` answer means for the attempt.
#[derive(Debug)]
pub enum ExecuteVerdict {
    /// Report this outcome.
    Outcome(OutcomeKind),
    /// 429: not an attempt; send the worker nothing for `retry_after`.
    Full { retry_after: Duration },
    /// 409: the task already runs there under another attempt: adopt it
    /// and wait for its result.
    AlreadyRunning,
    /// 401: the worker wants another token; the task never ran there.
    Unauthorized,
}

/// Reads the HTTP answer to `POST /execute` (status, `Retry-After` in
/// seconds, body if it could be read).
pub fn read_execute_answer(
    task_id: &str,
    attempt_id: AttemptId,
    code: u16,
    retry_after: Option<u64>,
    body: Option<&[u8]>,
) -> ExecuteVerdict {
    match (code, body) {
        (200, Some(body)) => ExecuteVerdict::Outcome(match serde_json::from_slice::<Value>(body) {
            Ok(v) => check_result(task_id, attempt_id, v),
            Err(e) => OutcomeKind::Failed(format!("the worker returned invalid JSON: {e}")),
        }),
        (200, None) => ExecuteVerdict::Outcome(OutcomeKind::Failed(
            "the worker's answer could not be read".into(),
        )),
        (code, body) => {
            let body = body
                .and_then(|b| serde_json::from_slice::<ErrorBody>(b).ok())
                .unwrap_or_default();
            read_refusal(code, retry_after, &body)
        }
    }
}

/// What a refusal of a task means (an `/execute` answer that is not 200,
/// or a `refused` line of a batch).
pub fn read_refusal(code: u16, retry_after: Option<u64>, body: &ErrorBody) -> ExecuteVerdict {
    let kind = match code {
        429 => {
            return ExecuteVerdict::Full {
                retry_after: Duration::from_secs(retry_after.unwrap_or(1).clamp(1, 60)),
            }
        }
        // another orchestrator's work is there: nothing ran, not an attempt
        409 if body.code == crate::protocol::ErrorCode::OtherOrchestrator => {
            OutcomeKind::Refused(format!("the worker serves another orchestrator: {}", body.error))
        }
        409 => return ExecuteVerdict::AlreadyRunning,
        401 => return ExecuteVerdict::Unauthorized,
        503 => OutcomeKind::Refused("the worker is shutting down (503)".into()),
        code => OutcomeKind::Failed(format!("the worker refused the task ({code}): {}", body.error)),
    };
    ExecuteVerdict::Outcome(kind)
}

/// True when a connection error proves the request never reached the
/// worker. A pooled connection that breaks ("disconnected", reset) may
/// have carried it: that attempt is lost, not refused.
pub fn never_connected(e: &awc::error::ConnectError) -> bool {
    use awc::error::ConnectError;
    match e {
        ConnectError::Io(io) => io.kind() == std::io::ErrorKind::ConnectionRefused,
        ConnectError::Resolver(_)
        | ConnectError::NoRecords
        | ConnectError::Unresolved
        | ConnectError::Timeout => true,
        _ => false,
    }
}

/// What the orchestrator and a worker agree on when it comes up: the
/// smaller capacity (a worker that reports none gets the configured one)
/// and the configured kernels it offers, plus the test kernels a worker
/// offers only when they are switched on there.
pub fn agree(entry: &WorkerEntry, status: &StatusAnswer) -> (usize, Vec<KernelName>) {
    let capacity = if status.capacity == 0 {
        entry.capacity
    } else {
        status.capacity.min(entry.capacity)
    };
    let offered: Vec<KernelName> = status
        .algorithms
        .iter()
        .filter_map(|a| resolve_kernel(a))
        .collect();
    let mut kernels: Vec<KernelName> = entry
        .kernels()
        .into_iter()
        .filter(|k| offered.contains(k))
        .collect();
    for k in offered.iter().copied().filter(|k| k.as_str().starts_with("__")) {
        if !kernels.contains(&k) {
            kernels.push(k);
        }
    }
    (capacity, kernels)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn result(task_id: &str, attempt: Option<u64>, status: &str) -> Value {
        json!({"task_id": task_id, "algorithm": "python", "parameters": {}, "execution_time": 0.1,
               "result": {"status": status, "metrics": {}, "output": ""}, "attempt_id": attempt})
    }

    #[test]
    fn lying_workers_fail_the_attempt() {
        assert!(matches!(
            check_result("a", AttemptId::new(1), result("a", Some(1), "completed")),
            OutcomeKind::Result(_)
        ));
        assert!(
            matches!(check_result("a", AttemptId::new(1), result("b", Some(1), "completed")), OutcomeKind::Failed(m) if m.contains("instead of"))
        );
        assert!(
            matches!(check_result("a", AttemptId::new(1), result("a", Some(1), "great")), OutcomeKind::Failed(m) if m.contains("unknown status"))
        );
        assert!(
            matches!(check_result("a", AttemptId::new(1), json!({"hello": 1})), OutcomeKind::Failed(m) if m.contains("invalid result"))
        );
    }

    #[test]
    fn a_result_over_the_size_limit_fails_the_attempt_and_says_so() {
        let mut big = result("a", Some(1), "completed");
        big["result"]["output"] = json!("x".repeat(5000));
        let OutcomeKind::Result(_) = check_result("a", AttemptId::new(1), big.clone()) else {
            panic!("a valid result")
        };
        match bounded(check_result("a", AttemptId::new(1), big.clone()), 4096) {
            OutcomeKind::Failed(m) => assert!(
                m.contains("more than MAX_RESULT_BYTES = 4096") && m.contains("not stored"),
                "{m}"
            ),
            other => panic!("expected Failed, got {other:?}"),
        }
        assert!(matches!(
            bounded(check_result("a", AttemptId::new(1), big), 1 << 20),
            OutcomeKind::Result(_)
        ));
        assert!(matches!(
            bounded(OutcomeKind::Lost("gone".into()), 1),
            OutcomeKind::Lost(_)
        ));
    }

    #[test]
    fn a_result_needs_the_attempt_id_that_was_issued() {
        assert!(
            matches!(check_result("a", AttemptId::new(1), result("a", Some(2), "completed")), OutcomeKind::Forged(m) if m.contains("attempt 2"))
        );
        // a run posted by hand to the worker's /execute carries none; an
        // adopted attempt's result is held to the same rule
        assert!(
            matches!(check_result("a", AttemptId::new(9), result("a", None, "completed")), OutcomeKind::Forged(m) if m.contains("without an attempt id"))
        );
    }

    #[test]
    fn an_impossible_execution_time_is_a_bad_result() {
        for bad in [json!(-1.0), json!(-0.001)] {
            let mut r = result("a", Some(1), "completed");
            r["execution_time"] = bad;
            assert!(
                matches!(check_result("a", AttemptId::new(1), r), OutcomeKind::Failed(m) if m.contains("execution_time")),
            );
        }
        // JSON has no NaN or infinity; an overflowing number is refused as
        // invalid JSON rather than read as infinite
        let body = result("a", Some(1), "completed")
            .to_string()
            .replace("0.1", "1e999");
        assert!(matches!(
            read_execute_answer("a", AttemptId::new(1), 200, None, Some(body.as_bytes())),
            ExecuteVerdict::Outcome(OutcomeKind::Failed(_))
        ));
        let mut zero = result("a", Some(1), "completed");
        zero["execution_time"] = json!(0.0);
        assert!(matches!(
            check_result("a", AttemptId::new(1), zero),
            OutcomeKind::Result(_)
        ));
    }

    #[test]
    fn execute_answers_by_status() {
        let ok = result("a", Some(1), "completed").to_string();
        assert!(matches!(
            read_execute_answer("a", AttemptId::new(1), 200, None, Some(ok.as_bytes())),
            ExecuteVerdict::Outcome(OutcomeKind::Result(_))
        ));
        assert!(matches!(
            read_execute_answer("a", AttemptId::new(1), 200, None, Some(b"nope")),
            ExecuteVerdict::Outcome(OutcomeKind::Failed(m)) if m.contains("invalid JSON")
        ));
        assert!(matches!(
            read_execute_answer("a", AttemptId::new(1), 429, Some(600), None),
            ExecuteVerdict::Full { retry_after } if retry_after == Duration::from_secs(60)
        ));
        assert!(matches!(
            read_execute_answer("a", AttemptId::new(1), 409, None, None),
            ExecuteVerdict::AlreadyRunning
        ));
        assert!(matches!(
            read_execute_answer("a", AttemptId::new(1), 503, None, None),
            ExecuteVerdict::Outcome(OutcomeKind::Refused(_))
        ));
        assert!(matches!(
            read_execute_answer("a", AttemptId::new(1), 400, None, Some(br#"{"error": "bad task"}"#)),
            ExecuteVerdict::Outcome(OutcomeKind::Failed(m)) if m.ends_with("(400): bad task")
        ));
    }

    #[test]
    fn refusals_are_read_from_the_error_body() {
        let failed = |v: ExecuteVerdict| match v {
            ExecuteVerdict::Outcome(OutcomeKind::Failed(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(failed(read_execute_answer(
            "a",
            AttemptId::new(1),
            422,
            None,
            Some(br#"{"error": "no", "code": "x"}"#)
        ))
        .ends_with(": no"));
        assert!(failed(read_execute_answer(
            "a",
            AttemptId::new(1),
            422,
            None,
            Some(b"garbage")
        ))
        .ends_with("(422): "));
        assert!(failed(read_execute_answer("a", AttemptId::new(1), 422, None, None)).ends_with("(422): "));
        // a batch's refused line means what the same /execute answer means
        let body = ErrorBody {
            error: "worker is full".into(),
            ..ErrorBody::default()
        };
        assert!(matches!(
            read_refusal(429, Some(3), &body),
            ExecuteVerdict::Full { retry_after } if retry_after == Duration::from_secs(3)
        ));
        assert!(matches!(
            read_refusal(409, None, &body),
            ExecuteVerdict::AlreadyRunning
        ));
        assert!(matches!(
            read_refusal(503, None, &body),
            ExecuteVerdict::Outcome(OutcomeKind::Refused(_))
        ));
    }

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
        let mut sleep = result("a", Some(1), "completed");
        sleep["algorithm"] = json!("__sleep");
        sleep["parameters"] = json!({"seconds": 0.1});
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

    #[test]
    fn capacity_is_the_smaller_and_kernels_the_intersection() {
        let entry = WorkerEntry {
            id: "w".into(),
            host: "127.0.0.1".into(),
            port: 1,
            capacity: 4,
            algorithms: vec!["python".into(), "cython".into()],
            tls: false,
        };
        let agreed = |entry: &WorkerEntry, status: &StatusAnswer| {
            let (capacity, kernels) = agree(entry, status);
            (
                capacity,
                kernels.iter().map(|k| k.as_str()).collect::<Vec<&str>>(),
            )
        };
        let status = |capacity, algorithms: &[&str]| StatusAnswer {
            capacity,
            algorithms: algorithms.iter().map(|s| s.to_string()).collect(),
            ..StatusAnswer::default()
        };
        assert_eq!(
            agreed(&entry, &status(2, &["reference", "__sleep"])),
            (2, vec!["reference", "__sleep"])
        );
        assert_eq!(agreed(&entry, &status(0, &["optimized"])), (4, vec!["optimized"]));
        assert_eq!(agreed(&entry, &status(9, &[])).1, Vec::<&str>::new());
    }
}
