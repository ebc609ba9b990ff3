//! Which results file holds a completed task's result, written once per
//! task. The file is named in the database before it is written: one
//! commit sets each task's `results_file` and marks it written, and puts
//! the file in `pending_results_files`; once the file has its name on
//! disk (temp file + rename), its pending row goes (one row per file, not
//! one `UPDATE` per task). So a task's row is rewritten once for its
//! results file instead of twice.
//!
//! After a crash, [`settle`] looks at each file still pending: on disk,
//! the rename happened and its tasks are written; missing, its tasks are
//! unwritten again (their file named, as before a crash between the
//! naming and the rename) and the restart writes them to a new file.
//! Until then a task of a pending file counts as unwritten for a purge
//! and a file list.

use std::path::Path;

use rusqlite::{params, Connection};

use super::StoreError;
use crate::model::TaskId;

/// Names `file` for the results of `task_ids`, written once it is on disk.
pub(super) fn assign(db: &Connection, task_ids: &[TaskId], file: &str) -> rusqlite::Result<()> {
    db.prepare_cached("INSERT OR IGNORE INTO pending_results_files(file) VALUES (?1)")?
        .execute(params![file])?;
    let mut stmt = db.prepare_cached("UPDATE tasks SET results_file = ?2, written = 1 WHERE task_id = ?1")?;
    for id in task_ids {
        stmt.execute(params![id, file])?;
    }
    Ok(())
}

/// `file` is on disk: no longer pending. A task of it still marked
/// unwritten (a corrected result rewritten into it, a database from a
/// build that marked each task after the write) is marked written.
pub(super) fn written(db: &Connection, file: &str) -> rusqlite::Result<()> {
    db.prepare_cached("DELETE FROM pending_results_files WHERE file = ?1")?
        .execute(params![file])?;
    db.prepare_cached("UPDATE tasks SET written = 1 WHERE results_file = ?1 AND written = 0")?
        .execute(params![file])?;
    Ok(())
}

/// At start-up, before the results not yet in a file are read: each file
/// still pending is written (on disk) or not (its tasks unwritten again,
/// with their file named, which is not on disk: written again).
pub(super) fn settle(conn: &Connection) -> Result<(), StoreError> {
    let files: Vec<String> = conn
        .prepare("SELECT file FROM pending_results_files")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for f in files {
        if !Path::new(&f).exists() {
            conn.execute(
                "UPDATE tasks SET written = 0 WHERE results_file = ?1 AND status = 'completed'",
                params![f],
            )?;
        }
        conn.execute("DELETE FROM pending_results_files WHERE file = ?1", params![f])?;
    }
    Ok(())
}
