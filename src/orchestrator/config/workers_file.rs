//! `config_workers.json` (the seed's shape: `id`, `host`, `port`,
//! `capacity`, `algorithms`, and Orquesta's optional `"tls": true` for a
//! worker that serves HTTPS), parsed and checked with every problem named.

use serde_json::Value;

use crate::model::{describe, KernelName, TaskId};

/// One worker of `config_workers.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerEntry {
    pub id: String,
    pub host: String,
    pub port: u16,
    pub capacity: usize,
    /// As written (aliases included).
    pub algorithms: Vec<String>,
    /// The worker serves HTTPS (`"tls": true`, or a join from `https://`).
    pub tls: bool,
}

impl WorkerEntry {
    /// `https://HOST:PORT` or `http://HOST:PORT`.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.address())
    }

    pub fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Kernel names behind `algorithms`, aliases resolved.
    pub fn kernels(&self) -> Vec<KernelName> {
        let mut k: Vec<KernelName> = self
            .algorithms
            .iter()
            .filter_map(|a| crate::sim::resolve_kernel(a))
            .collect();
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

    /// True if this entry's address is the orchestrator's own, bound at
    /// `own`: the same port, and a host that reaches it (its bound
    /// address, or a loopback name when it listens on loopback or on every
    /// address). A host elsewhere on the same port is another machine.
    pub fn is_address_of(&self, own: std::net::SocketAddr) -> bool {
        if self.port != own.port() {
            return false;
        }
        let h = self.host.trim_matches(|c| c == '[' || c == ']');
        let ip = own.ip();
        match h.parse::<std::net::IpAddr>() {
            Ok(host) => host == ip || (ip.is_unspecified() && host.is_loopback()),
            Err(_) => h.eq_ignore_ascii_case("localhost") && (ip.is_loopback() || ip.is_unspecified()),
        }
    }
}

/// The message an orchestrator logs when the workers file lists nobody.
pub const NO_WORKERS_CONFIGURED: &str =
    "no workers configured; waiting for workers to join (orquesta worker --join http://ORCHESTRATOR:PORT)";

/// `http://HOST:PORT` or `https://HOST:PORT` (the `url` of a join) → host
/// and port.
pub fn parse_worker_url(url: &str) -> Result<(String, u16), String> {
    let expected = || format!("expected http://HOST:PORT or https://HOST:PORT, found {url:?}");
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(expected)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = rest.rsplit_once(':').ok_or_else(expected)?;
    let host = host.trim_matches(|c| c == '[' || c == ']');
    if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
        return Err(expected());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((host.to_string(), p)),
        _ => Err(format!(
            "expected a port from 1 to 65535 in {url:?}, found {port:?}"
        )),
    }
}

/// A worker that joins by itself (`POST /workers/join`): its entry, or
/// every problem with its fields, named as the join body names them.
pub fn member_entry(
    id: &str,
    url: &str,
    capacity: usize,
    algorithms: &[String],
) -> Result<WorkerEntry, Vec<String>> {
    let mut problems = Vec::new();
    if let Err(e) = TaskId::parse(id) {
        problems.push(format!("id: {e}"));
    }
    let address = parse_worker_url(url).map_err(|e| problems.push(format!("url: {e}")));
    if !(1..=4096).contains(&capacity) {
        problems.push(format!(
            "capacity: expected a whole number from 1 to 4096, found {capacity}"
        ));
    }
    if algorithms.is_empty() {
        problems.push("algorithms: expected a non-empty list such as [\"python\"]".into());
    }
    for (j, a) in algorithms.iter().enumerate() {
        if crate::sim::resolve_kernel(a).is_none() {
            problems.push(format!(
                "algorithms[{j}]: expected one of {}, found {a:?}",
                crate::sim::algorithm_names().join(", ")
            ));
        }
    }
    match address {
        Ok((host, port)) if problems.is_empty() => Ok(WorkerEntry {
            id: id.to_string(),
            host,
            port,
            capacity,
            algorithms: algorithms.to_vec(),
            tls: url.starts_with("https://"),
        }),
        _ => Err(problems),
    }
}

/// Parses `config_workers.json` (the seed's shape), listing every problem.
/// `{"workers": []}` is valid: workers may all join.
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
                        Some(s) if crate::sim::resolve_kernel(s).is_some() => names.push(s.to_string()),
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
        let tls = match w.get("tls") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                problems.push(format!(
                    "{}: expected true (the worker serves HTTPS) or false, found {}",
                    at("tls"),
                    describe(other)
                ));
                false
            }
        };
        if problems.len() == before {
            let entry = WorkerEntry {
                id,
                host,
                port,
                capacity,
                algorithms,
                tls,
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

/// The largest workers file read: a few hundred bytes a worker, so 16 MiB
/// is tens of thousands of workers, and a FIFO, a device or a wrong file
/// named by `WORKERS_CONFIG` is an error, not a hang.
pub const WORKERS_FILE_MAX_BYTES: u64 = 16 << 20;

/// Reads the workers file (see [`crate::util::fs::read_setting_file`]).
pub fn read_workers_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    crate::util::fs::read_setting_file(path, WORKERS_FILE_MAX_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_orchestrators_own_address_is_recognised_and_only_it() {
        let entry = |host: &str, port: u16| WorkerEntry {
            id: "w".into(),
            host: host.into(),
            port,
            capacity: 1,
            algorithms: vec!["python".into()],
            tls: false,
        };
        let loopback: std::net::SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let every: std::net::SocketAddr = "0.0.0.0:5000".parse().unwrap();
        let lan: std::net::SocketAddr = "10.0.0.5:5000".parse().unwrap();
        for host in ["127.0.0.1", "localhost", "LOCALHOST"] {
            assert!(entry(host, 5000).is_address_of(loopback), "{host}");
            assert!(entry(host, 5000).is_address_of(every), "{host}");
        }
        assert!(entry("10.0.0.5", 5000).is_address_of(lan));
        assert!(entry("[::1]", 5000).is_address_of(every));
        // another port, another machine, another loopback address
        assert!(!entry("127.0.0.1", 5001).is_address_of(loopback));
        assert!(!entry("10.0.0.6", 5000).is_address_of(every));
        assert!(!entry("node-2.lab", 5000).is_address_of(every));
        assert!(!entry("127.0.0.2", 5000).is_address_of(loopback));
        assert!(!entry("localhost", 5000).is_address_of(lan));
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
        assert_eq!(parse_workers(br#"{"workers": []}"#).unwrap(), []);
        assert!(parse_workers(b"{}").unwrap_err()[0].starts_with("workers: required"));
    }

    #[test]
    fn a_join_names_every_bad_field() {
        let e = member_entry("w 1", "10.0.0.5:5001", 0, &["java".into()]).unwrap_err();
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(e[0].starts_with("id: ") && e[1].starts_with("url: ") && e[2].starts_with("capacity: "));
        assert!(e[3].starts_with("algorithms[0]: "), "{e:?}");
        let w = member_entry("w9", "http://10.0.0.5:5001/", 2, &["python".into()]).unwrap();
        assert_eq!(
            (w.host.as_str(), w.port, w.address()),
            ("10.0.0.5", 5001, "10.0.0.5:5001".into())
        );
        assert_eq!(parse_worker_url("http://[::1]:7").unwrap(), ("::1".into(), 7));
        assert!(parse_worker_url("http://h:0").is_err());
        assert!(parse_worker_url("http://h").is_err());
    }

    #[test]
    fn a_worker_serving_https_says_tls_or_joins_from_an_https_url() {
        let w = parse_workers(
            br#"{"workers": [{"id": "a", "host": "h1", "port": 1, "tls": true}, {"id": "b", "host": "h2", "port": 2}]}"#,
        )
        .unwrap();
        assert_eq!((w[0].tls, w[0].base_url()), (true, "https://h1:1".to_string()));
        assert_eq!((w[1].tls, w[1].base_url()), (false, "http://h2:2".to_string()));
        let e = parse_workers(br#"{"workers": [{"id": "a", "host": "h", "port": 1, "tls": "yes"}]}"#)
            .unwrap_err();
        assert!(e[0].starts_with("workers[0].tls: expected true"), "{e:?}");
        let j = member_entry("j", "https://10.0.0.5:5001", 1, &["python".into()]).unwrap();
        assert_eq!(j.base_url(), "https://10.0.0.5:5001");
    }
}
