//! FileWatcher: the drop folder `task_queues/`. A `notify` watch plus a
//! full scan at start and a slow rescan (events can be missed) find
//! `*.json` files; a file is read at once when it was renamed into the
//! folder (the way to drop a file whole) or its writer has closed it, and
//! otherwise once it has stayed unchanged for the quiet period. It is validated all-or-nothing
//! while its tasks are staged in the store chunk by chunk ([`read`]),
//! handed to TaskQueue, and moved to `processed/<YYYYMMDD_HHMMSS>_<name>`
//! only after TaskQueue has committed it whole; a bad file goes to `rejected/`
//! with `<name>.error.txt` listing every problem. Names starting with `.`
//! or ending in `.part`/`.tmp`, and other files, are left alone.
//!
//! # A folder others can write to
//! Anyone who can write into the folder may swap a file for something
//! else between the moment it is noticed and the moment it is read. So a
//! file is read by [`read_regular`](crate::util::fs::read_regular) (no link followed, no blocking open,
//! `fstat` must say regular file, at most `TASK_FILE_MAX_BYTES + 1`
//! bytes), on a thread of its own with a deadline on progress ([`READ_DEADLINE`]): the
//! actor never waits on a read, and a read that hangs (a stuck network
//! disk) is given up. A `*.json` that is a symbolic link is never followed,
//! even to a regular file: it is moved to `rejected/` with a report that
//! says so. Entries that will never be read (a directory, a FIFO, a socket
//! or device named `*.json`, a name that is not UTF-8) are logged once
//! each, not at every rescan. `processed/` and `rejected/` must be real
//! folders ([`check_folders`], at start-up), and every name is logged and
//! reported escaped ([`escape_name`]) so a newline in it cannot forge a line.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use notify::{EventKind, RecursiveMode, Watcher};

use super::task_queue::{SubmitError, SubmitStaged, Submitted};
use crate::model::taskfile::Rejection;
use crate::model::Validator;
use crate::orchestrator::metrics::OrchestratorMetrics;
use crate::orchestrator::store::{Ingest, Rejected, Store};
use crate::util::fs::{escape_name, kind_of};
use read::{read_file, Read, Staged};

pub mod duplicates;
mod read;

/// How long the read of one file may go without progress before it is
/// given up (until it changes): its bytes read, then each chunk of its
/// tasks checked and staged. A file of the default size limit reads in
/// well under a second from any working disk; this only catches a read
/// that hangs. A deadline on the whole read gave up on a million-task file
/// that a loaded machine took more than a minute to check and stage.
pub const READ_DEADLINE: Duration = Duration::from_secs(60);

/// Waits for a read's answer on `rx`, giving up (`Err`) only once
/// `progress` has not moved for `deadline`.
async fn wait_while_progressing<T>(
    mut rx: tokio::sync::oneshot::Receiver<T>,
    progress: Arc<std::sync::atomic::AtomicU64>,
    deadline: Duration,
) -> Result<Result<T, tokio::sync::oneshot::error::RecvError>, ()> {
    let mut seen = progress.load(std::sync::atomic::Ordering::Relaxed);
    loop {
        match actix_rt::time::timeout(deadline, &mut rx).await {
            Ok(answer) => return Ok(answer),
            Err(_) => {
                let now = progress.load(std::sync::atomic::Ordering::Relaxed);
                if now == seen {
                    return Err(());
                }
                seen = now;
            }
        }
    }
}

/// Folder and timing settings.
#[derive(Debug, Clone)]
pub struct WatchSettings {
    pub dir: PathBuf,
    pub quiet: Duration,
    pub rescan: Duration,
    pub max_bytes: u64,
}

/// A file seen and not yet ingested.
struct Candidate {
    len: u64,
    modified: Option<SystemTime>,
    /// Last time its size or time changed.
    changed: Instant,
    /// Complete as far as events tell: renamed into the folder, or closed
    /// by its writer (inotify). No need to wait the quiet period.
    closed: bool,
    /// Read while incomplete (truncated JSON) this long ago.
    incomplete_since: Option<Instant>,
}

pub struct FileWatcher {
    settings: WatchSettings,
    validator: Arc<Validator>,
    queue: Recipient<SubmitStaged>,
    store: Store,
    /// `GET /metrics/prometheus`: files ingested and rejected, scans,
    /// incomplete reads.
    metrics: Arc<OrchestratorMetrics>,
    candidates: HashMap<PathBuf, Candidate>,
    /// Entries that will never be read, already logged once.
    unreadable: HashSet<PathBuf>,
    /// Files whose read passed [`READ_DEADLINE`], with their size and time
    /// then: not read again until they change.
    stuck: HashMap<PathBuf, (u64, Option<SystemTime>)>,
    busy: bool,
    watcher: Option<notify::RecommendedWatcher>,
}

/// A truncated file is rejected only after staying unchanged this long.
fn stale_after(quiet: Duration) -> Duration {
    (quiet * 20).max(Duration::from_secs(10))
}

/// Whether a directory entry is a task file to read.
pub fn is_task_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.')
        && !name.ends_with(".part")
        && !name.ends_with(".tmp")
        && name.to_ascii_lowercase().ends_with(".json")
}

/// A file name for logs and reports: control characters escaped.
fn shown(path: &Path) -> String {
    escape_name(path.file_name().unwrap_or(OsStr::new("")))
}

/// A `processed/` or `rejected/` that files must not be moved into.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error(
        "{shown} is a symbolic link; Orquesta moves task files there and does not follow links \
         out of the task folder. Replace it with a real folder: rm {shown} && mkdir {shown}",
        shown = .0.display()
    )]
    Symlink(std::path::PathBuf),
    #[error("{} is {kind}, not a folder; move it away so Orquesta can make the folder", .path.display())]
    NotAFolder {
        path: std::path::PathBuf,
        kind: &'static str,
    },
}

/// Refuses a `processed/` or `rejected/` under the drop folder that is a
/// symbolic link (or not a folder): files moved there would land
/// wherever it points. Checked at start-up; a missing one is fine (made).
pub fn check_folders(dir: &Path) -> Result<(), FolderError> {
    for sub in ["processed", "rejected"] {
        let d = dir.join(sub);
        match fs::symlink_metadata(&d) {
            Err(_) => {}
            Ok(m) if m.file_type().is_symlink() => return Err(FolderError::Symlink(d)),
            Ok(m) if !m.is_dir() => {
                return Err(FolderError::NotAFolder {
                    kind: kind_of(&m.file_type()),
                    path: d,
                })
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

impl FileWatcher {
    pub fn new(
        settings: WatchSettings,
        validator: Arc<Validator>,
        queue: Recipient<SubmitStaged>,
        store: Store,
        metrics: Arc<OrchestratorMetrics>,
    ) -> Self {
        Self {
            settings,
            validator,
            queue,
            store,
            metrics,
            candidates: HashMap::new(),
            unreadable: HashSet::new(),
            stuck: HashMap::new(),
            busy: false,
            watcher: None,
        }
    }

    fn note(&mut self, path: PathBuf, closed: bool) {
        if path.parent() != Some(self.settings.dir.as_path()) {
            return;
        }
        let Ok(meta) = fs::symlink_metadata(&path) else {
            self.candidates.remove(&path);
            self.unreadable.remove(&path);
            self.stuck.remove(&path);
            return;
        };
        let Some(name) = path.file_name() else { return };
        if name.to_str().is_none() {
            if !name.as_encoded_bytes().starts_with(b".") {
                self.never_read(&path, "its name is not valid UTF-8; rename it");
            }
            return;
        }
        if !is_task_file(&path) {
            return;
        }
        // a link is taken as a candidate only to be rejected, never followed
        if !meta.is_file() && !meta.file_type().is_symlink() {
            self.candidates.remove(&path);
            let why = format!("it is {}, not a regular file", kind_of(&meta.file_type()));
            self.never_read(&path, &why);
            return;
        }
        let (len, modified) = (meta.len(), meta.modified().ok());
        if self.stuck.get(&path).is_some_and(|s| *s == (len, modified)) {
            return;
        }
        self.stuck.remove(&path);
        let c = self.candidates.entry(path).or_insert(Candidate {
            len,
            modified,
            changed: Instant::now(),
            closed: false,
            incomplete_since: None,
        });
        if c.len != len || c.modified != modified {
            c.len = len;
            c.modified = modified;
            c.changed = Instant::now();
            c.closed = false;
            c.incomplete_since = None;
        }
        c.closed |= closed;
    }

    /// Logs, once per entry, why an entry of the folder is never read.
    fn never_read(&mut self, path: &Path, why: &str) {
        if self.unreadable.insert(path.to_path_buf()) {
            tracing::warn!(file = %shown(path), why, "an entry of the task folder will never be read");
        }
    }

    fn scan(&mut self) {
        let Ok(entries) = fs::read_dir(&self.settings.dir) else {
            tracing::warn!(dir = %self.settings.dir.display(), "cannot read the task folder");
            return;
        };
        let mut seen = HashSet::new();
        for e in entries.flatten() {
            seen.insert(e.path());
            self.note(e.path(), false);
        }
        // an entry that left and comes back is reported again
        self.unreadable.retain(|p| seen.contains(p));
        self.stuck.retain(|p, _| seen.contains(p));
        self.metrics.drop_folder_scanned();
    }

    /// Ingests the next file that is ready, one at a time.
    fn check(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        let quiet = self.settings.quiet;
        let mut ready: Vec<(&PathBuf, &Candidate)> = self
            .candidates
            .iter()
            .filter(|(_, c)| {
                c.incomplete_since.is_none() && (c.closed || c.changed.elapsed() >= quiet)
                    || c.incomplete_since
                        .is_some_and(|t| t.elapsed() >= stale_after(quiet))
            })
            .collect();
        // oldest first, so files are taken in the order they were dropped
        ready.sort_by_key(|(p, c)| (c.modified, (*p).clone()));
        let Some((path, c)) = ready.first() else { return };
        let path = (*path).clone();
        let give_up_waiting = c.incomplete_since.is_some();
        self.busy = true;
        let (validator, max_bytes) = (Arc::clone(&self.validator), self.settings.max_bytes);
        let store = self.store.clone();
        let read_path = path.clone();
        // a thread of its own, not the blocking pool: a read that never
        // returns must not hold up the runtime's shutdown either
        let (tx, rx) = tokio::sync::oneshot::channel();
        let progress = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let reported = Arc::clone(&progress);
        let spawned = std::thread::Builder::new()
            .name("task-file-read".into())
            .spawn(move || {
                let read = read_file(&read_path, &validator, max_bytes, &store, &reported);
                if let Err(Read::Good(staged, _)) = tx.send(read) {
                    // given up on (READ_DEADLINE): nobody will queue it
                    store.unstage(&staged.batch);
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a thread to read a task file; will try again");
            self.busy = false;
            return;
        }
        wait_while_progressing(rx, progress, READ_DEADLINE)
            .into_actor(self)
            .map(move |read, act, ctx| {
                let read = match read {
                    Ok(Ok(read)) => read,
                    Ok(Err(_)) => Read::Bad(Rejection::one("", "reading the file failed")),
                    Err(_) => {
                        let c = act.candidates.remove(&path);
                        tracing::error!(file = %shown(&path), seconds = READ_DEADLINE.as_secs(),
                            "reading a task file made no progress in time; skipped until it changes");
                        act.stuck
                            .insert(path.clone(), c.map_or((0, None), |c| (c.len, c.modified)));
                        act.busy = false;
                        act.check(ctx);
                        return;
                    }
                };
                match read {
                    Read::Gone => {
                        act.candidates.remove(&path);
                        act.busy = false;
                    }
                    Read::NotRegular(kind) => {
                        // swapped for something else since it was noticed
                        act.candidates.remove(&path);
                        act.never_read(&path, &format!("it is {kind}, not a regular file"));
                        act.busy = false;
                    }
                    Read::Busy => {
                        // Windows: its writer still holds it unshared
                        act.retry_later(&path);
                        act.busy = false;
                    }
                    Read::Incomplete if !give_up_waiting => {
                        // a slow copy: wait for more bytes
                        if let Some(c) = act.candidates.get_mut(&path) {
                            c.incomplete_since = Some(Instant::now());
                            c.closed = false;
                        }
                        act.metrics.task_file_incomplete();
                        act.busy = false;
                    }
                    Read::Incomplete => {
                        let mut r = Rejection::one(
                            "",
                            "the JSON ends too early and the file has not grown since: it is truncated",
                        );
                        r.incomplete = true;
                        act.reject(&path, r);
                        act.busy = false;
                    }
                    Read::Bad(r) => {
                        act.reject(&path, r);
                        act.busy = false;
                    }
                    Read::NotStaged(e) => {
                        tracing::error!(file = %shown(&path), error = %e,
                            "cannot stage a task file in the database; will try again");
                        act.retry_later(&path);
                        act.busy = false;
                    }
                    Read::Good(staged, ingest) => act.submit(path, *staged, ingest, ctx),
                }
                act.check(ctx);
            })
            .spawn(ctx);
    }

    /// Reads the file again once the quiet period has passed.
    fn retry_later(&mut self, path: &Path) {
        if let Some(c) = self.candidates.get_mut(path) {
            c.changed = Instant::now();
            c.closed = false;
        }
    }

    fn submit(&mut self, path: PathBuf, staged: Staged, ingest: Ingest, ctx: &mut Context<Self>) {
        let name = ingest.name.clone();
        let shown = shown(&path);
        for w in &staged.warnings {
            tracing::warn!(file = %shown, "{w}");
        }
        let count = staged.count;
        let sha = ingest.sha256.clone();
        let batch = staged.batch.clone();
        self.queue
            .send(SubmitStaged {
                batch: staged.batch,
                tasks: count,
                ingest: Some(ingest),
                source: name.clone(),
                kernels: staged.kernels,
            })
            .into_actor(self)
            .map(move |reply, act, ctx| {
                act.busy = false;
                match reply {
                    Ok(Ok(Submitted::Queued { .. })) => {
                        tracing::info!(file = %shown, tasks = count, "task file queued");
                        act.metrics.file_ingested();
                        act.move_processed(&path, &name, &sha);
                    }
                    Ok(Ok(Submitted::AlreadyIngested)) => {
                        tracing::info!(file = %shown, "file was queued before a restart; moving it now");
                        act.move_processed(&path, &name, &sha);
                    }
                    Ok(Err(SubmitError::Duplicates(dups))) => {
                        act.reject(&path, duplicates::rejection(&dups));
                    }
                    Ok(Err(SubmitError::Store(e))) => {
                        tracing::error!(file = %shown, error = %e, "cannot queue a task file; will try again");
                        // the failed commit kept what was staged; it is staged again
                        act.store.unstage(&batch);
                        act.retry_later(&path);
                    }
                    Err(e) => {
                        act.store.unstage(&batch);
                        tracing::error!(file = %shown, error = %e, "the task queue is gone");
                    }
                }
                act.check(ctx);
            })
            .spawn(ctx);
    }

    fn move_processed(&mut self, path: &Path, name: &str, sha: &str) {
        self.candidates.remove(path);
        let dest_dir = self.settings.dir.join("processed");
        let dest = unique(
            &dest_dir,
            &format!("{}_{name}", crate::util::time::Utc::now().compact()),
        );
        match fs::create_dir_all(&dest_dir).and_then(|_| fs::rename(path, &dest)) {
            Ok(()) => self.store.ingest_moved(sha, name, &dest.to_string_lossy()),
            Err(e) => tracing::error!(file = %escape_name(OsStr::new(name)), error = %e,
                "queued, but cannot move it to processed/; it will not be queued twice"),
        }
    }

    fn reject(&mut self, path: &Path, rejection: Rejection) {
        self.candidates.remove(path);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("file")
            .to_string();
        let shown = shown(path);
        self.metrics.file_rejected();
        let dir = self.settings.dir.join("rejected");
        // `exists` follows links: a link planted under the name makes a new
        // name be chosen; a dangling one is replaced by the rename, which
        // never writes through a link
        let taken = |p: &Path| fs::symlink_metadata(p).is_ok();
        let dest = if taken(&dir.join(&name)) || taken(&dir.join(format!("{name}.error.txt"))) {
            unique(
                &dir,
                &format!("{}_{name}", crate::util::time::Utc::now().compact()),
            )
        } else {
            dir.join(&name)
        };
        let report_path = PathBuf::from(format!("{}.error.txt", dest.display()));
        tracing::warn!(file = %shown, problems = rejection.problems.len(), summary = %rejection.summary(),
            report = %escape_name(report_path.as_os_str()), "task file rejected");
        let dest_name = escape_name(dest.file_name().unwrap_or(OsStr::new(&name)));
        // Move first, report second: whoever sees the report (a user, a
        // script polling for it) also finds the file gone from the drop folder.
        let result = fs::create_dir_all(&dir)
            .and_then(|_| fs::rename(path, &dest))
            .and_then(|_| {
                crate::util::fs::write_atomic(&report_path, rejection.report(&dest_name).as_bytes())
            });
        match result {
            Ok(()) => self.store.file_rejected(Rejected {
                size: fs::symlink_metadata(&dest).map_or(0, |m| m.len()),
                name,
                stored_as: dest.to_string_lossy().into_owned(),
                problems: rejection.problems.len(),
                summary: rejection.summary(),
                report: report_path.to_string_lossy().into_owned(),
                at: crate::util::time::unix_now(),
            }),
            Err(e) => {
                tracing::error!(file = %shown, error = %e, "cannot move a rejected file to rejected/ or write its report")
            }
        }
    }
}

/// `dir/name`, or `dir/name` with `_1`, `_2`… before the extension if taken.
fn unique(dir: &Path, name: &str) -> PathBuf {
    // a dangling link counts as taken too
    let free = |p: &Path| fs::symlink_metadata(p).is_err();
    let first = dir.join(name);
    if free(&first) {
        return first;
    }
    let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
    (1..)
        .map(|n| dir.join(format!("{stem}_{n}.{ext}")))
        .find(|p| free(p))
        .expect("some name is free")
}

impl Actor for FileWatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        for sub in ["", "processed", "rejected"] {
            let d = self.settings.dir.join(sub);
            if let Err(e) = fs::create_dir_all(&d) {
                tracing::error!(dir = %d.display(), error = %e, "cannot create the task folder");
            }
        }
        // events name absolute paths
        if let Ok(abs) = fs::canonicalize(&self.settings.dir) {
            self.settings.dir = abs;
        }
        let dir = self.settings.dir.clone();
        let me = ctx.address();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event {
                let complete = complete_paths(&event);
                me.do_send(Touched {
                    paths: event.paths,
                    complete,
                });
            }
        });
        match watcher {
            Ok(mut w) => match w.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => self.watcher = Some(w),
                Err(e) => tracing::warn!(error = %e, "cannot watch the task folder; scanning it instead"),
            },
            Err(e) => tracing::warn!(error = %e, "no file watching here; scanning the task folder instead"),
        }
        self.scan();
        let tick = (self.settings.quiet / 4).clamp(Duration::from_millis(10), Duration::from_millis(100));
        ctx.run_interval(tick, |act, ctx| act.check(ctx));
        ctx.run_interval(self.settings.rescan, |act, ctx| {
            act.scan();
            act.check(ctx);
        });
        self.check(ctx);
    }
}

/// Which of an event's paths the event says are complete files: the one
/// its writer closed after writing, or the new name of a rename (a file
/// renamed into the folder was written whole elsewhere first; `notify`
/// reports the new name alone, or after the old one when both are in the
/// folder). Any other event leaves a file to its quiet period.
fn complete_paths(event: &notify::Event) -> Vec<bool> {
    use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
    let n = event.paths.len();
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => vec![true; n],
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => vec![true; n],
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => (0..n).map(|i| i + 1 == n).collect(),
        _ => vec![false; n],
    }
}

/// Sent from notify's thread: something happened to these paths; for
/// each, whether the event says it is complete ([`complete_paths`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Touched {
    pub paths: Vec<PathBuf>,
    pub complete: Vec<bool>,
}

impl Handler<Touched> for FileWatcher {
    type Result = ();
    fn handle(&mut self, msg: Touched, ctx: &mut Self::Context) {
        let mut any_complete = false;
        for (i, p) in msg.paths.into_iter().enumerate() {
            let complete = msg.complete.get(i).copied().unwrap_or(false);
            any_complete |= complete;
            self.note(p, complete);
        }
        if any_complete {
            self.check(ctx);
        }
    }
}

/// Sent by the orchestrator at shutdown: stop taking files.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopWatching;

impl Handler<StopWatching> for FileWatcher {
    type Result = ();
    fn handle(&mut self, _: StopWatching, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests;
