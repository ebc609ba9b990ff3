//! Store: the durable half of TaskQueue, an embedded SQLite database (WAL)
//! owned by one writer thread ([`writer`]). Callers use typed methods on
//! [`Store`]: changes nobody waits on (`attempt_started`, `requeue`, …)
//! are queued and commit in order with everything else; the ones whose
//! answer matters (`insert_batch`, `cancel`, `retry`, `page`) answer after
//! the commit. The thread applies every job waiting in one transaction
//! (group commit), so a burst of state changes costs one commit. Reads for
//! the REST API use separate read-only connections ([`ReadPool`]). Dropped
//! files are records with their tasks' counts kept by status ([`files`]). The
//! file is checked when opened (`schema`: a marker row and `PRAGMA
//! quick_check`), damage met at run time is noted for `/health`
//! ([`DbFault`]), and a clean stop checkpoints the write-ahead log.

mod allocations;
mod checkpoints;
mod checks;
mod export;
mod fault;
mod files;
mod fold;
mod group;
mod history;
mod journals;
mod pace;
mod purge;
mod recovery;
mod results_files;
mod reuse;
mod schema;
mod sql;
mod staging;
mod studies;
mod views;
mod writer;

use std::future::Future;
use std::path::PathBuf;
use std::sync::mpsc;

use tokio::sync::oneshot;

pub use allocations::{load_allocations, AllocationChange, StoredAllocation, StoredJob};
pub use checkpoints::{CheckpointError, Checkpoints};
pub use checks::{CheckChange, StoredCheck};
pub use export::{ExportFilter, ExportPage};
pub use fault::DbFault;
pub use files::{
    read_report, Duplicates, FileRecord, FileState, KnownTask, Rejected, StatusCounts, DUPLICATES_SHOWN,
    REPORT_MAX_BYTES,
};
pub use history::{settle_failure_files, FailureRecord, FAILURES_PER_FILE};
pub use purge::{PurgeReport, Space};
pub use recovery::{recover, Recovery, StoredMember, Unwritten, WasRunning};
pub use schema::{next_boot, open};
pub use staging::StagedOutcome;
pub use views::{AttemptView, ByWorker, Counts, ReadPool, TaskFilter, TaskOrder, TaskView, SORT_MATCHES_MAX};
use writer::{Job, Op, Reply};

use crate::model::{AttemptEnd, AttemptId, KernelName, Priority, Task, TaskId, TaskStatus, WorkerId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("cannot create the database folder {path}: {source}")]
    Folder { path: PathBuf, source: std::io::Error },
    #[error("the database thread has stopped")]
    Stopped,
    #[error("database change failed: {0}")]
    Failed(String),
    #[error("the database {} cannot be used: {why}. To fix it: {way_out}", .path.display())]
    Damaged {
        path: PathBuf,
        why: String,
        way_out: String,
    },
}

/// A task to insert, already validated.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub task_id: TaskId,
    pub priority: Priority,
    pub algorithm: String,
    pub kernel: KernelName,
    /// The task's JSON as the worker will receive it.
    pub body: String,
    /// Its reuse key ([`crate::model::reuse`]), computed where the task
    /// was parsed so that the store never reads the body back to find it.
    pub reuse_key: Option<String>,
}

impl NewTask {
    /// A medium-priority `python` task (the `reference` kernel) with this
    /// stored body, for the store's and the queue's tests.
    #[cfg(test)]
    pub fn python(id: &str, body: impl Into<String>) -> Self {
        Self {
            task_id: TaskId::parse(id).expect("a valid test id"),
            priority: Priority::Medium,
            algorithm: "python".into(),
            kernel: KernelName::resolve("reference").expect("a kernel"),
            body: body.into(),
            reuse_key: None,
        }
    }

    /// A validated task as it is stored and sent.
    pub fn of(t: &Task) -> Self {
        let kernel = t.work.kernel();
        let json = t.to_json();
        Self {
            task_id: t.task_id.clone(),
            priority: t.priority,
            algorithm: t.algorithm.clone(),
            reuse_key: crate::model::reuse::reuse_key(kernel.as_str(), &json),
            kernel,
            body: json.to_string(),
        }
    }
}

/// The record of an ingested file, written with its tasks.
#[derive(Debug, Clone)]
pub struct Ingest {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// A change of state nobody reads an answer from. A list of them given
/// to [`Store::persist`] is one job: all or nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    AttemptStarted {
        task_id: TaskId,
        attempt_id: AttemptId,
        worker_id: WorkerId,
        at: f64,
    },
    AttemptEnded {
        attempt_id: AttemptId,
        end: AttemptEnd,
        error: Option<String>,
        at: f64,
    },
    /// A task ended: completed, failed or cancelled.
    Ended {
        task_id: TaskId,
        status: TaskStatus,
        /// The result's JSON, for a completed task.
        result: Option<String>,
        error: Option<String>,
        worker_id: Option<WorkerId>,
        at: f64,
    },
    /// Back to the queue (`next_at`: not before), with no error: the
    /// failed attempt's error stays on its row of `attempts`.
    Requeue {
        task_id: TaskId,
        attempts: u32,
        next_at: Option<f64>,
    },
    AssignResultsFile {
        task_ids: Vec<TaskId>,
        file: String,
    },
    MarkWritten {
        file: String,
    },
    /// The failure records named for this failures file are in it.
    FailuresWritten {
        file: String,
    },
    IngestMoved {
        sha256: String,
        name: String,
        moved_to: String,
    },
    /// A worker joined (or joined again with other details): kept so that
    /// a restarted orchestrator knows it and adopts its running tasks.
    MemberJoined {
        id: WorkerId,
        /// `http://HOST:PORT`
        url: String,
        capacity: usize,
        algorithms: Vec<String>,
        instance: String,
        /// The SHA-256 of the secret it was given (empty: none yet).
        secret_sha256: String,
        at: f64,
    },
    /// An attempt resumes its task from the checkpoint held at `step`
    /// (shown as the attempt's `start_step`).
    AttemptResumes {
        task_id: TaskId,
        attempt_id: AttemptId,
        step: u64,
    },
    /// Replication's waiting checks (`checks.rs`).
    Check(CheckChange),
    /// A joined worker left (drained, or `DELETE /workers/{id}`).
    MemberLeft {
        id: WorkerId,
    },
    /// A file's staged chunks are forgotten (it was refused, or its read
    /// was given up).
    Unstage {
        batch: String,
    },
    /// A dropped file was refused and moved to `rejected/`.
    FileRejected(Rejected),
    /// An allocation queue or one of its jobs changed.
    Allocation(AllocationChange),
}

/// What became of a batch given to [`Store::insert_batch`].
#[derive(Debug, Clone, PartialEq)]
pub enum InsertOutcome {
    /// Every task queued; their sequence numbers, in order.
    Inserted {
        seqs: Vec<i64>,
        /// The records of the tasks answered at once from an equal
        /// completed task's stored result ([`reuse`]): already completed,
        /// for `results/`; the others are queued.
        reused: Vec<crate::model::TaskResult>,
    },
    /// Nothing queued: these ids exist.
    Duplicates(Duplicates),
    /// The same file was ingested before a crash and never moved.
    AlreadyIngested,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// Was queued or running; now cancelled.
    Cancelled {
        was: TaskStatus,
        worker_id: Option<WorkerId>,
    },
    AlreadyEnded {
        status: TaskStatus,
    },
    NotFound,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RetryOutcome {
    Queued { row: QueuedRow },
    NotRetryable { status: TaskStatus },
    NotFound,
}

/// What TaskQueue keeps in memory of a queued task.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedRow {
    pub seq: i64,
    pub task_id: TaskId,
    pub priority: Priority,
    /// `None`: a kernel this build does not know (the row was written by
    /// another build); such a task stays in the database.
    pub kernel: Option<KernelName>,
    pub algorithm: String,
    pub body: String,
    pub attempts: u32,
    pub next_attempt_at: Option<f64>,
    pub created_at: f64,
    /// The file the task came from (`api` for `POST /tasks`).
    pub source: String,
}

/// A chunk given to [`Store::stage`]; [`StageTicket::wait`] blocks until
/// it is committed.
pub struct StageTicket(Option<oneshot::Receiver<Result<Vec<Reply>, StoreError>>>);

impl StageTicket {
    /// Blocks until the chunk is committed; for the reading thread only.
    pub fn wait(self) -> Result<(), StoreError> {
        match self.0.ok_or(StoreError::Stopped)?.blocking_recv() {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StoreError::Stopped),
        }
    }
}

/// The writer thread's handle.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Job>,
    fault: DbFault,
}

impl Store {
    /// Starts the writer thread on `conn`.
    pub fn start(conn: rusqlite::Connection) -> Store {
        let (tx, rx) = mpsc::channel::<Job>();
        let fault = DbFault::default();
        let noted = fault.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer::writer_loop(conn, rx, noted))
            .expect("the store thread starts");
        Store { tx, fault }
    }

    /// Where the writer notes damage to the file (for `/health`).
    pub fn fault(&self) -> DbFault {
        self.fault.clone()
    }

    /// Queues a batch of tasks, all or nothing; answers after the commit.
    pub fn insert_batch(
        &self,
        tasks: Vec<NewTask>,
        ingest: Option<Ingest>,
        source: String,
    ) -> impl Future<Output = Result<InsertOutcome, StoreError>> + 'static {
        let reply = self.ask(Op::Insert {
            tasks,
            ingest,
            source,
        });
        async move {
            match reply.await? {
                Reply::Insert(i) => Ok(i),
                other => Err(unexpected(other)),
            }
        }
    }

    /// Stages one chunk of a file's tasks ([`staging`]) and waits for the
    /// commit. Blocks the calling thread: for the thread that reads a
    /// task file, never for an actor or the async runtime.
    pub fn stage_blocking(&self, batch: &str, tasks: Vec<NewTask>) -> Result<(), StoreError> {
        self.stage(batch, tasks).wait()
    }

    /// Stages one chunk without waiting: the reader parses the next chunk
    /// while this one is written, and waits on the ticket before handing
    /// over another (so at most two chunks are in memory).
    pub fn stage(&self, batch: &str, tasks: Vec<NewTask>) -> StageTicket {
        let (reply, rx) = oneshot::channel();
        let sent = self.tx.send(Job {
            ops: vec![Op::Stage {
                batch: batch.to_string(),
                tasks,
            }],
            reply: Some(reply),
        });
        StageTicket(sent.ok().map(|()| rx))
    }

    /// Forgets a file's staged chunks; nobody waits for the commit.
    pub fn unstage(&self, batch: &str) {
        self.persist(vec![Change::Unstage {
            batch: batch.to_string(),
        }]);
    }

    /// Queues a staged file, all or nothing, and answers after the commit
    /// with its first `window` queued rows per kernel (`kernels`: those
    /// its tasks run on). The staged rows are gone whatever the outcome.
    pub fn commit_staged(
        &self,
        batch: &str,
        tasks: usize,
        ingest: Option<Ingest>,
        source: String,
        kernels: Vec<KernelName>,
        window: usize,
    ) -> impl Future<Output = Result<StagedOutcome, StoreError>> + 'static {
        let reply = self.ask(Op::CommitStaged {
            batch: batch.to_string(),
            tasks,
            ingest,
            source,
            kernels,
            window,
        });
        async move {
            match reply.await? {
                Reply::Staged(s) => Ok(s),
                other => Err(unexpected(other)),
            }
        }
    }

    /// Cancels a task that has not ended; answers after the commit.
    pub fn cancel(
        &self,
        task_id: &TaskId,
    ) -> impl Future<Output = Result<CancelOutcome, StoreError>> + 'static {
        let reply = self.ask(Op::Cancel {
            task_id: task_id.clone(),
        });
        async move {
            match reply.await? {
                Reply::Cancel(c) => Ok(c),
                other => Err(unexpected(other)),
            }
        }
    }

    /// A failed or cancelled task back to queued; answers after the commit.
    pub fn retry(
        &self,
        task_id: &TaskId,
    ) -> impl Future<Output = Result<RetryOutcome, StoreError>> + 'static {
        let reply = self.ask(Op::Retry {
            task_id: task_id.clone(),
        });
        async move {
            match reply.await? {
                Reply::Retry(r) => Ok(r),
                other => Err(unexpected(other)),
            }
        }
    }

    /// Up to `limit` queued tasks of `kernel` after the (priority, seq) key
    /// `after`, in queue order (ordered with the writes before it).
    pub fn page(
        &self,
        kernel: KernelName,
        after: Option<(Priority, i64)>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<QueuedRow>, StoreError>> + 'static {
        let reply = self.ask(Op::Page { kernel, after, limit });
        async move {
            match reply.await? {
                Reply::Page(rows) => Ok(rows),
                other => Err(unexpected(other)),
            }
        }
    }

    /// Applies `changes` as one job and answers after the commit.
    pub fn persist_now(
        &self,
        changes: Vec<Change>,
    ) -> impl Future<Output = Result<(), StoreError>> + 'static {
        let reply = self.send(changes.into_iter().map(Op::Change).collect());
        async move { reply.await.map(|_| ()) }
    }

    /// Queues `changes` as one job without waiting; they commit in order
    /// with everything else.
    pub fn persist(&self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        let ops = changes.into_iter().map(Op::Change).collect();
        if self.tx.send(Job { ops, reply: None }).is_err() {
            tracing::error!("the database thread has stopped; a state change was not saved");
        }
    }

    /// An attempt began on `worker_id`: the task is running.
    pub fn attempt_started(&self, task_id: &TaskId, attempt_id: AttemptId, worker_id: &WorkerId, at: f64) {
        self.persist(vec![Change::AttemptStarted {
            task_id: task_id.clone(),
            attempt_id,
            worker_id: worker_id.clone(),
            at,
        }]);
    }

    /// An attempt ended, how and why.
    pub fn attempt_ended(&self, attempt_id: AttemptId, end: AttemptEnd, error: Option<String>, at: f64) {
        self.persist(vec![Change::AttemptEnded {
            attempt_id,
            end,
            error,
            at,
        }]);
    }

    /// A task back to the queue, not before `next_at`.
    pub fn requeue(&self, task_id: &TaskId, attempts: u32, next_at: Option<f64>) {
        self.persist(vec![Change::Requeue {
            task_id: task_id.clone(),
            attempts,
            next_at,
        }]);
    }

    /// A task ended without a result (failed, cancelled).
    pub fn ended(&self, task_id: &TaskId, status: TaskStatus, error: Option<String>, at: f64) {
        self.persist(vec![Change::Ended {
            task_id: task_id.clone(),
            status,
            result: None,
            error,
            worker_id: None,
            at,
        }]);
    }

    /// A completed task's result (JSON) from `worker_id`, with the end of
    /// the attempt that produced it; answers after the commit. `last`: no
    /// task of the queue is left to end, so the commit does not wait for
    /// others to join it ([`pace::PACE`]).
    pub fn record_result(
        &self,
        task_id: &TaskId,
        attempt_id: AttemptId,
        result: String,
        worker_id: &WorkerId,
        at: f64,
        last: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + 'static {
        let mut ops: Vec<Op> = [
            Change::AttemptEnded {
                attempt_id,
                end: AttemptEnd::Completed,
                error: None,
                at,
            },
            Change::Ended {
                task_id: task_id.clone(),
                status: TaskStatus::Completed,
                result: Some(result),
                error: None,
                worker_id: Some(worker_id.clone()),
                at,
            },
        ]
        .into_iter()
        .map(Op::Change)
        .collect();
        if last {
            ops.push(Op::Now);
        }
        let reply = self.send(ops);
        async move { reply.await.map(|_| ()) }
    }

    /// Names the results file these tasks go to, before it is written.
    pub fn assign_results_file(
        &self,
        task_ids: Vec<TaskId>,
        file: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + 'static {
        self.persist_now(vec![Change::AssignResultsFile {
            task_ids,
            file: file.to_string(),
        }])
    }

    /// The results file is on disk; answers after the commit.
    pub fn mark_written(&self, file: &str) -> impl Future<Output = Result<(), StoreError>> + 'static {
        self.persist_now(vec![Change::MarkWritten {
            file: file.to_string(),
        }])
    }

    /// The results file is on disk; nobody waits for the commit.
    pub fn mark_written_later(&self, file: &str) {
        self.persist(vec![Change::MarkWritten {
            file: file.to_string(),
        }]);
    }

    /// A dropped file was refused and moved to `rejected/`; nobody waits
    /// for the commit.
    pub fn file_rejected(&self, rejected: Rejected) {
        self.persist(vec![Change::FileRejected(rejected)]);
    }

    /// An ingested file was moved to `moved_to`.
    pub fn ingest_moved(&self, sha256: &str, name: &str, moved_to: &str) {
        self.persist(vec![Change::IngestMoved {
            sha256: sha256.to_string(),
            name: name.to_string(),
            moved_to: moved_to.to_string(),
        }]);
    }

    /// Blocks until everything queued so far is committed.
    pub fn sync(&self) {
        self.sync_with(Vec::new());
    }

    /// Blocks until everything queued so far is committed and the
    /// write-ahead log is copied into the database file (at shutdown: a
    /// copy of the file alone is then a whole backup).
    pub fn sync_and_checkpoint(&self) {
        self.sync_with(vec![Op::Checkpoint]);
    }

    fn sync_with(&self, ops: Vec<Op>) {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Job {
                ops,
                reply: Some(reply),
            })
            .is_ok()
        {
            let _ = rx.blocking_recv();
        }
    }

    /// Sends one job and answers its replies after the commit. The future
    /// owns what it needs, so actors can hold it across their own messages.
    fn send(&self, ops: Vec<Op>) -> impl Future<Output = Result<Vec<Reply>, StoreError>> + 'static {
        let (reply, rx) = oneshot::channel();
        let sent = self.tx.send(Job {
            ops,
            reply: Some(reply),
        });
        async move {
            sent.map_err(|_| StoreError::Stopped)?;
            match rx.await {
                Ok(Ok(replies)) => Ok(replies),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(StoreError::Stopped),
            }
        }
    }

    /// One op, its one reply.
    fn ask(&self, op: Op) -> impl Future<Output = Result<Reply, StoreError>> + 'static {
        let replies = self.send(vec![op]);
        async move {
            replies
                .await?
                .pop()
                .ok_or_else(|| StoreError::Failed("the database answered nothing".into()))
        }
    }
}

/// A reply of the wrong kind: a bug in this module, reported, not a panic.
fn unexpected(reply: Reply) -> StoreError {
    StoreError::Failed(format!("unexpected answer from the database: {reply:?}"))
}

#[cfg(test)]
mod files_tests;
#[cfg(test)]
mod fold_tests;
#[cfg(test)]
mod tests;
