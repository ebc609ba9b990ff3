//! The orchestrator's worker answers (`/workers…`), written by
//! `orchestrator::api::workers` and read by the CLI. A worker's row and
//! the workers file's status are the orchestrator's own views: type
//! parameters, read by a client as `Value`s (the default).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::model::{AttemptId, TaskId, WorkerId};

/// `GET /workers`: every worker (or the page `offset`/`limit` asked
/// for), in configuration order (joined ones after), counts over all of
/// them, and whether `config_workers.json` is in force.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(bound = "")]
pub struct WorkerList<Worker = Value, Config = Value> {
    /// Each as `GET /workers/{worker_id}` shows it, without the task lists.
    #[schema(value_type = Vec<Object>)]
    pub workers: Vec<Worker>,
    /// (Defaults when read back: a client reads a reduced list too.)
    #[serde(default)]
    pub total: usize,
    /// How many answer their heartbeat.
    #[serde(default)]
    pub up: usize,
    /// Every worker counted by state (`up`, `down`, `unknown`, `draining`,
    /// `drained`); a state nobody is in is absent.
    #[serde(default)]
    pub by_state: std::collections::BTreeMap<String, usize>,
    /// The rows skipped before `workers` (0 unless asked).
    #[serde(default)]
    pub offset: usize,
    /// `{"path", "valid", "error"?}`: the workers file and whether its
    /// last version was taken.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub config: Config,
}

/// `GET /workers/{worker_id}`: the worker's row and the attempts on it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(bound = "")]
pub struct WorkerDetail<Worker = Value> {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub worker: Worker,
    /// Running there now.
    pub running_tasks: Vec<RunningTask>,
    /// Sent ahead, waiting there for a slot.
    pub backlog_tasks: Vec<BacklogTask>,
}

/// An attempt that runs on a worker.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunningTask {
    pub task_id: TaskId,
    pub attempt_id: AttemptId,
    /// Since it took a slot.
    pub elapsed_seconds: f64,
}

/// An attempt sent ahead to a worker, waiting there for a slot.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BacklogTask {
    pub task_id: TaskId,
    pub attempt_id: AttemptId,
    pub sent_seconds_ago: f64,
}

/// `POST /workers/{worker_id}/drain` and `/resume`: the worker's new state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(bound = "")]
pub struct WorkerStateChanged<State = Value> {
    pub id: WorkerId,
    /// `up`, `draining`, `down`, … as in `GET /workers`.
    #[schema(value_type = String)]
    pub state: State,
}

/// `DELETE /workers/{worker_id}`: removed; its tasks went back to the queue.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkerRemoved {
    pub id: WorkerId,
    /// Tasks that were on it, queued again (not counted as attempts).
    pub requeued: usize,
}
