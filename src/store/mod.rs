//! Store: the durable half of TaskQueue, an embedded SQLite database (WAL)
//! owned by one writer thread ([`writer`]). Callers use typed methods on
//! [`Store`]: changes nobody waits on (`attempt_started`, `requeue`, …)
//! are queued and commit in order with everything else; the ones whose
//! answer matters (`insert_batch`, `cancel`, `retry`, `page`) answer after
//! the commit. The thread applies every job waiting in one transaction
//! (group commit), so a burst of state changes costs one commit. Reads for
//! the REST API use separate read-only connections ([`ReadPool`]). The
//! file is checked when opened (`schema`: a marker row and `PRAGMA
//! quick_check`), damage met at run time is noted for `/health`
//! ([`DbFault`]), and a clean stop checkpoints the write-ahead log.

mod fault;
mod recovery;
mod schema;
mod views;
mod writer;

use std::future::Future;
use std::path::PathBuf;
use std::sync::mpsc;

use tokio::sync::oneshot;

pub use fault::DbFault;
pub use recovery::{recover, Recovery, StoredMember, Unwritten, WasRunning};
pub use schema::{next_boot, open};
pub use views::{AttemptView, ByWorker, Counts, ReadPool, TaskFilter, TaskView};
use writer::{Job, Op, Reply};

use crate::model::{AttemptEnd, TaskStatus, WorkerId};

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
    pub task_id: String,
    pub priority: u8,
    pub algorithm: String,
    pub kernel: String,
    /// The task's JSON as the worker will receive it.
    pub body: String,
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
        task_id: String,
        attempt_id: u64,
        worker_id: WorkerId,
        at: f64,
    },
    AttemptEnded {
        attempt_id: u64,
        end: AttemptEnd,
        error: Option<String>,
        at: f64,
    },
    /// A task ended: completed, failed or cancelled.
    Ended {
        task_id: String,
        status: TaskStatus,
        /// The result's JSON, for a completed task.
        result: Option<String>,
        error: Option<String>,
        worker_id: Option<WorkerId>,
        at: f64,
    },
    /// Back to the queue (`next_at`: not before).
    Requeue {
        task_id: String,
        attempts: u32,
        next_at: Option<f64>,
        error: Option<String>,
    },
    AssignResultsFile {
        task_ids: Vec<String>,
        file: String,
    },
    MarkWritten {
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
        at: f64,
    },
    /// A joined worker left (drained, or `DELETE /workers/{id}`).
    MemberLeft {
        id: WorkerId,
    },
}

/// What became of a batch given to [`Store::insert_batch`].
#[derive(Debug, Clone, PartialEq)]
pub enum InsertOutcome {
    /// Every task queued; their sequence numbers, in order.
    Inserted { seqs: Vec<i64> },
    /// Nothing queued: these ids exist.
    Duplicates(Vec<String>),
    /// The same file was ingested before a crash and never moved.
    AlreadyIngested,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// Was queued or running; now cancelled.
    Cancelled {
        was: TaskStatus,
        worker_id: Option<String>,
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
    pub task_id: String,
    pub priority: u8,
    pub kernel: String,
    pub algorithm: String,
    pub body: String,
    pub attempts: u32,
    pub next_attempt_at: Option<f64>,
    pub created_at: f64,
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

    /// Cancels a task that has not ended; answers after the commit.
    pub fn cancel(&self, task_id: &str) -> impl Future<Output = Result<CancelOutcome, StoreError>> + 'static {
        let reply = self.ask(Op::Cancel {
            task_id: task_id.to_string(),
        });
        async move {
            match reply.await? {
                Reply::Cancel(c) => Ok(c),
                other => Err(unexpected(other)),
            }
        }
    }

    /// A failed or cancelled task back to queued; answers after the commit.
    pub fn retry(&self, task_id: &str) -> impl Future<Output = Result<RetryOutcome, StoreError>> + 'static {
        let reply = self.ask(Op::Retry {
            task_id: task_id.to_string(),
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
        kernel: &str,
        after: Option<(u8, i64)>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<QueuedRow>, StoreError>> + 'static {
        let reply = self.ask(Op::Page {
            kernel: kernel.to_string(),
            after,
            limit,
        });
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
    pub fn attempt_started(&self, task_id: &str, attempt_id: u64, worker_id: &WorkerId, at: f64) {
        self.persist(vec![Change::AttemptStarted {
            task_id: task_id.to_string(),
            attempt_id,
            worker_id: worker_id.clone(),
            at,
        }]);
    }

    /// An attempt ended, how and why.
    pub fn attempt_ended(&self, attempt_id: u64, end: AttemptEnd, error: Option<String>, at: f64) {
        self.persist(vec![Change::AttemptEnded {
            attempt_id,
            end,
            error,
            at,
        }]);
    }

    /// A task back to the queue, not before `next_at`.
    pub fn requeue(&self, task_id: &str, attempts: u32, next_at: Option<f64>, error: Option<String>) {
        self.persist(vec![Change::Requeue {
            task_id: task_id.to_string(),
            attempts,
            next_at,
            error,
        }]);
    }

    /// A task ended without a result (failed, cancelled).
    pub fn ended(&self, task_id: &str, status: TaskStatus, error: Option<String>, at: f64) {
        self.persist(vec![Change::Ended {
            task_id: task_id.to_string(),
            status,
            result: None,
            error,
            worker_id: None,
            at,
        }]);
    }

    /// A completed task's result (JSON) from `worker_id`, with the end of
    /// the attempt that produced it; answers after the commit.
    pub fn record_result(
        &self,
        task_id: &str,
        attempt_id: u64,
        result: String,
        worker_id: &WorkerId,
        at: f64,
    ) -> impl Future<Output = Result<(), StoreError>> + 'static {
        self.persist_now(vec![
            Change::AttemptEnded {
                attempt_id,
                end: AttemptEnd::Completed,
                error: None,
                at,
            },
            Change::Ended {
                task_id: task_id.to_string(),
                status: TaskStatus::Completed,
                result: Some(result),
                error: None,
                worker_id: Some(worker_id.clone()),
                at,
            },
        ])
    }

    /// Names the results file these tasks go to, before it is written.
    pub fn assign_results_file(
        &self,
        task_ids: Vec<String>,
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
                Ok(Err(e)) => Err(StoreError::Failed(e)),
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
mod tests {
    use super::*;

    fn task(id: &str, priority: u8) -> NewTask {
        NewTask {
            task_id: id.into(),
            priority,
            algorithm: "python".into(),
            kernel: "reference".into(),
            body: format!(r#"{{"task_id": "{id}", "parameters": {{"num_particles": 100}}}}"#),
        }
    }

    fn block<T>(f: impl std::future::Future<Output = T>) -> T {
        actix_rt::System::new().block_on(f)
    }

    #[test]
    fn inserts_are_all_or_nothing_and_duplicates_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let store = Store::start(open(&path, false).unwrap());
        let r = block(store.insert_batch(vec![task("a", 1), task("b", 0)], None, "api".into())).unwrap();
        assert!(matches!(&r, InsertOutcome::Inserted { seqs } if seqs.len() == 2));
        let r = block(store.insert_batch(vec![task("c", 1), task("b", 0)], None, "api".into())).unwrap();
        assert!(matches!(&r, InsertOutcome::Duplicates(d) if d == &["b".to_string()]));
        let pool = ReadPool::new(&path);
        let (rows, total) = pool.tasks(&TaskFilter::default(), 10, 0).unwrap();
        assert_eq!(total, 2, "c must not be inserted");
        assert_eq!(rows[0].task_id, "a");
        // queue order: priority, then arrival
        let rows = block(store.page("reference", None, 10)).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.task_id.as_str()).collect::<Vec<_>>(),
            ["b", "a"]
        );
    }

    #[test]
    fn a_file_ingested_but_not_moved_is_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::start(open(&dir.path().join("q.db"), false).unwrap());
        let ingest = Ingest {
            name: "f.json".into(),
            size: 10,
            sha256: "abc".into(),
        };
        let insert = |ids: &[&str]| {
            block(store.insert_batch(
                ids.iter().map(|id| task(id, 1)).collect(),
                Some(ingest.clone()),
                "f.json".into(),
            ))
            .unwrap()
        };
        insert(&["x"]);
        assert_eq!(insert(&["x"]), InsertOutcome::AlreadyIngested);
        store.ingest_moved("abc", "f.json", "processed/f.json");
        // dropped again after it was moved: a real duplicate
        assert!(matches!(&insert(&["x"]), InsertOutcome::Duplicates(d) if d.len() == 1));
    }

    #[test]
    fn cancel_and_retry_follow_the_state_machine() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::start(open(&dir.path().join("q.db"), false).unwrap());
        block(store.insert_batch(vec![task("t", 1)], None, "api".into())).unwrap();
        let cancel = |id: &str| block(store.cancel(id)).unwrap();
        assert!(matches!(cancel("t"), CancelOutcome::Cancelled { .. }));
        assert_eq!(
            cancel("t"),
            CancelOutcome::AlreadyEnded {
                status: TaskStatus::Cancelled
            }
        );
        assert_eq!(cancel("nope"), CancelOutcome::NotFound);
        let r = block(store.retry("t")).unwrap();
        assert!(matches!(&r, RetryOutcome::Queued { .. }));
        let r = block(store.retry("t")).unwrap();
        assert!(matches!(&r, RetryOutcome::NotRetryable { .. }));
    }

    #[test]
    fn boots_count_up() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("q.db"), false).unwrap();
        assert_eq!(next_boot(&conn).unwrap(), 1);
        assert_eq!(next_boot(&conn).unwrap(), 2);
    }

    #[test]
    fn joined_members_survive_a_restart_until_they_leave() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let joined = |id: &str, url: &str, instance: &str| Change::MemberJoined {
            id: WorkerId::new(id),
            url: url.into(),
            capacity: 2,
            algorithms: vec!["python".into(), "__sleep".into()],
            instance: instance.into(),
            at: 1.0,
        };
        let store = Store::start(open(&path, false).unwrap());
        block(store.persist_now(vec![
            joined("a", "http://h:1", "i1"),
            joined("b", "http://h:2", "i2"),
            // joining again updates, never duplicates
            joined("a", "http://h:3", "i3"),
            Change::MemberLeft {
                id: WorkerId::new("b"),
            },
        ]))
        .unwrap();
        store.sync();
        let members = recover(&open(&path, false).unwrap()).unwrap().members;
        assert_eq!(
            members,
            [StoredMember {
                id: "a".into(),
                url: "http://h:3".into(),
                capacity: 2,
                algorithms: vec!["python".into(), "__sleep".into()],
                instance: "i3".into(),
                joined_at: 1.0,
            }]
        );
    }

    #[test]
    fn health_reports_a_database_damaged_while_running() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let conn = open(&path, false).unwrap();
        conn.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) \
             INSERT INTO tasks(task_id, priority, algorithm, kernel, status, body, source, created_at) \
             SELECT printf('t%05d', i), 1, 'python', 'reference', 'queued', printf('%0300d', i), 'test', 0 FROM n;",
        )
        .unwrap();
        conn.pragma_update(None, "wal_checkpoint", "TRUNCATE").unwrap();
        let store = Store::start(conn);
        let read = ReadPool::new(&path).sharing_faults(store.fault());
        assert_eq!(read.health(), Ok(()));
        schema::tests::damage_middle(&path);
        // a query that reads the damaged pages fails, and /health says so
        // from then on, without scanning anything itself
        assert!(read.tasks(&TaskFilter::default(), 5000, 0).is_err());
        let health = read.health().unwrap_err();
        assert!(health.contains("malformed"), "{health}");
        assert!(store.fault().get().is_some(), "the writer's view is the same");
    }
}
