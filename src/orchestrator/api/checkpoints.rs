//! `POST /tasks/{task_id}/checkpoint` (a worker sends the latest
//! checkpoint of a task it runs) and `GET /tasks/{task_id}/checkpoint` (a
//! worker resuming the task fetches it back); both behind the token like
//! every route. The bytes are the simulation's own checkpoint form
//! (`crate::sim::checkpoint`), stored as they come: the worker that
//! resumes checks them.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};

use super::{blocking, OrchestratorApi};
use crate::http::error::{path_task_id, resource, ApiError, ErrorCode};
use crate::http::limits::{read_body, BodyLimit};
use crate::model::TaskId;
use crate::orchestrator::store::{CheckpointError, Checkpoints, StoreError};
use crate::protocol::checkpoints::{CheckpointSaved, CheckpointUpload};
use crate::protocol::ErrorBody;

/// How often checkpoints of ended or purged tasks are removed.
const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// The part of the OpenAPI document these routes are.
#[derive(utoipa::OpenApi)]
#[openapi(paths(save_checkpoint, fetch_checkpoint))]
pub struct Doc;

/// Registers `/tasks/{task_id}/checkpoint`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/tasks/{task_id}/checkpoint")
            .route(web::post().to(save_checkpoint))
            .route(web::get().to(fetch_checkpoint)),
    );
}

/// Removes, every [`SWEEP_EVERY`], the checkpoints of tasks that ended.
pub fn start_sweeping(checkpoints: Arc<Checkpoints>) {
    actix_rt::spawn(async move {
        loop {
            actix_rt::time::sleep(SWEEP_EVERY).await;
            let store = Arc::clone(&checkpoints);
            match web::block(move || store.sweep()).await {
                Ok(Ok(0)) | Err(_) => {}
                Ok(Ok(n)) => tracing::debug!(removed = n, "checkpoints of ended tasks removed"),
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot remove the checkpoints of ended tasks"),
            }
        }
    });
}

impl From<CheckpointError> for ApiError {
    fn from(e: CheckpointError) -> Self {
        let message = e.to_string();
        match e {
            CheckpointError::NotLive { .. } => ApiError::not_found(message),
            CheckpointError::TooLarge { .. } => ApiError::new(ErrorCode::BodyTooLarge, message),
            CheckpointError::Full { .. } => ApiError::unavailable(message).retry_after(30),
            CheckpointError::Off | CheckpointError::Sql(_) => ApiError::unavailable(message),
        }
    }
}

/// `POST /tasks/{task_id}/checkpoint?attempt_id=A&worker_id=W&step=S`:
/// stores the body as the task's latest checkpoint.
#[utoipa::path(post, path = "/tasks/{task_id}/checkpoint", tag = "workers",
    params(("task_id" = TaskId, Path),
        ("attempt_id" = u64, Query, description = "the attempt the checkpoint comes from"),
        ("worker_id" = String, Query, description = "the worker that runs it"),
        ("step" = u64, Query, description = "steps completed when it was saved")),
    request_body(content = Vec<u8>, description = "the checkpoint, as the worker's simulation wrote it",
        content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "stored (an older step than the one held is ignored)", body = CheckpointSaved),
        (status = 400, description = "not a task id, or a query parameter missing (`bad_request`)", body = ErrorBody),
        (status = 404, description = "the attempt is not the task's live one on that worker (`not_found`)", body = ErrorBody),
        (status = 413, description = "larger than CHECKPOINT_MAX_BYTES (`body_too_large`)", body = ErrorBody),
        (status = 503, description = "checkpoints are off, or all held would pass CHECKPOINT_TOTAL_BYTES (`unavailable`)", body = ErrorBody),
    ))]
async fn save_checkpoint(
    api: web::Data<OrchestratorApi>,
    checkpoints: web::Data<Checkpoints>,
    path: web::Path<String>,
    query: web::Query<CheckpointUpload>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let task_id = path_task_id(&path)?;
    let limit = BodyLimit {
        bytes: checkpoints.max_task_bytes(),
        name: "CHECKPOINT_MAX_BYTES",
        hint: "raise CHECKPOINT_MAX_BYTES on the orchestrator",
    };
    let body = read_body(&req, payload, limit, &api.bodies).await?;
    let upload = query.into_inner();
    let store = checkpoints.into_inner();
    let id = task_id.clone();
    let bytes = body.bytes.freeze();
    let size = bytes.len() as u64;
    let step = upload.step;
    web::block(move || store.save(&id, upload.attempt_id, &upload.worker_id, upload.step, &bytes))
        .await
        .map_err(|e| ApiError::unavailable(format!("busy: {e}")))??;
    Ok(HttpResponse::Ok().json(CheckpointSaved {
        task_id,
        step,
        bytes: size,
    }))
}

/// `GET /tasks/{task_id}/checkpoint`: the latest checkpoint held, its step
/// in the `X-Checkpoint-Step` header.
#[utoipa::path(get, path = "/tasks/{task_id}/checkpoint", tag = "workers",
    params(("task_id" = TaskId, Path)),
    responses(
        (status = 200, description = "the checkpoint's bytes; `X-Checkpoint-Step` says after which step",
            content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, description = "not a task id (`bad_request`)", body = ErrorBody),
        (status = 404, description = "no checkpoint held for this task (`not_found`)", body = ErrorBody),
        (status = 503, description = "the database cannot answer now (`unavailable`)", body = ErrorBody),
    ))]
async fn fetch_checkpoint(
    checkpoints: web::Data<Checkpoints>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let task_id = path_task_id(&path)?;
    let store = checkpoints.into_inner();
    let id = task_id.clone();
    let found = blocking(move || store.get(&id).map_err(|e| StoreError::Failed(e.to_string()))).await?;
    match found {
        Some((step, bytes)) => Ok(HttpResponse::Ok()
            .content_type("application/octet-stream")
            .insert_header(("X-Checkpoint-Step", step.to_string()))
            .body(bytes)),
        None => Err(ApiError::not_found(format!(
            "no checkpoint held for task {task_id}"
        ))),
    }
}
