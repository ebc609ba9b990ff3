//! Configuration sources shared by every subcommand: the `.env` file
//! (dotenv), then the environment, then command-line flags, each overriding
//! the one before.

use std::collections::BTreeMap;
use std::path::Path;

/// Parses dotenv text: `KEY=VALUE` lines, optional `export `, `#` comments
/// (also after an unquoted value, as in the seed's `.env`), single or double
/// quotes around a value. Returns the pairs and a message for each line that
/// is not understood.
pub fn parse_dotenv(text: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let mut vars = BTreeMap::new();
    let mut problems = Vec::new();
    for (number, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            problems.push(format!("line {}: expected KEY=VALUE, found {raw:?}", number + 1));
            continue;
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            problems.push(format!("line {}: {key:?} is not a variable name", number + 1));
            continue;
        }
        let value = value.trim();
        let value = match value.chars().next() {
            Some(q @ ('"' | '\'')) => match value[1..].find(q) {
                Some(end) => value[1..1 + end].to_string(),
                None => {
                    problems.push(format!("line {}: unclosed quote in {key}", number + 1));
                    continue;
                }
            },
            _ => match value.find(" #").or_else(|| value.find("\t#")) {
                Some(hash) => value[..hash].trim_end().to_string(),
                None => value.to_string(),
            },
        };
        vars.insert(key.to_string(), value);
    }
    (vars, problems)
}

/// Loads `.env` from `path` into the process environment, without
/// overriding variables that are already set. Call before any thread starts.
/// Returns the problems found in the file (a missing file is not one).
pub fn load_dotenv(path: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let (vars, problems) = parse_dotenv(&text);
    for (key, value) in vars {
        if std::env::var_os(&key).is_none() {
            std::env::set_var(key, value);
        }
    }
    problems
        .into_iter()
        .map(|p| format!("{}: {p}", path.display()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_seeds_env_file() {
        let text = "# ETAPA 6\nTASK_DISTRIBUTION_INTERVAL=2.0    # Intervalo\nMAX_TASK_RETRIES=3\n\
                    RESULTS_STORAGE_PATH=results/     # Directorio\nexport WORKER_ID=\"worker 1\"\n\
                    QUOTED='a # b'\n";
        let (vars, problems) = parse_dotenv(text);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(vars["TASK_DISTRIBUTION_INTERVAL"], "2.0");
        assert_eq!(vars["MAX_TASK_RETRIES"], "3");
        assert_eq!(vars["RESULTS_STORAGE_PATH"], "results/");
        assert_eq!(vars["WORKER_ID"], "worker 1");
        assert_eq!(vars["QUOTED"], "a # b");
    }

    #[test]
    fn reports_lines_it_cannot_read() {
        let (vars, problems) = parse_dotenv("GOOD=1\nno equals sign\nBAD KEY=2\nX=\"open\n");
        assert_eq!(vars.len(), 1);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("line 2"));
    }
}

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::model::{describe, TaskId};
use crate::sim::Limits;

/// How the LoadBalancer picks among eligible workers
/// (`LOAD_BALANCING_ALGORITHM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balancing {
    RoundRobin,
    LeastLoaded,
}

impl Balancing {
    pub fn as_str(self) -> &'static str {
        match self {
            Balancing::RoundRobin => "round_robin",
            Balancing::LeastLoaded => "least_loaded",
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
    /// `TASK_TIMEOUT`: the longest one attempt may run.
    pub task_timeout: Option<Duration>,
    pub balancing: Balancing,
    pub performance_monitoring: bool,
    pub flush_interval: Duration,
    pub file_quiet: Duration,
    pub rescan_interval: Duration,
    pub max_file_bytes: u64,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// fsync every commit (`DB_SYNC=full`) or leave it to checkpoints.
    pub sync_full: bool,
    pub limits: Limits,
    pub test_kernels: bool,
}

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
        "seconds between health checks of each worker",
    ),
    (
        "TASK_TIMEOUT",
        "none",
        "longest one attempt may run, in seconds (none = no limit)",
    ),
    (
        "LOAD_BALANCING_ALGORITHM",
        "round_robin",
        "round_robin or least_loaded",
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
    ("RESULTS_FLUSH_INTERVAL", "1.0", "seconds between results files"),
    (
        "FILE_QUIET_PERIOD",
        "0.5",
        "seconds a dropped file must stay unchanged before it is read",
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
    ("MAX_PARTICLES", "2000000", "largest num_particles accepted"),
    (
        "MAX_PARTICLE_STEPS",
        "1e11",
        "largest num_particles × num_steps accepted",
    ),
];

/// Reads settings from an environment map (the process environment with
/// `.env` and flags merged in), listing every problem.
pub fn settings_from_env(env: &BTreeMap<String, String>) -> Result<Settings, Vec<String>> {
    let mut problems = Vec::new();
    let get = |key: &str| -> String {
        env.get(key).cloned().unwrap_or_else(|| {
            SETTINGS
                .iter()
                .find(|(k, _, _)| *k == key)
                .map_or(String::new(), |(_, d, _)| d.to_string())
        })
    };
    let mut secs = |key: &str, allow_zero: bool| -> Duration {
        let raw = get(key);
        match raw.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && (v > 0.0 || (allow_zero && v == 0.0)) && v < 1e9 => {
                Duration::from_secs_f64(v)
            }
            _ => {
                problems.push(format!(
                    "{key}: expected a number of seconds {} 0, found {raw:?}; fix it in .env or the environment",
                    if allow_zero { "≥" } else { ">" }
                ));
                Duration::from_secs(1)
            }
        }
    };
    let distribution_interval = secs("TASK_DISTRIBUTION_INTERVAL", false);
    let worker_timeout = secs("WORKER_TIMEOUT", false);
    let heartbeat_interval = secs("HEARTBEAT_INTERVAL", false);
    let flush_interval = secs("RESULTS_FLUSH_INTERVAL", false);
    let file_quiet = secs("FILE_QUIET_PERIOD", true);
    let rescan_interval = secs("RESCAN_INTERVAL", false);
    let retry_base = secs("RETRY_BACKOFF_BASE", true);
    let retry_max = secs("RETRY_BACKOFF_MAX", true);
    let task_timeout = match get("TASK_TIMEOUT").trim() {
        "" | "none" | "0" => None,
        _ => Some(secs("TASK_TIMEOUT", false)),
    };
    let mut whole = |key: &str| -> u64 {
        let raw = get(key);
        raw.trim().parse::<u64>().unwrap_or_else(|_| {
            problems.push(format!(
                "{key}: expected a whole number ≥ 0, found {raw:?}; fix it in .env or the environment"
            ));
            0
        })
    };
    let max_retries = whole("MAX_TASK_RETRIES").min(u32::MAX as u64) as u32;
    let history_size = whole("TASK_HISTORY_SIZE") as usize;
    let max_file_bytes = whole("TASK_FILE_MAX_BYTES");
    let max_particles = whole("MAX_PARTICLES");
    let port_raw = get("ORCHESTRATOR_PORT");
    let port = port_raw.trim().parse::<u16>().unwrap_or_else(|_| {
        problems.push(format!(
            "ORCHESTRATOR_PORT: expected a port from 0 to 65535, found {port_raw:?}"
        ));
        0
    });
    let max_particle_steps = match get("MAX_PARTICLE_STEPS").trim().parse::<f64>() {
        Ok(v) if v > 0.0 => v,
        _ => {
            problems.push(format!(
                "MAX_PARTICLE_STEPS: expected a number > 0, found {:?}",
                get("MAX_PARTICLE_STEPS")
            ));
            1e11
        }
    };
    let mut boolean = |key: &str| -> bool {
        let raw = get(key);
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => {
                problems.push(format!("{key}: expected true or false, found {raw:?}"));
                true
            }
        }
    };
    let performance_monitoring = boolean("PERFORMANCE_MONITORING");
    if !boolean("MANUAL_MODE") {
        problems.push(
            "MANUAL_MODE=false: automatic task generation is not part of Orquesta; tasks come from files \
             dropped into task_queues/ (or POST /tasks). Set MANUAL_MODE=true or remove the line"
                .into(),
        );
    }
    let balancing = match get("LOAD_BALANCING_ALGORITHM").trim() {
        "round_robin" => Balancing::RoundRobin,
        "least_loaded" => Balancing::LeastLoaded,
        other => {
            problems.push(format!(
                "LOAD_BALANCING_ALGORITHM: expected round_robin or least_loaded, found {other:?}"
            ));
            Balancing::RoundRobin
        }
    };
    let sync_full = match get("DB_SYNC").trim() {
        "full" => true,
        "normal" => false,
        other => {
            problems.push(format!("DB_SYNC: expected full or normal, found {other:?}"));
            true
        }
    };
    if heartbeat_interval > worker_timeout {
        problems.push(format!(
            "HEARTBEAT_INTERVAL ({:?}) is longer than WORKER_TIMEOUT ({:?}): a worker would be declared down \
             between two heartbeats; lower HEARTBEAT_INTERVAL",
            heartbeat_interval, worker_timeout
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Settings {
        host: get("ORCHESTRATOR_HOST"),
        port,
        workers_file: PathBuf::from(get("WORKERS_CONFIG")),
        task_queue_dir: PathBuf::from(get("TASK_QUEUE_DIR")),
        results_dir: PathBuf::from(get("RESULTS_STORAGE_PATH")),
        logs_dir: PathBuf::from(get("LOGS_DIR")),
        db_path: PathBuf::from(get("DATABASE_PATH")),
        distribution_interval,
        max_retries,
        history_size,
        worker_timeout,
        heartbeat_interval,
        task_timeout,
        balancing,
        performance_monitoring,
        flush_interval,
        file_quiet,
        rescan_interval,
        max_file_bytes,
        retry_base,
        retry_max,
        sync_full,
        limits: Limits {
            max_particles,
            max_particle_steps,
            ..Limits::default()
        },
        test_kernels: crate::model::test_kernels_enabled(),
    })
}

/// The process environment as a map.
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

/// One worker of `config_workers.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerEntry {
    pub id: String,
    pub host: String,
    pub port: u16,
    pub capacity: usize,
    /// As written (aliases included).
    pub algorithms: Vec<String>,
}

impl WorkerEntry {
    pub fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Kernel names behind `algorithms`, aliases resolved.
    pub fn kernels(&self) -> Vec<&'static str> {
        let mut k: Vec<&'static str> = self.algorithms.iter().filter_map(|a| resolve_kernel(a)).collect();
        k.sort_unstable();
        k.dedup();
        k
    }

    /// True if this worker runs on this machine (so `orquesta up` starts it).
    pub fn is_local(&self) -> bool {
        let h = self.host.trim_matches(|c| c == '[' || c == ']');
        h == "localhost"
            || h == "::1"
            || h == "0.0.0.0"
            || h.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// A kernel name for an algorithm name or alias; test kernels by their own
/// name.
pub fn resolve_kernel(name: &str) -> Option<&'static str> {
    if let Some(t) = crate::model::TEST_KERNEL_NAMES.iter().find(|t| **t == name) {
        return Some(t);
    }
    crate::sim::lookup(name).map(|k| k.name())
}

/// Parses `config_workers.json` (the seed's shape), listing every problem.
pub fn parse_workers(bytes: &[u8]) -> Result<Vec<WorkerEntry>, Vec<String>> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        vec![format!(
            "malformed JSON at line {}, column {}: {e}",
            e.line(),
            e.column()
        )]
    })?;
    let Some(list) = value.get("workers").and_then(Value::as_array) else {
        return Err(vec![
            "workers: required, an array of {\"id\", \"host\", \"port\", \"capacity\", \"algorithms\"}"
                .into(),
        ]);
    };
    let mut problems = Vec::new();
    let mut entries = Vec::new();
    let mut ids = std::collections::HashSet::new();
    let mut addrs = std::collections::HashSet::new();
    for (i, w) in list.iter().enumerate() {
        let at = |f: &str| format!("workers[{i}].{f}");
        let before = problems.len();
        let id = match w.get("id") {
            Some(Value::String(s)) => {
                if let Err(e) = TaskId::parse(s) {
                    problems.push(format!("{}: {e}", at("id")));
                } else if !ids.insert(s.clone()) {
                    problems.push(format!(
                        "{}: {s:?} is used by two workers; ids must be unique",
                        at("id")
                    ));
                }
                s.clone()
            }
            other => {
                problems.push(format!(
                    "{}: expected a string such as \"worker1\", found {}",
                    at("id"),
                    other.map_or("nothing".into(), describe)
                ));
                String::new()
            }
        };
        let host = match w.get("host") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            other => {
                problems.push(format!(
                    "{}: expected a host name or address such as \"127.0.0.1\", found {}",
                    at("host"),
                    other.map_or("nothing".into(), describe)
                ));
                String::new()
            }
        };
        let port = match w.get("port").and_then(Value::as_u64) {
            Some(p) if (1..=65535).contains(&p) => p as u16,
            _ => {
                problems.push(format!(
                    "{}: expected a port from 1 to 65535, found {}",
                    at("port"),
                    w.get("port").map_or("nothing".into(), describe)
                ));
                0
            }
        };
        let capacity = match w.get("capacity") {
            None => crate::util::machine::available_threads(),
            Some(v) => match v.as_u64() {
                Some(c) if (1..=4096).contains(&c) => c as usize,
                _ => {
                    problems.push(format!(
                        "{}: expected a whole number from 1 to 4096, found {}",
                        at("capacity"),
                        describe(v)
                    ));
                    1
                }
            },
        };
        let algorithms = match w.get("algorithms") {
            None => crate::sim::algorithm_names()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            Some(Value::Array(a)) if !a.is_empty() => {
                let mut names = Vec::new();
                for (j, n) in a.iter().enumerate() {
                    match n.as_str() {
                        Some(s) if resolve_kernel(s).is_some() => names.push(s.to_string()),
                        _ => problems.push(format!(
                            "{}[{j}]: expected one of {}, found {}",
                            at("algorithms"),
                            crate::sim::algorithm_names().join(", "),
                            describe(n)
                        )),
                    }
                }
                names
            }
            Some(other) => {
                problems.push(format!(
                    "{}: expected a non-empty array such as [\"python\", \"cython\"], found {}",
                    at("algorithms"),
                    describe(other)
                ));
                Vec::new()
            }
        };
        if problems.len() == before {
            let entry = WorkerEntry {
                id,
                host,
                port,
                capacity,
                algorithms,
            };
            if !addrs.insert(entry.address()) {
                problems.push(format!(
                    "workers[{i}]: {} is also the address of another worker",
                    entry.address()
                ));
            }
            entries.push(entry);
        }
    }
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod settings_tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_follow_the_design() {
        let s = settings_from_env(&env(&[])).unwrap();
        assert_eq!(s.port, 5000);
        assert_eq!(s.max_retries, 3);
        assert_eq!(s.worker_timeout, Duration::from_secs(30));
        assert_eq!(s.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(s.task_timeout, None);
        assert_eq!(s.balancing, Balancing::RoundRobin);
        assert_eq!(s.db_path, PathBuf::from("data/orquesta.db"));
        assert_eq!(s.max_file_bytes, 256 << 20);
        assert_eq!(s.results_dir, PathBuf::from("results/"));
    }

    #[test]
    fn the_seeds_env_is_accepted() {
        let (vars, _) = parse_dotenv(
            "TASK_DISTRIBUTION_INTERVAL=2.0    # Intervalo\nMAX_TASK_RETRIES=3\nRESULTS_STORAGE_PATH=results/\n\
             TASK_HISTORY_SIZE=1000\nWORKER_TIMEOUT=300\nLOAD_BALANCING_ALGORITHM=round_robin\n\
             PERFORMANCE_MONITORING=true\nMANUAL_MODE=true\n",
        );
        let s = settings_from_env(&vars).unwrap();
        assert_eq!(s.worker_timeout, Duration::from_secs(300));
    }

    #[test]
    fn every_bad_value_is_named() {
        let e = settings_from_env(&env(&[
            ("MANUAL_MODE", "false"),
            ("WORKER_TIMEOUT", "soon"),
            ("LOAD_BALANCING_ALGORITHM", "random"),
            ("MAX_TASK_RETRIES", "-1"),
            ("ORCHESTRATOR_PORT", "70000"),
        ]))
        .unwrap_err();
        assert_eq!(e.len(), 5, "{e:?}");
        assert!(e
            .iter()
            .any(|p| p.contains("automatic task generation is not part")));
        assert!(e.iter().any(|p| p.starts_with("WORKER_TIMEOUT")));
        assert!(e.iter().any(|p| p.starts_with("LOAD_BALANCING_ALGORITHM")));
        assert!(e.iter().any(|p| p.starts_with("MAX_TASK_RETRIES")));
        assert!(e.iter().any(|p| p.starts_with("ORCHESTRATOR_PORT")));
    }

    #[test]
    fn the_seeds_workers_file_parses() {
        let text = br#"{"workers": [
            {"id": "worker1", "host": "gpu-node-1.lab", "port": 5001, "capacity": 2, "algorithms": ["python", "cython"]},
            {"id": "worker2", "host": "127.0.0.1", "port": 5002, "capacity": 4, "algorithms": ["python"]}]}"#;
        let w = parse_workers(text).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].kernels(), ["optimized", "reference"]);
        assert!(!w[0].is_local());
        assert!(w[1].is_local());
        assert_eq!(w[1].address(), "127.0.0.1:5002");
    }

    #[test]
    fn bad_workers_files_name_the_field() {
        let e = parse_workers(
            br#"{"workers": [{"id": "a", "host": "h", "port": 0, "capacity": 0, "algorithms": ["java"]},
                             {"id": "a", "host": "", "port": 1}]}"#,
        )
        .unwrap_err();
        assert!(e.iter().any(|p| p.starts_with("workers[0].port")), "{e:?}");
        assert!(e.iter().any(|p| p.starts_with("workers[0].capacity")), "{e:?}");
        assert!(
            e.iter().any(|p| p.starts_with("workers[0].algorithms[0]")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|p| p.starts_with("workers[1].id") && p.contains("unique")),
            "{e:?}"
        );
        assert!(e.iter().any(|p| p.starts_with("workers[1].host")), "{e:?}");
        assert!(parse_workers(b"{").unwrap_err()[0].contains("malformed"));
        assert!(parse_workers(b"{}").unwrap_err()[0].starts_with("workers: required"));
    }
}
