//! Reading one dropped file, on the FileWatcher's read thread: its bytes
//! (a regular file, bounded), then its tasks checked one by one and
//! staged in the store in chunks of [`STAGE_CHUNK`] as they are checked
//! ([`stream_bytes`], [`Store::stage`]), one chunk written while the next
//! is parsed. Memory holds the file's text and two chunks, never all its
//! tasks; a file of a million tasks
//! peaks at its size plus a few tens of MB. A file refused after some
//! chunks were staged has them dropped ([`Store::unstage`]); nothing of it
//! is queued until TaskQueue commits the staged file in one job.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::taskfile::{sha256_hex, stream_bytes, Rejection, StreamError};
use crate::model::{KernelName, Validator};
use crate::orchestrator::store::{Ingest, NewTask, StageTicket, Store, StoreError};
use crate::util::fs::{read_regular, NotRead};
use crate::util::time::unix_now;
use crate::util::trace::{self, Stage};

/// Tasks per staged chunk: large enough that a chunk's commit is cheap
/// next to its writes, small enough to be a few MB in memory.
pub const STAGE_CHUNK: usize = 10_000;

/// What reading a file came to.
pub(super) enum Read {
    Good(Box<Staged>, Ingest),
    Bad(Rejection),
    Incomplete,
    Gone,
    /// Not a regular file (any more): dropped, logged once.
    NotRegular(&'static str),
    /// Held open, unshared, by its writer (Windows): read again later.
    Busy,
    /// Good so far, but the store could not stage it: read again later.
    NotStaged(StoreError),
}

/// A good file, staged whole.
#[derive(Debug)]
pub(super) struct Staged {
    /// The key its chunks are staged under.
    pub batch: String,
    pub count: usize,
    pub warnings: Vec<String>,
    /// Kernels its tasks run on.
    pub kernels: Vec<KernelName>,
}

/// Reads, validates and stages one file, adding one to `progress` once
/// its bytes are read and after each chunk staged. Blocks: for the read
/// thread only.
pub(super) fn read_file(
    path: &Path,
    validator: &Validator,
    max_bytes: u64,
    store: &Store,
    progress: &AtomicU64,
) -> Read {
    let step = || {
        progress.fetch_add(1, Ordering::Relaxed);
    };
    let bytes = match read_regular(path, max_bytes) {
        Ok(bytes) => bytes,
        Err(NotRead::Gone) => return Read::Gone,
        Err(NotRead::Busy) => return Read::Busy,
        Err(NotRead::NotRegular(kind)) => return Read::NotRegular(kind),
        Err(NotRead::Symlink) => {
            return Read::Bad(Rejection::one(
                "",
                "the file is a symbolic link: links in the task folder are never followed (nobody may \
                 point Orquesta at a file it should not read); copy the file itself into the folder",
            ))
        }
        Err(NotRead::TooLarge(size)) => {
            return Read::Bad(Rejection::one(
                "",
                format!(
                    "the file is {size} bytes or more, more than TASK_FILE_MAX_BYTES = {max_bytes}; split it \
                     into smaller files or raise the limit"
                ),
            ))
        }
        Err(NotRead::Io(e)) => {
            return Read::Bad(Rejection::one(
                "",
                format!("the file cannot be read: {e}; check its permissions"),
            ))
        }
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    step();
    let ingest = Ingest {
        name,
        size: bytes.len() as u64,
        sha256: sha256_hex(&bytes),
    };
    // unique per read: a file read again never meets its own old chunks
    let batch = format!("{}:{}", &ingest.sha256[..16], unix_now());
    let mut kernels = BTreeSet::new();
    let mut staged_any = false;
    // one chunk written while the next is parsed: the two halves of the
    // work (parsing, SQLite) overlap instead of taking turns
    let mut in_flight: Option<StageTicket> = None;
    let shown = crate::util::fs::escape_name(path.file_name().unwrap_or_default());
    let streamed = stream_bytes(&bytes, validator, STAGE_CHUNK, |tasks| {
        let chunk: Vec<NewTask> = tasks.iter().map(NewTask::of).collect();
        drop(tasks);
        trace::note(Stage::Read, &shown, chunk.iter().map(|t| &t.task_id));
        for t in &chunk {
            if !kernels.contains(&t.kernel) {
                kernels.insert(t.kernel);
            }
        }
        staged_any = true;
        let staged = match in_flight.replace(store.stage(&batch, chunk)) {
            Some(earlier) => earlier.wait(),
            None => Ok(()),
        };
        step();
        staged
    });
    // the last chunk committed (or failed) before the file is handed on
    let last = in_flight.map_or(Ok(()), StageTicket::wait);
    let streamed = match (streamed, last) {
        (Ok(_), Err(e)) => Err(StreamError::Sink(e)),
        (other, _) => other,
    };
    let unstage = |staged_any: bool| {
        if staged_any {
            store.unstage(&batch);
        }
    };
    match streamed {
        Ok(s) => Read::Good(
            Box::new(Staged {
                batch,
                count: s.count,
                warnings: s.warnings,
                kernels: kernels.into_iter().collect(),
            }),
            ingest,
        ),
        Err(StreamError::Rejected(r)) => {
            unstage(staged_any);
            if r.incomplete {
                Read::Incomplete
            } else {
                Read::Bad(r)
            }
        }
        Err(StreamError::Sink(e)) => {
            unstage(staged_any);
            Read::NotStaged(e)
        }
    }
}
