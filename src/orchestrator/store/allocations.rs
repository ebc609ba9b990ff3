//! The allocation queues' rows: each queue's spec (as `POST /allocations`
//! gave it, JSON) and pause flag, and the jobs it submitted that may still
//! live, so a restarted orchestrator keeps following (and can cancel) the
//! jobs it asked for. Written through [`super::Change`]; read once at start
//! ([`load_allocations`]).

use rusqlite::{params, Connection};

use super::StoreError;

/// The tables, created when missing (databases from before them gain them).
const ALLOCATIONS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS allocations (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS allocation_jobs (
    queue TEXT NOT NULL,
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    submitted_at REAL NOT NULL,
    PRIMARY KEY (queue, job_id)
);
";

/// A change to the allocation rows (one variant of [`super::Change`]).
#[derive(Debug, Clone, PartialEq)]
pub enum AllocationChange {
    /// A new queue (its spec's JSON).
    Added {
        name: String,
        spec: String,
        at: f64,
    },
    Paused {
        name: String,
        paused: bool,
    },
    /// The queue and its jobs' rows go.
    Removed {
        name: String,
    },
    JobSubmitted {
        queue: String,
        job_id: String,
        seq: u64,
        at: f64,
    },
    /// The job has ended (or was given up on).
    JobGone {
        queue: String,
        job_id: String,
    },
}

/// A queue as kept.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAllocation {
    pub name: String,
    pub spec: String,
    pub paused: bool,
    pub jobs: Vec<StoredJob>,
}

/// A job a queue submitted that had not ended when last seen.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredJob {
    pub job_id: String,
    pub seq: u64,
    pub submitted_at: f64,
}

/// Creates the tables if missing.
pub(super) fn migrate(db: &Connection) -> Result<(), StoreError> {
    db.execute_batch(ALLOCATIONS_SCHEMA)?;
    Ok(())
}

pub(super) fn apply(db: &Connection, change: &AllocationChange) -> rusqlite::Result<()> {
    match change {
        AllocationChange::Added { name, spec, at } => {
            db.prepare_cached(
                "INSERT INTO allocations(name, spec, paused, created_at) VALUES (?1, ?2, 0, ?3)
                 ON CONFLICT(name) DO UPDATE SET spec = ?2",
            )?
            .execute(params![name, spec, at])?;
        }
        AllocationChange::Paused { name, paused } => {
            db.prepare_cached("UPDATE allocations SET paused = ?2 WHERE name = ?1")?
                .execute(params![name, paused])?;
        }
        AllocationChange::Removed { name } => {
            db.prepare_cached("DELETE FROM allocation_jobs WHERE queue = ?1")?
                .execute(params![name])?;
            db.prepare_cached("DELETE FROM allocations WHERE name = ?1")?
                .execute(params![name])?;
        }
        AllocationChange::JobSubmitted {
            queue,
            job_id,
            seq,
            at,
        } => {
            db.prepare_cached(
                "INSERT OR REPLACE INTO allocation_jobs(queue, job_id, seq, submitted_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![queue, job_id, *seq as i64, at])?;
        }
        AllocationChange::JobGone { queue, job_id } => {
            db.prepare_cached("DELETE FROM allocation_jobs WHERE queue = ?1 AND job_id = ?2")?
                .execute(params![queue, job_id])?;
        }
    }
    Ok(())
}

/// Every queue with its live jobs, oldest queue first.
pub fn load_allocations(db: &Connection) -> Result<Vec<StoredAllocation>, StoreError> {
    let mut queues: Vec<StoredAllocation> = db
        .prepare("SELECT name, spec, paused FROM allocations ORDER BY created_at, name")?
        .query_map([], |r| {
            Ok(StoredAllocation {
                name: r.get(0)?,
                spec: r.get(1)?,
                paused: r.get(2)?,
                jobs: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut jobs =
        db.prepare("SELECT job_id, seq, submitted_at FROM allocation_jobs WHERE queue = ?1 ORDER BY seq")?;
    for q in &mut queues {
        q.jobs = jobs
            .query_map(params![q.name], |r| {
                Ok(StoredJob {
                    job_id: r.get(0)?,
                    seq: r.get::<_, i64>(1)? as u64,
                    submitted_at: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(queues)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_and_jobs_are_kept_and_removed_together() {
        let db = Connection::open_in_memory().unwrap();
        migrate(&db).unwrap();
        let add = |name: &str| AllocationChange::Added {
            name: name.into(),
            spec: format!("{{\"name\":\"{name}\"}}"),
            at: 1.0,
        };
        apply(&db, &add("a")).unwrap();
        apply(&db, &add("b")).unwrap();
        apply(
            &db,
            &AllocationChange::Paused {
                name: "b".into(),
                paused: true,
            },
        )
        .unwrap();
        for (id, seq) in [("11", 1), ("12", 2)] {
            let job = AllocationChange::JobSubmitted {
                queue: "a".into(),
                job_id: id.into(),
                seq,
                at: 2.0,
            };
            apply(&db, &job).unwrap();
        }
        apply(
            &db,
            &AllocationChange::JobGone {
                queue: "a".into(),
                job_id: "11".into(),
            },
        )
        .unwrap();
        let kept = load_allocations(&db).unwrap();
        assert_eq!(kept.len(), 2);
        assert_eq!(
            kept[0].jobs.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>(),
            ["12"]
        );
        assert!(!kept[0].paused && kept[1].paused);
        apply(&db, &AllocationChange::Removed { name: "a".into() }).unwrap();
        let kept = load_allocations(&db).unwrap();
        assert_eq!(kept.len(), 1);
        let left: i64 = db
            .query_row("SELECT COUNT(*) FROM allocation_jobs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0);
    }
}
