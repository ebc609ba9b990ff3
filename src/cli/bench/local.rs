//! A throw-away local cluster for the end-to-end benches (`bench e2e`,
//! `bench cluster`): workers and an orchestrator started as children of
//! this binary, on free loopback ports, in a temporary folder that holds
//! their database, drop folder and results; everything is killed and
//! removed when it is dropped. Also the polls every bench needs: tasks
//! ended, a file accepted, the results files read back.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::cli::client::{self, Answer, Endpoint};
use crate::cli::cluster::KillOnDrop;

/// The environment variable naming another `orquesta` binary for the
/// bench's cluster to run (a build of an earlier commit, say), so one
/// bench measures two builds the same way; unset: this binary.
pub const BINARY_ENV: &str = "ORQUESTA_BENCH_BINARY";

/// Starts `orquesta ARGS…` (this binary, or [`BINARY_ENV`]'s) quietly in
/// `dir` and waits until it listens; the child and its address. It dies
/// with the bench, also when the bench is killed (a dropped
/// [`KillOnDrop`] covers only a bench that ends by itself).
///
/// The children log at INFO, as `orquesta up` runs them (the per-task
/// lines included), unless `RUST_LOG` is set for the bench.
pub fn start_self(id: &str, args: &[&str], dir: &Path) -> Result<(KillOnDrop, String), String> {
    let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let mut cmd =
        crate::cli::cluster::self_command(args, &[("RUST_LOG", &level)], dir).map_err(|e| e.to_string())?;
    if let Some(other) = std::env::var_os(BINARY_ENV).filter(|b| !b.is_empty()) {
        let mut again = std::process::Command::new(other);
        again.args(cmd.get_args()).current_dir(dir);
        again.stdin(std::process::Stdio::null());
        again.stdout(std::process::Stdio::piped());
        again.stderr(std::process::Stdio::piped());
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                again.env(k, v);
            }
        }
        crate::util::platform::make_stoppable(&mut again);
        cmd = again;
    }
    crate::cli::cluster::die_with_parent(&mut cmd);
    let (child, addr) = crate::cli::cluster::launch(id, cmd, crate::cli::cluster::Echo::Nothing)
        .map_err(|e| e.to_string())?;
    Ok((KillOnDrop(child), addr))
}

/// `GET http://{addr}{path}`, any status.
pub fn http_get(addr: &str, path: &str, timeout: Duration) -> Result<Answer, String> {
    let endpoint = Endpoint::plain(addr);
    client::request(&endpoint, "GET", path, None, timeout).map_err(|e| format!("GET {path}: {e}"))
}

/// `GET http://{addr}{path}` as JSON.
pub fn get_json(addr: &str, path: &str) -> Result<Value, String> {
    let a = http_get(addr, path, Duration::from_secs(30))?;
    serde_json::from_str(&a.body).map_err(|e| format!("{path}: {e}"))
}

/// Tasks that have ended, by how, from `/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Ended {
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
}

impl Ended {
    pub fn total(&self) -> u64 {
        self.completed + self.failed + self.cancelled
    }
}

/// What the results files hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recorded {
    /// Distinct task ids.
    pub tasks: usize,
    /// Results whose task id was already in a file (exactly-once broken).
    pub duplicates: usize,
    /// Σ `execution_time` over the distinct tasks, seconds.
    pub exec_seconds: f64,
    /// The latest `completed_at` (unix seconds, millisecond precision):
    /// when the last task ended, as its worker saw it.
    pub last_end: Option<f64>,
    /// The earliest `completed_at − execution_time`: when the first task
    /// started on its worker (to the millisecond).
    pub first_start: Option<f64>,
    /// When the last results file was written (its modification time, unix
    /// seconds): the last result on disk.
    pub last_write: Option<f64>,
}

/// Reads every `task_results_*.json` in `dir`: distinct ids, duplicates,
/// and the summed execution time (what a worker measured around the
/// simulation itself, so wall − Σexec / slots is the cost of everything
/// else).
pub fn read_results(dir: &Path) -> Result<Recorded, String> {
    let mut seen = HashSet::new();
    let mut recorded = Recorded::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(recorded),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("task_results_") && name.ends_with(".json")) {
            continue;
        }
        let written = entry
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs_f64());
        recorded.last_write = match (recorded.last_write, written) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let text = std::fs::read(entry.path()).map_err(|e| format!("{name}: {e}"))?;
        let results: Vec<Value> = serde_json::from_slice(&text).map_err(|e| format!("{name}: {e}"))?;
        for r in results {
            let id = r["task_id"].as_str().unwrap_or_default().to_string();
            if seen.insert(id) {
                recorded.tasks += 1;
                let exec = r["execution_time"].as_f64().unwrap_or(0.0);
                recorded.exec_seconds += exec;
                let end = r["completed_at"].as_str().and_then(crate::util::time::parse_iso);
                recorded.last_end = match (recorded.last_end, end) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                recorded.first_start = match (recorded.first_start, end.map(|e| e - exec)) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            } else {
                recorded.duplicates += 1;
            }
        }
    }
    Ok(recorded)
}

/// One task of a bench file: `{"task_id", "algorithm", "parameters"}`,
/// written by hand rather than through `serde_json` so a million of them
/// are built in well under a second.
pub fn task_json(out: &mut String, id: &str, algorithm: &str, particles: u64, steps: u64, seed: usize) {
    use std::fmt::Write;
    let _ = write!(
        out,
        r#"{{"task_id":"{id}","algorithm":"{algorithm}","parameters":{{"num_particles":{particles},"num_steps":{steps},"seed":{seed}}}}}"#
    );
}

/// A task file of `count` identical-but-for-the-seed tasks named
/// `{prefix}{i}`.
pub fn task_file(prefix: &str, count: usize, algorithm: &str, particles: u64, steps: u64) -> String {
    let mut text = String::with_capacity(count * 120 + 16);
    text.push_str("{\"tasks\":[");
    for i in 0..count {
        if i > 0 {
            text.push(',');
        }
        task_json(&mut text, &format!("{prefix}{i}"), algorithm, particles, steps, i);
    }
    text.push_str("]}");
    text
}

/// How a bench puts its task file into the drop folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DropBy {
    /// Written in place, as `cp` does (create, write, close).
    Copy,
    /// Written beside the folder, then renamed into it (the README's way).
    Rename,
}

impl DropBy {
    pub fn name(self) -> &'static str {
        match self {
            DropBy::Copy => "copy",
            DropBy::Rename => "rename",
        }
    }
}

/// The cluster: children first, so they are killed before the folder
/// they write into is removed (fields drop in order).
pub struct LocalCluster {
    orchestrator: KillOnDrop,
    workers: Vec<KillOnDrop>,
    /// The orchestrator's `HOST:PORT`.
    pub addr: String,
    pub dir: TempDir,
}

/// The arguments of a bench worker process: one slot per `capacity`,
/// one thread per task, any free port.
fn worker_args<'a>(id: &'a str, capacity: &'a str) -> Vec<&'a str> {
    vec![
        "worker",
        "--worker-id",
        id,
        "--port",
        "0",
        "--capacity",
        capacity,
        "--threads-per-task",
        "1",
    ]
}

impl LocalCluster {
    /// `workers` workers of `slots` slots each (one thread per task, so
    /// the slots never fight over the cores), then the orchestrator, and
    /// waits until it sees every worker up.
    pub fn start(workers: usize, slots: usize) -> Result<LocalCluster, String> {
        let dir = tempfile::Builder::new()
            .prefix("orquesta-bench-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let workers = workers.max(1);
        let mut children = Vec::new();
        let mut entries = Vec::new();
        let capacity = slots.max(1).to_string();
        for i in 1..=workers {
            let id = format!("w{i}");
            let (child, addr) = start_self(&id, &worker_args(&id, &capacity), dir.path())?;
            entries.push(serde_json::json!({"id": id, "host": "127.0.0.1",
                "port": crate::cli::cluster::port_of(&addr).unwrap_or(0), "capacity": slots.max(1)}));
            children.push(child);
        }
        std::fs::write(
            dir.path().join("config_workers.json"),
            serde_json::json!({ "workers": entries }).to_string(),
        )
        .map_err(|e| e.to_string())?;
        let (orchestrator, addr) = start_self("orchestrator", &["orchestrator", "--port", "0"], dir.path())?;
        std::fs::create_dir_all(dir.path().join("task_queues")).map_err(|e| e.to_string())?;
        let cluster = LocalCluster {
            orchestrator,
            workers: children,
            addr,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while cluster.get_json("/workers")?["up"].as_u64() != Some(workers as u64) {
            if Instant::now() > deadline {
                return Err("the workers did not come up within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(cluster)
    }

    /// An orchestrator alone, with no configured worker and these lines
    /// in its `.env` (e.g. `MAX_WORKERS`): workers join it afterwards
    /// ([`Self::join_workers`], or ids served by the bench itself).
    pub fn orchestrator_only(env: &[(&str, String)]) -> Result<LocalCluster, String> {
        let dir = tempfile::Builder::new()
            .prefix("orquesta-bench-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let write =
            |name: &str, text: String| std::fs::write(dir.path().join(name), text).map_err(|e| e.to_string());
        write(
            "config_workers.json",
            serde_json::json!({ "workers": [] }).to_string(),
        )?;
        write(".env", env.iter().map(|(k, v)| format!("{k}={v}\n")).collect())?;
        let (orchestrator, addr) = start_self("orchestrator", &["orchestrator", "--port", "0"], dir.path())?;
        std::fs::create_dir_all(dir.path().join("task_queues")).map_err(|e| e.to_string())?;
        Ok(LocalCluster {
            orchestrator,
            workers: Vec::new(),
            addr,
            dir,
        })
    }

    /// Starts `count` worker processes of `slots` slots that join with
    /// `--join` (as a user starts them), named `w{first}…`; does not wait
    /// for them to be up.
    pub fn join_workers(&mut self, first: usize, count: usize, slots: usize) -> Result<(), String> {
        let capacity = slots.max(1).to_string();
        let join = format!("http://{}", self.addr);
        for i in first..first + count {
            let id = format!("w{i}");
            let logs = self.dir.path().join("logs").to_string_lossy().into_owned();
            let mut args = worker_args(&id, &capacity);
            args.extend(["--join", &join, "--logs-dir", &logs]);
            let (child, _) = start_self(&id, &args, self.dir.path())?;
            self.workers.push(child);
        }
        Ok(())
    }

    /// Polls `/stats` until `count` workers are up; the time it took.
    pub fn wait_up(&self, count: usize, limit: Duration) -> Result<Duration, String> {
        let t0 = Instant::now();
        loop {
            // a /stats that cannot answer in time (an orchestrator busy
            // with a storm of joins) is asked again, within the limit
            let up = match http_get(&self.addr, "/stats", Duration::from_secs(5)) {
                Ok(a) => serde_json::from_str::<Value>(&a.body)
                    .ok()
                    .and_then(|v| v["workers"]["up"].as_u64()),
                Err(_) => None,
            }
            .unwrap_or(0);
            if up >= count as u64 {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() > limit {
                return Err(format!(
                    "only {up} of {count} workers up within {} s",
                    limit.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn orchestrator_pid(&self) -> u32 {
        self.orchestrator.0.id()
    }

    pub fn worker_pids(&self) -> Vec<u32> {
        self.workers.iter().map(|w| w.0.id()).collect()
    }

    pub fn queue_dir(&self) -> PathBuf {
        self.dir.path().join("task_queues")
    }

    pub fn get_json(&self, path: &str) -> Result<Value, String> {
        get_json(&self.addr, path)
    }

    /// Writes `text` into the drop folder as `cp` would (create, write,
    /// close); the moment the write began. The write itself (~0.1 s for
    /// 100 MB) is counted, as it is when a user drops a file.
    pub fn drop_file(&self, name: &str, text: &str) -> Result<Instant, String> {
        Ok(self.drop_as(name, text, DropBy::Copy)?.0)
    }

    /// Puts a task file into the drop folder `by` a plain copy or a rename
    /// (written in full beside the folder, then renamed into it, as the
    /// README recommends); the moment it appeared there (the copy's start,
    /// or the rename), as an `Instant` and as unix seconds.
    pub fn drop_as(&self, name: &str, text: &str, by: DropBy) -> Result<(Instant, f64), String> {
        let fail = |e: std::io::Error| format!("dropping {name}: {e}");
        let target = self.queue_dir().join(name);
        match by {
            DropBy::Copy => {
                let at = (Instant::now(), crate::util::time::unix_now());
                std::fs::write(&target, text).map_err(fail)?;
                Ok(at)
            }
            DropBy::Rename => {
                let aside = self.dir.path().join(format!("{name}.aside"));
                std::fs::write(&aside, text).map_err(fail)?;
                let at = (Instant::now(), crate::util::time::unix_now());
                std::fs::rename(&aside, &target).map_err(fail)?;
                Ok(at)
            }
        }
    }

    /// Waits until the file `name` dropped earlier has been accepted
    /// (moved to `processed/`); an error if it went to `rejected/`.
    pub fn wait_accepted(&self, name: &str, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let dropped = self.queue_dir().join(name);
        let moved_to = |sub: &str| -> bool {
            std::fs::read_dir(self.queue_dir().join(sub))
                .map(|d| {
                    d.flatten()
                        .any(|e| e.file_name().to_string_lossy().ends_with(&format!("_{name}")))
                })
                .unwrap_or(false)
        };
        loop {
            if !dropped.exists() {
                if moved_to("processed") {
                    return Ok(());
                }
                if moved_to("rejected") {
                    return Err(format!("{name} was rejected; see task_queues/rejected/"));
                }
            }
            if Instant::now() > deadline {
                return Err(format!("{name} was not accepted within {} s", limit.as_secs()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Tasks ended so far.
    pub fn ended(&self) -> Result<Ended, String> {
        let stats = self.get_json("/stats")?;
        let n = |s: &str| stats["tasks"]["by_status"][s].as_u64().unwrap_or(0);
        Ok(Ended {
            completed: n("completed"),
            failed: n("failed"),
            cancelled: n("cancelled"),
        })
    }

    /// Polls `/stats` every `every` until `target` tasks have ended.
    pub fn wait_ended(&self, target: u64, every: Duration, limit: Duration) -> Result<Ended, String> {
        let deadline = Instant::now() + limit;
        loop {
            let ended = self.ended()?;
            if ended.total() >= target {
                return Ok(ended);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "only {} of {target} tasks ended within {} s",
                    ended.total(),
                    limit.as_secs()
                ));
            }
            std::thread::sleep(every);
        }
    }

    /// Waits (up to `limit`) until the results files hold `tasks`
    /// distinct tasks, and says what they hold.
    pub fn wait_recorded(&self, tasks: usize, limit: Duration) -> Result<Recorded, String> {
        let deadline = Instant::now() + limit;
        let dir = self.dir.path().join("results");
        loop {
            let recorded = read_results(&dir)?;
            if recorded.tasks >= tasks || Instant::now() > deadline {
                return Ok(recorded);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_file_is_valid_json_with_every_task() {
        let text = task_file("t", 3, "optimized", 16, 1);
        let v: Value = serde_json::from_str(&text).expect("valid JSON");
        let tasks = v["tasks"].as_array().expect("a list");
        assert_eq!(tasks.len(), 3);
        assert_eq!(tasks[2]["task_id"], "t2");
        assert_eq!(tasks[2]["parameters"]["seed"], 2);
        assert_eq!(tasks[0]["parameters"]["num_particles"], 16);
        assert_eq!(
            serde_json::from_str::<Value>(&task_file("t", 0, "x", 1, 1)).unwrap()["tasks"],
            serde_json::json!([])
        );
    }

    #[test]
    fn results_files_are_counted_once_per_task_and_duplicates_named() {
        let dir = tempfile::tempdir().unwrap();
        let r = |id: &str, t: f64| serde_json::json!({"task_id": id, "execution_time": t});
        std::fs::write(
            dir.path().join("task_results_1.json"),
            serde_json::json!([r("a", 0.5), r("b", 0.25)]).to_string(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("task_results_2.json"),
            serde_json::json!([r("a", 0.5)]).to_string(),
        )
        .unwrap();
        std::fs::write(dir.path().join("orchestrator_stats.json"), "{}").unwrap();
        let got = read_results(dir.path()).unwrap();
        assert_eq!(got.tasks, 2);
        assert_eq!(got.duplicates, 1);
        assert!((got.exec_seconds - 0.75).abs() < 1e-12);
        assert_eq!(
            read_results(&dir.path().join("none")).unwrap(),
            Recorded::default()
        );
    }
}
