//! DbFault: the last error that says the database file itself is damaged
//! or unreadable (SQLite's CORRUPT, NOTADB, IOERR, CANTOPEN), noted by the
//! writer thread and the read pool, reported by the orchestrator's
//! `/health`. Other errors (a busy lock, a constraint) say nothing about
//! the file and are not noted. A fault stays until the process restarts:
//! damaged pages do not heal, and a restart checks the file again
//! (`PRAGMA quick_check`, see `schema`).
//!
//! A full disk (SQLite's FULL) is noted apart: it is said plainly ("no
//! space left on device", with the database's path) in the error, the log
//! and `/health`, and it clears by itself at the next commit that succeeds.

use std::sync::{Arc, Mutex};

use rusqlite::ErrorCode;

/// Shared by the writer thread, the read pool and `/health`.
#[derive(Debug, Clone, Default)]
pub struct DbFault {
    damage: Arc<Mutex<Option<String>>>,
    /// The disk is full: what the last failed change said.
    full: Arc<Mutex<Option<String>>>,
}

/// Whether an error means the disk holding the database is full.
pub fn is_full(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::DiskFull))
}

/// What a full disk is called in errors, the log and `/health`.
pub fn no_space(path: &str) -> String {
    format!(
        "no space left on device: the database {path} cannot grow; free space on that disk \
         (task files wait in the drop folder, nothing accepted is lost, work goes on by itself once there is room)"
    )
}

/// Whether an error means the database file is damaged or unreadable.
pub fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseCorrupt
                | ErrorCode::NotADatabase
                | ErrorCode::SystemIoFailure
                | ErrorCode::CannotOpen
        )
    )
}

impl DbFault {
    /// Notes `e` if it says the file is damaged; answers `e` unchanged.
    pub fn note(&self, e: rusqlite::Error) -> rusqlite::Error {
        if is_damage(&e) {
            let mut fault = self.damage.lock().unwrap_or_else(|p| p.into_inner());
            if fault.is_none() {
                tracing::error!(error = %e, "the database file is damaged or unreadable; \
                    stop the orchestrator and restore the file from a backup (start-up checks it)");
            }
            *fault = Some(e.to_string());
        }
        e
    }

    /// The damage noted, if any.
    pub fn get(&self) -> Option<String> {
        self.damage.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Notes a change that failed because the disk of the database at
    /// `path` is full; logged once until space returns. Answers what the
    /// failure is called.
    pub fn note_full(&self, path: &str) -> String {
        let said = no_space(path);
        let mut full = self.full.lock().unwrap_or_else(|p| p.into_inner());
        if full.is_none() {
            tracing::error!(
                path,
                "no space left on device: the database cannot grow; intake pauses \
                until there is room (free space on that disk)"
            );
        }
        *full = Some(said.clone());
        said
    }

    /// A change committed: the disk has room again.
    pub fn room_again(&self) {
        let mut full = self.full.lock().unwrap_or_else(|p| p.into_inner());
        if full.take().is_some() {
            tracing::info!("the database can grow again (space was freed); work goes on");
        }
    }

    /// The full disk noted, if space has not come back since.
    pub fn full(&self) -> Option<String> {
        self.full.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_about_the_file_are_noted() {
        let fault = DbFault::default();
        let busy =
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY), None);
        fault.note(busy);
        assert_eq!(fault.get(), None);
        let corrupt = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            Some("database disk image is malformed".into()),
        );
        fault.clone().note(corrupt);
        assert!(fault.get().unwrap().contains("malformed"));
    }

    #[test]
    fn a_full_disk_is_named_and_clears_when_a_change_commits() {
        let fault = DbFault::default();
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some("database or disk is full".into()),
        );
        assert!(is_full(&full));
        let said = fault.note_full("data/orquesta.db");
        assert!(
            said.starts_with("no space left on device: the database data/orquesta.db"),
            "{said}"
        );
        assert_eq!(fault.clone().full(), Some(said));
        assert_eq!(fault.get(), None, "a full disk is not damage");
        fault.room_again();
        assert_eq!(fault.full(), None);
    }
}
