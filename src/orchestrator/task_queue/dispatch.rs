//! Dispatch: ready tasks, in priority order across kernels, placed on
//! workers by the core's own [`crate::orchestrator::placement::Loads`]
//! (a plain call, no message) and sent as attempts; paging queued tasks
//! in from the database as a kernel's window runs low. The transitions
//! are [`LiveTasks`] methods; the actor half sends.

use actix::prelude::*;

use super::live::{Effects, Entry, Freed, LiveTasks, Observed, Outbound, Sample, TaskState, WINDOW};
use super::TaskQueue;
use crate::model::{AttemptId, KernelName, Priority, TaskId, WorkerId};
use crate::orchestrator::placement::ToPlace;
use crate::orchestrator::store::{Change, QueuedRow};
use crate::util::time::unix_now;

/// Most tasks placed in one batch.
pub(super) const DISPATCH_BATCH: usize = 512;

/// How long a page read that failed waits before it is made again.
const PAGE_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// A page of queued tasks to read from the database.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRequest {
    pub kernel: KernelName,
    pub after: Option<(Priority, i64)>,
    pub limit: usize,
}

/// What one dispatch did.
#[derive(Debug, Default)]
pub struct Dispatched {
    pub fx: Effects,
    /// Tasks offered to placement, and how many found a worker.
    pub asked: usize,
    pub placed: usize,
    /// Verification runs withdrawn for work: their slots are free.
    pub withdrawn: usize,
}

impl LiveTasks {
    /// Event: dispatch. Places up to `max` ready tasks, best first across
    /// kernels that are not blocked; a placed task is sent, one that found
    /// no room goes back and blocks its kernel until room appears.
    pub fn dispatch(&mut self, max: usize, now: f64) -> Dispatched {
        self.clock = self.clock.max(now);
        let mut out = Dispatched::default();
        // tasks waiting behind busy slots that a free slot elsewhere can
        // run are asked back first, then those that would start much
        // sooner elsewhere (`takeback.rs`)
        self.take_back_to_free_slots(now, &mut out.fx);
        self.take_back_to_sooner_starts(now, &mut out.fx);
        let batch = self.take_batch(max);
        out.asked = batch.len();
        // one priority at a time, so that what the better ones were sent
        // ahead to counts for the worse ones (`Claims::floor`)
        let mut rest = batch.as_slice();
        while let Some((_, first)) = rest.first() {
            let n = rest
                .iter()
                .take_while(|(_, t)| t.priority == first.priority)
                .count();
            let (group, next) = rest.split_at(n);
            rest = next;
            let claims = self.claims(now, first.priority);
            let tasks: Vec<ToPlace> = group.iter().map(|(_, t)| t.clone()).collect();
            let picks = self.loads.place_with(&tasks, now, &claims);
            for ((task_id, _), worker) in group.iter().zip(picks) {
                if let Some(w) = &worker {
                    out.placed += 1;
                    out.fx.loads_changed.push(w.clone());
                }
                let fx = self.placed(task_id, worker);
                out.fx.merge(fx);
            }
        }
        // a better task now waits in a backlog: lower ones queued where it
        // could run are asked back
        self.take_back_below_floors(now, &mut out.fx);
        // work left over, or waiting in a backlog behind a verification
        // run: the run gives its slot up (`verify.rs`)
        out.withdrawn = self.withdraw_verifications(now, &mut out.fx);
        // slots nothing queued could use: verification runs (`verify.rs`)
        self.start_verifications(now, &mut out.fx);
        out
    }

    /// Moves up to `max` ready tasks, best first across kernels that are
    /// not blocked, to placing; answers (id, what placement needs: kernel,
    /// workers to avoid, priority, size).
    pub fn take_batch(&mut self, max: usize) -> Vec<(TaskId, ToPlace)> {
        let mut batch = Vec::new();
        while batch.len() < max {
            let next = self
                .index
                .queues
                .values()
                .filter(|q| !q.blocked)
                .filter_map(|q| q.ready.first_key_value())
                .min_by_key(|(key, _)| **key);
            let Some((key, task_id)) = next else { break };
            let (key, task_id) = (*key, task_id.clone());
            if self.transition(&task_id, TaskState::Placing).is_none() {
                // not live: never indexed
                self.index.queues.values_mut().for_each(|q| {
                    q.ready.remove(&key);
                });
                continue;
            }
            let entry = &self.tasks[&task_id].entry;
            let to_place = ToPlace {
                kernel: entry.kernel,
                avoid: entry.failed_on.clone(),
                priority: entry.priority,
                size: entry.size,
            };
            batch.push((task_id, to_place));
        }
        batch
    }

    /// Placement put a task on `worker` (or found no room: `None`). A
    /// placed task gets its attempt id and is sent; it becomes an attempt
    /// of the task when the worker starts it.
    pub fn placed(&mut self, task_id: &str, worker: Option<WorkerId>) -> Effects {
        let mut fx = Effects::default();
        let taken = self
            .tasks
            .get_key_value(task_id)
            .filter(|(_, t)| t.state == TaskState::Placing)
            .map(|(id, _)| id.clone());
        let Some(task_id) = &taken else {
            // not taken for placement: give the slot back
            if let Some(worker) = worker {
                let now = self.clock;
                self.release(&worker, Freed::Nothing, None, now, &mut fx);
            }
            return fx;
        };
        let Some(worker) = worker else {
            let kernel = self.tasks[task_id].entry.kernel;
            if let Some(kq) = self.index.queues.get_mut(&kernel) {
                kq.blocked = true;
            }
            self.transition(task_id, TaskState::Ready);
            return fx;
        };
        // sent now; it is persisted as running when the worker says it
        // took a slot ([`Self::started`]): sent ahead, it may wait there
        let attempt_id = self.attempt_id();
        let entry = &mut self.tasks.get_mut(task_id).expect("placing").entry;
        entry.attempts += 1;
        fx.send.push(Outbound::Run {
            worker: worker.clone(),
            task_id: task_id.clone(),
            attempt_id,
            body: entry.body.clone(),
        });
        self.transition(task_id, TaskState::SentAhead { worker, attempt_id });
        fx
    }

    /// The worker a task was sent ahead to, while it waits there for a
    /// slot.
    pub fn sent_ahead_to(&self, task_id: &str) -> Option<WorkerId> {
        match self.state_of(task_id)? {
            TaskState::SentAhead { worker, .. } | TaskState::TakingBack { worker, .. } => {
                Some(worker.clone())
            }
            _ => None,
        }
    }

    /// Event: the worker took attempt `attempt_id` of `task_id` into a
    /// slot. From now on the task is running, in the database too.
    pub fn started(&mut self, task_id: &TaskId, attempt_id: AttemptId, now: f64) -> Effects {
        let mut fx = Effects::default();
        let Some(t) = self.tasks.get(task_id) else {
            return fx;
        };
        // sent ahead, or being taken back: it started there after all
        let (TaskState::SentAhead {
            worker,
            attempt_id: sent,
        }
        | TaskState::TakingBack {
            worker,
            attempt_id: sent,
            ..
        }) = &t.state
        else {
            return fx;
        };
        if *sent != attempt_id {
            return fx;
        }
        let worker = worker.clone();
        let waited = (now - t.entry.created_at).max(0.0);
        fx.observed.push(Observed::QueueWait {
            kernel: t.entry.kernel,
            seconds: waited,
        });
        fx.samples.push(Sample::QueueWait {
            algorithm: t.entry.algorithm.clone(),
            seconds: waited,
        });
        fx.persist.push(Change::AttemptStarted {
            task_id: task_id.clone(),
            attempt_id,
            worker_id: worker.clone(),
            at: now,
        });
        self.transition(task_id, TaskState::Running { worker, attempt_id });
        fx
    }

    /// Event: dispatch. The kernels whose window ran low and whose next
    /// page may be read now (marked as paging until [`Self::paged_in`]).
    pub fn pages_wanted(&mut self) -> Vec<PageRequest> {
        let mut out = Vec::new();
        for (kernel, kq) in self.index.queues.iter_mut() {
            if !kq.more_in_db || kq.paging || kq.ready.len() > WINDOW / 4 {
                continue;
            }
            kq.paging = true;
            out.push(PageRequest {
                kernel: *kernel,
                after: kq.frontier,
                limit: WINDOW - kq.ready.len(),
            });
        }
        out
    }

    /// Event: a page read for `req` (empty if the read failed).
    pub fn paged_in(&mut self, req: &PageRequest, rows: Vec<QueuedRow>, now: f64) -> Effects {
        let mut fx = Effects::default();
        let full_page = rows.len() == req.limit;
        let last = rows.last().map(|r| (r.priority, r.seq));
        let skip = std::mem::take(&mut self.cancelled_while_paging);
        for row in rows {
            if self.tasks.contains_key(&row.task_id)
                || self.cancelling.contains(&row.task_id)
                || skip.contains(&row.task_id)
            {
                continue;
            }
            let due = row.next_attempt_at.filter(|t| *t > now);
            let Some(entry) = Entry::from_row(row) else {
                continue;
            };
            match due {
                Some(until) => {
                    self.admit(entry, TaskState::Delayed { until });
                    fx.wake_at.push(until);
                }
                None => self.admit(entry, TaskState::Ready),
            }
        }
        if let Some(kq) = self.index.queues.get_mut(&req.kernel) {
            kq.paging = false;
            if last.is_some() {
                kq.frontier = last.max(kq.frontier);
            }
            kq.more_in_db = full_page;
            if let Some(cap) = kq.after_page.take() {
                kq.more_in_db = true;
                kq.frontier = match (kq.frontier, cap) {
                    (Some(f), Some(c)) => Some(f.min(c)),
                    _ => None,
                };
            }
        }
        fx
    }
}

impl TaskQueue {
    /// Dispatches once the messages already waiting in the mailbox have
    /// been read (actix reads the whole mailbox before the futures an
    /// actor spawned): the outcomes that many workers reported while this
    /// actor was busy cost one dispatch, not one each. A dispatch walks
    /// every worker (free slots, floors, take-backs), so with hundreds of
    /// workers one per outcome was the orchestrator's largest cost per
    /// task; with one outcome waiting it runs in the same turn as before.
    pub(super) fn dispatch_soon(&mut self, ctx: &mut Context<Self>) {
        if self.dispatch_due {
            return;
        }
        self.dispatch_due = true;
        ctx.spawn(actix::fut::ready(()).map(|(), act: &mut Self, ctx| {
            act.dispatch_due = false;
            act.try_dispatch(ctx);
        }));
    }

    /// Places and sends the next tasks, batch after batch while they find
    /// room; reads pages of kernels whose window runs low.
    pub(super) fn try_dispatch(&mut self, ctx: &mut Context<Self>) {
        loop {
            let d = self.live.dispatch(self.dispatch_size, unix_now());
            for req in self.live.pages_wanted() {
                self.read_page(req, ctx);
            }
            if d.asked == 0 {
                // nothing to place, but take-backs may have been asked
                // (and a verification run withdrawn for a task sent ahead)
                self.apply(d.fx, ctx);
                return;
            }
            // all placed: there may be more room, offer more next time;
            // some left: offer about what fitted
            self.dispatch_size = if d.placed == d.asked {
                (d.asked * 2).clamp(16, DISPATCH_BATCH)
            } else {
                (d.placed + 1).clamp(16, DISPATCH_BATCH)
            };
            let (placed, withdrawn) = (d.placed, d.withdrawn);
            self.apply(d.fx, ctx);
            if placed == 0 && withdrawn == 0 {
                return;
            }
        }
    }

    fn read_page(&mut self, req: PageRequest, ctx: &mut Context<Self>) {
        self.store
            .page(req.kernel, req.after, req.limit)
            .into_actor(self)
            .map(move |rows, act, ctx| {
                let rows = match rows {
                    Ok(rows) => rows,
                    Err(e) => {
                        // not "no more queued tasks" (that would leave
                        // them queued until a restart): read it again
                        // shortly (a full disk fails every group's commit,
                        // reads included, until space returns)
                        tracing::error!(error = %e, "cannot read queued tasks from the database; trying again in 1 s");
                        ctx.run_later(PAGE_RETRY, move |act, ctx| act.read_page(req, ctx));
                        return;
                    }
                };
                let fx = act.live.paged_in(&req, rows, unix_now());
                act.apply(fx, ctx);
                act.try_dispatch(ctx);
            })
            .spawn(ctx);
    }
}
