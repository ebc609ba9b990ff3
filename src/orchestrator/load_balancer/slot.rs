//! One worker as the LoadBalancer keeps it: its entry, state, load and
//! counts, and the row it publishes for `GET /workers`.

use std::time::{Instant, SystemTime};

use actix::prelude::*;

use super::board::{WorkerInfo, WorkerState};
use crate::model::{KernelName, WorkerId};
use crate::orchestrator::config::WorkerEntry;
use crate::orchestrator::worker_proxy::WorkerProxy;
use crate::protocol::MemberSource;

/// Seconds of work per slot kept waiting on a worker.
const PREFETCH_SECONDS: f64 = 0.05;
/// The most tasks sent ahead to one worker.
const MAX_PREFETCH: usize = 512;
/// Weight of the newest execution time in the moving average.
const RECENT_WEIGHT: f64 = 0.1;

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
}

/// One worker as the LoadBalancer keeps it.
pub(super) struct Slot {
    pub(super) id: WorkerId,
    pub(super) entry: WorkerEntry,
    pub(super) source: MemberSource,
    /// A joined worker's process instance (tells a re-join from a clash).
    pub(super) instance: Option<String>,
    pub(super) proxy: Option<Addr<WorkerProxy>>,
    pub(super) up: bool,
    /// min(configured, reported by the worker)
    pub(super) capacity: usize,
    /// Kernels both configured and offered by the worker.
    pub(super) kernels: Vec<KernelName>,
    /// Attempts sent and not yet ended: running there, or sent ahead and
    /// waiting in its backlog.
    pub(super) in_flight: usize,
    /// The most tasks the worker keeps waiting for a slot (its
    /// `max_backlog`; 0 for a worker that takes none).
    pub(super) backlog_limit: usize,
    /// Recent execution time of its tasks (moving average), which sets
    /// how far ahead it is sent work ([`Slot::prefetch`]).
    pub(super) recent_secs: Option<f64>,
    /// After a 429: the worker said it is full; wait before sending more.
    pub(super) cooldown_until: Option<Instant>,
    /// As its proxy last reported it.
    pub(super) state: WorkerState,
    pub(super) state_reason: Option<String>,
    pub(super) drain: Option<Drain>,
    pub(super) last_heartbeat: Option<SystemTime>,
    pub(super) completed: u64,
    pub(super) failed: u64,
    pub(super) busy_secs: f64,
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
            proxy: None,
            up: false,
            in_flight: 0,
            backlog_limit: 0,
            recent_secs: None,
            cooldown_until: None,
            state: WorkerState::Unknown,
            state_reason: None,
            drain: None,
            last_heartbeat: None,
            completed: 0,
            failed: 0,
            busy_secs: 0.0,
        }
    }

    /// Up and not draining: may be given new tasks.
    pub(super) fn takes_tasks(&self) -> bool {
        self.up && self.drain.is_none()
    }

    pub(super) fn has_room(&self, now: Instant) -> bool {
        self.takes_tasks() && self.in_flight < self.window() && self.cooldown_until.is_none_or(|t| t <= now)
    }

    /// How many tasks it is sent ahead, beyond its slots, so that a slot
    /// that frees never waits for the round trip to the orchestrator
    /// (result, commit, next dispatch): enough to keep its slots busy for
    /// [`PREFETCH_SECONDS`] at its recent pace. Deep for tiny tasks, one
    /// for long ones (a long task sent ahead could have started sooner
    /// elsewhere); `capacity` until a first task has ended.
    pub(super) fn prefetch(&self) -> usize {
        let want = match self.recent_secs {
            None => self.capacity,
            Some(secs) => {
                let work = PREFETCH_SECONDS * self.capacity as f64 / secs.max(1e-6);
                (work.ceil() as usize).max(1)
            }
        };
        want.min(self.backlog_limit).min(MAX_PREFETCH)
    }

    /// Slots plus the backlog it is sent ahead: the most attempts it has
    /// at once.
    pub(super) fn window(&self) -> usize {
        self.capacity + self.prefetch()
    }

    /// An attempt here ended after `secs` of execution.
    pub(super) fn learn(&mut self, secs: f64) {
        if !secs.is_finite() || secs < 0.0 {
            return;
        }
        self.recent_secs = Some(match self.recent_secs {
            None => secs,
            Some(old) => old + (secs - old) * RECENT_WEIGHT,
        });
    }

    /// Running there now: at most its capacity (the worker starts a
    /// waiting task as soon as a slot frees).
    pub(super) fn running(&self) -> usize {
        self.in_flight.min(self.capacity)
    }

    /// The state `GET /workers` shows: a drain asked here wins over what
    /// the proxy saw.
    pub(super) fn visible_state(&self) -> WorkerState {
        match (&self.drain, self.in_flight) {
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
            None => self.state_reason.clone(),
        }
    }

    /// The row of `GET /workers`.
    pub(super) fn info(&self) -> WorkerInfo {
        WorkerInfo {
            id: self.id.to_string(),
            source: self.source,
            host: self.entry.host.clone(),
            port: self.entry.port,
            address: self.entry.address(),
            tls: self.entry.tls,
            state: self.visible_state(),
            state_reason: self.visible_reason(),
            up: self.up,
            capacity: self.capacity,
            configured_capacity: self.entry.capacity,
            in_flight: self.in_flight,
            running: self.running(),
            backlog: self.in_flight - self.running(),
            prefetch: if self.takes_tasks() { self.prefetch() } else { 0 },
            load: self.running() as f64 / self.capacity.max(1) as f64,
            algorithms: self.entry.algorithms.clone(),
            kernels: self.kernels.clone(),
            last_heartbeat: self
                .last_heartbeat
                .map(|t| crate::util::time::Utc::from_system(t).iso()),
            tasks_completed: self.completed,
            tasks_failed: self.failed,
            mean_execution_time: (self.completed > 0).then(|| self.busy_secs / self.completed as f64),
        }
    }

    /// How a reason names the state: `down (no answer for 30.0 s)`.
    pub(super) fn state_text(&self) -> String {
        match self.visible_reason() {
            Some(r) => format!("{} ({r})", self.visible_state()),
            None => self.visible_state().to_string(),
        }
    }
}
