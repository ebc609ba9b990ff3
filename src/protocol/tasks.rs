//! The orchestrator's task answers (`/tasks…`), written by
//! `orchestrator::api::tasks` and read by the CLI. A part that the
//! orchestrator keeps in a view of its own (a task's row, an attempt, why
//! it waits) is a type parameter: the server fills it with its view, a
//! client reads it as a `Value` (the default).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::model::{TaskId, TaskStatus, WorkerId};

/// `GET /tasks`: one page of tasks.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(bound = "")]
pub struct TaskPage<Task = Value> {
    /// The tasks of the page, each as `GET /tasks/{task_id}` shows it
    /// without `attempts` and `waiting`.
    #[schema(value_type = Vec<Object>)]
    pub tasks: Vec<Task>,
    /// How many match the filters, on every page.
    pub total: u64,
    pub limit: usize,
    pub offset: usize,
    /// How many this page holds.
    pub returned: usize,
}

/// `POST /tasks` → 201: every task was queued.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Queued {
    /// How many tasks were accepted (those answered at once from a stored
    /// result, `reused_from`, included).
    pub queued: usize,
    /// Their ids, the first 1000.
    pub task_ids: Vec<TaskId>,
    /// What was accepted but looks wrong (an unknown field, …).
    pub warnings: Vec<String>,
}

/// `GET /tasks/{task_id}`: the task's row, its attempts and, while it is
/// queued, why it waits.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(bound = "")]
pub struct TaskDetail<Task = Value, Attempt = Value, Waiting = Value> {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub task: Task,
    /// Every attempt, oldest first (their number is `attempt_count`); the
    /// outcome `reused` when the task was answered from a stored result.
    #[schema(value_type = Vec<Object>)]
    pub attempts: Vec<Attempt>,
    /// Only for a queued task: null when nothing holds it back.
    #[serde(default, skip_serializing_if = "Waits::is_not_queued")]
    #[schema(value_type = Option<Object>, nullable)]
    pub waiting: Waits<Waiting>,
    /// The latest checkpoint held for the task, while it is queued or
    /// running (absent when none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<super::checkpoints::CheckpointInfo>,
}

/// Whether a task's answer says why it waits: absent unless queued, then
/// an explanation or null.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Waits<Waiting> {
    /// The task is queued: why (null when nothing holds it back).
    Queued(Option<Waiting>),
    /// Not queued: the field is left out.
    #[default]
    #[serde(skip)]
    NotQueued,
}

impl<Waiting> Waits<Waiting> {
    pub fn is_not_queued(&self) -> bool {
        matches!(self, Waits::NotQueued)
    }
}

/// `DELETE /tasks/{task_id}`: the task is cancelled.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Cancelled {
    pub task_id: TaskId,
    /// Always `cancelled`.
    pub status: TaskStatus,
    /// Its status before.
    pub was: TaskStatus,
    /// The worker it ran on, told to stop; null if it was not running.
    pub worker_id: Option<WorkerId>,
}

/// `POST /tasks/{task_id}/retry`: back in the queue.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Retried {
    pub task_id: TaskId,
    /// Always `queued`.
    pub status: TaskStatus,
}

/// `POST /tasks/known` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KnownRequest {
    /// At most 5000 ids.
    pub task_ids: Vec<String>,
}

/// `POST /tasks/known`: the ids the orchestrator knows, in the order asked.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(bound = "")]
pub struct KnownAnswer<Known = Value> {
    /// `{"task_id", "status", "results_file"}` for each id known.
    #[schema(value_type = Vec<Object>)]
    pub known: Vec<Known>,
    /// How many ids were asked about.
    pub asked: usize,
}

/// The body of `POST /tasks`: one task object, an array of them, or a
/// task file (`{"tasks": [...]}`, an object too); the fields of a task are
/// checked by the orchestrator (422 lists every problem), as in a dropped
/// file.
pub struct Submission;

impl utoipa::PartialSchema for Submission {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Object))
            .item(ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::Object)))
            .description(Some(
                "one task, an array of tasks, or a task file {\"tasks\": [...]}; a task may say \"reuse\": false \
                 to run even when an equal completed task's result is stored (by default it is answered from it, \
                 its result naming that task in reused_from)",
            ))
            .into()
    }
}

impl ToSchema for Submission {}
