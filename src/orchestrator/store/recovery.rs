//! What a restarted orchestrator finds in its database: the attempts that
//! were running, the results not yet in a results file, the kernels with
//! queued tasks, the verifications still waiting. Read once, before the writer thread starts (which is
//! also when failure records named for a file are settled:
//! [`super::history::settle_failure_files`]).

use rusqlite::Connection;

use super::writer::{queued_row, QUEUED_COLUMNS};
use super::{QueuedRow, StoreError, StoredCheck};
use crate::model::{AttemptId, KernelName, TaskId, TaskStatus, WorkerId};

/// A task that was running when the orchestrator stopped.
#[derive(Debug, Clone)]
pub struct WasRunning {
    pub row: QueuedRow,
    pub attempt_id: Option<AttemptId>,
    pub worker_id: Option<WorkerId>,
}

/// A completed result not yet marked written to a results file.
#[derive(Debug, Clone)]
pub struct Unwritten {
    pub task_id: TaskId,
    /// The result's JSON.
    pub result: String,
    /// The file assigned before the crash, if any.
    pub file: Option<String>,
}

/// What a restarted orchestrator finds in its database.
#[derive(Debug, Default)]
pub struct Recovery {
    pub running: Vec<WasRunning>,
    pub unwritten: Vec<Unwritten>,
    /// Kernels that have queued tasks.
    pub queued_kernels: Vec<KernelName>,
    pub counts: Vec<(TaskStatus, i64)>,
    /// Workers that joined and had not left.
    pub members: Vec<StoredMember>,
    /// Failure records not yet in a `task_failures_*.json` (ResultsStore
    /// writes them at its first tick).
    pub failures_pending: u64,
    /// Replication's checks that were waiting (`checks.rs`).
    pub checks: Vec<StoredCheck>,
}

/// A joined worker as the `members` table keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMember {
    pub id: String,
    /// `http://HOST:PORT`
    pub url: String,
    pub capacity: usize,
    pub algorithms: Vec<String>,
    pub instance: String,
    pub joined_at: f64,
    /// The SHA-256 of the secret it was given (empty: none yet).
    pub secret_sha256: String,
}

/// Reads what a restart must reconcile (on the writer's connection,
/// before the writer thread starts).
pub fn recover(conn: &Connection) -> Result<Recovery, StoreError> {
    let mut rec = Recovery {
        failures_pending: super::history::settle_failure_files(conn)?,
        ..Recovery::default()
    };
    let mut stmt = conn.prepare(&format!(
        "SELECT {QUEUED_COLUMNS}, current_attempt, worker_id FROM tasks WHERE status = 'running'"
    ))?;
    rec.running = stmt
        .query_map([], |r| {
            Ok(WasRunning {
                row: queued_row(r)?,
                attempt_id: r.get(10)?,
                worker_id: r.get(11)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    super::results_files::settle(conn)?;
    let mut stmt = conn.prepare(
        "SELECT task_id, result, results_file FROM tasks WHERE written = 0 AND status = 'completed' ORDER BY seq",
    )?;
    rec.unwritten = stmt
        .query_map([], |r| {
            Ok(Unwritten {
                task_id: r.get(0)?,
                result: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                file: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt = conn.prepare("SELECT DISTINCT kernel FROM tasks WHERE status = 'queued'")?;
    // a kernel this build does not know is left out: its tasks stay queued
    rec.queued_kernels = stmt
        .query_map([], |r| super::sql::kernel_of(r, 0))?
        .filter_map(|k| k.transpose())
        .collect::<rusqlite::Result<Vec<_>>>()?;
    // kept by triggers, rebuilt when the database was opened: no scan
    let mut stmt =
        conn.prepare("SELECT status, SUM(n) FROM task_counts GROUP BY status HAVING SUM(n) > 0")?;
    rec.counts = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt = conn.prepare(
        "SELECT id, url, capacity, algorithms, instance, joined_at, secret_sha256 FROM members ORDER BY joined_at",
    )?;
    rec.members = stmt
        .query_map([], |r| {
            let algorithms: String = r.get(3)?;
            Ok(StoredMember {
                id: r.get(0)?,
                url: r.get(1)?,
                capacity: r.get::<_, i64>(2)?.max(1) as usize,
                algorithms: serde_json::from_str(&algorithms).unwrap_or_default(),
                instance: r.get(4)?,
                joined_at: r.get(5)?,
                secret_sha256: r.get(6)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rec.checks = super::checks::load(conn, crate::orchestrator::task_queue::MAX_CHECKS)?;
    Ok(rec)
}
