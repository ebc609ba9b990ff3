//! A worker node's settings (`WORKER_ID`, `WORKER_PORT` as in the seed, and
//! Orquesta's own) as a pure function of an env map:
//! [`worker_settings_from_env`]. `orquesta worker` inserts its flags into
//! the map first, so `.env` → environment → flags is the same mechanism as
//! for the orchestrator.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::model::TaskId;
use crate::sim::Limits;
use crate::util::settings::{
    read_tls, token_and_bind, EnvReader, HttpLimits, SettingDoc, INSECURE_ROW, LOG_ROWS, MAX_CONNECTIONS_ROW,
    REQUEST_BODY_TIMEOUT_ROW, TLS_CERT_ROW, TLS_KEY_ROW, TOKEN_FILE_ROW,
};
use crate::util::tls::Tls;
use crate::util::token::{BindVerdict, Token};

/// Unacknowledged results a worker keeps at most (oldest dropped first).
pub const MAX_HELD_RESULTS: usize = 100_000;

/// Everything a worker node is started with, checked.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// None: `worker-<port>`, known once the port is bound.
    pub worker_id: Option<String>,
    pub host: String,
    pub port: u16,
    pub capacity: usize,
    /// None: every registered kernel and alias.
    pub algorithms: Option<Vec<String>>,
    pub history_size: usize,
    /// Tasks of `/execute/batch` that may wait for a slot.
    pub max_backlog: usize,
    pub logs_dir: PathBuf,
    pub drain_timeout: Duration,
    /// `CHECKPOINT_INTERVAL`: seconds of a task's run time between two
    /// checkpoints sent to the `--join` orchestrator; zero: none.
    pub checkpoint_interval: Duration,
    /// `WORKER_DRAIN_AFTER`: drain and stop this long after start (an
    /// allocation job's time limit less a margin); None: never.
    pub drain_after: Option<Duration>,
    /// `WORKER_IDLE_EXIT`: drain and stop after running nothing this long;
    /// None: never.
    pub idle_exit: Option<Duration>,
    pub limits: Limits,
    pub test_kernels: bool,
    /// How long unacknowledged results are kept at least.
    pub result_retention: Duration,
    pub max_held_results: usize,
    /// HTTP threads (0 counts as 1).
    pub http_workers: usize,
    /// `MAX_CONNECTIONS`, `REQUEST_BODY_TIMEOUT`.
    pub http: HttpLimits,
    /// `LOG_MAX_BYTES`, `LOG_FILES`, `LOG_FORMAT`.
    pub log: crate::util::logging::LogOptions,
    /// Threads each simulation may use (None: cores / capacity). `orquesta
    /// up` sets it when several workers share one machine.
    pub threads_per_task: Option<usize>,
    /// The orchestrator to register with (`--join`), as `http://HOST:PORT`
    /// without a trailing `/`; None: wait to be listed in its workers file.
    pub join: Option<String>,
    /// `HOST:PORT` the orchestrator reaches this worker at (`--advertise`);
    /// None: the address it listens on.
    pub advertise: Option<String>,
    /// `ORQUESTA_TOKEN`/`ORQUESTA_TOKEN_FILE`: required on every request
    /// but `GET /health`, and sent with `--join`.
    pub token: Option<Token>,
    /// Whether the bind is open to the network without a token (`--insecure`).
    pub bind: BindVerdict,
    /// HTTPS for this worker's API, trust for an `https://` --join (`ORQUESTA_TLS_*`).
    pub tls: Tls,
}

/// Every variable a worker reads, with its default ("" = computed at
/// start, see the meaning) and meaning.
pub const WORKER_SETTINGS: &[SettingDoc] = &[
    ("WORKER_ID", "", "this worker's id (default: worker-<port>)"),
    ("WORKER_PORT", "5001", "port to listen on; 0 picks a free one"),
    ("WORKER_HOST", "127.0.0.1", "address to listen on"),
    (
        "WORKER_CAPACITY",
        "",
        "tasks run at once (default: number of cores)",
    ),
    (
        "WORKER_ALGORITHMS",
        "",
        "algorithms accepted, comma-separated (default: all)",
    ),
    ("TASK_HISTORY_SIZE", "1000", "results kept for GET /history"),
    (
        "WORKER_MAX_BACKLOG",
        "1024",
        "tasks sent ahead by POST /execute/batch that may wait here for a slot; more are refused with 429",
    ),
    (
        "LOGS_DIR",
        "logs",
        "folder of worker_service.log and the worker's state files",
    ),
    (
        "WORKER_DRAIN_TIMEOUT",
        "30",
        "seconds running tasks may take to finish after SIGTERM",
    ),
    (
        "CHECKPOINT_INTERVAL",
        "60",
        "seconds of a task's run time between two checkpoints sent to the --join orchestrator, fractions allowed (0: none); also one at once on drain/SIGTERM",
    ),
    (
        "WORKER_DRAIN_AFTER",
        "",
        "drain and stop this long after start (90s, 15m, 2h; default: never)",
    ),
    (
        "WORKER_IDLE_EXIT",
        "",
        "drain and stop after running nothing this long (90s, 15m, 2h; default: never)",
    ),
    ("MAX_PARTICLES", "2000000", "largest num_particles accepted"),
    (
        "MAX_PARTICLE_STEPS",
        "1e11",
        "largest num_particles × num_steps accepted",
    ),
    (
        "WORKER_MEMORY_LIMIT",
        "",
        "largest estimated memory of one task, e.g. 4GiB, 512MB or bytes; a bigger task is refused \
         with 422 (default: half of the machine's memory)",
    ),
    (
        "RESULT_RETENTION",
        "3600",
        "seconds an unacknowledged result is kept at least",
    ),
    ("HTTP_WORKERS", "2", "HTTP threads"),
    MAX_CONNECTIONS_ROW,
    REQUEST_BODY_TIMEOUT_ROW,
    LOG_ROWS[0],
    LOG_ROWS[1],
    LOG_ROWS[2],
    (
        "WORKER_THREADS_PER_TASK",
        "",
        "threads each simulation may use (default: cores / capacity)",
    ),
    (
        "WORKER_JOIN",
        "",
        "orchestrator URL to register with, e.g. http://10.0.0.1:5000 (default: none)",
    ),
    (
        "WORKER_ADVERTISE",
        "",
        "HOST:PORT the orchestrator reaches this worker at (default: the bound address)",
    ),
    (
        "ORQUESTA_TOKEN",
        "",
        "shared secret required on every request but GET /health, sent with --join (default: none)",
    ),
    TOKEN_FILE_ROW,
    INSECURE_ROW,
    TLS_CERT_ROW,
    TLS_KEY_ROW,
    (
        "ORQUESTA_TLS_CA",
        "",
        "PEM certificates trusted for an https:// --join (a self-signed cert itself)",
    ),
];

/// The flag of `orquesta worker` that sets each variable, so a message
/// names what to change.
pub const WORKER_FLAGS: &[(&str, &str)] = &[
    ("WORKER_ID", "--worker-id"),
    ("WORKER_PORT", "--port"),
    ("WORKER_HOST", "--host"),
    ("WORKER_CAPACITY", "--capacity"),
    ("WORKER_ALGORITHMS", "--algorithms"),
    ("TASK_HISTORY_SIZE", "--history-size"),
    ("WORKER_MAX_BACKLOG", "--max-backlog"),
    ("LOGS_DIR", "--logs-dir"),
    ("WORKER_DRAIN_TIMEOUT", "--drain-timeout"),
    ("WORKER_DRAIN_AFTER", "--drain-after"),
    ("WORKER_IDLE_EXIT", "--idle-exit"),
    ("MAX_PARTICLES", "--max-particles"),
    ("MAX_PARTICLE_STEPS", "--max-particle-steps"),
    ("RESULT_RETENTION", "--result-retention"),
    ("HTTP_WORKERS", "--http-workers"),
    ("WORKER_THREADS_PER_TASK", "--threads-per-task"),
    ("WORKER_JOIN", "--join"),
    ("WORKER_ADVERTISE", "--advertise"),
    ("ORQUESTA_INSECURE", "--insecure"),
];

/// Reads a worker's settings from an environment map (the process
/// environment with `.env` and flags merged in), listing every problem.
pub fn worker_settings_from_env(env: &BTreeMap<String, String>) -> Result<WorkerSettings, Vec<String>> {
    let mut r = EnvReader::new(env, WORKER_SETTINGS, WORKER_FLAGS);
    let worker_id = r.optional("WORKER_ID");
    if let Some(id) = &worker_id {
        if let Err(reason) = TaskId::parse(id) {
            let name = r.name("WORKER_ID");
            r.problem(format!("{name}: invalid worker id {id:?}: {reason}"));
        }
    }
    let port = r.port("WORKER_PORT");
    let capacity = match r.optional("WORKER_CAPACITY") {
        None => crate::util::machine::available_threads(),
        Some(_) => r.count("WORKER_CAPACITY"),
    };
    let algorithms = r
        .optional("WORKER_ALGORITHMS")
        .and_then(|list| algorithm_list(&mut r, &list));
    let history_size = r.whole("TASK_HISTORY_SIZE") as usize;
    let max_backlog = r.whole("WORKER_MAX_BACKLOG") as usize;
    let drain_timeout = r.seconds("WORKER_DRAIN_TIMEOUT", true);
    let checkpoint_interval = r.seconds("CHECKPOINT_INTERVAL", true);
    let drain_after = optional_duration(&mut r, "WORKER_DRAIN_AFTER");
    let idle_exit = optional_duration(&mut r, "WORKER_IDLE_EXIT");
    let max_particles = r.whole("MAX_PARTICLES");
    let max_particle_steps = r.positive("MAX_PARTICLE_STEPS", 1e11);
    let max_memory_bytes = match r.optional("WORKER_MEMORY_LIMIT") {
        None => default_memory_limit(),
        Some(raw) => parse_bytes(&raw).unwrap_or_else(|e| {
            let name = r.name("WORKER_MEMORY_LIMIT");
            r.problem(format!("{name}: {e}"));
            0
        }),
    };
    let result_retention = r.seconds("RESULT_RETENTION", true);
    // 0 means 1 for both (as the flags always allowed)
    let http_workers = r.whole("HTTP_WORKERS") as usize;
    let http = r.http_limits();
    let log = r.log_options();
    let threads_per_task = r
        .optional("WORKER_THREADS_PER_TASK")
        .map(|_| r.whole("WORKER_THREADS_PER_TASK") as usize);
    let host = r.get("WORKER_HOST");
    let join = r.optional("WORKER_JOIN").and_then(|url| join_url(&mut r, &url));
    let advertise = r
        .optional("WORKER_ADVERTISE")
        .and_then(|a| advertise_address(&mut r, &a));
    if join.is_some() && advertise.is_none() && is_wildcard(&host) {
        let (h, a) = (r.name("WORKER_HOST"), r.name("WORKER_ADVERTISE"));
        r.problem(format!(
            "{h}: {host} accepts connections on every interface, but an orchestrator cannot \
             connect to {host}; with --join, also give {a}, the HOST:PORT it reaches this machine at"
        ));
    }
    let host_name = r.name("WORKER_HOST");
    let (token, bind) = token_and_bind(&mut r, env, &host, &host_name);
    let tls = read_tls(&mut r, env);
    if join.as_deref().is_some_and(|j| j.starts_with("https://")) && tls.client.is_none() {
        let name = r.name("WORKER_JOIN");
        r.problem(format!("{name}: {}", crate::util::tls::NEEDS_CA));
    }
    let logs_dir = r.path("LOGS_DIR");
    r.finish()?;
    Ok(WorkerSettings {
        worker_id,
        host,
        port,
        capacity,
        algorithms,
        history_size,
        max_backlog,
        logs_dir,
        drain_timeout,
        checkpoint_interval,
        drain_after,
        idle_exit,
        limits: Limits {
            max_particles,
            max_particle_steps,
            max_memory_bytes: max_memory_bytes as f64,
            memory_setting: "WORKER_MEMORY_LIMIT",
            ..Limits::default()
        },
        test_kernels: r.get("ORQUESTA_TEST_KERNELS") == "1",
        result_retention,
        max_held_results: MAX_HELD_RESULTS,
        http_workers,
        http,
        log,
        threads_per_task,
        join,
        advertise,
        token,
        bind,
        tls,
    })
}

/// A duration setting that may be left empty (never).
fn optional_duration(r: &mut EnvReader, key: &str) -> Option<Duration> {
    let raw = r.optional(key)?;
    match crate::util::duration::parse_duration(&raw) {
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            let name = r.name(key);
            r.problem(format!(
                "{name}: expected a duration above 0 (or nothing for never), found {raw:?}"
            ));
            None
        }
        Err(e) => {
            let name = r.name(key);
            r.problem(format!("{name}: {e}"));
            None
        }
    }
}

/// `WORKER_MEMORY_LIMIT` when it is not set: half of the machine's memory,
/// so that one task can never take it all (the rest is for the other
/// tasks, the worker itself and the machine); the simulation's built-in
/// 4 GB where the machine's size cannot be read.
pub fn default_memory_limit() -> u64 {
    crate::util::machine::total_memory_bytes()
        .map_or(Limits::default().max_memory_bytes as u64, |total| total / 2)
}

/// A size in bytes: a whole or decimal number with an optional unit, `B`,
/// `kB`/`MB`/`GB`/`TB` (powers of 1000) or `KiB`/`MiB`/`GiB`/`TiB` (powers
/// of 1024), case and spaces ignored: `4GiB`, `512 MB`, `1e9`. At least one
/// byte.
pub fn parse_bytes(raw: &str) -> Result<u64, String> {
    let text = raw.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => f64::NAN,
    };
    let bytes = number.trim().parse::<f64>().map(|v| v * scale);
    match bytes {
        // below 2^63: the cast is exact enough and cannot saturate
        Ok(b) if (1.0..9.2e18).contains(&b) => Ok(b as u64),
        _ => Err(format!(
            "expected a size such as 4GiB, 512MB or a number of bytes (at least 1), found {raw:?}"
        )),
    }
}

/// Whether a bind address means "every interface" (no one can connect to it).
pub fn is_wildcard(host: &str) -> bool {
    matches!(host.trim_matches(|c| c == '[' || c == ']'), "0.0.0.0" | "::" | "")
}

/// `http://HOST[:PORT]` or `https://…` without a path (a trailing `/`
/// dropped), or a problem.
fn join_url(r: &mut EnvReader<'_>, url: &str) -> Option<String> {
    let name = r.name("WORKER_JOIN");
    let trimmed = url.trim().trim_end_matches('/');
    let Some(rest) = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"))
    else {
        r.problem(format!(
            "{name}: expected the orchestrator's URL such as http://10.0.0.1:5000, found {url:?}"
        ));
        return None;
    };
    if rest.is_empty() || rest.contains('/') {
        r.problem(format!(
            "{name}: expected a URL without a path such as http://10.0.0.1:5000, found {url:?}"
        ));
        return None;
    }
    Some(trimmed.to_string())
}

/// `HOST:PORT` with a real port and a host one can connect to, or a problem.
fn advertise_address(r: &mut EnvReader<'_>, addr: &str) -> Option<String> {
    let name = r.name("WORKER_ADVERTISE");
    let addr = addr
        .trim()
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let ok = addr.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !is_wildcard(host) && port.parse::<u16>().is_ok_and(|p| p != 0)
    });
    if ok {
        Some(addr.to_string())
    } else {
        r.problem(format!(
            "{name}: expected HOST:PORT that the orchestrator can connect to, such as \
             node7.cluster:5001, found {addr:?}"
        ));
        None
    }
}

/// The algorithm names of a comma-separated list; an unknown one, or an
/// empty list, is a problem.
fn algorithm_list(r: &mut EnvReader<'_>, list: &str) -> Option<Vec<String>> {
    let known = crate::sim::algorithm_names();
    let name = r.name("WORKER_ALGORITHMS");
    let mut out = Vec::new();
    for a in list.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        if known.contains(&a) {
            out.push(a.to_string());
        } else {
            r.problem(format!(
                "{name}: {a:?} is not a kernel; expected some of {}",
                known.join(", ")
            ));
        }
    }
    if out.is_empty() {
        r.problem(format!("{name}: the list is empty"));
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::settings::tests::env;

    #[test]
    fn defaults_match_the_flags_documentation() {
        let s = worker_settings_from_env(&env(&[])).unwrap();
        assert_eq!(s.worker_id, None);
        assert_eq!(s.port, 5001);
        assert_eq!(s.host, "127.0.0.1");
        assert!(s.capacity >= 1);
        assert_eq!(s.algorithms, None);
        assert_eq!(s.history_size, 1000);
        assert_eq!(s.drain_timeout, Duration::from_secs(30));
        assert_eq!(s.result_retention, Duration::from_secs(3600));
        assert_eq!(s.http_workers, 2);
        assert_eq!(s.http.max_connections, 1024);
        assert_eq!(s.http.body_timeout, Duration::from_secs(10));
        assert_eq!(s.threads_per_task, None);
        assert_eq!(s.limits.max_particles, 2_000_000);
    }

    #[test]
    fn log_settings_default_and_a_bad_format_names_the_accepted_values() {
        let s = worker_settings_from_env(&env(&[])).unwrap();
        assert_eq!(s.log, crate::util::logging::LogOptions::default());
        let problems = worker_settings_from_env(&env(&[("LOG_FORMAT", "yaml")])).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("LOG_FORMAT") && p.contains("text, json")),
            "{problems:?}"
        );
    }

    #[test]
    fn the_seeds_variables_are_read() {
        let s = worker_settings_from_env(&env(&[
            ("WORKER_ID", "worker2"),
            ("WORKER_PORT", "5002"),
            ("WORKER_ALGORITHMS", "python, cython"),
            ("WORKER_CAPACITY", "3"),
        ]))
        .unwrap();
        assert_eq!(s.worker_id.as_deref(), Some("worker2"));
        assert_eq!(s.port, 5002);
        assert_eq!(s.capacity, 3);
        assert_eq!(s.algorithms, Some(vec!["python".into(), "cython".into()]));
    }

    #[test]
    fn every_bad_value_is_named_with_its_flag() {
        let e = worker_settings_from_env(&env(&[
            ("WORKER_ID", "a/b"),
            ("WORKER_CAPACITY", "0"),
            ("WORKER_ALGORITHMS", "fortran"),
            ("WORKER_DRAIN_TIMEOUT", "-1"),
            ("WORKER_PORT", "70000"),
        ]))
        .unwrap_err();
        assert!(e.iter().any(|p| p.contains("invalid worker id")), "{e:?}");
        assert!(e.iter().any(|p| p.contains("--capacity")), "{e:?}");
        assert!(e.iter().any(|p| p.contains("fortran")), "{e:?}");
        assert!(e.iter().any(|p| p.contains("--drain-timeout")), "{e:?}");
        assert!(e.iter().any(|p| p.starts_with("WORKER_PORT (--port)")), "{e:?}");
    }

    #[test]
    fn the_memory_limit_takes_sizes_and_defaults_to_half_the_machine() {
        let limit = |v: &str| {
            worker_settings_from_env(&env(&[("WORKER_MEMORY_LIMIT", v)])).map(|s| s.limits.max_memory_bytes)
        };
        assert_eq!(limit("4GiB"), Ok(4.0 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(limit("512MB"), Ok(512e6));
        assert_eq!(limit(" 512 mb "), Ok(512e6));
        assert_eq!(limit("1000000"), Ok(1e6));
        assert_eq!(limit("1e9"), Ok(1e9));
        assert_eq!(limit("1.5GB"), Ok(1.5e9));
        assert_eq!(limit("64kib"), Ok(65536.0));
        for bad in ["0", "-1GB", "lots", "4 parsecs", "NaN", "inf", "1e30"] {
            let e = limit(bad).unwrap_err();
            assert!(
                e.iter()
                    .any(|p| p.starts_with("WORKER_MEMORY_LIMIT: expected a size such as 4GiB")),
                "{bad}: {e:?}"
            );
        }
        let s = worker_settings_from_env(&env(&[])).unwrap();
        assert_eq!(s.limits.max_memory_bytes, default_memory_limit() as f64);
        assert_eq!(s.limits.memory_setting, "WORKER_MEMORY_LIMIT");
        if let Some(total) = crate::util::machine::total_memory_bytes() {
            assert_eq!(default_memory_limit(), total / 2);
        }
    }

    #[test]
    fn join_takes_an_http_url_and_advertise_a_reachable_address() {
        let s = worker_settings_from_env(&env(&[
            ("WORKER_JOIN", "http://10.0.0.1:5000/"),
            ("WORKER_HOST", "0.0.0.0"),
            ("WORKER_ADVERTISE", "node7:5001"),
            ("ORQUESTA_TOKEN", "t"),
        ]))
        .unwrap();
        assert_eq!(s.join.as_deref(), Some("http://10.0.0.1:5000"));
        assert_eq!(s.advertise.as_deref(), Some("node7:5001"));
        let s = worker_settings_from_env(&env(&[])).unwrap();
        assert_eq!((s.join, s.advertise), (None, None));
        let e = worker_settings_from_env(&env(&[
            ("WORKER_JOIN", "10.0.0.1:5000"),
            ("WORKER_ADVERTISE", "0.0.0.0:5001"),
        ]))
        .unwrap_err();
        assert!(e.iter().any(|p| p.starts_with("WORKER_JOIN (--join)")), "{e:?}");
        assert!(
            e.iter().any(|p| p.starts_with("WORKER_ADVERTISE (--advertise)")),
            "{e:?}"
        );
    }

    #[test]
    fn joining_from_every_interface_needs_an_advertised_address() {
        let e = worker_settings_from_env(&env(&[
            ("WORKER_JOIN", "http://10.0.0.1:5000"),
            ("WORKER_HOST", "0.0.0.0"),
        ]))
        .unwrap_err();
        assert!(
            e.iter()
                .any(|p| p.contains("cannot connect to 0.0.0.0") && p.contains("--advertise")),
            "{e:?}"
        );
        // without --join, 0.0.0.0 is fine (the workers file says where it
        // is), given a token
        assert!(
            worker_settings_from_env(&env(&[("WORKER_HOST", "0.0.0.0"), ("ORQUESTA_TOKEN", "t")])).is_ok()
        );
    }

    #[test]
    fn an_open_host_needs_a_token_or_insecure() {
        let e = worker_settings_from_env(&env(&[("WORKER_HOST", "0.0.0.0")])).unwrap_err();
        assert!(
            e[0].starts_with("WORKER_HOST (--host): 0.0.0.0") && e[0].contains("--insecure"),
            "{e:?}"
        );
        let s = worker_settings_from_env(&env(&[("WORKER_HOST", "0.0.0.0"), ("ORQUESTA_INSECURE", "1")]))
            .unwrap();
        assert_eq!(s.bind, BindVerdict::Insecure);
    }
}
