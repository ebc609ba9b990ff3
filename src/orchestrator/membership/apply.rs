//! A workers file applied while the cluster runs, a chunk at a time so
//! that the API and dispatch never wait on a 10,000-entry file.

use std::collections::{HashSet, VecDeque};
use std::time::Instant;

use actix::prelude::*;

use super::{Drain, Membership, Slot};
use crate::model::WorkerId;
use crate::orchestrator::config::WorkerEntry;
use crate::orchestrator::store::Change;
use crate::protocol::MemberSource;

/// Workers-file entries applied this many per turn of the actor: the
/// API's messages are answered between two chunks.
const CONFIG_CHUNK: usize = 256;

/// A workers file being applied ([`ApplyConfig`]).
pub(super) struct PendingConfig {
    /// Its ids in file order (the order of the list once applied).
    order: Vec<WorkerId>,
    entries: VecDeque<WorkerEntry>,
    started: Instant,
    total: usize,
}

/// Sent by the ConfigWatcher with a valid `config_workers.json`: workers
/// added start at once, removed ones drain and leave, changed ones change
/// (a new address once idle). Running tasks are never disturbed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ApplyConfig {
    pub entries: Vec<WorkerEntry>,
}

impl Handler<ApplyConfig> for Membership {
    type Result = ();
    fn handle(&mut self, msg: ApplyConfig, ctx: &mut Self::Context) {
        let me = ctx.address();
        let named: HashSet<&str> = msg.entries.iter().map(|e| e.id.as_str()).collect();
        self.quiet_core = true;
        for i in (0..self.workers.len()).rev() {
            let w = &mut self.workers[i];
            if w.source == MemberSource::Config && !named.contains(w.entry.id.as_str()) {
                tracing::info!(worker = %w.id, "removed from the workers file: draining");
                let was_draining = w.drain.is_some();
                w.drain = Some(Drain::Leave);
                self.changed(i);
                self.settle_if_drained(i, was_draining, me.clone());
            }
        }
        self.quiet_core = false;
        let pending = PendingConfig {
            order: msg.entries.iter().map(|e| WorkerId::new(&e.id)).collect(),
            total: msg.entries.len(),
            entries: msg.entries.into(),
            started: Instant::now(),
        };
        // a newer file replaces one still being applied (its chunk is queued)
        if self.pending_config.replace(pending).is_none() {
            ctx.notify(ApplyChunk);
        }
        self.tell_core();
    }
}

/// Timer-less turn of [`ApplyConfig`]: the next [`CONFIG_CHUNK`] entries
/// of the workers file, then the rest in another turn (queued behind the
/// messages that came meanwhile).
#[derive(Message)]
#[rtype(result = "()")]
struct ApplyChunk;

impl Handler<ApplyChunk> for Membership {
    type Result = ();
    fn handle(&mut self, _: ApplyChunk, ctx: &mut Self::Context) {
        let Some(mut pending) = self.pending_config.take() else {
            return;
        };
        let me = ctx.address();
        self.quiet_core = true;
        let mut added = 0usize;
        let n = CONFIG_CHUNK.min(pending.entries.len());
        for entry in pending.entries.drain(..n) {
            match self.by_id.get(entry.id.as_str()).copied() {
                None => {
                    tracing::debug!(worker = %entry.id, address = %entry.address(), "worker added from the workers file");
                    self.push(Slot::new(entry, MemberSource::Config, None), me.clone());
                    added += 1;
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
                        w.secret_sha256.clear();
                        w.unreachable_since = None;
                    }
                    if w.drain == Some(Drain::Leave) {
                        tracing::info!(worker = %w.id, "back in the workers file: no longer draining");
                        w.drain = None;
                    }
                    self.update_entry(i, entry, me.clone());
                }
            }
        }
        self.quiet_core = false;
        if pending.entries.is_empty() {
            self.order_as_configured(&pending.order);
            if pending.total > CONFIG_CHUNK {
                tracing::info!(
                    workers = pending.total,
                    seconds = pending.started.elapsed().as_secs_f64(),
                    "workers file applied"
                );
            }
        } else {
            if added > 0 {
                self.reindex();
            }
            self.pending_config = Some(pending);
            ctx.notify(ApplyChunk);
        }
        self.tell_core();
    }
}
