//! [`LocalWorkers`]: the worker children of `orquesta up` and `orquesta
//! run`, restarted when they die and asked to stop at the end. Under `up`
//! they also follow the workers file ([`LocalWorkers::follow`]): a local
//! worker added while `up` runs is started, one removed is stopped once
//! the orchestrator has drained it and let it go, and one whose entry
//! changed is stopped (it drains itself) and started again as it now reads.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use super::client::{self, Endpoint};
use super::cluster::{command, launch, port_holder, port_of, shared_threads, ClusterError, Echo, PortHolder};
use crate::orchestrator::config::WorkerEntry;
use crate::protocol::StatusAnswer;
use crate::util::platform::{self, stop_requests};

/// How often the supervisor looks for a child that died.
const SUPERVISE_EVERY: Duration = Duration::from_millis(200);
/// Every how many supervisor rounds an adopted worker is asked whether
/// it still runs.
const ADOPTED_EVERY: u32 = 5;
/// Restarts allowed per child in [`RESTART_WINDOW`] before it is given up.
const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// Children that run the local workers.
pub struct LocalWorkers {
    children: Arc<Mutex<Children>>,
    stopping: Arc<AtomicBool>,
    logs_dir: PathBuf,
    echo: Echo,
    launcher: Launcher,
}

/// Work for the launcher thread.
type Job = Box<dyn FnOnce() + Send>;

/// The one thread that starts the children [`LocalWorkers::follow`] adds,
/// alive as long as `up`. On Linux a child is told to stop when the
/// *thread* that forked it ends (`PR_SET_PDEATHSIG`, see
/// [`platform::die_with_parent`]), so a worker started from a short-lived
/// thread got SIGTERM moments after it came up.
#[derive(Clone)]
struct Launcher(mpsc::Sender<Job>);

impl Launcher {
    fn start() -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::spawn(move || {
            for job in queue {
                job();
            }
        });
        Launcher(jobs)
    }

    /// Runs `f` on the launcher thread and waits for what it returns;
    /// `None` once `up` has let the launcher go.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (answer, answered) = mpsc::channel();
        self.0
            .send(Box::new(move || {
                let _ = answer.send(f());
            }))
            .ok()?;
        answered.recv().ok()
    }
}

/// What the children are, shared with the supervisor and with the
/// threads that start and stop them for [`LocalWorkers::follow`].
#[derive(Default)]
struct Children {
    running: Vec<Member>,
    /// Workers found already running at start (started elsewhere): never
    /// stopped, as the file names them; once one is gone (a worker left
    /// draining by an `up` that was killed exits when its tasks end), `up`
    /// starts its own in its place.
    adopted: Vec<WorkerEntry>,
    /// Ids a thread is starting (or replacing) now.
    starting: Vec<String>,
    /// Entries that could not be started: not tried again until they change.
    refused: Vec<WorkerEntry>,
}

/// One child process.
struct Member {
    /// The entry as the workers file names it (what `follow` compares).
    configured: WorkerEntry,
    /// As started: its real port and a host to connect to (restarts reuse it).
    actual: WorkerEntry,
    threads: usize,
    child: Child,
    /// `HOST:PORT` it announced.
    addr: String,
    restarts: Vec<Instant>,
}

/// What starting one entry gave.
enum Started {
    Child(Member),
    /// Already running there, started by someone else.
    Adopted(WorkerEntry),
}

/// The entry with a host to connect to (`0.0.0.0` and `localhost` bind or
/// name this machine).
fn connectable(entry: &WorkerEntry) -> WorkerEntry {
    let mut e = entry.clone();
    if e.host == "0.0.0.0" || e.host == "localhost" {
        e.host = "127.0.0.1".into();
    }
    e
}

/// Starts the worker of `entry` (on any free port with `free_ports`), or
/// adopts the same worker already answering on its port.
fn start_one(
    entry: &WorkerEntry,
    free_ports: bool,
    threads: usize,
    logs_dir: &Path,
    echo: Echo,
) -> Result<Started, ClusterError> {
    if !free_ports {
        match port_holder(&entry.host, entry.port, &entry.id) {
            PortHolder::Free => {}
            PortHolder::SameWorker => {
                eprintln!(
                    "{} | already running at {}; using it (started elsewhere, so up will not stop it)",
                    entry.id,
                    entry.address()
                );
                return Ok(Started::Adopted(connectable(entry)));
            }
            PortHolder::Other(what) => {
                return Err(ClusterError::PortHeld {
                    id: entry.id.clone(),
                    addr: entry.address(),
                    what,
                })
            }
        }
    }
    let port = if free_ports { 0 } else { entry.port };
    let cmd = command(entry, port, logs_dir, threads).map_err(|e| ClusterError::Start {
        id: entry.id.clone(),
        reason: e.to_string(),
    })?;
    let (child, addr) = launch(&entry.id, cmd, echo)?;
    let real_port = port_of(&addr).ok_or_else(|| ClusterError::Start {
        id: entry.id.clone(),
        reason: format!("it announced an address without a port: {addr}"),
    })?;
    let mut actual = connectable(entry);
    actual.port = real_port;
    Ok(Started::Child(Member {
        configured: entry.clone(),
        actual,
        threads,
        child,
        addr,
        restarts: Vec::new(),
    }))
}

/// Asks one child to stop (SIGTERM, or Ctrl-Break on Windows; it drains
/// first). A child that cannot be asked (Windows without a console) is
/// killed at once: its running tasks are queued again at the next start.
fn ask_to_stop(m: &mut Member) {
    if matches!(m.child.try_wait(), Ok(None)) {
        if let Err(e) = platform::ask_to_stop(&m.child) {
            eprintln!(
                "{} | cannot ask it to stop ({e}); stopping it now",
                m.configured.id
            );
            let _ = m.child.kill();
        }
    }
}

/// Waits for a child asked to stop until `deadline`, or until `now` says
/// to kill it at once.
fn wait_or_kill(m: &mut Member, deadline: Instant, now: &impl Fn() -> bool) {
    let id = &m.configured.id;
    loop {
        match m.child.try_wait() {
            Ok(Some(_)) | Err(_) => break,
            Ok(None) if now() => {
                eprintln!("{id} | stopping now; its running tasks are queued again at the next start");
                let _ = m.child.kill();
                let _ = m.child.wait();
                break;
            }
            Ok(None) if Instant::now() > deadline => {
                eprintln!("{id} | did not stop in time; killing it");
                let _ = m.child.kill();
                let _ = m.child.wait();
                break;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Stops one child: asks, waits up to `limit`, then kills it.
fn stop_member(mut m: Member, limit: Duration) {
    ask_to_stop(&mut m);
    wait_or_kill(&mut m, Instant::now() + limit, &|| false);
}

/// Starts `up`'s own worker for each adopted one whose port is free now
/// (on the supervisor's thread, which lives as long as `up`).
fn take_over_gone(c: &mut Children, logs_dir: &Path, echo: Echo) {
    let all: Vec<WorkerEntry> = (c.running.iter().map(|m| m.configured.clone()))
        .chain(c.adopted.iter().cloned())
        .collect();
    let threads = shared_threads(&all);
    let mut i = 0;
    while i < c.adopted.len() {
        let entry = connectable(&c.adopted[i]);
        if !matches!(port_holder(&entry.host, entry.port, &entry.id), PortHolder::Free) {
            i += 1;
            continue;
        }
        let entry = c.adopted.remove(i);
        eprintln!(
            "{} | the worker up found running is gone: starting its own",
            entry.id
        );
        match start_one(&entry, false, threads, logs_dir, echo) {
            Ok(Started::Child(m)) => c.running.push(m),
            Ok(Started::Adopted(_)) => c.adopted.push(entry), // back already
            Err(e) => {
                eprintln!("error: {e}");
                c.refused.push(entry);
            }
        }
    }
}

impl LocalWorkers {
    /// Starts a worker for each entry. With `free_ports`, each takes any
    /// free port and the returned entries carry the real ports. `echo`:
    /// which of their lines reach the terminal.
    pub fn start(
        entries: &[WorkerEntry],
        logs_dir: &Path,
        free_ports: bool,
        echo: Echo,
    ) -> Result<(LocalWorkers, Vec<WorkerEntry>), ClusterError> {
        let workers = LocalWorkers {
            children: Arc::new(Mutex::new(Children::default())),
            stopping: Arc::new(AtomicBool::new(false)),
            logs_dir: logs_dir.to_path_buf(),
            echo,
            launcher: Launcher::start(),
        };
        let threads = shared_threads(entries);
        let mut actual = Vec::new();
        for entry in entries {
            // on an error, `workers` is dropped: the children started so far die
            let started = start_one(entry, free_ports, threads, logs_dir, echo)?;
            let mut c = workers.lock();
            match started {
                Started::Adopted(e) => {
                    c.adopted.push(entry.clone());
                    actual.push(e);
                }
                Started::Child(m) => {
                    actual.push(m.actual.clone());
                    c.running.push(m);
                }
            }
        }
        workers.supervise();
        Ok((workers, actual))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Children> {
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Restarts a child that dies, with the same port, at most
    /// [`MAX_RESTARTS`] times a minute, and replaces an adopted worker
    /// once it is gone; never once a stop was asked.
    fn supervise(&self) {
        let (children, stopping) = (Arc::clone(&self.children), Arc::clone(&self.stopping));
        let (logs_dir, echo) = (self.logs_dir.clone(), self.echo);
        std::thread::spawn(move || {
            // a stop signal stops restarts at once: in a terminal, Ctrl-C
            // reaches the children too, and they exit while `up` shuts down
            let stop = || stopping.load(Ordering::Relaxed) || stop_requests() > 0;
            let mut rounds = 0u32;
            while !stop() {
                std::thread::sleep(SUPERVISE_EVERY);
                rounds = rounds.wrapping_add(1);
                let mut c = children.lock().unwrap_or_else(|e| e.into_inner());
                if rounds.is_multiple_of(ADOPTED_EVERY) {
                    take_over_gone(&mut c, &logs_dir, echo);
                }
                for m in c.running.iter_mut() {
                    if stop() {
                        break;
                    }
                    let Ok(Some(status)) = m.child.try_wait() else {
                        continue;
                    };
                    m.restarts.retain(|t| t.elapsed() < RESTART_WINDOW);
                    if m.restarts.len() >= MAX_RESTARTS {
                        continue; // gave up; reported once below
                    }
                    m.restarts.push(Instant::now());
                    let id = m.configured.id.clone();
                    eprintln!("{id} | exited ({status}); restarting");
                    let started = command(&m.actual, m.actual.port, &logs_dir, m.threads)
                        .map_err(|e| e.to_string())
                        .and_then(|cmd| launch(&id, cmd, echo).map_err(|e| e.to_string()));
                    match started {
                        Ok((new_child, _)) => m.child = new_child,
                        Err(e) => {
                            eprintln!("{id} | {e}");
                            if m.restarts.len() >= MAX_RESTARTS {
                                eprintln!(
                                    "{id} | restarted {MAX_RESTARTS} times in a minute; giving up on it"
                                );
                            }
                        }
                    }
                }
            }
        });
    }

    /// Makes the children match `wanted`, the local workers the
    /// orchestrator now has from the workers file (a worker removed from
    /// the file stays there, draining, until its running tasks end):
    /// starts the new ones, stops those the orchestrator let go, and
    /// replaces those whose entry changed. Never waits: the starts and
    /// stops run on their own threads (`stop_limit`: how long a stopping
    /// child may drain), and a busy supervisor means "next time".
    pub fn follow(&self, wanted: &[WorkerEntry], stop_limit: Duration) {
        if self.stopping.load(Ordering::Relaxed) || stop_requests() > 0 {
            return;
        }
        let Ok(mut c) = self.children.try_lock() else {
            return;
        };
        let threads = shared_threads(wanted);
        let mut i = 0;
        while i < c.running.len() {
            let m = &c.running[i];
            match wanted.iter().find(|w| w.id == m.configured.id) {
                Some(w) if *w == m.configured => i += 1,
                Some(w) => {
                    let (w, old) = (w.clone(), c.running.remove(i));
                    eprintln!("{} | its entry in the workers file changed: restarting it", w.id);
                    c.starting.push(w.id.clone());
                    self.replace(Some(old), w, threads, stop_limit);
                }
                None => {
                    let old = c.running.remove(i);
                    eprintln!(
                        "{} | removed from the workers file and drained: stopping it",
                        old.configured.id
                    );
                    std::thread::spawn(move || stop_member(old, stop_limit));
                }
            }
        }
        // an adopted or refused entry that was removed or changed is no
        // longer one to skip
        c.adopted.retain(|a| wanted.contains(a));
        c.refused.retain(|r| wanted.contains(r));
        for w in wanted {
            let known = c.running.iter().any(|m| m.configured.id == w.id)
                || c.starting.contains(&w.id)
                || c.adopted.contains(w)
                || c.refused.contains(w);
            if !known {
                eprintln!("{} | added to the workers file: starting it", w.id);
                c.starting.push(w.id.clone());
                self.replace(None, w.clone(), threads, stop_limit);
            }
        }
    }

    /// On its own thread: stops `old` (when there is one), then starts
    /// `entry`, and records what came of it.
    fn replace(&self, old: Option<Member>, entry: WorkerEntry, threads: usize, stop_limit: Duration) {
        let (children, stopping) = (Arc::clone(&self.children), Arc::clone(&self.stopping));
        let (logs_dir, echo, launcher) = (self.logs_dir.clone(), self.echo, self.launcher.clone());
        std::thread::spawn(move || {
            if let Some(old) = old {
                stop_member(old, stop_limit);
            }
            let wanted = entry.clone();
            let started = launcher.run(move || start_one(&wanted, false, threads, &logs_dir, echo));
            let mut c = children.lock().unwrap_or_else(|e| e.into_inner());
            c.starting.retain(|id| *id != entry.id);
            let Some(started) = started else {
                return; // `up` is gone
            };
            match started {
                Ok(Started::Child(mut m)) if stopping.load(Ordering::Relaxed) => {
                    // `up` is stopping: it never got a task
                    let _ = m.child.kill();
                    let _ = m.child.wait();
                }
                Ok(Started::Child(m)) => c.running.push(m),
                Ok(Started::Adopted(_)) => c.adopted.push(entry),
                Err(e) => {
                    eprintln!("error: {e}");
                    c.refused.push(entry);
                }
            }
        });
    }

    /// Asks every child to stop, then waits for them (they drain first).
    pub fn stop(&self, limit: Duration) {
        self.stop_unless(limit, || false);
    }

    /// `up`'s stop after a first Ctrl-C or SIGTERM: says what it waits for,
    /// and a second signal kills the children at once (their running
    /// tasks stay `running` in the database and the next orchestrator start
    /// queues them again).
    pub fn stop_after_signal(&self, drain: Duration) {
        self.stopping.store(true, Ordering::Relaxed);
        let running: usize = {
            let c = self.lock();
            c.running.iter().map(|m| running_on(&m.addr)).sum()
        };
        if running > 0 {
            eprintln!(
                "waiting for {running} running task{}, up to {} s; Ctrl-C again to stop now",
                if running == 1 { "" } else { "s" },
                drain.as_secs()
            );
        } else {
            eprintln!("stopping the workers; Ctrl-C again to stop now");
        }
        self.stop_unless(drain + Duration::from_secs(10), || stop_requests() >= 2);
    }

    /// Asks every child to stop ([`ask_to_stop`]), then waits for them up
    /// to `limit`, or until `now` says to kill them at once.
    fn stop_unless(&self, limit: Duration, now: impl Fn() -> bool) {
        self.stopping.store(true, Ordering::Relaxed);
        let mut c = self.lock();
        c.running.iter_mut().for_each(ask_to_stop);
        let deadline = Instant::now() + limit;
        for m in c.running.iter_mut() {
            wait_or_kill(m, deadline, &now);
        }
    }
}

/// Tasks running on the worker at `addr` now (0 when it does not say).
fn running_on(addr: &str) -> usize {
    let endpoint = Endpoint::plain(addr);
    client::request(&endpoint, "GET", "/status", None, Duration::from_secs(1))
        .ok()
        .filter(|a| a.status == 200)
        .and_then(|a| serde_json::from_str::<StatusAnswer>(&a.body).ok())
        .map_or(0, |s| s.running)
}

impl Drop for LocalWorkers {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        let mut c = self.lock();
        for m in c.running.iter_mut() {
            let _ = m.child.kill();
            let _ = m.child.wait();
        }
    }
}
