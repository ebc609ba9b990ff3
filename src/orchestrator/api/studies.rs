//! `GET /studies` (every study: task counts by status, swept parameters)
//! and `GET /studies/{name}/report?task=ID` (its report: one
//! self-contained HTML page, [`crate::orchestrator::report`]). The report
//! reads the study's completed tasks a page at a time on a blocking
//! thread, like the export, folding each page into running means before
//! reading the next, so its memory is bounded by a page and the grid.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::{blocking, OrchestratorApi};
use crate::http::error::{resource, ApiError};
use crate::model::{check_study, TaskStatus};
use crate::orchestrator::report::{page, StudyAccumulator};
use crate::orchestrator::store::{ExportFilter, ReadPool, StoreError};
use crate::protocol::studies::{StudyList, StudyReport};
use crate::protocol::ErrorBody;

/// Tasks read per page while a report is folded.
const PAGE_ROWS: usize = 1000;

/// The part of the OpenAPI document these routes are.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list_studies, study_report), components(schemas(StudyReport)))]
pub struct Doc;

/// Registers `GET /studies` and `GET /studies/{name}/report`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/studies").route(web::get().to(list_studies)))
        .service(resource("/studies/{name}/report").route(web::get().to(study_report)));
}

#[utoipa::path(get, path = "/studies", tag = "tasks",
    responses(
        (status = 200, description = "every study (the tasks whose `study` field names it), by name", body = StudyList),
        (status = 503, description = "the database cannot be read (`unavailable`)", body = ErrorBody),
    ))]
async fn list_studies(api: web::Data<OrchestratorApi>) -> Result<web::Json<StudyList>, ApiError> {
    let read = std::sync::Arc::clone(&api.read);
    let studies = blocking(move || read.studies()).await?;
    Ok(web::Json(StudyList { studies }))
}

#[derive(Deserialize)]
struct ReportQuery {
    task: Option<String>,
}

/// Folds every completed task of `study` into its report.
pub fn fold_report(
    read: &ReadPool,
    study: &str,
    thermo_of: Option<String>,
    tasks: u64,
) -> Result<StudyReport, StoreError> {
    let filter = ExportFilter {
        study: Some(study.to_string()),
        file: None,
        status: Some(TaskStatus::Completed),
    };
    let mut acc = StudyAccumulator::new(study, thermo_of);
    let mut after = 0;
    loop {
        let page = read.export_page(&filter, after, PAGE_ROWS)?;
        for task in &page.tasks {
            acc.add(task);
        }
        match page.next {
            Some(next) => after = next,
            None => break,
        }
    }
    Ok(acc.finish(tasks))
}

#[utoipa::path(get, path = "/studies/{name}/report", tag = "tasks",
    params(
        ("name" = String, Path, description = "the study's name (its tasks' `study` field)"),
        ("task" = Option<String>, Query, description = "the task whose thermo series is drawn; the first completed task that has one when absent"),
    ),
    responses(
        (status = 200, description = "one self-contained HTML page (inline SVG, nothing fetched from anywhere): each \
            observable against each swept parameter (mean ± standard error over replicas, one line per value of the \
            other swept parameters), a task's thermo series, execution time against N per kernel and worker; its \
            data as JSON (`StudyReport`) in `<script type=\"application/json\" id=\"report-data\">`",
            content_type = "text/html"),
        (status = 400, description = "a bad study name (`bad_request`)", body = ErrorBody),
        (status = 404, description = "no task names this study (`not_found`)", body = ErrorBody),
        (status = 503, description = "the database cannot be read (`unavailable`)", body = ErrorBody),
    ))]
async fn study_report(
    api: web::Data<OrchestratorApi>,
    name: web::Path<String>,
    q: web::Query<ReportQuery>,
) -> Result<HttpResponse, ApiError> {
    let study = name.into_inner();
    check_study(&study).map_err(|e| ApiError::bad_request(format!("study: {e}")))?;
    let read = std::sync::Arc::clone(&api.read);
    let asked = study.clone();
    let tasks = blocking(move || read.study_tasks(&asked)).await?;
    if tasks == 0 {
        return Err(ApiError::not_found(format!(
            "no task names the study {study:?}: GET /studies lists the studies"
        )));
    }
    let read = std::sync::Arc::clone(&api.read);
    let thermo_of = q.into_inner().task;
    let report = blocking(move || fold_report(&read, &study, thermo_of, tasks)).await?;
    let html = web::block(move || page::render(&report))
        .await
        .map_err(|e| ApiError::unavailable(format!("busy: {e}")))?
        .map_err(ApiError::unavailable)?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        // the page runs nothing and loads nothing: say so to the browser
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
        ))
        .body(html))
}
