//! The writer thread: the only connection that changes the database.
//! Jobs of [`Op`]s arrive on a channel; every job waiting is applied in one
//! transaction (group commit), each inside its own savepoint, and answered
//! only after the commit.

use std::sync::mpsc;
use std::time::Instant;

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use super::journals::{journals_much, Journals};
use super::staging::{self, Commit, StagedOutcome};
use super::{fold, group, history, purge, StoreError};
use super::{CancelOutcome, Change, Duplicates, Ingest, InsertOutcome, NewTask, QueuedRow, RetryOutcome};
use crate::model::{KernelName, Priority, TaskId, TaskStatus, WorkerId};
use crate::util::time::unix_now;

/// One job's worth of work (or a read that must be ordered with the writes).
#[derive(Debug)]
pub(super) enum Op {
    /// All or nothing: refused if any id exists; a file whose ingest was
    /// committed but never moved is recognised instead.
    Insert {
        tasks: Vec<NewTask>,
        ingest: Option<Ingest>,
        source: String,
    },
    /// One chunk of a file's tasks, staged ([`super::staging`]).
    Stage { batch: String, tasks: Vec<NewTask> },
    /// A staged file into the queue, all or nothing.
    CommitStaged {
        batch: String,
        /// How many tasks were staged: where its statement journal goes.
        tasks: usize,
        ingest: Option<Ingest>,
        source: String,
        kernels: Vec<KernelName>,
        window: usize,
    },
    /// Cancels a task if it has not ended.
    Cancel { task_id: TaskId },
    /// Failed or cancelled back to queued.
    Retry { task_id: TaskId },
    /// Queued tasks of a kernel after a (priority, seq) key, in order.
    Page {
        kernel: KernelName,
        after: Option<(Priority, i64)>,
        limit: usize,
    },
    /// A change nobody reads an answer from.
    Change(Change),
    /// Names a failures file for the failure records not yet in one
    /// ([`super::history`]); answers them.
    ClaimFailures { file: String, limit: usize },
    /// One window of a purge ([`super::purge`]).
    PurgeWindow {
        before: f64,
        after: i64,
        limit: usize,
        dry_run: bool,
    },
    /// The `ingests` rows of files no task is left of.
    PurgeIngests {
        sources: std::collections::BTreeSet<String>,
        scanned: i64,
        dry_run: bool,
    },
    /// The file's size and free room, after `VACUUM` if asked: a job of
    /// its own, run outside any transaction.
    Space { vacuum: bool },
    /// After this group commits, copy the WAL into the database file and
    /// empty it (at shutdown: the file alone is then a whole copy).
    Checkpoint,
    /// Commit the group this job is in without waiting for [`PACE`](super::pace::PACE) (the
    /// last result of a drained queue: whoever waits on the batch hears
    /// at once). Writes nothing.
    Now,
}

/// True if this file (same name and content) was committed before and
/// never moved out of the drop folder: a crash came between the two.
pub(super) fn committed_unmoved(db: &Connection, sha256: &str, name: &str) -> rusqlite::Result<bool> {
    let earlier: Option<Option<String>> = db
        .prepare_cached(
            "SELECT moved_to FROM ingests WHERE sha256 = ?1 AND name = ?2 AND state = 'ingested'
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row(params![sha256, name], |r| r.get(0))
        .optional()?;
    Ok(matches!(earlier, Some(None)))
}

/// The answer to one [`Op`].
#[derive(Debug)]
pub(super) enum Reply {
    Done,
    Insert(InsertOutcome),
    Staged(StagedOutcome),
    Cancel(CancelOutcome),
    Retry(RetryOutcome),
    Page(Vec<QueuedRow>),
    Failures(Vec<String>),
    Purged(purge::Window),
    Count(u64),
    Space(purge::Space),
}

pub(super) type JobReply = oneshot::Sender<Result<Vec<Reply>, StoreError>>;

pub(super) struct Job {
    pub ops: Vec<Op>,
    pub reply: Option<JobReply>,
}

/// A job that runs alone, outside any transaction (`VACUUM` cannot run
/// inside one).
pub(super) fn runs_alone(job: &Job) -> bool {
    matches!(job.ops.first(), Some(Op::Space { .. }))
}

/// Runs a job of [`runs_alone`] and answers it.
fn run_alone(conn: &Connection, job: Job, fault: &super::DbFault) {
    let answer = match job.ops.first() {
        Some(Op::Space { vacuum }) => purge::space(conn, *vacuum)
            .map(|s| vec![Reply::Space(s)])
            .map_err(|e| {
                let e = fault.note(e);
                tracing::error!(error = %e, "cannot measure or vacuum the database");
                StoreError::Failed(e.to_string())
            }),
        _ => Err(StoreError::Failed("not a job that runs alone".into())),
    };
    if let Some(tx) = job.reply {
        let _ = tx.send(answer);
    }
}

/// Tasks a file may have before its move into the queue is followed by a
/// checkpoint that empties the write-ahead log ([`trim_wal`]): that one
/// transaction wrote at least as many pages to the log (593 MB for a
/// million tasks), which SQLite never gives back by itself.
const LARGE_FILE: usize = 20_000;

/// Copies the write-ahead log into the database file and empties it: when
/// asked ([`Op::Checkpoint`], at shutdown), and once the writer is idle
/// after a large file. A reader still on an old
/// snapshot is waited for (the busy timeout); if one is still there, the
/// next automatic checkpoint cuts the log to
/// [`super::schema::WAL_SIZE_LIMIT`].
fn trim_wal(conn: &Connection, fault: &super::DbFault) {
    match conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0)) {
        Ok(0) => tracing::debug!("write-ahead log copied into the database and emptied"),
        Ok(_) => tracing::debug!("write-ahead log left for the next checkpoint: a reader still used it"),
        Err(e) => {
            tracing::warn!(error = %fault.note(e), "cannot copy the write-ahead log into the database file")
        }
    }
}

pub(super) fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Job>, fault: super::DbFault) {
    let path = conn
        .path()
        .filter(|p| !p.is_empty())
        .unwrap_or("(in memory)")
        .to_string();
    let mut held: Option<Job> = None;
    let mut journals = Journals::default();
    // a large file was moved into the queue: empty the log when idle
    let mut wal_to_trim = false;
    // when the last group began: task changes wait for the next
    // `PACE` (pace.rs) after it
    let mut last_group: Option<Instant> = None;
    loop {
        let first = match held.take() {
            Some(job) => job,
            None if wal_to_trim => match rx.try_recv() {
                Ok(job) => job,
                Err(mpsc::TryRecvError::Empty) => {
                    wal_to_trim = false;
                    trim_wal(&conn, &fault);
                    continue;
                }
                Err(mpsc::TryRecvError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
        };
        if runs_alone(&first) {
            journals.on_disk(&conn, true);
            run_alone(&conn, first, &fault);
            continue;
        }
        let mut jobs = vec![first];
        let until = super::pace::pace_until(last_group, &jobs);
        held = super::pace::gather(&rx, &mut jobs, until);
        last_group = Some(Instant::now());
        let checkpoint = jobs
            .iter()
            .any(|j| j.ops.iter().any(|op| matches!(op, Op::Checkpoint)));
        journals.on_disk(&conn, jobs.iter().any(journals_much));
        let (outcome, replies) = group::commit(&mut conn, &jobs, &fault, &path);
        wal_to_trim |= outcome.is_ok()
            && jobs
                .iter()
                .flat_map(|j| &j.ops)
                .any(|op| matches!(op, Op::CommitStaged { tasks, .. } if *tasks > LARGE_FILE));
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "database commit failed");
        } else if replies.iter().all(Result::is_ok) {
            fault.room_again();
        }
        if outcome.is_ok() && checkpoint {
            trim_wal(&conn, &fault);
        }
        for (job, reply) in jobs
            .into_iter()
            .zip(replies.into_iter().chain(std::iter::repeat_with(|| {
                Err(StoreError::Failed("not applied".into()))
            })))
        {
            if let Some(tx) = job.reply {
                let _ = tx.send(match &outcome {
                    Ok(()) => reply,
                    Err(e) => Err(StoreError::Failed(e.clone())),
                });
            }
        }
    }
}

pub(super) fn queued_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueuedRow> {
    Ok(QueuedRow {
        seq: r.get(0)?,
        task_id: r.get(1)?,
        priority: r.get(2)?,
        kernel: super::sql::kernel_of(r, 3)?,
        algorithm: r.get(4)?,
        body: r.get(5)?,
        attempts: r.get::<_, i64>(6)? as u32,
        next_attempt_at: r.get(7)?,
        created_at: r.get(8)?,
        source: r.get(9)?,
    })
}

pub(super) const QUEUED_COLUMNS: &str =
    "seq, task_id, priority, kernel, algorithm, body, attempts, next_attempt_at, created_at, source";

/// Applies one job's ops in order; `folds`: what [`fold::plan`] found for
/// this job (none on the path that replays a group job by job).
pub(super) fn apply_ops(
    db: &Connection,
    ops: &[Op],
    folds: fold::Folds<'_, '_>,
) -> rusqlite::Result<Vec<Reply>> {
    let mut replies = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let reply = match folds.of(i) {
            Some(folded) => fold::apply(db, folded).map(|()| Reply::Done)?,
            None => apply_op(db, op)?,
        };
        replies.push(reply);
        // a refused insert leaves the rest of the job undone
        if matches!(
            replies.last(),
            Some(Reply::Insert(
                InsertOutcome::Duplicates(_) | InsertOutcome::AlreadyIngested
            ))
        ) {
            break;
        }
    }
    Ok(replies)
}

fn apply_op(db: &Connection, op: &Op) -> rusqlite::Result<Reply> {
    match op {
        // done by the loop after the commit (not possible inside one)
        Op::Checkpoint => Ok(Reply::Done),
        Op::Now => Ok(Reply::Done),
        Op::Insert {
            tasks,
            ingest,
            source,
        } => insert(db, tasks, ingest.as_ref(), source).map(Reply::Insert),
        Op::Stage { batch, tasks } => staging::stage(db, batch, tasks).map(|()| Reply::Done),
        Op::CommitStaged {
            batch,
            tasks: _,
            ingest,
            source,
            kernels,
            window,
        } => staging::commit(
            db,
            Commit {
                batch,
                ingest: ingest.as_ref(),
                source,
                kernels,
                window: *window,
            },
        )
        .map(Reply::Staged),
        Op::Cancel { task_id } => cancel(db, task_id.as_str()).map(Reply::Cancel),
        Op::Retry { task_id } => retry(db, task_id.as_str()).map(Reply::Retry),
        Op::Page { kernel, after, limit } => page(db, *kernel, *after, *limit).map(Reply::Page),
        Op::Change(change) => apply_change(db, change).map(|()| Reply::Done),
        Op::ClaimFailures { file, limit } => history::claim(db, file, *limit).map(Reply::Failures),
        Op::PurgeWindow {
            before,
            after,
            limit,
            dry_run,
        } => purge::window(db, *before, *after, *limit, *dry_run).map(Reply::Purged),
        Op::PurgeIngests {
            sources,
            scanned,
            dry_run,
        } => purge::ingests(db, sources, *scanned, *dry_run).map(Reply::Count),
        // reached only inside a group by mistake: measured without a vacuum
        Op::Space { .. } => purge::space(db, false).map(Reply::Space),
    }
}

fn insert(
    db: &Connection,
    tasks: &[NewTask],
    ingest: Option<&Ingest>,
    source: &str,
) -> rusqlite::Result<InsertOutcome> {
    if let Some(ing) = ingest {
        if committed_unmoved(db, &ing.sha256, &ing.name)? {
            // committed before a crash, never moved: the same file
            return Ok(InsertOutcome::AlreadyIngested);
        }
    }
    let mut dups = Duplicates::default();
    {
        let mut exists = db.prepare_cached("SELECT status, results_file FROM tasks WHERE task_id = ?1")?;
        for t in tasks {
            if let Some((status, file)) = exists
                .query_row(params![t.task_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
            {
                dups.push(t.task_id.clone(), status, file);
            }
        }
    }
    if !dups.is_empty() {
        return Ok(InsertOutcome::Duplicates(dups));
    }
    let at = unix_now();
    // the file's record first: its tasks carry its id
    let ingest_id = match ingest {
        Some(ing) => {
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
            Some(db.last_insert_rowid())
        }
        None => None,
    };
    let mut seqs = Vec::with_capacity(tasks.len());
    {
        let mut insert = db.prepare_cached(
            "INSERT INTO tasks(task_id, priority, algorithm, kernel, status, body, source, created_at, ingest_id, reuse_key)
             VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?7, ?8, ?9)",
        )?;
        for t in tasks {
            insert.execute(params![
                t.task_id,
                t.priority,
                t.algorithm,
                t.kernel,
                t.body,
                source,
                at,
                ingest_id,
                t.reuse_key
            ])?;
            seqs.push(db.last_insert_rowid());
        }
    }
    if let Some(id) = ingest_id {
        super::files::file_queued(db, id, tasks.len())?;
    }
    // after the counts: a reused task moves from queued to completed
    let reused = super::reuse::answer_from_stored(db, seqs.first().map_or(i64::MAX, |s| s - 1))?;
    Ok(InsertOutcome::Inserted { seqs, reused })
}

fn cancel(db: &Connection, task_id: &str) -> rusqlite::Result<CancelOutcome> {
    let row: Option<(TaskStatus, Option<WorkerId>, Option<i64>)> = db
        .prepare_cached("SELECT status, worker_id, current_attempt FROM tasks WHERE task_id = ?1")?
        .query_row(params![task_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    Ok(match row {
        None => CancelOutcome::NotFound,
        Some((status, _, _)) if status.has_ended() => CancelOutcome::AlreadyEnded { status },
        Some((was, worker_id, attempt)) => {
            let at = unix_now();
            db.prepare_cached(
                "UPDATE tasks SET status = 'cancelled', finished_at = ?2, current_attempt = NULL,
                 written = 1, error = 'cancelled by request' WHERE task_id = ?1",
            )?
            .execute(params![task_id, at])?;
            // the attempt that was running ends here, in the same
            // transaction: its record must not stay open for ever (a task
            // sent ahead but not started has no attempt row: nothing closed)
            if let Some(attempt) = attempt {
                db.prepare_cached(
                    "UPDATE attempts SET ended_at = ?2, outcome = 'cancelled', error = 'cancelled by request'
                     WHERE attempt_id = ?1 AND ended_at IS NULL",
                )?
                .execute(params![attempt, at])?;
            }
            history::record_failure(db, task_id)?;
            CancelOutcome::Cancelled {
                was,
                worker_id: if was == TaskStatus::Running {
                    worker_id
                } else {
                    None
                },
            }
        }
    })
}

fn retry(db: &Connection, task_id: &str) -> rusqlite::Result<RetryOutcome> {
    let status: Option<TaskStatus> = db
        .prepare_cached("SELECT status FROM tasks WHERE task_id = ?1")?
        .query_row(params![task_id], |r| r.get(0))
        .optional()?;
    Ok(match status {
        None => RetryOutcome::NotFound,
        Some(s) if s.is_retryable() => {
            db.prepare_cached(
                "UPDATE tasks SET status = 'queued', attempts = 0, next_attempt_at = NULL, error = NULL,
                 finished_at = NULL, created_at = ?2 WHERE task_id = ?1",
            )?
            .execute(params![task_id, unix_now()])?;
            let row = db
                .prepare_cached(&format!("SELECT {QUEUED_COLUMNS} FROM tasks WHERE task_id = ?1"))?
                .query_row(params![task_id], queued_row)?;
            RetryOutcome::Queued { row }
        }
        Some(status) => RetryOutcome::NotRetryable { status },
    })
}

fn page(
    db: &Connection,
    kernel: KernelName,
    after: Option<(Priority, i64)>,
    limit: usize,
) -> rusqlite::Result<Vec<QueuedRow>> {
    match after {
        None => db
            .prepare_cached(&format!(
                "SELECT {QUEUED_COLUMNS} FROM tasks WHERE status = 'queued' AND kernel = ?1
                 ORDER BY priority, seq LIMIT ?2"
            ))?
            .query_map(params![kernel, limit as i64], queued_row)?
            .collect(),
        Some((p, s)) => db
            .prepare_cached(&format!(
                "SELECT {QUEUED_COLUMNS} FROM tasks WHERE status = 'queued' AND kernel = ?1
                 AND (priority > ?2 OR (priority = ?2 AND seq > ?3))
                 ORDER BY priority, seq LIMIT ?4"
            ))?
            .query_map(params![kernel, p, s, limit as i64], queued_row)?
            .collect(),
    }
}

fn apply_change(db: &Connection, change: &Change) -> rusqlite::Result<()> {
    match change {
        Change::AttemptStarted {
            task_id,
            attempt_id,
            worker_id,
            at,
        } => {
            db.prepare_cached(
                "UPDATE tasks SET status = 'running', attempts = attempts + 1, started_at = ?2, worker_id = ?3,
                 current_attempt = ?4, next_attempt_at = NULL, error = NULL
                 WHERE task_id = ?1 AND status IN ('queued', 'running')",
            )?
            .execute(params![task_id, at, worker_id, attempt_id])?;
            db.prepare_cached(
                "INSERT OR REPLACE INTO attempts(attempt_id, task_id, worker_id, started_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![attempt_id, task_id, worker_id, at])?;
        }
        Change::AttemptEnded {
            attempt_id,
            end,
            error,
            at,
        } => {
            db.prepare_cached(
                "UPDATE attempts SET ended_at = ?2, outcome = ?3, error = ?4 WHERE attempt_id = ?1",
            )?
            .execute(params![attempt_id, at, end, error])?;
        }
        Change::Ended {
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
            // a failed or cancelled end is recorded for task_failures_*.json,
            // as it stands now (its attempts are closed earlier in this job)
            if *status != TaskStatus::Completed {
                history::record_failure(db, task_id.as_str())?;
            }
        }
        Change::Requeue {
            task_id,
            attempts,
            next_at,
        } => {
            // `error` is the task's final word, set only when it ends: the
            // attempt that went wrong keeps its own error in `attempts`
            db.prepare_cached(
                "UPDATE tasks SET status = 'queued', attempts = ?2, next_attempt_at = ?3, error = NULL,
                 current_attempt = NULL
                 WHERE task_id = ?1 AND status IN ('queued', 'running')",
            )?
            .execute(params![task_id, *attempts as i64, next_at])?;
        }
        Change::AssignResultsFile { task_ids, file } => super::results_files::assign(db, task_ids, file)?,
        Change::MarkWritten { file } => super::results_files::written(db, file)?,
        Change::FailuresWritten { file } => history::mark_written(db, file)?,
        Change::IngestMoved {
            sha256,
            name,
            moved_to,
        } => {
            db.prepare_cached(
                "UPDATE ingests SET moved_to = ?3 WHERE sha256 = ?1 AND name = ?2 AND moved_to IS NULL",
            )?
            .execute(params![sha256, name, moved_to])?;
        }
        Change::MemberJoined {
            id,
            url,
            capacity,
            algorithms,
            instance,
            secret_sha256,
            at,
        } => {
            let algorithms = serde_json::to_string(algorithms).unwrap_or_else(|_| "[]".into());
            db.prepare_cached(
                "INSERT INTO members(id, url, capacity, algorithms, instance, joined_at, secret_sha256)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(id) DO UPDATE SET url = ?2, capacity = ?3, algorithms = ?4, instance = ?5,
                 secret_sha256 = ?7",
            )?
            .execute(params![
                id.as_str(),
                url,
                *capacity as i64,
                algorithms,
                instance,
                at,
                secret_sha256
            ])?;
        }
        Change::Unstage { batch } => staging::unstage(db, batch)?,
        Change::Check(change) => super::checks::apply(db, change)?,
        Change::AttemptResumes {
            task_id,
            attempt_id,
            step,
        } => {
            db.prepare_cached(
                "INSERT OR REPLACE INTO attempt_start_steps (attempt_id, task_id, step) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![attempt_id, task_id, *step as i64])?;
        }
        Change::FileRejected(rejected) => super::files::record_rejected(db, rejected)?,
        Change::Allocation(change) => super::allocations::apply(db, change)?,
        Change::MemberLeft { id } => {
            db.prepare_cached("DELETE FROM members WHERE id = ?1")?
                .execute(params![id.as_str()])?;
        }
    }
    Ok(())
}
