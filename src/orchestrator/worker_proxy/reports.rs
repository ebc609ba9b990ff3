//! What a WorkerProxy reports: to the core, how each attempt went
//! ([`AttemptOutcome`], [`AttemptsStarted`]) and that its worker is full
//! ([`WorkerFull`]); to membership, its worker's state ([`WorkerUpdate`],
//! [`Heartbeat`]). Defined here, beside their sender, so that the proxy
//! names no other actor.

use std::time::{Duration, SystemTime};

use actix::prelude::*;

use crate::model::{AttemptId, KernelName, TaskId, TaskResult, WorkerId};
use crate::orchestrator::board::WorkerState;
pub use crate::protocol::node::TakeBackOutcome;

/// How an attempt ended, as a WorkerProxy saw it.
#[derive(Debug)]
pub enum OutcomeKind {
    /// The worker's result (completed, failed or cancelled there).
    Result(Box<TaskResult>),
    /// The attempt failed without a usable result.
    Failed(String),
    /// The worker was lost while running it.
    Lost(String),
    /// Lost because the worker broke a promise while it ran (its batch's
    /// answer went silent, or every task it ran stalled at once): the
    /// worker is suspect, and the attempt does not count against the
    /// task's retries, so liars one after another cannot use them up. A
    /// task that stalls alone stays [`OutcomeKind::Lost`]: the task itself
    /// may be what hangs.
    Broken(String),
    /// Nothing ran (429, 503, no connection): not an attempt.
    Refused(String),
    TimedOut(String),
    /// A result that is not for the attempt this orchestrator issued (no
    /// attempt id, another one): a run somebody posted to the worker by
    /// hand, or a stray. Never recorded; the attempt counts as lost.
    Forged(String),
}

/// Sent by a WorkerProxy for every attempt it was given (or adopted).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct AttemptOutcome {
    pub task_id: TaskId,
    pub attempt_id: AttemptId,
    pub worker_id: WorkerId,
    pub kind: OutcomeKind,
}

/// Sent by a WorkerProxy: these attempts took a slot on its worker (they
/// were sent ahead and waited there until now, or were just sent).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct AttemptsStarted {
    pub worker_id: WorkerId,
    pub attempts: Vec<(TaskId, AttemptId)>,
}

/// Sent by a WorkerProxy with its worker's answer to a [`super::TakeBack`]:
/// given back (it never ran there and will not), started there (it stays),
/// or not there (not arrived yet, already answered, or the worker could
/// not be asked: it stays where it was sent).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct TakenBack {
    pub worker_id: WorkerId,
    pub task_id: TaskId,
    pub attempt_id: AttemptId,
    pub outcome: TakeBackOutcome,
}

/// Sent by a WorkerProxy when its worker comes up, goes down or reports
/// its own capacity and algorithms.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WorkerUpdate {
    pub worker_id: WorkerId,
    pub state: WorkerState,
    /// Why it is in that state (none when up).
    pub reason: Option<String>,
    pub capacity: usize,
    /// The most tasks it keeps waiting for a slot (`/status` `max_backlog`).
    pub backlog_limit: usize,
    pub kernels: Vec<KernelName>,
    pub heartbeat: Option<SystemTime>,
}

/// Sent by a WorkerProxy when its worker broke a promise (said it runs
/// more than the capacity it agreed to, left a batch's answer silent, let
/// a task stall): it is marked suspect and given no new tasks until
/// `POST /workers/{id}/resume`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WorkerSuspect {
    pub worker_id: WorkerId,
    pub reason: String,
}

/// Sent by WorkerProxy on each heartbeat: only the time.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Heartbeat {
    pub worker_id: WorkerId,
    pub at: SystemTime,
}

/// Sent by a WorkerProxy when its worker answered 429: no more tasks to it
/// for `retry_after`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WorkerFull {
    pub worker_id: WorkerId,
    pub retry_after: Duration,
}
