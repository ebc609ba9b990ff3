//! `/allocations`: the allocation queues (workers from a cluster manager,
//! `orquesta alloc`). Handlers parse and ask the
//! [`crate::orchestrator::allocation::Allocator`]; changes answer after
//! the commit. Behind the token like every route.

use actix::Addr;
use actix_web::{web, HttpRequest, HttpResponse};

use super::OrchestratorApi;
use crate::http::error::{mailbox, resource, ApiError};
use crate::http::limits::{read_typed, BodyLimit};
use crate::orchestrator::allocation::{
    AddAllocation, AllocationRefused, Allocator, ListAllocations, PauseAllocation, RemoveAllocation,
};
use crate::protocol::allocations::{Allocation, AllocationList, AllocationSpec};
use crate::protocol::{ErrorBody, ErrorCode};

/// What these routes need besides the shared API state.
pub struct AllocationApi {
    pub allocator: Addr<Allocator>,
}

const SPEC_LIMIT: BodyLimit = BodyLimit {
    bytes: 64 << 10,
    name: "the largest allocation queue",
    hint: "a queue is {\"name\", \"kind\": \"slurm\"|\"command\", \"max_jobs\", \"workers_per_job\", \"capacity\", \
           \"time_limit\", \"idle_timeout\", ...}",
};

/// The part of the OpenAPI document these routes are.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list_allocations,
    add_allocation,
    pause_allocation,
    resume_allocation,
    remove_allocation
))]
pub struct Doc;

/// Registers the `/allocations` routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/allocations")
            .route(web::get().to(list_allocations))
            .route(web::post().to(add_allocation)),
    )
    .service(resource("/allocations/{name}").route(web::delete().to(remove_allocation)))
    .service(resource("/allocations/{name}/pause").route(web::post().to(pause_allocation)))
    .service(resource("/allocations/{name}/resume").route(web::post().to(resume_allocation)));
}

impl From<AllocationRefused> for ApiError {
    fn from(e: AllocationRefused) -> Self {
        match e {
            AllocationRefused::Invalid(ref problems) => {
                ApiError::bad_request(e.to_string()).with("problems", problems)
            }
            AllocationRefused::Exists(_) => ApiError::new(ErrorCode::AllocationExists, e.to_string()),
            AllocationRefused::Unknown(_) => ApiError::not_found(e.to_string()),
            AllocationRefused::Store(s) => s.into(),
        }
    }
}

fn answered(
    answer: Result<Result<Allocation, AllocationRefused>, actix::MailboxError>,
) -> Result<Allocation, ApiError> {
    Ok(answer.map_err(mailbox)??)
}

/// `GET /allocations`: every queue with its jobs.
#[utoipa::path(get, path = "/allocations", tag = "allocations",
    responses((status = 200, description = "every queue and its jobs", body = AllocationList)))]
async fn list_allocations(alloc: web::Data<AllocationApi>) -> Result<HttpResponse, ApiError> {
    let list = alloc.allocator.send(ListAllocations).await.map_err(mailbox)?;
    Ok(HttpResponse::Ok().json(list))
}

/// `POST /allocations`: a new queue.
#[utoipa::path(post, path = "/allocations", tag = "allocations",
    request_body = AllocationSpec,
    responses(
        (status = 201, description = "added: the queue", body = Allocation),
        (status = 400, description = "not a valid queue (`bad_request`, `problems` lists each)", body = ErrorBody),
        (status = 409, description = "a queue has this name (`allocation_exists`)", body = ErrorBody),
        (status = 503, description = "the database cannot take it now (`unavailable`)", body = ErrorBody),
    ))]
async fn add_allocation(
    api: web::Data<OrchestratorApi>,
    alloc: web::Data<AllocationApi>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let spec: AllocationSpec = read_typed(
        &req,
        body,
        SPEC_LIMIT,
        &api.bodies,
        "{\"name\": \"cpu\", \"kind\": \"slurm\", \"max_jobs\": 4, \"time_limit\": \"1h\", \"idle_timeout\": \"5m\"}",
    )
    .await?;
    let added = answered(alloc.allocator.send(AddAllocation(spec)).await)?;
    Ok(HttpResponse::Created().json(added))
}

/// `POST /allocations/{name}/pause`: submits nothing more; its jobs run on.
#[utoipa::path(post, path = "/allocations/{name}/pause", tag = "allocations",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "paused: the queue", body = Allocation),
        (status = 404, description = "no such queue (`not_found`)", body = ErrorBody),
        (status = 503, description = "the database cannot take it now (`unavailable`)", body = ErrorBody),
    ))]
async fn pause_allocation(
    alloc: web::Data<AllocationApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    let q = answered(alloc.allocator.send(PauseAllocation { name, paused: true }).await)?;
    Ok(HttpResponse::Ok().json(q))
}

/// `POST /allocations/{name}/resume`: submits again (and forgets its backoff).
#[utoipa::path(post, path = "/allocations/{name}/resume", tag = "allocations",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "active: the queue", body = Allocation),
        (status = 404, description = "no such queue (`not_found`)", body = ErrorBody),
        (status = 503, description = "the database cannot take it now (`unavailable`)", body = ErrorBody),
    ))]
async fn resume_allocation(
    alloc: web::Data<AllocationApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    let q = answered(
        alloc
            .allocator
            .send(PauseAllocation { name, paused: false })
            .await,
    )?;
    Ok(HttpResponse::Ok().json(q))
}

/// `DELETE /allocations/{name}`: the queue goes; its jobs are cancelled
/// (their running tasks go back to the queue).
#[utoipa::path(delete, path = "/allocations/{name}", tag = "allocations",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "removed: the queue as it was, its jobs being cancelled", body = Allocation),
        (status = 404, description = "no such queue (`not_found`)", body = ErrorBody),
        (status = 503, description = "the database cannot take it now (`unavailable`)", body = ErrorBody),
    ))]
async fn remove_allocation(
    alloc: web::Data<AllocationApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    let q = answered(alloc.allocator.send(RemoveAllocation(name)).await)?;
    Ok(HttpResponse::Ok().json(q))
}
