//! Results a worker keeps until the orchestrator acknowledges them
//! (DESIGN.md protocol: `GET/DELETE /results/{task_id}`), for at least the
//! retention time and up to a bounded count, and across a restart: every
//! result and acknowledgement is appended to a journal file that is
//! replayed and compacted at start.
//!
//! Results are keyed by (task id, attempt id): a run posted by hand
//! without an attempt id (or with another one) sits beside the result of
//! the orchestrator's attempt and never replaces it, and a pickup prefers
//! a result that carries an attempt id (the orchestrator checks it is the
//! one it issued).
//!
//! The journal is written by its own thread, so the Executor never waits
//! on the disk. Lines are flushed as soon as the thread is idle; a result
//! lost in a crash before that is re-run by the orchestrator (execution is
//! at-least-once).

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::model::{TaskId, TaskResult};

/// One journal line, as read back.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Entry {
    /// A finished result and when it finished (seconds since the epoch).
    Result {
        at: f64,
        result: Box<TaskResult>,
    },
    Ack {
        task_id: TaskId,
    },
}

/// The same lines, written without copying the result.
#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum EntryRef<'a> {
    Result { at: f64, result: &'a TaskResult },
    Ack { task_id: &'a str },
}

enum Command {
    Append(String),
    /// Rewrite the journal with exactly these lines.
    Compact(Vec<String>),
    Flush(std::sync::mpsc::Sender<()>),
}

/// One held result: its insertion number, when it finished, the result.
struct Held {
    seq: u64,
    at: f64,
    result: Arc<TaskResult>,
}

/// The held results and the journal behind them.
pub struct HeldResults {
    /// Per task, one result per attempt id (`None`: a run without one).
    by_task: HashMap<TaskId, Vec<Held>>,
    /// How many results `by_task` holds.
    count: usize,
    /// Insertion order, for eviction; stale entries are skipped lazily.
    order: VecDeque<(u64, TaskId)>,
    next_seq: u64,
    max_count: usize,
    retention: Duration,
    journal: Option<mpsc::Sender<Command>>,
    journal_lines: usize,
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl HeldResults {
    /// Results held in memory only (tests, or a folder that cannot be written).
    pub fn in_memory(max_count: usize, retention: Duration) -> Self {
        Self {
            by_task: HashMap::new(),
            count: 0,
            order: VecDeque::new(),
            next_seq: 0,
            max_count,
            retention,
            journal: None,
            journal_lines: 0,
        }
    }

    /// Replays the journal at `path` (if any), drops what expired, rewrites
    /// it compacted, and keeps appending to it.
    pub fn open(path: &Path, max_count: usize, retention: Duration) -> std::io::Result<Self> {
        let mut held = Self::in_memory(max_count, retention);
        if let Ok(file) = File::open(path) {
            for line in BufReader::new(file).lines() {
                let Ok(line) = line else { break };
                // a torn last line after a crash is skipped
                match serde_json::from_str::<Entry>(&line) {
                    Ok(Entry::Result { at, result }) => held.insert_at(at, Arc::from(result)),
                    Ok(Entry::Ack { task_id }) => {
                        held.remove_task(task_id.as_str());
                    }
                    Err(_) => continue,
                }
            }
        }
        held.expire();
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let lines = held.snapshot_lines();
        held.journal_lines = lines.len();
        rewrite(path, &lines)?;
        held.journal = Some(spawn_writer(path.to_path_buf())?);
        Ok(held)
    }

    fn snapshot_lines(&self) -> Vec<String> {
        let mut live: Vec<&Held> = self.by_task.values().flatten().collect();
        live.sort_by_key(|h| h.seq);
        live.iter()
            .filter_map(|h| {
                serde_json::to_string(&EntryRef::Result {
                    at: h.at,
                    result: &h.result,
                })
                .ok()
            })
            .collect()
    }

    fn insert_at(&mut self, at: f64, result: Arc<TaskResult>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let task_id = result.task_id.clone();
        self.order.push_back((seq, task_id.clone()));
        let slots = self.by_task.entry(task_id).or_default();
        // the same attempt again replaces its own result only
        let before = slots.len();
        slots.retain(|h| h.result.attempt_id != result.attempt_id);
        self.count -= before - slots.len();
        slots.push(Held { seq, at, result });
        self.count += 1;
        while self.count > self.max_count {
            self.evict_oldest();
        }
    }

    /// Removes the result inserted as `seq` of `task_id`; false if it was
    /// replaced or freed since (a stale entry of `order`).
    fn remove_seq(&mut self, seq: u64, task_id: &str) -> bool {
        let Some(slots) = self.by_task.get_mut(task_id) else {
            return false;
        };
        let before = slots.len();
        slots.retain(|h| h.seq != seq);
        let removed = before != slots.len();
        if slots.is_empty() {
            self.by_task.remove(task_id);
        }
        if removed {
            self.count -= 1;
        }
        removed
    }

    /// Frees every result of a task; true if any was held.
    fn remove_task(&mut self, task_id: &str) -> bool {
        match self.by_task.remove(task_id) {
            Some(slots) => {
                self.count -= slots.len();
                true
            }
            None => false,
        }
    }

    fn evict_oldest(&mut self) {
        while let Some((seq, id)) = self.order.pop_front() {
            if self.remove_seq(seq, id.as_str()) {
                return;
            }
        }
    }

    /// Keeps `result` for pickup, replacing an older one of the same task
    /// and attempt id.
    pub fn insert(&mut self, result: Arc<TaskResult>) {
        let at = now_secs();
        self.append(&EntryRef::Result { at, result: &result });
        self.insert_at(at, result);
        self.maybe_compact();
    }

    /// Queues one journal line (nothing when held in memory only).
    fn append(&mut self, entry: &EntryRef<'_>) {
        if let Some(tx) = &self.journal {
            if let Ok(line) = serde_json::to_string(entry) {
                let _ = tx.send(Command::Append(line));
                self.journal_lines += 1;
            }
        }
    }

    /// The result to hand out for a task: the latest one that carries an
    /// attempt id, else the one run without.
    pub fn get(&self, task_id: &str) -> Option<Arc<TaskResult>> {
        let slots = self.by_task.get(task_id)?;
        slots
            .iter()
            .filter(|h| h.result.attempt_id.is_some())
            .max_by_key(|h| h.seq)
            .or_else(|| slots.iter().max_by_key(|h| h.seq))
            .map(|h| Arc::clone(&h.result))
    }

    /// Acknowledges (frees) a task's results; true if any was held.
    pub fn ack(&mut self, task_id: &str) -> bool {
        let held = self.remove_task(task_id);
        if held {
            self.append(&EntryRef::Ack { task_id });
            self.maybe_compact();
        }
        held
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Drops results held longer than the retention time.
    pub fn expire(&mut self) {
        let oldest_kept = now_secs() - self.retention.as_secs_f64();
        while let Some((seq, id)) = self.order.front().cloned() {
            let held_at = self
                .by_task
                .get(&id)
                .and_then(|slots| slots.iter().find(|h| h.seq == seq))
                .map(|h| h.at);
            if held_at.is_some_and(|at| at >= oldest_kept) {
                break;
            }
            self.order.pop_front();
            if held_at.is_some() {
                self.remove_seq(seq, id.as_str());
            }
        }
    }

    /// Rewrites the journal when it holds far more lines than live results.
    fn maybe_compact(&mut self) {
        if self.journal_lines > 4 * self.count + 10_000 {
            if let Some(tx) = &self.journal {
                let lines = self.snapshot_lines();
                self.journal_lines = lines.len();
                let _ = tx.send(Command::Compact(lines));
            }
        }
    }

    /// Blocks until everything sent so far is on disk (shutdown only).
    pub fn flush(&self) {
        if let Some(tx) = &self.journal {
            let (done_tx, done_rx) = mpsc::channel();
            if tx.send(Command::Flush(done_tx)).is_ok() {
                let _ = done_rx.recv_timeout(Duration::from_secs(5));
            }
        }
    }
}

fn rewrite(path: &Path, lines: &[String]) -> std::io::Result<()> {
    let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    crate::util::fs::write_atomic(path, text.as_bytes())
}

fn spawn_writer(path: PathBuf) -> std::io::Result<mpsc::Sender<Command>> {
    let open = |path: &Path| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(BufWriter::new)
    };
    let mut out = open(&path)?;
    let (tx, rx) = mpsc::channel::<Command>();
    std::thread::Builder::new()
        .name("result-journal".into())
        .spawn(move || {
            let handle = |cmd: Command, out: &mut BufWriter<File>| match cmd {
                Command::Append(line) => {
                    let _ = writeln!(out, "{line}");
                }
                Command::Compact(lines) => {
                    let _ = out.flush();
                    if rewrite(&path, &lines).is_ok() {
                        if let Ok(fresh) = open(&path) {
                            *out = fresh;
                        }
                    }
                }
                Command::Flush(done) => {
                    let _ = out.flush();
                    let _ = done.send(());
                }
            };
            while let Ok(cmd) = rx.recv() {
                handle(cmd, &mut out);
                // drain what is queued, then flush once
                while let Ok(cmd) = rx.try_recv() {
                    handle(cmd, &mut out);
                }
                if let Err(e) = out.flush() {
                    tracing::warn!(error = %e, "cannot write the result journal");
                }
            }
        })?;
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::ResultBody;

    fn result(id: &str) -> Arc<TaskResult> {
        attempt(id, Some(1), "ok")
    }

    fn attempt(id: &str, attempt_id: Option<u64>, output: &str) -> Arc<TaskResult> {
        Arc::new(TaskResult {
            task_id: id.into(),
            algorithm: "python".into(),
            parameters: json!({}),
            execution_time: 0.5,
            result: ResultBody {
                status: crate::model::RunStatus::Completed,
                metrics: json!({}),
                output: output.into(),
                error: None,
            },
            worker_id: None,
            completed_at: None,
            priority: None,
            attempt_id: attempt_id.map(Into::into),
            resumed_from_step: None,
            effective_parameters: None,
            description: None,
            source: None,
            extra: Default::default(),
        })
    }

    #[test]
    fn survives_a_restart_without_acknowledged_results() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("held.jsonl");
        {
            let mut held = HeldResults::open(&path, 100, Duration::from_secs(3600)).unwrap();
            held.insert(result("a"));
            held.insert(result("b"));
            assert!(held.ack("a"));
            assert!(!held.ack("zzz"));
            held.flush();
        }
        // a torn line, as a crash mid-write leaves
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"result\": {\"at\": 1").unwrap();
        drop(f);
        let held = HeldResults::open(&path, 100, Duration::from_secs(3600)).unwrap();
        assert!(held.get("a").is_none());
        assert_eq!(held.get("b").unwrap().attempt_id, Some(1.into()));
        assert_eq!(held.len(), 1);
    }

    #[test]
    fn the_count_is_bounded_oldest_first() {
        let mut held = HeldResults::in_memory(2, Duration::from_secs(3600));
        for id in ["a", "b", "c"] {
            held.insert(result(id));
        }
        assert!(held.get("a").is_none());
        assert!(held.get("b").is_some() && held.get("c").is_some());
        // replacing a result moves it to the back
        held.insert(result("b"));
        held.insert(result("d"));
        assert!(held.get("c").is_none() && held.get("b").is_some());
    }

    #[test]
    fn expired_results_are_dropped() {
        let mut held = HeldResults::in_memory(10, Duration::ZERO);
        held.insert(result("a"));
        std::thread::sleep(Duration::from_millis(5));
        held.expire();
        assert!(held.is_empty());
    }

    #[test]
    fn a_run_without_an_attempt_id_never_replaces_one_with() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("held.jsonl");
        {
            let mut held = HeldResults::open(&path, 100, Duration::from_secs(3600)).unwrap();
            held.insert(attempt("a", Some(7), "real"));
            held.insert(attempt("a", None, "by hand"));
            assert_eq!(held.len(), 2);
            assert_eq!(held.get("a").unwrap().result.output, "real");
            // the same attempt again replaces its own result
            held.insert(attempt("a", Some(7), "real, again"));
            assert_eq!(held.len(), 2);
            held.flush();
        }
        // and across a restart
        let mut held = HeldResults::open(&path, 100, Duration::from_secs(3600)).unwrap();
        assert_eq!(held.get("a").unwrap().result.output, "real, again");
        assert_eq!(held.get("a").unwrap().attempt_id, Some(7.into()));
        assert!(held.ack("a"));
        assert!(held.is_empty());
        // alone, a run without an attempt id is still handed out (a curl user)
        held.insert(attempt("b", None, "by hand"));
        assert_eq!(held.get("b").unwrap().result.output, "by hand");
    }
}
