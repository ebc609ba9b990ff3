//! The database's tables and how it is opened: WAL, the schema, and the
//! boot counter that makes attempt ids unique across restarts.

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
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    capacity INTEGER NOT NULL,
    algorithms TEXT NOT NULL,
    instance TEXT NOT NULL,
    joined_at REAL NOT NULL
);
";

/// Opens (creating if needed) the database with the schema.
pub fn open(path: &Path, sync_full: bool) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", if sync_full { "FULL" } else { "NORMAL" })?;
    conn.pragma_update(None, "busy_timeout", 5000)?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
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
