//! ResultsStore: writes results in the seed's shape to
//! `results/task_results_<YYYYMMDD_HHMMSS>[_<n>].json`, one file per flush
//! window, each completed task in exactly one file once; the records of
//! failed and cancelled tasks to `task_failures_<…>.json` the same way
//! ([`failures`]); refreshes `results/orchestrator_stats.json` and
//! `logs/worker_state.json`.
//!
//! Exactly once, across crashes: a file's name is committed with its task
//! ids before the file is written (temp file + rename), and marked written
//! after. On restart a result whose file exists is marked written; one
//! whose file does not is written again. A corrected result replaces the
//! wrong record in its file ([`corrections`]).

mod corrections;
mod failures;
mod trim;

use std::path::{Path, PathBuf};
use std::time::Duration;

use actix::prelude::*;
use serde_json::{json, Value};

use super::task_queue::QueueStats;
pub use super::task_queue::RecordResult;
use crate::model::{TaskId, TaskResult};
use crate::orchestrator::membership::Workers;
use crate::orchestrator::metrics::OrchestratorMetrics;
use crate::orchestrator::store::{ReadPool, Store, Unwritten};
use crate::util::fs::{temp_beside, write_atomic};
use crate::util::trace::{self, Stage};

pub use super::task_queue::FailuresPending;
use failures::FailuresState;

pub struct ResultsStore {
    store: Store,
    results_dir: PathBuf,
    logs_dir: PathBuf,
    flush_interval: Duration,
    buffer: Vec<TaskResult>,
    /// Corrected results waiting to take the place of the wrong records
    /// (`corrections.rs`).
    corrections: Vec<TaskResult>,
    flushing: bool,
    /// `FlushNow` callers waiting for the buffer to reach disk.
    waiters: Vec<tokio::sync::oneshot::Sender<()>>,
    /// Set once wired: where the stats come from.
    sources: Option<(
        Recipient<QueueStats>,
        Recipient<Workers>,
        std::sync::Arc<ReadPool>,
    )>,
    files_written: u64,
    last_file: Option<String>,
    failures: FailuresState,
    balancing: &'static str,
    /// Counts the flush ticks that found nothing left to write.
    metrics: Option<std::sync::Arc<OrchestratorMetrics>>,
    /// When a drain gives freed memory back.
    trim: trim::DrainTrim,
    /// The queue drained while a file was being written: write what came
    /// since as soon as that write ends, not at the next tick.
    drained_meanwhile: bool,
}

impl ResultsStore {
    pub fn new(
        store: Store,
        results_dir: &Path,
        logs_dir: &Path,
        flush_interval: Duration,
        balancing: &'static str,
    ) -> Self {
        Self {
            store,
            results_dir: results_dir.to_path_buf(),
            logs_dir: logs_dir.to_path_buf(),
            flush_interval,
            buffer: Vec::new(),
            corrections: Vec::new(),
            flushing: false,
            waiters: Vec::new(),
            sources: None,
            files_written: 0,
            last_file: None,
            // whatever a crash left waiting is claimed at the first tick
            failures: FailuresState {
                pending: true,
                ..FailuresState::default()
            },
            balancing,
            metrics: None,
            trim: trim::DrainTrim::default(),
            drained_meanwhile: false,
        }
    }

    /// A file name not used yet: `<kind>_<ts>.json`, then `_1`, `_2`…
    /// (`last`: the name this kind used last, which may not be on disk yet).
    fn next_file(&self, kind: &str, last: Option<&str>) -> PathBuf {
        let stamp = crate::util::time::Utc::now().compact();
        let mut n = 0;
        loop {
            let name = if n == 0 {
                format!("{kind}_{stamp}.json")
            } else {
                format!("{kind}_{stamp}_{n}.json")
            };
            let path = self.results_dir.join(&name);
            if !path.exists() && last != Some(name.as_str()) {
                return path;
            }
            n += 1;
        }
    }

    /// Nothing buffered or being written, no failure record waiting.
    fn idle(&self) -> bool {
        self.buffer.is_empty()
            && self.corrections.is_empty()
            && !self.flushing
            && !self.failures.flushing
            && !self.failures.pending
    }

    /// Where its flush ticks are counted (`GET /metrics/prometheus`).
    pub fn with_metrics(mut self, metrics: std::sync::Arc<OrchestratorMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Answers the `FlushNow` callers once nothing received is left to
    /// write (failure records whose write failed are retried at the next
    /// tick rather than holding a shutdown).
    fn answer_waiters(&mut self) {
        if self.buffer.is_empty() && !self.flushing && !self.failures.flushing {
            for w in self.waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }

    /// Writes the buffered results to a new file.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing {
            return; // the running flush flushes again when it ends
        }
        if self.buffer.is_empty() {
            self.answer_waiters();
            return;
        }
        self.flushing = true;
        self.drained_meanwhile = false;
        let results = std::mem::take(&mut self.buffer);
        let path = self.next_file("task_results", self.last_file.as_deref());
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        self.last_file = Some(name.clone());
        let ids: Vec<TaskId> = results.iter().map(|r| r.task_id.clone()).collect();
        // each id in the log with its results file (see util::trace);
        // noted now, the ids go to the store
        let recorded: Vec<TaskId> = if trace::enabled() { ids.clone() } else { Vec::new() };
        let store = self.store.clone();
        let file_key = path.to_string_lossy().into_owned();
        async move {
            let start = std::time::Instant::now();
            let count = results.len();
            // the file is written beside its name while the store records
            // which results go in it, and takes its name only once that is
            // committed: a crash before leaves the results unwritten (a
            // restart writes them), never in a file the store does not know
            let write_path = path.clone();
            let write = actix_rt::task::spawn_blocking(move || {
                let text = match serde_json::to_vec_pretty(&results) {
                    Ok(t) => t,
                    Err(e) => return (results, Err(e.to_string())),
                };
                let temp = temp_beside(&write_path, &text).map_err(|e| format!("{}: {e}", write_path.display()));
                (results, temp)
            });
            let (assigned, write) =
                futures_util::future::join(store.assign_results_file(ids, &file_key), write).await;
            let (results, temp) = match write {
                Ok(done) => done,
                Err(e) => return Err((e.to_string(), Vec::new())),
            };
            if let Err(e) = assigned {
                return Err((e.to_string(), results));
            }
            let temp = match temp {
                Ok(t) => t,
                Err(e) => return Err((e, results)),
            };
            let named = path.clone();
            let written = actix_rt::task::spawn_blocking(move || match temp.persist(&named) {
                Ok(_) => Ok(()),
                Err(e) => Err((format!("{}: {}", named.display(), e.error), results)),
            })
            .await;
            match written {
                Ok(Ok(())) => {
                    let on_disk = start.elapsed();
                    // committed before anyone waiting on FlushNow hears back
                    if let Err(e) = store.mark_written(&file_key).await {
                        tracing::error!(error = %e, "cannot mark a results file written; a restart checks the file");
                    }
                    Ok((count, [on_disk, start.elapsed() - on_disk]))
                }
                Ok(Err(e)) => Err(e),
                Err(e) => Err((e.to_string(), Vec::new())),
            }
        }
        .into_actor(self)
        .map(move |res, act, ctx| {
            act.flushing = false;
            match res {
                Ok((count, [write, mark])) => {
                    act.files_written += 1;
                    trace::note(Stage::Recorded, &name, &recorded);
                    // on a slow disk or a busy database, where the time went
                    let ms = |d: Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
                    tracing::info!(file = %name, results = count, write_ms = ms(write), mark_ms = ms(mark),
                        "results written");
                    if act.buffer.is_empty() && act.trim.take_due() {
                        trim::give_back();
                    }
                }
                Err((e, results)) => {
                    tracing::error!(error = %e, "cannot write a results file; will retry");
                    act.buffer.extend(results);
                }
            }
            if !act.waiters.is_empty() || act.drained_meanwhile {
                act.flush(ctx);
            }
        })
        .spawn(ctx);
    }

    /// Refreshes `orchestrator_stats.json` and `logs/worker_state.json`.
    fn write_stats(&mut self, ctx: &mut Context<Self>) {
        let Some((queue, lb, read)) = self.sources.clone() else {
            return;
        };
        let stats_path = self.results_dir.join("orchestrator_stats.json");
        let workers_path = self.logs_dir.join("worker_state.json");
        let files = self.files_written;
        let failures_files = self.failures.files_written;
        let balancing = self.balancing;
        async move {
            let live = queue.send(QueueStats).await.ok()?;
            let workers = lb.send(Workers).await.ok()?;
            let counts = actix_rt::task::spawn_blocking(move || read.counts())
                .await
                .ok()?
                .ok();
            let now = crate::util::time::now_iso();
            let by_status: Value = counts
                .as_ref()
                .map(|(s, _)| {
                    Value::Object(
                        s.iter()
                            .map(|(k, v)| (k.as_str().to_string(), json!(v)))
                            .collect(),
                    )
                })
                .unwrap_or(Value::Null);
            let stats = json!({
                "updated_at": now,
                "tasks_by_status": by_status,
                "live": live,
                "workers": workers.iter().map(|w| json!({
                    "id": w.id, "state": w.state, "in_flight": w.in_flight, "capacity": w.capacity,
                    "tasks_completed": w.tasks_completed, "tasks_failed": w.tasks_failed,
                    "mean_execution_time": w.mean_execution_time,
                })).collect::<Vec<_>>(),
                "results_files_written": files,
                "failures_files_written": failures_files,
                "load_balancing_algorithm": balancing,
            });
            let state = json!({"updated_at": now, "workers": workers});
            actix_rt::task::spawn_blocking(move || {
                if let Err(e) = write_atomic(
                    &stats_path,
                    &serde_json::to_vec_pretty(&stats).unwrap_or_default(),
                ) {
                    tracing::warn!(error = %e, "cannot write orchestrator_stats.json");
                }
                if let Err(e) = write_atomic(
                    &workers_path,
                    &serde_json::to_vec_pretty(&state).unwrap_or_default(),
                ) {
                    tracing::warn!(error = %e, "cannot write worker_state.json");
                }
            })
            .await
            .ok()
        }
        .into_actor(self)
        .map(|_, _, _| ())
        .spawn(ctx);
    }
}

impl Actor for ResultsStore {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.flush_interval, |act, ctx| {
            act.apply_corrections(ctx);
            act.flush(ctx);
            act.flush_failures(ctx);
            // nothing left to write: everything received before this tick
            // is on disk (a tick that starts a write counts at the next one)
            if act.idle() {
                if let Some(m) = &act.metrics {
                    m.results_flush_tick();
                }
            }
        });
        ctx.run_interval(Duration::from_secs(2), |act, ctx| act.write_stats(ctx));
    }
}

impl Handler<RecordResult> for ResultsStore {
    type Result = ();
    fn handle(&mut self, msg: RecordResult, ctx: &mut Self::Context) {
        if corrections::is_correction(&msg.result) {
            self.corrections.push(msg.result);
            return;
        }
        self.buffer.push(msg.result);
        // the last results of a drain are written at once, even when a
        // write is under way (then right after it); a very large backlog
        // is written at once rather than per window
        self.drained_meanwhile |= msg.drained && self.flushing;
        if msg.drained || self.buffer.len() >= 100_000 {
            self.flush(ctx);
        }
        self.trim.recorded(msg.drained);
    }
}

/// Sent at start-up: where stats come from.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WireStats {
    pub queue: Recipient<QueueStats>,
    pub lb: Recipient<Workers>,
    pub read: std::sync::Arc<ReadPool>,
}

impl Handler<WireStats> for ResultsStore {
    type Result = ();
    fn handle(&mut self, msg: WireStats, ctx: &mut Self::Context) {
        self.sources = Some((msg.queue, msg.lb, msg.read));
        self.write_stats(ctx);
    }
}

/// Sent at start-up with completed results not yet in a file.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RecoverResults {
    pub unwritten: Vec<Unwritten>,
}

impl Handler<RecoverResults> for ResultsStore {
    type Result = ();
    fn handle(&mut self, msg: RecoverResults, _: &mut Self::Context) {
        let mut written_files = std::collections::BTreeSet::new();
        let mut again = 0;
        for Unwritten {
            task_id,
            result: json,
            file,
        } in msg.unwritten
        {
            match file {
                // the rename happened: the file holds it (a correction
                // committed before a crash takes the wrong record's place)
                Some(f) if Path::new(&f).exists() => {
                    if let Ok(r) = serde_json::from_str::<TaskResult>(&json) {
                        if corrections::is_correction(&r) {
                            if let Err(e) = corrections::rewrite_record(Path::new(&f), &r) {
                                tracing::error!(task = %task_id, error = %e, "cannot rewrite a results file with a corrected result");
                            }
                        }
                    }
                    written_files.insert(f);
                }
                _ => match serde_json::from_str::<TaskResult>(&json) {
                    Ok(r) => {
                        again += 1;
                        self.buffer.push(r);
                    }
                    Err(e) => tracing::error!(task = %task_id, error = %e, "a stored result cannot be read"),
                },
            }
        }
        for f in written_files {
            self.store.mark_written_later(&f);
        }
        if again > 0 {
            tracing::info!(
                results = again,
                "results from before the restart will be written now"
            );
        }
    }
}

/// Sent at shutdown and by `orquesta run`: write what is buffered now;
/// answers when everything received so far is on disk.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushNow;

impl Handler<FlushNow> for ResultsStore {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: FlushNow, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.waiters.push(tx);
        self.apply_corrections(ctx);
        self.flush_failures(ctx);
        self.flush(ctx);
        self.write_stats(ctx);
        Box::pin(
            async move {
                let _ = rx.await;
            }
            .into_actor(self),
        )
    }
}

/// Sent by `orquesta run` before it exits: anything still buffered or
/// being written?
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Idle;

impl Handler<Idle> for ResultsStore {
    type Result = bool;
    fn handle(&mut self, _: Idle, _: &mut Self::Context) -> bool {
        self.idle()
    }
}

#[cfg(test)]
mod tests;
