//! `POST /admin/purge`: forgets old history on purpose (`orquesta purge`).
//! The running orchestrator owns the database (one writer, an OS lock), so
//! a purge goes through it: the store removes, window by window, the ended
//! tasks whose end is before `before` and whose records are on disk
//! ([`crate::orchestrator::store::Store::purge`]). Behind the token like every route.

use actix_web::{web, HttpRequest, HttpResponse};

use super::OrchestratorApi;
use crate::http::error::{resource, ApiError};
use crate::http::limits::{read_typed, BodyLimit};
use crate::orchestrator::store::{PurgeReport, Store};
use crate::protocol::admin::{PurgeAnswer, PurgeRequest};
use crate::protocol::ErrorBody;
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

/// The part of the OpenAPI document this route is.
#[derive(utoipa::OpenApi)]
#[openapi(paths(purge))]
pub struct Doc;

/// Registers `POST /admin/purge`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/admin/purge").route(web::post().to(purge)));
}

/// The answer: the report, and the word about ids.
pub fn answer(report: PurgeReport) -> PurgeAnswer<PurgeReport> {
    PurgeAnswer {
        report,
        note: IDS_FORGOTTEN.into(),
    }
}

#[utoipa::path(post, path = "/admin/purge", tag = "admin",
    request_body = PurgeRequest,
    responses(
        (status = 200, description = "what was removed (or would be, in a dry run)", body = PurgeAnswer),
        (status = 400, description = "not a purge, or `before` is not a date (`bad_request`)", body = ErrorBody),
    ))]
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
    Ok(HttpResponse::Ok().json(answer(report)))
}
