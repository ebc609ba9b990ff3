//! `orquesta up`: the orchestrator plus a worker process for every entry
//! of the workers file on this machine, a local cluster in one command.
//! A worker already running on its port is adopted; the workers die with
//! `up`, even a SIGKILLed one; Ctrl-C says what it waits for, and a
//! second Ctrl-C stops at once.

use std::process::ExitCode;
use std::time::Duration;

use super::cluster::{count_stop_signals, LocalWorkers};
use super::orchestrator::OrchestratorArgs;
use super::serve::{load_for_serving, served};
use crate::config::WorkerEntry;

/// `orquesta up`: local workers as child processes, then the orchestrator.
pub fn run(args: &OrchestratorArgs) -> ExitCode {
    count_stop_signals();
    let (settings, workers) = match load_for_serving(args) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let local: Vec<WorkerEntry> = workers.iter().filter(|w| w.is_local()).cloned().collect();
    for w in workers.iter().filter(|w| !w.is_local()) {
        tracing::info!(worker = %w.id, address = %w.address(), "remote worker: start it on its own machine");
    }
    let (children, _) = match LocalWorkers::start(&local, &settings.logs_dir, false) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = crate::orchestrator::serve(settings, workers);
    // the children inherit this environment, so they drain for this long
    let drain = crate::config::worker_settings_from_env(&crate::config::process_env())
        .map_or(Duration::from_secs(30), |s| s.drain_timeout);
    if super::cluster::stop_signals() > 0 {
        children.stop_after_signal(drain);
    } else {
        children.stop(drain + Duration::from_secs(10));
    }
    served(outcome)
}
