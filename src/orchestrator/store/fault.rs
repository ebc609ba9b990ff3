//! DbFault: the last error that says the database file itself is damaged
//! or unreadable (SQLite's CORRUPT, NOTADB, IOERR, CANTOPEN), noted by the
//! writer thread and the read pool, reported by the orchestrator's
//! `/health`. Other errors (a busy lock, a constraint) say nothing about
//! the file and are not noted. A fault stays until the process restarts:
//! damaged pages do not heal, and a restart checks the file again
//! (`PRAGMA quick_check`, see `schema`).

use std::sync::{Arc, Mutex};

use rusqlite::ErrorCode;

/// Shared by the writer thread, the read pool and `/health`.
#[derive(Debug, Clone, Default)]
pub struct DbFault(Arc<Mutex<Option<String>>>);

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
            let mut fault = self.0.lock().unwrap_or_else(|p| p.into_inner());
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
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
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
}
