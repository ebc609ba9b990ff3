//! What the orchestrator says about itself: `GET /` (its routes, as JSON;
//! the dashboard answers `Accept: text/html`) and `GET /health`.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use super::{blocking, OrchestratorApi};
use crate::http::error::{resource, ApiError};
use crate::orchestrator::store::StoreError;
use crate::protocol::service::{HealthReport, Index, OrchestratorHealth};

/// Every route, as `GET /` lists them.
pub const ENDPOINTS: &[&str] = &[
    "GET /tasks?status=&priority=&algorithm=&worker=&file=&sort=&limit=&offset=",
    "POST /tasks",
    "POST /tasks/known",
    "GET /files?state=&limit=&offset=",
    "GET /files/{id}",
    "GET /tasks/{task_id}",
    "DELETE /tasks/{task_id}",
    "POST /tasks/{task_id}/retry",
    "POST /tasks/{task_id}/checkpoint?attempt_id=&worker_id=&step=",
    "GET /tasks/{task_id}/checkpoint",
    "GET /results/export?format=&study=&file=&status=",
    "GET /studies",
    "GET /studies/{name}/report?task=",
    "GET /workers",
    "GET /workers/{worker_id}",
    "POST /workers/join",
    "POST /workers/{worker_id}/drain",
    "POST /workers/{worker_id}/resume",
    "DELETE /workers/{worker_id}",
    "GET /stats",
    "GET /stats/performance",
    "GET /health",
    "GET /metrics/prometheus",
    "POST /admin/purge",
    "GET /allocations",
    "POST /allocations",
    "POST /allocations/{name}/pause",
    "POST /allocations/{name}/resume",
    "DELETE /allocations/{name}",
    "GET / (Accept: text/html: the dashboard)",
    "GET /events",
    "GET /activity/failures",
    "GET /openapi.json",
];

/// The part of the OpenAPI document these routes are.
#[derive(utoipa::OpenApi)]
#[openapi(paths(index, health))]
pub struct Doc;

/// Registers `GET /` (JSON) and `GET /health`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/").route(web::get().to(index)))
        .service(resource("/health").route(web::get().to(health)));
}

/// `GET /`: what is here.
#[utoipa::path(get, path = "/", tag = "service",
    responses((status = 200, description = "the routes as JSON; with `Accept: text/html`, the dashboard page (open without the token)",
        content((Index = "application/json"), (String = "text/html")))))]
async fn index() -> HttpResponse {
    HttpResponse::Ok().json(Index {
        service: "orquesta orchestrator".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        endpoints: ENDPOINTS.iter().map(|e| e.to_string()).collect(),
    })
}

/// `GET /health`. The database part is cheap (no scan): damage met by
/// any query since start, else a one-row read; a database that fails
/// makes the answer 503 `unhealthy` with `database: "error: …"`.
#[utoipa::path(get, path = "/health", tag = "service", security(()),
    responses(
        (status = 200, description = "healthy, or degraded (no worker up)", body = HealthReport),
        (status = 503, description = "unhealthy: the database fails", body = HealthReport),
    ))]
async fn health(api: web::Data<OrchestratorApi>) -> Result<HttpResponse, ApiError> {
    let workers = api.workers.list();
    let read = Arc::clone(&api.read);
    let db = blocking(move || Ok::<_, StoreError>(read.health()))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    let workers_up = workers.iter().filter(|w| w.up).count();
    let status = if db.is_err() {
        OrchestratorHealth::Unhealthy
    } else if workers_up == 0 {
        OrchestratorHealth::Degraded
    } else {
        OrchestratorHealth::Healthy
    };
    let code = if db.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(HttpResponse::build(code).json(HealthReport {
        status,
        database: match &db {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("error: {e}"),
        },
        workers_up,
        workers_total: workers.len(),
        uptime_seconds: api.started.elapsed().as_secs_f64(),
        version: env!("CARGO_PKG_VERSION").into(),
    }))
}
