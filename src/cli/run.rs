//! `orquesta run FILE`: an in-process orchestrator on a temporary queue,
//! one batch submitted directly, a wait until every task has ended, and a
//! summary. Ctrl-C stops it cleanly (finished results are still written).
//!
//! Everything but the results lives in a temporary folder (queue
//! database, drop folder, logs, the workers' state), so a run never takes
//! a running cluster's lock nor touches its files, even from the same
//! folder; the results go to `--results DIR` (default `results/`), said at
//! the start and in the summary. The terminal shows progress and failures
//! as they happen ([`crate::cli::console`]); `--verbose` adds every log line.

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use std::io::IsTerminal;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use clap::Args;

use super::cluster::{Echo, LocalWorkers};
use super::console::events::{self, ConsoleEvent};
use super::console::live::{Live, TICK};
use super::console::summary::{tasks_by_worker, worker_table, WorkerTasks};
use super::console::{plural, Console};
use super::orchestrator::OrchestratorArgs;
use super::serve::{settings, workers_file};
use crate::model::taskfile::TaskBatch;
use crate::model::TaskStatus;
use crate::orchestrator::config::{Settings, WorkerEntry};
use crate::orchestrator::results_store::FlushNow;
use crate::orchestrator::store::TaskFilter;
use crate::orchestrator::task_queue::{LiveCount, SubmitBatch};
use crate::util::logging::init_with;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The task file (the seed's format).
    pub file: PathBuf,
    /// Where the results files go [default: RESULTS_STORAGE_PATH, or results/].
    #[arg(long, value_name = "DIR")]
    pub results: Option<PathBuf>,
    /// Echo every log line of the orchestrator and the workers here too.
    #[arg(short, long)]
    pub verbose: bool,
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
    if let Some(dir) = &args.results {
        settings.results_dir = dir.clone();
    }
    if args.common.port.is_none() && std::env::var_os("ORCHESTRATOR_PORT").is_none() {
        settings.port = 0;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let file = settings.logs_dir.join("elastic_orchestrator.log");
    if let Some(w) = init_with(
        Some(&file),
        &settings.log,
        None,
        events::stdout(args.verbose),
        Some(events::layer(tx)),
    ) {
        eprintln!("warning: {w}");
    }
    let (local, remote): (Vec<WorkerEntry>, Vec<WorkerEntry>) =
        workers.into_iter().partition(|w| w.is_local());
    let echo = if args.verbose { Echo::All } else { Echo::Warnings };
    let (children, mut actual) = match LocalWorkers::start(&local, &settings.logs_dir, true, echo) {
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
    let outcome = run_batch(&settings, &actual, batch, &name, rx);
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
    /// Tasks completed and failed on each worker.
    pub per_worker: Vec<WorkerTasks>,
    pub failures: Vec<(String, String)>,
    /// The folder results go to (`--results`).
    pub results_dir: PathBuf,
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
        worker_table(f, &self.per_worker)?;
        if !self.failures.is_empty() {
            writeln!(f)?;
            writeln!(f, "Failed tasks:")?;
            for (id, e) in &self.failures {
                writeln!(f, "  {id}: {e}")?;
            }
        }
        writeln!(f)?;
        if self.results_files.is_empty() {
            writeln!(f, "Results: none written to {}", self.results_dir.display())?;
        } else {
            writeln!(f, "Results (in {}):", self.results_dir.display())?;
            for r in &self.results_files {
                writeln!(f, "  {r}")?;
            }
        }
        Ok(())
    }
}

/// Runs `batch` to the end on `workers` and returns the summary; the
/// console shows its progress and failures meanwhile (`events`: from the
/// log layer, see [`events::layer`]).
pub fn run_batch(
    settings: &Settings,
    workers: &[WorkerEntry],
    batch: TaskBatch,
    name: &str,
    events: Receiver<ConsoleEvent>,
) -> Result<Summary, String> {
    actix_rt::System::new().block_on(async move {
        let (started, server) =
            crate::orchestrator::start(settings, workers, false).map_err(|e| e.to_string())?;
        crate::orchestrator::announce(&started);
        let server = actix_rt::spawn(server);
        let t0 = Instant::now();
        let total = batch.tasks.len() as u64;
        let stdout = std::io::stdout();
        let tty = stdout.is_terminal();
        let mut live = Live::new(
            Console::new(stdout, tty),
            events,
            started.board.clone(),
            Arc::clone(&started.read),
        );
        live.console.line(&format!(
            "orquesta run: {total} task{} from {name} on {} worker{}",
            plural(total),
            workers.len(),
            plural(workers.len() as u64)
        ));
        live.console
            .line(&format!("  results go to  {}", settings.results_dir.display()));
        live.console.line(&format!(
            "  logs           {} (a temporary folder, removed at the end; --verbose shows every line here)",
            settings.logs_dir.display()
        ));
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
        // the batch begins on the console now, however short it is
        live.tick().await;
        let mut interrupted = false;
        let signal = crate::util::signal::wait_for_signal();
        futures_util::pin_mut!(signal);
        let mut last_tick = Instant::now();
        loop {
            let tick = actix_rt::time::sleep(Duration::from_millis(25));
            futures_util::pin_mut!(tick);
            if let futures_util::future::Either::Left(_) =
                futures_util::future::select(&mut signal, tick).await
            {
                interrupted = true;
                live.console.line("interrupted: stopping");
                break;
            }
            let left = started.queue.send(LiveCount).await.unwrap_or(0);
            if left == 0 {
                break;
            }
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                live.tick().await;
            }
        }
        live.tick().await;
        live.console.finish();
        let wall = t0.elapsed().as_secs_f64();
        let _ = started.results.send(FlushNow).await;
        let read = Arc::clone(&started.read);
        let worker_ids: Vec<String> = workers.iter().map(|w| w.id.clone()).collect();
        let results_dir = settings.results_dir.clone();
        let summary = actix_rt::task::spawn_blocking(move || -> Result<Summary, String> {
            let (by_status, _) = read.counts().map_err(|e| e.to_string())?;
            let count = |s: TaskStatus| by_status.iter().find(|(k, _)| *k == s).map_or(0, |(_, n)| *n);
            let per_worker = tasks_by_worker(&read, &worker_ids).map_err(|e| e.to_string())?;
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
                    .map(|t| (t.task_id.to_string(), t.error.unwrap_or_default()))
                    .collect(),
                results_dir,
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
