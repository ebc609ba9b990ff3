//! `GET /metrics/prometheus` on a worker node: the Prometheus text
//! exposition of [`WorkerNodeMetrics`], with the load gauges read from the
//! Executor's status for this scrape. `GET /metrics` stays the seed's JSON.

use actix_web::{web, HttpResponse};

use super::WorkerApi;
use crate::http::error::{mailbox, resource, ApiError};
use crate::util::prometheus::CONTENT_TYPE;
use crate::worker::executor::GetStatus;
use crate::worker::metrics::WorkerNodeMetrics;

/// The part of the OpenAPI document this route is.
#[derive(utoipa::OpenApi)]
#[openapi(paths(scrape))]
pub struct Doc;

/// Registers the route; the app must hold `web::Data<WorkerNodeMetrics>`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/metrics/prometheus").route(web::get().to(scrape)));
}

#[utoipa::path(get, path = "/metrics/prometheus", tag = "node",
    responses((status = 200, description = "the Prometheus text exposition",
        content_type = "text/plain; version=0.0.4; charset=utf-8", body = String)))]
async fn scrape(
    api: web::Data<WorkerApi>,
    metrics: web::Data<WorkerNodeMetrics>,
) -> Result<HttpResponse, ApiError> {
    let status = api.executor.send(GetStatus).await.map_err(mailbox)?;
    let text = metrics
        .render(&status)
        .map_err(|e| ApiError::internal(format!("cannot write the metrics: {e}")))?;
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(text))
}
