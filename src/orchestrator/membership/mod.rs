//! Membership: worker membership. It knows every worker (configured,
//! joined), its state as its WorkerProxy reports it, and its drain; it
//! starts and retires proxies (`membership.rs`). Placement is not here:
//! the core (TaskQueue's `LiveTasks`) places tasks synchronously on the
//! [`Loads`] it keeps, which this actor feeds with a [`Roster`] whenever
//! a worker changes in a way that matters to placement. The core answers
//! [`WorkerIdle`] when a draining worker holds nothing, and this actor
//! settles it (drained, removed or moved).
//!
//! Every change to a worker's row is published to a [`WorkerBoard`], a
//! concurrent map the API reads for `GET /workers` without a message; the
//! core publishes the load half of each row there.
//!
//! For `shortest_expected_finish` the core also predicts how long each
//! task takes on each worker, from speeds learned from results
//! (`expected.rs`), and places each batch largest first within a priority.

mod apply;
mod join;
mod requests;
#[cfg(test)]
mod sef_tests;
mod slot;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::time::Instant;

use actix::prelude::*;

pub use self::apply::ApplyConfig;
pub use self::join::{Join, JoinRefused, Joined};
pub use self::requests::{DrainWorker, JoinedMember, MembershipLimits, Proxies, RemoveWorker, ResumeWorker};
use self::slot::{Drain, Slot};
pub use crate::orchestrator::board::{LoadRow, MemberRow, WorkerBoard, WorkerInfo, WorkerState};
#[cfg(test)]
use crate::orchestrator::placement::*;
use crate::orchestrator::placement::{strategy, MemberView};

use super::worker_proxy::{AttemptOutcome, AttemptsStarted, ProxySettings, TakenBack, WorkerProxy};
pub use super::worker_proxy::{Heartbeat, WorkerFull, WorkerSuspect, WorkerUpdate};
pub use crate::model::WorkerId;
use crate::orchestrator::config::{Balancing, WorkerEntry};
use crate::orchestrator::store::Store;
use crate::protocol::MemberSource;

/// What the Membership needs to start a proxy for a worker that appears
/// while running (a config edit, a join); given by [`Wire`].
struct ProxyMaker {
    settings: ProxySettings,
    outcomes: Recipient<AttemptOutcome>,
    started: Recipient<AttemptsStarted>,
    took_back: Recipient<TakenBack>,
    full: Recipient<WorkerFull>,
}

pub struct Membership {
    /// Configuration order, joined workers after. Indexes into it are only
    /// held within one message: a removal shifts them (`by_id` is rebuilt).
    workers: Vec<Slot>,
    by_id: HashMap<WorkerId, usize>,
    balancing: Balancing,
    /// The core: told of every change that matters to placement.
    core: Option<Recipient<Roster>>,
    maker: Option<ProxyMaker>,
    /// Where joined members are kept across restarts.
    store: Option<Store>,
    /// Joined workers drained on request and removed, by process instance:
    /// the same process joining again (it re-joins every few seconds)
    /// comes back drained, so a drain holds until resumed or the worker
    /// restarts.
    drained_members: HashMap<WorkerId, String>,
    board: WorkerBoard,
    /// `MAX_WORKERS` and `WORKER_EXPIRY` (none until [`Wire`]).
    limits: MembershipLimits,
    /// Entries of a workers file still to apply ([`ApplyConfig`] applies
    /// them a chunk per turn, so the API is answered in between).
    pending_config: Option<apply::PendingConfig>,
    /// Set while many workers change in one turn: the core is told once
    /// at the end, not once per worker.
    quiet_core: bool,
    /// What the core has not been told yet ([`Self::tell_core`]).
    due: RosterDue,
}

/// The changes the core is still to be told of: the workers whose view
/// changed, or the whole list after a removal or a new order. A join or
/// a change of state sends the core one view, not the whole list: at
/// thousands of workers a storm of joins would otherwise cost O(N²).
#[derive(Default)]
struct RosterDue {
    full: bool,
    changed: Vec<WorkerId>,
    seen: std::collections::HashSet<WorkerId>,
}

impl RosterDue {
    fn mark(&mut self, id: &WorkerId) {
        if !self.full && self.seen.insert(id.clone()) {
            self.changed.push(id.clone());
        }
    }

    fn all(&mut self) {
        self.full = true;
        self.changed.clear();
        self.seen.clear();
    }
}

impl Membership {
    pub fn new(entries: &[WorkerEntry], balancing: Balancing) -> Self {
        Self::with_members(entries, &[], balancing)
    }

    /// Configured workers, then joined ones remembered from before a
    /// restart (a configured id wins over a joined one).
    pub fn with_members(entries: &[WorkerEntry], joined: &[JoinedMember], balancing: Balancing) -> Self {
        let mut workers: Vec<Slot> = entries
            .iter()
            .map(|e| Slot::new(e.clone(), MemberSource::Config, None))
            .collect();
        for m in joined {
            if !workers.iter().any(|w| w.entry.id == m.entry.id) {
                let mut slot = Slot::new(m.entry.clone(), MemberSource::Joined, Some(m.instance.clone()));
                slot.secret_sha256 = m.secret_sha256.clone();
                workers.push(slot);
            }
        }
        let board = WorkerBoard::new(workers.iter().map(|w| w.id.clone()).collect());
        let mut lb = Self {
            workers,
            by_id: HashMap::new(),
            balancing,
            core: None,
            maker: None,
            store: None,
            drained_members: HashMap::new(),
            board,
            limits: MembershipLimits::default(),
            pending_config: None,
            quiet_core: false,
            due: RosterDue {
                full: true,
                ..RosterDue::default()
            },
        };
        lb.reindex();
        for w in &lb.workers {
            lb.board.publish(&w.id, w.info());
        }
        lb
    }

    /// Every worker's entry (configured and joined), for starting proxies.
    pub fn entries(&self) -> Vec<WorkerEntry> {
        self.workers.iter().map(|w| w.entry.clone()).collect()
    }

    /// The live snapshot of every worker, for the API (take it before
    /// starting the actor).
    pub fn board(&self) -> WorkerBoard {
        self.board.clone()
    }

    /// What placement needs of every worker, in order, as if each had a
    /// proxy (for the core's first roster, before the proxies start).
    pub fn views(&self) -> Vec<MemberView> {
        self.workers
            .iter()
            .map(|w| MemberView {
                reachable: true,
                ..w.view()
            })
            .collect()
    }

    /// Rebuilds `by_id` and the board's order after workers were added,
    /// removed or reordered.
    fn reindex(&mut self) {
        self.by_id = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| (w.id.clone(), i))
            .collect();
        self.board
            .reorder(self.workers.iter().map(|w| w.id.clone()).collect());
        self.due.all();
    }

    /// Publishes worker `i`'s row after a change, and tells the core.
    fn changed(&mut self, i: usize) {
        let w = &self.workers[i];
        self.board.publish(&w.id, w.info());
        self.due.mark(&w.id);
        self.tell_core();
    }

    /// Tells every proxy's heartbeat pace how many workers there are.
    fn count_workers(&self) {
        if let Some(maker) = &self.maker {
            maker.settings.pace.set_workers(self.workers.len());
        }
    }

    /// Tells the core what changed since it was last told: the views of
    /// the workers that changed (O(1) for one join or one change of
    /// state), or the whole list after a removal or a new order.
    fn tell_core(&mut self) {
        if self.quiet_core {
            return;
        }
        self.count_workers();
        let Some(core) = &self.core else { return };
        let due = std::mem::take(&mut self.due);
        let slots: Vec<&Slot> = if due.full {
            self.workers.iter().collect()
        } else {
            due.changed
                .iter()
                .filter_map(|id| self.by_id.get(id).map(|&i| &self.workers[i]))
                .collect()
        };
        if !due.full && slots.is_empty() {
            return;
        }
        core.do_send(Roster {
            views: slots.iter().map(|w| w.view()).collect(),
            proxies: slots
                .iter()
                .filter_map(|w| w.proxy.clone().map(|p| (w.id.clone(), p)))
                .collect(),
            full: due.full,
        });
    }

    /// Attempts in flight on worker `i`, as the core last published.
    fn in_flight(&self, i: usize) -> usize {
        self.board.in_flight(&self.workers[i].id)
    }
}

impl Actor for Membership {
    type Context = Context<Self>;
}

/// Sent once at start-up: the core to tell of changes, each worker's
/// proxy, and what a proxy started later needs.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wire {
    pub core: Recipient<Roster>,
    /// Where a proxy reports 429s (the core).
    pub full: Recipient<WorkerFull>,
    pub proxies: Vec<(String, Addr<WorkerProxy>)>,
    pub outcomes: Recipient<AttemptOutcome>,
    pub started: Recipient<AttemptsStarted>,
    pub took_back: Recipient<TakenBack>,
    pub settings: ProxySettings,
    pub store: Option<Store>,
    pub limits: MembershipLimits,
}

impl Handler<Wire> for Membership {
    type Result = ();
    fn handle(&mut self, msg: Wire, ctx: &mut Self::Context) {
        self.core = Some(msg.core);
        self.maker = Some(ProxyMaker {
            settings: msg.settings,
            outcomes: msg.outcomes,
            started: msg.started,
            took_back: msg.took_back,
            full: msg.full,
        });
        self.store = msg.store;
        self.limits = msg.limits;
        if let Some(expiry) = self.limits.expiry {
            // often enough that a member outlives its expiry by a small
            // part of it, rarely enough to cost nothing
            let every = (expiry / 4).clamp(
                std::time::Duration::from_millis(100),
                std::time::Duration::from_secs(10),
            );
            ctx.run_interval(every, |lb, ctx| lb.expire(ctx.address()));
        }
        for (id, proxy) in msg.proxies {
            if let Some(&i) = self.by_id.get(id.as_str()) {
                self.workers[i].proxy = Some(proxy);
            }
        }
        for i in 0..self.workers.len() {
            if self.workers[i].proxy.is_none() {
                self.start_proxy(i, ctx.address());
            }
        }
        self.due.all();
        self.tell_core();
    }
}

impl Handler<WorkerUpdate> for Membership {
    type Result = ();
    fn handle(&mut self, msg: WorkerUpdate, _: &mut Self::Context) {
        let Some(&i) = self.by_id.get(&msg.worker_id) else {
            return;
        };
        let w = &mut self.workers[i];
        if msg.state == WorkerState::Unknown {
            // a worker that has never answered says why (connection
            // refused); it never overrides a state already known
            if w.state == WorkerState::Unknown {
                if msg.reason.is_some() {
                    w.unreachable_since.get_or_insert_with(Instant::now);
                }
                w.state_reason = msg.reason;
                self.changed(i);
            }
            return;
        }
        if msg.state == WorkerState::Down {
            w.unreachable_since.get_or_insert_with(Instant::now);
        } else {
            w.unreachable_since = None;
        }
        let was_up = w.up;
        let up = msg.state.is_up();
        w.up = up;
        w.capacity = msg.capacity;
        if up {
            w.backlog_limit = msg.backlog_limit;
        }
        w.kernels = msg.kernels;
        w.state = msg.state;
        w.state_reason = msg.reason;
        if msg.heartbeat.is_some() {
            w.last_heartbeat = msg.heartbeat;
        }
        // down: its attempts are reported lost by the proxy, one by one;
        // up: the core dispatches on the roster this sends
        if up && !was_up && w.drain.is_none() {
            tracing::info!(worker = %w.id, capacity = w.capacity, kernels = ?w.kernels, "worker up");
        } else if !up && was_up {
            if msg.state == WorkerState::Draining {
                tracing::info!(worker = %w.id, "worker shutting down: no new tasks; its running tasks finish");
            } else {
                let state = w.state_text(self.board.in_flight(&w.id));
                tracing::warn!(worker = %w.id, %state, "worker down");
            }
        }
        self.changed(i);
    }
}

impl Handler<Heartbeat> for Membership {
    type Result = ();
    fn handle(&mut self, msg: Heartbeat, _: &mut Self::Context) {
        if let Some(&i) = self.by_id.get(&msg.worker_id) {
            let w = &mut self.workers[i];
            w.last_heartbeat = Some(msg.at);
            // nothing placement needs: the board's heartbeat only
            self.board.heartbeat(&w.id, msg.at);
        }
    }
}

/// Sent by membership (the Membership) whenever a worker came, went or
/// changed in a way that matters to placement: the workers that changed
/// (a new one goes at the end), or, when `full`, every worker in order
/// (after a removal or a new order); and the proxies that carry their
/// attempts.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Roster {
    pub views: Vec<MemberView>,
    pub proxies: Vec<(WorkerId, Addr<WorkerProxy>)>,
    /// The whole list (workers not in it are gone), else only changes.
    pub full: bool,
}

/// Sent by the core when a draining worker holds nothing any more: it
/// is settled (drained and kept, removed, or moved to its new address).
#[derive(Message)]
#[rtype(result = "()")]
pub struct WorkerIdle {
    pub worker_id: WorkerId,
}

impl Handler<WorkerIdle> for Membership {
    type Result = ();
    fn handle(&mut self, msg: WorkerIdle, ctx: &mut Self::Context) {
        if let Some(&i) = self.by_id.get(&msg.worker_id) {
            self.settle(i, ctx.address());
        }
    }
}

/// Sent by the API, the stats writer and `orquesta status`.
#[derive(Message)]
#[rtype(result = "Vec<WorkerInfo>")]
pub struct Workers;

impl Handler<Workers> for Membership {
    type Result = MessageResult<Workers>;
    fn handle(&mut self, _: Workers, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.board.list())
    }
}

/// Sent by the API: the name of the strategy in use.
#[derive(Message)]
#[rtype(result = "&'static str")]
pub struct StrategyName;

impl Handler<StrategyName> for Membership {
    type Result = MessageResult<StrategyName>;
    fn handle(&mut self, _: StrategyName, _: &mut Self::Context) -> Self::Result {
        MessageResult(strategy(self.balancing).name())
    }
}
