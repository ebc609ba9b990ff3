//! The orchestrator-side subcommands: `orchestrator`, `up`, `run` and
//! `config check`. Each loads the configuration the same way (flags over
//! environment over `.env`) and stops with a message naming the field and
//! the fix when it is invalid.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::client::{self, Endpoint};
use crate::cli::cluster::LocalWorkers;
use crate::cli::{OrchestratorArgs, RunArgs};
use crate::config::{self, Settings, WorkerEntry, SETTINGS};

/// The example workers file printed when none is found.
const WORKERS_EXAMPLE: &str = r#"{"workers": [
  {"id": "worker1", "host": "127.0.0.1", "port": 5001, "capacity": 2, "algorithms": ["python", "cython"]},
  {"id": "worker2", "host": "127.0.0.1", "port": 5002, "capacity": 2, "algorithms": ["python", "cython"]}
]}"#;

fn env_with_flags(args: &OrchestratorArgs) -> std::collections::BTreeMap<String, String> {
    let mut env = config::process_env();
    if let Some(h) = &args.host {
        env.insert("ORCHESTRATOR_HOST".into(), h.clone());
    }
    if let Some(p) = args.port {
        env.insert("ORCHESTRATOR_PORT".into(), p.to_string());
    }
    if let Some(c) = &args.config {
        env.insert("WORKERS_CONFIG".into(), c.to_string_lossy().into_owned());
    }
    env
}

fn settings(args: &OrchestratorArgs) -> Result<Settings, ExitCode> {
    config::settings_from_env(&env_with_flags(args)).map_err(|problems| {
        eprintln!("error: invalid configuration (from flags, the environment or .env):");
        for p in problems {
            eprintln!("  - {p}");
        }
        ExitCode::from(2)
    })
}

/// Reads the workers file; `None` when it does not exist.
fn workers_file(path: &Path) -> Result<Option<Vec<WorkerEntry>>, ExitCode> {
    let bytes = match std::fs::read(path) {
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

fn required_workers(settings: &Settings) -> Result<Vec<WorkerEntry>, ExitCode> {
    match workers_file(&settings.workers_file)? {
        Some(w) if !w.is_empty() => Ok(w),
        Some(_) => {
            eprintln!(
                "error: {} lists no workers; add at least one",
                settings.workers_file.display()
            );
            Err(ExitCode::from(2))
        }
        None => {
            eprintln!(
                "error: {} not found. Create it (or pass --config FILE), for example:\n{WORKERS_EXAMPLE}",
                settings.workers_file.display()
            );
            Err(ExitCode::from(2))
        }
    }
}

fn init_logging(settings: &Settings) {
    if let Some(w) = crate::util::logging::init(Some(&settings.logs_dir.join("elastic_orchestrator.log"))) {
        eprintln!("warning: {w}");
    }
}

/// Settings and workers for a command that serves, logging started; or
/// the exit code after the message saying what to fix.
fn load_for_serving(args: &OrchestratorArgs) -> Result<(Settings, Vec<WorkerEntry>), ExitCode> {
    let settings = settings(args)?;
    let workers = required_workers(&settings)?;
    init_logging(&settings);
    Ok((settings, workers))
}

fn served(outcome: Result<(), crate::orchestrator::OrchestratorError>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// `orquesta orchestrator`.
pub fn orchestrator(args: &OrchestratorArgs) -> ExitCode {
    match load_for_serving(args) {
        Ok((settings, workers)) => served(crate::orchestrator::serve(settings, workers)),
        Err(code) => code,
    }
}

/// `orquesta up`: local workers as child processes, then the orchestrator.
pub fn up(args: &OrchestratorArgs) -> ExitCode {
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
    let outcome = crate::cli::run::run_batch(&settings, &actual, batch, &name);
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

/// `orquesta config check`.
pub fn config_check(args: &OrchestratorArgs) -> ExitCode {
    let env = env_with_flags(args);
    let mut ok = true;
    println!("Settings (flags > environment > .env > default):");
    for (key, default, meaning) in SETTINGS {
        let (value, from) = match env.get(*key) {
            Some(v) => (v.clone(), "set"),
            None => (default.to_string(), "default"),
        };
        println!("  {key:<28} {value:<22} {from:<8} {meaning}");
    }
    let settings = match config::settings_from_env(&env) {
        Ok(s) => {
            println!("Settings are valid.");
            Some(s)
        }
        Err(problems) => {
            ok = false;
            println!("Settings have problems:");
            for p in problems {
                println!("  - {p}");
            }
            None
        }
    };
    let path = args
        .config
        .clone()
        .or_else(|| env.get("WORKERS_CONFIG").map(Into::into))
        .unwrap_or_else(|| "config_workers.json".into());
    println!("\nWorkers ({}):", path.display());
    match workers_file(&path) {
        Ok(Some(workers)) => {
            let timeout = settings.as_ref().map_or(Duration::from_secs(2), |s| {
                s.worker_timeout.min(Duration::from_secs(3))
            });
            for w in &workers {
                let addr = w.address();
                let endpoint = Endpoint::parse(&addr).unwrap_or(Endpoint { addr });
                let answer = client::request(&endpoint, "GET", "/status", None, timeout);
                let verdict = match &answer {
                    Ok(a) if a.status == 200 => {
                        let v: serde_json::Value = serde_json::from_str(&a.body).unwrap_or_default();
                        format!(
                            "answers in {:.1} ms (id {}, capacity {}, {})",
                            a.elapsed.as_secs_f64() * 1e3,
                            v["worker_id"].as_str().unwrap_or("?"),
                            v["capacity"],
                            v["state"].as_str().unwrap_or("?")
                        )
                    }
                    Ok(a) => format!("answers {} (is it an orquesta worker?)", a.status),
                    Err(e) => format!("does not answer: {e}"),
                };
                println!(
                    "  {:<12} {:<22} capacity {:<3} {:<28} {}",
                    w.id,
                    w.address(),
                    w.capacity,
                    w.algorithms.join(","),
                    verdict
                );
            }
        }
        Ok(None) => {
            ok = false;
            println!("  not found: create it, for example:\n{WORKERS_EXAMPLE}");
        }
        Err(_) => ok = false,
    }
    if ok {
        println!("\nConfiguration is valid.");
        ExitCode::SUCCESS
    } else {
        println!("\nConfiguration is invalid: fix the problems above.");
        ExitCode::from(2)
    }
}
