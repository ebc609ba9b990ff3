//! Checkpoints on the wire: a worker started with `--join` uploads the
//! latest checkpoint of a task it runs (`POST /tasks/{id}/checkpoint`, the
//! checkpoint's bytes as the body), and a worker told to resume a task
//! (the execute body's [`CHECKPOINT_STEP`]) fetches it back
//! (`GET /tasks/{id}/checkpoint`). `GET /tasks/{id}` shows the one held
//! ([`CheckpointInfo`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{AttemptId, TaskId, WorkerId};

/// The field of an `/execute` body that says the orchestrator holds a
/// checkpoint of the task, at this step: the worker fetches it and resumes.
pub const CHECKPOINT_STEP: &str = "checkpoint_step";

/// Takes [`CHECKPOINT_STEP`] out of an `/execute` body (before the task is
/// validated); a value that is not a whole number counts as none.
pub fn take_checkpoint_step(body: &mut serde_json::Value) -> Option<u64> {
    body.as_object_mut()?.remove(CHECKPOINT_STEP)?.as_u64()
}

/// The query of `POST /tasks/{task_id}/checkpoint`: who sends it, from
/// which attempt, after which step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointUpload {
    pub attempt_id: AttemptId,
    pub worker_id: WorkerId,
    /// Steps completed when it was saved.
    pub step: u64,
}

/// `POST /tasks/{task_id}/checkpoint` → 200: the checkpoint is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckpointSaved {
    pub task_id: TaskId,
    pub step: u64,
    pub bytes: u64,
}

/// `GET /tasks/{task_id}`'s `checkpoint`: the latest one the orchestrator
/// holds for the task (absent when none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckpointInfo {
    /// Steps completed when it was saved.
    pub step: u64,
    /// When the orchestrator stored it (ISO 8601, UTC).
    pub saved_at: String,
    /// Its size.
    pub bytes: u64,
}
