//! Membership: workers added, changed and removed while the cluster runs
//! (a config edit, a join, a drain, a `DELETE`). The Membership owns
//! the list; a worker that leaves is *settled* once idle (drained and
//! kept, removed, or moved to its new address), so no running task is
//! disturbed, and its proxy is retired ([`Retire`]).
//!
//! A changed address is drain-and-replace rather than an update in place:
//! the old proxy holds the running attempts' connections, so it finishes
//! them while a new proxy (same id) starts once the worker is idle.
//!
//! Bounds: at most `MAX_WORKERS` workers (a join beyond it is refused),
//! a joined worker unreachable for `WORKER_EXPIRY` is removed, and a
//! workers file is applied a chunk at a time ([`ApplyConfig`]).
//!
//! An id belongs to its worker: the first join of an id is given a secret
//! (the worker keeps it in its folder), and another process may take the
//! id back only by showing it; without it, it waits until the holder is
//! removed or expires ([`JoinRefused::Held`]).

use std::time::Duration;

use actix::prelude::*;

use super::{Drain, Membership, Slot, WorkerState, WorkerSuspect};
use crate::model::WorkerId;
use crate::orchestrator::config::WorkerEntry;
use crate::orchestrator::store::Change;
use crate::orchestrator::worker_proxy::{ProxyPeers, Retire, RetireRemoved, UpdateEntry, WorkerProxy};
use crate::protocol::MemberSource;

/// A joined worker (from a join, or from the store after a restart).
#[derive(Debug, Clone, PartialEq)]
pub struct JoinedMember {
    pub entry: WorkerEntry,
    pub instance: String,
    /// The digest of the secret it was given (from the store; empty in a join).
    pub secret_sha256: String,
}

/// The bounds of the membership (`MAX_WORKERS`, `WORKER_EXPIRY`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MembershipLimits {
    /// Joins are refused once this many workers (configured and joined)
    /// are members.
    pub max_workers: usize,
    /// A joined worker unreachable this long is removed (none: kept).
    pub expiry: Option<Duration>,
}

impl Default for MembershipLimits {
    fn default() -> Self {
        Self {
            max_workers: usize::MAX,
            expiry: None,
        }
    }
}

impl Membership {
    /// Starts a proxy for worker `i` (when wired; before that, the
    /// orchestrator starts them and hands them over in [`Wire`]).
    pub(super) fn start_proxy(&mut self, i: usize, me: Addr<Self>) {
        let Some(maker) = &self.maker else { return };
        let peers = ProxyPeers {
            outcomes: maker.outcomes.clone(),
            started: maker.started.clone(),
            took_back: maker.took_back.clone(),
            heartbeats: me.clone().recipient(),
            updates: me.clone().recipient(),
            full: maker.full.clone(),
            suspects: me.recipient(),
        };
        let w = &mut self.workers[i];
        w.proxy = Some(WorkerProxy::new(w.entry.clone(), maker.settings.clone(), peers).start());
    }

    /// Adds a worker at the end and starts its proxy.
    pub(super) fn add(&mut self, slot: Slot, me: Addr<Self>) -> usize {
        tracing::info!(worker = %slot.id, address = %slot.entry.address(), source = ?slot.source, "worker added");
        // at the end: the order and the index grow by one, no rebuild
        let i = self.push(slot, me);
        self.board.append(&self.workers[i].id);
        self.changed(i);
        i
    }

    /// Adds a worker at the end and starts its proxy; the caller reindexes
    /// (for the board's order) and tells the core.
    pub(super) fn push(&mut self, slot: Slot, me: Addr<Self>) -> usize {
        let id = slot.id.clone();
        self.workers.push(slot);
        let i = self.workers.len() - 1;
        self.by_id.insert(id, i);
        self.start_proxy(i, me);
        let w = &self.workers[i];
        self.board.publish(&w.id, w.info());
        self.due.mark(&w.id.clone());
        i
    }

    /// Removes the joined workers unreachable for `WORKER_EXPIRY` (their
    /// proxies retired: anything they held goes back to the queue).
    pub(super) fn expire(&mut self, _me: Addr<Self>) {
        let Some(expiry) = self.limits.expiry else { return };
        let expired: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|w| w.source == MemberSource::Joined)
            .filter(|w| w.unreachable_since.is_some_and(|t| t.elapsed() >= expiry))
            .map(|w| w.id.clone())
            .collect();
        for id in expired {
            let Some(&i) = self.by_id.get(&id) else { continue };
            tracing::info!(worker = %id, expiry_seconds = expiry.as_secs_f64(),
                "joined worker unreachable for WORKER_EXPIRY: removed (it may join again)");
            let slot = self.remove(i);
            if let Some(p) = slot.proxy {
                p.do_send(RetireRemoved);
            }
        }
    }

    /// Puts the configured workers in `order` first, joined and leaving
    /// ones after as they were.
    pub(super) fn order_as_configured(&mut self, order: &[WorkerId]) {
        let place: std::collections::HashMap<&WorkerId, usize> =
            order.iter().enumerate().map(|(k, id)| (id, k)).collect();
        let (mut configured, rest): (Vec<Slot>, Vec<Slot>) = std::mem::take(&mut self.workers)
            .into_iter()
            .partition(|w| w.source == MemberSource::Config && place.contains_key(&w.id));
        configured.sort_by_key(|w| place[&w.id]);
        configured.extend(rest);
        self.workers = configured;
        self.reindex();
    }

    /// Removes worker `i` now; its proxy is returned (not yet retired).
    fn remove(&mut self, i: usize) -> Slot {
        let slot = self.workers.remove(i);
        // the core forgets its load and speeds (a worker that comes back
        // under this id may be another machine) on the roster this sends
        self.reindex();
        self.tell_core();
        if slot.source == MemberSource::Joined {
            self.forget_member(&slot.id);
        }
        tracing::info!(worker = %slot.id, "worker removed");
        slot
    }

    pub(super) fn remember_member(&self, i: usize) {
        let w = &self.workers[i];
        if let (Some(store), MemberSource::Joined) = (&self.store, w.source) {
            store.persist(vec![Change::MemberJoined {
                id: w.id.clone(),
                url: w.entry.base_url(),
                capacity: w.entry.capacity,
                algorithms: w.entry.algorithms.clone(),
                instance: w.instance.clone().unwrap_or_default(),
                secret_sha256: w.secret_sha256.clone(),
                at: crate::util::time::unix_now(),
            }]);
        }
    }

    fn forget_member(&self, id: &WorkerId) {
        if let Some(store) = &self.store {
            store.persist(vec![Change::MemberLeft { id: id.clone() }]);
        }
    }

    /// A draining worker that has become idle: drained (kept), removed, or
    /// replaced by a proxy at its new address. Called when the core says
    /// it holds nothing ([`super::WorkerIdle`]): after the core has seen
    /// the drain, so nothing new is placed there meanwhile.
    pub(super) fn settle(&mut self, i: usize, me: Addr<Self>) {
        if self.in_flight(i) > 0 {
            return;
        }
        let w = &self.workers[i];
        match w.drain.clone() {
            None => {}
            Some(Drain::Asked) => {
                tracing::info!(worker = %w.id, "worker drained");
            }
            Some(Drain::Suspect) => {
                tracing::info!(worker = %w.id, "suspect worker drained; POST /workers/{}/resume to trust it again", w.id);
            }
            Some(Drain::Leave) => {
                let slot = self.remove(i);
                if let (MemberSource::Joined, Some(instance)) = (slot.source, &slot.instance) {
                    if !instance.is_empty() {
                        self.drained_members.insert(slot.id.clone(), instance.clone());
                    }
                }
                if let Some(p) = slot.proxy {
                    p.do_send(RetireRemoved);
                }
                return;
            }
            Some(Drain::Replace(entry)) => {
                tracing::info!(worker = %w.id, from = %w.entry.address(), to = %entry.address(),
                    "worker idle: now reached at its new address");
                if let Some(p) = self.workers[i].proxy.take() {
                    p.do_send(Retire);
                }
                let w = &mut self.workers[i];
                w.entry = entry;
                w.up = false;
                w.capacity = w.entry.capacity;
                w.kernels = w.entry.kernels();
                w.state = WorkerState::Unknown;
                w.state_reason = None;
                w.drain = None;
                self.start_proxy(i, me);
                self.remember_member(i);
            }
        }
        self.changed(i);
    }

    /// A new entry for worker `i` (config edit, re-join): capacity and
    /// algorithms apply at once (the proxy asks the worker again); a new
    /// address once the worker is idle.
    pub(super) fn update_entry(&mut self, i: usize, entry: WorkerEntry, me: Addr<Self>) {
        let w = &mut self.workers[i];
        let was_draining = w.drain.is_some();
        if w.entry == entry {
            if matches!(w.drain, Some(Drain::Replace(_))) {
                w.drain = None; // moved back before the move happened
            }
        } else if w.entry.address() != entry.address() {
            w.drain = Some(Drain::Replace(entry));
        } else {
            tracing::info!(worker = %w.id, capacity = entry.capacity, algorithms = ?entry.algorithms,
                "worker changed");
            w.capacity = if w.up {
                w.capacity.min(entry.capacity)
            } else {
                entry.capacity
            };
            let allowed = entry.kernels();
            w.kernels.retain(|k| allowed.contains(k));
            if !w.up {
                w.kernels = allowed;
            }
            w.entry = entry.clone();
            if let Some(p) = &w.proxy {
                p.do_send(UpdateEntry { entry });
            }
        }
        self.changed(i);
        self.settle_if_drained(i, was_draining, me);
    }

    /// Worker `i` was already draining (the core places nothing there) and
    /// holds nothing: a new reason to drain settles it now, as the core
    /// tells only of workers that have just become idle.
    pub(super) fn settle_if_drained(&mut self, i: usize, was_draining: bool, me: Addr<Self>) {
        if was_draining && self.workers[i].drain.is_some() && self.in_flight(i) == 0 {
            self.settle(i, me);
        }
    }
}

/// Sent by `POST /workers/{id}/drain`: no new tasks; running ones
/// finish; then `drained` (a joined worker is then removed). Answers the
/// state, or `None` for an unknown id.
#[derive(Message)]
#[rtype(result = "Option<WorkerState>")]
pub struct DrainWorker {
    pub id: String,
}

impl Handler<DrainWorker> for Membership {
    type Result = Option<WorkerState>;
    fn handle(&mut self, msg: DrainWorker, _: &mut Self::Context) -> Self::Result {
        let i = *self.by_id.get(msg.id.as_str())?;
        let in_flight = self.in_flight(i);
        let w = &mut self.workers[i];
        if w.drain.is_none() {
            tracing::info!(worker = %w.id, in_flight, "draining on request");
            w.drain = Some(match w.source {
                MemberSource::Config => Drain::Asked,
                MemberSource::Joined => Drain::Leave,
            });
        }
        let state = w.visible_state(in_flight);
        // settled when the core, having seen the drain, says it is idle
        self.changed(i);
        Some(state)
    }
}

impl Handler<WorkerSuspect> for Membership {
    type Result = ();
    fn handle(&mut self, msg: WorkerSuspect, ctx: &mut Self::Context) {
        let Some(&i) = self.by_id.get(&msg.worker_id) else {
            return;
        };
        let w = &mut self.workers[i];
        let was_draining = w.drain.is_some();
        w.suspect = Some(msg.reason);
        // leaving or moving already: that goes on; else kept, drained
        if matches!(w.drain, None | Some(Drain::Asked)) {
            w.drain = Some(Drain::Suspect);
        }
        self.changed(i);
        self.settle_if_drained(i, was_draining, ctx.address());
    }
}

/// Sent by `POST /workers/{id}/resume`: undoes a drain (a suspect worker
/// is trusted again). Answers the
/// state, or `None` for an unknown id.
#[derive(Message)]
#[rtype(result = "Option<WorkerState>")]
pub struct ResumeWorker {
    pub id: String,
}

impl Handler<ResumeWorker> for Membership {
    type Result = Option<WorkerState>;
    fn handle(&mut self, msg: ResumeWorker, _: &mut Self::Context) -> Self::Result {
        let i = *self.by_id.get(msg.id.as_str())?;
        let in_flight = self.in_flight(i);
        let w = &mut self.workers[i];
        if matches!(w.drain, Some(Drain::Asked | Drain::Leave | Drain::Suspect)) {
            tracing::info!(worker = %w.id, "resumed");
            w.drain = None;
        }
        w.suspect = None;
        let state = w.visible_state(in_flight);
        self.changed(i);
        Some(state)
    }
}

/// Sent by `DELETE /workers/{id}`: removes the worker now. Answers its
/// proxy (to be sent [`Retire`], which puts its running tasks back in the
/// queue), or `None` for an unknown id.
#[derive(Message)]
#[rtype(result = "Option<Option<Addr<WorkerProxy>>>")]
pub struct RemoveWorker {
    pub id: String,
}

impl Handler<RemoveWorker> for Membership {
    type Result = Option<Option<Addr<WorkerProxy>>>;
    fn handle(&mut self, msg: RemoveWorker, _: &mut Self::Context) -> Self::Result {
        let Some(&i) = self.by_id.get(msg.id.as_str()) else {
            // a drained joined worker that has already left
            return self.drained_members.remove(msg.id.as_str()).map(|_| None);
        };
        if self.workers[i].source == MemberSource::Config {
            tracing::warn!(worker = %msg.id, "a configured worker was removed; it comes back when the workers file is edited or the orchestrator restarts");
        }
        let proxy = self.remove(i).proxy;
        Some(proxy)
    }
}

/// Sent by the API (`GET /workers/{id}`) and at shutdown: the proxy of
/// one worker, or of all.
#[derive(Message)]
#[rtype(result = "Vec<Addr<WorkerProxy>>")]
pub struct Proxies {
    pub id: Option<String>,
}

impl Handler<Proxies> for Membership {
    type Result = MessageResult<Proxies>;
    fn handle(&mut self, msg: Proxies, _: &mut Self::Context) -> Self::Result {
        MessageResult(
            self.workers
                .iter()
                .filter(|w| msg.id.as_deref().is_none_or(|id| w.entry.id == id))
                .filter_map(|w| w.proxy.clone())
                .collect(),
        )
    }
}
