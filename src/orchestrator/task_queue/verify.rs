//! Replication: results checked by running them again. The simulation is
//! deterministic (the same bits on every worker, width and thread count),
//! so `VERIFY_FRACTION` of completed simulations is run again on another
//! capable worker and the physics compared bit for bit. Part of the core:
//! events in, effects out, no clock, no I/O.
//!
//! - **Sampled** when a task completes: every 1/`VERIFY_FRACTION`-th
//!   completed simulation (a running credit, no randomness), never a test
//!   kernel's. At most [`MAX_CHECKS`] wait. A waiting check is persisted
//!   (an effect: [`CheckChange`]) from its sampling until it is decided
//!   or given up, so a restart rebuilds it ([`LiveTasks::checks_recovered`]).
//! - **Run** only on a free slot of a worker no queued task could use (no
//!   ready, delayed or paged-out task of a kernel it runs), never on a
//!   worker that already gave its answer.
//! - **Withdrawn** as soon as work could use its slot: a task that found
//!   no room at a placement (ready after it, in a kernel the worker runs)
//!   or that waits in that worker's backlog behind it. The run is
//!   cancelled on the worker, its slot freed at once, and the check waits
//!   again at the head of the line; a withdrawal is not one of its
//!   [`MAX_TRIES`]. So a verification run never delays work. A
//!   verification run is an
//!   ordinary run on the wire with a fresh attempt id, but it is never an
//!   attempt of the task: nothing is persisted when it starts, its result
//!   is compared and acknowledged, never recorded, and its slot is
//!   released without teaching placement a speed.
//! - **Decided** by the majority: two equal answers agree; two different
//!   ones wait for a third worker, and whoever disagrees with two others
//!   is **quarantined** (an effect: membership marks it suspect, so it
//!   gets no new tasks and shows the reason). With fewer capable workers
//!   the check waits (with one, nothing is ever verified).
//! - **Corrected**: a quarantined worker's results since its last agreeing
//!   verification (at most [`RECENT_PER_WORKER`]) are checked again
//!   elsewhere; a recorded result the majority contradicts is replaced by
//!   the majority's run (`corrected_from` names the quarantined worker),
//!   persisted, and put in the wrong record's place in `results/`
//!   (`results_store/corrections.rs`).

use std::collections::{HashMap, VecDeque};

use serde_json::Value;

use super::live::{Effects, Entry, Freed, LiveTasks, Outbound};
use super::outcome::mismatch_with_task;
use super::OutcomeKind;
use crate::model::{AttemptId, RunStatus, TaskId, TaskResult, TaskStatus, WorkerId};
use crate::orchestrator::store::{Change, CheckChange, StoredCheck};
use crate::util::time::iso_at;

/// Most checks waiting for a worker; a sampled task beyond it is not
/// verified.
pub const MAX_CHECKS: usize = 1024;

/// Most completed tasks remembered per worker since its last agreeing
/// verification: what is checked again if it is quarantined.
pub const RECENT_PER_WORKER: usize = 64;

/// A check whose runs were lost or refused this many times is dropped.
const MAX_TRIES: u32 = 3;

/// The figures of `metrics` that are not physics: they differ between
/// honest runs (time, memory, threads, the kernel's name as resolved).
const NOT_PHYSICS: [&str; 5] = [
    "particle_steps_per_second",
    "memory_used",
    "memory_bytes",
    "threads",
    "kernel",
];

/// The physics of a result as one number: its status, effective
/// parameters and every metric but [`NOT_PHYSICS`], hashed from their
/// JSON text (numbers written shortest-exact, so equal text is equal bits,
/// and -0.0 is not 0.0) by 64-bit FNV-1a: the same number in every build,
/// so a digest persisted before a restart (or an upgrade) still compares.
pub fn physics_digest(result: &TaskResult) -> u64 {
    let mut metrics = result.result.metrics.clone();
    if let Value::Object(m) = &mut metrics {
        for k in NOT_PHYSICS {
            m.remove(k);
        }
    }
    let text = serde_json::to_string(&(result.result.status, &result.effective_parameters, &metrics))
        .unwrap_or_default();
    text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The change that persists `check` as waiting.
fn waiting(check: &Check) -> Change {
    Change::Check(CheckChange::Waiting {
        task_id: check.entry.task_id.clone(),
        votes: check.votes.clone(),
        tries: check.tries,
    })
}

/// The change that forgets the check of `task_id`.
fn done(task_id: &TaskId) -> Change {
    Change::Check(CheckChange::Done {
        task_id: task_id.clone(),
    })
}

/// A completed task to verify, and the answers so far (the recorded one
/// first).
#[derive(Debug, Clone)]
struct Check {
    entry: Entry,
    votes: Vec<(WorkerId, u64)>,
    tries: u32,
}

/// A verification run out on a worker.
#[derive(Debug)]
struct Out {
    attempt_id: AttemptId,
    worker: WorkerId,
    check: Check,
}

/// Counts since start, for `/stats` and the tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Serialize)]
pub struct VerifyCounters {
    /// Verification runs sent.
    pub runs: u64,
    /// Checks where every answer agreed.
    pub agreed: u64,
    /// Checks decided against a worker.
    pub mismatches: u64,
    /// Recorded results replaced by the majority's.
    pub corrected: u64,
    /// Workers quarantined.
    pub quarantined: u64,
    /// Verification runs cancelled because work could use their slot.
    pub withdrawn: u64,
    /// Checks waiting for a worker now (filled in by [`Verifier::stats`]).
    pub waiting: u64,
}

/// The replication state of the core.
#[derive(Debug, Default)]
pub struct Verifier {
    fraction: f64,
    credit: f64,
    waiting: VecDeque<Check>,
    out: HashMap<TaskId, Out>,
    recent: HashMap<WorkerId, VecDeque<(Entry, u64)>>,
    quarantined: HashMap<WorkerId, String>,
    pub counters: VerifyCounters,
}

impl Verifier {
    /// `fraction` of completed simulations verified (0: none).
    pub fn new(fraction: f64) -> Self {
        Self {
            fraction: fraction.clamp(0.0, 1.0),
            ..Self::default()
        }
    }

    /// Why `worker` was quarantined, if it was.
    pub fn quarantined(&self, worker: &WorkerId) -> Option<&str> {
        self.quarantined.get(worker).map(String::as_str)
    }

    /// A person resumed `worker` (`POST /workers/{id}/resume`): its
    /// quarantine is lifted here too, so its results are sampled and it
    /// verifies others again. Answers whether it was quarantined.
    pub fn lift(&mut self, worker: &WorkerId) -> bool {
        self.quarantined.remove(worker).is_some()
    }

    /// Checks waiting for a worker.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// `check` waits (first in line, or last), persisted as it now is;
    /// one beyond [`MAX_CHECKS`] is forgotten.
    fn queue(&mut self, check: Check, first: bool, fx: &mut Effects) {
        let task = &check.entry.task_id;
        if self.out.contains_key(task) || self.waiting.iter().any(|c| &c.entry.task_id == task) {
            return;
        }
        fx.persist.push(waiting(&check));
        if first {
            self.waiting.push_front(check);
        } else {
            self.waiting.push_back(check);
        }
        while self.waiting.len() > MAX_CHECKS {
            if let Some(dropped) = self.waiting.pop_back() {
                fx.persist.push(done(&dropped.entry.task_id));
            }
        }
    }

    /// Counts since start, and the checks waiting now.
    pub fn stats(&self) -> VerifyCounters {
        VerifyCounters {
            waiting: self.waiting.len() as u64,
            ..self.counters
        }
    }
}

impl LiveTasks {
    /// A task completed on `worker` with `result` (called by `complete`):
    /// remembered as that worker's recent result, and sampled.
    pub(super) fn verify_completed(
        &mut self,
        entry: &Entry,
        worker: &WorkerId,
        result: &TaskResult,
        fx: &mut Effects,
    ) {
        let v = &mut self.verify;
        if v.fraction <= 0.0
            || result.result.status != RunStatus::Completed
            || entry.kernel.as_str().starts_with("__")
            || v.quarantined.contains_key(worker)
        {
            return;
        }
        let digest = physics_digest(result);
        let recent = v.recent.entry(worker.clone()).or_default();
        recent.push_back((entry.clone(), digest));
        if recent.len() > RECENT_PER_WORKER {
            recent.pop_front();
        }
        v.credit += v.fraction;
        if v.credit >= 1.0 - 1e-9 {
            v.credit = (v.credit - 1.0).max(0.0);
            v.queue(
                Check {
                    entry: entry.clone(),
                    votes: vec![(worker.clone(), digest)],
                    tries: 0,
                },
                false,
                fx,
            );
        }
    }

    /// Event (at start-up): the checks that were waiting before the
    /// restart wait again (already persisted).
    pub fn checks_recovered(&mut self, checks: Vec<StoredCheck>) {
        for c in checks {
            let Some(entry) = super::entry::Entry::from_row(c.row) else {
                continue;
            };
            if self.verify.waiting.len() >= MAX_CHECKS {
                break;
            }
            if self
                .verify
                .waiting
                .iter()
                .any(|w| w.entry.task_id == entry.task_id)
            {
                continue;
            }
            self.verify.waiting.push_back(Check {
                entry,
                votes: c.votes,
                tries: c.tries,
            });
        }
        if !self.verify.waiting.is_empty() {
            tracing::info!(
                checks = self.verify.waiting.len(),
                "verifications waiting before the restart wait again"
            );
        }
    }

    /// Event (end of a dispatch): waiting checks go to free slots of
    /// workers no queued task could use.
    pub(super) fn start_verifications(&mut self, now: f64, fx: &mut Effects) {
        if self.verify.waiting.is_empty() {
            return;
        }
        let delayed = !self.index.delayed.is_empty();
        let free: Vec<(WorkerId, Vec<crate::model::KernelName>)> = self
            .loads
            .taking(now)
            .filter(|(id, kernels)| {
                let queued = kernels.iter().any(|k| {
                    self.index
                        .queues
                        .get(k)
                        .is_some_and(|q| !q.ready.is_empty() || q.more_in_db)
                });
                !queued && !delayed && !self.verify.quarantined.contains_key(*id)
            })
            .map(|(id, kernels)| (id.clone(), kernels.to_vec()))
            .collect();
        for (worker, kernels) in free {
            loop {
                let room = self
                    .loads
                    .capacity(&worker)
                    .is_some_and(|c| self.loads.in_flight(&worker) < c);
                if !room {
                    break;
                }
                let pick = self.verify.waiting.iter().position(|c| {
                    kernels.contains(&c.entry.kernel)
                        && !c.votes.iter().any(|(w, _)| *w == worker)
                        && !self.verify.out.contains_key(&c.entry.task_id)
                });
                let Some(i) = pick else { break };
                let check = self.verify.waiting.remove(i).expect("just found");
                let attempt_id = self.attempt_id();
                self.loads.reserve(&worker, now);
                fx.loads_changed.push(worker.clone());
                fx.send.push(Outbound::Run {
                    worker: worker.clone(),
                    task_id: check.entry.task_id.clone(),
                    attempt_id,
                    body: check.entry.body.clone(),
                });
                tracing::info!(task = %check.entry.task_id, %worker, %attempt_id, "verification run sent");
                self.verify.counters.runs += 1;
                self.verify.out.insert(
                    check.entry.task_id.clone(),
                    Out {
                        attempt_id,
                        worker: worker.clone(),
                        check,
                    },
                );
            }
        }
    }

    /// Event (in each dispatch, after placement): verification runs whose
    /// slot work could use are withdrawn (see the module doc). Answers how
    /// many, so that the actor places again on the slots freed.
    pub(super) fn withdraw_verifications(&mut self, now: f64, fx: &mut Effects) -> usize {
        if self.verify.out.is_empty() {
            return 0;
        }
        // ready tasks left by placement, per kernel (paged out: unbounded)
        let mut left: HashMap<crate::model::KernelName, usize> = self
            .index
            .queues
            .iter()
            .map(|(k, q)| (*k, if q.more_in_db { usize::MAX } else { q.ready.len() }))
            .filter(|(_, n)| *n > 0)
            .collect();
        // per worker: its verification runs, and the core's own tasks
        // there beyond the slots those runs leave (they wait behind them)
        let mut runs: Vec<(TaskId, WorkerId)> = self
            .verify
            .out
            .iter()
            .map(|(t, o)| (t.clone(), o.worker.clone()))
            .collect();
        runs.sort();
        // counted in one pass: a count per run was the square of the runs
        // (hundreds at the end of a batch on hundreds of workers)
        let mut behind: HashMap<WorkerId, usize> = HashMap::new();
        for (_, w) in &runs {
            *behind.entry(w.clone()).or_default() += 1;
        }
        for (w, n) in behind.iter_mut() {
            let ours = self
                .index
                .workers
                .get(w)
                .map_or(0, |on| on.running + on.sent_ahead.len());
            let capacity = self.loads.capacity(w).unwrap_or(0);
            *n = (ours + *n).saturating_sub(capacity);
        }
        let mut withdrawn = 0;
        for (task_id, worker) in runs {
            let waits_here = behind.get_mut(&worker).filter(|n| **n > 0);
            let wanted = match waits_here {
                Some(n) => {
                    *n -= 1;
                    true
                }
                None => {
                    let kernel = left
                        .iter_mut()
                        .find(|(k, n)| **n > 0 && self.loads.accepts(&worker, **k, now))
                        .map(|(_, n)| n);
                    match kernel {
                        Some(n) => {
                            *n = n.saturating_sub(1);
                            true
                        }
                        None => false,
                    }
                }
            };
            if !wanted {
                continue;
            }
            let out = self.verify.out.remove(&task_id).expect("listed above");
            tracing::info!(task = %task_id, %worker, attempt_id = %out.attempt_id,
                "verification run withdrawn: work can use its slot");
            fx.send.push(Outbound::CancelOnWorker {
                worker: worker.clone(),
                task_id: task_id.clone(),
            });
            self.release(&worker, Freed::Nothing, None, now, fx);
            self.verify.counters.withdrawn += 1;
            // not a failed try: it waits again, first in line
            self.verify.queue(out.check, true, fx);
            withdrawn += 1;
        }
        withdrawn
    }

    /// Whether this attempt is a verification run (its outcome goes to
    /// [`Self::verification_outcome`]).
    pub(super) fn is_verification(&self, task_id: &TaskId, attempt_id: AttemptId) -> bool {
        self.verify
            .out
            .get(task_id)
            .is_some_and(|o| o.attempt_id == attempt_id)
    }

    /// Event: a verification run ended. Its slot is free; a completed
    /// result is acknowledged and counted as that worker's answer;
    /// anything else sends the check back to wait (at most
    /// [`MAX_TRIES`] times).
    pub(super) fn verification_outcome(&mut self, task_id: &TaskId, kind: OutcomeKind, now: f64) -> Effects {
        let mut fx = Effects::default();
        let Some(out) = self.verify.out.remove(task_id) else {
            return fx;
        };
        self.release(&out.worker, Freed::Nothing, None, now, &mut fx);
        let mut check = out.check;
        let answer = match kind {
            OutcomeKind::Result(result) => {
                fx.send.push(Outbound::Ack {
                    worker: out.worker.clone(),
                    task_id: task_id.clone(),
                });
                let usable = result.result.status == RunStatus::Completed
                    && mismatch_with_task(&check.entry, &result).is_none();
                usable.then_some(result)
            }
            _ => None,
        };
        match answer {
            Some(result) => self.vote(check, out.worker, *result, now, &mut fx),
            None => {
                check.tries += 1;
                if check.tries < MAX_TRIES {
                    self.verify.queue(check, true, &mut fx);
                } else {
                    fx.persist.push(done(task_id));
                }
            }
        }
        fx
    }

    /// `worker`'s answer to a check: agreed, decided by a majority, or
    /// waiting for a third worker.
    fn vote(&mut self, mut check: Check, worker: WorkerId, result: TaskResult, now: f64, fx: &mut Effects) {
        let digest = physics_digest(&result);
        check.votes.push((worker.clone(), digest));
        let task_id = check.entry.task_id.clone();
        for (w, _) in &check.votes {
            // this one is being decided here: not checked again
            if let Some(recent) = self.verify.recent.get_mut(w) {
                recent.retain(|(e, _)| e.task_id != task_id);
            }
        }
        let count = |d: u64| check.votes.iter().filter(|(_, v)| *v == d).count();
        if check.votes.iter().all(|(_, d)| *d == digest) {
            fx.persist.push(done(&task_id));
            self.verify.counters.agreed += 1;
            tracing::info!(task = %task_id, %worker, "verification agreed");
            for (w, _) in &check.votes {
                // its results so far are vouched for
                if let Some(recent) = self.verify.recent.get_mut(w) {
                    recent.clear();
                }
            }
            return;
        }
        let majority = check
            .votes
            .iter()
            .map(|(_, d)| *d)
            .find(|d| count(*d) >= 2 && 2 * count(*d) > check.votes.len());
        let Some(majority) = majority else {
            if check.votes.len() < 3 {
                tracing::warn!(task = %task_id, recorded_by = %check.votes[0].0, %worker,
                    "verification: two workers disagree; a third decides");
                self.verify.queue(check, true, fx);
            } else {
                tracing::warn!(task = %task_id, "verification: three workers disagree; nobody can be told wrong");
                fx.persist.push(done(&task_id));
            }
            return;
        };
        fx.persist.push(done(&task_id));
        self.verify.counters.mismatches += 1;
        let agreeing: Vec<String> = check
            .votes
            .iter()
            .filter(|(_, d)| *d == majority)
            .map(|(w, _)| w.to_string())
            .collect();
        let recorded_by = check.votes[0].0.clone();
        let wrong: Vec<WorkerId> = check
            .votes
            .iter()
            .filter(|(_, d)| *d != majority)
            .map(|(w, _)| w.clone())
            .collect();
        for w in wrong {
            let why = format!(
                "quarantined: its result of task {task_id} differs from the same run on {}",
                agreeing.join(" and ")
            );
            self.quarantine(&w, why, fx);
        }
        if check.votes[0].1 != majority && digest == majority {
            self.correct(&check.entry, &recorded_by, &worker, result, now, fx);
        }
    }

    /// `worker` disagreed with the majority: no new tasks (membership is
    /// told), and its recent results are checked again elsewhere.
    fn quarantine(&mut self, worker: &WorkerId, why: String, fx: &mut Effects) {
        if self.verify.quarantined.contains_key(worker) {
            return;
        }
        tracing::error!(%worker, reason = %why, "worker quarantined; its recent results are checked again elsewhere");
        self.verify.quarantined.insert(worker.clone(), why.clone());
        self.verify.counters.quarantined += 1;
        fx.quarantine.push((worker.clone(), why));
        let recent = self.verify.recent.remove(worker).unwrap_or_default();
        for (entry, digest) in recent.into_iter().rev() {
            self.verify.queue(
                Check {
                    entry,
                    votes: vec![(worker.clone(), digest)],
                    tries: 0,
                },
                true,
                fx,
            );
        }
    }

    /// The recorded result of a task was contradicted by the majority:
    /// `from`'s run replaces it, as the task's result (`corrected_from`
    /// names the worker that recorded the wrong one).
    fn correct(
        &mut self,
        entry: &Entry,
        wrong: &WorkerId,
        from: &WorkerId,
        mut result: TaskResult,
        now: f64,
        fx: &mut Effects,
    ) {
        tracing::warn!(task = %entry.task_id, %wrong, %from, "recorded result replaced by the majority's");
        self.verify.counters.corrected += 1;
        result.worker_id = Some(from.clone());
        result.completed_at = Some(iso_at(now));
        result.priority = Some(entry.priority);
        result.attempt_id = None;
        result.echo(&entry.echo());
        result.source = Some(entry.source.to_string());
        result.set_corrected_from(wrong.as_str());
        let json = serde_json::to_string(&result).unwrap_or_default();
        fx.persist.push(Change::Ended {
            task_id: entry.task_id.clone(),
            status: TaskStatus::Completed,
            result: Some(json),
            error: None,
            worker_id: Some(from.clone()),
            at: now,
        });
        fx.corrected.push(result);
    }
}
