//! What `GET /workers` shows of each worker, and the [`WorkerBoard`] it is
//! published on: a concurrent map (dashmap) that membership and the core
//! write and the API and the metrics read from any thread without a
//! message to an actor.

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
    /// Why the worker is suspect (it broke a promise: ran more than its
    /// capacity, left a batch silent, let a task stall); it gets no new
    /// tasks until `POST /workers/{id}/resume`. Null when trusted.
    pub suspect: Option<String>,
}

/// Counts over every worker, beside a page of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BoardCounts {
    pub total: usize,
    /// How many answer their heartbeat.
    pub up: usize,
    /// How many joined (the rest are configured).
    pub joined: usize,
    /// By state (`up`, `down`, …); states nobody is in are absent.
    pub by_state: std::collections::BTreeMap<&'static str, usize>,
}

/// The load half of a worker's `GET /workers` row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadRow {
    pub in_flight: usize,
    pub running: usize,
    pub backlog: usize,
    pub prefetch: usize,
    pub load: f64,
    pub completed: u64,
    pub failed: u64,
    pub mean_execution_time: Option<f64>,
}

/// Every worker's latest [`WorkerInfo`], in two halves: membership
/// writes what it knows (address, state, heartbeat), the core writes the
/// load (in flight, counts); a read joins them. Read by the API from any
/// thread without a message. Cheap to clone (shared).
#[derive(Clone)]
pub struct WorkerBoard {
    rows: Arc<DashMap<WorkerId, MemberRow>>,
    loads: Arc<DashMap<WorkerId, LoadRow>>,
    /// Membership's order (configuration order, joined workers after),
    /// the order of `GET /workers`.
    order: Arc<RwLock<Vec<WorkerId>>>,
}

/// Membership's half of a row: the row without its load, and whether a
/// drain was asked here (then the load says drained or draining).
#[derive(Debug, Clone)]
pub struct MemberRow {
    pub info: WorkerInfo,
    pub drain: bool,
}

impl WorkerBoard {
    pub fn new(order: Vec<WorkerId>) -> Self {
        Self {
            rows: Arc::new(DashMap::new()),
            loads: Arc::new(DashMap::new()),
            order: Arc::new(RwLock::new(order)),
        }
    }

    fn joined(&self, id: &WorkerId, member: &MemberRow) -> WorkerInfo {
        let mut info = member.info.clone();
        let load = self.loads.get(id).map(|l| l.value().clone()).unwrap_or_default();
        if member.drain {
            info.state = if load.in_flight == 0 {
                WorkerState::Drained
            } else {
                WorkerState::Draining
            };
        }
        info.in_flight = load.in_flight;
        info.running = load.running;
        info.backlog = load.backlog;
        info.prefetch = load.prefetch;
        info.load = load.load;
        info.tasks_completed = load.completed;
        info.tasks_failed = load.failed;
        info.mean_execution_time = load.mean_execution_time;
        info
    }

    /// Every worker, in configuration order.
    pub fn list(&self) -> Vec<WorkerInfo> {
        let order = self.order.read().unwrap_or_else(|e| e.into_inner());
        order
            .iter()
            .filter_map(|id| self.rows.get(id).map(|r| self.joined(id, r.value())))
            .collect()
    }

    /// Rows `offset..offset + limit` in configuration order (only those
    /// are built), and counts over every worker: O(page) rows plus one
    /// pass over the states.
    pub fn page(&self, offset: usize, limit: usize) -> (Vec<WorkerInfo>, BoardCounts) {
        let ids: Vec<WorkerId> = {
            let order = self.order.read().unwrap_or_else(|e| e.into_inner());
            order.iter().skip(offset).take(limit).cloned().collect()
        };
        let rows = ids
            .iter()
            .filter_map(|id| self.rows.get(id).map(|r| self.joined(id, r.value())))
            .collect();
        (rows, self.counts())
    }

    /// How many workers there are, and in each state (as `GET /workers`
    /// shows the state: a drain asked here is drained or draining).
    pub fn counts(&self) -> BoardCounts {
        let mut c = BoardCounts::default();
        for r in self.rows.iter() {
            let state = if r.drain {
                if self.in_flight(r.key()) == 0 {
                    WorkerState::Drained
                } else {
                    WorkerState::Draining
                }
            } else {
                r.info.state
            };
            c.total += 1;
            c.up += usize::from(r.info.up);
            c.joined += usize::from(r.info.source == MemberSource::Joined);
            *c.by_state.entry(state.as_str()).or_default() += 1;
        }
        c
    }

    /// One worker by id.
    pub fn get(&self, id: &str) -> Option<WorkerInfo> {
        self.rows.get(id).map(|r| self.joined(r.key(), r.value()))
    }

    /// The first `limit` workers, in order, that run something now.
    pub fn busy(&self, limit: usize) -> Vec<WorkerInfo> {
        let order = self.order.read().unwrap_or_else(|e| e.into_inner());
        order
            .iter()
            .filter(|id| self.loads.get(*id).is_some_and(|l| l.running > 0))
            .take(limit)
            .filter_map(|id| self.get(id.as_str()))
            .collect()
    }

    /// Attempts in flight on a worker, as the core last published it.
    pub fn in_flight(&self, id: &WorkerId) -> usize {
        self.loads.get(id).map_or(0, |l| l.in_flight)
    }

    /// Membership's half of a row.
    pub fn publish(&self, id: &WorkerId, row: MemberRow) {
        self.rows.insert(id.clone(), row);
    }

    /// A heartbeat answered: only its time changes (no row rebuilt).
    pub fn heartbeat(&self, id: &WorkerId, at: std::time::SystemTime) {
        if let Some(mut r) = self.rows.get_mut(id) {
            r.info.last_heartbeat = Some(crate::util::time::Utc::from_system(at).iso());
        }
    }

    /// A worker added at the end of the order (a join): O(1), where
    /// [`Self::reorder`] is O(N).
    pub fn append(&self, id: &WorkerId) {
        let mut o = self.order.write().unwrap_or_else(|e| e.into_inner());
        o.push(id.clone());
    }

    /// The core's half of a row.
    pub fn publish_load(&self, id: &WorkerId, row: LoadRow) {
        self.loads.insert(id.clone(), row);
    }

    /// The order of the rows after a worker was added or removed; a
    /// removed worker's load goes with it.
    pub fn reorder(&self, order: Vec<WorkerId>) {
        let mut o = self.order.write().unwrap_or_else(|e| e.into_inner());
        // a set: thousands of workers would make `order.contains` quadratic
        let kept: std::collections::HashSet<&WorkerId> = order.iter().collect();
        self.rows.retain(|id, _| kept.contains(id));
        self.loads.retain(|id, _| kept.contains(id));
        *o = order;
    }
}
