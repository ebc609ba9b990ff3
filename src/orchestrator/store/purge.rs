//! Purging old history (`orquesta purge --before DATE`, `POST
//! /admin/purge`, `HISTORY_RETENTION_DAYS`): ended tasks whose end is
//! before a date go, with their attempts (and the steps they resumed
//! from) and failure records, and so do
//! the `ingests` rows of files none of whose tasks are left.
//!
//! # What is never purged
//! A task that has not ended, and an ended task whose record is not yet on
//! disk: a completed task not yet marked written to a
//! `task_results_*.json`, a failed or cancelled one whose failure record
//! is not yet in a `task_failures_*.json`. So `results/` keeps the whole
//! truth of every task the database forgets. A file's `ingests` row still
//! waiting to be moved (a crash came between its commit and its move) is
//! kept too: it is what stops that file from being queued twice.
//!
//! # In windows, through the writer
//! The database has one writer ([`super::writer`]); a purge is a series of
//! jobs, each looking at [`WINDOW`] tasks in `seq` order, so a purge of a
//! million tasks never holds the writer for more than a few milliseconds at
//! a time: results and dispatches go on between two windows. A dry run
//! takes the same path and deletes nothing, so its count is what the purge
//! would remove (but for tasks that end or are written meanwhile).
//!
//! # Space
//! Deleted rows leave free pages inside the file, which new tasks reuse:
//! after a purge the database stops growing. The file itself shrinks only
//! with `vacuum` (SQLite's `VACUUM`: the file is rebuilt, which needs free
//! disk space about its size and holds the writer while it runs).

use std::collections::BTreeSet;

use rusqlite::{params, Connection};
use serde::Serialize;

use super::writer::{Op, Reply};
use super::{unexpected, Store, StoreError};
use crate::model::TaskStatus;
use crate::util::time::iso_at;

/// Tasks looked at per job.
pub const WINDOW: usize = 2_000;

/// What one window found (and, unless a dry run, removed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub attempts: u64,
    pub failure_records: u64,
    /// Ended before the date but not yet on disk: kept.
    pub kept_unwritten: u64,
    /// The source files of the tasks removed (would be, in a dry run).
    pub sources: BTreeSet<String>,
    /// The source files of the tasks looked at and kept.
    pub kept_sources: BTreeSet<String>,
    /// The last `seq` looked at.
    pub last: i64,
    /// Whether there may be more after `last`.
    pub more: bool,
}

/// The size of the database file and the free room inside it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Space {
    pub file_bytes: u64,
    /// Pages freed by deletions, reused by new rows before the file grows.
    pub free_bytes: u64,
}

/// What a purge did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct PurgeReport {
    pub dry_run: bool,
    /// Tasks ended before this instant were looked at (ISO 8601).
    pub before: String,
    /// Tasks removed (would be removed, in a dry run).
    pub tasks: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub attempts: u64,
    pub failure_records: u64,
    /// `ingests` rows of files none of whose tasks are left.
    pub files: u64,
    /// Tasks that ended before the date but whose record is not yet in a
    /// results or failures file: kept, purged by a later run.
    pub kept_unwritten: u64,
    /// The database after the purge; `vacuumed`: whether it was rebuilt.
    pub space: Space,
    pub vacuumed: bool,
}

impl PurgeReport {
    fn add(&mut self, w: &Window) {
        self.completed += w.completed;
        self.failed += w.failed;
        self.cancelled += w.cancelled;
        self.tasks += w.completed + w.failed + w.cancelled;
        self.attempts += w.attempts;
        self.failure_records += w.failure_records;
        self.kept_unwritten += w.kept_unwritten;
    }
}

/// Looks at up to `limit` tasks after `seq` `after`; removes (unless
/// `dry_run`) those that ended before `before` and are on disk.
pub(super) fn window(
    db: &Connection,
    before: f64,
    after: i64,
    limit: usize,
    dry_run: bool,
) -> rusqlite::Result<Window> {
    type Row = (i64, String, TaskStatus, String, Option<f64>, bool, bool);
    let rows: Vec<Row> = db
        .prepare_cached(
            "SELECT seq, task_id, status, source, finished_at,
                    written AND NOT EXISTS(SELECT 1 FROM pending_results_files p WHERE p.file = t.results_file),
                    EXISTS(SELECT 1 FROM failure_records f WHERE f.task_id = t.task_id AND f.written = 0)
             FROM tasks t WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?
        .query_map(params![after, limit as i64], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut w = Window {
        last: rows.last().map_or(after, |r| r.0),
        more: rows.len() == limit,
        ..Window::default()
    };
    for (seq, task_id, status, source, finished_at, written, failure_pending) in rows {
        if !status.has_ended() || finished_at.is_none_or(|t| t >= before) {
            w.kept_sources.insert(source);
            continue;
        }
        if !written || failure_pending {
            w.kept_unwritten += 1;
            w.kept_sources.insert(source);
            continue;
        }
        match status {
            TaskStatus::Completed => w.completed += 1,
            TaskStatus::Failed => w.failed += 1,
            _ => w.cancelled += 1,
        }
        w.sources.insert(source);
        if dry_run {
            w.attempts += db
                .prepare_cached("SELECT COUNT(*) FROM attempts WHERE task_id = ?1")?
                .query_row(params![task_id], |r| r.get::<_, i64>(0))? as u64;
            w.failure_records += db
                .prepare_cached("SELECT COUNT(*) FROM failure_records WHERE task_id = ?1")?
                .query_row(params![task_id], |r| r.get::<_, i64>(0))? as u64;
        } else {
            w.attempts += db
                .prepare_cached("DELETE FROM attempts WHERE task_id = ?1")?
                .execute(params![task_id])? as u64;
            // the step each attempt resumed from goes with its attempts,
            // and a verification still waiting with its task
            db.prepare_cached("DELETE FROM attempt_start_steps WHERE task_id = ?1")?
                .execute(params![task_id])?;
            db.prepare_cached("DELETE FROM verify_checks WHERE task_id = ?1")?
                .execute(params![task_id])?;
            w.failure_records += db
                .prepare_cached("DELETE FROM failure_records WHERE task_id = ?1")?
                .execute(params![task_id])? as u64;
            // the count triggers keep `task_counts` right in this transaction
            db.prepare_cached("DELETE FROM tasks WHERE seq = ?1")?
                .execute(params![seq])?;
        }
    }
    Ok(w)
}

/// The `ingests` rows of these files (ingested and moved ones: one still waiting to be
/// moved guards against a second queueing); removed unless `dry_run`. The caller gives the files the
/// windows found no task kept of, up to `seq` `scanned`; a task of one of
/// them queued since (a file of the same name) keeps its row.
pub(super) fn ingests(
    db: &Connection,
    sources: &BTreeSet<String>,
    scanned: i64,
    dry_run: bool,
) -> rusqlite::Result<u64> {
    let mut n = 0;
    for source in sources {
        n += if dry_run {
            db.prepare_cached(
                "SELECT COUNT(*) FROM ingests WHERE name = ?1 AND moved_to IS NOT NULL AND state = 'ingested'",
            )?
                .query_row(params![source], |r| r.get::<_, i64>(0))? as u64
        } else {
            // `seq > ?3`: a range of the primary key, not a scan of every task
            db.prepare_cached(
                "DELETE FROM ingests WHERE name = ?1 AND moved_to IS NOT NULL AND state = 'ingested'
                 AND NOT EXISTS (SELECT 1 FROM tasks WHERE seq > ?2 AND source = ?1)",
            )?
            .execute(params![source, scanned])? as u64
        };
    }
    if !dry_run && n > 0 {
        // the kept counts of forgotten files go with them: ids are reused
        // (no AUTOINCREMENT), and a later file must not inherit them
        db.prepare_cached("DELETE FROM file_counts WHERE ingest_id NOT IN (SELECT id FROM ingests)")?
            .execute([])?;
    }
    Ok(n)
}

/// The file's size and free room; with `vacuum`, rebuilt first. Outside
/// any transaction (`VACUUM` cannot run inside one).
pub(super) fn space(db: &Connection, vacuum: bool) -> rusqlite::Result<Space> {
    if vacuum {
        db.execute_batch("VACUUM")?;
        // in WAL mode the rebuilt pages sit in the log: the file itself
        // shrinks when they are copied back
        db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    }
    let pragma = |name: &str| db.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0));
    let page = pragma("page_size")? as u64;
    Ok(Space {
        file_bytes: pragma("page_count")? as u64 * page,
        free_bytes: pragma("freelist_count")? as u64 * page,
    })
}

impl Store {
    fn purge_window(
        &self,
        before: f64,
        after: i64,
        dry_run: bool,
    ) -> impl std::future::Future<Output = Result<Window, StoreError>> + 'static {
        let reply = self.ask(Op::PurgeWindow {
            before,
            after,
            limit: WINDOW,
            dry_run,
        });
        async move {
            match reply.await? {
                Reply::Purged(w) => Ok(w),
                other => Err(unexpected(other)),
            }
        }
    }

    fn ask_count(&self, op: Op) -> impl std::future::Future<Output = Result<u64, StoreError>> + 'static {
        let reply = self.ask(op);
        async move {
            match reply.await? {
                Reply::Count(n) => Ok(n),
                other => Err(unexpected(other)),
            }
        }
    }

    fn space(&self, vacuum: bool) -> impl std::future::Future<Output = Result<Space, StoreError>> + 'static {
        let reply = self.ask(Op::Space { vacuum });
        async move {
            match reply.await? {
                Reply::Space(s) => Ok(s),
                other => Err(unexpected(other)),
            }
        }
    }

    /// Removes (or, `dry_run`, counts) the ended tasks whose end is before
    /// `before` (seconds since the epoch) and whose records are on disk,
    /// window by window; with `vacuum`, rebuilds the file after.
    pub async fn purge(&self, before: f64, dry_run: bool, vacuum: bool) -> Result<PurgeReport, StoreError> {
        let mut report = PurgeReport {
            dry_run,
            before: iso_at(before),
            ..PurgeReport::default()
        };
        let (mut sources, mut kept) = (BTreeSet::new(), BTreeSet::new());
        let mut after = 0;
        loop {
            let w = self.purge_window(before, after, dry_run).await?;
            report.add(&w);
            sources.extend(w.sources);
            kept.extend(w.kept_sources);
            after = w.last;
            if !w.more {
                break;
            }
        }
        // the files every task of which went: the windows saw them all
        let gone: BTreeSet<String> = sources.difference(&kept).cloned().collect();
        report.files = self
            .ask_count(Op::PurgeIngests {
                sources: gone,
                scanned: after,
                dry_run,
            })
            .await?;
        report.vacuumed = vacuum && !dry_run;
        report.space = self.space(report.vacuumed).await?;
        Ok(report)
    }
}

#[cfg(test)]
#[path = "purge_tests.rs"]
mod tests;
