//! `orquesta orchestrator`: the orchestrator process in the foreground,
//! and the flags every serving subcommand shares.

use std::process::ExitCode;

use clap::Args;

use super::serve::{load_for_serving, served};

#[derive(Args, Debug, Clone, Default)]
pub struct OrchestratorArgs {
    /// Address of the REST API [env ORCHESTRATOR_HOST, default 127.0.0.1].
    #[arg(long)]
    pub host: Option<String>,
    /// Port of the REST API; 0 = any free port [env ORCHESTRATOR_PORT, default 5000].
    #[arg(long)]
    pub port: Option<u16>,
    /// The workers file [env WORKERS_CONFIG, default config_workers.json].
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Listen on a non-loopback --host without a token (prints a warning;
    /// only on a network you trust) [env ORQUESTA_INSECURE].
    #[arg(long)]
    pub insecure: bool,
}

/// `orquesta orchestrator`.
pub fn run(args: &OrchestratorArgs) -> ExitCode {
    match load_for_serving(args) {
        Ok((settings, workers)) => served(crate::orchestrator::serve(settings, workers)),
        Err(code) => code,
    }
}
