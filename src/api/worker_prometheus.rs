//! `GET /metrics/prometheus` on a worker node: the Prometheus text
//! exposition of [`WorkerNodeMetrics`], with the load gauges read from the
//! Executor's status for this scrape. `GET /metrics` stays the seed's JSON.

use actix_web::{web, HttpResponse};

use super::error::{mailbox, resource, ApiError};
use super::worker::WorkerApi;
use crate::actors::executor::GetStatus;
use crate::metrics::worker::WorkerNodeMetrics;
use crate::util::prometheus::CONTENT_TYPE;

/// Registers the route; the app must hold `web::Data<WorkerNodeMetrics>`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/metrics/prometheus").route(web::get().to(scrape)));
}

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
