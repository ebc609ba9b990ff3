//! `orquesta worker`: a worker node. Clap only parses the flags; they are
//! inserted into the env map (over the environment, itself over `.env`)
//! and [`crate::worker::config::worker_settings_from_env`] reads every setting, so
//! there is one precedence mechanism and one place that checks values.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::util::settings::process_env;
use crate::worker::config::worker_settings_from_env;

/// Flags of `orquesta worker`; each overrides the variable named in its
/// help (see `crate::worker::config::WORKER_SETTINGS` for defaults).
#[derive(Args, Debug, Clone, Default)]
#[command(allow_negative_numbers = true)]
pub struct WorkerArgs {
    /// This worker's id [env WORKER_ID, default: worker-<port>].
    #[arg(long)]
    pub worker_id: Option<String>,
    /// Port to listen on; 0 picks a free one (printed on stdout) [env WORKER_PORT, default 5001].
    #[arg(long)]
    pub port: Option<u16>,
    /// Address to listen on; 0.0.0.0 to accept an orchestrator on another
    /// machine [env WORKER_HOST, default 127.0.0.1].
    #[arg(long)]
    pub host: Option<String>,
    /// Tasks run at once [env WORKER_CAPACITY, default: number of cores].
    #[arg(long)]
    pub capacity: Option<usize>,
    /// Algorithms this worker accepts, comma-separated [env WORKER_ALGORITHMS, default: all].
    #[arg(long, value_delimiter = ',')]
    pub algorithms: Option<Vec<String>>,
    /// Results kept for GET /history [env TASK_HISTORY_SIZE, default 1000].
    #[arg(long)]
    pub history_size: Option<usize>,
    /// Tasks sent ahead that may wait for a slot [env WORKER_MAX_BACKLOG, default 1024].
    #[arg(long)]
    pub max_backlog: Option<usize>,
    /// Folder of worker_service.log and the worker's state files [env LOGS_DIR, default logs].
    #[arg(long)]
    pub logs_dir: Option<PathBuf>,
    /// Seconds running tasks may take to finish after SIGTERM before they
    /// are cancelled [env WORKER_DRAIN_TIMEOUT, default 30].
    #[arg(long)]
    pub drain_timeout: Option<f64>,
    /// Drain and stop this long after start: 90s, 15m, 2h (allocation jobs
    /// set it a margin before their time limit) [env WORKER_DRAIN_AFTER, default: never].
    #[arg(long, value_name = "DURATION")]
    pub drain_after: Option<String>,
    /// Drain and stop after running nothing this long: 90s, 15m, 2h
    /// [env WORKER_IDLE_EXIT, default: never].
    #[arg(long, value_name = "DURATION")]
    pub idle_exit: Option<String>,
    /// Largest num_particles accepted [env MAX_PARTICLES, default 2000000].
    #[arg(long)]
    pub max_particles: Option<u64>,
    /// Largest num_particles × num_steps accepted [env MAX_PARTICLE_STEPS, default 1e11].
    #[arg(long)]
    pub max_particle_steps: Option<f64>,
    /// Seconds an unacknowledged result is kept at least [env RESULT_RETENTION, default 3600].
    #[arg(long)]
    pub result_retention: Option<f64>,
    /// HTTP threads [env HTTP_WORKERS, default 2].
    #[arg(long)]
    pub http_workers: Option<usize>,
    /// Threads each simulation may use [env WORKER_THREADS_PER_TASK,
    /// default: cores / capacity, so that a full worker never oversubscribes its machine].
    #[arg(long)]
    pub threads_per_task: Option<usize>,
    /// Register with this orchestrator (http://HOST:PORT) and stay
    /// registered; leave it on SIGTERM after draining [env WORKER_JOIN].
    #[arg(long)]
    pub join: Option<String>,
    /// HOST:PORT the orchestrator reaches this worker at, when it differs
    /// from the bind address (NAT, containers, 0.0.0.0) [env WORKER_ADVERTISE].
    #[arg(long)]
    pub advertise: Option<String>,
    /// Listen on a non-loopback --host without a token (prints a warning;
    /// only on a network you trust) [env ORQUESTA_INSECURE].
    #[arg(long)]
    pub insecure: bool,
    /// Drain and stop when the process that started this worker ends, even
    /// by SIGKILL (a batch job's script killed by `scancel --signal=KILL
    /// --full`); Linux and other Unixes, not Windows.
    #[arg(long)]
    pub exit_with_parent: bool,
}

impl WorkerArgs {
    /// `env` with every given flag inserted over it, under its variable's name.
    pub fn over(&self, mut env: BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut set = |key: &str, value: Option<String>| {
            if let Some(v) = value {
                env.insert(key.to_string(), v);
            }
        };
        set("WORKER_ID", self.worker_id.clone());
        set("WORKER_PORT", self.port.map(|v| v.to_string()));
        set("WORKER_HOST", self.host.clone());
        set("WORKER_CAPACITY", self.capacity.map(|v| v.to_string()));
        set("WORKER_ALGORITHMS", self.algorithms.as_ref().map(|a| a.join(",")));
        set("TASK_HISTORY_SIZE", self.history_size.map(|v| v.to_string()));
        set("WORKER_MAX_BACKLOG", self.max_backlog.map(|v| v.to_string()));
        set(
            "LOGS_DIR",
            self.logs_dir.as_ref().map(|p| p.to_string_lossy().into_owned()),
        );
        set("WORKER_DRAIN_TIMEOUT", self.drain_timeout.map(|v| v.to_string()));
        set("WORKER_DRAIN_AFTER", self.drain_after.clone());
        set("WORKER_IDLE_EXIT", self.idle_exit.clone());
        set("MAX_PARTICLES", self.max_particles.map(|v| v.to_string()));
        set(
            "MAX_PARTICLE_STEPS",
            self.max_particle_steps.map(|v| v.to_string()),
        );
        set("RESULT_RETENTION", self.result_retention.map(|v| v.to_string()));
        set("HTTP_WORKERS", self.http_workers.map(|v| v.to_string()));
        set(
            "WORKER_THREADS_PER_TASK",
            self.threads_per_task.map(|v| v.to_string()),
        );
        set("WORKER_JOIN", self.join.clone());
        set("WORKER_ADVERTISE", self.advertise.clone());
        set("ORQUESTA_INSECURE", self.insecure.then(|| "true".into()));
        env
    }
}

/// `orquesta worker`: serves until SIGTERM or Ctrl-C; exit 2 on invalid
/// settings or when the node cannot start.
pub fn run(args: &WorkerArgs) -> ExitCode {
    if let Some(code) = orphaned_at_birth() {
        return code;
    }
    if args.exit_with_parent && !crate::util::platform::exit_with_parent() {
        eprintln!("error: the process that started this worker is gone (--exit-with-parent); not starting");
        return ExitCode::from(2);
    }
    if args.exit_with_parent && cfg!(windows) {
        eprintln!("warning: --exit-with-parent has no effect on Windows");
    }
    let settings = match worker_settings_from_env(&args.over(process_env())) {
        Ok(s) => s,
        Err(problems) => {
            eprintln!("error: invalid worker configuration (from flags, the environment or .env):");
            for p in problems {
                eprintln!("  - {p}");
            }
            return ExitCode::from(2);
        }
    };
    match crate::worker::run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The variable `orquesta up` and `orquesta run` set to their own pid in
/// the workers they start.
pub const PARENT_PID_VAR: &str = "ORQUESTA_PARENT_PID";

/// A child of `up` whose parent died before `PR_SET_PDEATHSIG` took effect
/// (between fork and exec) would otherwise live on as an orphan: it checks
/// that its parent is still the one that started it, and exits if not.
fn orphaned_at_birth() -> Option<ExitCode> {
    let expected: u32 = std::env::var(PARENT_PID_VAR).ok()?.parse().ok()?;
    // None on Windows, where the Job Object already covers this race
    let parent = crate::util::platform::parent_pid()?;
    if parent == expected {
        return None;
    }
    eprintln!("error: the process that started this worker (pid {expected}) is gone; not starting");
    Some(ExitCode::from(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_environment() {
        let env: BTreeMap<String, String> = [("WORKER_PORT", "5002"), ("WORKER_ID", "env")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let args = WorkerArgs {
            port: Some(0),
            algorithms: Some(vec!["python".into(), "cython".into()]),
            ..WorkerArgs::default()
        };
        let s = worker_settings_from_env(&args.over(env)).unwrap();
        assert_eq!(s.port, 0);
        assert_eq!(s.worker_id.as_deref(), Some("env"));
        assert_eq!(s.algorithms, Some(vec!["python".into(), "cython".into()]));
    }
}
