//! The worker's own small answers that are not part of the orchestrator
//! ↔ worker protocol proper (`POST /cancel/{task_id}`, `GET /history`,
//! `DELETE /results/{task_id}`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{TaskId, TaskResult};

/// `POST /cancel/{task_id}`: the task was told to stop.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CancelAnswer {
    pub task_id: TaskId,
    /// Always true.
    pub cancelled: bool,
}

/// `POST /takeback/{task_id}`: what became of a task the orchestrator
/// sent ahead and asks back (see [`TakeBackOutcome`]).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TakeBackAnswer {
    pub task_id: TaskId,
    pub outcome: TakeBackOutcome,
}

/// The worker's one answer to a take-back, decided in one step of its
/// executor, so that a task is never both given back and run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TakeBackOutcome {
    /// It waited in the backlog and left it: it will not run here.
    Returned,
    /// It took a slot (it runs, or ran and its result is held): it stays.
    Started,
    /// Not here under that attempt (not arrived yet, or already answered).
    NotHere,
}

/// `GET /history`: the latest results, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(bound = "")]
pub struct HistoryAnswer<Result = TaskResult> {
    #[schema(value_type = Vec<Object>)]
    pub results: Vec<Result>,
    pub count: usize,
}

/// `DELETE /results/{task_id}`: the held result is freed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AckOneAnswer {
    pub task_id: TaskId,
    /// Always true.
    pub acknowledged: bool,
}
