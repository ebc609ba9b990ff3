//! Never the same run twice: a new task whose reuse key
//! ([`crate::model::reuse`]: kernel and its version, effective parameters,
//! seed) equals a completed task's is answered at ingest, in the
//! transaction that inserts it, from that task's stored result: it is
//! written as completed at once with a copy of the record (its own ids,
//! parameters as it gave them, study, description and file; `reused_from`
//! naming the task that ran), one attempt with the outcome `reused`, and
//! `written = 0`, so it reaches `results/` like any completed task. The
//! key is kept in the `reuse_key` column, indexed over completed tasks
//! only, so a lookup is one index probe and the index holds only what can
//! answer. Nothing reaches the dispatch core: the queue loads queued rows,
//! and these are not queued.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use super::StoreError;
use crate::model::{Priority, TaskResult};
use crate::util::time::{iso_at, unix_now};

/// The column and its index (the index only over completed tasks: the
/// ones that can answer).
const REUSE_SCHEMA: &str = "
CREATE INDEX IF NOT EXISTS tasks_reuse ON tasks(reuse_key)
    WHERE status = 'completed' AND reuse_key IS NOT NULL;
";

/// Adds `reuse_key` to a database made before it; a no-op on a current one.
pub(super) fn migrate(db: &Connection) -> Result<(), StoreError> {
    for table in ["tasks", "ingest_staging"] {
        let has = db
            .prepare(&format!("PRAGMA table_info({table})"))?
            .query_map([], |r| r.get::<_, String>(1))?
            .collect::<rusqlite::Result<Vec<_>>>()?
            .iter()
            .any(|c| c == "reuse_key");
        if !has {
            db.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN reuse_key TEXT"))?;
        }
    }
    db.execute_batch(REUSE_SCHEMA)?;
    Ok(())
}

/// The attempt id of a reused task: its `seq`. The queue's attempt ids are
/// `boot << 32 | n` with boots counted from 1, so ids below 2³² are never
/// handed out to a run.
fn reused_attempt_id(seq: i64) -> i64 {
    seq
}

/// Answers every task inserted after `after` (a `seq`) whose reuse key
/// (written with the row, computed where the task was parsed) a completed
/// task inserted before them has. Returns the records of the answered
/// tasks, for `results/`. The new rows are walked in the database, one
/// index probe each; only the answered ones are read into memory.
pub(super) fn answer_from_stored(db: &Connection, after: i64) -> rusqlite::Result<Vec<TaskResult>> {
    let mut answered = Vec::new();
    let mut matches = db.prepare_cached(
        "SELECT seq, task_id, body, source, priority, from_id FROM (
             SELECT n.seq, n.task_id, n.body, n.source, n.priority,
                    (SELECT c.task_id FROM tasks c
                     WHERE c.reuse_key = n.reuse_key AND c.status = 'completed'
                       AND c.reuse_key IS NOT NULL AND c.seq <= ?1 LIMIT 1) AS from_id
             FROM tasks n
             WHERE n.seq > ?1 AND n.status = 'queued' AND n.reuse_key IS NOT NULL)
         WHERE from_id IS NOT NULL ORDER BY seq",
    )?;
    let mut stored = db.prepare_cached("SELECT result FROM tasks WHERE task_id = ?1")?;
    let mut rows = matches.query(params![after])?;
    let now = unix_now();
    while let Some(r) = rows.next()? {
        let (seq, task_id, body, source, from_id): (i64, String, String, String, String) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(5)?);
        let priority = Priority::from_rank(u8::try_from(r.get::<_, i64>(4)?).unwrap_or(u8::MAX));
        let Some(from_result) = stored
            .query_row(params![from_id], |r| r.get::<_, Option<String>>(0))
            .optional()?
            .flatten()
        else {
            continue;
        };
        let body_json: Value = serde_json::from_str(&body).unwrap_or_default();
        let record = match reused_record(
            &from_id,
            &from_result,
            (&task_id, priority),
            &body,
            &body_json,
            &source,
            now,
        ) {
            Ok(record) => record,
            Err(e) => {
                // a stored record that does not read back: run the task
                tracing::warn!(task = %task_id, from = %from_id, error = %e, "a stored result cannot be reused");
                continue;
            }
        };
        let json = serde_json::to_string(&record).unwrap_or_default();
        let worker = record.worker_id.as_ref().map(|w| w.to_string());
        db.prepare_cached(
            "UPDATE tasks SET status = 'completed', result = ?2, worker_id = ?3, started_at = ?4,
             finished_at = ?4, attempts = 1, current_attempt = NULL, written = 0 WHERE seq = ?1",
        )?
        .execute(params![seq, json, worker, now])?;
        db.prepare_cached(
            "INSERT INTO attempts(attempt_id, task_id, worker_id, started_at, ended_at, outcome, error)
             VALUES (?1, ?2, ?3, ?4, ?4, 'reused', ?5)",
        )?
        .execute(params![
            reused_attempt_id(seq),
            task_id,
            worker.unwrap_or_default(),
            now,
            format!(
                "answered from the stored result of {}",
                record.reused_from().unwrap_or_default()
            )
        ])?;
        answered.push(record);
    }
    if !answered.is_empty() {
        db.prepare_cached(
            "INSERT INTO meta(key, value) VALUES('reused', ?1) ON CONFLICT(key) DO UPDATE SET value = value + ?1",
        )?
        .execute(params![answered.len() as i64])?;
    }
    Ok(answered)
}

impl super::ReadPool {
    /// How many tasks were answered from a stored result since the
    /// database was made (purges do not lower it).
    pub fn reused_count(&self) -> Result<u64, StoreError> {
        self.with(|db| {
            db.prepare_cached("SELECT value FROM meta WHERE key = 'reused'")?
                .query_row([], |r| r.get::<_, i64>(0))
                .optional()
                .map(|n| n.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
        })
    }
}

/// The record of `task_id` (stored body `body`, from file `source`) made
/// from the stored record of `from_id`: the physics, effective parameters,
/// execution time and worker of the run; this task's ids, parameters,
/// priority, study, description, unknown fields and file; `completed_at`
/// now; `reused_from` the task that ran (through a chain of reuses).
fn reused_record(
    from_id: &str,
    from_result: &str,
    (task_id, priority): (&str, Priority),
    body: &str,
    body_json: &Value,
    source: &str,
    now: f64,
) -> Result<TaskResult, String> {
    let mut record: TaskResult = serde_json::from_str(from_result).map_err(|e| e.to_string())?;
    let ran = record.reused_from().unwrap_or(from_id).to_string();
    record.task_id = crate::model::TaskId::parse(task_id).map_err(|e| e.to_string())?;
    if let Some(p) = body_json.get("parameters") {
        record.parameters = p.clone();
    }
    if let Some(a) = body_json.get("algorithm").and_then(Value::as_str) {
        record.algorithm = a.to_string();
    }
    record.priority = Some(priority);
    record.completed_at = Some(iso_at(now));
    record.attempt_id = None;
    record.resumed_from_step = None;
    record.echo_unknown_fields(body);
    record.source = Some(source.to_string());
    record.set_reused_from(&ran);
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::store::{open, NewTask, ReadPool, Store};

    fn task(id: &str, params: &str, extra: &str) -> NewTask {
        let body = format!(r#"{{"task_id":"{id}","algorithm":"python","parameters":{params}{extra}}}"#);
        let json: Value = serde_json::from_str(&body).unwrap();
        NewTask {
            task_id: id.into(),
            priority: Priority::Medium,
            algorithm: "python".into(),
            kernel: "reference".into(),
            reuse_key: crate::model::reuse::reuse_key("reference", &json),
            body,
        }
    }

    #[test]
    fn an_equal_task_is_answered_from_the_stored_result() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let store = Store::start(open(&path, false).unwrap());
        let system = actix_rt::System::new();
        let p = r#"{"num_particles":16,"num_steps":1,"seed":3}"#;
        system
            .block_on(store.insert_batch(vec![task("a", p, "")], None, "one.json".into()))
            .unwrap();
        let result = r#"{"task_id":"a","algorithm":"python","parameters":{"num_particles":16,"num_steps":1,"seed":3},
            "execution_time":0.25,"result":{"status":"completed","metrics":{"total_energy_final":-0.1234567890123},"output":"done"},
            "worker_id":"w1","completed_at":"2026-01-01T00:00:00Z","priority":"medium"}"#;
        system
            .block_on(store.record_result(
                &"a".into(),
                crate::model::AttemptId::new((1 << 32) | 1),
                result.into(),
                &"w1".into(),
                1.0,
                false,
            ))
            .unwrap();
        // the same run with a default spelled out; one opting out; another seed
        let spelled = r#"{"num_particles":16,"num_steps":1,"seed":3,"density":0.5}"#;
        let other = r#"{"num_particles":16,"num_steps":1,"seed":4}"#;
        let outcome = system
            .block_on(store.insert_batch(
                vec![
                    task("b", spelled, r#","study":"s","description":"again""#),
                    task("c", p, r#","reuse":false"#),
                    task("d", other, ""),
                ],
                None,
                "two.json".into(),
            ))
            .unwrap();
        let crate::orchestrator::store::InsertOutcome::Inserted { reused, .. } = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(reused.len(), 1);
        let b = &reused[0];
        assert_eq!(b.task_id.as_str(), "b");
        assert_eq!(b.reused_from(), Some("a"));
        assert_eq!(b.extra["study"], "s");
        assert_eq!(b.description.as_deref(), Some("again"));
        assert_eq!(b.source.as_deref(), Some("two.json"));
        assert_eq!(b.parameters["density"], 0.5, "its own parameters");
        assert_eq!(
            b.result.metrics["total_energy_final"].as_f64().unwrap().to_bits(),
            (-0.1234567890123f64).to_bits()
        );
        let pool = ReadPool::new(&path);
        let (view, attempts) = pool.task("b").unwrap().unwrap();
        assert_eq!(view.status, crate::model::TaskStatus::Completed);
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].outcome, Some(crate::model::AttemptEnd::Reused));
        for queued in ["c", "d"] {
            assert_eq!(
                pool.task(queued).unwrap().unwrap().0.status,
                crate::model::TaskStatus::Queued
            );
        }
        // a reuse of a reuse names the task that ran
        system
            .block_on(store.insert_batch(vec![task("e", p, "")], None, "three.json".into()))
            .unwrap();
        assert_eq!(pool.reused_count().unwrap(), 2);
        let (e, _) = pool.task("e").unwrap().unwrap();
        assert_eq!(e.status, crate::model::TaskStatus::Completed);
        let record: TaskResult = serde_json::from_value(e.result.clone().unwrap()).unwrap();
        assert_eq!(record.reused_from(), Some("a"), "not b: the task that ran");
        drop(store);
    }
}
