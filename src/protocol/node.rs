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
