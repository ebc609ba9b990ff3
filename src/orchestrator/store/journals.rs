//! Where the store writer keeps SQLite's statement journals: in memory
//! for the ordinary group commits, on disk for the few jobs that can
//! journal much.

use rusqlite::Connection;

use super::writer::{Job, Op};

/// Where the writer's connection keeps statement journals (and temporary
/// tables). In memory for ordinary groups: each task's `UPDATE` (the count
/// triggers make it a multi-row write) journals a few pages, dropped when
/// the statement ends, but on disk, once one statement of a transaction
/// passed SQLite's 64 KiB spill every later one wrote to a temporary file,
/// a system call per page: a third of the writer's time per task. On disk
/// for the jobs whose one statement can journal a large part of the
/// database ([`journals_much`], a vacuum), so their memory stays bounded.
#[derive(Default)]
pub(super) struct Journals {
    /// The setting in force (none: not set yet).
    on_disk: Option<bool>,
}

impl Journals {
    pub fn on_disk(&mut self, conn: &Connection, on_disk: bool) {
        if self.on_disk == Some(on_disk) {
            return;
        }
        let store = if on_disk { "DEFAULT" } else { "MEMORY" };
        match conn.pragma_update(None, "temp_store", store) {
            Ok(()) => self.on_disk = Some(on_disk),
            Err(e) => tracing::warn!(error = %e, "cannot set where statement journals are kept"),
        }
    }
}

/// Tasks a staged file may have for its move into the queue to keep its
/// statement journal in memory: at most a few pages per task (the
/// index pages it touches), so a few MiB; the move's journal is most of
/// the time from a drop to its first dispatch, and on disk it is a write
/// system call per page.
pub(super) const SMALL_FILE: usize = 20_000;

/// A job with a statement that may change a large part of the database:
/// a large file's tasks moved into the queue at once, a purge window.
pub(super) fn journals_much(job: &Job) -> bool {
    job.ops.iter().any(|op| match op {
        Op::CommitStaged { tasks, .. } => *tasks > SMALL_FILE,
        Op::PurgeWindow { .. } => true,
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA temp_store", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn journals_go_to_memory_and_back_to_the_default() {
        let conn = Connection::open_in_memory().unwrap();
        let default = temp_store(&conn);
        let mut j = Journals::default();
        j.on_disk(&conn, false);
        assert_eq!(temp_store(&conn), 2, "MEMORY");
        j.on_disk(&conn, true);
        assert_eq!(temp_store(&conn), default);
        assert_ne!(default, 2, "SQLite's default keeps them on disk");
    }

    fn commit_of(tasks: usize) -> Job {
        Job {
            ops: vec![Op::CommitStaged {
                batch: "b".into(),
                tasks,
                ingest: None,
                source: "f.json".into(),
                kernels: vec![],
                window: 1,
            }],
            reply: None,
        }
    }

    #[test]
    fn only_a_large_files_move_journals_on_disk() {
        assert!(
            !journals_much(&commit_of(500)),
            "a small file's move stays in memory"
        );
        assert!(!journals_much(&commit_of(SMALL_FILE)));
        assert!(journals_much(&commit_of(SMALL_FILE + 1)));
        assert!(journals_much(&commit_of(1_000_000)));
    }
}
