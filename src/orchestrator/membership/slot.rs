//! One worker as membership keeps it: its entry, state and drain, the
//! view of it placement gets ([`MemberView`]) and its half of the row of
//! `GET /workers` (the core publishes the load half).

use std::time::{Instant, SystemTime};

use actix::prelude::*;

use crate::model::{KernelName, WorkerId};
use crate::orchestrator::board::{MemberRow, WorkerInfo, WorkerState};
use crate::orchestrator::config::WorkerEntry;
use crate::orchestrator::placement::MemberView;
use crate::orchestrator::worker_proxy::WorkerProxy;
use crate::protocol::MemberSource;

/// Why a worker takes no new tasks although it may be up.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Drain {
    /// `POST /workers/{id}/drain` on a configured worker: it stays listed,
    /// `drained`, until resumed.
    Asked,
    /// Removed from `config_workers.json`, or a joined worker drained: it
    /// is removed once its running tasks have finished.
    Leave,
    /// Its address changed: once idle, a new proxy at the new address
    /// takes its place (running tasks finish where they run).
    Replace(WorkerEntry),
    /// It broke a promise (`worker_proxy::promises`): kept, `drained`,
    /// until resumed.
    Suspect,
}

/// One worker as membership keeps it.
pub(super) struct Slot {
    pub(super) id: WorkerId,
    pub(super) entry: WorkerEntry,
    pub(super) source: MemberSource,
    /// A joined worker's process instance (tells a re-join from a clash).
    pub(super) instance: Option<String>,
    /// The SHA-256 of the secret a joined worker was given (empty: none,
    /// a configured worker or a member from an older database).
    pub(super) secret_sha256: String,
    /// Since when it has been unreachable (down, or never answered and
    /// refusing connections): a joined worker expires after `WORKER_EXPIRY`.
    pub(super) unreachable_since: Option<Instant>,
    pub(super) proxy: Option<Addr<WorkerProxy>>,
    pub(super) up: bool,
    /// min(configured, reported by the worker)
    pub(super) capacity: usize,
    /// Kernels both configured and offered by the worker.
    pub(super) kernels: Vec<KernelName>,
    /// The most tasks the worker keeps waiting for a slot (its
    /// `max_backlog`; 0 for a worker that takes none).
    pub(super) backlog_limit: usize,
    /// As its proxy last reported it.
    pub(super) state: WorkerState,
    pub(super) state_reason: Option<String>,
    pub(super) drain: Option<Drain>,
    pub(super) last_heartbeat: Option<SystemTime>,
    /// Why it is suspect (the last promise it broke); cleared on resume.
    pub(super) suspect: Option<String>,
}

impl Slot {
    pub(super) fn new(entry: WorkerEntry, source: MemberSource, instance: Option<String>) -> Self {
        Slot {
            id: WorkerId::new(&entry.id),
            capacity: entry.capacity,
            kernels: entry.kernels(),
            entry,
            source,
            instance,
            secret_sha256: String::new(),
            unreachable_since: None,
            proxy: None,
            up: false,
            backlog_limit: 0,
            state: WorkerState::Unknown,
            state_reason: None,
            drain: None,
            last_heartbeat: None,
            suspect: None,
        }
    }

    /// What placement needs of it.
    pub(super) fn view(&self) -> MemberView {
        MemberView {
            id: self.id.clone(),
            reachable: self.proxy.is_some(),
            up: self.up,
            drain_reason: self.drain.as_ref().and_then(|_| self.visible_reason()),
            capacity: self.capacity,
            kernels: self.kernels.clone(),
            backlog_limit: self.backlog_limit,
            state_text: self.state_text(0),
        }
    }

    /// The state `GET /workers` shows: a drain asked here wins over what
    /// the proxy saw.
    pub(super) fn visible_state(&self, in_flight: usize) -> WorkerState {
        match (&self.drain, in_flight) {
            (Some(_), 0) => WorkerState::Drained,
            (Some(_), _) => WorkerState::Draining,
            (None, _) => self.state,
        }
    }

    pub(super) fn visible_reason(&self) -> Option<String> {
        match &self.drain {
            Some(Drain::Asked) => Some("drained on request; POST /workers/{id}/resume to undo".into()),
            Some(Drain::Leave) => Some(match self.source {
                MemberSource::Config => "removed from the workers file; leaves once idle".into(),
                MemberSource::Joined => "leaving; removed once idle".into(),
            }),
            Some(Drain::Replace(e)) => Some(format!("moving to {} once idle", e.address())),
            Some(Drain::Suspect) => Some(format!(
                "suspect: {}; POST /workers/{}/resume to trust it again",
                self.suspect.as_deref().unwrap_or("it broke a promise"),
                self.id
            )),
            None => self.state_reason.clone(),
        }
    }

    /// Membership's half of the row of `GET /workers`.
    pub(super) fn info(&self) -> MemberRow {
        let info = WorkerInfo {
            id: self.id.to_string(),
            source: self.source,
            host: self.entry.host.clone(),
            port: self.entry.port,
            address: self.entry.address(),
            tls: self.entry.tls,
            state: self.state,
            state_reason: self.visible_reason(),
            up: self.up,
            capacity: self.capacity,
            configured_capacity: self.entry.capacity,
            in_flight: 0,
            running: 0,
            backlog: 0,
            prefetch: 0,
            load: 0.0,
            algorithms: self.entry.algorithms.clone(),
            kernels: self.kernels.clone(),
            last_heartbeat: self
                .last_heartbeat
                .map(|t| crate::util::time::Utc::from_system(t).iso()),
            tasks_completed: 0,
            tasks_failed: 0,
            mean_execution_time: None,
            suspect: self.suspect.clone(),
        };
        MemberRow {
            info,
            drain: self.drain.is_some(),
        }
    }

    /// How a reason names the state: `down (no answer for 30.0 s)`.
    pub(super) fn state_text(&self, in_flight: usize) -> String {
        match self.visible_reason() {
            Some(r) => format!("{} ({r})", self.visible_state(in_flight)),
            None => self.visible_state(in_flight).to_string(),
        }
    }
}
