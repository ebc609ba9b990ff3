//! `POST /admin/purge`: its body and its answer, shared by
//! `orchestrator::api::purge` and `orquesta purge`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `POST /admin/purge` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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

/// The answer: what the purge did (the store's report) and the word
/// about ids that are no longer known.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(bound = "")]
pub struct PurgeAnswer<Report = Value> {
    /// `dry_run`, `before`, `tasks`, `completed`, `failed`, `cancelled`,
    /// `attempts`, `failure_records`, `files`, `kept_unwritten`, `space`,
    /// `vacuumed`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub report: Report,
    pub note: String,
}
