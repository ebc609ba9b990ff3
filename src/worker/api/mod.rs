//! The worker node's HTTP front (seed README "Endpoints API / Worker" and
//! DESIGN.md "Orchestrator ↔ worker protocol"). Every handler parses,
//! sends one message to the [`Executor`], and renders the answer.

pub mod openapi;
pub mod prometheus;

use std::sync::Arc;

use actix::Addr;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use crate::http::error::{mailbox, path_task_id, resource, unknown_route, ApiError, ErrorCode};
use crate::http::limits::{read_json, read_typed, whole_param, BodyLimit, BodyRules};
use crate::model::taskfile::{EXECUTE_ENVELOPE_BYTES, MAX_TASK_BYTES};
use crate::model::{TaskId, Validator};
use crate::protocol::node::{AckOneAnswer, CancelAnswer, HistoryAnswer};
use crate::protocol::{
    AckAnswer, AckRequest, BatchEvent, BatchRequest, CurrentAnswer, ErrorBody, ExecuteRequest, Health,
    HealthAnswer, NodeState, StatusAnswer, BATCH_CONTENT_TYPE, BATCH_TICK_SECONDS, MAX_BATCH_TASKS,
};
use crate::worker::executor::{
    AckResults, Cancel, Execute, ExecuteBatch, Executor, GetCurrent, GetHistory, GetMetrics, GetResult,
    GetStatus, Refusal,
};

/// Largest `/execute` body: one task of at most [`MAX_TASK_BYTES`] (the
/// orchestrator accepts none larger) and the attempt id (1 MiB).
pub const EXECUTE_BODY_LIMIT: usize = MAX_TASK_BYTES + EXECUTE_ENVELOPE_BYTES;

const EXECUTE_LIMIT: BodyLimit = BodyLimit {
    bytes: EXECUTE_BODY_LIMIT,
    name: "the largest task a worker runs",
    hint: "a task is normally a few hundred bytes: move large data out of the task",
};

/// Largest `/execute/batch` body: the orchestrator fills a batch up to
/// [`BATCH_FILL_BYTES`](super::protocol::BATCH_FILL_BYTES), or sends one
/// task alone that is bigger.
pub const BATCH_BODY_LIMIT: usize = 2 << 20;

const BATCH_LIMIT: BodyLimit = BodyLimit {
    bytes: BATCH_BODY_LIMIT,
    name: "the largest batch a worker takes",
    hint: "send fewer tasks per batch",
};

/// Largest `POST /results/ack` body: about 30,000 task ids of the longest
/// kind (the orchestrator sends them 512 at a time, more only after the
/// worker was unreachable for a while).
pub const ACK_BODY_LIMIT: usize = 4 << 20;

const ACK_LIMIT: BodyLimit = BodyLimit {
    bytes: ACK_BODY_LIMIT,
    name: "the largest acknowledgement",
    hint: "acknowledge in several requests",
};

/// What the handlers share.
pub struct WorkerApi {
    pub executor: Addr<Executor>,
    pub validator: Arc<Validator>,
    pub history_size: usize,
    /// The body deadline and large-body turns of this server.
    pub bodies: BodyRules,
}

/// The part of the OpenAPI document these routes are.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    execute,
    execute_batch,
    cancel,
    status,
    health,
    metrics,
    history,
    current,
    get_result,
    ack_one,
    ack_many
))]
pub struct Doc;

/// Registers every route of the worker node.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/execute").route(web::post().to(execute)))
        .service(resource("/execute/batch").route(web::post().to(execute_batch)))
        .service(resource("/cancel/{task_id}").route(web::post().to(cancel)))
        .service(resource("/status").route(web::get().to(status)))
        .service(resource("/health").route(web::get().to(health)))
        .service(resource("/metrics").route(web::get().to(metrics)))
        .service(resource("/history").route(web::get().to(history)))
        .service(resource("/current").route(web::get().to(current)))
        .service(resource("/results/ack").route(web::post().to(ack_many)))
        .service(
            resource("/results/{task_id}")
                .route(web::get().to(get_result))
                .route(web::delete().to(ack_one)),
        )
        .configure(prometheus::configure)
        .configure(openapi::configure)
        .default_service(web::to(unknown_route));
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        let message = refusal.to_string();
        match refusal {
            Refusal::Full { running, capacity } => ApiError::new(ErrorCode::WorkerFull, message)
                .with("running", running)
                .with("capacity", capacity)
                .retry_after(1),
            Refusal::AlreadyRunning { task_id, attempt_id } => {
                ApiError::new(ErrorCode::AlreadyRunning, message)
                    .with("task_id", task_id)
                    .with("attempt_id", attempt_id)
            }
            Refusal::Draining => ApiError::new(ErrorCode::ShuttingDown, message).retry_after(5),
        }
    }
}

/// `POST /execute`: runs one task and answers with its result when it ends.
#[utoipa::path(post, path = "/execute", tag = "tasks",
    request_body(content = Object, description = "a task, as in a task file, with the `attempt_id` of this run (optional)",
        content_type = "application/json"),
    responses(
        (status = 200, description = "the task ended: its result (`result.status` completed, failed or cancelled)", body = Object),
        (status = 409, description = "it runs here already (`already_running`, with `task_id` and `attempt_id`)", body = ErrorBody),
        (status = 422, description = "the task breaks the rules (`invalid_task`); `errors` lists every problem", body = ErrorBody),
        (status = 429, description = "every slot is busy (`worker_full`, with `running` and `capacity`); `Retry-After` says when to try again", body = ErrorBody),
    ))]
async fn execute(
    api: web::Data<WorkerApi>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(&req, payload, EXECUTE_LIMIT, &api.bodies).await?;
    let (task, attempt_id) = read_task(&api, body)?;
    let receiver = api
        .executor
        .send(Execute { task, attempt_id })
        .await
        .map_err(mailbox)?
        .map_err(ApiError::from)?;
    let result = receiver
        .await
        .map_err(|_| ApiError::new(ErrorCode::ShuttingDown, "worker stopped before the task finished"))?;
    Ok(HttpResponse::Ok().json(&*result))
}

/// One `/execute` body: the attempt id and the validated task.
fn read_task(
    api: &WorkerApi,
    body: serde_json::Value,
) -> Result<(crate::model::Task, Option<crate::model::AttemptId>), ApiError> {
    let (attempt_id, mut body) = ExecuteRequest::split(body).map_err(|bad| {
        ApiError::invalid(
            "invalid attempt_id",
            &[crate::model::FieldError::new(
                crate::protocol::ATTEMPT_ID,
                bad.to_string(),
            )],
        )
    })?;
    let checkpoint_step = crate::protocol::checkpoints::take_checkpoint_step(&mut body);
    let mut task = api.validator.task(&body, "").map_err(|errors| {
        let summary = errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        ApiError::invalid(format!("invalid task: {summary}"), &errors)
    })?;
    task.checkpoint_step = checkpoint_step;
    Ok((task, attempt_id))
}

/// `POST /execute/batch`: admits every task it can (running or waiting
/// for a slot) and streams, one JSON line each, when a task starts, ends
/// or is refused, until every task of the batch has ended. A requester
/// that goes away does not stop running tasks (their results are held);
/// its waiting tasks are dropped.
#[utoipa::path(post, path = "/execute/batch", tag = "tasks",
    request_body = BatchRequest,
    responses(
        (status = 200, description = "one JSON event a line (`started`, `result`, `refused`, `tick`, `end`) until every task has ended",
            content_type = "application/x-ndjson", body = String),
    ))]
async fn execute_batch(
    api: web::Data<WorkerApi>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = read_json(&req, payload, BATCH_LIMIT, &api.bodies).await?;
    let (tasks, slots) = match body {
        serde_json::Value::Object(mut o) => match (o.remove("tasks"), o.remove("slots")) {
            (_, Some(s)) if !s.is_null() && s.as_u64().is_none_or(|n| n == 0) => {
                return Err(ApiError::bad_request(format!(
                    "slots: expected a whole number ≥ 1, found {}",
                    crate::model::describe(&s)
                )))
            }
            (Some(serde_json::Value::Array(tasks)), slots) => {
                (tasks, slots.and_then(|s| s.as_u64()).map(|n| n as usize))
            }
            (other, _) => {
                let found = other.as_ref().map_or("nothing".into(), crate::model::describe);
                return Err(ApiError::bad_request(format!(
                    "tasks: expected an array of /execute bodies, found {found}"
                )));
            }
        },
        other => {
            return Err(ApiError::bad_request(format!(
                "expected a JSON object {{\"tasks\": [...]}}, found {}",
                crate::model::describe(&other)
            )))
        }
    };
    if tasks.len() > MAX_BATCH_TASKS {
        return Err(ApiError::new(
            ErrorCode::BodyTooLarge,
            format!(
                "a batch holds at most {MAX_BATCH_TASKS} tasks, this one {}: send fewer per request",
                tasks.len()
            ),
        ));
    }
    let (events, lines) = tokio::sync::mpsc::unbounded_channel();
    let mut admitted = Vec::with_capacity(tasks.len());
    for (index, raw) in tasks.into_iter().enumerate() {
        let task_id = raw
            .get("task_id")
            .and_then(|v| v.as_str())
            .and_then(|s| crate::model::TaskId::parse(s).ok());
        let attempt_id = raw
            .get(crate::protocol::ATTEMPT_ID)
            .and_then(|v| v.as_u64())
            .map(crate::model::AttemptId::new);
        match read_task(&api, raw) {
            Ok((task, attempt_id)) => admitted.push((index, task, attempt_id)),
            Err(e) => {
                let _ = events.send(BatchEvent::Refused {
                    index,
                    task_id,
                    attempt_id,
                    status: e.code.status().as_u16(),
                    retry_after: e.retry_after,
                    body: *e.body,
                });
            }
        }
    }
    if !admitted.is_empty() {
        api.executor
            .send(ExecuteBatch {
                tasks: admitted,
                slots,
                events: events.clone(),
            })
            .await
            .map_err(mailbox)?;
    }
    drop(events);
    Ok(HttpResponse::Ok()
        .content_type(BATCH_CONTENT_TYPE)
        .streaming(batch_lines(lines)))
}

/// The answer of a batch: each chunk carries every line ready at that
/// moment, a tick when nothing happened for a while, `end` last.
fn batch_lines(
    lines: tokio::sync::mpsc::UnboundedReceiver<BatchEvent<std::sync::Arc<crate::model::TaskResult>>>,
) -> impl futures_util::Stream<Item = Result<web::Bytes, std::convert::Infallible>> {
    use futures_util::future::{select, Either};
    let tick = std::time::Duration::from_secs(BATCH_TICK_SECONDS);
    futures_util::stream::unfold(Some(lines), move |lines| async move {
        let mut lines = lines?;
        let mut chunk = Vec::with_capacity(512);
        let next = {
            let recv = std::pin::pin!(lines.recv());
            let timer = std::pin::pin!(actix_rt::time::sleep(tick));
            match select(recv, timer).await {
                Either::Left((next, _)) => Some(next),
                Either::Right(_) => None,
            }
        };
        match next {
            // a write that fails tells actix the requester has gone; the
            // stream is then dropped, and the Executor sees it closed
            None => write_line(&mut chunk, &BatchEvent::Tick),
            Some(None) => {
                write_line(&mut chunk, &BatchEvent::End);
                return Some((Ok(web::Bytes::from(chunk)), None));
            }
            Some(Some(first)) => {
                write_line(&mut chunk, &first);
                while let Ok(next) = lines.try_recv() {
                    write_line(&mut chunk, &next);
                }
            }
        }
        Some((Ok(web::Bytes::from(chunk)), Some(lines)))
    })
}

/// One event as a line of JSON.
fn write_line(out: &mut Vec<u8>, event: &BatchEvent<std::sync::Arc<crate::model::TaskResult>>) {
    serde_json::to_writer(&mut *out, event).expect("events serialize");
    out.push(b'\n');
}

/// `POST /cancel/{task_id}`.
#[utoipa::path(post, path = "/cancel/{task_id}", tag = "tasks",
    params(("task_id" = TaskId, Path)),
    responses(
        (status = 200, description = "told to stop", body = CancelAnswer),
        (status = 400, description = "not a task id (`bad_request`)", body = ErrorBody),
        (status = 404, description = "not running here (`not_found`)", body = ErrorBody),
    ))]
async fn cancel(api: web::Data<WorkerApi>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let task_id = path_task_id(&path)?;
    let running = api
        .executor
        .send(Cancel {
            task_id: task_id.clone(),
        })
        .await
        .map_err(mailbox)?;
    if running {
        Ok(HttpResponse::Ok().json(CancelAnswer {
            task_id,
            cancelled: true,
        }))
    } else {
        Err(ApiError::not_found(format!(
            "task {task_id} is not running on this worker"
        )))
    }
}

/// `GET /status`.
#[utoipa::path(get, path = "/status", tag = "node",
    responses((status = 200, description = "capacity, algorithms, state and counts", body = StatusAnswer)))]
async fn status(api: web::Data<WorkerApi>) -> Result<HttpResponse, ApiError> {
    let status = api.executor.send(GetStatus).await.map_err(mailbox)?;
    Ok(HttpResponse::Ok().json(status))
}

/// `GET /health`: 200 while the worker takes tasks, 503 while it drains.
#[utoipa::path(get, path = "/health", tag = "node", security(()),
    responses(
        (status = 200, description = "takes tasks", body = HealthAnswer),
        (status = 503, description = "draining: shutting down", body = HealthAnswer),
    ))]
async fn health(api: web::Data<WorkerApi>) -> Result<HttpResponse, ApiError> {
    let s = api.executor.send(GetStatus).await.map_err(mailbox)?;
    let draining = s.state == NodeState::Draining;
    let body = HealthAnswer {
        status: if draining {
            Health::Draining
        } else {
            Health::Healthy
        },
        worker_id: s.worker_id,
        running: s.running,
        capacity: s.capacity,
        version: s.version,
    };
    let code = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(code).json(body))
}

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "node",
    responses((status = 200, description = "the seed's JSON metrics", body = Object)))]
async fn metrics(api: web::Data<WorkerApi>) -> Result<HttpResponse, ApiError> {
    let m = api.executor.send(GetMetrics).await.map_err(mailbox)?;
    Ok(HttpResponse::Ok().json(m))
}

/// `GET /history`'s parameter, as text so that a bad one is named.
#[derive(Deserialize)]
struct HistoryQuery {
    limit: Option<String>,
}

/// `GET /history[?limit=N]`: the latest results, newest first.
#[utoipa::path(get, path = "/history", tag = "tasks",
    params(("limit" = Option<u64>, Query, minimum = 0, description = "how many, the kept number when absent")),
    responses(
        (status = 200, description = "the latest results, newest first", body = HistoryAnswer),
        (status = 400, description = "not a whole number (`bad_request`)", body = ErrorBody),
    ))]
async fn history(
    api: web::Data<WorkerApi>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = whole_param("limit", query.limit.as_deref())?.unwrap_or(api.history_size);
    let results = api.executor.send(GetHistory { limit }).await.map_err(mailbox)?;
    let results: Vec<&crate::model::TaskResult> = results.iter().map(|r| &**r).collect();
    Ok(HttpResponse::Ok().json(HistoryAnswer {
        count: results.len(),
        results,
    }))
}

/// `GET /current`: tasks running now.
#[utoipa::path(get, path = "/current", tag = "tasks",
    responses((status = 200, description = "the tasks running now, with their progress", body = CurrentAnswer)))]
async fn current(api: web::Data<WorkerApi>) -> Result<HttpResponse, ApiError> {
    let tasks = api.executor.send(GetCurrent).await.map_err(mailbox)?;
    Ok(HttpResponse::Ok().json(CurrentAnswer::new(tasks)))
}

/// `GET /results/{task_id}`: the last finished result held for the task.
#[utoipa::path(get, path = "/results/{task_id}", tag = "results",
    params(("task_id" = TaskId, Path)),
    responses(
        (status = 200, description = "the result held for the task", body = Object),
        (status = 400, description = "not a task id (`bad_request`)", body = ErrorBody),
        (status = 404, description = "no result held (`not_found`)", body = ErrorBody),
    ))]
async fn get_result(api: web::Data<WorkerApi>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let task_id = path_task_id(&path)?;
    match api
        .executor
        .send(GetResult {
            task_id: task_id.clone(),
        })
        .await
        .map_err(mailbox)?
    {
        Some(result) => Ok(HttpResponse::Ok().json(&*result)),
        None => Err(ApiError::not_found(format!(
            "no result held for task {task_id} (never run here, still running, or already acknowledged)"
        ))),
    }
}

/// `DELETE /results/{task_id}`: acknowledges (frees) a held result.
#[utoipa::path(delete, path = "/results/{task_id}", tag = "results",
    params(("task_id" = TaskId, Path)),
    responses(
        (status = 200, description = "the result is freed", body = AckOneAnswer),
        (status = 400, description = "not a task id (`bad_request`)", body = ErrorBody),
        (status = 404, description = "no result held (`not_found`)", body = ErrorBody),
    ))]
async fn ack_one(api: web::Data<WorkerApi>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let task_id = path_task_id(&path)?;
    let freed = api
        .executor
        .send(AckResults {
            task_ids: vec![task_id.clone()],
        })
        .await
        .map_err(mailbox)?;
    if freed == 1 {
        Ok(HttpResponse::Ok().json(AckOneAnswer {
            task_id,
            acknowledged: true,
        }))
    } else {
        Err(ApiError::not_found(format!("no result held for task {task_id}")))
    }
}

/// `POST /results/ack` with `{"task_ids": [...]}`: acknowledges many.
/// The body is read straight into the id list (no `Value` tree), at most
/// [`ACK_BODY_LIMIT`].
#[utoipa::path(post, path = "/results/ack", tag = "results",
    request_body = AckRequest,
    responses((status = 200, description = "how many were freed", body = AckAnswer)))]
async fn ack_many(
    api: web::Data<WorkerApi>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let AckRequest { task_ids } = read_typed(
        &req,
        payload,
        ACK_LIMIT,
        &api.bodies,
        "{\"task_ids\": [\"id\", ...]}",
    )
    .await?;
    let requested = task_ids.len();
    let freed = api
        .executor
        .send(AckResults { task_ids })
        .await
        .map_err(mailbox)?;
    Ok(HttpResponse::Ok().json(AckAnswer {
        requested,
        acknowledged: freed,
    }))
}
