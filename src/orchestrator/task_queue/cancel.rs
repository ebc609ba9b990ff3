//! A cancel in the core: asked (a queued task is parked at once, so it
//! cannot start while the store decides), then answered (the task ends,
//! and an attempt of it is stopped on its worker; or it goes back to the
//! queue). The transitions are [`LiveTasks`] methods.

use super::live::{Effects, Freed, LiveTasks, Observed, Outbound, TaskState};
use crate::model::TaskId;
use crate::orchestrator::store::CancelOutcome;

impl LiveTasks {
    /// Event: a cancel was asked for. A queued task leaves the queue at
    /// once, so it can never start while the store decides.
    pub fn cancel_asked(&mut self, task_id: &TaskId) {
        if matches!(
            self.state_of(task_id),
            Some(TaskState::Ready | TaskState::Delayed { .. })
        ) {
            self.transition(task_id, TaskState::Parked);
        }
        self.cancelling.insert(task_id.clone());
        if self.index.queues.values().any(|q| q.paging) {
            self.cancelled_while_paging.insert(task_id.clone());
        }
    }

    /// Event: the store answered a cancel (`None`: it could not).
    pub fn cancel_answered(&mut self, task_id: &TaskId, outcome: Option<&CancelOutcome>) -> Effects {
        let mut fx = Effects::default();
        self.cancelling.remove(task_id);
        let parked = self.state_of(task_id) == Some(&TaskState::Parked);
        if let Some(CancelOutcome::Cancelled { .. }) = outcome {
            self.counters.cancelled += 1;
            let taken = self.remove(task_id);
            fx.observed.push(Observed::Cancelled {
                kernel: taken.as_ref().map(|t| t.entry.kernel),
            });
            if let Some((worker, _)) = taken.as_ref().and_then(|t| t.state.attempt()) {
                let now = self.clock;
                let size = taken.as_ref().map(|t| t.entry.task_size());
                self.release(worker, Freed::Nothing, size, now, &mut fx);
                fx.send.push(Outbound::CancelOnWorker {
                    worker: worker.clone(),
                    task_id: task_id.clone(),
                });
            }
            tracing::info!(task = %task_id, "task cancelled");
        } else if parked {
            // not cancellable: back to the ready queue
            self.transition(task_id, TaskState::Ready);
        }
        fx
    }
}
