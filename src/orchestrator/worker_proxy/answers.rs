//! What a worker's answers mean, as plain functions of the answer (no
//! actor, no I/O), so each is unit-tested: is this result acceptable,
//! did a request reach the worker, which kernels and capacity to agree on.

use std::time::Duration;

use serde_json::Value;

use super::OutcomeKind;
use crate::model::{AttemptId, KernelName, RunStatus};
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
