//! Joins: a worker that announces itself, the bounds on who may (`MAX_WORKERS`),
//! and an id that belongs to its first holder (the secret it was given).

use actix::prelude::*;

use super::{Drain, JoinedMember, Membership, Slot, WorkerState};
use crate::model::WorkerId;
use crate::protocol::MemberSource;
use crate::util::secret;

/// Why a join was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JoinRefused {
    #[error(
        "worker id {id:?} belongs to another live worker at {address}; give this worker another --worker-id"
    )]
    Taken { id: String, address: String },
    /// Another process holds the id and this one did not show its secret.
    #[error(
        "worker id {id:?} is held by another worker process (joined from {address}, now {state}) and this \
         one did not show the secret that process was given at its first join; it may take the id once that \
         one is removed (DELETE /workers/{id}){expiry}; or give this worker another --worker-id"
    )]
    Held {
        id: String,
        address: String,
        state: String,
        /// ` or has been unreachable for WORKER_EXPIRY = N s`, or empty.
        expiry: String,
    },
    #[error(
        "the orchestrator already has MAX_WORKERS = {max} workers; no worker joins until one leaves or expires \
         (raise MAX_WORKERS to allow more)"
    )]
    Full { max: usize },
}

/// A join accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    pub source: MemberSource,
    /// A new secret for the worker to keep (empty: keep the one it has).
    pub secret: String,
}

/// Sent by `POST /workers/join` (validated): a worker registers itself,
/// and again every few seconds. Answers where the orchestrator knows it
/// from, and a secret when one is issued.
#[derive(Message)]
#[rtype(result = "Result<Joined, JoinRefused>")]
pub struct Join {
    pub member: JoinedMember,
    /// The secret the worker shows (empty: none).
    pub secret: String,
}

impl Handler<Join> for Membership {
    type Result = Result<Joined, JoinRefused>;
    fn handle(&mut self, msg: Join, ctx: &mut Self::Context) -> Self::Result {
        let JoinedMember { entry, instance, .. } = msg.member;
        let Some(&i) = self.by_id.get(entry.id.as_str()) else {
            if self.workers.len() >= self.limits.max_workers {
                return Err(JoinRefused::Full {
                    max: self.limits.max_workers,
                });
            }
            let id = WorkerId::new(&entry.id);
            let drained = self.drained_members.remove(&id).is_some_and(|d| d == instance);
            let issued = secret::new_secret().unwrap_or_default();
            let mut slot = Slot::new(entry, MemberSource::Joined, Some(instance));
            slot.secret_sha256 = secret::digest(&issued);
            if drained {
                // the process drained on request joins again: still drained
                slot.drain = Some(Drain::Asked);
            }
            let i = self.add(slot, ctx.address());
            self.remember_member(i);
            return Ok(Joined {
                source: MemberSource::Joined,
                secret: issued,
            });
        };
        let expiry = self.limits.expiry;
        let in_flight = self.in_flight(i);
        let w = &mut self.workers[i];
        match w.source {
            MemberSource::Config if w.entry.address() == entry.address() => Ok(Joined {
                source: MemberSource::Config,
                secret: String::new(),
            }),
            MemberSource::Config => Err(JoinRefused::Taken {
                id: entry.id.clone(),
                address: w.entry.address(),
            }),
            MemberSource::Joined => {
                // the same process (its instance), or another start of it
                // (the secret it keeps in its folder); a member from a
                // database older than secrets proves itself the old way
                // once: its address, or a holder that is gone
                let same_process = !instance.is_empty() && w.instance.as_deref() == Some(instance.as_str());
                let shows_secret = secret::matches(&msg.secret, &w.secret_sha256);
                let gone = w.state == WorkerState::Down
                    || (w.state == WorkerState::Unknown && w.state_reason.is_some());
                let legacy = w.secret_sha256.is_empty() && (w.entry.address() == entry.address() || gone);
                if !(same_process || shows_secret || legacy) {
                    return Err(JoinRefused::Held {
                        id: entry.id.clone(),
                        address: w.entry.address(),
                        state: w.state_text(in_flight),
                        expiry: expiry
                            .map(|e| {
                                format!(
                                    " or has been unreachable for WORKER_EXPIRY = {} s",
                                    e.as_secs_f64()
                                )
                            })
                            .unwrap_or_default(),
                    });
                }
                let issued = if shows_secret {
                    String::new()
                } else {
                    secret::new_secret().unwrap_or_default()
                };
                if !issued.is_empty() {
                    w.secret_sha256 = secret::digest(&issued);
                }
                let changed = w.instance.as_deref() != Some(instance.as_str())
                    || w.entry != entry
                    || !issued.is_empty();
                w.instance = Some(instance);
                if changed {
                    let id = w.id.clone();
                    self.update_entry(i, entry, ctx.address());
                    if let Some(&i) = self.by_id.get(&id) {
                        self.remember_member(i);
                    }
                }
                Ok(Joined {
                    source: MemberSource::Joined,
                    secret: issued,
                })
            }
        }
    }
}
