//! Issue 11 (D): what someone who can write into the drop folder, reach a
//! worker's port, or damage the database file must not achieve: freeze or
//! exhaust the FileWatcher, make Orquesta write outside the project, forge
//! log lines, get a hand-made run recorded as a task's result, or start an
//! empty queue over a damaged database.

use std::ffi::CString;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

/// A slow quiet period, so a file is noticed well before it is read and
/// can be swapped in between.
const SLOW_QUIET: &[(&str, &str)] = &[("FILE_QUIET_PERIOD", "2")];

/// Writes `bytes` at `dir/name` in place and keeps the file open: no
/// close-after-write event (nor a rename, which the watcher takes at
/// once), so the watcher waits the quiet period before reading it. The
/// file is closed when the returned handle is dropped.
#[must_use = "dropping the handle closes the file, which makes it ready at once"]
fn place(dir: &Path, name: &str, bytes: &[u8]) -> std::fs::File {
    use std::io::Write;
    let mut file = std::fs::File::create(dir.join(name)).unwrap();
    file.write_all(bytes).unwrap();
    file
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o644) },
        0,
        "mkfifo {}",
        path.display()
    );
}

fn task_file(id: &str) -> Vec<u8> {
    json!({"tasks": [{"task_id": id, "algorithm": "python",
        "parameters": {"num_particles": 20, "num_steps": 1, "seed": 1}}]})
    .to_string()
    .into_bytes()
}

/// The drop folder of a cluster, once its FileWatcher has made it.
fn drop_folder(c: &Cluster) -> std::path::PathBuf {
    let queue = c.path("task_queues");
    wait_until(Duration::from_secs(20), "the drop folder made", || {
        queue.join("rejected").is_dir() && queue.join("processed").is_dir()
    });
    queue
}

/// The orchestrator knows task `id` (it was queued).
fn known(c: &Cluster, id: &str) -> bool {
    c.orch().get(&format!("/tasks/{id}")).status == 200
}

#[test]
fn a_fifo_swapped_in_after_the_file_was_noticed_blocks_nothing() {
    let mut c = Cluster::start(&[], SLOW_QUIET);
    let queue = drop_folder(&c);
    let _still_open = place(&queue, "x.json", &task_file("x1"));
    // noticed as a regular file (a whole rescan saw it), then swapped for
    // a FIFO of the same name
    c.orch().wait_for_passes(SCANS, 2);
    let fifo = queue.join(".x.fifo");
    mkfifo(&fifo);
    std::fs::rename(&fifo, queue.join("x.json")).unwrap();
    // past the quiet period: the FIFO's turn came, and went (said once)
    let fifo_lines = |log: &str| {
        log.lines()
            .filter(|l| l.contains("x.json") && l.contains("FIFO"))
            .count()
    };
    wait_until(Duration::from_secs(30), "the FIFO given up", || {
        fifo_lines(&c.orch().log()) > 0
    });
    std::fs::write(queue.join("y.json"), task_file("y1")).unwrap();
    wait_until(Duration::from_secs(30), "a later file taken", || known(&c, "y1"));
    assert!(!known(&c, "x1"));
    assert_eq!(c.orch().get("/health").status, 200);
    // logged once, not at every rescan
    c.orch().wait_for_passes(SCANS, 3);
    let log = c.orch().log();
    assert_eq!(fifo_lines(&log), 1, "{log}");
    let orch = c.orchestrator.as_mut().unwrap();
    orch.signal(libc::SIGTERM);
    assert_eq!(orch.wait_exit(Duration::from_secs(30)), Some(0), "{}", orch.log());
}

#[test]
fn links_are_never_followed_and_nothing_outside_is_written() {
    let c = Cluster::start(&[], SLOW_QUIET);
    let queue = drop_folder(&c);
    let outside = tempfile::tempdir().unwrap();

    // a symbolic link to /dev/zero swapped in after the file was noticed
    let _still_open = place(&queue, "z.json", &task_file("z1"));
    // noticed as a regular file (a whole rescan saw it)
    c.orch().wait_for_passes(SCANS, 2);
    let link = queue.join(".z.link");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    std::fs::rename(&link, queue.join("z.json")).unwrap();
    // a link to a regular task file, dropped as such
    let real = outside.path().join("real.json");
    std::fs::write(&real, task_file("l1")).unwrap();
    std::os::unix::fs::symlink(&real, queue.join("l.json")).unwrap();
    // links planted in rejected/ under the names a rejected bad.json takes
    let rejected = queue.join("rejected");
    let victim = outside.path().join("victim.txt");
    std::fs::write(&victim, "keep me").unwrap();
    std::os::unix::fs::symlink(&victim, rejected.join("bad.json.error.txt")).unwrap();
    let dangling = outside.path().join("created.txt");
    std::os::unix::fs::symlink(&dangling, rejected.join("bad.json")).unwrap();
    std::fs::write(queue.join("bad.json"), b"{not json").unwrap();

    for name in ["z.json", "l.json"] {
        let report = rejected.join(format!("{name}.error.txt"));
        wait_until(Duration::from_secs(30), &format!("{name} rejected"), || {
            report.exists()
        });
        let text = std::fs::read_to_string(&report).unwrap();
        assert!(text.contains("symbolic link"), "{text}");
        // the link itself was moved, its target left alone
        let moved = std::fs::symlink_metadata(rejected.join(name)).unwrap();
        assert!(moved.file_type().is_symlink());
    }
    assert!(!known(&c, "z1") && !known(&c, "l1"));
    assert_eq!(
        std::fs::read_to_string(&real).unwrap(),
        String::from_utf8(task_file("l1")).unwrap()
    );
    let rss = rss_bytes(c.orch().pid()) / 1024;
    assert!(
        rss < 300 * 1024,
        "the orchestrator holds {rss} KiB after the /dev/zero link"
    );

    wait_until(Duration::from_secs(30), "bad.json rejected", || {
        !queue.join("bad.json").exists()
            && std::fs::read_dir(&rejected).unwrap().flatten().any(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.ends_with("bad.json.error.txt") && !e.file_type().unwrap().is_symlink()
            })
    });
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    assert!(!dangling.exists(), "written through a link planted in rejected/");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 2);
}

#[test]
fn odd_entries_are_logged_once_and_names_cannot_forge_log_lines() {
    let c = Cluster::start(&[], &[]);
    let queue = drop_folder(&c);
    std::fs::create_dir(queue.join("d.json")).unwrap();
    {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9.json");
        std::fs::write(queue.join(name), task_file("latin1")).unwrap();
    }
    let evil = "a\nFORGED ERROR line.json";
    std::fs::write(queue.join(evil), b"{not json").unwrap();
    let report = queue.join("rejected").join(format!("{evil}.error.txt"));
    wait_until(
        Duration::from_secs(30),
        "the file with a newline rejected",
        || report.exists(),
    );
    // several rescans, each of which could log them again
    c.orch().wait_for_passes(SCANS, 3);
    let log = c.orch().log();
    assert!(
        !log.lines().any(|l| l.starts_with("FORGED")),
        "a file name forged a log line:\n{log}"
    );
    assert!(log.contains("a\\nFORGED ERROR line.json"), "{log}");
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(!text.lines().any(|l| l.starts_with("FORGED")), "{text}");
    let once = |what: &str| {
        log.lines()
            .filter(|l| l.contains(what) && l.contains("never be read"))
            .count()
    };
    assert_eq!(once("d.json"), 1, "{log}");
    assert_eq!(once("caf\\x{e9}.json"), 1, "{log}");
}

#[test]
fn processed_or_rejected_as_a_symlink_is_refused_at_start() {
    for sub in ["processed", "rejected"] {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config_workers.json"), r#"{"workers": []}"#).unwrap();
        std::fs::create_dir(dir.path().join("task_queues")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("task_queues").join(sub)).unwrap();
        let err = refused_start(dir.path());
        assert!(
            err.contains(&format!("task_queues/{sub} is a symbolic link")),
            "{err}"
        );
        assert!(err.contains("mkdir"), "{err}");
    }
}

/// Starts an orchestrator in `dir` expecting it to refuse (exit 2 within
/// 30 s, else it is killed and the test fails); its stderr.
fn refused_start(dir: &Path) -> String {
    let mut child = orquesta()
        .args(["orchestrator", "--port", "0"])
        .current_dir(dir)
        .envs(FAST.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "it started:\n{err}\n{}", stdout(&out));
    err
}

#[test]
fn an_emptied_or_damaged_database_is_refused_at_start() {
    let mut c = Cluster::start(&[], &[]);
    // tasks no worker runs: they stay queued, and fill some pages
    let tasks: Vec<Value> = (0..300)
        .map(|i| {
            json!({"task_id": format!("q{i:04}"), "algorithm": "python",
            "parameters": {"num_particles": 20, "num_steps": 1, "seed": i}, "pad": "x".repeat(200)})
        })
        .collect();
    let r = c.orch().post("/tasks", &json!({ "tasks": tasks }).to_string());
    assert_eq!(r.status, 201, "{:.500}", r.text());
    let orch = c.orchestrator.as_mut().unwrap();
    orch.signal(libc::SIGTERM);
    assert_eq!(orch.wait_exit(Duration::from_secs(30)), Some(0));
    let db = c.path("data/orquesta.db");
    let wal = c.path("data/orquesta.db-wal");
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "a clean stop leaves everything in the database file"
    );
    let good = std::fs::read(&db).unwrap();

    // damaged pages in the middle
    let mut damaged = good.clone();
    let mid = damaged.len() / 2;
    damaged[mid..mid + 8192].fill(0xA5);
    std::fs::write(&db, &damaged).unwrap();
    let err = refused_start(c.dir.path());
    assert!(err.contains("data/orquesta.db"), "{err}");
    assert!(
        err.contains("quick_check") || err.contains("not a readable"),
        "{err}"
    );
    assert!(
        err.contains("mv data/orquesta.db data/orquesta.db.damaged"),
        "{err}"
    );

    // emptied
    std::fs::write(&db, b"").unwrap();
    let err = refused_start(c.dir.path());
    assert!(
        err.contains("data/orquesta.db") && err.contains("0 bytes"),
        "{err}"
    );

    // restored, it starts with its queue
    std::fs::write(&db, &good).unwrap();
    c.start_orchestrator();
    assert_eq!(c.status_of("q0299"), "queued");
    let health = c.orch().get("/health").json();
    assert_eq!(health["database"], "ok", "{health}");
}

#[test]
fn a_run_posted_by_hand_to_a_worker_never_replaces_the_real_result() {
    let mut c = Cluster::start(&[WorkerSpec::new("w", 1)], &[]);
    c.wait_workers_up();
    let r = c.orch().post("/tasks", &sleep_task("t1", 1.5));
    assert_eq!(r.status, 201, "{}", r.text());
    wait_until(Duration::from_secs(20), "t1 running", || {
        c.status_of("t1") == "running"
    });
    // the orchestrator dies while t1 runs; the worker finishes and holds it
    c.orchestrator.as_mut().unwrap().signal(libc::SIGKILL);
    let worker = &c.workers[0];
    wait_until(Duration::from_secs(20), "the real result held", || {
        worker.get("/results/t1").status == 200
    });
    // someone posts another run of t1 by hand, without an attempt id
    let forged = worker.post(
        "/execute",
        r#"{"task_id": "t1", "algorithm": "__sleep", "parameters": {"seconds": 0.01}}"#,
    );
    assert_eq!(forged.status, 200, "{}", forged.text());
    c.restart_orchestrator();
    wait_until(Duration::from_secs(30), "t1 completed", || {
        c.status_of("t1") == "completed"
    });
    let task = c.task("t1");
    assert_eq!(task["result"]["parameters"]["seconds"], 1.5, "{task}");
    wait_until(Duration::from_secs(20), "t1 in a results file", || {
        c.results().iter().any(|r| r["task_id"] == "t1")
    });
    let recorded: Vec<Value> = c.results().into_iter().filter(|r| r["task_id"] == "t1").collect();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["parameters"]["seconds"], 1.5);
}

/// A worker that answers every `/execute` with a completed result of
/// negative `execution_time` (its attempt id echoed, so only the time is
/// wrong). Answers how many runs it was sent.
fn lying_worker() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&runs);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let runs = std::sync::Arc::clone(&counted);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    return;
                }
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let answer = match path.as_str() {
                    "/execute" => {
                        runs.fetch_add(1, Ordering::SeqCst);
                        let task: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        json!({"task_id": task["task_id"], "algorithm": task["algorithm"],
                            "parameters": task["parameters"], "attempt_id": task["attempt_id"],
                            "execution_time": -5.0,
                            "result": {"status": "completed", "metrics": {}, "output": "done"}})
                    }
                    "/status" => json!({"worker_id": "liar", "state": "idle", "capacity": 1,
                        "algorithms": ["python"]}),
                    "/health" => json!({"status": "healthy", "worker_id": "liar"}),
                    "/current" => json!({"count": 0, "tasks": []}),
                    _ => json!({}),
                }
                .to_string();
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            });
        }
    });
    (port, runs)
}

#[test]
fn a_negative_execution_time_is_a_bad_result_not_a_statistic() {
    let (port, runs) = lying_worker();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config_workers.json"),
        json!({"workers": [{"id": "liar", "host": "127.0.0.1", "port": port, "capacity": 1,
            "algorithms": ["python"]}]})
        .to_string(),
    )
    .unwrap();
    let mut env = FAST.to_vec();
    env.push(("MAX_TASK_RETRIES", "1"));
    let orch = Proc::start(dir.path(), &["orchestrator", "--port", "0"], &env);
    let r = orch.post("/tasks", &sim_task("neg", "python", 20, 1, 1));
    assert_eq!(r.status, 201, "{}", r.text());
    wait_until(Duration::from_secs(30), "neg failed", || {
        orch.get("/tasks/neg").json()["status"] == "failed"
    });
    let task = orch.get("/tasks/neg").json();
    assert!(
        task["error"].as_str().unwrap().contains("execution_time"),
        "{task}"
    );
    assert!(task["result"].is_null(), "{task}");
    assert_eq!(
        runs.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the first attempt and one retry"
    );
    let stats = orch.get("/stats").json();
    assert_eq!(
        stats["tasks"]["by_status"]["completed"].as_u64().unwrap_or(0),
        0,
        "{stats}"
    );
    let perf = orch.get("/stats/performance").json().to_string();
    assert!(
        !perf.contains("-5"),
        "a negative time reached the statistics: {perf}"
    );
}

/// Runs `orquesta ARGS…` in `dir` with `envs`; its exit code and stderr,
/// or a failure if it has not ended within 20 s (a start-up that hangs).
fn run_briefly(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let mut child = orquesta()
        .args(args)
        .current_dir(dir)
        .envs(envs.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("orquesta {args:?} with {envs:?} hung at start-up");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_setting_that_names_a_fifo_or_a_device_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config_workers.json"), r#"{"workers": []}"#).unwrap();
    mkfifo(&dir.path().join("token.fifo"));
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("token.zero")).unwrap();
    for (file, kind) in [("token.fifo", "FIFO"), ("token.zero", "a device")] {
        for args in [
            &["orchestrator", "--port", "0"][..],
            &["worker", "--port", "0"][..],
        ] {
            let (code, err) = run_briefly(dir.path(), args, &[("ORQUESTA_TOKEN_FILE", file)]);
            assert_eq!(code, 2, "{args:?} {file}: {err}");
            assert!(err.contains("ORQUESTA_TOKEN_FILE") && err.contains(kind), "{err}");
        }
    }
    let (code, err) = run_briefly(
        dir.path(),
        &["orchestrator", "--port", "0"],
        &[
            ("ORQUESTA_TLS_CERT", "token.zero"),
            ("ORQUESTA_TLS_KEY", "token.fifo"),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("ORQUESTA_TLS_CERT") && err.contains("a device"),
        "{err}"
    );
    // the workers file, swapped for a FIFO while the orchestrator runs
    let mut c = Cluster::start(&[], &[]);
    let fifo = c.path(".workers.fifo");
    mkfifo(&fifo);
    std::fs::rename(&fifo, c.path("config_workers.json")).unwrap();
    wait_until(Duration::from_secs(20), "the edit judged invalid", || {
        let config = &c.orch().get("/workers").json()["config"];
        config["valid"] == false && config["error"].as_str().is_some_and(|e| e.contains("FIFO"))
    });
    let orch = c.orchestrator.as_mut().unwrap();
    orch.signal(libc::SIGTERM);
    assert_eq!(orch.wait_exit(Duration::from_secs(30)), Some(0), "{}", orch.log());
}
