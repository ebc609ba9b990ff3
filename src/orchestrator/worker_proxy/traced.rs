//! How the proxy names an attempt's outcome in the log's "attempts
//! ended" lines ([`crate::util::trace`]): `task@attempt=outcome:time`.

use std::fmt;

use super::OutcomeKind;
use crate::model::{AttemptId, TaskId};
use crate::util::logging::AttemptOf;

/// How one attempt ended, as the proxy heard it (TaskQueue decides what
/// it means for the task: retried, failed, recorded).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Reported {
    task_id: TaskId,
    attempt_id: AttemptId,
    outcome: &'static str,
    /// The worker's `execution_time`, when it sent a result.
    seconds: Option<f64>,
}

impl Reported {
    pub(super) fn of(task_id: &TaskId, attempt_id: AttemptId, kind: &OutcomeKind) -> Self {
        let (outcome, seconds) = match kind {
            OutcomeKind::Result(r) => (r.result.status.as_str(), Some(r.execution_time)),
            OutcomeKind::Failed(_) => ("failed", None),
            OutcomeKind::Lost(_) | OutcomeKind::Broken(_) => ("lost", None),
            OutcomeKind::Refused(_) => ("refused", None),
            OutcomeKind::TimedOut(_) => ("timed_out", None),
            OutcomeKind::Forged(_) => ("forged", None),
        };
        Self {
            task_id: task_id.clone(),
            attempt_id,
            outcome,
            seconds,
        }
    }
}

/// `t1@42=completed:0.013s`, or `t1@42=lost` without a result.
impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={}",
            AttemptOf(&self.task_id, self.attempt_id),
            self.outcome
        )?;
        if let Some(s) = self.seconds {
            write!(f, ":{s:.3}s")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_prints_task_attempt_outcome_and_time() {
        let lost = Reported::of(&"t1".into(), AttemptId::new(7), &OutcomeKind::Lost("gone".into()));
        assert_eq!(lost.to_string(), "t1@7=lost");
        let refused = Reported::of(
            &"t2".into(),
            AttemptId::new(8),
            &OutcomeKind::Refused("full".into()),
        );
        assert_eq!(refused.to_string(), "t2@8=refused");
        let mut result: crate::model::TaskResult = serde_json::from_value(serde_json::json!({
            "task_id": "t3", "algorithm": "python", "parameters": {}, "execution_time": 0.0125,
            "result": {"status": "completed", "metrics": {}, "output": ""}
        }))
        .unwrap();
        result.execution_time = 0.0125;
        let done = Reported::of(
            &"t3".into(),
            AttemptId::new(9),
            &OutcomeKind::Result(Box::new(result)),
        );
        assert_eq!(done.to_string(), "t3@9=completed:0.013s");
    }
}
