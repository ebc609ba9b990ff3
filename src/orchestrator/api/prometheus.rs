//! `GET /metrics/prometheus` on the orchestrator: the Prometheus text
//! exposition of [`OrchestratorMetrics`], with the gauges read for this
//! scrape (task counts by status and priority from the database's kept
//! counts, the `WorkerBoard` rows). Behind the token like every route.

use std::sync::Arc;

use actix_web::{web, HttpResponse};

use super::{blocking, OrchestratorApi};
use crate::http::error::{resource, ApiError};
use crate::orchestrator::metrics::{ClusterView, OrchestratorMetrics};
use crate::util::prometheus::CONTENT_TYPE;

/// The part of the OpenAPI document this route is.
#[derive(utoipa::OpenApi)]
#[openapi(paths(scrape))]
pub struct Doc;

/// Registers the route; the app must hold `web::Data<OrchestratorMetrics>`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/metrics/prometheus").route(web::get().to(scrape)));
}

#[utoipa::path(get, path = "/metrics/prometheus", tag = "service",
    responses((status = 200, description = "the Prometheus text exposition",
        content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)))]
async fn scrape(
    api: web::Data<OrchestratorApi>,
    metrics: web::Data<OrchestratorMetrics>,
) -> Result<HttpResponse, ApiError> {
    let read = Arc::clone(&api.read);
    let (_, by_priority) = blocking(move || read.counts()).await?;
    let workers = api.workers.list();
    let view = ClusterView {
        tasks: &by_priority,
        workers: &workers,
    };
    let text = metrics
        .render(&view)
        .map_err(|e| ApiError::internal(format!("cannot write the metrics: {e}")))?;
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(text))
}
