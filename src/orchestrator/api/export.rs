//! `GET /results/export?format=csv|jsonl&study=&file=&status=`: one flat
//! row per task ([`crate::protocol::export`]), streamed as a chunked body.
//! Pages of [`PAGE_ROWS`] tasks are read from the database on a blocking
//! thread, one at a time, each only when the client has taken the last
//! (the body is pulled as the socket drains), so the orchestrator's memory
//! stays flat whatever the number of tasks. Parquet is not served: the CLI
//! writes it from the JSON lines (a Parquet file is written column by
//! column with its index at the end, which a stream of rows cannot be).

use std::sync::Arc;

use actix_web::web::{self, Bytes};
use actix_web::HttpResponse;
use futures_util::stream;
use serde::Deserialize;

use super::{blocking, OrchestratorApi};
use crate::http::error::{resource, ApiError};
use crate::model::{check_study, TaskStatus};
use crate::orchestrator::store::{ExportFilter, ReadPool};
use crate::protocol::export::{self, Column, ExportFormat};
use crate::protocol::ErrorBody;

/// Tasks read and encoded per step of the stream (≈ 0.5 MB of CSV).
pub const PAGE_ROWS: usize = 1000;

/// The part of the OpenAPI document this route is.
#[derive(utoipa::OpenApi)]
#[openapi(paths(export_results))]
pub struct Doc;

/// Registers `GET /results/export`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/results/export").route(web::get().to(export_results)));
}

#[derive(Deserialize)]
struct ExportQuery {
    format: Option<String>,
    study: Option<String>,
    file: Option<String>,
    status: Option<String>,
}

/// The filter and format of a query, or what is wrong with it.
fn parse(q: ExportQuery) -> Result<(ExportFormat, ExportFilter), ApiError> {
    let format = match q.format.as_deref() {
        None => ExportFormat::Csv,
        Some(f) => ExportFormat::parse(f)
            .ok_or_else(|| ApiError::bad_request(format!("format: expected csv or jsonl, found {f:?}")))?,
    };
    if format == ExportFormat::Parquet {
        return Err(ApiError::bad_request(
            "format: the orchestrator serves csv and jsonl; `orquesta results export --format parquet` \
             writes Parquet from the jsonl rows",
        ));
    }
    let status = match &q.status {
        None => None,
        Some(s) => Some(
            s.parse::<TaskStatus>()
                .map_err(|e| ApiError::bad_request(format!("status: {e}")))?,
        ),
    };
    if let Some(s) = &q.study {
        check_study(s).map_err(|e| ApiError::bad_request(format!("study: {e}")))?;
    }
    Ok((
        format,
        ExportFilter {
            study: q.study,
            file: q.file,
            status,
        },
    ))
}

/// Where the stream is.
struct Cursor {
    read: Arc<ReadPool>,
    filter: Arc<ExportFilter>,
    columns: Arc<Vec<Column>>,
    format: ExportFormat,
    /// The `seq` to read after; `None` once the last page went out.
    after: Option<i64>,
}

/// The next chunk: a page of rows encoded, or the end.
async fn next_chunk(mut c: Cursor) -> Option<(Result<Bytes, actix_web::Error>, Cursor)> {
    let after = c.after?;
    let (read, filter) = (Arc::clone(&c.read), Arc::clone(&c.filter));
    let page = match blocking(move || read.export_page(&filter, after, PAGE_ROWS)).await {
        Ok(page) => page,
        Err(e) => {
            // the head is sent: cutting the body is how the client learns
            tracing::warn!(error = %e, "results export stopped");
            c.after = None;
            return Some((Err(e.into()), c));
        }
    };
    let columns = Arc::clone(&c.columns);
    let format = c.format;
    let text = web::block(move || {
        let mut out = String::with_capacity(page.tasks.len() * 512);
        for task in &page.tasks {
            let row = export::flat_row(&columns, task);
            match format {
                ExportFormat::Jsonl => export::json_line(&columns, &row, &mut out),
                _ => export::csv_line(&row, &mut out),
            }
        }
        (out, page.next)
    })
    .await;
    match text {
        Ok((out, next)) => {
            c.after = next;
            Some((Ok(Bytes::from(out)), c))
        }
        Err(e) => {
            c.after = None;
            Some((Err(ApiError::unavailable(format!("busy: {e}")).into()), c))
        }
    }
}

#[utoipa::path(get, path = "/results/export", tag = "tasks",
    params(
        ("format" = Option<String>, Query, description = "csv (a header line first) or jsonl (one object per line); csv when absent",
            pattern = "^(csv|jsonl)$"),
        ("study" = Option<String>, Query, description = "only tasks of this study"),
        ("file" = Option<String>, Query, description = "only tasks of this dropped file, `api` for POST /tasks"),
        ("status" = Option<TaskStatus>, Query, description = "only tasks of this status"),
    ),
    responses(
        (status = 200, description = "one row per task in arrival order, streamed (chunked): task_id, study, file, \
            status, algorithm, every effective parameter, every scalar metric of result.metrics, worker_id, kernel, \
            execution_time, completed_at; empty cells (null) where a task has no such value",
            content((String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 400, description = "an unknown format or status, or a bad study name (`bad_request`)", body = ErrorBody),
        (status = 503, description = "the database cannot be read (`unavailable`)", body = ErrorBody),
    ))]
async fn export_results(
    api: web::Data<OrchestratorApi>,
    q: web::Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    let (format, filter) = parse(q.into_inner())?;
    // the database answers before the head goes out: a fault is a 503
    let read = Arc::clone(&api.read);
    blocking(move || {
        read.health()
            .map_err(crate::orchestrator::store::StoreError::Failed)
    })
    .await?;
    let columns = Arc::new(export::columns());
    let header = match format {
        ExportFormat::Jsonl => String::new(),
        _ => {
            let mut h = String::new();
            export::csv_header(&columns, &mut h);
            h
        }
    };
    let cursor = Cursor {
        read: Arc::clone(&api.read),
        filter: Arc::new(filter),
        columns,
        format,
        after: Some(0),
    };
    let head = stream::iter([Ok::<_, actix_web::Error>(Bytes::from(header))]);
    let body = futures_util::StreamExt::chain(head, stream::unfold(cursor, next_chunk));
    let content_type = match format {
        ExportFormat::Jsonl => "application/x-ndjson",
        _ => "text/csv; charset=utf-8",
    };
    Ok(HttpResponse::Ok().content_type(content_type).streaming(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(format: Option<&str>, status: Option<&str>, study: Option<&str>) -> ExportQuery {
        ExportQuery {
            format: format.map(String::from),
            study: study.map(String::from),
            file: None,
            status: status.map(String::from),
        }
    }

    #[test]
    fn bad_queries_are_explained() {
        let message = |q| parse(q).err().unwrap().to_string();
        assert!(
            message(query(Some("xml"), None, None)).contains("format: expected csv or jsonl, found \"xml\"")
        );
        assert!(message(query(Some("parquet"), None, None)).contains("--format parquet"));
        assert!(message(query(None, Some("done"), None)).contains("status: expected one of queued"));
        assert!(message(query(None, None, Some("a b"))).contains("study: expected a study name"));
        let (format, filter) = parse(query(Some("jsonl"), Some("completed"), Some("s1"))).unwrap();
        assert_eq!(format, ExportFormat::Jsonl);
        assert_eq!(filter.status, Some(TaskStatus::Completed));
        assert_eq!(parse(query(None, None, None)).unwrap().0, ExportFormat::Csv);
    }
}
