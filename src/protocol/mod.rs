//! The orchestrator ↔ worker wire types (DESIGN.md "Orchestrator ↔ worker
//! protocol"): the one thing both sides share, so a field is named in one
//! place. The worker serializes them (`api::worker`, the Executor), the
//! orchestrator deserializes them (WorkerProxy). Deserializing is lenient
//! where the orchestrator only needs some fields: every field of an answer
//! has a default, so an older or simpler worker still comes up.
//!
//! | request                  | body                  | answer                |
//! |--------------------------|-----------------------|-----------------------|
//! | `POST /execute`          | [`ExecuteRequest`]    | [`ExecuteAnswer`]     |
//! | `POST /execute/batch`    | [`BatchRequest`]      | [`BatchEvent`] lines  |
//! | `GET /status`            |                       | [`StatusAnswer`]      |
//! | `GET /health`            |                       | [`HealthAnswer`]      |
//! | `GET /current`           |                       | [`CurrentAnswer`]     |
//! | `GET /results/{id}`      |                       | [`ExecuteAnswer`]     |
//! | `POST /results/ack`      | [`AckRequest`]        | [`AckAnswer`]         |
//! | any refusal              |                       | [`ErrorBody`]         |
//!
//! And the other way, a worker started with `--join` to the orchestrator:
//!
//! | request                  | body                  | answer                |
//! |--------------------------|-----------------------|-----------------------|
//! | `POST /workers/join`     | [`JoinRequest`]       | [`JoinAnswer`]        |
//! | `DELETE /workers/{id}`   |                       | (leaving, after draining) |
//! | `POST /tasks/{id}/checkpoint` | checkpoint bytes | [`checkpoints::CheckpointSaved`] |
//! | `GET /tasks/{id}/checkpoint`  |                  | checkpoint bytes      |

pub mod admin;
pub mod allocations;
pub mod checkpoints;
pub mod error;
pub mod export;
pub mod files;
pub mod node;
pub mod schema;
pub mod service;
pub mod stats;
pub mod studies;
pub mod tasks;
pub mod workers;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::{AttemptId, TaskId, TaskResult, WorkerId};
pub use error::ErrorCode;

/// `POST /execute`: one task (the task file's object) plus the attempt id
/// the orchestrator made unique per attempt (the fencing token), first. A
/// curl user may omit `attempt_id`. The worker reads the task as a `Map`;
/// the orchestrator sends the text it stored ([`StoredTask`]) without
/// building a `Value` of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecuteRequest<T = Map<String, Value>> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_id: Option<AttemptId>,
    /// The orchestrator holds a checkpoint of this task at this step: the
    /// worker fetches it and resumes ([`checkpoints::CHECKPOINT_STEP`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_step: Option<u64>,
    /// The task's fields, validated by the worker as a task file's are.
    #[serde(flatten)]
    pub task: T,
}

/// The field of the `/execute` body that carries the attempt id.
pub const ATTEMPT_ID: &str = "attempt_id";

/// The header of every orchestrator request to a worker that names the
/// orchestrator's data folder (the id kept beside its database): a worker
/// serves one at a time, and refuses another's work while it has the
/// first's (409 `other_orchestrator`).
pub const ORCHESTRATOR_HEADER: &str = "x-orquesta-orchestrator";

/// An `/execute` body whose `attempt_id` is not a whole number ≥ 0.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("expected a whole number ≥ 0, found {found}")]
pub struct BadAttemptId {
    /// The value given instead, described for people.
    pub found: String,
}

impl ExecuteRequest<Value> {
    /// Splits a parsed body into the attempt id and the task object (what
    /// the worker does before it validates the task field by field).
    pub fn split(mut body: Value) -> Result<(Option<AttemptId>, Value), BadAttemptId> {
        let attempt_id = match body.as_object_mut().and_then(|o| o.remove(ATTEMPT_ID)) {
            None | Some(Value::Null) => None,
            Some(v) => Some(AttemptId::new(v.as_u64().ok_or_else(|| BadAttemptId {
                found: crate::model::describe(&v),
            })?)),
        };
        Ok((attempt_id, body))
    }
}

/// A task object as the JSON text the orchestrator stored at ingest:
/// serializes as that object's fields, each value copied as written (only
/// the outer level is read), so an [`ExecuteRequest`] of it is the stored
/// task with its attempt id.
#[derive(Debug, Clone, Copy)]
pub struct StoredTask<'a>(pub &'a str);

impl Serialize for StoredTask<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        match crate::model::strict_json::split(self.0) {
            Ok(crate::model::strict_json::Document::Object(fields)) => {
                s.collect_map(fields.iter().map(|(k, v)| (k.as_str(), *v)))
            }
            Ok(_) => Err(S::Error::custom(
                "expected a stored task to be an object, found another value",
            )),
            Err(e) => Err(S::Error::custom(format!(
                "expected a stored task object, found {e:?}"
            ))),
        }
    }
}

/// `POST /execute` → 200 and `GET /results/{task_id}`: the task's result,
/// its `attempt_id` echoed, `result.status` completed / failed / cancelled.
pub type ExecuteAnswer = TaskResult;

/// Most tasks in one `POST /execute/batch`.
pub const MAX_BATCH_TASKS: usize = 1024;

/// What the orchestrator puts in one batch at most, in bytes (a task
/// bigger than that travels alone).
pub const BATCH_FILL_BYTES: usize = 1 << 20;

/// `POST /execute/batch`: several `/execute` bodies in one request, each
/// with its own attempt id. The worker runs at most its capacity at once
/// and keeps the rest in its backlog, in order, until a slot frees; the
/// answer streams what happens to each task as it happens.
/// The worker reads each task as a `Value` first (a bad one is refused
/// alone, with its index); the orchestrator sends [`ExecuteRequest`]s of
/// [`StoredTask`]s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRequest<T = Value> {
    /// How many of its batch tasks the worker may run at once: the
    /// capacity the orchestrator agreed with it, which a config edit may
    /// have made smaller than the worker's own (default: its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<usize>,
    pub tasks: Vec<T>,
}

/// The media type of the `/execute/batch` answer: one JSON object a line.
pub const BATCH_CONTENT_TYPE: &str = "application/x-ndjson";

/// One line of the `POST /execute/batch` answer. Every task of the batch
/// gets either `refused`, or `result` (preceded by `started` when it took
/// a slot); `end` follows when every task has. `R` is the result as the
/// worker writes it ([`ExecuteAnswer`]) or as the orchestrator reads it
/// (a `Value`, checked like an `/execute` answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum BatchEvent<R> {
    /// The task took one of the worker's slots: it runs from now on.
    Started {
        task_id: TaskId,
        #[serde(default)]
        attempt_id: Option<AttemptId>,
    },
    /// The task ended: what `POST /execute` would have answered.
    Result { result: R },
    /// The task was not admitted (nothing ran): `status` and `body` are
    /// what `POST /execute` would have answered (429 full, 409 already
    /// running, 503 shutting down, 400/422 invalid); `index` is its place
    /// in the request.
    Refused {
        index: usize,
        #[serde(default)]
        task_id: Option<TaskId>,
        #[serde(default)]
        attempt_id: Option<AttemptId>,
        status: u16,
        #[serde(default)]
        retry_after: Option<u64>,
        body: ErrorBody,
    },
    /// The orchestrator took the task back (`POST /takeback/{task_id}`)
    /// while it waited for a slot: it never ran here, and has no other
    /// event.
    #[serde(rename = "taken_back")]
    TakenBack {
        task_id: TaskId,
        #[serde(default)]
        attempt_id: Option<AttemptId>,
    },
    /// Sent every [`BATCH_TICK_SECONDS`] while tasks wait or run, so the
    /// worker notices a requester that went away (the write fails).
    Tick,
    /// The last line: every task of the batch has its answer. An answer
    /// that stops without it was cut off (the worker died).
    End,
}

/// How often a batch's answer says it is alive.
pub const BATCH_TICK_SECONDS: u64 = 1;

/// What a worker node is doing, as `/status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Nothing running.
    #[default]
    Idle,
    /// Some slots busy.
    Busy,
    /// Every slot busy: `/execute` answers 429.
    Full,
    /// Shutting down: no new tasks (503).
    Draining,
    /// A word this build does not know (a newer worker).
    #[serde(other)]
    Unknown,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Idle => "idle",
            NodeState::Busy => "busy",
            NodeState::Full => "full",
            NodeState::Draining => "draining",
            NodeState::Unknown => "unknown",
        }
    }
}

/// `GET /status`: the worker's own capacity and algorithms (the
/// orchestrator uses the smaller capacity and the intersection of
/// algorithms), its state and counts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct StatusAnswer {
    pub worker_id: WorkerId,
    pub state: NodeState,
    pub capacity: usize,
    pub running: usize,
    /// Tasks admitted by `/execute/batch` waiting for a slot.
    pub backlog: usize,
    /// The most tasks the backlog holds (`WORKER_MAX_BACKLOG`).
    pub max_backlog: usize,
    /// Algorithm names as the worker accepts them (aliases included).
    pub algorithms: Vec<String>,
    pub threads_per_task: usize,
    pub uptime_seconds: f64,
    pub version: String,
    pub tasks_completed: u64,
    pub tasks_failed: u64,
    pub tasks_cancelled: u64,
    pub results_held: usize,
}

/// The `status` word of `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    #[default]
    Healthy,
    Draining,
}

/// `GET /health`: 200 with `healthy` while the worker takes tasks, 503
/// with `draining` while it shuts down. The orchestrator's heartbeat reads
/// only the HTTP status.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct HealthAnswer {
    pub status: Health,
    pub worker_id: WorkerId,
    pub running: usize,
    pub capacity: usize,
    pub version: String,
}

/// One entry of `GET /current`: a task running now, with its progress.
/// Every field but the id has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CurrentTask {
    pub task_id: TaskId,
    #[serde(default)]
    pub attempt_id: Option<AttemptId>,
    #[serde(default)]
    pub algorithm: String,
    /// As the worker names it: a newer worker may run a kernel this build
    /// does not know, and still reports its progress.
    #[serde(default)]
    pub kernel: String,
    #[serde(default)]
    pub num_particles: u64,
    #[serde(default)]
    pub num_steps: u64,
    #[serde(default)]
    pub steps_done: u64,
    /// steps_done / num_steps, 0 when there are no steps.
    #[serde(default)]
    pub progress: f64,
    #[serde(default)]
    pub elapsed_seconds: f64,
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub cancelling: bool,
}

/// `GET /current`: what runs now, oldest first.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct CurrentAnswer {
    pub count: usize,
    pub tasks: Vec<CurrentTask>,
}

impl CurrentAnswer {
    pub fn new(tasks: Vec<CurrentTask>) -> Self {
        Self {
            count: tasks.len(),
            tasks,
        }
    }

    /// True if `task_id` runs there now.
    pub fn runs(&self, task_id: &str) -> bool {
        self.tasks.iter().any(|t| t.task_id == task_id)
    }
}

/// `POST /results/ack`: results the orchestrator has committed; the
/// worker may free them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AckRequest {
    pub task_ids: Vec<TaskId>,
}

/// The answer to `POST /results/ack`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct AckAnswer {
    pub requested: usize,
    pub acknowledged: usize,
}

/// Where the orchestrator learned of a worker: `config_workers.json`, or
/// the worker's own `--join`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemberSource {
    #[default]
    Config,
    Joined,
}

impl MemberSource {
    /// The word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberSource::Config => "config",
            MemberSource::Joined => "joined",
        }
    }
}

/// `POST /workers/join`: a worker registers itself, and repeats it every
/// `rejoin_interval_seconds` (so it is back after an orchestrator restart).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct JoinRequest {
    /// The worker's id (`--worker-id`, `WORKER_ID`).
    pub id: String,
    /// Where the orchestrator reaches it: `http://HOST:PORT` (`--advertise`,
    /// else the address it listens on).
    pub url: String,
    pub capacity: usize,
    /// Algorithm names it accepts (aliases included).
    pub algorithms: Vec<String>,
    /// Random per start of the worker process: the same worker joining
    /// again is told apart from another worker that claims its id.
    pub instance: String,
    pub version: String,
    /// The secret the orchestrator gave this worker id at its first join
    /// (kept in the worker's folder): a restarted worker shows it to take
    /// its id back. Empty before the first join.
    pub secret: String,
}

/// The answer to a join.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct JoinAnswer {
    pub id: String,
    pub source: MemberSource,
    /// How often the worker should join again.
    pub rejoin_interval_seconds: f64,
    /// A new secret for this id, when one is issued (the first join, or a
    /// re-join of the same process that did not show the current one): the
    /// worker keeps it and shows it in its next joins. Absent otherwise.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub secret: String,
}

/// Every error answer's body, on both servers: `api::error::ApiError`
/// writes it, the orchestrator reads a worker's refusals with it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct ErrorBody {
    /// For people.
    pub error: String,
    /// For programs.
    pub code: ErrorCode,
    /// What else the error says (`errors`, `duplicates`, `limit_bytes`, …).
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

impl ErrorBody {
    /// The detail `key` read as `T` (`errors` as field errors,
    /// `duplicates` as task ids, …); `None` when absent or of another shape.
    pub fn detail<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.details.get(key).and_then(|v| T::deserialize(v).ok())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn encode(task: &str, attempt_id: u64) -> String {
        serde_json::to_string(&ExecuteRequest {
            attempt_id: Some(AttemptId::new(attempt_id)),
            checkpoint_step: None,
            task: StoredTask(task),
        })
        .unwrap()
    }

    #[test]
    fn attempt_ids_are_added_to_the_body() {
        assert_eq!(
            encode(r#"{"task_id":"a"}"#, 7),
            r#"{"attempt_id":7,"task_id":"a"}"#
        );
        assert_eq!(encode("{}", 7), r#"{"attempt_id":7}"#);
        let v: Value = serde_json::from_str(&encode(r#" { "x": 1 }"#, 3)).unwrap();
        assert_eq!(v, json!({"attempt_id": 3, "x": 1}));
        // what the orchestrator encodes, the typed request reads
        let r: ExecuteRequest = serde_json::from_str(&encode(r#"{"task_id":"a"}"#, 9)).unwrap();
        assert_eq!(r.attempt_id, Some(AttemptId::new(9)));
        assert_eq!(r.task["task_id"], "a");
        // values are copied as written, nested objects included
        assert_eq!(
            encode(r#"{"task_id":"a","parameters":{"seed":1.50}}"#, 2),
            r#"{"attempt_id":2,"task_id":"a","parameters":{"seed":1.50}}"#
        );
        // a batch of them, slots first
        let batch = BatchRequest {
            slots: Some(2),
            tasks: vec![ExecuteRequest {
                attempt_id: Some(AttemptId::new(1)),
                checkpoint_step: None,
                task: StoredTask(r#"{"task_id":"a"}"#),
            }],
        };
        assert_eq!(
            serde_json::to_string(&batch).unwrap(),
            r#"{"slots":2,"tasks":[{"attempt_id":1,"task_id":"a"}]}"#
        );
    }

    #[test]
    fn split_takes_the_attempt_id_out_of_the_task() {
        let (a, task) = ExecuteRequest::split(json!({"attempt_id": 4, "task_id": "t"})).unwrap();
        assert_eq!((a, task), (Some(AttemptId::new(4)), json!({"task_id": "t"})));
        assert_eq!(
            ExecuteRequest::split(json!({"attempt_id": null})).unwrap().0,
            None
        );
        assert!(ExecuteRequest::split(json!({"attempt_id": -1}))
            .unwrap_err()
            .to_string()
            .contains("whole number"));
    }

    #[test]
    fn a_minimal_status_is_read_and_unknown_states_are_tolerated() {
        let s: StatusAnswer = serde_json::from_value(
            json!({"worker_id": "liar", "capacity": 4, "algorithms": ["__sleep"], "state": "idle"}),
        )
        .unwrap();
        assert_eq!((s.capacity, s.state, s.running), (4, NodeState::Idle, 0));
        let s: StatusAnswer = serde_json::from_value(json!({"state": "resting"})).unwrap();
        assert_eq!(s.state, NodeState::Unknown);
        assert_eq!(serde_json::to_value(NodeState::Draining).unwrap(), "draining");
    }

    #[test]
    fn current_lists_running_task_ids() {
        let c: CurrentAnswer =
            serde_json::from_value(json!({"count": 1, "tasks": [{"task_id": "a", "attempt_id": 3}]}))
                .unwrap();
        assert!(c.runs("a") && !c.runs("b"));
        assert_eq!(c.tasks[0].attempt_id, Some(AttemptId::new(3)));
    }
}
