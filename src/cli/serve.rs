//! What the serving subcommands (`orchestrator`, `up`, `run`, `config
//! check`) share: the settings from flags over environment over `.env`,
//! the workers file, and logging. Each stops with a message naming the
//! field and the fix when the configuration is invalid.

use std::path::Path;
use std::process::ExitCode;

use super::orchestrator::OrchestratorArgs;
use crate::orchestrator::config::{self, Settings, WorkerEntry};
use crate::util::settings::process_env;

/// The example workers file printed when none is found.
pub(super) const WORKERS_EXAMPLE: &str = r#"{"workers": [
  {"id": "worker1", "host": "127.0.0.1", "port": 5001, "capacity": 2, "algorithms": ["python", "cython"]},
  {"id": "worker2", "host": "127.0.0.1", "port": 5002, "capacity": 2, "algorithms": ["python", "cython"]}
]}"#;

/// The process environment (with `.env` already loaded) and the flags over it.
pub(super) fn env_with_flags(args: &OrchestratorArgs) -> std::collections::BTreeMap<String, String> {
    let mut env = process_env();
    if let Some(h) = &args.host {
        env.insert("ORCHESTRATOR_HOST".into(), h.clone());
    }
    if let Some(p) = args.port {
        env.insert("ORCHESTRATOR_PORT".into(), p.to_string());
    }
    if let Some(c) = &args.config {
        env.insert("WORKERS_CONFIG".into(), c.to_string_lossy().into_owned());
    }
    if args.insecure {
        env.insert("ORQUESTA_INSECURE".into(), "true".into());
    }
    env
}

/// The settings, or the exit code after listing every problem.
pub(super) fn settings(args: &OrchestratorArgs) -> Result<Settings, ExitCode> {
    config::settings_from_env(&env_with_flags(args)).map_err(|problems| {
        eprintln!("error: invalid configuration (from flags, the environment or .env):");
        for p in problems {
            eprintln!("  - {p}");
        }
        ExitCode::from(2)
    })
}

/// Reads the workers file; `None` when it does not exist.
pub(super) fn workers_file(path: &Path) -> Result<Option<Vec<WorkerEntry>>, ExitCode> {
    let bytes = match config::read_workers_file(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", path.display());
            return Err(ExitCode::from(2));
        }
    };
    config::parse_workers(&bytes).map(Some).map_err(|problems| {
        eprintln!("error: {} is invalid:", path.display());
        for p in problems {
            eprintln!("  - {p}");
        }
        ExitCode::from(2)
    })
}

pub(super) fn required_workers(settings: &Settings) -> Result<Vec<WorkerEntry>, ExitCode> {
    match workers_file(&settings.workers_file)? {
        // an empty list is valid: workers may all join (the orchestrator
        // says so in its log)
        Some(w) => Ok(w),
        None => {
            eprintln!(
                "error: {} not found. Create it (or pass --config FILE), for example:\n{WORKERS_EXAMPLE}\n\
                 or, when every worker joins by itself (orquesta worker --join, an allocation queue: \
                 orquesta alloc add), with no worker listed: {{\"workers\": []}}",
                settings.workers_file.display()
            );
            Err(ExitCode::from(2))
        }
    }
}

pub(super) fn init_logging(settings: &Settings) {
    if let Some(w) = crate::util::logging::init(
        Some(&settings.logs_dir.join("elastic_orchestrator.log")),
        &settings.log,
        None,
    ) {
        eprintln!("warning: {w}");
    }
}

/// Settings and workers for a command that serves, logging started; or
/// the exit code after the message saying what to fix.
pub(super) fn load_for_serving(args: &OrchestratorArgs) -> Result<(Settings, Vec<WorkerEntry>), ExitCode> {
    let settings = settings(args)?;
    let workers = required_workers(&settings)?;
    init_logging(&settings);
    Ok((settings, workers))
}

pub(super) fn served(outcome: Result<(), crate::orchestrator::OrchestratorError>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
