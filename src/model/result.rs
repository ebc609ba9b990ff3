//! A task's result in the seed's shape, as a worker returns it and the
//! orchestrator records it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::id::{AttemptId, TaskId, WorkerId};
use super::status::RunStatus;
use super::task::{Priority, Task, Work};
use crate::sim::{self, EffectiveParameters, SimReport};

/// One task's result in the seed's shape (`task_id`, `algorithm`,
/// `parameters`, `execution_time`, `result`), plus the fields the
/// orchestrator adds when it stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    pub task_id: TaskId,
    pub algorithm: String,
    pub parameters: Value,
    /// Every parameter of the run, defaults filled in (simulations only):
    /// what reproduces the result even if a default changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_parameters: Option<EffectiveParameters>,
    /// Seconds, as a float.
    pub execution_time: f64,
    pub result: ResultBody,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<WorkerId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_id: Option<AttemptId>,
    /// The step the attempt that produced it resumed from, when it
    /// continued from a checkpoint (the attempts list shows each one's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from_step: Option<u64>,
    /// The task's `description`, if it has one; set by the orchestrator
    /// from the stored task ([`TaskResult::echo_unknown_fields`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The task file the task came from (`api` for `POST /tasks`), as
    /// `GET /tasks/{id}` and the failure records name it; set by the
    /// orchestrator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The task's fields the validator does not know, echoed at the top as
    /// the user gave them (docs/task-files-and-results.md: "unknown fields are kept and returned in
    /// results"); set by the orchestrator from the stored task
    /// ([`TaskResult::echo_unknown_fields`]), never trusted from a worker.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The names a result uses itself: an unknown task field of one of these
/// names is not echoed (it stays in `GET /tasks/{id}`'s `extra`).
const RESULT_FIELDS: [&str; 15] = [
    "task_id",
    "algorithm",
    "parameters",
    "effective_parameters",
    "description",
    "source",
    "execution_time",
    "result",
    "worker_id",
    "completed_at",
    "priority",
    "attempt_id",
    "resumed_from_step",
    "reused_from",
    "corrected_from",
];

/// What a result echoes of its task's body: the description, and the
/// unknown fields and `study` (none of the result's own names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Echo {
    pub description: Option<String>,
    pub extra: Map<String, Value>,
}

impl Echo {
    /// Read from a task's parsed body.
    pub fn of(body: &Value) -> Self {
        let mut extra: Map<String, Value> = super::task::unknown_fields(body)
            .into_iter()
            .filter(|(k, _)| !RESULT_FIELDS.contains(&k.as_str()))
            .collect();
        if let Some(study) = super::task::study_of(body) {
            extra.insert("study".into(), Value::String(study.into()));
        }
        Self {
            description: body
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string),
            extra,
        }
    }
}

/// `result`: `status` is `completed`, `failed` or `cancelled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultBody {
    pub status: RunStatus,
    pub metrics: Value,
    pub output: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TaskResult {
    /// Marks the record as answered from the stored result of `task_id`
    /// (an equal completed task, [`crate::model::reuse`]): `reused_from`
    /// at the top level. Kept in `extra`, where a task's own field of that
    /// name never goes (it is one of the result's names), and set after
    /// [`Self::echo_unknown_fields`].
    pub fn set_reused_from(&mut self, task_id: &str) {
        self.extra
            .insert("reused_from".into(), Value::String(task_id.to_string()));
    }

    /// Marks the record as the run that replaced `worker`'s result, which
    /// a verification found wrong (`corrected_from` at the top level; kept
    /// in `extra` like `reused_from`).
    pub fn set_corrected_from(&mut self, worker: &str) {
        self.extra
            .insert("corrected_from".into(), Value::String(worker.to_string()));
    }

    /// The task whose stored result this record is, if it was reused.
    pub fn reused_from(&self) -> Option<&str> {
        self.extra.get("reused_from").and_then(Value::as_str)
    }

    /// Replaces `extra` with the unknown fields of the task's stored body
    /// and its `study`, and `description` with its description (whatever a
    /// worker put there is dropped: the task is the truth).
    pub fn echo_unknown_fields(&mut self, body: &str) {
        let body: Value = serde_json::from_str(body).unwrap_or_default();
        self.echo(&Echo::of(&body));
    }

    /// Sets `description` and `extra` to what the task's body gave
    /// ([`Echo::of`], read once when the task came into memory).
    pub fn echo(&mut self, echo: &Echo) {
        self.description.clone_from(&echo.description);
        self.extra.clone_from(&echo.extra);
    }

    /// The result of a simulation that ran (to the end or not).
    pub fn from_report(task_id: &TaskId, algorithm: &str, parameters: Value, report: &SimReport) -> Self {
        let error = match &report.status {
            sim::SimStatus::Failed(reason) => Some(reason.clone()),
            _ => None,
        };
        Self {
            task_id: task_id.clone(),
            algorithm: algorithm.to_string(),
            parameters,
            effective_parameters: Some(report.parameters),
            execution_time: report.elapsed,
            result: ResultBody {
                status: match report.status {
                    sim::SimStatus::Completed => RunStatus::Completed,
                    sim::SimStatus::Cancelled => RunStatus::Cancelled,
                    sim::SimStatus::Failed(_) => RunStatus::Failed,
                },
                metrics: serde_json::to_value(&report.metrics).unwrap_or(Value::Null),
                output: report.output(),
                error,
            },
            worker_id: None,
            completed_at: None,
            priority: None,
            attempt_id: None,
            resumed_from_step: report.resumed_from_step,
            description: None,
            source: None,
            extra: Map::new(),
        }
    }

    /// A result for a task that did not run to a report (a test kernel, a
    /// panic): `status` with `output` and optional `error`.
    pub fn other(
        task: &Task,
        status: RunStatus,
        execution_time: f64,
        output: String,
        error: Option<String>,
    ) -> Self {
        Self {
            task_id: task.task_id.clone(),
            algorithm: task.algorithm.clone(),
            parameters: task.parameters.clone(),
            effective_parameters: match &task.work {
                Work::Simulation { params, .. } => Some(params.effective()),
                Work::Test(_) => None,
            },
            execution_time,
            result: ResultBody {
                status,
                metrics: Value::Object(Map::new()),
                output,
                error,
            },
            worker_id: None,
            completed_at: None,
            priority: None,
            attempt_id: None,
            resumed_from_step: None,
            description: None,
            source: None,
            extra: Map::new(),
        }
    }

    /// A `python` result for the orchestrator's tests: `status` with
    /// `metrics`, every other field empty (callers set what they test).
    #[cfg(test)]
    pub fn for_test(task_id: &TaskId, parameters: Value, status: RunStatus, metrics: Value) -> Self {
        Self {
            task_id: task_id.clone(),
            algorithm: "python".into(),
            parameters,
            effective_parameters: None,
            execution_time: 0.25,
            result: ResultBody {
                status,
                metrics,
                output: "ok".into(),
                error: None,
            },
            worker_id: None,
            completed_at: None,
            priority: None,
            attempt_id: None,
            resumed_from_step: None,
            description: None,
            source: None,
            extra: Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(extra: Value) -> TaskResult {
        let mut v = json!({"task_id": "t", "algorithm": "python", "parameters": {},
            "execution_time": 0.5, "result": {"status": "completed", "metrics": {}, "output": ""}});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn unknown_fields_are_echoed_from_the_task_not_from_the_worker() {
        let mut r = result(json!({"injected": "by a worker", "study": "forged"}));
        r.echo_unknown_fields(
            r#"{"task_id": "t", "algorithm": "python", "parameters": {}, "priority": "low",
                "study": "rho-sweep", "owner": "ana", "tags": ["x"], "result": "a user's own field"}"#,
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["study"], "rho-sweep");
        assert_eq!(v["owner"], "ana");
        assert_eq!(v["tags"], json!(["x"]));
        assert!(v.get("injected").is_none(), "{v}");
        // a field named like one of the result's own is not echoed over it
        assert_eq!(v["result"]["status"], "completed");
        // read back (the results store after a restart): still there
        let back: TaskResult = serde_json::from_value(v).unwrap();
        assert_eq!(back.extra.get("owner"), Some(&json!("ana")));
        assert_eq!(back, r);
    }
}
