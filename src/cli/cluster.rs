//! Local worker processes for `orquesta up` and `orquesta run`: this same
//! binary started as `orquesta worker` children, their output prefixed
//! with their id, restarted if they die, asked to stop at the end (SIGTERM;
//! Ctrl-Break on Windows: [`platform::ask_to_stop`]).
//!
//! Hygiene: a child dies with its parent even when the parent is
//! SIGKILLed (`PR_SET_PDEATHSIG`, plus `ORQUESTA_PARENT_PID` checked by
//! the child at start for a parent that died before the flag took
//! effect; on Windows a kill-on-close Job Object); a worker that already
//! answers on its port with the right id is adopted, not started again
//! (and not stopped at the end); nothing is restarted once a stop request
//! has arrived ([`platform::count_stop_requests`]).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::client::{self, Endpoint};
use crate::orchestrator::config::WorkerEntry;
use crate::protocol::StatusAnswer;
use crate::util::platform;

pub use super::local_workers::LocalWorkers;

/// Who answers on a configured worker's port before `up` starts it.
#[derive(Debug, Clone, PartialEq)]
pub enum PortHolder {
    /// Nobody: start the worker.
    Free,
    /// The configured worker itself, started by someone else: adopt it.
    SameWorker,
    /// Something else; what it is, for the message.
    Other(String),
}

/// Asks `host:port` who it is (`GET /status`), for worker `id`.
pub fn port_holder(host: &str, port: u16, id: &str) -> PortHolder {
    let addr = format!("{}:{port}", probe_host(host));
    let Ok(sock) = addr.parse::<std::net::SocketAddr>().or_else(|_| {
        std::net::ToSocketAddrs::to_socket_addrs(&addr)
            .map_err(|_| ())
            .and_then(|mut a| a.next().ok_or(()))
    }) else {
        return PortHolder::Free; // an unresolvable name: the child's bind will say
    };
    if std::net::TcpStream::connect_timeout(&sock, Duration::from_millis(500)).is_err() {
        return PortHolder::Free;
    }
    let endpoint = Endpoint::plain(sock.to_string());
    match client::request(&endpoint, "GET", "/status", None, Duration::from_secs(2)) {
        Ok(a) if a.status == 200 => match serde_json::from_str::<StatusAnswer>(&a.body) {
            Ok(s) if s.worker_id == id => PortHolder::SameWorker,
            Ok(s) if !s.worker_id.as_str().is_empty() => {
                PortHolder::Other(format!("another Orquesta worker, {:?}", s.worker_id.as_str()))
            }
            _ => PortHolder::Other(
                "a server that is not an Orquesta worker (GET /status is not a worker's)".into(),
            ),
        },
        Ok(a) => PortHolder::Other(format!(
            "a server that is not an Orquesta worker (GET /status answers {})",
            a.status
        )),
        Err(e) => PortHolder::Other(format!("a process that is not an Orquesta worker ({e})")),
    }
}

/// Where to connect for a bind address.
fn probe_host(host: &str) -> String {
    match host {
        "localhost" | "0.0.0.0" => "127.0.0.1".into(),
        "::" | "[::]" => "[::1]".into(),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
        h => h.to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot start worker {id}: {reason}")]
    Start { id: String, reason: String },
    #[error("cannot start worker {id}: its port {addr} is held by {what}; stop that process or give worker {id} another port in the workers file")]
    PortHeld { id: String, addr: String, what: String },
}

/// Threads per task for workers that share this machine: its cores over
/// the task slots of all of them, so that they never oversubscribe it
/// together.
pub(super) fn shared_threads(entries: &[WorkerEntry]) -> usize {
    let slots: usize = entries.iter().map(|e| e.capacity).sum();
    (crate::util::machine::available_threads() / slots.max(1)).max(1)
}

pub(super) fn command(
    entry: &WorkerEntry,
    port: u16,
    logs_dir: &Path,
    threads: usize,
) -> std::io::Result<Command> {
    let host = if entry.host == "localhost" {
        "127.0.0.1".to_string()
    } else {
        entry.host.clone()
    };
    let (port, capacity, threads) = (port.to_string(), entry.capacity.to_string(), threads.to_string());
    let (algorithms, logs_dir) = (entry.algorithms.join(","), logs_dir.to_string_lossy());
    let args = [
        "worker",
        "--worker-id",
        &entry.id,
        "--host",
        &host,
        "--port",
        &port,
        "--capacity",
        &capacity,
        "--algorithms",
        &algorithms,
        "--logs-dir",
        &logs_dir,
        "--threads-per-task",
        &threads,
    ];
    let parent = std::process::id().to_string();
    let mut cmd = self_command(
        &args,
        &[(super::worker::PARENT_PID_VAR, &parent)],
        &std::env::current_dir()?,
    )?;
    // the flags say who it is, not the environment of `up`; plain HTTP (the
    // entries say http, and the orchestrator reaches them on this machine),
    // with the token that `up` inherited
    cmd.env_remove("WORKER_ID")
        .env_remove("WORKER_PORT")
        .env_remove(crate::util::tls::CERT_VAR)
        .env_remove(crate::util::tls::KEY_VAR);
    die_with_parent(&mut cmd);
    Ok(cmd)
}

/// The child ends when this process ends, even when it is killed
/// ([`platform::die_with_parent`]: `PR_SET_PDEATHSIG` on Linux, a
/// kill-on-close Job Object on Windows).
pub fn die_with_parent(cmd: &mut Command) {
    platform::die_with_parent(cmd);
}

/// `orquesta ARGS…` (this same binary) in `dir`, output piped, ready for
/// [`launch`].
pub fn self_command(args: &[&str], envs: &[(&str, &str)], dir: &Path) -> std::io::Result<Command> {
    let mut cmd = Command::new(std::env::current_exe()?);
    platform::make_stoppable(&mut cmd);
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    Ok(cmd)
}

/// Which of a child's lines are shown, prefixed with its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// Every line (`--verbose`).
    All,
    /// Log lines at WARN or ERROR and `error:`/`warning:` messages: what
    /// a person must see; the rest is in the log files (a caught
    /// kernel panic's backtrace too: its ERROR line says why).
    Warnings,
    /// Stderr only (benches).
    Nothing,
}

impl Echo {
    /// Whether a line the child wrote on stdout (`stderr` false) or
    /// stderr is shown.
    pub fn shows(self, line: &str, stderr: bool) -> bool {
        match self {
            Echo::All => true,
            Echo::Warnings => is_warning(line),
            Echo::Nothing => stderr,
        }
    }
}

/// Whether a line is a log line (text or JSON) at WARN or ERROR, or a
/// message that starts `error:` or `warning:`.
pub fn is_warning(line: &str) -> bool {
    line.contains(" WARN ")
        || line.contains(" ERROR ")
        || line.contains(r#""level":"WARN""#)
        || line.contains(r#""level":"ERROR""#)
        || line.starts_with("error")
        || line.starts_with("warning")
}

/// Starts `cmd` (stdout and stderr piped) and waits, at most 30 s, for its
/// `listening on http://HOST:PORT` line; returns the child and `HOST:PORT`.
/// Its stderr is always forwarded prefixed with `id`, its stdout as `echo`
/// says; both are drained so the child never blocks on a full pipe.
pub fn launch(id: &str, mut cmd: Command, echo: Echo) -> Result<(Child, String), ClusterError> {
    let fail = |reason: String| ClusterError::Start {
        id: id.to_string(),
        reason,
    };
    let mut child = cmd.spawn().map_err(|e| fail(e.to_string()))?;
    let (tx, rx) = mpsc::channel();
    let stderr_tail = Arc::new(Mutex::new(Vec::<String>::new()));
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    {
        let (id, tx) = (id.to_string(), tx.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("listening on http://") {
                    let _ = tx.send(rest.trim().to_string());
                }
                if echo.shows(&line, false) {
                    println!("{id} | {line}");
                }
            }
        });
    }
    {
        let (id, tail) = (id.to_string(), Arc::clone(&stderr_tail));
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if echo.shows(&line, true) {
                    eprintln!("{id} | {line}");
                }
                let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                t.push(line);
                if t.len() > 20 {
                    t.remove(0);
                }
            }
        });
    }
    drop(tx);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(addr) = rx.recv_timeout(Duration::from_millis(50)) {
            return Ok((child, addr));
        }
        if let Ok(Some(status)) = child.try_wait() {
            std::thread::sleep(Duration::from_millis(50));
            let tail = stderr_tail.lock().unwrap_or_else(|e| e.into_inner()).join("\n");
            return Err(fail(format!("it exited ({status}): {tail}")));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(fail("it did not start listening within 30 s".into()));
        }
    }
}

/// The port of `HOST:PORT`.
pub fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit(':').next().and_then(|p| p.parse().ok())
}

/// A child process killed when dropped (benchmarks' orchestrators and
/// workers).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_warnings_and_errors_of_a_child_reach_a_quiet_terminal() {
        let info = "worker=w1 2026-01-01T00:00:00Z  INFO task started task=t1 attempt=3";
        let warn = "worker=w1 2026-01-01T00:00:00Z  WARN drain timeout: cancelling task=t1";
        let error = "worker=w1 2026-01-01T00:00:00Z ERROR kernel panicked task=t1";
        let json = r#"{"timestamp":"x","level":"WARN","message":"m"}"#;
        let backtrace = "   0: __rustc::rust_begin_unwind";
        for (line, shown) in [
            (info, false),
            (warn, true),
            (error, true),
            (json, true),
            (backtrace, false),
        ] {
            assert_eq!(Echo::Warnings.shows(line, false), shown, "{line}");
            assert_eq!(Echo::Warnings.shows(line, true), shown, "{line}");
            assert!(Echo::All.shows(line, false));
        }
        assert!(Echo::Warnings.shows("error: cannot bind 127.0.0.1:5001", true));
        assert!(!Echo::Nothing.shows(warn, false));
        assert!(
            Echo::Nothing.shows(backtrace, true),
            "benches keep a child's stderr"
        );
    }
}
