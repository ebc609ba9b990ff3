//! What every server says about itself: `GET /` (the route list) and the
//! orchestrator's `GET /health`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /` as JSON: the service, its version and its routes.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Index {
    pub service: String,
    pub version: String,
    /// `METHOD /path` with its query parameters.
    pub endpoints: Vec<String>,
}

/// The `status` word of the orchestrator's `GET /health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrchestratorHealth {
    /// The database answers and at least one worker is up.
    Healthy,
    /// The database answers, no worker is up.
    Degraded,
    /// The database fails (the answer is 503).
    Unhealthy,
}

/// The orchestrator's `GET /health`: 200, or 503 when the database fails.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthReport {
    pub status: OrchestratorHealth,
    /// `ok`, or `error: …`.
    pub database: String,
    pub workers_up: usize,
    pub workers_total: usize,
    pub uptime_seconds: f64,
    pub version: String,
}
