//! `POST /execute/batch` on the Executor: many tasks in one request, run
//! at most `capacity` at once, the rest waiting in a bounded backlog,
//! higher priority first and otherwise in the order they came. Each task's story (started, result, or refused)
//! goes back on the batch's own channel, which the HTTP handler streams
//! as it happens. A batch whose requester has gone (the channel is
//! closed) loses its waiting tasks: they never ran, and the orchestrator
//! that sent them has put them back in its queue.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::{mpsc, oneshot};

use super::{Executor, Refusal};
use crate::model::{AttemptId, RunStatus, Task, TaskId, TaskResult};
use crate::protocol::node::TakeBackOutcome;
use crate::protocol::BatchEvent;

/// Where a batch's events go, in order.
pub type BatchEvents = mpsc::UnboundedSender<BatchEvent<Arc<TaskResult>>>;

/// Who hears of a task's start and end.
pub(super) enum Reply {
    /// The `/execute` request waiting for the result (if still there).
    Single(Option<oneshot::Sender<Arc<TaskResult>>>),
    /// A batch's stream.
    Batch(BatchEvents),
}

impl Reply {
    pub(super) fn started(&self, task_id: &TaskId, attempt_id: Option<AttemptId>) {
        if let Reply::Batch(events) = self {
            let _ = events.send(BatchEvent::Started {
                task_id: task_id.clone(),
                attempt_id,
            });
        }
    }

    /// Hands over the result; false if nobody listens any more.
    pub(super) fn finished(self, result: Arc<TaskResult>) -> bool {
        match self {
            Reply::Single(Some(waiter)) => waiter.send(result).is_ok(),
            Reply::Single(None) => false,
            Reply::Batch(events) => events.send(BatchEvent::Result { result }).is_ok(),
        }
    }
}

/// A batch task waiting for a slot.
pub struct Queued {
    pub(super) task: Arc<Task>,
    pub(super) attempt_id: Option<AttemptId>,
    pub(super) events: BatchEvents,
    /// Its place in its request, for a refusal.
    pub(super) index: usize,
    pub(super) since: Instant,
}

/// Sent by `POST /execute/batch`: admit these tasks (already validated;
/// `index` is each one's place in the request). Every task gets its
/// events on `events`: `refused`, or `started` then `result`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ExecuteBatch {
    pub tasks: Vec<(usize, Task, Option<AttemptId>)>,
    /// The most batch tasks to run at once (at most the capacity).
    pub slots: Option<usize>,
    pub events: BatchEvents,
}

impl Handler<ExecuteBatch> for Executor {
    type Result = ();

    fn handle(&mut self, msg: ExecuteBatch, ctx: &mut Self::Context) {
        self.batch_slots = msg
            .slots
            .unwrap_or(self.settings.capacity)
            .clamp(1, self.settings.capacity);
        for (index, task, attempt_id) in msg.tasks {
            let refusal = if self.draining {
                Some(Refusal::Draining)
            } else if let Some(r) = self.already_here(&task.task_id, attempt_id) {
                Some(r)
            } else if self.running.len() >= self.batch_slots
                && self.backlog.len() >= self.settings.max_backlog
            {
                self.stats.refused_full += 1;
                Some(Refusal::Full {
                    running: self.running.len(),
                    capacity: self.settings.capacity,
                })
            } else {
                None
            };
            if let Some(refusal) = refusal {
                refuse(&msg.events, index, Some(&task.task_id), attempt_id, refusal);
                continue;
            }
            let task = Arc::new(task);
            if self.running.len() < self.batch_slots {
                self.start(task, attempt_id, Reply::Batch(msg.events.clone()), ctx);
            } else {
                // higher priority first, then in the order sent: a high
                // task sent after low ones sent ahead does not wait for them
                let at = self.backlog.partition_point(|q| q.task.priority <= task.priority);
                self.backlog.insert(
                    at,
                    Queued {
                        task,
                        attempt_id,
                        events: msg.events.clone(),
                        index,
                        since: Instant::now(),
                    },
                );
                self.touch_state();
            }
        }
    }
}

/// Sends a task's refusal on its batch's stream.
pub fn refuse(
    events: &BatchEvents,
    index: usize,
    task_id: Option<&TaskId>,
    attempt_id: Option<AttemptId>,
    refusal: Refusal,
) {
    let error = crate::http::error::ApiError::from(refusal);
    let _ = events.send(BatchEvent::Refused {
        index,
        task_id: task_id.cloned(),
        attempt_id,
        status: error.code.status().as_u16(),
        retry_after: error.retry_after,
        body: *error.body,
    });
}

impl Executor {
    /// Fills free slots from the backlog, oldest first, skipping tasks
    /// whose requester has gone.
    pub(super) fn start_next(&mut self, ctx: &mut Context<Self>) {
        while self.running.len() < self.batch_slots && !self.draining {
            let Some(q) = self.backlog.pop_front() else {
                return;
            };
            self.touch_state();
            if q.events.is_closed() {
                tracing::info!(task = %q.task.task_id, attempt = %crate::util::logging::AttemptField(q.attempt_id),
                    "dropped from the backlog: the orchestrator that sent it went away (it queues it again)");
                continue;
            }
            tracing::debug!(task = %q.task.task_id, waited = q.since.elapsed().as_secs_f64(), "backlog → slot");
            self.start(q.task, q.attempt_id, Reply::Batch(q.events), ctx);
        }
    }

    /// `POST /cancel/{id}` for a task in the backlog: it leaves it with a
    /// `cancelled` result (it never ran). False if it is not there.
    pub(super) fn cancel_queued(&mut self, task_id: &str) -> bool {
        let Some(at) = self
            .backlog
            .iter()
            .position(|q| q.task.task_id.as_str() == task_id)
        else {
            return false;
        };
        let q = self.backlog.remove(at).expect("the position was just found");
        tracing::info!(task = %task_id, "cancel requested while waiting for a slot");
        let mut result = TaskResult::other(
            &q.task,
            RunStatus::Cancelled,
            0.0,
            "cancelled before it started".into(),
            Some("cancelled while waiting in the worker's backlog".into()),
        );
        result.worker_id = Some(self.settings.worker_id.clone());
        result.completed_at = Some(crate::util::time::now_iso());
        result.priority = Some(q.task.priority);
        result.attempt_id = q.attempt_id;
        self.stats.cancelled += 1;
        let _ = q.events.send(BatchEvent::Result {
            result: Arc::new(result),
        });
        self.touch_state();
        true
    }

    /// `POST /takeback/{id}`: the orchestrator wants a task it sent ahead
    /// back, to run it elsewhere. Decided here, in one step of the actor
    /// that also fills slots, so the answer is exactly one of: it left the
    /// backlog and will not run here (`Returned`, and its batch is told
    /// `taken_back`), it took a slot here (`Started`: it stays, running or
    /// with its result held), or nothing of that attempt is here.
    pub(super) fn take_back(&mut self, task_id: &TaskId, attempt_id: Option<AttemptId>) -> TakeBackOutcome {
        let same = |a: Option<AttemptId>| attempt_id.is_none() || a == attempt_id;
        if let Some(r) = self.running.get(task_id) {
            return if same(r.attempt_id) {
                TakeBackOutcome::Started
            } else {
                TakeBackOutcome::NotHere
            };
        }
        if let Some(at) = self
            .backlog
            .iter()
            .position(|q| &q.task.task_id == task_id && same(q.attempt_id))
        {
            let q = self.backlog.remove(at).expect("the position was just found");
            tracing::info!(task = %task_id, attempt = %crate::util::logging::AttemptField(q.attempt_id),
                waited = q.since.elapsed().as_secs_f64(), "taken back by the orchestrator before it started");
            let _ = q.events.send(BatchEvent::TakenBack {
                task_id: task_id.clone(),
                attempt_id: q.attempt_id,
            });
            self.touch_state();
            return TakeBackOutcome::Returned;
        }
        match self.held.get(task_id.as_str()) {
            Some(r) if attempt_id.is_some() && r.attempt_id == attempt_id => TakeBackOutcome::Started,
            _ => TakeBackOutcome::NotHere,
        }
    }

    /// Hands every waiting task back (shutting down): refused, not run.
    pub(super) fn refuse_backlog(&mut self, refusal: Refusal) {
        for q in std::mem::take(&mut self.backlog) {
            refuse(
                &q.events,
                q.index,
                Some(&q.task.task_id),
                q.attempt_id,
                refusal.clone(),
            );
        }
        self.touch_state();
    }
}
