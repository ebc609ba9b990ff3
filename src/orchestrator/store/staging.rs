//! A dropped file's tasks written in bounded chunks beside the queue
//! (`ingest_staging`), then moved into `tasks` by one statement in one
//! job: the file is queued whole or not at all, and its tasks are never
//! all in memory at once.
//!
//! # Why a staging table
//! A file of a million tasks is read and validated chunk by chunk; each
//! chunk is written as soon as it is checked, so memory holds one chunk,
//! not the file's tasks. The chunks cannot go into `tasks` directly: a
//! bad task near the end refuses the whole file, and a crash halfway
//! would leave half a file queued with the file still in the drop folder
//! (read again, it would then be refused as duplicates). Keeping one
//! transaction open across chunks would hold back every other commit of
//! the writer (results, cancels) for the length of the read. So chunks go
//! to `ingest_staging`, which nothing reads but this module; the file is
//! queued by one `INSERT … SELECT` in one job ([`commit`]), which is
//! durable before the file is moved, exactly as a small file. A file
//! refused after some chunks were staged has them deleted ([`unstage`]);
//! a crash leaves staged rows that [`super::open`] deletes at start
//! (the file is still in the drop folder, and is read again).

use rusqlite::{params, Connection, ErrorCode};

use super::writer::{queued_row, QUEUED_COLUMNS};
use super::{Duplicates, Ingest, NewTask, QueuedRow};
use crate::model::{KernelName, Priority};
use crate::util::time::unix_now;

/// What became of a staged file given to [`super::Store::commit_staged`].
#[derive(Debug, Clone, PartialEq)]
pub enum StagedOutcome {
    /// Every staged task is queued.
    Queued {
        count: usize,
        /// The first queued tasks of the file, per kernel in queue order,
        /// at most the window asked for per kernel: what TaskQueue loads.
        first: Vec<QueuedRow>,
        /// Kernels with more of the file's tasks than `first` holds.
        more: Vec<KernelName>,
        /// The records of the file's tasks answered at once from an equal
        /// completed task's stored result (`super::reuse`): completed, not
        /// queued, for `results/`.
        reused: Vec<crate::model::TaskResult>,
    },
    /// Nothing queued: these ids exist already.
    Duplicates(Duplicates),
    /// The same file was ingested before a crash and never moved.
    AlreadyIngested,
}

/// Writes one chunk of a file's tasks, in file order.
pub(super) fn stage(db: &Connection, batch: &str, tasks: &[NewTask]) -> rusqlite::Result<()> {
    let mut insert = db.prepare_cached(
        "INSERT INTO ingest_staging(batch, task_id, priority, algorithm, kernel, body, reuse_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for t in tasks {
        insert.execute(params![
            batch,
            t.task_id,
            t.priority,
            t.algorithm,
            t.kernel,
            t.body,
            t.reuse_key
        ])?;
    }
    Ok(())
}

/// Forgets a file's staged chunks.
pub(super) fn unstage(db: &Connection, batch: &str) -> rusqlite::Result<()> {
    db.prepare_cached("DELETE FROM ingest_staging WHERE batch = ?1")?
        .execute(params![batch])?;
    Ok(())
}

/// What to move into the queue, and what to answer with.
pub(super) struct Commit<'a> {
    pub batch: &'a str,
    pub ingest: Option<&'a Ingest>,
    pub source: &'a str,
    /// Kernels the file's tasks run on (known from reading it).
    pub kernels: &'a [KernelName],
    /// How many queued rows per kernel to answer with.
    pub window: usize,
}

/// Moves a staged file into the queue, all or nothing, and forgets its
/// staged rows whatever the outcome.
pub(super) fn commit(db: &Connection, c: Commit<'_>) -> rusqlite::Result<StagedOutcome> {
    if let Some(ing) = c.ingest {
        if super::writer::committed_unmoved(db, &ing.sha256, &ing.name)? {
            // committed before a crash, never moved: the same file
            unstage(db, c.batch)?;
            return Ok(StagedOutcome::AlreadyIngested);
        }
    }
    // rowids grow: every row of this file sorts after this one
    let before: i64 = db.query_row("SELECT COALESCE(MAX(seq), 0) FROM tasks", [], |r| r.get(0))?;
    let at = unix_now();
    db.execute_batch("SAVEPOINT staged")?;
    // the file's record first: its tasks carry its id (counted under it
    // once they are in, see `files`); undone with them if refused
    let ingest_id = match c.ingest {
        Some(ing) => {
            db.prepare_cached(
                "INSERT INTO ingests(name, size, sha256, tasks, ingested_at) VALUES (?1, ?2, ?3, 0, ?4)",
            )?
            .execute(params![ing.name, ing.size as i64, ing.sha256, at])?;
            Some(db.last_insert_rowid())
        }
        None => None,
    };
    let moved = db
        .prepare_cached(
            "INSERT INTO tasks(task_id, priority, algorithm, kernel, status, body, source, created_at, ingest_id, reuse_key)
             SELECT task_id, priority, algorithm, kernel, 'queued', body, ?2, ?3, ?4, reuse_key
             FROM ingest_staging WHERE batch = ?1 ORDER BY ord",
        )?
        .execute(params![c.batch, c.source, at, ingest_id]);
    let count = match moved {
        Ok(n) => {
            if let Some(id) = ingest_id {
                db.prepare_cached("UPDATE ingests SET tasks = ?2 WHERE id = ?1")?
                    .execute(params![id, n as i64])?;
                super::files::file_queued(db, id, n)?;
            }
            db.execute_batch("RELEASE staged")?;
            n
        }
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
            // the unique task_id: name every id that exists, with where it
            // stands (the file's own duplicates were refused before
            // anything was staged)
            db.execute_batch("ROLLBACK TO staged; RELEASE staged")?;
            let mut dups = Duplicates::default();
            let mut known = db.prepare_cached(
                "SELECT s.task_id, t.status, t.results_file FROM ingest_staging s
                 JOIN tasks t ON t.task_id = s.task_id WHERE s.batch = ?1 ORDER BY s.ord",
            )?;
            let mut rows = known.query(params![c.batch])?;
            while let Some(r) = rows.next()? {
                dups.push(r.get(0)?, r.get(1)?, r.get(2)?);
            }
            drop(rows);
            if dups.is_empty() {
                return Err(e);
            }
            unstage(db, c.batch)?;
            return Ok(StagedOutcome::Duplicates(dups));
        }
        Err(e) => {
            db.execute_batch("ROLLBACK TO staged; RELEASE staged")?;
            return Err(e);
        }
    };
    unstage(db, c.batch)?;
    // before the first rows are read: a reused task is not queued
    let reused = super::reuse::answer_from_stored(db, before)?;
    let (first, more) = first_rows(db, before, c.kernels, c.window)?;
    Ok(StagedOutcome::Queued {
        count,
        first,
        more,
        reused,
    })
}

/// Up to `window` queued rows per kernel with `seq > after`, in queue
/// order (priority, then seq): three index range reads per kernel.
fn first_rows(
    db: &Connection,
    after: i64,
    kernels: &[KernelName],
    window: usize,
) -> rusqlite::Result<(Vec<QueuedRow>, Vec<KernelName>)> {
    let mut page = db.prepare_cached(&format!(
        "SELECT {QUEUED_COLUMNS} FROM tasks WHERE status = 'queued' AND kernel = ?1 AND priority = ?2
         AND seq > ?3 ORDER BY seq LIMIT ?4"
    ))?;
    let (mut first, mut more) = (Vec::new(), Vec::new());
    for kernel in kernels {
        let mut rows: Vec<QueuedRow> = Vec::new();
        for priority in Priority::ALL {
            let left = window + 1 - rows.len();
            if left == 0 {
                break;
            }
            let part = page
                .query_map(params![kernel, priority, after, left as i64], queued_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.extend(part);
        }
        if rows.len() > window {
            rows.truncate(window);
            more.push(*kernel);
        }
        first.extend(rows);
    }
    Ok((first, more))
}
