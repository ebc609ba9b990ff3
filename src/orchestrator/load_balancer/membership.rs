//! Membership: workers added, changed and removed while the cluster runs
//! (a config edit, a join, a drain, a `DELETE`). The LoadBalancer owns
//! the list; a worker that leaves is *settled* once idle (drained and
//! kept, removed, or moved to its new address), so no running task is
//! disturbed, and its proxy is retired ([`Retire`]).
//!
//! A changed address is drain-and-replace rather than an update in place:
//! the old proxy holds the running attempts' connections, so it finishes
//! them while a new proxy (same id) starts once the worker is idle.

use actix::prelude::*;

use super::{Drain, LoadBalancer, Slot, WorkerState};
use crate::model::WorkerId;
use crate::orchestrator::config::WorkerEntry;
use crate::orchestrator::store::Change;
use crate::orchestrator::worker_proxy::{ProxyPeers, Retire, UpdateEntry, WorkerProxy};
use crate::protocol::MemberSource;

/// A joined worker (from a join, or from the store after a restart).
#[derive(Debug, Clone, PartialEq)]
pub struct JoinedMember {
    pub entry: WorkerEntry,
    pub instance: String,
}

impl LoadBalancer {
    /// Starts a proxy for worker `i` (when wired; before that, the
    /// orchestrator starts them and hands them over in [`Wire`]).
    pub(super) fn start_proxy(&mut self, i: usize, me: Addr<Self>) {
        let Some(maker) = &self.maker else { return };
        let peers = ProxyPeers {
            outcomes: maker.outcomes.clone(),
            started: maker.started.clone(),
            took_back: maker.took_back.clone(),
            heartbeats: me.clone().recipient(),
            updates: me.recipient(),
            full: maker.full.clone(),
        };
        let w = &mut self.workers[i];
        w.proxy = Some(WorkerProxy::new(w.entry.clone(), maker.settings.clone(), peers).start());
    }

    /// Adds a worker at the end and starts its proxy.
    fn add(&mut self, slot: Slot, me: Addr<Self>) -> usize {
        tracing::info!(worker = %slot.id, address = %slot.entry.address(), source = ?slot.source, "worker added");
        self.workers.push(slot);
        let i = self.workers.len() - 1;
        self.reindex();
        self.start_proxy(i, me);
        self.changed(i);
        i
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

    fn remember_member(&self, i: usize) {
        let w = &self.workers[i];
        if let (Some(store), MemberSource::Joined) = (&self.store, w.source) {
            store.persist(vec![Change::MemberJoined {
                id: w.id.clone(),
                url: w.entry.base_url(),
                capacity: w.entry.capacity,
                algorithms: w.entry.algorithms.clone(),
                instance: w.instance.clone().unwrap_or_default(),
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
            Some(Drain::Leave) => {
                let slot = self.remove(i);
                if let (MemberSource::Joined, Some(instance)) = (slot.source, &slot.instance) {
                    if !instance.is_empty() {
                        self.drained_members.insert(slot.id.clone(), instance.clone());
                    }
                }
                if let Some(p) = slot.proxy {
                    p.do_send(Retire);
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
    fn update_entry(&mut self, i: usize, entry: WorkerEntry, me: Addr<Self>) {
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
    fn settle_if_drained(&mut self, i: usize, was_draining: bool, me: Addr<Self>) {
        if was_draining && self.workers[i].drain.is_some() && self.in_flight(i) == 0 {
            self.settle(i, me);
        }
    }
}

/// Sent by the ConfigWatcher with a valid `config_workers.json`: workers
/// added start at once, removed ones drain and leave, changed ones change
/// (a new address once idle). Running tasks are never disturbed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ApplyConfig {
    pub entries: Vec<WorkerEntry>,
}

impl Handler<ApplyConfig> for LoadBalancer {
    type Result = ();
    fn handle(&mut self, msg: ApplyConfig, ctx: &mut Self::Context) {
        let me = ctx.address();
        let ids: Vec<String> = msg.entries.iter().map(|e| e.id.clone()).collect();
        for i in (0..self.workers.len()).rev() {
            let w = &mut self.workers[i];
            if w.source == MemberSource::Config && !ids.contains(&w.entry.id) {
                tracing::info!(worker = %w.id, "removed from the workers file: draining");
                let was_draining = w.drain.is_some();
                w.drain = Some(Drain::Leave);
                self.changed(i);
                self.settle_if_drained(i, was_draining, me.clone());
            }
        }
        for entry in msg.entries {
            match self.by_id.get(entry.id.as_str()).copied() {
                None => {
                    self.add(Slot::new(entry, MemberSource::Config, None), me.clone());
                }
                Some(i) => {
                    let w = &mut self.workers[i];
                    if w.source == MemberSource::Joined {
                        // the file now names it: the file governs it
                        if let Some(store) = &self.store {
                            store.persist(vec![Change::MemberLeft { id: w.id.clone() }]);
                        }
                        w.source = MemberSource::Config;
                        w.instance = None;
                    }
                    if w.drain == Some(Drain::Leave) {
                        tracing::info!(worker = %w.id, "back in the workers file: no longer draining");
                        w.drain = None;
                    }
                    self.update_entry(i, entry, me.clone());
                }
            }
        }
        // configuration order first, then joined workers as they came
        let mut order: Vec<Slot> = Vec::with_capacity(self.workers.len());
        let mut rest = std::mem::take(&mut self.workers);
        for id in &ids {
            if let Some(k) = rest
                .iter()
                .position(|w| w.entry.id == *id && w.source == MemberSource::Config)
            {
                order.push(rest.remove(k));
            }
        }
        order.extend(rest);
        self.workers = order;
        self.reindex();
        self.tell_core();
    }
}

/// Why a join was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JoinRefused {
    #[error(
        "worker id {id:?} belongs to another live worker at {address}; give this worker another --worker-id"
    )]
    Taken { id: String, address: String },
}

/// Sent by `POST /workers/join` (validated): a worker registers itself,
/// and again every few seconds. Answers where the orchestrator knows it
/// from.
#[derive(Message)]
#[rtype(result = "Result<MemberSource, JoinRefused>")]
pub struct Join {
    pub member: JoinedMember,
}

impl Handler<Join> for LoadBalancer {
    type Result = Result<MemberSource, JoinRefused>;
    fn handle(&mut self, msg: Join, ctx: &mut Self::Context) -> Self::Result {
        let JoinedMember { entry, instance } = msg.member;
        let Some(&i) = self.by_id.get(entry.id.as_str()) else {
            let id = WorkerId::new(&entry.id);
            let drained = self.drained_members.remove(&id).is_some_and(|d| d == instance);
            let mut slot = Slot::new(entry, MemberSource::Joined, Some(instance));
            if drained {
                // the process drained on request joins again: still drained
                slot.drain = Some(Drain::Asked);
            }
            let i = self.add(slot, ctx.address());
            self.remember_member(i);
            return Ok(MemberSource::Joined);
        };
        let w = &mut self.workers[i];
        let taken = || JoinRefused::Taken {
            id: entry.id.clone(),
            address: w.entry.address(),
        };
        match w.source {
            MemberSource::Config if w.entry.address() == entry.address() => Ok(MemberSource::Config),
            MemberSource::Config => Err(taken()),
            MemberSource::Joined => {
                // an empty instance (a hand-made join) proves nothing; a
                // holder that is down, or has never answered and refuses
                // connections (remembered from before a restart, its process
                // gone), is not a live worker to protect: without the second,
                // a worker restarted at a new port while the orchestrator was
                // down was refused (409) for ever after the restart
                let gone = w.state == WorkerState::Down
                    || (w.state == WorkerState::Unknown && w.state_reason.is_some());
                let same = (!instance.is_empty() && w.instance.as_deref() == Some(instance.as_str()))
                    || w.entry.address() == entry.address()
                    || gone;
                if !same {
                    return Err(taken());
                }
                let changed = w.instance.as_deref() != Some(instance.as_str()) || w.entry != entry;
                w.instance = Some(instance);
                if changed {
                    let id = w.id.clone();
                    self.update_entry(i, entry, ctx.address());
                    if let Some(&i) = self.by_id.get(&id) {
                        self.remember_member(i);
                    }
                }
                Ok(MemberSource::Joined)
            }
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

impl Handler<DrainWorker> for LoadBalancer {
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

/// Sent by `POST /workers/{id}/resume`: undoes a drain. Answers the
/// state, or `None` for an unknown id.
#[derive(Message)]
#[rtype(result = "Option<WorkerState>")]
pub struct ResumeWorker {
    pub id: String,
}

impl Handler<ResumeWorker> for LoadBalancer {
    type Result = Option<WorkerState>;
    fn handle(&mut self, msg: ResumeWorker, _: &mut Self::Context) -> Self::Result {
        let i = *self.by_id.get(msg.id.as_str())?;
        let in_flight = self.in_flight(i);
        let w = &mut self.workers[i];
        if matches!(w.drain, Some(Drain::Asked | Drain::Leave)) {
            tracing::info!(worker = %w.id, "resumed");
            w.drain = None;
        }
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

impl Handler<RemoveWorker> for LoadBalancer {
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

impl Handler<Proxies> for LoadBalancer {
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
