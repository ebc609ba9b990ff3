//! The orchestrator's settings (the seed's variables and Orquesta's own)
//! as a pure function of an env map: [`settings_from_env`].

pub mod workers_file;

pub use workers_file::{
    member_entry, parse_worker_url, parse_workers, read_workers_file, WorkerEntry, NO_WORKERS_CONFIGURED,
};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::sim::Limits;
use crate::util::settings::{
    read_tls, token_and_bind, EnvReader, HttpLimits, INSECURE_ROW, LOG_ROWS, MAX_CONNECTIONS_ROW,
    REQUEST_BODY_TIMEOUT_ROW, TLS_CERT_ROW, TLS_KEY_ROW, TOKEN_FILE_ROW,
};
use crate::util::tls::Tls;

/// The margins of a move to a sooner start (`task_queue/takeback.rs`), from the
/// settings `SOONER_START_GAIN`, `SOONER_START_FRACTION` and
/// `SOONER_START_SETTLE`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoonerStarts {
    /// A sooner start elsewhere must gain at least this many seconds...
    pub min_gain: f64,
    /// ...and at least this fraction of the wait where it is.
    pub min_fraction: f64,
    /// A task given back is not moved for a sooner start again before
    /// this many seconds have passed.
    pub settle: f64,
}

impl Default for SoonerStarts {
    /// 1 s and half the wait: predictions are off by tens of percent,
    /// and a task that would gain less is not worth a round trip; 10 s
    /// before a second move, so that a task does not bounce between two
    /// workers whose predictions swap.
    fn default() -> Self {
        Self {
            min_gain: 1.0,
            min_fraction: 0.5,
            settle: 10.0,
        }
    }
}
use crate::util::token::{BindVerdict, Token};

/// How the Membership picks among eligible workers
/// (`LOAD_BALANCING_ALGORITHM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balancing {
    RoundRobin,
    LeastLoaded,
    ShortestExpectedFinish,
}

impl Balancing {
    /// Every strategy, for parsing and messages. Adding one: a variant, its
    /// name below, and its line in `crate::orchestrator::placement::strategy`.
    pub const ALL: [Balancing; 3] = [
        Balancing::RoundRobin,
        Balancing::LeastLoaded,
        Balancing::ShortestExpectedFinish,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Balancing::RoundRobin => "round_robin",
            Balancing::LeastLoaded => "least_loaded",
            Balancing::ShortestExpectedFinish => "shortest_expected_finish",
        }
    }
}

/// The orchestrator's settings, with the seed's variable names.
#[derive(Debug, Clone)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub workers_file: PathBuf,
    pub task_queue_dir: PathBuf,
    pub results_dir: PathBuf,
    pub logs_dir: PathBuf,
    pub db_path: PathBuf,
    /// `TASK_DISTRIBUTION_INTERVAL`: period of the safety sweep only.
    pub distribution_interval: Duration,
    /// `MAX_TASK_RETRIES`: retries after the first attempt.
    pub max_retries: u32,
    /// `TASK_HISTORY_SIZE`: recent results kept for `/stats`.
    pub history_size: usize,
    /// `WORKER_TIMEOUT`: no answer for this long marks a worker down.
    pub worker_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// `HEARTBEAT_RATE`: beats per second in all before the interval is
    /// spaced (0: never; `worker_proxy::pace`).
    pub heartbeat_rate: u64,
    /// `TASK_TIMEOUT`: the longest one attempt may run.
    pub task_timeout: Option<Duration>,
    pub balancing: Balancing,
    pub performance_monitoring: bool,
    pub flush_interval: Duration,
    pub file_quiet: Duration,
    pub rescan_interval: Duration,
    pub max_file_bytes: u64,
    /// `MAX_REQUEST_BYTES`: the largest `POST /tasks` body.
    pub max_request_bytes: usize,
    /// `MAX_RESULT_BYTES`: the largest result a worker may return (as
    /// JSON); a larger one fails its attempt and is never stored.
    pub max_result_bytes: usize,
    /// `STALL_TIMEOUT`: the least time without a step advance after which
    /// a running task is taken back (`None`: off).
    pub stall_timeout: Option<Duration>,
    /// `MAX_WORKERS`: joins are refused once this many workers are members.
    pub max_workers: usize,
    /// `VERIFY_FRACTION`: the share of completed simulations run again on
    /// another worker and compared bit for bit (0: none).
    pub verify_fraction: f64,
    /// `WORKER_EXPIRY`: a joined worker unreachable this long is removed
    /// (`None`: kept until removed).
    pub worker_expiry: Option<Duration>,
    /// `CHECKPOINT_INTERVAL`: zero turns checkpoints off (uploads refused,
    /// none resumed); workers save at their own interval.
    pub checkpoint_interval: Duration,
    /// `CHECKPOINT_MAX_BYTES`: the largest checkpoint of one task.
    pub checkpoint_max_bytes: u64,
    /// `CHECKPOINT_TOTAL_BYTES`: the most all checkpoints held may weigh.
    pub checkpoint_total_bytes: u64,
    /// `MAX_CONNECTIONS`, `REQUEST_BODY_TIMEOUT`.
    pub http: HttpLimits,
    /// `LOG_MAX_BYTES`, `LOG_FILES`, `LOG_FORMAT`.
    pub log: crate::util::logging::LogOptions,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// fsync every commit (`DB_SYNC=full`) or leave it to checkpoints.
    pub sync_full: bool,
    /// `HISTORY_RETENTION_DAYS`: ended tasks older than this are purged
    /// (once their records are on disk); `None` keeps everything.
    pub history_retention: Option<Duration>,
    pub limits: Limits,
    pub test_kernels: bool,
    /// `ORQUESTA_TOKEN`/`ORQUESTA_TOKEN_FILE`: required on every request
    /// but `GET /health`, and sent to every worker.
    pub token: Option<Token>,
    /// Whether the bind is open to the network without a token (`--insecure`).
    pub bind: BindVerdict,
    /// HTTPS for the API, trust for `https://` workers (`ORQUESTA_TLS_*`).
    pub tls: Tls,
    /// `ORQUESTA_ADVERTISE_URL`: the URL allocation jobs join (`None`: the
    /// bind address, this machine's name when bound to every interface).
    pub advertise_url: Option<String>,
    /// `ORQUESTA_WORKER_BINARY`: what allocation jobs run (`None`: this
    /// very binary).
    pub worker_binary: Option<PathBuf>,
    /// `SOONER_START_GAIN`, `SOONER_START_FRACTION`, `SOONER_START_SETTLE`:
    /// when a task sent ahead is moved to a worker where it would start
    /// sooner (`None`: never).
    pub sooner_starts: Option<SoonerStarts>,
    /// `ALLOCATION_COMMAND_TIMEOUT`: the longest an allocation queue's
    /// submit, status or cancel command may take.
    pub allocation_command_timeout: Duration,
}

/// `MAX_REQUEST_BYTES` when not set: 16 MiB holds about 80,000 tasks.
pub const MAX_REQUEST_BYTES_DEFAULT: usize = 16 << 20;

/// Every variable the orchestrator reads, with its default and meaning
/// (printed by `orquesta config check`; `.env.example` documents the same).
pub const SETTINGS: &[(&str, &str, &str)] = &[
    (
        "ORCHESTRATOR_HOST",
        "127.0.0.1",
        "address of the REST API (--host)",
    ),
    (
        "ORCHESTRATOR_PORT",
        "5000",
        "port of the REST API (--port; 0 = any free port)",
    ),
    (
        "WORKERS_CONFIG",
        "config_workers.json",
        "the workers file (--config)",
    ),
    ("TASK_QUEUE_DIR", "task_queues", "drop folder for task files"),
    (
        "RESULTS_STORAGE_PATH",
        "results/",
        "where task_results_*.json and orchestrator_stats.json go",
    ),
    (
        "LOGS_DIR",
        "logs",
        "elastic_orchestrator.log and worker_state.json",
    ),
    ("DATABASE_PATH", "data/orquesta.db", "the durable queue (SQLite)"),
    (
        "TASK_DISTRIBUTION_INTERVAL",
        "2.0",
        "seconds between safety sweeps (dispatch itself is immediate)",
    ),
    (
        "MAX_TASK_RETRIES",
        "3",
        "retries after the first attempt (3 = at most 4 attempts)",
    ),
    (
        "TASK_HISTORY_SIZE",
        "1000",
        "recent results kept in memory for /stats",
    ),
    (
        "WORKER_TIMEOUT",
        "30",
        "seconds without any answer before a worker is declared down",
    ),
    (
        "HEARTBEAT_INTERVAL",
        "1.0",
        "seconds between health checks of each worker, while the workers are at most HEARTBEAT_RATE × HEARTBEAT_INTERVAL",
    ),
    (
        "HEARTBEAT_RATE",
        "500",
        "most health checks per second across all workers (0 = no limit): past it the interval grows to workers / HEARTBEAT_RATE and WORKER_TIMEOUT in the same proportion, so a worker is declared down after the same number of silent checks",
    ),
    (
        "TASK_TIMEOUT",
        "none",
        "longest one attempt may run, in seconds (none = no limit)",
    ),
    (
        "LOAD_BALANCING_ALGORITHM",
        "round_robin",
        "round_robin, least_loaded or shortest_expected_finish",
    ),
    (
        "PERFORMANCE_MONITORING",
        "true",
        "collect the figures of /stats/performance",
    ),
    (
        "MANUAL_MODE",
        "true",
        "only true exists: tasks come from files (and POST /tasks)",
    ),
    (
        "RESULTS_FLUSH_INTERVAL",
        "1.0",
        "seconds between results files (written at once when the queue drains)",
    ),
    (
        "FILE_QUIET_PERIOD",
        "0.5",
        "seconds a file written in place must stay unchanged before it is read (one renamed in, or closed by its writer, is read at once)",
    ),
    (
        "RESCAN_INTERVAL",
        "5.0",
        "seconds between full scans of task_queues/ (events can be missed)",
    ),
    (
        "TASK_FILE_MAX_BYTES",
        "268435456",
        "largest task file accepted (256 MiB)",
    ),
    (
        "MAX_REQUEST_BYTES",
        "16777216",
        "largest HTTP request body (POST /tasks, 16 MiB); bigger batches go in a task file",
    ),
    (
        "CHECKPOINT_INTERVAL",
        "60",
        "seconds of a task's run time between two checkpoints (the workers' own setting decides when they save; 0 here refuses checkpoints and resumes none)",
    ),
    (
        "CHECKPOINT_MAX_BYTES",
        "268435456",
        "largest checkpoint of one task a worker may send, in bytes (a larger one is refused; the task is not resumed from it)",
    ),
    (
        "CHECKPOINT_TOTAL_BYTES",
        "2147483648",
        "most bytes all checkpoints held may weigh together (one past it is refused until tasks end)",
    ),
    (
        "MAX_RESULT_BYTES",
        "16777216",
        "largest result a worker may return, as JSON (16 MiB); a larger one fails its attempt, never stored; a task whose thermo series alone cannot fit is refused at submission",
    ),
    (
        "STALL_TIMEOUT",
        "60",
        "seconds without a step advance before a running task is taken back and its worker marked suspect; the limit is the larger of this and 20 × the task's own time per step (none = off)",
    ),
    (
        "VERIFY_FRACTION",
        "0.01",
        "share of completed simulations run again on another capable worker, only on a slot no queued task could use (given up as soon as work could use it), and compared bit for bit; a worker that disagrees with the majority is quarantined (0 = off, 1 = every one)",
    ),
    (
        "SOONER_START_GAIN",
        "1.0",
        "seconds sooner a task sent ahead to a busy worker must be predicted to start on another to be taken back and sent there (none = never moved for a sooner start; a free slot elsewhere or a higher priority still takes it back)",
    ),
    (
        "SOONER_START_FRACTION",
        "0.5",
        "...and the least share of its predicted wait that must be saved, from 0 (any) to below 1",
    ),
    (
        "SOONER_START_SETTLE",
        "10",
        "seconds a task moved for a sooner start stays before it may be moved that way again (0 = at once)",
    ),
    (
        "MAX_WORKERS",
        "1000",
        "most workers (configured and joined); a join beyond it is refused (409 too_many_workers)",
    ),
    (
        "WORKER_EXPIRY",
        "3600",
        "seconds a joined worker may stay unreachable before it is removed (none = kept until removed)",
    ),
    MAX_CONNECTIONS_ROW,
    REQUEST_BODY_TIMEOUT_ROW,
    LOG_ROWS[0],
    LOG_ROWS[1],
    LOG_ROWS[2],
    (
        "RETRY_BACKOFF_BASE",
        "0.5",
        "first retry delay in seconds (doubles, ±20% jitter)",
    ),
    ("RETRY_BACKOFF_MAX", "30", "longest retry delay in seconds"),
    (
        "DB_SYNC",
        "full",
        "full: fsync every commit; normal: survive process crashes only",
    ),
    (
        "HISTORY_RETENTION_DAYS",
        "none",
        "days ended tasks are kept (purged hourly once in a results/failures file; none = forever)",
    ),
    ("MAX_PARTICLES", "2000000", "largest num_particles accepted"),
    (
        "MAX_PARTICLE_STEPS",
        "1e11",
        "largest num_particles × num_steps accepted",
    ),
    (
        "ORQUESTA_TOKEN",
        "",
        "shared secret required on every request but GET /health, sent to workers (default: none)",
    ),
    TOKEN_FILE_ROW,
    INSECURE_ROW,
    TLS_CERT_ROW,
    TLS_KEY_ROW,
    (
        "ORQUESTA_TLS_CA",
        "",
        "PEM certificates trusted for https:// workers (a self-signed cert itself)",
    ),
    (
        "ORQUESTA_ADVERTISE_URL",
        "",
        "URL allocation jobs' workers join (default: the bind address; this host's name if 0.0.0.0)",
    ),
    (
        "ORQUESTA_WORKER_BINARY",
        "",
        "the orquesta binary allocation jobs run (default: the orchestrator's own)",
    ),
    (
        "ALLOCATION_COMMAND_TIMEOUT",
        "30",
        "seconds an allocation queue's submit, status or cancel command (sbatch, squeue, scancel, or your own) may take; past it, it and what it started are killed and the failure counts against the queue's backoff",
    ),
];

/// Reads settings from an environment map (the process environment with
/// `.env` and flags merged in), listing every problem.
pub fn settings_from_env(env: &BTreeMap<String, String>) -> Result<Settings, Vec<String>> {
    let mut r = EnvReader::new(env, SETTINGS, &[]);
    let distribution_interval = r.seconds("TASK_DISTRIBUTION_INTERVAL", false);
    let worker_timeout = r.seconds("WORKER_TIMEOUT", false);
    let heartbeat_interval = r.seconds("HEARTBEAT_INTERVAL", false);
    let heartbeat_rate = r.whole("HEARTBEAT_RATE");
    let flush_interval = r.seconds("RESULTS_FLUSH_INTERVAL", false);
    let file_quiet = r.seconds("FILE_QUIET_PERIOD", true);
    let rescan_interval = r.seconds("RESCAN_INTERVAL", false);
    let retry_base = r.seconds("RETRY_BACKOFF_BASE", true);
    let retry_max = r.seconds("RETRY_BACKOFF_MAX", true);
    let task_timeout = match r.get("TASK_TIMEOUT").trim() {
        "" | "none" | "0" => None,
        _ => Some(r.seconds("TASK_TIMEOUT", false)),
    };
    let max_retries = r.whole("MAX_TASK_RETRIES").min(u32::MAX as u64) as u32;
    let history_size = r.whole("TASK_HISTORY_SIZE") as usize;
    let max_file_bytes = r.whole("TASK_FILE_MAX_BYTES");
    let max_request_bytes = r.count("MAX_REQUEST_BYTES");
    let max_result_bytes = r.count("MAX_RESULT_BYTES");
    let max_workers = r.count("MAX_WORKERS");
    let verify_fraction = {
        let raw = r.get("VERIFY_FRACTION");
        match raw.trim().parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => v,
            _ => {
                let name = r.name("VERIFY_FRACTION");
                r.problem(format!(
                    "{name}: expected a number from 0 (off) to 1 (every completed simulation), found {raw:?}"
                ));
                0.0
            }
        }
    };
    let stall_timeout = match r.get("STALL_TIMEOUT").trim() {
        "none" | "0" => None,
        _ => Some(r.seconds("STALL_TIMEOUT", false)),
    };
    let worker_expiry = match r.get("WORKER_EXPIRY").trim() {
        "none" | "0" => None,
        _ => Some(r.seconds("WORKER_EXPIRY", false)),
    };
    let sooner_starts = sooner_starts(&mut r);
    let checkpoint_interval = r.seconds("CHECKPOINT_INTERVAL", true);
    let checkpoint_max_bytes = r.whole("CHECKPOINT_MAX_BYTES");
    let checkpoint_total_bytes = r.whole("CHECKPOINT_TOTAL_BYTES");
    let http = r.http_limits();
    let log = r.log_options();
    let max_particles = r.whole("MAX_PARTICLES");
    let port = r.port("ORCHESTRATOR_PORT");
    let max_particle_steps = r.positive("MAX_PARTICLE_STEPS", 1e11);
    let performance_monitoring = r.boolean("PERFORMANCE_MONITORING");
    if !r.boolean("MANUAL_MODE") {
        r.problem(
            "MANUAL_MODE=false: automatic task generation is not part of Orquesta; tasks come from files \
             dropped into task_queues/ (or POST /tasks). Set MANUAL_MODE=true or remove the line",
        );
    }
    let name = r.get("LOAD_BALANCING_ALGORITHM").trim().to_string();
    let balancing = match Balancing::ALL.into_iter().find(|b| b.as_str() == name) {
        Some(b) => b,
        None => {
            let names: Vec<&str> = Balancing::ALL.iter().map(|b| b.as_str()).collect();
            r.problem(format!(
                "LOAD_BALANCING_ALGORITHM: expected {}, found {name:?}",
                names.join(" or ")
            ));
            Balancing::RoundRobin
        }
    };
    let sync_full = match r.get("DB_SYNC").trim() {
        "full" => true,
        "normal" => false,
        other => {
            r.problem(format!("DB_SYNC: expected full or normal, found {other:?}"));
            true
        }
    };
    if heartbeat_interval > worker_timeout {
        r.problem(format!(
            "HEARTBEAT_INTERVAL ({:?}) is longer than WORKER_TIMEOUT ({:?}): a worker would be declared down \
             between two heartbeats; lower HEARTBEAT_INTERVAL",
            heartbeat_interval, worker_timeout
        ));
    }
    let history_retention = match r.get("HISTORY_RETENTION_DAYS").trim() {
        "" | "none" => None,
        _ => Some(Duration::from_secs_f64(
            r.positive("HISTORY_RETENTION_DAYS", 1.0).min(1e6) * 86_400.0,
        )),
    };
    let host = r.get("ORCHESTRATOR_HOST");
    let (token, bind) = token_and_bind(&mut r, env, &host, "ORCHESTRATOR_HOST (--host)");
    let tls = read_tls(&mut r, env);
    let workers_file = r.path("WORKERS_CONFIG");
    let task_queue_dir = r.path("TASK_QUEUE_DIR");
    let results_dir = r.path("RESULTS_STORAGE_PATH");
    let logs_dir = r.path("LOGS_DIR");
    let db_path = r.path("DATABASE_PATH");
    let advertise_url = Some(
        r.get("ORQUESTA_ADVERTISE_URL")
            .trim()
            .trim_end_matches('/')
            .to_string(),
    )
    .filter(|u| !u.is_empty());
    if let Some(url) = advertise_url.as_deref() {
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.contains(char::is_whitespace) {
            r.problem(format!(
                "ORQUESTA_ADVERTISE_URL: expected http://HOST:PORT or https://HOST:PORT, found {url:?}"
            ));
        }
    }
    let allocation_command_timeout = r.seconds("ALLOCATION_COMMAND_TIMEOUT", false);
    let worker_binary = Some(r.get("ORQUESTA_WORKER_BINARY").trim().to_string())
        .filter(|b| !b.is_empty())
        .map(PathBuf::from);
    r.finish()?;
    Ok(Settings {
        host,
        port,
        workers_file,
        task_queue_dir,
        results_dir,
        logs_dir,
        db_path,
        distribution_interval,
        max_retries,
        history_size,
        worker_timeout,
        heartbeat_interval,
        heartbeat_rate,
        task_timeout,
        balancing,
        performance_monitoring,
        flush_interval,
        file_quiet,
        rescan_interval,
        max_file_bytes,
        max_request_bytes,
        max_result_bytes,
        max_workers,
        verify_fraction,
        worker_expiry,
        stall_timeout,
        checkpoint_interval,
        checkpoint_max_bytes,
        checkpoint_total_bytes,
        http,
        log,
        retry_base,
        retry_max,
        sync_full,
        history_retention,
        limits: Limits {
            max_particles,
            max_particle_steps,
            max_result_bytes: Some(max_result_bytes as u64),
            ..Limits::default()
        },
        test_kernels: r.get("ORQUESTA_TEST_KERNELS") == "1",
        token,
        bind,
        tls,
        advertise_url,
        worker_binary,
        sooner_starts,
        allocation_command_timeout,
    })
}

/// `SOONER_START_GAIN` (`none` or `off`: the move is off, and the other
/// two are still checked), `SOONER_START_FRACTION`, `SOONER_START_SETTLE`.
fn sooner_starts(r: &mut EnvReader<'_>) -> Option<SoonerStarts> {
    let raw = r.get("SOONER_START_GAIN");
    let min_gain = match raw.trim() {
        "none" | "off" => None,
        v => match v.parse::<f64>() {
            Ok(g) if g.is_finite() && g > 0.0 && g < 1e9 => Some(g),
            _ => {
                let name = r.name("SOONER_START_GAIN");
                r.problem(format!(
                    "{name}: expected a number of seconds > 0, or none to never move a task for a sooner \
                     start, found {raw:?}"
                ));
                None
            }
        },
    };
    let raw = r.get("SOONER_START_FRACTION");
    let min_fraction = match raw.trim().parse::<f64>() {
        Ok(f) if (0.0..1.0).contains(&f) => f,
        _ => {
            let name = r.name("SOONER_START_FRACTION");
            r.problem(format!(
                "{name}: expected a share of the wait from 0 (any gain) to below 1 (e.g. 0.5: half the wait \
                 saved), found {raw:?}"
            ));
            0.5
        }
    };
    let settle = r.seconds("SOONER_START_SETTLE", true).as_secs_f64();
    min_gain.map(|min_gain| SoonerStarts {
        min_gain,
        min_fraction,
        settle,
    })
}

#[cfg(test)]
mod tests;
