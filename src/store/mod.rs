//! Store: the durable half of TaskQueue, an embedded SQLite database (WAL)
//! owned by one writer thread. Changes arrive as jobs of [`Op`]s; the
//! thread applies every job waiting in one transaction (group commit), so
//! a burst of state changes costs one commit, and answers each job only
//! after that commit. Reads for the REST API use separate read-only
//! connections ([`ReadPool`]) on blocking threads.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, params_from_iter, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use tokio::sync::oneshot;

/// Seconds since the epoch, the form times take in the database.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// ISO 8601 of a database time.
pub fn iso(t: f64) -> String {
    crate::util::time::Utc::from_unix(t.floor() as i64, ((t.fract() * 1000.0) as u32).min(999)).iso()
}

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

/// One state change (or a read that must be ordered with the writes).
#[derive(Debug)]
pub enum Op {
    /// All or nothing: refused if any id exists; a file whose ingest was
    /// committed but never moved is recognised instead.
    Insert {
        tasks: Vec<NewTask>,
        ingest: Option<Ingest>,
        source: String,
    },
    Started {
        task_id: String,
        attempt_id: u64,
        worker_id: String,
        at: f64,
    },
    AttemptEnded {
        attempt_id: u64,
        outcome: String,
        error: Option<String>,
        at: f64,
    },
    /// A task ended: completed, failed or cancelled.
    Ended {
        task_id: String,
        status: &'static str,
        result: Option<String>,
        error: Option<String>,
        worker_id: Option<String>,
        at: f64,
    },
    /// Back to the queue after a failed attempt (`next_at`: not before).
    Requeue {
        task_id: String,
        attempts: u32,
        next_at: Option<f64>,
        error: Option<String>,
    },
    /// Cancels a task if it has not ended; answers [`Reply::Cancel`].
    Cancel {
        task_id: String,
    },
    /// Failed or cancelled back to queued; answers [`Reply::Retry`].
    Retry {
        task_id: String,
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
    /// Queued tasks of a kernel after a (priority, seq) key, in order.
    Page {
        kernel: String,
        after: Option<(u8, i64)>,
        limit: usize,
    },
}

/// The answer to one [`Op`].
#[derive(Debug)]
pub enum Reply {
    Done,
    Inserted { seqs: Vec<i64> },
    Duplicates(Vec<String>),
    AlreadyIngested { moved_to: Option<String> },
    Cancel(CancelOutcome),
    Retry(RetryOutcome),
    Page(Vec<QueuedRow>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// Was queued or running; now cancelled.
    Cancelled {
        was: String,
        worker_id: Option<String>,
    },
    AlreadyEnded {
        status: String,
    },
    NotFound,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RetryOutcome {
    Queued { row: QueuedRow },
    NotRetryable { status: String },
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

type JobReply = oneshot::Sender<Result<Vec<Reply>, String>>;

struct Job {
    ops: Vec<Op>,
    reply: Option<JobReply>,
}

/// The writer thread's handle.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Job>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY,
    task_id TEXT NOT NULL UNIQUE,
    priority INTEGER NOT NULL,
    algorithm TEXT NOT NULL,
    kernel TEXT NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    started_at REAL,
    finished_at REAL,
    worker_id TEXT,
    current_attempt INTEGER,
    error TEXT,
    result TEXT,
    results_file TEXT,
    written INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tasks_queue ON tasks(status, kernel, priority, seq);
CREATE INDEX IF NOT EXISTS tasks_unwritten ON tasks(written, status) WHERE written = 0;
CREATE TABLE IF NOT EXISTS attempts (
    attempt_id INTEGER PRIMARY KEY,
    task_id TEXT NOT NULL,
    worker_id TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    outcome TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS attempts_task ON attempts(task_id);
CREATE TABLE IF NOT EXISTS ingests (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    tasks INTEGER NOT NULL,
    ingested_at REAL NOT NULL,
    moved_to TEXT
);
CREATE INDEX IF NOT EXISTS ingests_sha ON ingests(sha256);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

/// Opens (creating if needed) the database with the schema.
pub fn open(path: &Path, sync_full: bool) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", if sync_full { "FULL" } else { "NORMAL" })?;
    conn.pragma_update(None, "busy_timeout", 5000)?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// Increments and returns the boot counter: the high half of every
/// attempt id, so ids never repeat across restarts.
pub fn next_boot(conn: &Connection) -> Result<u64, StoreError> {
    conn.execute(
        "INSERT INTO meta(key, value) VALUES('boot', 1) ON CONFLICT(key) DO UPDATE SET value = value + 1",
        [],
    )?;
    Ok(
        conn.query_row("SELECT value FROM meta WHERE key = 'boot'", [], |r| {
            r.get::<_, i64>(0)
        })? as u64,
    )
}

impl Store {
    /// Starts the writer thread on `conn`.
    pub fn start(conn: Connection) -> Store {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .expect("the store thread starts");
        Store { tx }
    }

    /// Applies `ops` and answers after the commit. The future owns what
    /// it needs, so actors can hold it across their own messages.
    pub fn apply(
        &self,
        ops: Vec<Op>,
    ) -> impl std::future::Future<Output = Result<Vec<Reply>, StoreError>> + 'static {
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

    /// Queues `ops` without waiting (changes nobody is waiting on; they
    /// still commit in order with everything else).
    pub fn submit(&self, ops: Vec<Op>) {
        if self.tx.send(Job { ops, reply: None }).is_err() {
            tracing::error!("the database thread has stopped; a state change was not saved");
        }
    }

    /// Blocks until everything queued so far is committed.
    pub fn sync(&self) {
        let (reply, rx) = oneshot::channel();
        if self
            .tx
            .send(Job {
                ops: Vec::new(),
                reply: Some(reply),
            })
            .is_ok()
        {
            let _ = rx.blocking_recv();
        }
    }
}

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < 4096 {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let mut replies: Vec<Result<Vec<Reply>, String>> = Vec::with_capacity(jobs.len());
        let outcome = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            for job in &mut jobs {
                // each job all-or-nothing inside the group's transaction
                tx.execute_batch("SAVEPOINT job")?;
                match apply_ops(&tx, std::mem::take(&mut job.ops)) {
                    Ok(r) => {
                        tx.execute_batch("RELEASE job")?;
                        replies.push(Ok(r));
                    }
                    Err(e) => {
                        tx.execute_batch("ROLLBACK TO job; RELEASE job")?;
                        tracing::error!(error = %e, "a database change failed and was rolled back");
                        replies.push(Err(e.to_string()));
                    }
                }
            }
            tx.commit()
        })();
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "database commit failed");
        }
        for (job, reply) in jobs.into_iter().zip(
            replies
                .into_iter()
                .chain(std::iter::repeat_with(|| Err("not applied".into()))),
        ) {
            if let Some(tx) = job.reply {
                let _ = tx.send(match &outcome {
                    Ok(()) => reply,
                    Err(e) => Err(e.to_string()),
                });
            }
        }
    }
}

fn queued_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueuedRow> {
    Ok(QueuedRow {
        seq: r.get(0)?,
        task_id: r.get(1)?,
        priority: r.get::<_, i64>(2)? as u8,
        kernel: r.get(3)?,
        algorithm: r.get(4)?,
        body: r.get(5)?,
        attempts: r.get::<_, i64>(6)? as u32,
        next_attempt_at: r.get(7)?,
        created_at: r.get(8)?,
    })
}

const QUEUED_COLUMNS: &str =
    "seq, task_id, priority, kernel, algorithm, body, attempts, next_attempt_at, created_at";

fn apply_ops(db: &Connection, ops: Vec<Op>) -> rusqlite::Result<Vec<Reply>> {
    let mut replies = Vec::with_capacity(ops.len());
    for op in ops {
        replies.push(apply_op(db, op)?);
        // a refused insert leaves the rest of the job undone
        if matches!(
            replies.last(),
            Some(Reply::Duplicates(_)) | Some(Reply::AlreadyIngested { .. })
        ) {
            break;
        }
    }
    Ok(replies)
}

fn apply_op(db: &Connection, op: Op) -> rusqlite::Result<Reply> {
    match op {
        Op::Insert {
            tasks,
            ingest,
            source,
        } => {
            if let Some(ing) = &ingest {
                let earlier: Option<Option<String>> = db
                    .prepare_cached(
                        "SELECT moved_to FROM ingests WHERE sha256 = ?1 AND name = ?2 ORDER BY id DESC LIMIT 1",
                    )?
                    .query_row(params![ing.sha256, ing.name], |r| r.get(0))
                    .optional()?;
                if let Some(None) = earlier {
                    // committed before a crash, never moved: the same file
                    return Ok(Reply::AlreadyIngested { moved_to: None });
                }
            }
            let mut dups = Vec::new();
            {
                let mut exists = db.prepare_cached("SELECT 1 FROM tasks WHERE task_id = ?1")?;
                for t in &tasks {
                    if exists.exists(params![t.task_id])? {
                        dups.push(t.task_id.clone());
                    }
                }
            }
            if !dups.is_empty() {
                return Ok(Reply::Duplicates(dups));
            }
            let at = now();
            let mut seqs = Vec::with_capacity(tasks.len());
            {
                let mut insert = db.prepare_cached(
                    "INSERT INTO tasks(task_id, priority, algorithm, kernel, status, body, source, created_at)
                     VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?7)",
                )?;
                for t in &tasks {
                    insert.execute(params![
                        t.task_id,
                        t.priority,
                        t.algorithm,
                        t.kernel,
                        t.body,
                        source,
                        at
                    ])?;
                    seqs.push(db.last_insert_rowid());
                }
            }
            if let Some(ing) = ingest {
                db.prepare_cached(
                    "INSERT INTO ingests(name, size, sha256, tasks, ingested_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    ing.name,
                    ing.size as i64,
                    ing.sha256,
                    tasks.len() as i64,
                    at
                ])?;
            }
            Ok(Reply::Inserted { seqs })
        }
        Op::Started {
            task_id,
            attempt_id,
            worker_id,
            at,
        } => {
            db.prepare_cached(
                "UPDATE tasks SET status = 'running', attempts = attempts + 1, started_at = ?2, worker_id = ?3,
                 current_attempt = ?4, next_attempt_at = NULL
                 WHERE task_id = ?1 AND status IN ('queued', 'running')",
            )?
            .execute(params![task_id, at, worker_id, attempt_id as i64])?;
            db.prepare_cached(
                "INSERT OR REPLACE INTO attempts(attempt_id, task_id, worker_id, started_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![attempt_id as i64, task_id, worker_id, at])?;
            Ok(Reply::Done)
        }
        Op::AttemptEnded {
            attempt_id,
            outcome,
            error,
            at,
        } => {
            db.prepare_cached(
                "UPDATE attempts SET ended_at = ?2, outcome = ?3, error = ?4 WHERE attempt_id = ?1",
            )?
            .execute(params![attempt_id as i64, at, outcome, error])?;
            Ok(Reply::Done)
        }
        Op::Ended {
            task_id,
            status,
            result,
            error,
            worker_id,
            at,
        } => {
            db.prepare_cached(
                "UPDATE tasks SET status = ?2, result = COALESCE(?3, result), error = ?4,
                 worker_id = COALESCE(?5, worker_id), finished_at = ?6, current_attempt = NULL,
                 next_attempt_at = NULL, written = CASE WHEN ?2 = 'completed' THEN 0 ELSE 1 END
                 WHERE task_id = ?1",
            )?
            .execute(params![task_id, status, result, error, worker_id, at])?;
            Ok(Reply::Done)
        }
        Op::Requeue {
            task_id,
            attempts,
            next_at,
            error,
        } => {
            db.prepare_cached(
                "UPDATE tasks SET status = 'queued', attempts = ?2, next_attempt_at = ?3, error = ?4,
                 current_attempt = NULL
                 WHERE task_id = ?1 AND status IN ('queued', 'running')",
            )?
            .execute(params![task_id, attempts as i64, next_at, error])?;
            Ok(Reply::Done)
        }
        Op::Cancel { task_id } => {
            let row: Option<(String, Option<String>)> = db
                .prepare_cached("SELECT status, worker_id FROM tasks WHERE task_id = ?1")?
                .query_row(params![task_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            Ok(Reply::Cancel(match row {
                None => CancelOutcome::NotFound,
                Some((status, worker_id)) if status == "queued" || status == "running" => {
                    db.prepare_cached(
                        "UPDATE tasks SET status = 'cancelled', finished_at = ?2, current_attempt = NULL,
                         written = 1, error = 'cancelled by request' WHERE task_id = ?1",
                    )?
                    .execute(params![task_id, now()])?;
                    CancelOutcome::Cancelled {
                        was: status.clone(),
                        worker_id: if status == "running" { worker_id } else { None },
                    }
                }
                Some((status, _)) => CancelOutcome::AlreadyEnded { status },
            }))
        }
        Op::Retry { task_id } => {
            let status: Option<String> = db
                .prepare_cached("SELECT status FROM tasks WHERE task_id = ?1")?
                .query_row(params![task_id], |r| r.get(0))
                .optional()?;
            Ok(Reply::Retry(match status {
                None => RetryOutcome::NotFound,
                Some(s) if s == "failed" || s == "cancelled" => {
                    db.prepare_cached(
                        "UPDATE tasks SET status = 'queued', attempts = 0, next_attempt_at = NULL, error = NULL,
                         finished_at = NULL, created_at = ?2 WHERE task_id = ?1",
                    )?
                    .execute(params![task_id, now()])?;
                    let row = db
                        .prepare_cached(&format!("SELECT {QUEUED_COLUMNS} FROM tasks WHERE task_id = ?1"))?
                        .query_row(params![task_id], queued_row)?;
                    RetryOutcome::Queued { row }
                }
                Some(status) => RetryOutcome::NotRetryable { status },
            }))
        }
        Op::AssignResultsFile { task_ids, file } => {
            let mut stmt = db.prepare_cached("UPDATE tasks SET results_file = ?2 WHERE task_id = ?1")?;
            for id in task_ids {
                stmt.execute(params![id, file])?;
            }
            Ok(Reply::Done)
        }
        Op::MarkWritten { file } => {
            db.prepare_cached("UPDATE tasks SET written = 1 WHERE results_file = ?1 AND written = 0")?
                .execute(params![file])?;
            Ok(Reply::Done)
        }
        Op::IngestMoved {
            sha256,
            name,
            moved_to,
        } => {
            db.prepare_cached(
                "UPDATE ingests SET moved_to = ?3 WHERE sha256 = ?1 AND name = ?2 AND moved_to IS NULL",
            )?
            .execute(params![sha256, name, moved_to])?;
            Ok(Reply::Done)
        }
        Op::Page { kernel, after, limit } => {
            let rows = match after {
                None => db
                    .prepare_cached(&format!(
                        "SELECT {QUEUED_COLUMNS} FROM tasks WHERE status = 'queued' AND kernel = ?1
                         ORDER BY priority, seq LIMIT ?2"
                    ))?
                    .query_map(params![kernel, limit as i64], queued_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?,
                Some((p, s)) => db
                    .prepare_cached(&format!(
                        "SELECT {QUEUED_COLUMNS} FROM tasks WHERE status = 'queued' AND kernel = ?1
                         AND (priority > ?2 OR (priority = ?2 AND seq > ?3))
                         ORDER BY priority, seq LIMIT ?4"
                    ))?
                    .query_map(params![kernel, p, s, limit as i64], queued_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?,
            };
            Ok(Reply::Page(rows))
        }
    }
}

/// What a restarted orchestrator finds in its database.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Tasks that were running: (task_id, attempt_id, worker_id, body).
    pub running: Vec<(String, Option<u64>, Option<String>, QueuedRow)>,
    /// Completed results not yet in a results file: (task_id, result JSON,
    /// the file assigned before the crash, if any).
    pub unwritten: Vec<(String, String, Option<String>)>,
    /// Kernels that have queued tasks.
    pub queued_kernels: Vec<String>,
    pub counts: Vec<(String, i64)>,
}

/// Reads what a restart must reconcile (on the writer's connection,
/// before the writer thread starts).
pub fn recover(conn: &Connection) -> Result<Recovery, StoreError> {
    let mut rec = Recovery::default();
    let mut stmt = conn.prepare(&format!(
        "SELECT {QUEUED_COLUMNS}, current_attempt, worker_id FROM tasks WHERE status = 'running'"
    ))?;
    rec.running = stmt
        .query_map([], |r| {
            let row = queued_row(r)?;
            let attempt: Option<i64> = r.get(9)?;
            let worker: Option<String> = r.get(10)?;
            Ok((row.task_id.clone(), attempt.map(|a| a as u64), worker, row))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt = conn.prepare(
        "SELECT task_id, result, results_file FROM tasks WHERE written = 0 AND status = 'completed' ORDER BY seq",
    )?;
    rec.unwritten = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                r.get(2)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt = conn.prepare("SELECT DISTINCT kernel FROM tasks WHERE status = 'queued'")?;
    rec.queued_kernels = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt = conn.prepare("SELECT status, COUNT(*) FROM tasks GROUP BY status")?;
    rec.counts = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rec)
}

/// A task as the REST API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    pub task_id: String,
    pub status: String,
    pub priority: &'static str,
    pub algorithm: String,
    pub kernel: String,
    pub parameters: serde_json::Value,
    pub description: Option<String>,
    pub source: String,
    pub created_at: String,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_time: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results_file: Option<String>,
}

/// One attempt as the REST API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptView {
    pub attempt_id: u64,
    pub worker_id: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub outcome: Option<String>,
    pub error: Option<String>,
}

/// Filters of `GET /tasks`.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub status: Option<String>,
    pub priority: Option<u8>,
    pub algorithm: Option<String>,
    pub worker: Option<String>,
}

pub fn priority_name(p: u8) -> &'static str {
    match p {
        0 => "high",
        1 => "medium",
        _ => "low",
    }
}

const VIEW_COLUMNS: &str = "task_id, status, priority, algorithm, kernel, body, source, created_at, attempts,
    worker_id, started_at, finished_at, next_attempt_at, error, result, results_file";

fn task_view(r: &rusqlite::Row<'_>, with_result: bool) -> rusqlite::Result<TaskView> {
    let body: String = r.get(5)?;
    let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let result: Option<String> = r.get(14)?;
    let result: Option<serde_json::Value> = result.and_then(|s| serde_json::from_str(&s).ok());
    let execution_time = result
        .as_ref()
        .and_then(|v| v.get("execution_time"))
        .and_then(|v| v.as_f64());
    Ok(TaskView {
        task_id: r.get(0)?,
        status: r.get(1)?,
        priority: priority_name(r.get::<_, i64>(2)? as u8),
        algorithm: r.get(3)?,
        kernel: r.get(4)?,
        parameters: body.get("parameters").cloned().unwrap_or_default(),
        description: body.get("description").and_then(|d| d.as_str()).map(String::from),
        source: r.get(6)?,
        created_at: iso(r.get(7)?),
        attempts: r.get::<_, i64>(8)? as u32,
        worker_id: r.get(9)?,
        started_at: r.get::<_, Option<f64>>(10)?.map(iso),
        finished_at: r.get::<_, Option<f64>>(11)?.map(iso),
        next_attempt_at: r.get::<_, Option<f64>>(12)?.map(iso),
        error: r.get(13)?,
        execution_time,
        result: if with_result { result } else { None },
        results_file: r.get(15)?,
    })
}

/// Task counts by status, and by (priority, status).
pub type Counts = (Vec<(String, u64)>, Vec<(String, String, u64)>);

/// Read-only connections for the REST API, reused across requests.
pub struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                c.pragma_update(None, "busy_timeout", 5000)?;
                c
            }
        };
        let out = f(&conn)?;
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < 8 {
            idle.push(conn);
        }
        Ok(out)
    }

    /// One task with its attempts.
    pub fn task(&self, task_id: &str) -> Result<Option<(TaskView, Vec<AttemptView>)>, StoreError> {
        self.with(|db| {
            let view = db
                .prepare_cached(&format!("SELECT {VIEW_COLUMNS} FROM tasks WHERE task_id = ?1"))?
                .query_row(params![task_id], |r| task_view(r, true))
                .optional()?;
            let Some(view) = view else { return Ok(None) };
            let attempts = db
                .prepare_cached(
                    "SELECT attempt_id, worker_id, started_at, ended_at, outcome, error FROM attempts
                     WHERE task_id = ?1 ORDER BY started_at, attempt_id",
                )?
                .query_map(params![task_id], |r| {
                    Ok(AttemptView {
                        attempt_id: r.get::<_, i64>(0)? as u64,
                        worker_id: r.get(1)?,
                        started_at: iso(r.get(2)?),
                        ended_at: r.get::<_, Option<f64>>(3)?.map(iso),
                        outcome: r.get(4)?,
                        error: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some((view, attempts)))
        })
    }

    /// A page of tasks in queue order, and how many match in all.
    pub fn tasks(
        &self,
        filter: &TaskFilter,
        limit: usize,
        offset: usize,
    ) -> Result<(Vec<TaskView>, u64), StoreError> {
        self.with(|db| {
            let mut clauses = Vec::new();
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(s) = &filter.status {
                clauses.push("status = ?");
                args.push(s.clone().into());
            }
            if let Some(p) = filter.priority {
                clauses.push("priority = ?");
                args.push((p as i64).into());
            }
            if let Some(a) = &filter.algorithm {
                clauses.push("(algorithm = ? OR kernel = ?)");
                args.push(a.clone().into());
                args.push(a.clone().into());
            }
            if let Some(w) = &filter.worker {
                clauses.push("worker_id = ?");
                args.push(w.clone().into());
            }
            let where_ = if clauses.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", clauses.join(" AND "))
            };
            let total: i64 = db
                .prepare_cached(&format!("SELECT COUNT(*) FROM tasks {where_}"))?
                .query_row(params_from_iter(args.iter()), |r| r.get(0))?;
            let mut page_args = args.clone();
            page_args.push((limit as i64).into());
            page_args.push((offset as i64).into());
            let rows = db
                .prepare_cached(&format!(
                    "SELECT {VIEW_COLUMNS} FROM tasks {where_} ORDER BY seq LIMIT ? OFFSET ?"
                ))?
                .query_map(params_from_iter(page_args.iter()), |r| task_view(r, false))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((rows, total as u64))
        })
    }

    /// Attempts that ended, per worker and outcome.
    pub fn by_worker(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        self.with(|db| {
            db.prepare_cached(
                "SELECT worker_id, COALESCE(outcome, 'running'), COUNT(*) FROM attempts
                 GROUP BY worker_id, outcome ORDER BY worker_id",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64)))?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
    }

    /// Results files written so far.
    pub fn results_files(&self) -> Result<Vec<String>, StoreError> {
        self.with(|db| {
            db.prepare_cached(
                "SELECT DISTINCT results_file FROM tasks WHERE results_file IS NOT NULL AND written = 1
                 ORDER BY results_file",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
    }

    /// Task counts by status and by priority.
    pub fn counts(&self) -> Result<Counts, StoreError> {
        self.with(|db| {
            let by_status = db
                .prepare_cached("SELECT status, COUNT(*) FROM tasks GROUP BY status")?
                .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let by_priority = db
                .prepare_cached("SELECT priority, status, COUNT(*) FROM tasks GROUP BY priority, status")?
                .query_map([], |r| {
                    Ok((
                        priority_name(r.get::<_, i64>(0)? as u8).to_string(),
                        r.get(1)?,
                        r.get::<_, i64>(2)? as u64,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((by_status, by_priority))
        })
    }
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
        let r = block(store.apply(vec![Op::Insert {
            tasks: vec![task("a", 1), task("b", 0)],
            ingest: None,
            source: "api".into(),
        }]))
        .unwrap();
        assert!(matches!(&r[0], Reply::Inserted { seqs } if seqs.len() == 2));
        let r = block(store.apply(vec![Op::Insert {
            tasks: vec![task("c", 1), task("b", 0)],
            ingest: None,
            source: "api".into(),
        }]))
        .unwrap();
        assert!(matches!(&r[0], Reply::Duplicates(d) if d == &["b".to_string()]));
        let pool = ReadPool::new(&path);
        let (rows, total) = pool.tasks(&TaskFilter::default(), 10, 0).unwrap();
        assert_eq!(total, 2, "c must not be inserted");
        assert_eq!(rows[0].task_id, "a");
        // queue order: priority, then arrival
        let page = block(store.apply(vec![Op::Page {
            kernel: "reference".into(),
            after: None,
            limit: 10,
        }]))
        .unwrap();
        let Reply::Page(rows) = &page[0] else { panic!() };
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
        let insert = |ids: &[&str]| Op::Insert {
            tasks: ids.iter().map(|id| task(id, 1)).collect(),
            ingest: Some(ingest.clone()),
            source: "f.json".into(),
        };
        block(store.apply(vec![insert(&["x"])])).unwrap();
        let again = block(store.apply(vec![insert(&["x"])])).unwrap();
        assert!(matches!(again[0], Reply::AlreadyIngested { .. }));
        block(store.apply(vec![Op::IngestMoved {
            sha256: "abc".into(),
            name: "f.json".into(),
            moved_to: "processed/f.json".into(),
        }]))
        .unwrap();
        // dropped again after it was moved: a real duplicate
        let dup = block(store.apply(vec![insert(&["x"])])).unwrap();
        assert!(matches!(&dup[0], Reply::Duplicates(d) if d.len() == 1));
    }

    #[test]
    fn cancel_and_retry_follow_the_state_machine() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::start(open(&dir.path().join("q.db"), false).unwrap());
        block(store.apply(vec![Op::Insert {
            tasks: vec![task("t", 1)],
            ingest: None,
            source: "api".into(),
        }]))
        .unwrap();
        let cancel = |id: &str| {
            let r = block(store.apply(vec![Op::Cancel { task_id: id.into() }])).unwrap();
            match r.into_iter().next().unwrap() {
                Reply::Cancel(c) => c,
                other => panic!("{other:?}"),
            }
        };
        assert!(matches!(cancel("t"), CancelOutcome::Cancelled { .. }));
        assert_eq!(
            cancel("t"),
            CancelOutcome::AlreadyEnded {
                status: "cancelled".into()
            }
        );
        assert_eq!(cancel("nope"), CancelOutcome::NotFound);
        let r = block(store.apply(vec![Op::Retry { task_id: "t".into() }])).unwrap();
        assert!(matches!(&r[0], Reply::Retry(RetryOutcome::Queued { .. })));
        let r = block(store.apply(vec![Op::Retry { task_id: "t".into() }])).unwrap();
        assert!(matches!(&r[0], Reply::Retry(RetryOutcome::NotRetryable { .. })));
    }

    #[test]
    fn boots_count_up() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("q.db"), false).unwrap();
        assert_eq!(next_boot(&conn).unwrap(), 1);
        assert_eq!(next_boot(&conn).unwrap(), 2);
    }
}
