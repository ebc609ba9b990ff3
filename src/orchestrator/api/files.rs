//! Dropped files as records, and which task ids the orchestrator knows:
//! `GET /files` (every file taken or refused, newest first, with its
//! tasks by status), `GET /files/{id}` (one, with its rejection report),
//! and `POST /tasks/known` (which of these ids exist, where their results
//! are: what `orquesta validate --url` asks before a file is dropped).
//! Reads only, through the read pool; counts are kept by the store
//! (`store::files`), never counted here.

use std::sync::Arc;

use actix_web::{guard, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{blocking, OrchestratorApi};
use crate::http::error::{resource, ApiError};
use crate::http::limits::{read_typed, whole_param, BodyLimit, LARGE_BODY_BYTES};
use crate::model::TaskId;
use crate::orchestrator::store::{read_report, FileState};
use crate::protocol::files::{FileDetail, FilePage};
use crate::protocol::schema::PageOffset;
use crate::protocol::tasks::{KnownAnswer, KnownRequest};
use crate::protocol::ErrorBody;

/// The most ids one `POST /tasks/known` may ask about (a client asks in
/// batches: `orquesta validate --url` does).
pub const KNOWN_MAX_IDS: usize = 5_000;

/// The most files one `GET /files` page holds.
pub const FILES_PAGE_MAX: usize = 1_000;

const KNOWN_LIMIT: BodyLimit = BodyLimit {
    bytes: LARGE_BODY_BYTES,
    name: "the largest POST /tasks/known",
    hint: "ask about at most 5000 ids per request",
};

/// The part of the OpenAPI document these routes are.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list_files, get_file, known_tasks))]
pub struct Doc;

/// Registers `GET /files`, `GET /files/{id}` and `POST /tasks/known`.
/// Before the orchestrator's own routes: `/tasks/known` must be found
/// before `/tasks/{task_id}`; it answers `POST` only, so a task named
/// `known` is still reached by `GET` and `DELETE`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/files").route(web::get().to(list_files)))
        .service(resource("/files/{id}").route(web::get().to(get_file)))
        .service(
            resource("/tasks/known")
                .guard(guard::Post())
                .route(web::post().to(known_tasks)),
        );
}

/// `GET /files`'s parameters, as text so that a bad one is named.
#[derive(Deserialize)]
struct FilesQuery {
    state: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

/// `GET /files?state=ingested|rejected&limit=&offset=`:
/// `{"files": [...], "total": N}`, newest first.
#[utoipa::path(get, path = "/files", tag = "files",
    params(
        ("state" = Option<String>, Query, description = "ingested or rejected", pattern = "^(ingested|rejected)$"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "page size, 100 when absent"),
        ("offset" = Option<PageOffset>, Query, description = "files skipped"),
    ),
    responses(
        (status = 200, description = "one page of files, newest first", body = FilePage),
        (status = 400, description = "a parameter out of its range (`bad_request`)", body = ErrorBody),
    ))]
async fn list_files(
    api: web::Data<OrchestratorApi>,
    q: web::Query<FilesQuery>,
) -> Result<HttpResponse, ApiError> {
    let state = match q.state.as_deref() {
        None => None,
        Some(s) => Some(FileState::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!("state: expected ingested or rejected, found {s:?}"))
        })?),
    };
    let limit = whole_param("limit", q.limit.as_deref())?.unwrap_or(100);
    if !(1..=FILES_PAGE_MAX).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit: expected 1 to {FILES_PAGE_MAX}, found {limit}"
        )));
    }
    let offset = whole_param("offset", q.offset.as_deref())?.unwrap_or(0);
    let read = Arc::clone(&api.read);
    let (files, total) = blocking(move || read.files(state, limit, offset)).await?;
    Ok(HttpResponse::Ok().json(FilePage {
        files,
        total,
        limit,
        offset,
    }))
}

/// `GET /files/{id}`: one file, with `report`: its rejection report as
/// written beside it (`null` for an ingested file, or a report deleted
/// since).
#[utoipa::path(get, path = "/files/{id}", tag = "files",
    params(("id" = u64, Path, minimum = 1, description = "the file's number, as GET /files lists it")),
    responses(
        (status = 200, description = "the file and its rejection report", body = FileDetail),
        (status = 400, description = "not a file number (`bad_request`)", body = ErrorBody),
        (status = 404, description = "no such file (`not_found`)", body = ErrorBody),
    ))]
async fn get_file(
    api: web::Data<OrchestratorApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let id = raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::bad_request(format!(
            "invalid file id in the path: expected a whole number from 1 (GET /files lists them), found {raw:?}"
        ))
    })?;
    let read = Arc::clone(&api.read);
    let found = blocking(move || {
        let file = read.file(id)?;
        // the report from disk, off the HTTP thread
        Ok(file.map(|f| {
            let report = f.report_path.as_deref().and_then(read_report);
            (f, report)
        }))
    })
    .await?;
    let Some((file, report)) = found else {
        return Err(ApiError::not_found(format!(
            "no file {id} (GET /files lists them)"
        )));
    };
    Ok(HttpResponse::Ok().json(FileDetail { file, report }))
}

/// `POST /tasks/known` `{"task_ids": [...]}` (at most [`KNOWN_MAX_IDS`]):
/// `{"known": [{"task_id", "status", "results_file"}], "asked": N}`, the
/// ids the orchestrator knows, in the order asked.
#[utoipa::path(post, path = "/tasks/known", tag = "tasks",
    request_body = KnownRequest,
    responses(
        (status = 200, description = "the ids known, in the order asked", body = KnownAnswer),
        (status = 400, description = "not `{\"task_ids\": [...]}`, an id that is not one, or over 5000 ids (`bad_request`)", body = ErrorBody),
    ))]
async fn known_tasks(
    api: web::Data<OrchestratorApi>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let asked: KnownRequest = read_typed(
        &req,
        body,
        KNOWN_LIMIT,
        &api.bodies,
        "{\"task_ids\": [\"task_001\", ...]}",
    )
    .await?;
    let ids = asked.task_ids;
    if ids.len() > KNOWN_MAX_IDS {
        return Err(ApiError::bad_request(format!(
            "task_ids: expected at most {KNOWN_MAX_IDS} ids per request, found {}; ask in batches",
            ids.len()
        )));
    }
    if let Some((i, e)) = ids
        .iter()
        .enumerate()
        .find_map(|(i, id)| TaskId::parse(id).err().map(|e| (i, e)))
    {
        return Err(ApiError::bad_request(format!("task_ids[{i}]: {e}")));
    }
    let asked = ids.len();
    let read = Arc::clone(&api.read);
    let known = blocking(move || read.known(&ids)).await?;
    Ok(HttpResponse::Ok().json(KnownAnswer { known, asked }))
}
