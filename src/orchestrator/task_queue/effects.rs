//! What an event of the core asks of the actor ([`Effects`]): changes to
//! persist, messages to send, a result to record, and what the observers
//! see ([`Observed`]: the Prometheus counters and the dashboard's recent
//! history, which the core never holds; the actor hands them over with
//! [`Observed::tell`]).

use std::sync::Arc;

use crate::model::{AttemptEnd, AttemptId, KernelName, TaskId, TaskResult, WorkerId};
use crate::orchestrator::activity::{Activity, EndedAttempt};
use crate::orchestrator::metrics::OrchestratorMetrics;
pub use crate::orchestrator::placement::Ended as Freed;
use crate::orchestrator::placement::TaskSize;
use crate::orchestrator::store::Change;

/// A message the actor must send.
#[derive(Debug, Clone)]
pub enum Outbound {
    Run {
        worker: WorkerId,
        task_id: TaskId,
        attempt_id: AttemptId,
        body: Arc<str>,
    },
    CancelOnWorker {
        worker: WorkerId,
        task_id: TaskId,
    },
    Ack {
        worker: WorkerId,
        task_id: TaskId,
    },
    Adopt {
        worker: WorkerId,
        task_id: TaskId,
        attempt_id: AttemptId,
    },
    /// Ask `worker` to give back this attempt, sent ahead, if it has not
    /// started (`takeback.rs`).
    TakeBack {
        worker: WorkerId,
        task_id: TaskId,
        attempt_id: AttemptId,
    },
}

/// The first valid result of a task: committed, then handed to the
/// ResultsStore and acknowledged to `worker`.
#[derive(Debug, Clone)]
pub struct Completion {
    pub task_id: TaskId,
    pub attempt_id: AttemptId,
    pub worker: WorkerId,
    pub result: TaskResult,
    pub json: String,
    pub at: f64,
}

/// A figure for `/stats/performance`.
#[derive(Debug, Clone)]
pub enum Sample {
    QueueWait {
        algorithm: String,
        seconds: f64,
    },
    Execution {
        algorithm: String,
        worker: WorkerId,
        seconds: f64,
    },
}

/// What the observers outside the core are told: each event counted once
/// where it happens (`GET /metrics/prometheus`), and every ended attempt
/// (the dashboard's recent history).
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// Tasks committed to the queue.
    Ingested(usize),
    /// Tasks answered at their commit from stored results (nothing ran).
    Reused(usize),
    /// An attempt started, this long after its task was created.
    QueueWait { kernel: KernelName, seconds: f64 },
    /// A task completed after running `seconds` on `worker`.
    Completed {
        kernel: KernelName,
        worker: WorkerId,
        seconds: f64,
        /// (N, steps).
        size: (u64, u64),
        at: f64,
    },
    /// A task failed for good.
    Failed { kernel: KernelName },
    /// A task was cancelled (`None`: it waited in the database only).
    Cancelled { kernel: Option<KernelName> },
    /// A failed or lost attempt will be tried again.
    Retried,
    /// An attempt never started: refused or handed back.
    Refused,
    /// A result came for a task that had ended.
    LateResult,
    /// An attempt failed or was lost.
    AttemptFailed {
        task_id: TaskId,
        worker: WorkerId,
        /// Which attempt of the task it was (1 = the first).
        attempt: u32,
        end: AttemptEnd,
        /// No retry left.
        for_good: bool,
        reason: String,
        at: f64,
    },
}

impl Observed {
    /// Tells the observers: a counter, a histogram, the recent history.
    pub fn tell(&self, metrics: &OrchestratorMetrics, activity: &Activity) {
        match self {
            Observed::Ingested(count) => metrics.tasks_ingested(*count),
            Observed::Reused(count) => metrics.tasks_reused(*count),
            Observed::QueueWait { kernel, seconds } => metrics.queue_wait(kernel.as_str(), *seconds),
            Observed::Completed {
                kernel,
                worker,
                seconds,
                size,
                at,
            } => {
                metrics.completed(kernel.as_str(), *seconds);
                activity.completed(*at, kernel.as_str(), worker, *seconds, Some(*size));
            }
            Observed::Failed { kernel } => metrics.failed(kernel.as_str()),
            Observed::Cancelled { kernel } => metrics.cancelled(kernel.map(KernelName::as_str)),
            Observed::Retried => metrics.retried(),
            Observed::Refused => metrics.refused(),
            Observed::LateResult => metrics.late_result(),
            Observed::AttemptFailed {
                task_id,
                worker,
                attempt,
                end,
                for_good,
                reason,
                at,
            } => activity.failed(
                *at,
                EndedAttempt {
                    task_id,
                    worker,
                    attempt: *attempt,
                    end: *end,
                    for_good: *for_good,
                    reason,
                },
            ),
        }
    }
}

/// What one event asks of the actor.
#[derive(Debug, Default)]
pub struct Effects {
    /// Changes to commit, as one job, without waiting.
    pub persist: Vec<Change>,
    pub send: Vec<Outbound>,
    pub completion: Option<Completion>,
    /// Times at which backoffs expire.
    pub wake_at: Vec<f64>,
    pub samples: Vec<Sample>,
    /// What the Prometheus counters and the dashboard are told, in order.
    pub observed: Vec<Observed>,
    /// Workers whose load changed: their rows to publish.
    pub loads_changed: Vec<WorkerId>,
    /// Slots this event freed (already applied to the core's loads): on
    /// which worker, how the attempt ended, and its task's size.
    pub released: Vec<(WorkerId, Freed, Option<TaskSize>)>,
    /// Draining workers that have just become idle: membership settles them.
    pub idle: Vec<WorkerId>,
    /// Workers a verification found wrong, and why: membership marks them
    /// suspect (`verify.rs`).
    pub quarantine: Vec<(WorkerId, String)>,
    /// Recorded results replaced by the majority's run, persisted in this
    /// event's `persist`: the ResultsStore writes them again.
    pub corrected: Vec<TaskResult>,
}

impl Effects {
    /// Another event's effects after these.
    pub fn merge(&mut self, other: Effects) {
        self.persist.extend(other.persist);
        self.send.extend(other.send);
        if other.completion.is_some() {
            self.completion = other.completion;
        }
        self.wake_at.extend(other.wake_at);
        self.samples.extend(other.samples);
        self.observed.extend(other.observed);
        self.loads_changed.extend(other.loads_changed);
        self.released.extend(other.released);
        self.idle.extend(other.idle);
        self.quarantine.extend(other.quarantine);
        self.corrected.extend(other.corrected);
    }
}
