//! Replication's waiting checks (`task_queue/verify.rs`), kept in the
//! `verify_checks` table so that a restart does not forget them: one row
//! per completed task sampled and not yet decided, with the answers so
//! far (worker and physics digest, the recorded one first) and the tries
//! its runs used. Written by the writer with the core's other changes
//! ([`Change::Check`]); read once at start-up ([`super::recover`]), when
//! the core is rebuilt. At most `MAX_CHECKS` rows: the core deletes what
//! it stops waiting for, and a purge takes a task's row with it.

use rusqlite::{params, Connection};

use super::writer::{queued_row, QUEUED_COLUMNS};
use super::QueuedRow;
use crate::model::{TaskId, WorkerId};

/// A change to one waiting check.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckChange {
    /// Sampled, or its answers or tries changed: it waits.
    Waiting {
        task_id: TaskId,
        votes: Vec<(WorkerId, u64)>,
        tries: u32,
    },
    /// Decided or given up: no longer waits.
    Done { task_id: TaskId },
}

/// A check that was waiting when the orchestrator stopped, with its
/// task's row (the entry the core rebuilds).
#[derive(Debug, Clone)]
pub struct StoredCheck {
    pub row: QueuedRow,
    pub votes: Vec<(WorkerId, u64)>,
    pub tries: u32,
}

pub(super) fn apply(db: &Connection, change: &CheckChange) -> rusqlite::Result<()> {
    match change {
        CheckChange::Waiting {
            task_id,
            votes,
            tries,
        } => {
            let votes: Vec<(&str, u64)> = votes.iter().map(|(w, d)| (w.as_str(), *d)).collect();
            let votes = serde_json::to_string(&votes).unwrap_or_else(|_| "[]".into());
            db.prepare_cached(
                "INSERT INTO verify_checks (task_id, votes, tries) VALUES (?1, ?2, ?3)
                 ON CONFLICT(task_id) DO UPDATE SET votes = ?2, tries = ?3",
            )?
            .execute(params![task_id.as_str(), votes, *tries as i64])?;
        }
        CheckChange::Done { task_id } => {
            db.prepare_cached("DELETE FROM verify_checks WHERE task_id = ?1")?
                .execute(params![task_id.as_str()])?;
        }
    }
    Ok(())
}

/// The checks that were waiting, of tasks still completed, in the order
/// their tasks arrived; at most `limit`.
pub(super) fn load(db: &Connection, limit: usize) -> rusqlite::Result<Vec<StoredCheck>> {
    let columns: Vec<String> = QUEUED_COLUMNS.split(", ").map(|c| format!("t.{c}")).collect();
    let mut stmt = db.prepare(&format!(
        "SELECT {}, c.votes, c.tries FROM verify_checks c JOIN tasks t ON t.task_id = c.task_id
         WHERE t.status = 'completed' ORDER BY t.seq LIMIT ?1",
        columns.join(", ")
    ))?;
    let n = columns.len();
    let checks = stmt
        .query_map(params![limit as i64], |r| {
            let votes: String = r.get(n)?;
            let votes: Vec<(String, u64)> = serde_json::from_str(&votes).unwrap_or_default();
            Ok(StoredCheck {
                row: queued_row(r)?,
                votes: votes.into_iter().map(|(w, d)| (WorkerId::new(&w), d)).collect(),
                tries: r.get::<_, i64>(n + 1)?.max(0) as u32,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    // a row whose answers cannot be read is no check
    Ok(checks.into_iter().filter(|c| !c.votes.is_empty()).collect())
}
