//! Files as records: every dropped file the orchestrator took
//! (`ingested`) or refused (`rejected`) is a row of `ingests`, and each
//! ingested file's tasks carry its id (`tasks.ingest_id`), so `GET /files`
//! can say how far each file has got without counting its tasks.
//!
//! # Counts kept, not counted
//! `file_counts` holds one row per (file, status): written once when the
//! file is queued (all its tasks are `queued` then: one row, not one
//! trigger per task, which would cost the ingest of a million tasks a
//! million upserts, [`file_queued`]), then kept by triggers in the same
//! transaction as every change of a task's status or its deletion (like
//! `task_counts`): a file's progress is a few primary-key reads whatever
//! the number of tasks stored. A file's tasks are told apart by the id of
//! its record, not by its name: the same name may be dropped again with
//! other tasks, and each drop is its own record with its own counts.
//!
//! # Rejected files
//! A refused file is recorded after it was moved to `rejected/`: where it
//! is now, how many problems, a one-line summary, and where its report
//! is. The report itself stays on disk only (it can be as long as the file
//! has tasks); `GET /files/{id}` reads it from there, bounded
//! ([`REPORT_MAX_BYTES`]), and answers `null` if someone deleted it.
//!
//! # Databases from before
//! [`migrate`] adds the columns to a database written before they existed
//! and gives its tasks their file's id: the tasks of the n-th file of a
//! name are the n-th run of that many tasks with that source, in `seq`
//! order (a file's tasks are committed together).

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::views::ReadPool;
use super::StoreError;
use crate::model::{TaskId, TaskStatus};
use crate::util::fs::{read_regular, NotRead};

/// Indexes and triggers of file records and of the sorts and the file
/// filter of `GET /tasks`; run after [`migrate`], so every column exists.
const FILES_SCHEMA: &str = "
CREATE INDEX IF NOT EXISTS ingests_state ON ingests(state);
CREATE INDEX IF NOT EXISTS ingests_name ON ingests(name);
CREATE INDEX IF NOT EXISTS tasks_source ON tasks(source);
CREATE INDEX IF NOT EXISTS tasks_unfiled ON tasks(source) WHERE ingest_id IS NULL;
CREATE INDEX IF NOT EXISTS tasks_created ON tasks(created_at);
CREATE TABLE IF NOT EXISTS file_counts (
    ingest_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (ingest_id, status)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS file_counts_update AFTER UPDATE OF status ON tasks
WHEN NEW.ingest_id IS NOT NULL AND OLD.status IS NOT NEW.status BEGIN
    UPDATE file_counts SET n = n - 1 WHERE ingest_id = OLD.ingest_id AND status = OLD.status;
    INSERT INTO file_counts(ingest_id, status, n) VALUES (NEW.ingest_id, NEW.status, 1)
        ON CONFLICT(ingest_id, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS file_counts_delete AFTER DELETE ON tasks
WHEN OLD.ingest_id IS NOT NULL BEGIN
    UPDATE file_counts SET n = n - 1 WHERE ingest_id = OLD.ingest_id AND status = OLD.status;
END;
";

/// The columns a database from before file records lacks: (table,
/// column, its declaration).
const ADDED: [(&str, &str, &str); 6] = [
    ("tasks", "ingest_id", "INTEGER"),
    ("ingests", "state", "TEXT NOT NULL DEFAULT 'ingested'"),
    ("ingests", "problems", "INTEGER NOT NULL DEFAULT 0"),
    ("ingests", "summary", "TEXT"),
    ("ingests", "report", "TEXT"),
    // a joined worker's secret (its digest): a database from before it
    // has none, and its members prove themselves the old way once
    ("members", "secret_sha256", "TEXT NOT NULL DEFAULT ''"),
];

/// The longest report `GET /files/{id}` returns; for a longer one it
/// says where the report is.
pub const REPORT_MAX_BYTES: u64 = 1 << 20;

fn has_column(db: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    let mut st = db.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = st
        .query_map([], |r| r.get::<_, String>(1))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(names.iter().any(|n| n == column))
}

/// Brings a database to file records: the columns added where missing
/// (their tasks given their file's id, the counts built once), then the
/// indexes and triggers. One transaction; a no-op on a current database.
pub(super) fn migrate(db: &Connection) -> Result<(), StoreError> {
    db.execute_batch("BEGIN IMMEDIATE")?;
    let done = (|| -> rusqlite::Result<()> {
        let mut added_ingest_id = false;
        for (table, column, decl) in ADDED {
            if !has_column(db, table, column)? {
                db.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
                added_ingest_id |= column == "ingest_id";
            }
        }
        db.execute_batch(FILES_SCHEMA)?;
        if added_ingest_id {
            backfill(db)?;
        }
        Ok(())
    })();
    match done {
        Ok(()) => db.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = db.execute_batch("ROLLBACK");
            return Err(e.into());
        }
    }
    Ok(())
}

/// Gives the tasks of a database from before file records their file's
/// id, and counts them once (the triggers keep the counts from then on).
fn backfill(db: &Connection) -> rusqlite::Result<()> {
    db.execute_batch(
        "UPDATE tasks SET ingest_id = m.id FROM (
             SELECT t.seq AS seq, i.id AS id
             FROM (SELECT seq, source, ROW_NUMBER() OVER (PARTITION BY source ORDER BY seq) AS rn
                   FROM tasks WHERE source IN (SELECT name FROM ingests)) t
             JOIN (SELECT id, name, tasks,
                          SUM(tasks) OVER (PARTITION BY name ORDER BY id) AS upto
                   FROM ingests WHERE state = 'ingested') i
               ON i.name = t.source AND t.rn > i.upto - i.tasks AND t.rn <= i.upto
         ) m WHERE tasks.seq = m.seq;
         DELETE FROM file_counts;
         INSERT INTO file_counts(ingest_id, status, n)
             SELECT ingest_id, status, COUNT(*) FROM tasks WHERE ingest_id IS NOT NULL
             GROUP BY ingest_id, status;",
    )
}

/// Counts a file's `n` tasks, just inserted with its id, as queued: the
/// one place a file's tasks are counted on insert (see the module doc).
pub(super) fn file_queued(db: &Connection, ingest_id: i64, n: usize) -> rusqlite::Result<()> {
    db.prepare_cached(
        "INSERT INTO file_counts(ingest_id, status, n) VALUES (?1, 'queued', ?2)
         ON CONFLICT(ingest_id, status) DO UPDATE SET n = n + ?2",
    )?
    .execute(params![ingest_id, n as i64])?;
    Ok(())
}

/// A rejected file, recorded once it is in `rejected/`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// The name it was dropped under.
    pub name: String,
    pub size: u64,
    /// Where it is now.
    pub stored_as: String,
    pub problems: usize,
    pub summary: String,
    /// Where its report was written.
    pub report: String,
    pub at: f64,
}

/// Records a rejected file.
pub(super) fn record_rejected(db: &Connection, r: &Rejected) -> rusqlite::Result<()> {
    db.prepare_cached(
        "INSERT INTO ingests(name, size, sha256, tasks, ingested_at, moved_to, state, problems, summary, report)
         VALUES (?1, ?2, '', 0, ?3, ?4, 'rejected', ?5, ?6, ?7)",
    )?
    .execute(params![
        r.name,
        r.size as i64,
        r.at,
        r.stored_as,
        r.problems as i64,
        r.summary,
        r.report
    ])?;
    Ok(())
}

/// Whether a file was taken or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileState {
    Ingested,
    Rejected,
}

impl FileState {
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Ingested => "ingested",
            FileState::Rejected => "rejected",
        }
    }

    /// `ingested` or `rejected`, for `GET /files?state=`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ingested" => Some(FileState::Ingested),
            "rejected" => Some(FileState::Rejected),
            _ => None,
        }
    }
}

/// Tasks by status: a file's (all zero for a rejected file), or a
/// batch's duplicate ids'.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    pub queued: u64,
    pub running: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
}

impl StatusCounts {
    pub fn add(&mut self, status: TaskStatus, n: u64) {
        let slot = match status {
            TaskStatus::Queued => &mut self.queued,
            TaskStatus::Running => &mut self.running,
            TaskStatus::Completed => &mut self.completed,
            TaskStatus::Failed => &mut self.failed,
            TaskStatus::Cancelled => &mut self.cancelled,
        };
        *slot += n;
    }

    /// These counts less `other`'s (none below zero).
    pub fn without(&self, other: &StatusCounts) -> StatusCounts {
        StatusCounts {
            queued: self.queued.saturating_sub(other.queued),
            running: self.running.saturating_sub(other.running),
            completed: self.completed.saturating_sub(other.completed),
            failed: self.failed.saturating_sub(other.failed),
            cancelled: self.cancelled.saturating_sub(other.cancelled),
        }
    }
}

/// A file as `GET /files` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct FileRecord {
    pub id: i64,
    /// The name it was dropped under.
    pub name: String,
    pub state: FileState,
    /// Unix seconds: when it was queued, or refused.
    pub at: f64,
    /// Where the file is now (`processed/…` or `rejected/…`); `null` for
    /// the moment between the commit and the move.
    pub stored_as: Option<String>,
    pub size: u64,
    pub tasks: u64,
    pub counts: StatusCounts,
    pub problems: u64,
    pub summary: Option<String>,
    /// Where the rejection report was written (not serialised: `GET
    /// /files/{id}` returns the report itself).
    #[serde(skip)]
    pub report_path: Option<String>,
}

const FILE_COLUMNS: &str = "id, name, state, ingested_at, moved_to, size, tasks, problems, summary, report";

fn file_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<FileRecord> {
    let state: String = r.get(2)?;
    Ok(FileRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        state: FileState::parse(&state).unwrap_or(FileState::Ingested),
        at: r.get(3)?,
        stored_as: r.get(4)?,
        size: r.get::<_, i64>(5)?.max(0) as u64,
        tasks: r.get::<_, i64>(6)?.max(0) as u64,
        counts: StatusCounts::default(),
        problems: r.get::<_, i64>(7)?.max(0) as u64,
        summary: r.get(8)?,
        report_path: r.get(9)?,
    })
}

/// Fills a file's counts from `file_counts` (a primary-key range read).
fn with_counts(db: &Connection, mut f: FileRecord) -> rusqlite::Result<FileRecord> {
    if f.state == FileState::Ingested {
        let mut st = db.prepare_cached("SELECT status, n FROM file_counts WHERE ingest_id = ?1")?;
        let rows = st.query_map(params![f.id], |r| {
            Ok((r.get::<_, TaskStatus>(0)?, r.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (status, n) = row?;
            f.counts.add(status, n.max(0) as u64);
        }
    }
    Ok(f)
}

/// A task id the orchestrator knows: its status and where its result is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct KnownTask {
    pub task_id: TaskId,
    pub status: TaskStatus,
    /// The results file its result was (or is being) written to.
    pub results_file: Option<String>,
}

/// How many duplicate ids are named with their status and results file;
/// the rest are counted by status.
pub const DUPLICATES_SHOWN: usize = 20;

/// The ids of a batch that exist already (nothing of it was queued):
/// every one, the first few with where they stand, and all by status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Duplicates {
    /// Every one, in the batch's order.
    pub ids: Vec<TaskId>,
    /// The first [`DUPLICATES_SHOWN`], with status and results file.
    pub first: Vec<KnownTask>,
    /// All of them by status.
    pub by_status: StatusCounts,
}

impl Duplicates {
    /// One more existing id, in the batch's order.
    pub fn push(&mut self, task_id: TaskId, status: TaskStatus, results_file: Option<String>) {
        self.by_status.add(status, 1);
        if self.first.len() < DUPLICATES_SHOWN {
            self.first.push(KnownTask {
                task_id: task_id.clone(),
                status,
                results_file,
            });
        }
        self.ids.push(task_id);
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Looks up ids one by one through the unique index, keeping the known
/// ones in the order given.
pub(super) fn known(db: &Connection, ids: &[String]) -> rusqlite::Result<Vec<KnownTask>> {
    let mut st = db.prepare_cached("SELECT status, results_file FROM tasks WHERE task_id = ?1")?;
    let mut found = Vec::new();
    for id in ids {
        if let Some((status, results_file)) = st
            .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
        {
            found.push(KnownTask {
                // the caller checked the ids it asks about
                task_id: TaskId::trusted(id),
                status,
                results_file,
            });
        }
    }
    Ok(found)
}

impl ReadPool {
    /// A page of file records, newest first, and how many there are.
    pub fn files(
        &self,
        state: Option<FileState>,
        limit: usize,
        offset: usize,
    ) -> Result<(Vec<FileRecord>, u64), StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        self.with(|db| {
            let (total, page): (i64, Vec<FileRecord>) = match state {
                None => (
                    db.prepare_cached("SELECT COUNT(*) FROM ingests")?
                        .query_row([], |r| r.get(0))?,
                    db.prepare_cached(&format!(
                        "SELECT {FILE_COLUMNS} FROM ingests ORDER BY id DESC LIMIT ?1 OFFSET ?2"
                    ))?
                    .query_map(params![limit, offset], file_record)?
                    .collect::<rusqlite::Result<_>>()?,
                ),
                Some(s) => (
                    db.prepare_cached("SELECT COUNT(*) FROM ingests WHERE state = ?1")?
                        .query_row(params![s.as_str()], |r| r.get(0))?,
                    db.prepare_cached(&format!(
                        "SELECT {FILE_COLUMNS} FROM ingests WHERE state = ?1 ORDER BY id DESC LIMIT ?2 OFFSET ?3"
                    ))?
                    .query_map(params![s.as_str(), limit, offset], file_record)?
                    .collect::<rusqlite::Result<_>>()?,
                ),
            };
            let page = page
                .into_iter()
                .map(|f| with_counts(db, f))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((page, total.max(0) as u64))
        })
    }

    /// One file record, with its counts.
    pub fn file(&self, id: i64) -> Result<Option<FileRecord>, StoreError> {
        self.with(|db| {
            let f = db
                .prepare_cached(&format!("SELECT {FILE_COLUMNS} FROM ingests WHERE id = ?1"))?
                .query_row(params![id], file_record)
                .optional()?;
            f.map(|f| with_counts(db, f)).transpose()
        })
    }

    /// The ids of `ids` the orchestrator knows, with their status and
    /// results file, in the order given.
    pub fn known(&self, ids: &[String]) -> Result<Vec<KnownTask>, StoreError> {
        self.with(|db| known(db, ids))
    }
}

/// A rejection report as `GET /files/{id}` returns it: the text written
/// beside the file; a note saying where it is when it is longer than
/// [`REPORT_MAX_BYTES`]; `None` when it is not there (deleted, never
/// written) or is not a regular file. Read like a dropped file
/// ([`read_regular`]): whoever can write into `rejected/` must not turn the
/// report into a link that makes the API read another file.
pub fn read_report(path: &str) -> Option<String> {
    match read_regular(std::path::Path::new(path), REPORT_MAX_BYTES) {
        Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Err(NotRead::TooLarge(size)) => Some(format!(
            "the report is {size} bytes, more than the {REPORT_MAX_BYTES} shown here; read it in {path}\n"
        )),
        Err(_) => None,
    }
}
