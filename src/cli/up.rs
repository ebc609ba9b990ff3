//! `orquesta up`: the orchestrator plus a worker process for every entry
//! of the workers file on this machine, a local cluster in one command.

use std::process::ExitCode;
use std::time::Duration;

use super::cluster::LocalWorkers;
use super::orchestrator::OrchestratorArgs;
use super::serve::{load_for_serving, served};
use crate::config::WorkerEntry;

/// `orquesta up`: local workers as child processes, then the orchestrator.
pub fn run(args: &OrchestratorArgs) -> ExitCode {
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
    children.stop(Duration::from_secs(40));
    served(outcome)
}
