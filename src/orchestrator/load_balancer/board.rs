//! What `GET /workers` shows of each worker, and the [`WorkerBoard`] the
//! LoadBalancer publishes it on: a concurrent map (dashmap) the API reads
//! from any thread without a message to the actor.

use std::fmt;
use std::sync::{Arc, RwLock};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use crate::model::{KernelName, WorkerId};
use crate::protocol::MemberSource;

/// A worker's state as the orchestrator sees it; why it is so travels
/// beside it (`state_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// Not heard from yet.
    #[default]
    Unknown,
    /// Answers its heartbeat and takes tasks.
    Up,
    /// Refused connections, stopped answering, or answered badly.
    Down,
    /// No new tasks: shutting down (its `/health` answers 503), or drained
    /// by `POST /workers/{id}/drain` or a config edit; running tasks finish.
    Draining,
    /// Drained and idle: takes no tasks until `POST /workers/{id}/resume`.
    Drained,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Unknown => "unknown",
            WorkerState::Up => "up",
            WorkerState::Down => "down",
            WorkerState::Draining => "draining",
            WorkerState::Drained => "drained",
        }
    }

    pub fn is_up(self) -> bool {
        self == WorkerState::Up
    }
}

impl fmt::Display for WorkerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A worker as `GET /workers` shows it.
/// Read back (by the CLI) with defaults for what an answer leaves out.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerInfo {
    pub id: String,
    /// `config_workers.json`, or the worker's own join.
    pub source: MemberSource,
    pub host: String,
    pub port: u16,
    pub address: String,
    /// Reached over HTTPS (`"tls": true`, or joined from `https://`).
    pub tls: bool,
    pub state: WorkerState,
    /// Why the worker is in that state, e.g. "no answer for 30.0 s"; null
    /// when up or not heard from yet.
    pub state_reason: Option<String>,
    pub up: bool,
    pub capacity: usize,
    pub configured_capacity: usize,
    /// Attempts sent to it and not ended: `running` plus `backlog`.
    pub in_flight: usize,
    /// Tasks it runs now (at most `capacity`).
    pub running: usize,
    /// Tasks sent ahead, waiting there for a slot.
    pub backlog: usize,
    /// How many tasks it is sent ahead now (adapts to task length).
    pub prefetch: usize,
    /// running / capacity.
    pub load: f64,
    pub algorithms: Vec<String>,
    pub kernels: Vec<KernelName>,
    pub last_heartbeat: Option<String>,
    pub tasks_completed: u64,
    pub tasks_failed: u64,
    pub mean_execution_time: Option<f64>,
}

/// Every worker's latest [`WorkerInfo`], written by the LoadBalancer when
/// a row changes and read by the API from any thread without a message.
/// Cheap to clone (shared).
#[derive(Clone)]
pub struct WorkerBoard {
    rows: Arc<DashMap<WorkerId, WorkerInfo>>,
    /// The LoadBalancer's order (configuration order, joined workers
    /// after), the order of `GET /workers`.
    order: Arc<RwLock<Vec<WorkerId>>>,
}

impl WorkerBoard {
    pub(super) fn new(order: Vec<WorkerId>) -> Self {
        Self {
            rows: Arc::new(DashMap::new()),
            order: Arc::new(RwLock::new(order)),
        }
    }

    /// Every worker, in configuration order.
    pub fn list(&self) -> Vec<WorkerInfo> {
        let order = self.order.read().unwrap_or_else(|e| e.into_inner());
        order
            .iter()
            .filter_map(|id| self.rows.get(id).map(|r| r.value().clone()))
            .collect()
    }

    /// One worker by id.
    pub fn get(&self, id: &str) -> Option<WorkerInfo> {
        self.rows.get(id).map(|r| r.value().clone())
    }

    pub(super) fn publish(&self, id: &WorkerId, info: WorkerInfo) {
        self.rows.insert(id.clone(), info);
    }

    /// The order of the rows after a worker was added or removed.
    pub(super) fn reorder(&self, order: Vec<WorkerId>) {
        let mut o = self.order.write().unwrap_or_else(|e| e.into_inner());
        self.rows.retain(|id, _| order.contains(id));
        *o = order;
    }
}
