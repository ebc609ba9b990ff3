//! The dropped files as records (`GET /files`, `GET /files/{id}`),
//! written by `orchestrator::api::files`. A file's row is the store's own
//! view: a type parameter, a `Value` to a client.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `GET /files`: one page, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(bound = "")]
pub struct FilePage<File = Value> {
    /// `{"id", "name", "state", "at", "stored_as", "size", "tasks",
    /// "counts", "problems", "summary"}` each.
    #[schema(value_type = Vec<Object>)]
    pub files: Vec<File>,
    pub total: u64,
    pub limit: usize,
    pub offset: usize,
}

/// `GET /files/{id}`: the file's row and its rejection report.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(bound = "")]
pub struct FileDetail<File = Value> {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub file: File,
    /// The rejection report's text as written beside the file; null for
    /// an ingested file, or a report deleted since.
    pub report: Option<String>,
}
