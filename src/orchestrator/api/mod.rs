//! The orchestrator's REST API (seed README "Endpoints API / Orchestrator",
//! port 5000). Handlers parse, ask an actor or the read-only database
//! pool, and render JSON; errors are JSON with the right status.

pub mod dashboard;
pub mod files;
pub mod prometheus;
pub mod purge;

use std::sync::Arc;
use std::time::Instant;

use actix::Addr;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::http::error::{mailbox, path_task_id, resource, unknown_route, ApiError, ErrorCode};
use crate::http::limits::{read_body, read_typed, whole_param, BodyLimit, BodyRules};
use crate::model::taskfile;
use crate::model::{Priority, TaskStatus, Validator};
use crate::orchestrator::config_watcher::SharedConfigStatus;
use crate::orchestrator::load_balancer::{
    DrainWorker, Join, JoinRefused, JoinedMember, LoadBalancer, Proxies, RemoveWorker, ResumeWorker,
    StrategyName, WorkerBoard, WorkerInfo, WorkerState,
};
use crate::orchestrator::store::{CancelOutcome, ReadPool, RetryOutcome, StoreError, TaskFilter, TaskOrder};
use crate::orchestrator::task_queue::{
    CancelTask, QueueError, QueueStats, RetryTask, SubmitBatch, SubmitError, Submitted, TaskQueue, WhyWaiting,
};
use crate::orchestrator::worker_proxy::{InFlightAttempts, Retire};
use crate::protocol::{JoinAnswer, JoinRequest};

/// What the handlers share.
pub struct OrchestratorApi {
    pub queue: Addr<TaskQueue>,
    pub lb: Addr<LoadBalancer>,
    /// Every worker's row, read without a round trip to the LoadBalancer.
    pub workers: WorkerBoard,
    /// Whether `config_workers.json` on disk is in force.
    pub config: SharedConfigStatus,
    /// What a join answers: how often to join again.
    pub rejoin_interval: std::time::Duration,
    pub read: Arc<ReadPool>,
    pub validator: Arc<Validator>,
    /// `MAX_REQUEST_BYTES`: the largest `POST /tasks` body.
    pub max_request_bytes: usize,
    /// The body deadline and large-body turns of this server.
    pub bodies: BodyRules,
    pub started: Instant,
}

/// Largest `POST /workers/join` body: a join is a few hundred bytes.
pub const JOIN_BODY_LIMIT: usize = 64 << 10;

const JOIN_LIMIT: BodyLimit = BodyLimit {
    bytes: JOIN_BODY_LIMIT,
    name: "the largest join",
    hint: "a join is {\"id\", \"url\", \"capacity\", \"algorithms\", \"instance\", \"version\"}",
};

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

/// Registers every route of the orchestrator.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/").route(web::get().to(index)))
        .service(
            resource("/tasks")
                .route(web::get().to(list_tasks))
                .route(web::post().to(create_tasks)),
        )
        .service(
            resource("/tasks/{task_id}")
                .route(web::get().to(get_task))
                .route(web::delete().to(cancel_task)),
        )
        .service(resource("/tasks/{task_id}/retry").route(web::post().to(retry_task)))
        .service(resource("/workers").route(web::get().to(list_workers)))
        .service(resource("/workers/join").route(web::post().to(join_worker)))
        .service(
            resource("/workers/{worker_id}")
                .route(web::get().to(get_worker))
                .route(web::delete().to(remove_worker)),
        )
        .service(resource("/workers/{worker_id}/drain").route(web::post().to(drain_worker)))
        .service(resource("/workers/{worker_id}/resume").route(web::post().to(resume_worker)))
        .service(resource("/stats").route(web::get().to(stats)))
        .service(resource("/stats/performance").route(web::get().to(performance)))
        .service(resource("/health").route(web::get().to(health)))
        .default_service(web::to(unknown_route));
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::unavailable(format!("database unavailable: {e}"))
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match &e {
            SubmitError::Duplicates(d) => ApiError::new(ErrorCode::DuplicateTaskIds, e.to_string())
                .with("duplicates", json!(d.ids))
                .with("known", json!(d.first)),
            SubmitError::Store(_) => ApiError::unavailable(e.to_string()),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Unavailable(why) => ApiError::new(ErrorCode::Unavailable, why),
        }
    }
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    web::block(f)
        .await
        .map_err(|e| ApiError::unavailable(format!("busy: {e}")))?
        .map_err(ApiError::from)
}

/// `GET /`: what is here.
async fn index() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "service": "orquesta orchestrator",
        "version": env!("CARGO_PKG_VERSION"),
        "endpoints": [
            "GET /tasks?status=&priority=&algorithm=&worker=&file=&sort=&limit=&offset=",
            "POST /tasks", "POST /tasks/known", "GET /files?state=&limit=&offset=", "GET /files/{id}", "GET /tasks/{task_id}", "DELETE /tasks/{task_id}", "POST /tasks/{task_id}/retry",
            "GET /workers", "GET /workers/{worker_id}", "POST /workers/join",
            "POST /workers/{worker_id}/drain", "POST /workers/{worker_id}/resume", "DELETE /workers/{worker_id}",
            "GET /stats", "GET /stats/performance", "GET /health", "GET /metrics/prometheus", "POST /admin/purge",
            "GET / (Accept: text/html: the dashboard)", "GET /events", "GET /activity/failures",
        ],
    }))
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

/// `GET /tasks`: `{"tasks": [...], "total": N, "limit", "offset"}`, in
/// arrival order or `sort=`, filtered (`file=`: the source file's name,
/// `api` for `POST /tasks`).
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
        algorithm: q.algorithm.clone(),
        worker: q.worker.clone(),
        source: q.file.clone(),
        order,
    };
    let read = Arc::clone(&api.read);
    let (tasks, total) = blocking(move || read.tasks(&filter, limit, offset)).await?;
    Ok(HttpResponse::Ok().json(json!({
        "tasks": tasks,
        "total": total,
        "limit": limit,
        "offset": offset,
        "returned": tasks.len(),
    })))
}

/// `POST /tasks`: one task, a list of tasks, or a whole task file; the same
/// validation as dropped files; all or nothing. The body is at most
/// `MAX_REQUEST_BYTES`, split into tasks without one `Value` of the whole
/// (see `model::taskfile`); 400 when it is not acceptable JSON (a key
/// given twice included), 422 when tasks break the rules.
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
        let batch = taskfile::parse_request(&body, &validator);
        drop(body);
        batch
    })
    .await
    .map_err(|e| ApiError::unavailable(format!("busy: {e}")))?;
    let batch = parsed.map_err(|r| {
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
        ApiError::new(code, message).with("errors", json!(r.problems))
    })?;
    let ids: Vec<String> = batch
        .tasks
        .iter()
        .take(1000)
        .map(|t| t.task_id.to_string())
        .collect();
    let count = batch.tasks.len();
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
            Ok(HttpResponse::Created().json(json!({
                "queued": count,
                "task_ids": ids,
                "warnings": batch.warnings,
            })))
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /tasks/{id}`: status, attempts, worker, timings, result; for a
/// queued task, why it waits.
async fn get_task(
    api: web::Data<OrchestratorApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let task_id = path_task_id(&path)?;
    let read = Arc::clone(&api.read);
    let id = task_id.to_string();
    let found = blocking(move || read.task(&id)).await?;
    let Some((view, attempts)) = found else {
        return Err(ApiError::not_found(format!("no task {task_id}")));
    };
    let mut out = serde_json::to_value(&view).unwrap_or_default();
    // the list under the name docs/api.md gives it; the number is `attempt_count`
    out["attempts"] = json!(attempts);
    if view.status == TaskStatus::Queued {
        let waiting = api
            .queue
            .send(WhyWaiting {
                task_id: task_id.clone(),
                kernel: view.kernel.clone(),
            })
            .await
            .map_err(mailbox)?;
        out["waiting"] = json!(waiting);
    }
    Ok(HttpResponse::Ok().json(out))
}

/// `DELETE /tasks/{id}`: cancel. 409 if it already ended.
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
        CancelOutcome::Cancelled { was, worker_id } => Ok(HttpResponse::Ok().json(json!({
            "task_id": task_id, "status": TaskStatus::Cancelled, "was": was, "worker_id": worker_id,
        }))),
        CancelOutcome::AlreadyEnded { status } => Err(ApiError::new(
            ErrorCode::AlreadyEnded,
            format!("task {task_id} has already ended ({status}); nothing was changed"),
        )
        .with("status", json!(status))),
        CancelOutcome::NotFound => Err(ApiError::not_found(format!("no task {task_id}"))),
    }
}

/// `POST /tasks/{id}/retry`: a failed or cancelled task back to the queue.
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
        RetryOutcome::Queued { .. } => {
            Ok(HttpResponse::Ok().json(json!({"task_id": task_id, "status": TaskStatus::Queued})))
        }
        RetryOutcome::NotRetryable { status } => Err(ApiError::new(
            ErrorCode::NotRetryable,
            format!("task {task_id} is {status}; only failed or cancelled tasks can be retried"),
        )
        .with("status", json!(status))),
        RetryOutcome::NotFound => Err(ApiError::not_found(format!("no task {task_id}"))),
    }
}

/// `GET /workers`: every worker, and whether the workers file is in force.
async fn list_workers(api: web::Data<OrchestratorApi>) -> Result<HttpResponse, ApiError> {
    let workers = api.workers.list();
    let up = workers.iter().filter(|w| w.up).count();
    let config = api
        .config
        .read()
        .map(|c| c.clone())
        .unwrap_or_else(|e| e.into_inner().clone());
    Ok(HttpResponse::Ok()
        .json(json!({"workers": workers, "total": workers.len(), "up": up, "config": config})))
}

fn no_worker(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "no worker {id:?}: not in config_workers.json and not joined (GET /workers lists them)"
    ))
}

/// `GET /workers/{id}`: one worker with the attempts it runs now.
async fn get_worker(
    api: web::Data<OrchestratorApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let Some(w) = api.workers.get(&id) else {
        return Err(no_worker(&id));
    };
    let proxies = api.lb.send(Proxies { id: Some(id) }).await.map_err(mailbox)?;
    let running = match proxies.first() {
        Some(p) => p.send(InFlightAttempts).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let mut out = serde_json::to_value(&w).unwrap_or_default();
    // running on the worker, and sent ahead waiting there for a slot
    out["running_tasks"] = json!(running
        .iter()
        .filter_map(|a| a
            .running_seconds
            .map(|s| json!({"task_id": a.task_id, "attempt_id": a.attempt_id, "elapsed_seconds": s})))
        .collect::<Vec<_>>());
    out["backlog_tasks"] = json!(running
        .iter()
        .filter(|a| a.running_seconds.is_none())
        .map(
            |a| json!({"task_id": a.task_id, "attempt_id": a.attempt_id, "sent_seconds_ago": a.sent_seconds})
        )
        .collect::<Vec<_>>());
    Ok(HttpResponse::Ok().json(out))
}

/// `POST /workers/join`: a worker registers itself (and again every
/// `rejoin_interval_seconds`); 409 `worker_id_taken` when its id is
/// another live worker's.
async fn join_worker(
    api: web::Data<OrchestratorApi>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let join: JoinRequest = read_typed(
        &req,
        body,
        JOIN_LIMIT,
        &api.bodies,
        "{\"id\", \"url\": \"http://HOST:PORT\", \"capacity\", \"algorithms\", \"instance\", \"version\"}",
    )
    .await?;
    let entry =
        crate::orchestrator::config::member_entry(&join.id, &join.url, join.capacity, &join.algorithms)
            .map_err(|problems| {
                ApiError::bad_request(format!("invalid join: {}", problems.join("; ")))
                    .with("errors", json!(problems))
            })?;
    let member = JoinedMember {
        entry,
        instance: join.instance,
    };
    match api.lb.send(Join { member }).await.map_err(mailbox)? {
        Ok(source) => Ok(HttpResponse::Ok().json(JoinAnswer {
            id: join.id,
            source,
            rejoin_interval_seconds: api.rejoin_interval.as_secs_f64(),
        })),
        Err(e @ JoinRefused::Taken { .. }) => {
            let JoinRefused::Taken { address, .. } = &e;
            Err(ApiError::new(ErrorCode::WorkerIdTaken, e.to_string()).with("address", json!(address)))
        }
    }
}

/// `POST /workers/{id}/drain`: no new tasks; running ones finish.
async fn drain_worker(
    api: web::Data<OrchestratorApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    new_state(&id, api.lb.send(DrainWorker { id: id.clone() }).await)
}

/// `POST /workers/{id}/resume`: undoes a drain.
async fn resume_worker(
    api: web::Data<OrchestratorApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    new_state(&id, api.lb.send(ResumeWorker { id: id.clone() }).await)
}

/// The answer to a drain or a resume: the worker's new state, or 404.
fn new_state(
    id: &str,
    answer: Result<Option<WorkerState>, actix::MailboxError>,
) -> Result<HttpResponse, ApiError> {
    let state = answer.map_err(mailbox)?.ok_or_else(|| no_worker(id))?;
    Ok(HttpResponse::Ok().json(json!({"id": id, "state": state})))
}

/// `DELETE /workers/{id}`: removed now; its running tasks go back to the
/// queue (not counted as attempts) and are cancelled on the worker.
async fn remove_worker(
    api: web::Data<OrchestratorApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let proxy = api
        .lb
        .send(RemoveWorker { id: id.clone() })
        .await
        .map_err(mailbox)?
        .ok_or_else(|| no_worker(&id))?;
    let requeued = match proxy {
        Some(p) => p.send(Retire).await.unwrap_or(0),
        None => 0,
    };
    Ok(HttpResponse::Ok().json(json!({"id": id, "requeued": requeued})))
}

fn worker_summary(workers: &[WorkerInfo]) -> Value {
    let capacity: usize = workers.iter().filter(|w| w.up).map(|w| w.capacity).sum();
    let in_flight: usize = workers.iter().map(|w| w.in_flight).sum();
    json!({
        "total": workers.len(),
        "up": workers.iter().filter(|w| w.up).count(),
        "capacity_up": capacity,
        "in_flight": in_flight,
        "utilisation": if capacity > 0 { in_flight as f64 / capacity as f64 } else { 0.0 },
    })
}

/// The kept counts as `/stats` and the dashboard show them: the total,
/// every status (zeros included) and priority → status → count.
pub(super) fn counts_json(
    by_status: &[(TaskStatus, u64)],
    by_priority: &[(Priority, TaskStatus, u64)],
) -> (u64, Map<String, Value>, Map<String, Value>) {
    let mut status: Map<String, Value> = TaskStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), json!(0)))
        .collect();
    let mut total = 0;
    for (s, n) in by_status {
        total += n;
        status.insert(s.as_str().to_string(), json!(n));
    }
    let mut priority: Map<String, Value> = Map::new();
    for (p, s, n) in by_priority {
        let entry = priority.entry(p.as_str()).or_insert_with(|| json!({}));
        entry[s.as_str()] = json!(n);
    }
    (total, status, priority)
}

/// `GET /stats`: the orchestrator at a glance.
async fn stats(api: web::Data<OrchestratorApi>) -> Result<HttpResponse, ApiError> {
    let read = Arc::clone(&api.read);
    let (by_status, by_priority) = blocking(move || read.counts()).await?;
    let live = api.queue.send(QueueStats).await.map_err(mailbox)?;
    let workers = api.workers.list();
    let strategy = api.lb.send(StrategyName).await.map_err(mailbox)?;
    let (total, status_map, prio) = counts_json(&by_status, &by_priority);
    Ok(HttpResponse::Ok().json(json!({
        "tasks": {"total": total, "by_status": status_map, "by_priority": prio},
        "workers": worker_summary(&workers),
        "queue": live.queue,
        "since_start": live.since_start,
        "throughput": live.throughput,
        "uptime_seconds": api.started.elapsed().as_secs_f64(),
        "load_balancing_algorithm": strategy,
        "version": env!("CARGO_PKG_VERSION"),
    })))
}

/// `GET /stats/performance`: throughput, queue wait and execution time per
/// algorithm and per worker, utilisation.
async fn performance(api: web::Data<OrchestratorApi>) -> Result<HttpResponse, ApiError> {
    let live = api.queue.send(QueueStats).await.map_err(mailbox)?;
    let workers = api.workers.list();
    if !live.performance_monitoring {
        return Ok(HttpResponse::Ok().json(json!({
            "performance_monitoring": false,
            "note": "PERFORMANCE_MONITORING=false: only throughput is collected",
            "throughput": live.throughput,
        })));
    }
    Ok(HttpResponse::Ok().json(json!({
        "performance_monitoring": true,
        "throughput": live.throughput,
        "queue_wait_seconds": live.queue_wait_seconds,
        "execution_time_seconds": live.execution_time_seconds,
        "execution_time_by_worker_seconds": live.execution_time_by_worker_seconds,
        "utilisation": worker_summary(&workers),
        "workers": workers.iter().map(|w| json!({
            "id": w.id, "load": w.load, "in_flight": w.in_flight, "capacity": w.capacity,
            "tasks_completed": w.tasks_completed, "mean_execution_time": w.mean_execution_time,
        })).collect::<Vec<_>>(),
    })))
}

/// `GET /health`. The database part is cheap (no scan): damage met by
/// any query since start, else a one-row read; a database that fails
/// makes the answer 503 `unhealthy` with `database: "error: …"`.
async fn health(api: web::Data<OrchestratorApi>) -> Result<HttpResponse, ApiError> {
    let workers = api.workers.list();
    let read = Arc::clone(&api.read);
    let db = blocking(move || Ok::<_, StoreError>(read.health()))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    let up = workers.iter().filter(|w| w.up).count();
    let status = if db.is_err() {
        "unhealthy"
    } else if up == 0 {
        "degraded"
    } else {
        "healthy"
    };
    let code = if db.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(HttpResponse::build(code).json(json!({
        "status": status,
        "database": match &db {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("error: {e}"),
        },
        "workers_up": up,
        "workers_total": workers.len(),
        "uptime_seconds": api.started.elapsed().as_secs_f64(),
        "version": env!("CARGO_PKG_VERSION"),
    })))
}
