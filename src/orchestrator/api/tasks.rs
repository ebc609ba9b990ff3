//! `/tasks`: list, submit, look at, cancel and retry tasks. Answers are
//! [`crate::protocol::tasks`] types around the store's views.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{blocking, OrchestratorApi};
use crate::http::error::{mailbox, path_task_id, resource, ApiError, ErrorCode};
use crate::http::limits::{read_body, whole_param, BodyLimit};
use crate::model::{taskfile, Priority, TaskId, TaskStatus};
use crate::orchestrator::store::{
    CancelOutcome, Checkpoints, RetryOutcome, StoreError, TaskFilter, TaskOrder,
};
use crate::orchestrator::task_queue::{
    CancelTask, RetryTask, SubmitBatch, SubmitError, Submitted, WhyWaiting,
};
use crate::protocol::schema::PageOffset;
use crate::protocol::tasks::{Cancelled, Queued, Retried, Submission, TaskDetail, TaskPage, Waits};
use crate::protocol::ErrorBody;

/// The most task ids a `POST /tasks` answer lists.
const IDS_LISTED: usize = 1000;

/// The part of the OpenAPI document these routes are.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list_tasks, create_tasks, get_task, cancel_task, retry_task))]
pub struct Doc;

/// Registers `/tasks`, `/tasks/{task_id}` and `/tasks/{task_id}/retry`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/tasks")
            .route(web::get().to(list_tasks))
            .route(web::post().to(create_tasks)),
    )
    .service(
        resource("/tasks/{task_id}")
            .route(web::get().to(get_task))
            .route(web::delete().to(cancel_task)),
    )
    .service(resource("/tasks/{task_id}/retry").route(web::post().to(retry_task)));
}

impl OrchestratorApi {
    /// The `POST /tasks` limit, with the way to send more.
    fn tasks_limit(&self) -> BodyLimit {
        BodyLimit {
            bytes: self.max_request_bytes,
            name: "MAX_REQUEST_BYTES",
            hint: "split the batch into several requests, or drop it as a file into the task folder \
                   (task_queues/, up to TASK_FILE_MAX_BYTES)",
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match &e {
            SubmitError::Duplicates(d) => ApiError::new(ErrorCode::DuplicateTaskIds, e.to_string())
                .with("duplicates", &d.ids)
                .with("known", &d.first),
            SubmitError::Store(_) => ApiError::unavailable(e.to_string()),
        }
    }
}

/// `GET /tasks`'s parameters; numbers arrive as text so that a bad one
/// is named ([`whole_param`]).
#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    priority: Option<String>,
    algorithm: Option<String>,
    worker: Option<String>,
    file: Option<String>,
    sort: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

/// `GET /tasks`: one [`TaskPage`], in arrival order or `sort=`, filtered
/// (`file=`: the source file's name, `api` for `POST /tasks`).
#[utoipa::path(get, path = "/tasks", tag = "tasks",
    params(
        ("status" = Option<TaskStatus>, Query, description = "only tasks of this status"),
        ("priority" = Option<Priority>, Query, description = "only tasks of this priority"),
        ("algorithm" = Option<String>, Query, description = "only tasks of this algorithm"),
        ("worker" = Option<String>, Query, description = "only tasks that ran on this worker"),
        ("file" = Option<String>, Query, description = "only tasks of this dropped file, `api` for POST /tasks"),
        ("sort" = Option<String>, Query, description = "created_at, -created_at or priority; arrival when absent",
            pattern = "^(created_at|-created_at|priority)$"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "page size, 100 when absent"),
        ("offset" = Option<PageOffset>, Query, description = "tasks skipped"),
    ),
    responses(
        (status = 200, description = "one page of tasks", body = TaskPage),
        (status = 400, description = "a parameter out of its range (`bad_request`)", body = ErrorBody),
    ))]
async fn list_tasks(
    api: web::Data<OrchestratorApi>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let status = match &q.status {
        None => None,
        Some(s) => Some(
            s.parse::<TaskStatus>()
                .map_err(|e| ApiError::bad_request(format!("status: {e}")))?,
        ),
    };
    let priority = match &q.priority {
        None => None,
        Some(p) => Some(Priority::parse(p).ok_or_else(|| {
            ApiError::bad_request(format!("priority: expected high, medium or low, found {p:?}"))
        })?),
    };
    let limit = whole_param("limit", q.limit.as_deref())?.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit: expected 1 to 10000, found {limit}"
        )));
    }
    let offset = whole_param("offset", q.offset.as_deref())?.unwrap_or(0);
    let order = TaskOrder::of_param(q.sort.as_deref()).map_err(ApiError::bad_request)?;
    let filter = TaskFilter {
        status,
        priority,
        algorithm: q.algorithm,
        worker: q.worker,
        source: q.file,
        order,
    };
    let read = Arc::clone(&api.read);
    let (tasks, total) = blocking(move || read.tasks(&filter, limit, offset)).await?;
    Ok(HttpResponse::Ok().json(TaskPage {
        returned: tasks.len(),
        tasks,
        total,
        limit,
        offset,
    }))
}

/// `POST /tasks`: one task, a list of tasks, or a whole task file; the same
/// validation as dropped files; all or nothing. The body is at most
/// `MAX_REQUEST_BYTES`, split into tasks without one `Value` of the whole
/// (see `model::taskfile`); 400 when it is not acceptable JSON (a key
/// given twice included), 422 when tasks break the rules.
#[utoipa::path(post, path = "/tasks", tag = "tasks",
    request_body(content = Submission, content_type = "application/json"),
    responses(
        (status = 201, description = "every task was accepted: queued, or, when a completed task of the same kernel, kernel build, effective parameters and seed has its result stored and the task does not say `\"reuse\": false`, completed at once from that result (its result's `reused_from` names that task)", body = Queued),
        (status = 400, description = "not JSON, or a key given twice (`malformed_json`, `empty_body`); `errors` lists the problems", body = ErrorBody),
        (status = 409, description = "task ids the orchestrator already knows (`duplicate_task_ids`, with `duplicates` and `known`)", body = ErrorBody),
        (status = 422, description = "tasks that break the rules (`invalid_task`); `errors` lists each problem once with its path, the first 100, and `errors_not_listed` counts the rest", body = ErrorBody),
    ))]
async fn create_tasks(
    api: web::Data<OrchestratorApi>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload, api.tasks_limit(), &api.bodies).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            ErrorCode::EmptyBody,
            "request body is empty: expected a task object, an array of tasks, or a task file",
        ));
    }
    let validator = Arc::clone(&api.validator);
    // parsing a large batch takes a while: off the HTTP thread; the body
    // (and its large-body turn) is held until it is done
    let parsed = web::block(move || {
        let large = body.len() >= GIVE_BACK_AFTER_BYTES;
        let batch = taskfile::parse_request(&body, &validator).map_err(|r| refusal(&r));
        drop(body);
        // the body and every problem found are freed by now: a burst of
        // large bodies must not leave the process hundreds of MB larger
        if large {
            crate::util::platform::give_back_memory();
        }
        batch
    })
    .await
    .map_err(|e| ApiError::unavailable(format!("busy: {e}")))?;
    let batch = parsed?;
    let task_ids: Vec<TaskId> = batch
        .tasks
        .iter()
        .take(IDS_LISTED)
        .map(|t| t.task_id.clone())
        .collect();
    let queued = batch.tasks.len();
    let reply = api
        .queue
        .send(SubmitBatch {
            tasks: batch.tasks,
            ingest: None,
            source: "api".into(),
        })
        .await
        .map_err(mailbox)?;
    match reply {
        Ok(Submitted::Queued { .. }) | Ok(Submitted::AlreadyIngested) => {
            Ok(HttpResponse::Created().json(Queued {
                queued,
                task_ids,
                warnings: batch.warnings,
            }))
        }
        Err(e) => Err(e.into()),
    }
}

/// A body at least this large has the memory its reading used given back
/// to the OS once it is answered.
const GIVE_BACK_AFTER_BYTES: usize = 1 << 20;

/// The `400`/`422` answer of a refused body: its first problems, each
/// once, and how many more (the rejection itself, which may hold a
/// problem for every task, is dropped before the answer is sent).
fn refusal(r: &taskfile::Rejection) -> ApiError {
    let code = if r.malformed {
        ErrorCode::MalformedJson
    } else {
        ErrorCode::InvalidTask
    };
    let message = if r.malformed && r.summary().starts_with("malformed JSON") {
        r.summary()
    } else if r.malformed {
        format!("malformed JSON: {}", r.summary())
    } else {
        format!("invalid tasks: {}", r.summary())
    };
    let (listed, not_listed) = r.listed();
    let answer = ApiError::new(code, message).with("errors", &listed);
    if not_listed > 0 {
        answer.with("errors_not_listed", not_listed)
    } else {
        answer
    }
}

/// `GET /tasks/{id}`: status, attempts, worker, timings, result; for a
/// queued task, why it waits.
#[utoipa::path(get, path = "/tasks/{task_id}", tag = "tasks",
    params(("task_id" = TaskId, Path)),
    responses(
        (status = 200, description = "the task, its attempts, and why it waits when queued; a task answered from a stored result has one attempt with the outcome `reused` and `reused_from` at the top of its `result`", body = TaskDetail),
        (status = 400, description = "not a task id (`bad_request`)", body = ErrorBody),
        (status = 404, description = "no such task (`not_found`)", body = ErrorBody),
    ))]
async fn get_task(
    api: web::Data<OrchestratorApi>,
    checkpoints: web::Data<Checkpoints>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let task_id = path_task_id(&path)?;
    let read = Arc::clone(&api.read);
    let id = task_id.to_string();
    let found = blocking(move || read.task(&id)).await?;
    let Some((task, mut attempts)) = found else {
        return Err(ApiError::not_found(format!("no task {task_id}")));
    };
    let store = checkpoints.clone().into_inner();
    let id = task_id.clone();
    let starts = blocking(move || {
        store
            .start_steps(&id)
            .map_err(|e| StoreError::Failed(e.to_string()))
    })
    .await?;
    for attempt in &mut attempts {
        attempt.start_step = Some(starts.get(&attempt.attempt_id).copied().unwrap_or(0));
    }
    let waiting = if task.status == TaskStatus::Queued {
        let why = api
            .queue
            .send(WhyWaiting {
                task_id: task_id.clone(),
                kernel: task.kernel.clone(),
            })
            .await
            .map_err(mailbox)?;
        Waits::Queued(why)
    } else {
        Waits::NotQueued
    };
    Ok(HttpResponse::Ok().json(TaskDetail {
        checkpoint: checkpoints.info(&task_id),
        task,
        attempts,
        waiting,
    }))
}

/// `DELETE /tasks/{id}`: cancel. 409 if it already ended.
#[utoipa::path(delete, path = "/tasks/{task_id}", tag = "tasks",
    params(("task_id" = TaskId, Path)),
    responses(
        (status = 200, description = "cancelled", body = Cancelled),
        (status = 400, description = "not a task id (`bad_request`)", body = ErrorBody),
        (status = 404, description = "no such task (`not_found`)", body = ErrorBody),
        (status = 409, description = "the task has already ended (`already_ended`, with `status`)", body = ErrorBody),
    ))]
async fn cancel_task(
    api: web::Data<OrchestratorApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let task_id = path_task_id(&path)?;
    let outcome = api
        .queue
        .send(CancelTask {
            task_id: task_id.clone(),
        })
        .await
        .map_err(mailbox)??;
    match outcome {
        CancelOutcome::Cancelled { was, worker_id } => Ok(HttpResponse::Ok().json(Cancelled {
            task_id,
            status: TaskStatus::Cancelled,
            was,
            worker_id,
        })),
        CancelOutcome::AlreadyEnded { status } => Err(ApiError::new(
            ErrorCode::AlreadyEnded,
            format!("task {task_id} has already ended ({status}); nothing was changed"),
        )
        .with("status", status)),
        CancelOutcome::NotFound => Err(ApiError::not_found(format!("no task {task_id}"))),
    }
}

/// `POST /tasks/{id}/retry`: a failed or cancelled task back to the queue.
#[utoipa::path(post, path = "/tasks/{task_id}/retry", tag = "tasks",
    params(("task_id" = TaskId, Path)),
    responses(
        (status = 200, description = "queued again", body = Retried),
        (status = 400, description = "not a task id (`bad_request`)", body = ErrorBody),
        (status = 404, description = "no such task (`not_found`)", body = ErrorBody),
        (status = 409, description = "the task is not failed or cancelled (`not_retryable`, with `status`)", body = ErrorBody),
    ))]
async fn retry_task(
    api: web::Data<OrchestratorApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let task_id = path_task_id(&path)?;
    let outcome = api
        .queue
        .send(RetryTask {
            task_id: task_id.clone(),
        })
        .await
        .map_err(mailbox)??;
    match outcome {
        RetryOutcome::Queued { .. } => Ok(HttpResponse::Ok().json(Retried {
            task_id,
            status: TaskStatus::Queued,
        })),
        RetryOutcome::NotRetryable { status } => Err(ApiError::new(
            ErrorCode::NotRetryable,
            format!("task {task_id} is {status}; only failed or cancelled tasks can be retried"),
        )
        .with("status", status)),
        RetryOutcome::NotFound => Err(ApiError::not_found(format!("no task {task_id}"))),
    }
}
