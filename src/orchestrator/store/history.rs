//! Failure records: what `results/task_failures_<ts>.json` says of every
//! failed or cancelled task, so that `results/` alone tells what became of
//! every task of a file.
//!
//! # One record per end, written exactly once
//! A record is composed by the writer in the same transaction that ends
//! the task (`Change::Ended` with `failed`, or a cancel), from the task's
//! row and its attempts as they stand then: a later `POST
//! /tasks/{id}/retry` cannot change what the file will say of that end,
//! and a task that fails, is retried and fails again has two records. The
//! records reach a file the way completed results do: ResultsStore claims
//! the pending ones for a file name (committed before the file is
//! written), writes the file by rename, then marks them written. At start
//! ([`settle_failure_files`]) a record claimed for a file that exists is
//! marked written, one claimed for a file that never reached the disk is
//! released and written again: a crash anywhere neither loses nor repeats
//! a record.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use serde_json::{Map, Value};

use super::views::AttemptView;
use super::writer::{Op, Reply};
use super::{unexpected, Change, Store, StoreError};
use crate::model::{unknown_fields, Priority, TaskId, TaskStatus};
use crate::util::time::iso_at;

/// The most records one failures file takes; more are written to the
/// next file at once (a file is built in memory).
pub const FAILURES_PER_FILE: usize = 100_000;

/// One failed or cancelled task as `task_failures_*.json` holds it.
#[derive(Debug, Clone, Serialize)]
pub struct FailureRecord {
    pub task_id: TaskId,
    /// `failed` or `cancelled`.
    pub status: TaskStatus,
    /// Why it ended (the last attempt's error, or "cancelled by request").
    pub error: Option<String>,
    /// The file it came from (`api` for `POST /tasks`).
    pub source: String,
    pub priority: Priority,
    pub algorithm: String,
    pub kernel: String,
    pub parameters: Value,
    pub ended_at: Option<String>,
    /// Every attempt, oldest first (none for a task cancelled in the queue).
    pub attempts: Vec<AttemptView>,
    /// The task's unknown fields, at the top as given (as results echo
    /// them); one named like a field above is left out here (it stays
    /// under `extra` in `GET /tasks/{id}`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The names a record uses itself.
const RECORD_FIELDS: [&str; 11] = [
    "task_id",
    "status",
    "error",
    "source",
    "priority",
    "algorithm",
    "kernel",
    "parameters",
    "ended_at",
    "attempts",
    "description",
];

/// Every attempt of a task, oldest first.
pub(super) fn attempts_of(db: &Connection, task_id: &str) -> rusqlite::Result<Vec<AttemptView>> {
    db.prepare_cached(
        "SELECT attempt_id, worker_id, started_at, ended_at, outcome, error FROM attempts
         WHERE task_id = ?1 ORDER BY started_at, attempt_id",
    )?
    .query_map(params![task_id], |r| {
        Ok(AttemptView {
            attempt_id: r.get(0)?,
            worker_id: r.get(1)?,
            started_at: iso_at(r.get(2)?),
            ended_at: r.get::<_, Option<f64>>(3)?.map(iso_at),
            outcome: r.get(4)?,
            error: r.get(5)?,
            start_step: None,
        })
    })?
    .collect()
}

/// The task's record as it stands now, if it has failed or been
/// cancelled (inside the transaction that ended it).
fn compose(db: &Connection, task_id: &str) -> rusqlite::Result<Option<FailureRecord>> {
    let row = db
        .prepare_cached(
            "SELECT status, error, source, priority, algorithm, kernel, body, finished_at
             FROM tasks WHERE task_id = ?1",
        )?
        .query_row(params![task_id], |r| {
            Ok((
                r.get::<_, TaskStatus>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, Option<f64>>(7)?,
            ))
        })
        .optional()?;
    let Some((status, error, source, priority, algorithm, kernel, body, finished_at)) = row else {
        return Ok(None);
    };
    if !status.is_retryable() {
        return Ok(None);
    }
    let body: Value = serde_json::from_str(&body).unwrap_or_default();
    let mut extra: Map<String, Value> = unknown_fields(&body)
        .into_iter()
        .filter(|(k, _)| !RECORD_FIELDS.contains(&k.as_str()))
        .collect();
    if let Some(d) = body.get("description") {
        extra.insert("description".into(), d.clone());
    }
    if let Some(s) = body.get("study") {
        extra.insert("study".into(), s.clone());
    }
    Ok(Some(FailureRecord {
        task_id: TaskId::trusted(task_id),
        status,
        error,
        source,
        priority: Priority::from_rank(priority as u8),
        algorithm,
        kernel,
        parameters: body.get("parameters").cloned().unwrap_or_default(),
        ended_at: finished_at.map(iso_at),
        attempts: attempts_of(db, task_id)?,
        extra,
    }))
}

/// Keeps the record of a task that has just failed or been cancelled
/// (called by the writer, after the change that ended it).
pub(super) fn record_failure(db: &Connection, task_id: &str) -> rusqlite::Result<()> {
    let Some(record) = compose(db, task_id)? else {
        return Ok(());
    };
    let json =
        serde_json::to_string(&record).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
    db.prepare_cached("INSERT INTO failure_records(task_id, record) VALUES (?1, ?2)")?
        .execute(params![task_id, json])?;
    Ok(())
}

/// Names `file` for up to `limit` records not yet in a file (or named for
/// `file` already: a write that failed is tried again under its name),
/// oldest first, and answers them (JSON).
pub(super) fn claim(db: &Connection, file: &str, limit: usize) -> rusqlite::Result<Vec<String>> {
    let rows: Vec<(i64, String)> = db
        .prepare_cached(
            "SELECT id, record FROM failure_records WHERE written = 0 AND (file IS NULL OR file = ?2)
             ORDER BY id LIMIT ?1",
        )?
        .query_map(params![limit as i64, file], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut name = db.prepare_cached("UPDATE failure_records SET file = ?2 WHERE id = ?1")?;
    for (id, _) in &rows {
        name.execute(params![id, file])?;
    }
    Ok(rows.into_iter().map(|(_, record)| record).collect())
}

/// The records named for `file` are in it.
pub(super) fn mark_written(db: &Connection, file: &str) -> rusqlite::Result<()> {
    db.prepare_cached("UPDATE failure_records SET written = 1 WHERE file = ?1 AND written = 0")?
        .execute(params![file])?;
    Ok(())
}

/// At start, before the writer thread: a record named for a file that
/// exists is in it (the crash came between the rename and the mark); one
/// named for a file that does not exist is released, to be written again.
/// Answers how many records wait for a file.
pub fn settle_failure_files(conn: &Connection) -> Result<u64, StoreError> {
    let files: Vec<String> = conn
        .prepare("SELECT DISTINCT file FROM failure_records WHERE written = 0 AND file IS NOT NULL")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for f in files {
        if Path::new(&f).exists() {
            mark_written(conn, &f)?;
        } else {
            conn.execute(
                "UPDATE failure_records SET file = NULL WHERE file = ?1 AND written = 0",
                params![f],
            )?;
        }
    }
    let pending: i64 = conn.query_row(
        "SELECT COUNT(*) FROM failure_records WHERE written = 0",
        [],
        |r| r.get(0),
    )?;
    Ok(pending as u64)
}

impl Store {
    /// Names `file` for up to `limit` failure records not yet in a file
    /// and answers them (JSON, oldest first); ordered after every change
    /// queued before it, so a task ended before the call is in the answer.
    pub fn claim_failures(
        &self,
        file: &str,
        limit: usize,
    ) -> impl std::future::Future<Output = Result<Vec<String>, StoreError>> + 'static {
        let reply = self.ask(Op::ClaimFailures {
            file: file.to_string(),
            limit,
        });
        async move {
            match reply.await? {
                Reply::Failures(records) => Ok(records),
                other => Err(unexpected(other)),
            }
        }
    }

    /// The failures file is on disk; answers after the commit.
    pub fn failures_written(
        &self,
        file: &str,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + 'static {
        self.persist_now(vec![Change::FailuresWritten {
            file: file.to_string(),
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AttemptEnd, WorkerId};
    use crate::orchestrator::store::{self, CancelOutcome, NewTask};
    use crate::util::time::unix_now;

    fn task(id: &str, body: &str) -> NewTask {
        NewTask {
            task_id: id.into(),
            priority: crate::model::Priority::High,
            algorithm: "python".into(),
            kernel: "reference".into(),
            body: body.into(),
            reuse_key: None,
        }
    }

    /// A failed task with two attempts and a cancelled one with none: one
    /// record each, with the reason, attempts and unknown fields; claimed
    /// once; released again when its file never reached the disk, marked
    /// written when it did.
    #[test]
    fn records_are_kept_claimed_once_and_settled_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("q.db");
        let file = dir.path().join("task_failures_x.json");
        let file_key = file.to_string_lossy().into_owned();
        actix_rt::System::new().block_on(async {
            let s = Store::start(store::open(&db, false).unwrap());
            let body = r#"{"task_id":"bad","algorithm":"python","parameters":{"num_particles":20},"owner":"ana","status":"mine"}"#;
            s.insert_batch(vec![task("bad", body), task("never", "{}")], None, "f.json".into())
                .await
                .unwrap();
            let w = WorkerId::new("w1");
            let t0 = unix_now();
            let mut changes = Vec::new();
            for (n, attempt) in [11u64, 12].into_iter().enumerate() {
                changes.push(Change::AttemptStarted {
                    task_id: "bad".into(),
                    attempt_id: attempt.into(),
                    worker_id: w.clone(),
                    at: t0 + n as f64,
                });
                changes.push(Change::AttemptEnded {
                    attempt_id: attempt.into(),
                    end: AttemptEnd::Failed,
                    error: Some(format!("boom {n}")),
                    at: t0 + n as f64 + 0.5,
                });
            }
            changes.push(Change::Ended {
                task_id: "bad".into(),
                status: TaskStatus::Failed,
                result: None,
                error: Some("failed after 2 attempts; last: failed: boom 1".into()),
                worker_id: None,
                at: t0 + 2.0,
            });
            s.persist_now(changes).await.unwrap();
            assert!(matches!(
                s.cancel(&"never".into()).await.unwrap(),
                CancelOutcome::Cancelled { .. }
            ));
            let claimed = s.claim_failures(&file_key, 10).await.unwrap();
            assert_eq!(claimed.len(), 2);
            let bad: Value = serde_json::from_str(&claimed[0]).unwrap();
            assert_eq!(bad["task_id"], "bad");
            assert_eq!(bad["status"], "failed");
            assert_eq!(bad["source"], "f.json");
            assert_eq!(bad["priority"], "high");
            assert_eq!(bad["kernel"], "reference");
            assert_eq!(bad["owner"], "ana", "unknown fields at the top: {bad}");
            assert!(bad["error"].as_str().unwrap().contains("boom 1"));
            let outcomes: Vec<(&str, &str)> = bad["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| (a["outcome"].as_str().unwrap(), a["error"].as_str().unwrap()))
                .collect();
            assert_eq!(outcomes, [("failed", "boom 0"), ("failed", "boom 1")]);
            let never: Value = serde_json::from_str(&claimed[1]).unwrap();
            assert_eq!(never["status"], "cancelled");
            assert_eq!(never["attempts"], serde_json::json!([]));
            // claimed once: a second claim finds nothing
            assert!(s.claim_failures("other", 10).await.unwrap().is_empty());
            let s2 = s.clone();
            actix_rt::task::spawn_blocking(move || s2.sync()).await.unwrap();
        });
        // a crash before the file was written: released, claimed again
        let conn = store::open(&db, false).unwrap();
        assert_eq!(settle_failure_files(&conn).unwrap(), 2);
        assert_eq!(claim(&conn, &file_key, 10).unwrap().len(), 2);
        // a crash after the rename, before the mark: it is in the file
        std::fs::write(&file, "[]").unwrap();
        assert_eq!(settle_failure_files(&conn).unwrap(), 0);
        assert!(claim(&conn, "again", 10).unwrap().is_empty());
    }
}
