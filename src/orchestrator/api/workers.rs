//! `/workers`: the membership as the API sees it: list, look at, join,
//! drain, resume and remove workers. Answers are
//! [`crate::protocol::workers`] types around the Membership's rows.

use actix_web::{web, HttpRequest, HttpResponse};

use super::OrchestratorApi;
use crate::http::error::{mailbox, resource, ApiError, ErrorCode};
use crate::http::limits::{read_typed, whole_param, BodyLimit};
use crate::model::{TaskId, WorkerId};
use crate::orchestrator::board::WorkerState;
use crate::orchestrator::membership::{
    DrainWorker, Join, JoinRefused, JoinedMember, Proxies, RemoveWorker, ResumeWorker,
};
use crate::orchestrator::task_queue::LiftQuarantine;
use crate::orchestrator::worker_proxy::{InFlightAttempts, RetireRemoved};
use crate::protocol::schema::{PageOffset, WorkersLimit};
use crate::protocol::workers::{
    BacklogTask, RunningTask, WorkerDetail, WorkerList, WorkerRemoved, WorkerStateChanged,
};
use crate::protocol::{ErrorBody, JoinAnswer, JoinRequest};

/// Largest `POST /workers/join` body: a join is a few hundred bytes.
pub const JOIN_BODY_LIMIT: usize = 64 << 10;

const JOIN_LIMIT: BodyLimit = BodyLimit {
    bytes: JOIN_BODY_LIMIT,
    name: "the largest join",
    hint: "a join is {\"id\", \"url\", \"capacity\", \"algorithms\", \"instance\", \"version\"}",
};

/// The part of the OpenAPI document these routes are.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list_workers,
    get_worker,
    join_worker,
    drain_worker,
    resume_worker,
    remove_worker
))]
pub struct Doc;

/// Registers `/workers`, `/workers/join` and `/workers/{worker_id}…`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/workers").route(web::get().to(list_workers)))
        .service(resource("/workers/join").route(web::post().to(join_worker)))
        .service(
            resource("/workers/{worker_id}")
                .route(web::get().to(get_worker))
                .route(web::delete().to(remove_worker)),
        )
        .service(resource("/workers/{worker_id}/drain").route(web::post().to(drain_worker)))
        .service(resource("/workers/{worker_id}/resume").route(web::post().to(resume_worker)));
}

/// `GET /workers` query: a page of the list (every worker when absent).
#[derive(serde::Deserialize)]
struct ListQuery {
    limit: Option<String>,
    offset: Option<String>,
}

/// `GET /workers`: every worker (or a page: `?offset=&limit=`), counts
/// over all of them, and whether the workers file is in force. Only the
/// rows of the page are built, so a page costs the same at 10 workers as
/// at 10,000.
#[utoipa::path(get, path = "/workers", tag = "workers",
    params(
        ("limit" = Option<WorkersLimit>, Query, description = "at most this many rows (0: counts only); every worker when absent"),
        ("offset" = Option<PageOffset>, Query, description = "rows skipped, in configuration order"),
    ),
    responses(
        (status = 200, description = "every worker, or the page asked for, with counts over all", body = WorkerList),
        (status = 400, description = "limit or offset not a whole number (`bad_request`)", body = ErrorBody),
    ))]
async fn list_workers(
    api: web::Data<OrchestratorApi>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = whole_param("limit", q.limit.as_deref())?.unwrap_or(usize::MAX);
    let offset = whole_param("offset", q.offset.as_deref())?.unwrap_or(0);
    let (workers, counts) = api.workers.page(offset, limit);
    let config = api
        .config
        .read()
        .map(|c| c.clone())
        .unwrap_or_else(|e| e.into_inner().clone());
    Ok(HttpResponse::Ok().json(WorkerList {
        total: counts.total,
        up: counts.up,
        by_state: counts
            .by_state
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        offset,
        workers,
        config,
    }))
}

fn no_worker(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "no worker {id:?}: not in config_workers.json and not joined (GET /workers lists them)"
    ))
}

/// `GET /workers/{id}`: one worker with the attempts it runs now and
/// those sent ahead, waiting there for a slot.
#[utoipa::path(get, path = "/workers/{worker_id}", tag = "workers",
    params(("worker_id" = String, Path)),
    responses(
        (status = 200, description = "the worker and the attempts on it", body = WorkerDetail),
        (status = 404, description = "no such worker (`not_found`)", body = ErrorBody),
    ))]
async fn get_worker(
    api: web::Data<OrchestratorApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let Some(worker) = api.workers.get(&id) else {
        return Err(no_worker(&id));
    };
    let proxies = api.lb.send(Proxies { id: Some(id) }).await.map_err(mailbox)?;
    let here = match proxies.first() {
        Some(p) => p.send(InFlightAttempts).await.unwrap_or_default(),
        None => Vec::new(),
    };
    let mut running_tasks = Vec::new();
    let mut backlog_tasks = Vec::new();
    for a in here {
        // ids in flight were checked when they arrived
        let Ok(task_id) = TaskId::parse(a.task_id.as_str()) else {
            continue;
        };
        match a.running_seconds {
            Some(elapsed_seconds) => running_tasks.push(RunningTask {
                task_id,
                attempt_id: a.attempt_id,
                elapsed_seconds,
            }),
            None => backlog_tasks.push(BacklogTask {
                task_id,
                attempt_id: a.attempt_id,
                sent_seconds_ago: a.sent_seconds,
            }),
        }
    }
    Ok(HttpResponse::Ok().json(WorkerDetail {
        worker,
        running_tasks,
        backlog_tasks,
    }))
}

/// `POST /workers/join`: a worker registers itself (and again every
/// `rejoin_interval_seconds`); 409 `worker_id_taken` when its id is
/// another worker's (a configured one elsewhere, or a joined process whose
/// secret this join did not show), 409 `too_many_workers` at `MAX_WORKERS`;
/// 400 when its URL is this orchestrator's own address.
#[utoipa::path(post, path = "/workers/join", tag = "workers",
    request_body = JoinRequest,
    responses(
        (status = 200, description = "joined (or joined again); `secret` when one is issued", body = JoinAnswer),
        (status = 400, description = "not a join, or one that breaks the rules, such as a URL that is this orchestrator's own address (`malformed_json`, `bad_request` with `errors`)", body = ErrorBody),
        (status = 409, description = "the id is another worker's and this join did not show its secret (`worker_id_taken`, with `address`), or the cluster has MAX_WORKERS workers (`too_many_workers`, with `max_workers`)", body = ErrorBody),
    ))]
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
                    .with("errors", &problems)
            })?;
    if entry.is_address_of(api.own_addr) {
        let problem = format!(
            "url: {} is this orchestrator's own address, not a worker's; a worker joins with the address it \
             serves on (orquesta worker --port P --join URL, and --advertise http://HOST:P when the \
             orchestrator must reach it by another name)",
            join.url
        );
        return Err(ApiError::bad_request(format!("invalid join: {problem}")).with("errors", [&problem]));
    }
    let member = JoinedMember {
        entry,
        instance: join.instance,
        secret_sha256: String::new(),
    };
    let secret = join.secret;
    match api.lb.send(Join { member, secret }).await.map_err(mailbox)? {
        Ok(joined) => Ok(HttpResponse::Ok().json(JoinAnswer {
            id: join.id,
            source: joined.source,
            rejoin_interval_seconds: crate::orchestrator::rejoin_interval(&api.pace).as_secs_f64(),
            secret: joined.secret,
        })),
        Err(e) => {
            let message = e.to_string();
            Err(match e {
                JoinRefused::Taken { address, .. } | JoinRefused::Held { address, .. } => {
                    ApiError::new(ErrorCode::WorkerIdTaken, message).with("address", &address)
                }
                JoinRefused::Full { max } => {
                    ApiError::new(ErrorCode::TooManyWorkers, message).with("max_workers", max)
                }
            })
        }
    }
}

/// `POST /workers/{id}/drain`: no new tasks; running ones finish.
#[utoipa::path(post, path = "/workers/{worker_id}/drain", tag = "workers",
    params(("worker_id" = String, Path)),
    responses(
        (status = 200, description = "no new tasks; running ones finish: the new state", body = WorkerStateChanged),
        (status = 404, description = "no such worker (`not_found`)", body = ErrorBody),
    ))]
async fn drain_worker(
    api: web::Data<OrchestratorApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    new_state(&id, api.lb.send(DrainWorker { id: id.clone() }).await)
}

/// `POST /workers/{id}/resume`: undoes a drain.
#[utoipa::path(post, path = "/workers/{worker_id}/resume", tag = "workers",
    params(("worker_id" = String, Path)),
    responses(
        (status = 200, description = "takes tasks again: the new state", body = WorkerStateChanged),
        (status = 404, description = "no such worker (`not_found`)", body = ErrorBody),
    ))]
async fn resume_worker(
    api: web::Data<OrchestratorApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let answer = api.lb.send(ResumeWorker { id: id.clone() }).await;
    if let Ok(Some(_)) = &answer {
        api.queue.do_send(LiftQuarantine {
            worker_id: WorkerId::new(&id),
        });
    }
    new_state(&id, answer)
}

/// The answer to a drain or a resume: the worker's new state, or 404.
fn new_state(
    id: &str,
    answer: Result<Option<WorkerState>, actix::MailboxError>,
) -> Result<HttpResponse, ApiError> {
    let state = answer.map_err(mailbox)?.ok_or_else(|| no_worker(id))?;
    Ok(HttpResponse::Ok().json(WorkerStateChanged {
        id: WorkerId::from(id),
        state,
    }))
}

/// `DELETE /workers/{id}`: removed now; its running tasks go back to the
/// queue (not counted as attempts) and are cancelled on the worker.
#[utoipa::path(delete, path = "/workers/{worker_id}", tag = "workers",
    params(("worker_id" = String, Path)),
    responses(
        (status = 200, description = "removed; its tasks are queued again", body = WorkerRemoved),
        (status = 404, description = "no such worker (`not_found`)", body = ErrorBody),
    ))]
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
        Some(p) => p.send(RetireRemoved).await.unwrap_or(0),
        None => 0,
    };
    Ok(HttpResponse::Ok().json(WorkerRemoved {
        id: WorkerId::from(id.as_str()),
        requeued,
    }))
}
