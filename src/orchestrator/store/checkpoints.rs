//! The latest checkpoint of each running task (issue 19): kept durably in
//! the database's `checkpoints` table, keyed by task id, through a
//! connection of its own (a checkpoint is a blob of up to megabytes, and
//! the writer thread's group commits stay small without it). An index in
//! memory answers `GET /tasks/{id}` and the dispatch ("is there one to
//! resume?") without a read. A checkpoint is taken only from the worker
//! its task's live attempt runs on, is bounded per task and in total, and
//! is removed once its task is neither queued nor running ([`Checkpoints::sweep`]).
//!
//! The step an attempt resumes from (`attempt_start_steps`) is a small
//! row written with the task's other changes, by the store's writer
//! ([`Change::AttemptResumes`]): the proxy that dispatches never waits on
//! the database's lock.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use dashmap::DashMap;
use rusqlite::{params, Connection, OptionalExtension};

use super::{Change, Store};
use crate::model::{AttemptId, TaskId, WorkerId};
use crate::protocol::checkpoints::CheckpointInfo;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS checkpoints (
    task_id TEXT PRIMARY KEY,
    attempt_id INTEGER NOT NULL,
    worker_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    saved_at REAL NOT NULL,
    bytes BLOB NOT NULL
);
";

/// Why an upload is not stored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoints are off on this orchestrator (CHECKPOINT_INTERVAL = 0)")]
    Off,
    #[error("attempt {attempt_id} of task {task_id} is not running on worker {worker_id}; only the worker running a task's live attempt may send its checkpoint")]
    NotLive {
        task_id: TaskId,
        attempt_id: AttemptId,
        worker_id: WorkerId,
    },
    #[error("a checkpoint of {bytes} bytes is more than CHECKPOINT_MAX_BYTES = {limit}")]
    TooLarge { bytes: u64, limit: u64 },
    #[error(
        "checkpoints held would reach {total} bytes, more than CHECKPOINT_TOTAL_BYTES = {limit}; retry later"
    )]
    Full { total: u64, limit: u64 },
    #[error("checkpoint store: {0}")]
    Sql(String),
}

impl From<rusqlite::Error> for CheckpointError {
    fn from(e: rusqlite::Error) -> Self {
        CheckpointError::Sql(e.to_string())
    }
}

/// What an index entry knows of a stored checkpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Held {
    step: u64,
    saved_at: f64,
    bytes: u64,
}

/// The checkpoints table and its index.
pub struct Checkpoints {
    conn: Mutex<Connection>,
    index: DashMap<TaskId, Held>,
    /// The writer, for the start steps of resumed attempts.
    store: Store,
    /// `CHECKPOINT_INTERVAL` > 0.
    enabled: bool,
    max_task_bytes: u64,
    max_total_bytes: u64,
}

impl Checkpoints {
    /// Opens the table in the database at `path` (already opened by the
    /// store, so it exists) and reads its index; `store` writes the start
    /// steps.
    pub fn open(
        path: &Path,
        store: Store,
        enabled: bool,
        max_task_bytes: u64,
        max_total_bytes: u64,
    ) -> Result<Self, CheckpointError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "busy_timeout", 10_000)?;
        conn.execute_batch(SCHEMA)?;
        let index = DashMap::new();
        {
            let mut rows = conn.prepare("SELECT task_id, step, saved_at, length(bytes) FROM checkpoints")?;
            let found = rows.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Held {
                        step: r.get::<_, i64>(1)? as u64,
                        saved_at: r.get(2)?,
                        bytes: r.get::<_, i64>(3)? as u64,
                    },
                ))
            })?;
            for row in found {
                let (id, held) = row?;
                if let Ok(id) = TaskId::parse(&id) {
                    index.insert(id, held);
                }
            }
        }
        Ok(Self {
            conn: Mutex::new(conn),
            index,
            store,
            enabled,
            max_task_bytes,
            max_total_bytes,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `bytes` as the checkpoint of `task_id` after `step`, if
    /// `attempt_id` is the task's live attempt on `worker_id` and the
    /// limits allow; an older step than the one held is ignored.
    pub fn save(
        &self,
        task_id: &TaskId,
        attempt_id: AttemptId,
        worker_id: &WorkerId,
        step: u64,
        bytes: &[u8],
    ) -> Result<(), CheckpointError> {
        if !self.enabled {
            return Err(CheckpointError::Off);
        }
        let size = bytes.len() as u64;
        if size > self.max_task_bytes {
            return Err(CheckpointError::TooLarge {
                bytes: size,
                limit: self.max_task_bytes,
            });
        }
        let others: u64 = self
            .index
            .iter()
            .filter(|e| e.key() != task_id)
            .map(|e| e.value().bytes)
            .sum();
        if others + size > self.max_total_bytes {
            return Err(CheckpointError::Full {
                total: others + size,
                limit: self.max_total_bytes,
            });
        }
        let conn = self.conn();
        let live: Option<i64> = conn
            .query_row(
                "SELECT 1 FROM tasks t JOIN attempts a ON a.attempt_id = t.current_attempt
                 WHERE t.task_id = ?1 AND t.status = 'running' AND a.attempt_id = ?2
                   AND a.worker_id = ?3 AND a.ended_at IS NULL",
                params![task_id.as_str(), attempt_id.get() as i64, worker_id.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        if live.is_none() {
            return Err(CheckpointError::NotLive {
                task_id: task_id.clone(),
                attempt_id,
                worker_id: worker_id.clone(),
            });
        }
        if self.index.get(task_id).is_some_and(|h| h.step > step) {
            return Ok(());
        }
        let saved_at = crate::util::time::unix_now();
        conn.execute(
            "INSERT INTO checkpoints (task_id, attempt_id, worker_id, step, saved_at, bytes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(task_id) DO UPDATE SET attempt_id = ?2, worker_id = ?3, step = ?4,
                 saved_at = ?5, bytes = ?6",
            params![
                task_id.as_str(),
                attempt_id.get() as i64,
                worker_id.as_str(),
                step as i64,
                saved_at,
                bytes
            ],
        )?;
        self.index.insert(
            task_id.clone(),
            Held {
                step,
                saved_at,
                bytes: size,
            },
        );
        Ok(())
    }

    /// The checkpoint held for `task_id`: its step and bytes.
    pub fn get(&self, task_id: &TaskId) -> Result<Option<(u64, Vec<u8>)>, CheckpointError> {
        if !self.index.contains_key(task_id) {
            return Ok(None);
        }
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT step, bytes FROM checkpoints WHERE task_id = ?1",
                [task_id.as_str()],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
            )
            .optional()?)
    }

    /// What `GET /tasks/{id}` shows of the checkpoint held.
    pub fn info(&self, task_id: &TaskId) -> Option<CheckpointInfo> {
        self.index.get(task_id).map(|h| CheckpointInfo {
            step: h.step,
            saved_at: crate::util::time::iso_at(h.saved_at),
            bytes: h.bytes,
        })
    }

    /// At dispatch: the step of the checkpoint `attempt_id` resumes from,
    /// if one is held, recorded as the attempt's start step by the
    /// store's writer (queued, never waited for: the caller is an actor).
    pub fn resume_step(&self, task_id: &TaskId, attempt_id: AttemptId) -> Option<u64> {
        if !self.enabled {
            return None;
        }
        let step = self.index.get(task_id)?.step;
        self.store.persist(vec![Change::AttemptResumes {
            task_id: task_id.clone(),
            attempt_id,
            step,
        }]);
        Some(step)
    }

    /// The step each attempt of `task_id` started from, when not 0.
    pub fn start_steps(&self, task_id: &TaskId) -> Result<HashMap<AttemptId, u64>, CheckpointError> {
        let conn = self.conn();
        let mut rows =
            conn.prepare_cached("SELECT attempt_id, step FROM attempt_start_steps WHERE task_id = ?1")?;
        let found = rows.query_map([task_id.as_str()], |r| {
            Ok((
                AttemptId::new(r.get::<_, i64>(0)? as u64),
                r.get::<_, i64>(1)? as u64,
            ))
        })?;
        Ok(found.collect::<Result<_, _>>()?)
    }

    /// Removes the checkpoints of tasks that are no longer queued or
    /// running (ended, or purged); answers how many went.
    pub fn sweep(&self) -> Result<usize, CheckpointError> {
        if self.index.is_empty() {
            return Ok(0);
        }
        let conn = self.conn();
        let mut gone = Vec::new();
        {
            let mut rows = conn.prepare_cached(
                "SELECT c.task_id FROM checkpoints c LEFT JOIN tasks t ON t.task_id = c.task_id
                 WHERE t.status IS NULL OR t.status NOT IN ('queued', 'running')",
            )?;
            for id in rows.query_map([], |r| r.get::<_, String>(0))? {
                gone.push(id?);
            }
        }
        for id in &gone {
            conn.execute("DELETE FROM checkpoints WHERE task_id = ?1", [id])?;
            if let Ok(id) = TaskId::parse(id) {
                self.index.remove(&id);
            }
        }
        Ok(gone.len())
    }

    /// `CHECKPOINT_MAX_BYTES`, as a body limit.
    pub fn max_task_bytes(&self) -> usize {
        usize::try_from(self.max_task_bytes).unwrap_or(usize::MAX)
    }

    /// Bytes held in all.
    pub fn total_bytes(&self) -> u64 {
        self.index.iter().map(|e| e.value().bytes).sum()
    }
}

impl std::fmt::Debug for Checkpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoints")
            .field("held", &self.index.len())
            .field("enabled", &self.enabled)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::orchestrator::store::open;

    #[test]
    fn a_resumed_attempts_start_step_is_written_by_the_writer_even_while_another_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let store = Store::start(open(&path, false).unwrap());
        let other = Connection::open(&path).unwrap();
        other
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS checkpoints (task_id TEXT PRIMARY KEY, attempt_id INTEGER NOT NULL,
                 worker_id TEXT NOT NULL, step INTEGER NOT NULL, saved_at REAL NOT NULL, bytes BLOB NOT NULL);
                 INSERT INTO checkpoints VALUES ('t1', 1, 'w1', 40, 0, x'00')",
            )
            .unwrap();
        let cp = Checkpoints::open(&path, store, true, 1 << 20, 1 << 20).unwrap();
        let task = TaskId::parse("t1").unwrap();
        // another connection holds the write lock: the dispatching actor
        // must not wait on it (it did, up to busy_timeout, and then the
        // row was lost)
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        assert_eq!(cp.resume_step(&task, AttemptId::new(2)), Some(40));
        other.execute_batch("COMMIT").unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let steps = cp.start_steps(&task).unwrap();
            if steps.get(&AttemptId::new(2)) == Some(&40) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the start step was never written: {steps:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // no checkpoint held for a task: nothing to resume, nothing written
        let none = TaskId::parse("t2").unwrap();
        assert_eq!(cp.resume_step(&none, AttemptId::new(3)), None);
    }
}
