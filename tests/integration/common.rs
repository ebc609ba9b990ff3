//! Helpers shared by the integration tests: running the real binary,
//! starting long-lived processes on free ports in temporary folders, HTTP
//! requests (through `ureq`), signals, small batches to submit, and a
//! process's memory from `/proc`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use crate::probes::*;

/// The `orquesta` binary that cargo built for these tests.
pub fn orquesta() -> Command {
    Command::new(env!("CARGO_BIN_EXE_orquesta"))
}

/// Runs `orquesta ARGS…` to completion.
pub fn run(args: &[&str]) -> Output {
    orquesta().args(args).output().expect("the orquesta binary runs")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A running `orquesta` process; killed (SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    /// `127.0.0.1:PORT` from its "listening on" line.
    pub addr: String,
    pub dir: PathBuf,
    pub output: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts `orquesta ARGS…` in `dir` and waits (at most 30 s) for the
    /// `listening on http://HOST:PORT` (or `https://`) line.
    pub fn start(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Proc {
        Proc::start_command(orquesta(), dir, args, envs)
    }

    /// As [`Proc::start`], from a prepared `orquesta()` command (one with
    /// a `pre_exec`, say).
    pub fn start_command(mut cmd: Command, dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Proc {
        cmd.args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("WORKER_ID")
            .env_remove("WORKER_PORT")
            .env("RUST_LOG", "info");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("orquesta starts");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let pipes: Vec<Box<dyn Read + Send>> = vec![
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for pipe in pipes {
            let (tx, output) = (tx.clone(), Arc::clone(&output));
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let announced = line
                        .strip_prefix("listening on http://")
                        .or_else(|| line.strip_prefix("listening on https://"));
                    if let Some(rest) = announced {
                        let _ = tx.send(Some(rest.trim().to_string()));
                    }
                    output.lock().unwrap().push(line);
                }
                // the pipe closed: the process exited (say, it could not
                // bind its port), no need to wait the 30 s out
                let _ = tx.send(None);
            });
        }
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(addr)) => addr,
            _ => {
                let _ = child.kill();
                panic!(
                    "no 'listening on' line; output:\n{}",
                    output.lock().unwrap().join("\n")
                );
            }
        };
        Proc {
            child,
            addr,
            dir: dir.to_path_buf(),
            output,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits for the process to exit, at most `limit`; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    pub fn get(&self, path: &str) -> Response {
        http("GET", &self.addr, path, None)
    }

    pub fn post(&self, path: &str, body: &str) -> Response {
        http("POST", &self.addr, path, Some(body.as_bytes()))
    }

    pub fn delete(&self, path: &str) -> Response {
        http("DELETE", &self.addr, path, None)
    }

    /// One series of the process's `GET /metrics/prometheus`, named as
    /// printed (`orquesta_drop_folder_scans_total`, or with its labels:
    /// `orquesta_worker_checks_total{worker="w1"}`); 0 while absent (a
    /// labelled series appears at its first count).
    pub fn metric(&self, series: &str) -> u64 {
        let r = self.get("/metrics/prometheus");
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
            .lines()
            .filter_map(|l| l.rsplit_once(' '))
            .find(|(name, _)| *name == series)
            .map_or(0, |(_, v)| {
                v.parse::<f64>().unwrap_or_else(|e| panic!("{series}: {v}: {e}")) as u64
            })
    }

    /// Waits until the counter `series` has counted `n` more than now:
    /// the job it counts has had its chance. A pass under way at this call
    /// may have begun before it, so `n = 2` is the least that guarantees
    /// one whole pass after it (see the "Passes done" counters in
    /// src/orchestrator/metrics.rs).
    pub fn wait_for_passes(&self, series: &str, n: u64) {
        let from = self.metric(series);
        wait_until(Duration::from_secs(60), &format!("{n} more {series}"), || {
            self.metric(series) >= from + n
        });
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A complete HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP request with a JSON content type (60 s limit); any status
/// comes back as a response, raw body bytes.
pub fn http(method: &str, addr: &str, path: &str, body: Option<&[u8]>) -> Response {
    http_with(method, addr, path, body, &[])
}

/// [`http`] with extra request headers (`Authorization` for the token tests).
pub fn http_with(
    method: &str,
    addr: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> Response {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .max_redirects(0)
        .proxy(None)
        .build()
        .into();
    let mut request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/json");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request
        .body(body.unwrap_or_default())
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let mut response = agent
        .run(request)
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"));
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec()
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: reading the body: {e}"));
    Response {
        status: response.status().as_u16(),
        headers,
        body,
    }
}

/// The bytes of one HTTP/1.1 request with `Connection: close`, for tests
/// that write to a socket themselves (a client that leaves mid-request).
pub fn request_bytes(method: &str, addr: &str, path: &str, body: Option<&[u8]>) -> Vec<u8> {
    let body = body.unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// Sends a request made by [`request_bytes`] (any method, any body bytes,
/// invalid UTF-8 included) through [`http`].
pub fn http_raw(addr: &str, request: &[u8]) -> Response {
    let split = request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a request from request_bytes");
    let head = String::from_utf8_lossy(&request[..split]);
    let mut line = head.split(' ');
    let (method, path) = (line.next().unwrap(), line.next().unwrap());
    let body = &request[split + 4..];
    http(method, addr, path, (!body.is_empty()).then_some(body))
}

/// Polls `check` every 20 ms until it is true or `limit` passes.
pub fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A task body in the seed's shape.
pub fn sim_task(id: &str, algorithm: &str, n: u64, steps: u64, seed: u64) -> String {
    format!(
        r#"{{"task_id": "{id}", "algorithm": "{algorithm}", "parameters": {{"num_particles": {n}, "num_steps": {steps}, "seed": {seed}}}, "priority": "high"}}"#
    )
}

pub fn sleep_task(id: &str, seconds: f64) -> String {
    format!(r#"{{"task_id": "{id}", "algorithm": "__sleep", "parameters": {{"seconds": {seconds}}}}}"#)
}

/// `n` small python tasks `{prefix}0`, `{prefix}1`, … (20 particles, 5
/// steps): a batch that finishes in moments on any worker.
pub fn small_tasks(prefix: &str, n: u64) -> Vec<Value> {
    (0..n)
        .map(|i| {
            serde_json::json!({"task_id": format!("{prefix}{i}"), "algorithm": "python",
            "parameters": {"num_particles": 20, "num_steps": 5, "seed": i}})
        })
        .collect()
}

/// Writes `{"tasks": [...]}` as `dir/name` and returns its path.
pub fn write_batch(dir: &Path, name: &str, tasks: Vec<Value>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::json!({ "tasks": tasks }).to_string()).unwrap();
    path
}

/// The arguments of `orquesta submit FILE --url URL --wait --timeout
/// SECONDS`, then `extra`: the batch the tests submit and wait for.
pub fn submit_wait_args<'a>(
    file: &'a Path,
    url: &'a str,
    seconds: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "submit",
        file.to_str().unwrap(),
        "--url",
        url,
        "--wait",
        "--timeout",
        seconds,
    ];
    args.extend_from_slice(extra);
    args
}

/// A `kB` line of `/proc/PID/status` (`VmHWM`, `VmRSS`), in bytes.
fn status_bytes(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    kib * 1024
}

/// The peak resident memory of a process (`VmHWM`), in bytes.
pub fn peak_rss_bytes(pid: i32) -> u64 {
    status_bytes(pid, "VmHWM")
}

/// The resident memory of a process now (`VmRSS`), in bytes.
pub fn rss_bytes(pid: i32) -> u64 {
    status_bytes(pid, "VmRSS")
}

/// Timers short enough for tests, as environment for an orchestrator.
pub const FAST: &[(&str, &str)] = &[
    ("HEARTBEAT_INTERVAL", "0.1"),
    ("WORKER_TIMEOUT", "2"),
    ("RESULTS_FLUSH_INTERVAL", "0.2"),
    ("FILE_QUIET_PERIOD", "0.1"),
    ("RESCAN_INTERVAL", "0.5"),
    ("TASK_DISTRIBUTION_INTERVAL", "0.5"),
    ("RETRY_BACKOFF_BASE", "0.05"),
    ("RETRY_BACKOFF_MAX", "0.5"),
    ("DB_SYNC", "normal"),
    ("ORQUESTA_TEST_KERNELS", "1"),
];

/// A worker to start for a cluster: id, capacity, algorithms, host.
pub struct WorkerSpec {
    pub id: &'static str,
    pub capacity: usize,
    pub algorithms: &'static str,
    pub host: &'static str,
}

impl WorkerSpec {
    pub fn new(id: &'static str, capacity: usize) -> Self {
        Self {
            id,
            capacity,
            algorithms: "python,cython",
            host: "127.0.0.1",
        }
    }
}

/// Worker `id`'s row of the orchestrator's `GET /workers` (null if absent).
pub fn worker_row(orch: &Proc, id: &str) -> Value {
    orch.get("/workers").json()["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

/// A worker that joins the orchestrator at `join_url` by itself
/// (`--join`), started in `dir` on a free port, test kernels on.
pub fn joined_worker(dir: &Path, id: &str, capacity: usize, join_url: &str) -> Proc {
    joined_worker_with(dir, id, capacity, join_url, &[("ORQUESTA_TEST_KERNELS", "1")])
}

/// [`joined_worker`] with its whole environment given (a token, TLS).
pub fn joined_worker_with(
    dir: &Path,
    id: &str,
    capacity: usize,
    join_url: &str,
    envs: &[(&str, &str)],
) -> Proc {
    let capacity = capacity.to_string();
    Proc::start(
        dir,
        &[
            "worker",
            "--worker-id",
            id,
            "--port",
            "0",
            "--capacity",
            &capacity,
            "--join",
            join_url,
        ],
        envs,
    )
}

/// Worker processes and an orchestrator in one temporary folder.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub workers: Vec<Proc>,
    pub orchestrator: Option<Proc>,
    pub extra_env: Vec<(String, String)>,
}

impl Cluster {
    /// Starts the workers, writes config_workers.json with their real
    /// ports, then starts the orchestrator.
    pub fn start(specs: &[WorkerSpec], env: &[(&str, &str)]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut workers = Vec::new();
        let mut entries = Vec::new();
        for s in specs {
            let cap = s.capacity.to_string();
            let w = Proc::start(
                dir.path(),
                &[
                    "worker",
                    "--worker-id",
                    s.id,
                    "--host",
                    s.host,
                    "--port",
                    "0",
                    "--capacity",
                    &cap,
                ],
                &[("ORQUESTA_TEST_KERNELS", "1")],
            );
            let port: u16 = w.addr.rsplit(':').next().unwrap().parse().unwrap();
            let algorithms: Vec<&str> = s.algorithms.split(',').collect();
            entries.push(serde_json::json!({"id": s.id, "host": s.host, "port": port,
                "capacity": s.capacity, "algorithms": algorithms}));
            workers.push(w);
        }
        std::fs::write(
            dir.path().join("config_workers.json"),
            serde_json::to_string_pretty(&serde_json::json!({ "workers": entries })).unwrap(),
        )
        .unwrap();
        let mut c = Cluster {
            dir,
            workers,
            orchestrator: None,
            extra_env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        c.start_orchestrator();
        c
    }

    pub fn start_orchestrator(&mut self) {
        let mut env: Vec<(&str, &str)> = FAST.to_vec();
        for (k, v) in &self.extra_env {
            env.push((k.as_str(), v.as_str()));
        }
        self.orchestrator = Some(Proc::start(
            self.dir.path(),
            &["orchestrator", "--port", "0"],
            &env,
        ));
    }

    /// Starts the orchestrator again on the port it had (after a SIGKILL),
    /// so workers that joined it find it again; retries the bind for a
    /// few seconds in case the port is not free yet.
    pub fn restart_orchestrator(&mut self) {
        let old = self.orchestrator.take().expect("an orchestrator was started");
        let port = old.addr.rsplit(':').next().unwrap().to_string();
        drop(old);
        let mut env: Vec<(String, String)> =
            FAST.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        env.extend(self.extra_env.iter().cloned());
        let dir = self.dir.path().to_path_buf();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let attempt = std::panic::catch_unwind(|| {
                let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                Proc::start(&dir, &["orchestrator", "--port", &port], &env)
            });
            match attempt {
                Ok(p) => {
                    self.orchestrator = Some(p);
                    return;
                }
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => std::panic::resume_unwind(e),
            }
        }
    }

    pub fn orch(&self) -> &Proc {
        self.orchestrator.as_ref().expect("orchestrator running")
    }

    /// Waits until the orchestrator sees every worker up.
    pub fn wait_workers_up(&self) {
        let n = self.workers.len();
        wait_until(Duration::from_secs(20), "workers up", || {
            self.orch().get("/workers").json()["up"] == serde_json::json!(n)
        });
    }

    pub fn task(&self, id: &str) -> Value {
        let r = self.orch().get(&format!("/tasks/{id}"));
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    pub fn status_of(&self, id: &str) -> String {
        self.task(id)["status"].as_str().unwrap().to_string()
    }

    /// Waits until the orchestrator counts `n` tasks of `status`.
    pub fn wait_count(&self, status: &str, n: u64, limit: Duration) {
        wait_until(limit, &format!("{n} {status}"), || {
            self.orch().get("/stats").json()["tasks"]["by_status"][status].as_u64() == Some(n)
        });
    }

    /// Every result in results/task_results_*.json.
    pub fn results(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("results")) else {
            return out;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("task_results_") && name.ends_with(".json") {
                let v: Value = serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
                out.extend(v.as_array().unwrap().iter().cloned());
            }
        }
        out
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

/// A fake worker in this process: answers `GET /health` healthy, `GET
/// /status` with `status`, and each `POST /execute` with `execute(task)`
/// (the task as sent); anything else is refused. Answers its address, a
/// flag that stops it, and how many tasks it was sent.
pub fn fake_worker(
    status: Value,
    execute: impl Fn(&Value) -> String + Send + 'static,
) -> (
    String,
    Arc<std::sync::atomic::AtomicBool>,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let executes = Arc::new(AtomicUsize::new(0));
    let (stop2, executes2) = (Arc::clone(&stop), Arc::clone(&executes));
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop2.load(Ordering::Relaxed) {
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut len = 0;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let answer = if line.starts_with("GET /health") {
                serde_json::json!({"status": "healthy"}).to_string()
            } else if line.starts_with("GET /status") {
                status.to_string()
            } else if line.starts_with("POST /execute") {
                executes2.fetch_add(1, Ordering::Relaxed);
                execute(&serde_json::from_slice(&body).unwrap_or_default())
            } else {
                serde_json::json!({"error": "no"}).to_string()
            };
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (addr, stop, executes)
}

/// One request written to a socket as given: `headers` are all the
/// request's headers but `Connection: close` and `Content-Length` (so a
/// test chooses `Host`, `Origin` and `Content-Type`, or leaves them
/// out). Answers the status and the body (as far as `Content-Length`
/// says, else to the close; 30 s limit), or None when the connection
/// failed or no status came back.
pub fn raw_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, String)> {
    use std::io::Write;
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(30))).ok()?;
    // a server may answer (a refusal) before the body is all sent
    let _ = s.write_all(head.as_bytes()).and_then(|()| s.write_all(body));
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    // a server that refused before reading the body need not close at
    // once: stop at the answer's own length
    let complete = |answer: &[u8]| {
        let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
        let length: usize = head
            .split("\r\n")
            .find_map(|l| l.strip_prefix("content-length:"))?
            .trim()
            .parse()
            .ok()?;
        let no_body = method == "HEAD";
        (no_body || answer.len() >= end + 4 + length).then_some(())
    };
    while complete(&answer).is_none() {
        match s.read(&mut chunk) {
            Ok(n) if n > 0 => answer.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    Some((status, body))
}
