//! A task's result in the seed's shape, as a worker returns it and the
//! orchestrator records it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::status::RunStatus;
use super::task::Task;
use crate::sim::{self, SimReport};

/// One task's result in the seed's shape (`task_id`, `algorithm`,
/// `parameters`, `execution_time`, `result`), plus the fields the
/// orchestrator adds when it stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    pub task_id: String,
    pub algorithm: String,
    pub parameters: Value,
    /// Seconds, as a float.
    pub execution_time: f64,
    pub result: ResultBody,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_id: Option<u64>,
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
    /// The result of a simulation that ran (to the end or not).
    pub fn from_report(task_id: &str, algorithm: &str, parameters: Value, report: &SimReport) -> Self {
        let error = match &report.status {
            sim::SimStatus::Failed(reason) => Some(reason.clone()),
            _ => None,
        };
        Self {
            task_id: task_id.to_string(),
            algorithm: algorithm.to_string(),
            parameters,
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
            task_id: task.task_id.to_string(),
            algorithm: task.algorithm.clone(),
            parameters: task.parameters.clone(),
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
        }
    }
}
