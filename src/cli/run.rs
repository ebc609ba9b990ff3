//! `orquesta run FILE`: an in-process orchestrator on a temporary queue,
//! one batch submitted directly, a wait until every task has ended, and a
//! summary. Ctrl-C stops it cleanly (finished results are still written).

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use super::cluster::LocalWorkers;
use super::orchestrator::OrchestratorArgs;
use super::serve::{init_logging, settings, workers_file};
use crate::actors::results_store::FlushNow;
use crate::actors::task_queue::{LiveCount, SubmitBatch};
use crate::config::{Settings, WorkerEntry};
use crate::model::taskfile::TaskBatch;
use crate::model::{AttemptEnd, TaskStatus};
use crate::store::TaskFilter;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The task file (the seed's format).
    pub file: PathBuf,
    #[command(flatten)]
    pub common: OrchestratorArgs,
}

/// `orquesta run FILE`.
pub fn run(args: &RunArgs) -> ExitCode {
    let mut settings = match settings(&args.common) {
        Ok(s) => s,
        Err(code) => return code,
    };
    // the file first: a bad file should not start anything
    let validator = crate::model::Validator {
        limits: settings.limits,
        test_kernels: settings.test_kernels,
        algorithms: None,
    };
    let bytes = match std::fs::read(&args.file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.file.display());
            return ExitCode::from(2);
        }
    };
    let batch = match crate::model::taskfile::parse_bytes(&bytes, &validator) {
        Ok(b) => b,
        Err(r) => {
            eprintln!(
                "error: {} is not a valid task file; nothing was run:",
                args.file.display()
            );
            for p in &r.problems {
                eprintln!("  - {p}");
            }
            return ExitCode::from(2);
        }
    };
    for w in &batch.warnings {
        eprintln!("warning: {w}");
    }
    let workers = match workers_file(&settings.workers_file) {
        Ok(Some(w)) if !w.is_empty() => w,
        Ok(_) => {
            let cores = crate::util::machine::available_threads();
            let per = (cores / 2).max(1);
            (1..=2)
                .map(|i| WorkerEntry {
                    id: format!("worker{i}"),
                    host: "127.0.0.1".into(),
                    port: 5000 + i,
                    capacity: per,
                    algorithms: crate::sim::algorithm_names()
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                    tls: false,
                })
                .collect()
        }
        Err(code) => return code,
    };
    let state = match tempfile::Builder::new().prefix("orquesta-run-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: cannot make a temporary folder: {e}");
            return ExitCode::FAILURE;
        }
    };
    settings.db_path = state.path().join("queue.db");
    settings.task_queue_dir = state.path().join("task_queues");
    settings.logs_dir = state.path().join("logs");
    if args.common.port.is_none() && std::env::var_os("ORCHESTRATOR_PORT").is_none() {
        settings.port = 0;
    }
    init_logging(&settings);
    let (local, remote): (Vec<WorkerEntry>, Vec<WorkerEntry>) =
        workers.into_iter().partition(|w| w.is_local());
    let (children, mut actual) = match LocalWorkers::start(&local, &settings.logs_dir, true) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    actual.extend(remote);
    let name = args
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("file")
        .to_string();
    let outcome = run_batch(&settings, &actual, batch, &name);
    children.stop(Duration::from_secs(10));
    drop(state);
    match outcome {
        Ok(summary) => {
            print!("{summary}");
            if summary.all_completed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// What `orquesta run` prints at the end.
#[derive(Debug, Default)]
pub struct Summary {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub unfinished: u64,
    pub wall_seconds: f64,
    /// worker → (completed, failed or lost attempts)
    pub per_worker: Vec<(String, u64, u64)>,
    pub failures: Vec<(String, String)>,
    pub results_files: Vec<String>,
    pub interrupted: bool,
}

impl Summary {
    pub fn all_completed(&self) -> bool {
        self.completed == self.total && !self.interrupted
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f)?;
        if self.interrupted {
            writeln!(f, "Interrupted: tasks that had not ended were left unfinished.")?;
        }
        writeln!(f, "{:<12} {:>8}", "tasks", self.total)?;
        writeln!(f, "{:<12} {:>8}", "completed", self.completed)?;
        writeln!(f, "{:<12} {:>8}", "failed", self.failed)?;
        if self.cancelled > 0 {
            writeln!(f, "{:<12} {:>8}", "cancelled", self.cancelled)?;
        }
        if self.unfinished > 0 {
            writeln!(f, "{:<12} {:>8}", "unfinished", self.unfinished)?;
        }
        writeln!(f, "{:<12} {:>8.2} s", "wall time", self.wall_seconds)?;
        if self.wall_seconds > 0.0 {
            writeln!(
                f,
                "{:<12} {:>8.1} tasks/s",
                "throughput",
                self.completed as f64 / self.wall_seconds
            )?;
        }
        writeln!(f)?;
        writeln!(f, "{:<14} {:>10} {:>10}", "worker", "completed", "failed")?;
        for (w, c, x) in &self.per_worker {
            writeln!(f, "{w:<14} {c:>10} {x:>10}")?;
        }
        if !self.failures.is_empty() {
            writeln!(f)?;
            writeln!(f, "Failed tasks:")?;
            for (id, e) in &self.failures {
                writeln!(f, "  {id}: {e}")?;
            }
        }
        if !self.results_files.is_empty() {
            writeln!(f)?;
            writeln!(f, "Results:")?;
            for r in &self.results_files {
                writeln!(f, "  {r}")?;
            }
        }
        Ok(())
    }
}

/// Runs `batch` to the end on `workers` and returns the summary.
pub fn run_batch(
    settings: &Settings,
    workers: &[WorkerEntry],
    batch: TaskBatch,
    name: &str,
) -> Result<Summary, String> {
    actix_rt::System::new().block_on(async move {
        let (started, server) =
            crate::orchestrator::start(settings, workers, false).map_err(|e| e.to_string())?;
        crate::orchestrator::announce(&started);
        let server = actix_rt::spawn(server);
        let t0 = Instant::now();
        let total = batch.tasks.len() as u64;
        eprintln!("running {total} tasks from {name} on {} workers", workers.len());
        started
            .queue
            .send(SubmitBatch {
                tasks: batch.tasks,
                ingest: None,
                source: name.to_string(),
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let mut interrupted = false;
        let signal = crate::util::signal::wait_for_signal();
        futures_util::pin_mut!(signal);
        let mut last_report = Instant::now();
        loop {
            let tick = actix_rt::time::sleep(Duration::from_millis(25));
            futures_util::pin_mut!(tick);
            if let futures_util::future::Either::Left(_) =
                futures_util::future::select(&mut signal, tick).await
            {
                interrupted = true;
                eprintln!("interrupted: stopping");
                break;
            }
            let live = started.queue.send(LiveCount).await.unwrap_or(0);
            if live == 0 {
                break;
            }
            if last_report.elapsed() >= Duration::from_secs(2) {
                last_report = Instant::now();
                eprintln!(
                    "  {} of {total} tasks not ended yet ({:.0} s)",
                    live,
                    t0.elapsed().as_secs_f64()
                );
            }
        }
        let wall = t0.elapsed().as_secs_f64();
        let _ = started.results.send(FlushNow).await;
        let read = std::sync::Arc::clone(&started.read);
        let summary = actix_rt::task::spawn_blocking(move || -> Result<Summary, String> {
            let (by_status, _) = read.counts().map_err(|e| e.to_string())?;
            let count = |s: TaskStatus| by_status.iter().find(|(k, _)| *k == s).map_or(0, |(_, n)| *n);
            let mut per_worker: Vec<(String, u64, u64)> = Vec::new();
            for (w, outcome, n) in read.by_worker().map_err(|e| e.to_string())? {
                let row = match per_worker.iter_mut().find(|r| r.0 == w) {
                    Some(r) => r,
                    None => {
                        per_worker.push((w.clone(), 0, 0));
                        per_worker.last_mut().expect("just pushed")
                    }
                };
                match outcome {
                    Some(AttemptEnd::Completed) => row.1 += n,
                    Some(AttemptEnd::Failed | AttemptEnd::Lost) => row.2 += n,
                    _ => {}
                }
            }
            let failed = TaskFilter {
                status: Some(TaskStatus::Failed),
                ..TaskFilter::default()
            };
            let (failures, _) = read.tasks(&failed, 20, 0).map_err(|e| e.to_string())?;
            Ok(Summary {
                total,
                completed: count(TaskStatus::Completed),
                failed: count(TaskStatus::Failed),
                cancelled: count(TaskStatus::Cancelled),
                unfinished: count(TaskStatus::Queued) + count(TaskStatus::Running),
                wall_seconds: wall,
                per_worker,
                failures: failures
                    .into_iter()
                    .map(|t| (t.task_id, t.error.unwrap_or_default()))
                    .collect(),
                results_files: read.results_files().map_err(|e| e.to_string())?,
                interrupted,
            })
        })
        .await
        .map_err(|e| e.to_string())??;
        crate::orchestrator::shutdown(&started).await;
        let _ = server.await;
        Ok(summary)
    })
}
