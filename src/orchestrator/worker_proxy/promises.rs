//! A worker is held to what it promised. Three lies are caught here, each
//! taking the attempts back and telling membership the worker is suspect
//! ([`WorkerSuspect`]: it gets no new tasks until resumed):
//!
//! - `started` beyond the capacity it agreed to: the attempts over it go
//!   back to the queue (not counted: the worker had no slot for them).
//!   Checked [`OVERSTART_GRACE`] after the start, because a result and the
//!   next `started` travel on different batch streams and may arrive in
//!   either order.
//! - a batch's answer silent (no line, not even its tick) for
//!   `WORKER_TIMEOUT`: cut, as if the connection broke (`batch.rs`).
//! - a running task that stops advancing: asked with `GET /current`,
//!   a task whose `steps_done` has not moved for max(`STALL_TIMEOUT`,
//!   [`STALL_STEPS`] × its own time per step) is cancelled there and
//!   reported lost (an attempt: the worker had it).
//!
//! And the user's own limit: an attempt that runs longer than
//! `TASK_TIMEOUT` is cancelled there and reported timed out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::{OutcomeKind, WorkerProxy, WorkerSuspect};
use crate::model::{AttemptId, TaskId};
use crate::protocol::{CurrentAnswer, CurrentTask, BATCH_TICK_SECONDS};

/// How long a start over capacity may wait for the result that frees
/// its slot before it counts as a lie.
pub const OVERSTART_GRACE: Duration = Duration::from_secs(2);

/// A task stalls after this many of its own steps' time without an advance
/// (when that is longer than `STALL_TIMEOUT`).
pub const STALL_STEPS: f64 = 20.0;

/// How far a running attempt had got.
#[derive(Debug, Clone)]
pub struct Progress {
    attempt_id: AttemptId,
    steps_done: u64,
    advanced: Instant,
}

/// How often running tasks are checked for stalls: a quarter of the
/// limit, between 0.5 s and 15 s.
pub fn stall_check_every(stall: Duration) -> Duration {
    (stall / 4).clamp(Duration::from_millis(500), Duration::from_secs(15))
}

/// The longest a batch's answer may stay silent: `WORKER_TIMEOUT`, and
/// never less than three of the worker's ticks.
pub fn batch_silence_limit(worker_timeout: Duration) -> Duration {
    worker_timeout.max(Duration::from_secs(3 * BATCH_TICK_SECONDS))
}

/// The stall limit of a task that has taken `per_step` a step (none yet
/// measured: the floor).
pub fn stall_limit(floor: Duration, per_step: Option<f64>) -> Duration {
    let measured = per_step
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(Duration::ZERO, |s| {
            Duration::from_secs_f64((STALL_STEPS * s).min(1e7))
        });
    floor.max(measured)
}

impl WorkerProxy {
    /// Tells membership that the worker broke a promise.
    pub(super) fn suspect(&self, reason: String) {
        if self.retired {
            return;
        }
        tracing::warn!(worker = %self.id, %reason, "worker suspect: it gets no new tasks until POST /workers/{}/resume", self.id);
        self.peers.suspects.do_send(WorkerSuspect {
            worker_id: self.id.clone(),
            reason,
        });
    }

    /// Cancels an attempt on the worker (best effort) and forgets it here.
    fn take_back(&mut self, task_id: &TaskId) {
        self.in_flight.remove(task_id);
        self.progress.remove(task_id);
        let cancel = self.client.post(format!("{}/cancel/{task_id}", self.base)).send();
        actix_rt::spawn(async move {
            let _ = cancel.await;
        });
    }

    /// After a `started`: if the worker now runs more than it agreed to,
    /// checks again after [`OVERSTART_GRACE`]. One check is armed at a
    /// time: a timer per start would pile up thousands in the actor's
    /// context when results and starts cross on their streams, and actix
    /// polls every pending one at each message.
    pub(super) fn watch_capacity(&mut self, ctx: &mut Context<Self>) {
        if !self.capacity_check_armed && self.running_here() > self.capacity.max(1) {
            self.arm_capacity_check(OVERSTART_GRACE, ctx);
        }
    }

    fn arm_capacity_check(&mut self, after: Duration, ctx: &mut Context<Self>) {
        self.capacity_check_armed = true;
        ctx.run_later(after, |act, ctx| {
            act.capacity_check_armed = false;
            act.check_capacity(Instant::now(), ctx);
        });
    }

    fn running_here(&self) -> usize {
        self.in_flight.values().filter(|f| f.started.is_some()).count()
    }

    /// Still more running than the agreed capacity: the latest starts over
    /// it that are [`OVERSTART_GRACE`] old go back to the queue, and the
    /// worker is suspect; younger ones are looked at again when they are.
    fn check_capacity(&mut self, now: Instant, ctx: &mut Context<Self>) {
        let capacity = self.capacity.max(1);
        let running = self.running_here();
        if running <= capacity || self.retired {
            return;
        }
        let mut started: Vec<(Instant, u64, TaskId, AttemptId)> = self
            .in_flight
            .iter()
            .filter_map(|(id, f)| Some((f.started?, f.seq, id.clone(), f.attempt_id)))
            .collect();
        started.sort_unstable_by_key(|s| (s.0, s.1));
        let (over, young): (Vec<_>, Vec<_>) = started
            .split_off(capacity)
            .into_iter()
            .partition(|s| now.saturating_duration_since(s.0) >= OVERSTART_GRACE);
        if let Some(first) = young.first() {
            self.arm_capacity_check(OVERSTART_GRACE.saturating_sub(now - first.0), ctx);
        }
        if over.is_empty() {
            return;
        }
        let why = format!(
            "the worker said it runs {running} tasks, more than the {capacity} slots it agreed to; \
             the {} over them went back to the queue",
            over.len()
        );
        for (_, _, task_id, attempt_id) in over {
            self.take_back(&task_id);
            self.report(
                task_id,
                attempt_id,
                OutcomeKind::Refused(format!(
                    "the worker started the task beyond its capacity ({capacity})"
                )),
            );
        }
        self.suspect(why);
    }

    /// One timer for `TASK_TIMEOUT`, at the earliest deadline of the
    /// attempts running in batches: a timer per attempt would stay in the
    /// actor's context for the whole limit (an hour, say) after the task
    /// ended, and actix polls every pending one at each message.
    pub(super) fn arm_timeouts(&mut self, after: Duration, ctx: &mut Context<Self>) {
        self.timeout_armed = true;
        ctx.run_later(after, |act, ctx| {
            act.timeout_armed = false;
            act.check_timeouts(Instant::now(), ctx);
        });
    }

    /// Attempts that have run `TASK_TIMEOUT` are cancelled on the worker
    /// and reported timed out; the timer is armed again for the next.
    fn check_timeouts(&mut self, now: Instant, ctx: &mut Context<Self>) {
        let Some(limit) = self.settings.task_timeout else {
            return;
        };
        let running = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.batch != 0)
            .filter_map(|(id, f)| Some((f.started?, id, f.attempt_id)));
        let (over, within): (Vec<_>, Vec<_>) =
            running.partition(|(s, ..)| now.saturating_duration_since(*s) >= limit);
        let next = within.iter().map(|(s, ..)| *s).min();
        let over: Vec<(TaskId, AttemptId)> = over.into_iter().map(|(_, id, a)| (id.clone(), a)).collect();
        for (task_id, attempt_id) in over {
            self.time_out(&task_id, attempt_id);
        }
        if let Some(started) = next {
            self.arm_timeouts(limit.saturating_sub(now - started), ctx);
        }
    }

    /// The attempt ran longer than `TASK_TIMEOUT`: it is cancelled on the
    /// worker and reported timed out.
    fn time_out(&mut self, task_id: &TaskId, attempt_id: AttemptId) {
        self.in_flight.remove(task_id);
        let cancel = self.client.post(format!("{}/cancel/{task_id}", self.base)).send();
        actix_rt::spawn(async move {
            let _ = cancel.await;
        });
        let limit = self.settings.task_timeout.map_or(0.0, |d| d.as_secs_f64());
        self.report(
            task_id.clone(),
            attempt_id,
            OutcomeKind::TimedOut(format!("the attempt ran longer than TASK_TIMEOUT = {limit} s")),
        );
    }

    /// Asks the worker how far its running tasks are (one request at a
    /// time, only while something runs there).
    pub(super) fn check_stalls(&mut self, ctx: &mut Context<Self>) {
        let Some(floor) = self.settings.stall_timeout else {
            return;
        };
        if self.retired || self.current_pending {
            return;
        }
        if self.running_here() == 0 {
            self.progress.clear();
            return;
        }
        self.current_pending = true;
        let request = self
            .client
            .get(format!("{}/current", self.base))
            .timeout(self.settings.worker_timeout)
            .send();
        async move {
            let mut resp = request.await.ok()?;
            if !resp.status().is_success() {
                return None;
            }
            let body = resp.body().limit(16 << 20).await.ok()?;
            serde_json::from_slice::<CurrentAnswer>(&body).ok()
        }
        .into_actor(self)
        .map(move |answer, act, _| {
            act.current_pending = false;
            // no answer: the heartbeat judges the worker, not this
            if let Some(answer) = answer {
                act.judge_stalls(&answer.tasks, floor, Instant::now());
            }
        })
        .spawn(ctx);
    }

    /// Updates each running attempt's progress from the worker's list and
    /// takes back those that have stalled.
    fn judge_stalls(&mut self, listed: &[CurrentTask], floor: Duration, now: Instant) {
        let listed: HashMap<&TaskId, &CurrentTask> = listed.iter().map(|t| (&t.task_id, t)).collect();
        let mut stalled = Vec::new();
        for (task_id, f) in &self.in_flight {
            let Some(started) = f.started else { continue };
            let p = self.progress.entry(task_id.clone()).or_insert(Progress {
                attempt_id: f.attempt_id,
                steps_done: 0,
                advanced: started,
            });
            if p.attempt_id != f.attempt_id {
                *p = Progress {
                    attempt_id: f.attempt_id,
                    steps_done: 0,
                    advanced: started,
                };
            }
            let seen = listed
                .get(task_id)
                .filter(|t| t.attempt_id.is_none_or(|a| a == f.attempt_id));
            let mut per_step = None;
            if let Some(t) = seen {
                if t.steps_done > p.steps_done {
                    p.steps_done = t.steps_done;
                    p.advanced = now;
                }
                if t.steps_done > 0 {
                    per_step = Some(t.elapsed_seconds / t.steps_done as f64);
                }
            }
            let limit = stall_limit(floor, per_step);
            if now.duration_since(p.advanced) > limit {
                stalled.push((task_id.clone(), f.attempt_id, p.steps_done, limit));
            }
        }
        let in_flight = &self.in_flight;
        self.progress
            .retain(|id, p| in_flight.get(id).is_some_and(|f| f.attempt_id == p.attempt_id));
        // every task it runs stopped at once: the worker stopped, not a
        // task, so the attempts do not count against the tasks' retries
        // (liars one after another cannot use them up); one task stalled
        // alone may be what hangs, and counts
        let running = self.in_flight.values().filter(|f| f.started.is_some()).count();
        let worker_stopped = stalled.len() >= 2 && stalled.len() == running;
        for (task_id, attempt_id, steps, limit) in &stalled {
            self.take_back(task_id);
            let why = format!(
                "stalled at step {steps}: no step advance for {:.0} s (max of STALL_TIMEOUT and {STALL_STEPS} × its \
                 time per step); taken back",
                limit.as_secs_f64()
            );
            let kind = if worker_stopped {
                OutcomeKind::Broken(format!("{why} with every other task of the worker"))
            } else {
                OutcomeKind::Lost(why)
            };
            self.report(task_id.clone(), *attempt_id, kind);
        }
        if let Some((task_id, _, steps, limit)) = stalled.first() {
            self.suspect(format!(
                "task {task_id} stalled at step {steps} for {:.0} s ({} task(s) taken back)",
                limit.as_secs_f64(),
                stalled.len()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stall_limit_is_the_floor_or_twenty_steps() {
        let floor = Duration::from_secs(60);
        assert_eq!(stall_limit(floor, None), floor);
        assert_eq!(stall_limit(floor, Some(0.01)), floor);
        assert_eq!(stall_limit(floor, Some(10.0)), Duration::from_secs(200));
        assert_eq!(stall_limit(floor, Some(f64::NAN)), floor);
        assert_eq!(stall_limit(floor, Some(f64::INFINITY)), floor);
        assert_eq!(
            batch_silence_limit(Duration::from_secs(1)),
            Duration::from_secs(3)
        );
        assert_eq!(
            batch_silence_limit(Duration::from_secs(30)),
            Duration::from_secs(30)
        );
        assert_eq!(
            stall_check_every(Duration::from_secs(2)),
            Duration::from_millis(500)
        );
        assert_eq!(
            stall_check_every(Duration::from_secs(600)),
            Duration::from_secs(15)
        );
    }
}
