//! Local worker processes for `orquesta up` and `orquesta run`: this same
//! binary started as `orquesta worker` children, their output prefixed
//! with their id, restarted if they die, stopped with SIGTERM at the end.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::WorkerEntry;

/// Children that run the local workers.
pub struct LocalWorkers {
    children: Arc<Mutex<Vec<(String, Child)>>>,
    stopping: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot start worker {id}: {reason}")]
    Start { id: String, reason: String },
}

/// Threads per task for workers that share this machine: its cores over
/// the task slots of all of them, so that they never oversubscribe it
/// together.
fn shared_threads(entries: &[WorkerEntry]) -> usize {
    let slots: usize = entries.iter().map(|e| e.capacity).sum();
    (crate::util::machine::available_threads() / slots.max(1)).max(1)
}

fn command(entry: &WorkerEntry, port: u16, logs_dir: &Path, threads: usize) -> std::io::Result<Command> {
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
    let mut cmd = self_command(&args, &[], &std::env::current_dir()?)?;
    // the flags say who it is, not the environment of `up`
    cmd.env_remove("WORKER_ID").env_remove("WORKER_PORT");
    Ok(cmd)
}

/// `orquesta ARGS…` (this same binary) in `dir`, output piped, ready for
/// [`launch`].
pub fn self_command(args: &[&str], envs: &[(&str, &str)], dir: &Path) -> std::io::Result<Command> {
    let mut cmd = Command::new(std::env::current_exe()?);
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

/// Starts `cmd` (stdout and stderr piped) and waits, at most 30 s, for its
/// `listening on http://HOST:PORT` line; returns the child and `HOST:PORT`.
/// Its stderr is always forwarded prefixed with `id`, its stdout only with
/// `echo`; both are drained so the child never blocks on a full pipe.
pub fn launch(id: &str, mut cmd: Command, echo: bool) -> Result<(Child, String), ClusterError> {
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
                if echo {
                    println!("{id} | {line}");
                }
            }
        });
    }
    {
        let (id, tail) = (id.to_string(), Arc::clone(&stderr_tail));
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("{id} | {line}");
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

impl LocalWorkers {
    /// Starts a worker for each entry. With `free_ports`, each takes any
    /// free port and the returned entries carry the real ports.
    pub fn start(
        entries: &[WorkerEntry],
        logs_dir: &Path,
        free_ports: bool,
    ) -> Result<(LocalWorkers, Vec<WorkerEntry>), ClusterError> {
        let children = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let mut actual = Vec::new();
        let workers = LocalWorkers {
            children: Arc::clone(&children),
            stopping: Arc::clone(&stopping),
        };
        let threads = shared_threads(entries);
        for entry in entries {
            let port = if free_ports { 0 } else { entry.port };
            let cmd = command(entry, port, logs_dir, threads).map_err(|e| ClusterError::Start {
                id: entry.id.clone(),
                reason: e.to_string(),
            })?;
            let (child, addr) = launch(&entry.id, cmd, true)?;
            let real_port = port_of(&addr).ok_or_else(|| ClusterError::Start {
                id: entry.id.clone(),
                reason: format!("it announced an address without a port: {addr}"),
            })?;
            children
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((entry.id.clone(), child));
            let mut e = entry.clone();
            e.port = real_port;
            if e.host == "0.0.0.0" || e.host == "localhost" {
                e.host = "127.0.0.1".into();
            }
            actual.push(e);
        }
        // restart a worker that dies, with the same port
        let supervised = actual.clone();
        let logs_dir = logs_dir.to_path_buf();
        std::thread::spawn(move || {
            let mut restarts: Vec<Vec<Instant>> = vec![Vec::new(); supervised.len()];
            while !stopping.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let mut list = children.lock().unwrap_or_else(|e| e.into_inner());
                for (i, (id, child)) in list.iter_mut().enumerate() {
                    if stopping.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(Some(status)) = child.try_wait() else {
                        continue;
                    };
                    restarts[i].retain(|t| t.elapsed() < Duration::from_secs(60));
                    if restarts[i].len() >= 5 {
                        continue; // gave up; reported once below
                    }
                    restarts[i].push(Instant::now());
                    eprintln!("{id} | exited ({status}); restarting");
                    let started = command(&supervised[i], supervised[i].port, &logs_dir, threads)
                        .map_err(|e| e.to_string())
                        .and_then(|cmd| launch(id, cmd, true).map_err(|e| e.to_string()));
                    match started {
                        Ok((new_child, _)) => *child = new_child,
                        Err(e) => {
                            eprintln!("{id} | {e}");
                            if restarts[i].len() >= 5 {
                                eprintln!("{id} | restarted 5 times in a minute; giving up on it");
                            }
                        }
                    }
                }
            }
        });
        Ok((workers, actual))
    }

    /// SIGTERM to every child, then waits for them (they drain first).
    pub fn stop(&self, limit: Duration) {
        self.stopping.store(true, Ordering::Relaxed);
        let mut list = self.children.lock().unwrap_or_else(|e| e.into_inner());
        for (_, child) in list.iter() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + limit;
        for (id, child) in list.iter_mut() {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        eprintln!("{id} | did not stop in time; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }
}

impl Drop for LocalWorkers {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        let mut list = self.children.lock().unwrap_or_else(|e| e.into_inner());
        for (_, child) in list.iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
