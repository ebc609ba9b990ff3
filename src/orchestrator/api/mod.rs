//! The orchestrator's REST API (seed README "Endpoints API / Orchestrator",
//! port 5000), one file per resource, each with its `configure`: `tasks`,
//! `files` (and `POST /tasks/known`), `workers`, `stats`, `health` (and
//! `GET /`), `export` (`GET /results/export`), `studies` (`GET /studies`, a study's report), `purge` (`/admin/purge`), `prometheus`, `dashboard`, and
//! `openapi` (the document of them all). Handlers parse, ask an actor or
//! the read-only database pool, and answer with a type of
//! [`crate::protocol`]; errors are JSON with the right status.

pub mod allocations;
pub mod checkpoints;
pub mod dashboard;
pub mod export;
pub mod files;
pub mod health;
pub mod openapi;
pub mod prometheus;
pub mod purge;
pub mod stats;
pub mod studies;
pub mod tasks;
pub mod workers;

use std::sync::Arc;
use std::time::Instant;

use actix::Addr;
use actix_web::web;

use crate::http::error::{unknown_route, ApiError};
use crate::http::limits::BodyRules;
use crate::model::Validator;
use crate::orchestrator::board::WorkerBoard;
use crate::orchestrator::config_watcher::SharedConfigStatus;
use crate::orchestrator::membership::Membership;
use crate::orchestrator::store::{ReadPool, StoreError};
use crate::orchestrator::task_queue::{QueueError, TaskQueue};

/// What the handlers share.
pub struct OrchestratorApi {
    pub queue: Addr<TaskQueue>,
    pub lb: Addr<Membership>,
    /// Every worker's row, read without a round trip to the Membership.
    pub workers: WorkerBoard,
    /// Whether `config_workers.json` on disk is in force.
    pub config: SharedConfigStatus,
    /// The heartbeat pace in force: a join answers how often to join
    /// again from it (`orchestrator::rejoin_interval`).
    pub pace: crate::orchestrator::worker_proxy::HeartbeatPace,
    pub read: Arc<ReadPool>,
    pub validator: Arc<Validator>,
    /// `MAX_REQUEST_BYTES`: the largest `POST /tasks` body.
    pub max_request_bytes: usize,
    /// The body deadline and large-body turns of this server.
    pub bodies: BodyRules,
    pub started: Instant,
    /// The address this server listens on: a join naming it is refused.
    pub own_addr: std::net::SocketAddr,
}

/// Registers every route of the orchestrator, in the order that matters:
/// `POST /tasks/known` before `/tasks/{task_id}`, the dashboard's `GET /`
/// (for `Accept: text/html`) before the JSON one.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.configure(purge::configure)
        .configure(allocations::configure)
        .configure(files::configure)
        .configure(dashboard::configure)
        .configure(health::configure)
        .configure(tasks::configure)
        .configure(checkpoints::configure)
        .configure(export::configure)
        .configure(studies::configure)
        .configure(workers::configure)
        .configure(stats::configure)
        .configure(prometheus::configure)
        .configure(openapi::configure)
        .default_service(web::to(unknown_route));
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::unavailable(format!("database unavailable: {e}"))
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Unavailable(why) => ApiError::unavailable(why),
        }
    }
}

/// Runs a database read off the HTTP thread.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    web::block(f)
        .await
        .map_err(|e| ApiError::unavailable(format!("busy: {e}")))?
        .map_err(ApiError::from)
}
