//! No task waits behind a busy worker: taking back tasks sent ahead. The
//! transitions are [`LiveTasks`] methods, part of dispatch.
//!
//! A task sent ahead waits in its worker's backlog when that worker's
//! slots are all busy. The core takes it back (asks its worker for it,
//! [`Outbound::TakeBack`]) when:
//! - **a free slot elsewhere**: another worker that runs it has a slot
//!   that nothing holds, and no ready task that worker runs has its
//!   priority or a better one (such a task takes the slot at once, with no
//!   round trip to the other worker; the tasks of one priority each start
//!   in a slot that frees, not necessarily in arrival order): the slot is
//!   held for it ([`TaskState::TakingBack`] `to`) until the worker
//!   answers, and it is sent there at once if given back;
//! - **a sooner start elsewhere**: the speed model
//!   (`placement/expected.rs`) predicts that it would start much sooner
//!   on another worker that runs it and has room (in a slot or in its
//!   backlog) than where it waits, and finish sooner there too. With a
//!   margin, so that tasks do not bounce on the noise of predictions: the
//!   start there must come at least [`SoonerStarts::min_gain`] seconds and
//!   [`SoonerStarts::min_fraction`] of the wait earlier, and a task moved
//!   is not moved this way again for [`SoonerStarts::settle`] seconds
//!   (settings `SOONER_START_*`; [`LiveTasks::sooner`] `None` turns this
//!   move off). One such move at a time
//!   goes to a worker (it is predicted without the task until it arrives);
//!   nothing goes where a better ready task would wait behind it, or below
//!   that worker's floor (below);
//! - **priority across workers**: it has a lower priority than a task
//!   waiting in another worker's backlog that its own worker could run
//!   (when its worker's slot frees, it would start first). Placement
//!   keeps this from happening in the first place ([`Claims::floor`]);
//!   this undoes it when a better task came after it.
//!
//! Exactly once: only the worker knows whether the task started, so its
//! answer decides ([`LiveTasks::took_back`]). Given back, the attempt ends
//! uncounted (nothing of it was persisted: a task sent ahead is still
//! queued in the database). Started, it stays and runs once, its attempt
//! kept. Not there (on its way, already answered, or the worker could not
//! be asked), it stays where it was sent and is not asked again for
//! [`PAUSE`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::live::{Effects, Freed, LiveTasks, Outbound, TaskState};
use crate::model::{AttemptId, KernelName, Priority, TaskId, WorkerId};
use crate::orchestrator::placement::{first_free, lay, Claims};
use crate::orchestrator::worker_proxy::TakeBackOutcome;

pub use crate::orchestrator::config::SoonerStarts;

/// After a take-back found the task not there, how long before it may be
/// asked back again (seconds).
pub const PAUSE: f64 = 0.5;

/// Sooner starts are looked for at most this often (seconds): a walk of
/// the backlogs, not worth making at every dispatch of tiny tasks, and a
/// wait of seconds does not change in a fifth of one.
pub const SOONER_EVERY: f64 = 0.2;

/// The most take-backs one dispatch asks for.
const MOST_AT_ONCE: usize = 64;

impl LiveTasks {
    /// Tasks sent ahead to `worker` that wait behind its busy slots, best
    /// first: all but the best `capacity − running` (those take the free
    /// slots), and those being taken back from it.
    pub(super) fn waiting_on<'a>(
        &'a self,
        worker: &'a WorkerId,
    ) -> impl Iterator<Item = ((Priority, i64), &'a TaskId)> + 'a {
        let back = self
            .index
            .workers
            .get(worker)
            .into_iter()
            .flat_map(|on| on.taking_back.iter());
        self.sent_waiting(worker).chain(back.map(|(k, id)| (*k, id)))
    }

    /// The tasks of [`Self::waiting_on`] still sent ahead (none being
    /// taken back), in queue order.
    fn sent_waiting<'a>(
        &'a self,
        worker: &'a WorkerId,
    ) -> impl Iterator<Item = ((Priority, i64), &'a TaskId)> + 'a {
        let on = self.index.workers.get(worker);
        let free = on.map_or(0, |on| {
            let capacity = self.loads.capacity(worker).unwrap_or(0);
            capacity.saturating_sub(on.running)
        });
        on.into_iter()
            .flat_map(|on| on.sent_ahead.iter())
            .skip(free)
            .map(|(k, id)| (*k, id))
    }

    /// What placement holds back now for tasks of priority `placing`
    /// ([`Claims`]): slots held for tasks being taken back, and per worker
    /// that takes tasks the best priority waiting in another worker's
    /// backlog that it runs (only when a task better than `placing` is
    /// sent ahead somewhere: otherwise no floor binds).
    pub(super) fn claims(&self, now: f64, placing: Priority) -> Claims {
        let mut claims = Claims::default();
        for (w, on) in &self.index.workers {
            if on.incoming > 0 {
                claims.incoming.insert(w.clone(), on.incoming);
            }
        }
        if self.index.ahead_by_priority[..placing as usize]
            .iter()
            .all(|n| *n == 0)
        {
            return claims;
        }
        // per worker holding a backlog: the best waiting priority per kernel
        let best: Vec<(WorkerId, HashMap<KernelName, Priority>)> = self
            .index
            .workers
            .keys()
            .map(|w| {
                let mut per_kernel: HashMap<KernelName, Priority> = HashMap::new();
                for (key, id) in self.waiting_on(w) {
                    if let Some(t) = self.tasks.get(id) {
                        per_kernel
                            .entry(t.entry.kernel)
                            .and_modify(|p| *p = (*p).min(key.0))
                            .or_insert(key.0);
                    }
                }
                (w.clone(), per_kernel)
            })
            .filter(|(_, k)| !k.is_empty())
            .collect();
        if best.is_empty() {
            return claims;
        }
        for (w, kernels) in self.loads.taking(now) {
            let floor = best
                .iter()
                .filter(|(other, _)| other != w)
                .flat_map(|(_, k)| k.iter())
                .filter(|(kernel, _)| kernels.contains(kernel))
                .map(|(_, p)| *p)
                .min();
            if let Some(floor) = floor {
                claims.floor.insert(w.clone(), floor);
            }
        }
        claims
    }

    /// Event (at the start of each dispatch): asks back the tasks that
    /// wait behind busy slots while a free slot elsewhere could run them
    /// (see the module doc).
    pub(super) fn take_back_to_free_slots(&mut self, now: f64, fx: &mut Effects) {
        if self.index.workers.is_empty() {
            return;
        }
        // a free slot elsewhere, and the priority a task must beat to be
        // taken back to it: that of the best ready task it runs (a ready
        // task of the same priority takes the slot at once, with no
        // round trip; none ready: any task waiting in a backlog)
        if self.index.ahead_by_priority.iter().all(|n| *n == 0) {
            return;
        }
        // the bar is asked only of workers with a free slot (few, when
        // many workers hold a backlog each)
        let mut free: Vec<(WorkerId, usize, usize)> = Vec::new();
        for (w, _) in self.loads.taking(now) {
            let held = self.loads.in_flight(w) + self.index.workers.get(w).map_or(0, |on| on.incoming);
            let n = self.loads.capacity(w).unwrap_or(0).saturating_sub(held);
            if n > 0 {
                let bar = self
                    .best_ready_for(w)
                    .map_or(Priority::ALL.len(), |(p, _)| p as usize);
                free.push((w.clone(), n, bar));
            }
        }
        // nothing sent ahead beats the best bar: a walk of the backlogs
        // would find nothing (the common case: tiny tasks of one priority)
        let Some(bar) = free.iter().map(|(_, _, bar)| *bar).max() else {
            return;
        };
        if self.index.ahead_by_priority[..bar].iter().all(|n| *n == 0) {
            return;
        }
        // the backlogs (tasks still sent ahead: only those may be asked)
        // merged best first, read only as far as needed
        let mut backlogs: Vec<_> = self
            .index
            .workers
            .keys()
            .map(|w| (w, self.sent_waiting(w).peekable()))
            .collect();
        let mut heads: BinaryHeap<Reverse<((Priority, i64), usize)>> = backlogs
            .iter_mut()
            .enumerate()
            .filter_map(|(i, (_, it))| it.peek().map(|(key, _)| Reverse((*key, i))))
            .collect();
        let mut chosen: Vec<(TaskId, WorkerId)> = Vec::new();
        while let Some(Reverse((key, i))) = heads.pop() {
            if chosen.len() >= MOST_AT_ONCE || free.is_empty() {
                break;
            }
            let (from, it) = &mut backlogs[i];
            let Some((_, task_id)) = it.next() else { continue };
            if let Some((next, _)) = it.peek() {
                heads.push(Reverse((*next, i)));
            }
            if !self.may_ask(task_id, now) {
                continue;
            }
            let Some(t) = self.tasks.get(task_id) else {
                continue;
            };
            let slot = free.iter().position(|(w, _, bar)| {
                w != *from
                    && (key.0 as usize) < *bar
                    && !t.entry.failed_on.contains(w)
                    && self.loads.accepts(w, t.entry.kernel, now)
            });
            let Some(at) = slot else { continue };
            chosen.push((task_id.clone(), free[at].0.clone()));
            free[at].1 -= 1;
            if free[at].1 == 0 {
                free.remove(at);
            }
        }
        drop(backlogs);
        for (task_id, to) in chosen {
            self.ask_back(&task_id, Some(to), fx);
        }
    }

    /// Event (at the start of each dispatch, after the free slots): asks
    /// back the tasks that would start much sooner on another worker (see
    /// the module doc).
    pub(super) fn take_back_to_sooner_starts(&mut self, now: f64, fx: &mut Effects) {
        let Some(margins) = self.sooner else { return };
        if self.index.workers.is_empty() || now < self.sooner_after {
            return;
        }
        self.sooner_after = now + SOONER_EVERY;
        let expected = self.loads.expected();
        // workers whose backlog may wait long enough to gain: all they
        // hold laid end to end comes to at least the least gain (a cheap
        // bound, nothing for tasks of no work: most dispatches stop here)
        let waiting_long: Vec<&WorkerId> = self
            .index
            .workers
            .iter()
            .filter(|(w, on)| {
                !on.sent_ahead.is_empty()
                    && first_free(&expected.slots_after(w, 1, usize::MAX, now)) >= margins.min_gain
            })
            .map(|(w, _)| w)
            .collect();
        if waiting_long.is_empty() {
            return;
        }
        // where a task could go: workers that take tasks, have room, and
        // have no task on its way to them; when they could start one more
        let mut targets: Vec<(WorkerId, f64)> = self
            .loads
            .taking(now)
            .map(|(w, _)| w.clone())
            .collect::<Vec<_>>()
            .into_iter()
            .filter(|w| self.index.workers.get(w).is_none_or(|on| on.incoming == 0))
            .filter(|w| self.loads.has_room(w, 0, now))
            .filter_map(|w| {
                let capacity = self.loads.capacity(&w)?;
                let start = expected.start_in(&w, capacity, now);
                Some((w, start))
            })
            .collect();
        if targets.is_empty() {
            return;
        }
        // soonest start first: a task takes the first target that passes
        // (the soonest of those that do), and the walk stops at the first
        // that starts too late to gain, so a task costs a look or two, not
        // one per worker (with hundreds of workers holding backlogs of
        // tasks that all wait long, that walk was the whole dispatch)
        targets.sort_by(|a, b| a.1.total_cmp(&b.1));
        // per worker holding a backlog: its tasks in the order it starts
        // them, each with when it would start there
        let mut moves: Vec<(TaskId, WorkerId, f64, f64)> = Vec::new();
        // the floors cost a walk of every backlog: only once a task may move
        let mut claims: Option<Claims> = None;
        for w in waiting_long {
            let Some(on) = self.index.workers.get(w) else {
                continue;
            };
            if moves.len() >= MOST_AT_ONCE || targets.is_empty() {
                break;
            }
            let Some(capacity) = self.loads.capacity(w) else {
                continue;
            };
            let mut slots = expected.slots_after(w, capacity, on.running, now);
            let mut backlog: Vec<(&(Priority, i64), &TaskId)> =
                on.sent_ahead.iter().chain(on.taking_back.iter()).collect();
            backlog.sort_by_key(|(k, _)| **k);
            // this worker's speed per kernel, looked up once (a median)
            let mut speeds: Vec<(KernelName, f64)> = Vec::new();
            for (key, id) in backlog {
                let Some(t) = self.tasks.get(id) else { continue };
                let size = t.entry.task_size();
                let work = size.work();
                let here_run = if work > 0.0 {
                    let speed = match speeds.iter().find(|(k, _)| *k == size.kernel) {
                        Some((_, s)) => *s,
                        None => {
                            let s = expected.speed(w, size.kernel.as_str());
                            speeds.push((size.kernel, s));
                            s
                        }
                    };
                    work / speed
                } else {
                    0.0
                };
                let here = lay(&mut slots, here_run);
                if moves.len() >= MOST_AT_ONCE
                    || here < margins.min_gain
                    || work <= 0.0
                    || t.entry.settled_after > now
                    || !self.may_ask(id, now)
                {
                    continue;
                }
                let claims = claims.get_or_insert_with(|| self.claims(now, Priority::Low));
                let gain = margins.min_gain.max(margins.min_fraction * here);
                let mut best = None;
                for (i, (to, start)) in targets.iter().enumerate() {
                    if here - start < gain {
                        break;
                    }
                    let may = to != w
                        && !t.entry.failed_on.contains(to)
                        && self.loads.accepts(to, size.kernel, now)
                        && self.best_ready_for(to).is_none_or(|ready| *key < ready)
                        && claims.floor.get(to).is_none_or(|floor| key.0 <= *floor);
                    if may && start + expected.predict(to, &size) < here + here_run {
                        best = Some((i, *start));
                        break;
                    }
                }
                if let Some((i, there)) = best {
                    let (to, _) = targets.remove(i);
                    moves.push((id.clone(), to, here, there));
                    if targets.is_empty() {
                        break;
                    }
                }
            }
        }
        for (id, to, here, there) in moves {
            tracing::info!(task = %id, to = %to, start_here_s = format!("{here:.1}"),
                start_there_s = format!("{there:.1}"), "it would start sooner on another worker");
            self.ask_back(&id, Some(to), fx);
        }
    }

    /// Event (at the end of each dispatch): asks back the tasks queued
    /// in a backlog below a task waiting in another one that their worker
    /// could run (see the module doc).
    pub(super) fn take_back_below_floors(&mut self, now: f64, fx: &mut Effects) {
        if self.index.workers.is_empty() {
            return;
        }
        // the worst priority sent ahead: with one priority only, no floor
        let Some(worst) = (0..3).rev().find(|&p| self.index.ahead_by_priority[p] > 0) else {
            return;
        };
        let mut asked = 0;
        let claims = self.claims(now, Priority::ALL[worst]);
        let mut lower: Vec<TaskId> = Vec::new();
        for (w, floor) in &claims.floor {
            for (key, id) in self.waiting_on(w) {
                if key.0 > *floor
                    && matches!(
                        self.tasks.get(id).map(|t| &t.state),
                        Some(TaskState::SentAhead { .. })
                    )
                {
                    lower.push(id.clone());
                }
            }
        }
        for id in lower {
            if asked >= MOST_AT_ONCE {
                break;
            }
            if self.may_ask(&id, now) {
                self.ask_back(&id, None, fx);
                asked += 1;
            }
        }
    }

    /// The first ready task in queue order of a kernel that `worker`
    /// runs, if any.
    fn best_ready_for(&self, worker: &WorkerId) -> Option<(Priority, i64)> {
        self.index
            .queues
            .iter()
            .filter(|(kernel, _)| self.loads.accepts(worker, **kernel, f64::INFINITY))
            .filter_map(|(_, q)| q.ready.first_key_value().map(|(k, _)| *k))
            .min()
    }

    /// Sent ahead, and not asked back lately.
    fn may_ask(&self, task_id: &TaskId, now: f64) -> bool {
        self.tasks
            .get(task_id)
            .is_some_and(|t| matches!(t.state, TaskState::SentAhead { .. }) && t.entry.take_back_after <= now)
    }

    /// Asks the task's worker to give it back, to run on `to`.
    fn ask_back(&mut self, task_id: &TaskId, to: Option<WorkerId>, fx: &mut Effects) {
        let Some(TaskState::SentAhead { worker, attempt_id }) = self.state_of(task_id).cloned() else {
            return;
        };
        tracing::info!(task = %task_id, from = %worker, to = ?to.as_ref().map(WorkerId::as_str),
            "taking back a task that waits behind busy slots");
        fx.send.push(Outbound::TakeBack {
            worker: worker.clone(),
            task_id: task_id.clone(),
            attempt_id,
        });
        self.transition(
            task_id,
            TaskState::TakingBack {
                worker,
                attempt_id,
                to,
            },
        );
    }

    /// Event: `worker` answered the take-back of attempt `attempt_id`.
    pub fn took_back(
        &mut self,
        task_id: &TaskId,
        attempt_id: AttemptId,
        outcome: TakeBackOutcome,
        now: f64,
    ) -> Effects {
        self.clock = self.clock.max(now);
        let mut fx = Effects::default();
        let Some(TaskState::TakingBack {
            worker,
            attempt_id: asked,
            to,
        }) = self.state_of(task_id).cloned()
        else {
            // it started, ended, was cancelled or handed back meanwhile
            return fx;
        };
        if asked != attempt_id {
            return fx;
        }
        match outcome {
            TakeBackOutcome::Started => {
                // it runs there: its attempt stays, once
                fx = self.started(task_id, attempt_id, now);
            }
            TakeBackOutcome::NotHere => {
                let t = self.tasks.get_mut(task_id).expect("being taken back");
                t.entry.take_back_after = now + PAUSE;
                self.transition(task_id, TaskState::SentAhead { worker, attempt_id });
                fx.wake_at.push(now + PAUSE);
            }
            TakeBackOutcome::Returned => {
                // nothing of this attempt was persisted: it is not counted
                let entry = &mut self.tasks.get_mut(task_id).expect("being taken back").entry;
                entry.attempts = entry.attempts.saturating_sub(1);
                entry.settled_after = now + self.sooner.unwrap_or_default().settle;
                let (size, kernel) = (entry.task_size(), entry.kernel);
                self.counters.taken_back += 1;
                self.transition(task_id, TaskState::Placing);
                self.release(&worker, Freed::Nothing, Some(size), now, &mut fx);
                match to.filter(|w| self.loads.accepts(w, kernel, now)) {
                    Some(to) => {
                        self.loads.assign(&to, size, now);
                        fx.loads_changed.push(to.clone());
                        fx.merge(self.placed(task_id, Some(to)));
                    }
                    None => {
                        self.transition(task_id, TaskState::Ready);
                    }
                }
                self.room();
            }
        }
        fx
    }
}
