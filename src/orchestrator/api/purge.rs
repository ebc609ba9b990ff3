//! `POST /admin/purge`: forgets old history on purpose (`orquesta purge`).
//! The running orchestrator owns the database (one writer, an OS lock), so
//! a purge goes through it: the store removes, window by window, the ended
//! tasks whose end is before `before` and whose records are on disk
//! ([`crate::orchestrator::store::Store::purge`]). Behind the token like every route.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::OrchestratorApi;
use crate::http::error::{resource, ApiError};
use crate::http::limits::{read_typed, BodyLimit};
use crate::orchestrator::store::{PurgeReport, Store};
use crate::util::time::parse_date_or_rfc3339;

/// What the purge route needs besides the shared API state.
pub struct PurgeApi {
    pub store: Store,
}

/// The clear word every purge answer carries (and `orquesta purge` prints).
pub const IDS_FORGOTTEN: &str = "the ids of purged tasks are no longer known: a file or request that \
     uses them again is accepted and runs again (duplicate-id detection covers only the history kept); \
     their records stay in results/task_results_*.json and task_failures_*.json";

const PURGE_LIMIT: BodyLimit = BodyLimit {
    bytes: 4 << 10,
    name: "the largest purge request",
    hint: "a purge is {\"before\": \"YYYY-MM-DD\", \"dry_run\": true|false, \"vacuum\": true|false}",
};

/// `POST /admin/purge` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// `YYYY-MM-DD` (midnight UTC) or RFC 3339.
    pub before: String,
    /// Count only; remove nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Rebuild the file afterwards (`VACUUM`) so that it shrinks.
    #[serde(default)]
    pub vacuum: bool,
}

/// Registers `POST /admin/purge`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/admin/purge").route(web::post().to(purge)));
}

/// The answer: the report, and the word about ids.
pub fn answer(report: &PurgeReport) -> serde_json::Value {
    let mut out = serde_json::to_value(report).unwrap_or_default();
    out["note"] = json!(IDS_FORGOTTEN);
    out
}

async fn purge(
    api: web::Data<OrchestratorApi>,
    purge: web::Data<PurgeApi>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let ask: PurgeRequest = read_typed(
        &req,
        body,
        PURGE_LIMIT,
        &api.bodies,
        "{\"before\": \"YYYY-MM-DD or RFC 3339\", \"dry_run\": bool, \"vacuum\": bool}",
    )
    .await?;
    let before =
        parse_date_or_rfc3339(&ask.before).map_err(|e| ApiError::bad_request(format!("before: {e}")))?;
    let report = purge.store.purge(before, ask.dry_run, ask.vacuum).await?;
    if !report.dry_run {
        tracing::info!(before = %report.before, tasks = report.tasks, attempts = report.attempts,
            files = report.files, kept_unwritten = report.kept_unwritten, vacuumed = report.vacuumed,
            "history purged");
    }
    Ok(HttpResponse::Ok().json(answer(&report)))
}
