//! `orquesta up`: the orchestrator plus a worker process for every entry
//! of the workers file on this machine, a local cluster in one command.
//! The workers follow the file while `up` runs: one added is started, one
//! removed is stopped once drained, one changed is started again.
//! A worker already running on its port is adopted; the workers die with
//! `up`, even a SIGKILLed one; Ctrl-C says what it waits for, and a
//! second Ctrl-C stops at once.
//!
//! The terminal shows what a person needs ([`crate::cli::console`]):
//! where things are, workers as they change, files taken and rejected,
//! progress, failures, and a summary when `up` stops. Every line of every
//! process stays in the log files; `--verbose` also echoes them here.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;

use super::cluster::{Echo, LocalWorkers};
use super::console::events::{self, ConsoleEvent};
use super::console::live::{self, Live, TICK};
use super::console::summary::{self, SessionSummary};
use super::console::Console;
use super::orchestrator::OrchestratorArgs;
use super::serve::{required_workers, served, settings};
use crate::orchestrator::board::WorkerBoard;
use crate::orchestrator::config::{Settings, WorkerEntry};
use crate::orchestrator::{FolderLocks, OrchestratorError, Started};
use crate::protocol::MemberSource;

#[derive(Args, Debug, Clone, Default)]
pub struct UpArgs {
    #[command(flatten)]
    pub common: OrchestratorArgs,
    /// Echo every log line of the orchestrator and the workers here too
    /// (they are always in the log files).
    #[arg(short, long)]
    pub verbose: bool,
}

/// `orquesta up`: local workers as child processes, then the orchestrator.
pub fn run(args: &UpArgs) -> ExitCode {
    crate::util::platform::count_stop_requests();
    let settings = match settings(&args.common) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let workers = match required_workers(&settings) {
        Ok(w) => w,
        Err(code) => return code,
    };
    let (tx, rx) = mpsc::channel();
    init_logging(&settings, args.verbose, tx);
    let local: Vec<WorkerEntry> = workers.iter().filter(|w| w.is_local()).cloned().collect();
    for w in workers.iter().filter(|w| !w.is_local()) {
        tracing::info!(worker = %w.id, address = %w.address(), "remote worker: start it on its own machine");
        println!(
            "worker {} is remote ({}): start it on its own machine",
            w.id,
            w.address()
        );
    }
    // a second copy is refused here, before it adopts or starts a worker
    let lock = match crate::orchestrator::FolderLocks::acquire(&settings, true) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let echo = if args.verbose { Echo::All } else { Echo::Warnings };
    let (children, _) = match LocalWorkers::start(&local, &settings.logs_dir, false, echo) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // the children inherit this environment, so they drain for this long
    let drain = crate::worker::config::worker_settings_from_env(&crate::util::settings::process_env())
        .map_or(Duration::from_secs(30), |s| s.drain_timeout);
    let outcome = serve(
        &settings,
        &workers,
        lock,
        rx,
        &children,
        drain + Duration::from_secs(10),
    );
    if crate::util::platform::stop_requests() > 0 {
        children.stop_after_signal(drain);
    } else {
        children.stop(drain + Duration::from_secs(10));
    }
    served(outcome)
}

/// The log file always; the terminal only with `--verbose`; the console's
/// events in both cases.
fn init_logging(settings: &Settings, verbose: bool, tx: mpsc::Sender<ConsoleEvent>) {
    let file = settings.logs_dir.join("elastic_orchestrator.log");
    if let Some(w) = crate::util::logging::init_with(
        Some(&file),
        &settings.log,
        None,
        events::stdout(verbose),
        Some(events::layer(tx)),
    ) {
        eprintln!("warning: {w}");
    }
}

/// Serves until SIGTERM or Ctrl-C, the console live meanwhile and the
/// local workers following the workers file ([`LocalWorkers::follow`],
/// `stop_limit`: how long a removed one may drain); then the summary and
/// the orchestrator's stop.
fn serve(
    settings: &Settings,
    workers: &[WorkerEntry],
    lock: FolderLocks,
    events: mpsc::Receiver<ConsoleEvent>,
    children: &LocalWorkers,
    stop_limit: Duration,
) -> Result<(), OrchestratorError> {
    actix_rt::System::new().block_on(async move {
        let (started, server) = crate::orchestrator::start_locked(settings, workers, true, lock)?;
        crate::orchestrator::announce(&started);
        let server = actix_rt::spawn(server);
        let t0 = Instant::now();
        let read = std::sync::Arc::clone(&started.read);
        let board = started.board.clone();
        let before = actix_rt::task::spawn_blocking(move || snapshot_for(&read, &board))
            .await
            .ok()
            .and_then(Result::ok);
        let stdout = std::io::stdout();
        let tty = stdout.is_terminal();
        let mut console = Console::new(stdout, tty);
        for line in startup_lines(settings, &started) {
            console.line(&line);
        }
        let mut live = Live::new(
            console,
            events,
            started.board.clone(),
            std::sync::Arc::clone(&started.read),
        );
        let signal = crate::util::signal::wait_for_signal();
        futures_util::pin_mut!(signal);
        loop {
            let tick = actix_rt::time::sleep(TICK);
            futures_util::pin_mut!(tick);
            if let futures_util::future::Either::Left(_) =
                futures_util::future::select(&mut signal, tick).await
            {
                break;
            }
            children.follow(&configured_local(&started.board), stop_limit);
            live.tick().await;
        }
        live.tick().await;
        live.console.finish();
        let _ = started
            .results
            .send(crate::orchestrator::results_store::FlushNow)
            .await;
        if let Some(before) = before {
            let read = std::sync::Arc::clone(&started.read);
            let board = started.board.clone();
            let after = actix_rt::task::spawn_blocking(move || snapshot_for(&read, &board)).await;
            if let Ok(Ok(after)) = after {
                live.console
                    .line(&session(&before, &after, t0.elapsed().as_secs_f64()).to_string());
            }
        }
        crate::orchestrator::shutdown(&started).await;
        let _ = server.await;
        Ok(())
    })
}

/// What `up` says once it listens: where the API, the dashboard, the drop
/// folder, the results and the logs are.
fn startup_lines(settings: &Settings, started: &Started) -> Vec<String> {
    let url = format!("{}://{}", started.scheme, started.local_addr);
    let logs = settings.logs_dir.display();
    vec![
        format!("orquesta up: orchestrator at {url}, dashboard {url}/"),
        format!("  drop task files into  {}/", settings.task_queue_dir.display()),
        format!("  results go to         {}", settings.results_dir.display()),
        format!("  logs                  {logs}/elastic_orchestrator.log, {logs}/worker_service.log"),
        "  (every process's log lines are in those files; --verbose shows them here; Ctrl-C stops)".into(),
    ]
}

/// The local workers the orchestrator has from the workers file now,
/// those `up` runs (a removed one stays, draining, until it is let go).
fn configured_local(board: &WorkerBoard) -> Vec<WorkerEntry> {
    board
        .list()
        .into_iter()
        .filter(|w| w.source == MemberSource::Config)
        .map(|w| WorkerEntry {
            id: w.id,
            host: w.host,
            port: w.port,
            capacity: w.configured_capacity,
            algorithms: w.algorithms,
            tls: w.tls,
        })
        .filter(WorkerEntry::is_local)
        .collect()
}

/// Counts, results files and per-worker tasks at one moment.
struct Snapshot {
    tally: live::Tally,
    files: Vec<String>,
    workers: Vec<summary::WorkerTasks>,
    /// The workers on the board then.
    listed: Vec<String>,
}

/// Per-worker counts for the workers on the board and for every worker
/// that ever ran an attempt: one removed while `up` ran is gone from the
/// board at the end but keeps its share of the session.
fn snapshot_for(
    read: &crate::orchestrator::store::ReadPool,
    board: &WorkerBoard,
) -> Result<Snapshot, crate::orchestrator::store::StoreError> {
    let listed: Vec<String> = board.list().into_iter().map(|w| w.id).collect();
    let mut ids = listed.clone();
    for (worker, _, _) in read.by_worker()? {
        if !ids.contains(&worker) {
            ids.push(worker);
        }
    }
    Ok(Snapshot {
        tally: live::tally(read)?,
        files: read.results_files()?,
        workers: summary::tasks_by_worker(read, &ids)?,
        listed,
    })
}

/// The session's share: what ended between `before` and `after`.
fn session(before: &Snapshot, after: &Snapshot, wall_seconds: f64) -> SessionSummary {
    SessionSummary {
        ended: after.tally.since(&before.tally),
        wall_seconds,
        results_files: after
            .files
            .iter()
            .filter(|f| !before.files.contains(f))
            .cloned()
            .collect(),
        // the workers there at the end, and every other that ended a task
        per_worker: summary::since(&after.workers, &before.workers)
            .into_iter()
            .filter(|r| after.listed.contains(&r.worker) || r.completed + r.failed > 0)
            .collect(),
    }
}
