//! Queueing a batch (`SubmitBatch`: `POST /tasks`, a small file) or a
//! file staged row by row (`SubmitStaged`): all or nothing, answered after
//! the commit. Tasks the store answers at once from equal completed runs
//! (reuse) never enter the live map; their records go out like results.

use actix::prelude::*;

use super::{live, RecordResult, TaskQueue};
use crate::model::{KernelName, Task, TaskId, TaskResult};
use crate::orchestrator::store::{Duplicates, Ingest, InsertOutcome, NewTask, StagedOutcome};
use crate::util::time::unix_now;
use crate::util::trace::{self, Stage};

impl TaskQueue {
    /// Tasks the store answered at their commit from equal completed
    /// tasks' stored results (counted by [`LiveTasks::answered`]): their
    /// records go to `results/` like any result (they are committed).
    fn reused(&self, reused: Vec<TaskResult>) {
        if reused.is_empty() {
            return;
        }
        let drained = self.live.live_count() == 0;
        for result in reused {
            self.peers.results.do_send(RecordResult { result, drained });
        }
    }
}
/// Sent by FileWatcher and `POST /tasks`: queue a validated batch, all or
/// nothing. Answers after the commit.
#[derive(Message)]
#[rtype(result = "Result<Submitted, SubmitError>")]
pub struct SubmitBatch {
    pub tasks: Vec<Task>,
    pub ingest: Option<Ingest>,
    /// File name, or "api".
    pub source: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    Queued {
        count: usize,
    },
    /// The same file was ingested before a crash and never moved.
    AlreadyIngested,
}

/// Why a batch was not queued.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubmitError {
    #[error("{}", Self::message(.0))]
    Duplicates(Duplicates),
    #[error("{0}")]
    Store(String),
}

impl SubmitError {
    /// The one wording of "these ids exist", for files and the API alike.
    pub fn message(dups: &Duplicates) -> String {
        format!(
            "{} task id(s) already exist; nothing was queued; already known to the orchestrator: {}",
            dups.ids.len(),
            list_ids(&dups.ids)
        )
    }
}

/// At most 20 ids, then how many more.
fn list_ids(ids: &[TaskId]) -> String {
    let shown = ids
        .iter()
        .take(20)
        .map(TaskId::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    match ids.len().saturating_sub(20) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

impl Handler<SubmitBatch> for TaskQueue {
    type Result = ResponseActFuture<Self, Result<Submitted, SubmitError>>;

    fn handle(&mut self, msg: SubmitBatch, _: &mut Self::Context) -> Self::Result {
        let new: Vec<NewTask> = msg.tasks.iter().map(NewTask::of).collect();
        let source = msg.source.clone();
        let insert = self.store.insert_batch(new.clone(), msg.ingest, msg.source);
        Box::pin(insert.into_actor(self).map(move |reply, act, ctx| {
            match reply.map_err(|e| SubmitError::Store(e.to_string()))? {
                InsertOutcome::Inserted { seqs, reused } => {
                    let count = new.len();
                    trace::note(Stage::Queued, &source, new.iter().map(|t| &t.task_id));
                    // answered at the commit (the store's reuse): never live
                    let answered: std::collections::HashSet<TaskId> =
                        reused.iter().map(|r| r.task_id.clone()).collect();
                    let (new, seqs): (Vec<NewTask>, Vec<i64>) = new
                        .into_iter()
                        .zip(seqs)
                        .filter(|(t, _)| !answered.contains(&t.task_id))
                        .unzip();
                    let fx = act.live.answered(reused.len());
                    act.apply(fx, ctx);
                    let fx = act.live.submitted(new, seqs, &source, unix_now());
                    act.apply(fx, ctx);
                    act.reused(reused);
                    act.try_dispatch(ctx);
                    Ok(Submitted::Queued { count })
                }
                InsertOutcome::Duplicates(d) => Err(SubmitError::Duplicates(d)),
                InsertOutcome::AlreadyIngested => Ok(Submitted::AlreadyIngested),
            }
        }))
    }
}

/// Sent by FileWatcher: queue a file whose tasks it staged in the store
/// chunk by chunk ([`Store::stage_blocking`]), all or nothing. Answers
/// after the commit; only the file's first tasks per kernel (up to the
/// window) come into memory, the rest are paged in as the queue drains.
#[derive(Message)]
#[rtype(result = "Result<Submitted, SubmitError>")]
pub struct SubmitStaged {
    /// The key its chunks were staged under.
    pub batch: String,
    /// How many tasks were staged.
    pub tasks: usize,
    pub ingest: Option<Ingest>,
    /// File name.
    pub source: String,
    /// Kernels its tasks run on.
    pub kernels: Vec<KernelName>,
}

impl Handler<SubmitStaged> for TaskQueue {
    type Result = ResponseActFuture<Self, Result<Submitted, SubmitError>>;

    fn handle(&mut self, msg: SubmitStaged, _: &mut Self::Context) -> Self::Result {
        let commit = self.store.commit_staged(
            &msg.batch,
            msg.tasks,
            msg.ingest,
            msg.source,
            msg.kernels,
            live::WINDOW,
        );
        Box::pin(commit.into_actor(self).map(move |reply, act, ctx| {
            match reply.map_err(|e| SubmitError::Store(e.to_string()))? {
                StagedOutcome::Queued {
                    count,
                    first,
                    more,
                    reused,
                } => {
                    // answered at the commit (the store's reuse): never live
                    let fx = act.live.answered(reused.len());
                    act.apply(fx, ctx);
                    let fx = act.live.file_committed(first, &more, count - reused.len());
                    act.apply(fx, ctx);
                    act.reused(reused);
                    act.try_dispatch(ctx);
                    Ok(Submitted::Queued { count })
                }
                StagedOutcome::Duplicates(d) => Err(SubmitError::Duplicates(d)),
                StagedOutcome::AlreadyIngested => Ok(Submitted::AlreadyIngested),
            }
        }))
    }
}
