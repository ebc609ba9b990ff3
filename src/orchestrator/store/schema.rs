//! The database's tables and how it is opened: WAL, the schema, and the
//! boot counter that makes attempt ids unique across restarts.
//!
//! # Telling a new database from a damaged one
//! A missing file is a new queue. It is made under a temporary name
//! beside the final one, given the schema and a marker row
//! (`meta.key = 'orquesta'`), and only then renamed into place: so a file
//! at the database's path always carries the marker. A file without it
//! (0 bytes after a bad copy or a full disk, another program's SQLite
//! file) is refused rather than taken for an empty queue, which would run
//! again every task id that already ran. An existing file must also pass
//! `PRAGMA quick_check` (damaged pages). A database written before the
//! marker existed is known by its boot counter and given the marker.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY,
    task_id TEXT NOT NULL UNIQUE,
    priority INTEGER NOT NULL,
    algorithm TEXT NOT NULL,
    kernel TEXT NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    started_at REAL,
    finished_at REAL,
    worker_id TEXT,
    current_attempt INTEGER,
    error TEXT,
    result TEXT,
    results_file TEXT,
    written INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS tasks_queue ON tasks(status, kernel, priority, seq);
CREATE INDEX IF NOT EXISTS tasks_unwritten ON tasks(written, status) WHERE written = 0;
-- by status in arrival order (seq is the rowid every index ends with):
-- `GET /tasks?status=queued` reads a page of it instead of sorting every
-- queued task (`tasks_queue` has kernel and priority before seq)
CREATE INDEX IF NOT EXISTS tasks_status ON tasks(status);
CREATE INDEX IF NOT EXISTS tasks_priority ON tasks(priority);
CREATE INDEX IF NOT EXISTS tasks_algorithm ON tasks(algorithm);
CREATE INDEX IF NOT EXISTS tasks_kernel ON tasks(kernel);
CREATE INDEX IF NOT EXISTS tasks_worker ON tasks(worker_id) WHERE worker_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_results_file ON tasks(results_file) WHERE results_file IS NOT NULL;
-- results files named but not yet on disk (`results_files.rs`)
CREATE TABLE IF NOT EXISTS pending_results_files (file TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS task_counts (
    priority INTEGER NOT NULL,
    status TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (priority, status)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS task_counts_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO task_counts(priority, status, n) VALUES (NEW.priority, NEW.status, 1)
        ON CONFLICT(priority, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS task_counts_update AFTER UPDATE OF status, priority ON tasks
WHEN OLD.status IS NOT NEW.status OR OLD.priority IS NOT NEW.priority BEGIN
    UPDATE task_counts SET n = n - 1 WHERE priority = OLD.priority AND status = OLD.status;
    INSERT INTO task_counts(priority, status, n) VALUES (NEW.priority, NEW.status, 1)
        ON CONFLICT(priority, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS task_counts_delete AFTER DELETE ON tasks BEGIN
    UPDATE task_counts SET n = n - 1 WHERE priority = OLD.priority AND status = OLD.status;
END;
CREATE TABLE IF NOT EXISTS ingest_staging (
    ord INTEGER PRIMARY KEY,
    batch TEXT NOT NULL,
    task_id TEXT NOT NULL,
    priority INTEGER NOT NULL,
    algorithm TEXT NOT NULL,
    kernel TEXT NOT NULL,
    body TEXT NOT NULL,
    reuse_key TEXT
);
CREATE TABLE IF NOT EXISTS attempts (
    attempt_id INTEGER PRIMARY KEY,
    task_id TEXT NOT NULL,
    worker_id TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    outcome TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS attempts_task ON attempts(task_id);
CREATE TABLE IF NOT EXISTS ingests (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    tasks INTEGER NOT NULL,
    ingested_at REAL NOT NULL,
    moved_to TEXT
);
CREATE INDEX IF NOT EXISTS ingests_sha ON ingests(sha256);
CREATE TABLE IF NOT EXISTS failure_records (
    id INTEGER PRIMARY KEY,
    task_id TEXT NOT NULL,
    record TEXT NOT NULL,
    file TEXT,
    written INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS failure_records_task ON failure_records(task_id);
CREATE INDEX IF NOT EXISTS failure_records_unwritten ON failure_records(file) WHERE written = 0;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    capacity INTEGER NOT NULL,
    algorithms TEXT NOT NULL,
    instance TEXT NOT NULL,
    joined_at REAL NOT NULL,
    secret_sha256 TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS attempt_start_steps (
    attempt_id INTEGER PRIMARY KEY,
    task_id TEXT NOT NULL,
    step INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS attempt_start_steps_task ON attempt_start_steps(task_id);
CREATE TABLE IF NOT EXISTS verify_checks (
    task_id TEXT PRIMARY KEY,
    votes TEXT NOT NULL,
    tries INTEGER NOT NULL
);
";

/// Bytes the write-ahead log is cut back to when a checkpoint restarts it
/// (`PRAGMA journal_size_limit`): some seconds of ordinary commits.
pub const WAL_SIZE_LIMIT: i64 = 16 << 20;

/// The marker row's key in `meta`.
const MARKER: &str = "orquesta";

/// What every refusal of the database file ends with: the way out.
fn way_out(path: &Path) -> String {
    let p = path.display();
    format!(
        "restore {p} from a backup, or move it aside to start with an empty queue \
         (every task id becomes new again): mv {p} {p}.damaged \
         (and {p}-wal and {p}-shm if present)"
    )
}

/// Opens the database with the schema, creating it if missing; refuses a
/// file that is not an Orquesta queue or whose pages are damaged.
pub fn open(path: &Path, sync_full: bool) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    if std::fs::symlink_metadata(path).is_err() {
        create_new(path)?;
    }
    check_existing(path)?;
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", if sync_full { "FULL" } else { "NORMAL" })?;
    conn.pragma_update(None, "busy_timeout", 5000)?;
    // the log is cut back to this size whenever a checkpoint restarts it:
    // a large file's move into the queue is one transaction, which makes
    // it hundreds of MB that SQLite would otherwise keep (`writer.rs`
    // also empties it once the writer is idle after such a file)
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    conn.execute_batch(SCHEMA)?;
    super::files::migrate(&conn)?;
    super::reuse::migrate(&conn)?;
    super::allocations::migrate(&conn)?;
    start_afresh(&conn)?;
    Ok(conn)
}

/// At start-up, before anything reads or writes: the counts by status
/// are rebuilt from the tasks (a database written before `task_counts`
/// existed, or changed by hand, is counted right from here on; the
/// triggers keep them in the same transaction as every change after), and
/// chunks staged for a file that was never committed are dropped (the
/// file is still in the drop folder and is read again). Rows left by
/// tasks an older build purged go: start steps of attempts no longer
/// stored, checks of tasks no longer completed.
fn start_afresh(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "BEGIN IMMEDIATE;
         DELETE FROM task_counts;
         INSERT INTO task_counts(priority, status, n)
             SELECT priority, status, COUNT(*) FROM tasks GROUP BY priority, status;
         DELETE FROM ingest_staging;
         DELETE FROM attempt_start_steps WHERE task_id NOT IN (SELECT task_id FROM tasks);
         DELETE FROM verify_checks
             WHERE task_id NOT IN (SELECT task_id FROM tasks WHERE status = 'completed');
         COMMIT;",
    )?;
    Ok(())
}

/// A new queue: schema and marker in a temporary file, renamed into
/// place only when whole (never over a file that appeared meanwhile).
fn create_new(path: &Path) -> Result<(), StoreError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("db");
    let temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".new")
        .tempfile_in(dir)
        .map_err(|source| StoreError::Folder {
            path: dir.to_path_buf(),
            source,
        })?;
    {
        let conn = Connection::open(temp.path())?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(SCHEMA)?;
        conn.execute(
            "INSERT INTO meta(key, value) VALUES(?1, 1)",
            rusqlite::params![MARKER],
        )?;
        // closing checkpoints the WAL into the file and removes it
        conn.close().map_err(|(_, e)| e)?;
    }
    match temp.persist_noclobber(path) {
        Ok(_) => Ok(()),
        // another process made it first: it is checked like any other
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Folder {
            path: path.to_path_buf(),
            source: e.error,
        }),
    }
}

/// Refuses a file that is not a whole Orquesta queue.
fn check_existing(path: &Path) -> Result<(), StoreError> {
    let damaged = |why: String| StoreError::Damaged {
        path: path.to_path_buf(),
        why,
        way_out: way_out(path),
    };
    let meta = std::fs::metadata(path).map_err(|e| damaged(format!("it cannot be read: {e}")))?;
    if !meta.is_file() {
        return Err(damaged("it is not a regular file".into()));
    }
    if meta.len() == 0 {
        return Err(damaged(
            "it is empty (0 bytes): the queue it held is gone, and an empty queue would run again \
             every task id that already ran"
                .into(),
        ));
    }
    let conn = Connection::open(path)?;
    let checked: Result<Vec<String>, rusqlite::Error> = conn
        .prepare("PRAGMA quick_check")
        .and_then(|mut st| st.query_map([], |r| r.get::<_, String>(0))?.collect());
    match checked {
        Ok(lines) if lines.len() == 1 && lines[0] == "ok" => {}
        Ok(lines) => {
            let shown: Vec<&str> = lines.iter().take(3).map(String::as_str).collect();
            return Err(damaged(format!(
                "PRAGMA quick_check found damaged pages: {}",
                shown.join("; ")
            )));
        }
        Err(e) => return Err(damaged(format!("it is not a readable SQLite database: {e}"))),
    }
    let marker = |key: &str| -> Result<bool, rusqlite::Error> {
        let has_meta: bool = conn.query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            [],
            |r| r.get(0),
        )?;
        if !has_meta {
            return Ok(false);
        }
        conn.query_row("SELECT count(*) > 0 FROM meta WHERE key = ?1", [key], |r| {
            r.get(0)
        })
    };
    let found = |key| marker(key).map_err(|e| damaged(format!("its tables cannot be read: {e}")));
    if found(MARKER)? {
        return Ok(());
    }
    if found("boot")? {
        // written before the marker existed: it has run, so it is ours
        conn.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES(?1, 1)",
            rusqlite::params![MARKER],
        )?;
        return Ok(());
    }
    Err(damaged(
        "it has no Orquesta marker: it is not a queue this program made (emptied, or another \
         program's database), and taking it for a new queue would run again every task id that \
         already ran"
            .into(),
    ))
}

/// Increments and returns the boot counter: the high half of every
/// attempt id, so ids never repeat across restarts.
pub fn next_boot(conn: &Connection) -> Result<u64, StoreError> {
    conn.execute(
        "INSERT INTO meta(key, value) VALUES('boot', 1) ON CONFLICT(key) DO UPDATE SET value = value + 1",
        [],
    )?;
    Ok(
        conn.query_row("SELECT value FROM meta WHERE key = 'boot'", [], |r| {
            r.get::<_, i64>(0)
        })? as u64,
    )
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn refusal(path: &Path) -> String {
        match open(path, false) {
            Err(e @ StoreError::Damaged { .. }) => e.to_string(),
            Err(e) => panic!("another error: {e}"),
            Ok(_) => panic!("{} was accepted", path.display()),
        }
    }

    #[test]
    fn a_new_database_carries_the_marker_and_opens_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let conn = open(&path, false).unwrap();
        assert_eq!(next_boot(&conn).unwrap(), 1);
        drop(conn);
        assert_eq!(next_boot(&open(&path, false).unwrap()).unwrap(), 2);
        // nothing left under a temporary name
        assert_eq!(crate::util::fs::names(dir.path()), ["q.db"]);
    }

    #[test]
    fn an_empty_file_is_refused_with_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        std::fs::write(&path, b"").unwrap();
        let message = refusal(&path);
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("0 bytes"), "{message}");
        assert!(
            message.contains(&format!("mv {0} {0}.damaged", path.display())),
            "{message}"
        );
        // and it is left as it was
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }

    #[test]
    fn another_programs_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE notes(x TEXT); INSERT INTO notes VALUES('hi');")
            .unwrap();
        assert!(refusal(&path).contains("no Orquesta marker"));
        let garbage = dir.path().join("g.db");
        std::fs::write(&garbage, vec![b'x'; 8192]).unwrap();
        assert!(refusal(&garbage).contains("not a readable SQLite database"));
    }

    #[test]
    fn a_database_from_before_the_marker_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        next_boot(&conn).unwrap();
        drop(conn);
        let conn = open(&path, false).unwrap();
        assert_eq!(next_boot(&conn).unwrap(), 2);
    }

    #[test]
    fn damaged_pages_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let conn = open(&path, false).unwrap();
        conn.execute_batch(
            "CREATE TABLE filler(x TEXT); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
             INSERT INTO filler SELECT printf('%0400d', i) FROM n;",
        )
        .unwrap();
        conn.pragma_update(None, "wal_checkpoint", "TRUNCATE").unwrap();
        drop(conn);
        damage_middle(&path);
        let message = refusal(&path);
        assert!(
            message.contains("quick_check") || message.contains("not a readable"),
            "{message}"
        );
    }

    /// Writes garbage over pages in the middle of a file (not the header).
    pub(crate) fn damage_middle(path: &Path) {
        use std::io::{Seek, SeekFrom, Write};
        let len = std::fs::metadata(path).unwrap().len();
        let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.seek(SeekFrom::Start(len / 2)).unwrap();
        f.write_all(&vec![0xA5; 16 * 1024]).unwrap();
    }
}
