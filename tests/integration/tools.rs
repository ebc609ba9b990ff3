//! The tools for people, run as the real binary: `gen` from flags and
//! through a pseudo-terminal, `validate`, `schema`, `completions`, and
//! `submit --wait`, `status` and `ping` against a real local cluster.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{orquesta, stderr, stdout, Cluster, WorkerSpec};

/// Runs `orquesta ARGS…` in `dir` with no terminal on stdin.
fn run_in(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = orquesta();
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .env_remove("TASK_QUEUE_DIR")
        .env_remove("ORCHESTRATOR_PORT")
        .env_remove("ORCHESTRATOR_HOST");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("the orquesta binary runs")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn tasks(file: &Value) -> &Vec<Value> {
    file["tasks"].as_array().unwrap()
}

#[test]
fn gen_flags_shape_every_task() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(
        dir.path(),
        &[
            "gen",
            "--count",
            "60",
            "--algorithm",
            "reference,optimized",
            "--particles",
            "20..40",
            "--steps",
            "3..7",
            "--priority",
            "high,low",
            "--seed",
            "5",
            "--description",
            "my batch",
            "--output",
            "a.json",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("wrote a.json: 60 tasks ("),
        "{}",
        stdout(&out)
    );
    let file = read_json(&dir.path().join("a.json"));
    let meta: Vec<&String> = file["metadata"].as_object().unwrap().keys().collect();
    assert_eq!(
        meta,
        ["creation_date", "description", "total_tasks", "created_by"]
    );
    assert_eq!(file["metadata"]["total_tasks"], 60);
    assert_eq!(file["metadata"]["description"], "my batch");
    assert_eq!(file["metadata"]["created_by"], "orquesta gen");
    let list = tasks(&file);
    assert_eq!(list.len(), 60);
    let mut algorithms = HashSet::new();
    let mut priorities = HashSet::new();
    for t in list {
        let n = t["parameters"]["num_particles"].as_u64().unwrap();
        let s = t["parameters"]["num_steps"].as_u64().unwrap();
        assert!((20..=40).contains(&n) && (3..=7).contains(&s), "{t}");
        algorithms.insert(t["algorithm"].as_str().unwrap().to_string());
        priorities.insert(t["priority"].as_str().unwrap().to_string());
    }
    assert_eq!(
        algorithms,
        HashSet::from(["reference".into(), "optimized".into()])
    );
    assert_eq!(priorities, HashSet::from(["high".into(), "low".into()]));
    let ids: HashSet<&str> = list.iter().map(|t| t["task_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 60);

    // single values and the defaults
    let out = run_in(
        dir.path(),
        &[
            "gen", "-c", "3", "-a", "cython", "-n", "50", "-s", "0", "-p", "medium", "-o", "b.json",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for t in tasks(&read_json(&dir.path().join("b.json"))) {
        assert_eq!(t["algorithm"], "cython");
        assert_eq!(t["parameters"]["num_particles"], 50);
        assert_eq!(t["parameters"]["num_steps"], 0);
        assert_eq!(t["priority"], "medium");
    }
}

#[test]
fn gen_with_the_same_seed_repeats_itself() {
    let dir = tempfile::tempdir().unwrap();
    let gen = |out: &str, seed: &str, extra: &[&str]| {
        let mut args = vec!["gen", "--count", "20", "--seed", seed, "--output", out];
        args.extend_from_slice(extra);
        let o = run_in(dir.path(), &args, &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        read_json(&dir.path().join(out))
    };
    let a = gen("a.json", "99", &["--prefix", "run"]);
    let b = gen("b.json", "99", &["--prefix", "run"]);
    assert_eq!(tasks(&a), tasks(&b), "same seed and prefix: the same tasks");
    assert_eq!(tasks(&a)[0]["task_id"], "run_001");
    let c = gen("c.json", "99", &[]);
    let d = gen("d.json", "99", &[]);
    for ((a, c), d) in tasks(&a).iter().zip(tasks(&c)).zip(tasks(&d)) {
        assert_eq!(a["parameters"], c["parameters"]);
        assert_eq!(a["algorithm"], c["algorithm"]);
        assert_eq!(a["priority"], d["priority"]);
        assert_ne!(
            c["task_id"], d["task_id"],
            "without --prefix every run has its own ids"
        );
    }
    let e = gen("e.json", "100", &[]);
    assert_ne!(tasks(&a)[0]["parameters"], tasks(&e)[0]["parameters"]);
}

#[test]
fn gen_runs_never_share_ids_and_never_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..3 {
        let out = run_in(dir.path(), &["gen"], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let queue = dir.path().join("task_queues");
    let names = files_in(&queue);
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("tasks_") && n.ends_with(".json")),
        "{names:?}"
    );
    let mut ids = HashSet::new();
    for n in &names {
        let file = read_json(&queue.join(n));
        assert_eq!(tasks(&file).len(), 10, "the default count");
        for t in tasks(&file) {
            assert!(ids.insert(t["task_id"].as_str().unwrap().to_string()), "{t}");
        }
    }
    // the three files can be dropped together
    let paths: Vec<String> = names.iter().map(|n| format!("task_queues/{n}")).collect();
    let mut args = vec!["validate"];
    args.extend(paths.iter().map(String::as_str));
    let out = run_in(dir.path(), &args, &[]);
    assert!(out.status.success(), "{}", stdout(&out));

    // an existing --output is kept unless --force
    std::fs::write(dir.path().join("keep.json"), "mine").unwrap();
    let out = run_in(dir.path(), &["gen", "-c", "2", "-o", "keep.json"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("keep.json already exists; pass --force"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("keep.json")).unwrap(),
        "mine"
    );
    let out = run_in(dir.path(), &["gen", "-c", "2", "-o", "keep.json", "--force"], &[]);
    assert!(out.status.success());
    assert_eq!(tasks(&read_json(&dir.path().join("keep.json"))).len(), 2);
}

#[test]
fn gen_refuses_bad_flags_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    for (args, message) in [
        (
            vec!["gen", "--particles", "5..50"],
            "error: --particles: 5 particles: expected a whole number ≥ 13, found 5: at density 0.5",
        ),
        (vec!["gen", "--particles", "50..20"], "error: --particles: expected MIN ≤ MAX, found 50..20"),
        (
            vec!["gen", "--algorithm", "fortran"],
            "error: --algorithm: expected reference, optimized, python, cython, mix, or a comma-separated list of them, found \"fortran\"",
        ),
        (vec!["gen", "--count", "0"], "error: --count: expected a whole number of tasks from 1 to 1000000, found \"0\""),
        (vec!["gen", "--priority", "urgent"], "error: --priority: expected high, medium, low, mix"),
        (vec!["gen", "--prefix", "my batch"], "error: --prefix: the prefix makes ids like \"my batch\"_001"),
        (
            vec!["gen", "-a", "reference", "-n", "1000000", "-s", "1000000"],
            "error: --steps: the largest task (reference, 1000000 particles, 1000000 steps) is too big",
        ),
    ] {
        let out = run_in(dir.path(), &args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).starts_with(message), "{args:?}: {}", stderr(&out));
    }
    assert!(!dir.path().join("task_queues").exists(), "nothing written");
}

#[test]
fn validate_prints_every_problem_or_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/tareas_manuales_ejemplo.json");
    let out = run_in(dir.path(), &["validate", example], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        format!("{example}: ok, 10 tasks (cython 5, python 5; high 4, medium 3, low 3), 2,715,000 particle-steps\n")
    );

    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"metadata": {"total_tasks": "ten"}, "tasks": [
 {"task_id": "a", "algorithm": "python", "parameters": {"num_particles": 100, "num_steps": 10, "seed": 1}},
 {"task_id": "a", "algorithm": "fortran", "parameters": {"num_particles": 100, "num_steps": 10, "seed": 1}},
 {"task_id": "c", "algorithm": "python", "parameters": {"num_particles": -4, "num_steps": 10, "seed": 1}, "priority": "urgent"},
 {"task_id": "d", "algorithm": "cython", "parameters": {"num_particles": 5, "num_steps": 10, "seed": 1}}
]}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("cut.json"), r#"{"tasks": ["#).unwrap();
    let out = run_in(
        dir.path(),
        &["validate", "bad.json", "cut.json", "missing.json"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "bad.json: 6 problems found\n\
         \x20 metadata.total_tasks: expected a whole number, found \"ten\" (a string)\n\
         \x20 tasks[1].task_id: duplicate id \"a\", also used by tasks[0]: every task_id must be unique\n\
         \x20 tasks[1].algorithm: expected one of reference, optimized, python, cython, found \"fortran\"\n\
         \x20 tasks[2].priority: expected \"high\", \"medium\" or \"low\", found \"urgent\"\n\
         \x20 tasks[2].parameters.num_particles: expected a whole number ≥ 13, found -4\n\
         \x20 tasks[3].parameters.num_particles: expected a whole number ≥ 13, found 5: at density 0.5 the box \
         side would be 3.1623, smaller than 2 × cutoff = 5; use more particles, a lower density or a smaller cutoff\n\
         cut.json: 1 problem found\n\
         \x20 malformed JSON at line 1, column 11: EOF while parsing a list at line 1 column 11 (the file ends \
         too early: is it still being written, or truncated?)\n\
         missing.json: cannot read missing.json: No such file or directory (os error 2)\n"
    );
}

#[test]
fn the_schema_and_completions_come_from_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(dir.path(), &["schema"], &[]);
    assert!(out.status.success());
    let checked_in = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schema/task_file.schema.json"
    ))
    .unwrap();
    assert_eq!(stdout(&out), checked_in);
    for shell in ["bash", "zsh", "fish"] {
        let out = run_in(dir.path(), &["completions", shell], &[]);
        assert!(out.status.success(), "{shell}");
        let script = stdout(&out);
        assert!(
            script.contains("orquesta") && script.contains("validate") && script.contains("particles"),
            "{shell}"
        );
    }
    let out = run_in(dir.path(), &["completions", "powershell"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid value 'powershell'"),
        "{}",
        stderr(&out)
    );
    for sub in [
        "gen",
        "validate",
        "schema",
        "submit",
        "status",
        "ping",
        "completions",
    ] {
        let out = run_in(dir.path(), &[sub, "--help"], &[]);
        assert!(
            out.status.success() && stdout(&out).contains("Examples:\n  orquesta "),
            "{sub}"
        );
    }
}

/// `orquesta ARGS…` on a pseudo-terminal: its own session, the terminal
/// as its controlling terminal, so Ctrl-C is a real SIGINT.
struct Terminal {
    master: File,
    child: Child,
    seen: String,
    cursor: usize,
}

impl Terminal {
    fn start(dir: &Path, args: &[&str]) -> Terminal {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two descriptors; the other pointers may be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened and are owned here.
        let (master, slave) = unsafe { (File::from_raw_fd(master), File::from_raw_fd(slave)) };
        let mut cmd = orquesta();
        cmd.args(args)
            .current_dir(dir)
            .env_remove("TASK_QUEUE_DIR")
            .stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("orquesta starts on the terminal");
        drop(cmd); // the parent's copies of the terminal's slave side
        Terminal {
            master,
            child,
            seen: String::new(),
            cursor: 0,
        }
    }

    /// Reads until `text` appears after the last match (20 s at most).
    fn expect(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(at) = self.seen[self.cursor..].find(text) {
                self.cursor += at + text.len();
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {text:?}; the terminal shows:\n{}",
                self.seen
            );
            let mut poll = libc::pollfd {
                fd: self.master.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut poll, 1, left.as_millis().min(500) as i32) };
            if ready <= 0 {
                continue;
            }
            let mut buf = [0u8; 4096];
            match self.master.read(&mut buf) {
                Ok(n) if n > 0 => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                // EIO: the program exited and closed the terminal
                _ => panic!("the terminal closed before {text:?}; it showed:\n{}", self.seen),
            }
        }
    }

    fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
    }

    /// Waits for the program to end (20 s at most).
    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the program did not end; the terminal shows:\n{}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The questions of the guide, in order.
const QUESTIONS: [&str; 8] = [
    "How many tasks? [10]: ",
    "Algorithm (reference, optimized, python, cython, or mix of python and cython)? [mix]: ",
    "Particles per task, N or MIN..MAX (at least 13)? [100..1000]: ",
    "Time steps per task, N or MIN..MAX? [100..1000]: ",
    "Priority (high, medium, low, or mix)? [mix]: ",
    "Generator seed (the same seed gives the same tasks)? [",
    "Description of the batch? [Particle simulation tasks]: ",
    "File name (a bare name goes into task_queues/)? [tasks_",
];

#[test]
fn gen_in_a_terminal_enter_everywhere_writes_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Terminal::start(dir.path(), &["gen"]);
    for q in QUESTIONS {
        t.expect(q);
        t.send("\r");
    }
    t.expect("Preview of task_queues/tasks_");
    t.expect("Write 10 tasks to task_queues/tasks_");
    t.expect("? (y/n) [Y]: ");
    t.send("\r");
    t.expect("wrote task_queues/tasks_");
    assert_eq!(t.wait().code(), Some(0));
    let queue = dir.path().join("task_queues");
    let names = files_in(&queue);
    assert_eq!(names.len(), 1, "{names:?}");
    let file = read_json(&queue.join(&names[0]));
    assert_eq!(tasks(&file).len(), 10);
    let out = run_in(
        dir.path(),
        &["validate", &format!("task_queues/{}", names[0])],
        &[],
    );
    assert!(out.status.success(), "{}", stdout(&out));
}

#[test]
fn gen_in_a_terminal_asks_again_and_can_be_declined() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Terminal::start(dir.path(), &["gen"]);
    t.expect(QUESTIONS[0]);
    t.send("many\r");
    t.expect("  ! expected a whole number of tasks from 1 to 1000000, found \"many\"; please try again");
    t.expect(QUESTIONS[0]);
    t.send("2\r");
    t.expect(QUESTIONS[1]);
    t.send("\r");
    t.expect(QUESTIONS[2]);
    t.send("5..20\r");
    t.expect("  ! 5 particles: expected a whole number ≥ 13, found 5: at density 0.5");
    t.expect(QUESTIONS[2]);
    t.send("13..20\r");
    for q in &QUESTIONS[3..7] {
        t.expect(q);
        t.send("\r");
    }
    t.expect(QUESTIONS[7]);
    t.send("batch.txt\r");
    t.expect("  ! expected a file name ending in .json");
    t.send("mine.json\r");
    t.expect("Write 2 tasks to task_queues/mine.json? (y/n) [Y]: ");
    t.send("n\r");
    t.expect("nothing was written");
    assert_eq!(t.wait().code(), Some(1));
    assert!(files_in(&dir.path().join("task_queues")).is_empty());
}

#[test]
fn ctrl_c_in_the_terminal_guide_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Terminal::start(dir.path(), &["gen"]);
    for q in QUESTIONS {
        t.expect(q);
        t.send("\r");
    }
    t.expect("? (y/n) [Y]: ");
    t.send("\x03");
    let status = t.wait();
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
    let queue = dir.path().join("task_queues");
    assert!(files_in(&queue).is_empty(), "{:?}", files_in(&queue));
    assert!(
        files_in(dir.path()).iter().all(|n| n == "task_queues"),
        "{:?}",
        files_in(dir.path())
    );
}

fn write_batch(dir: &Path, name: &str, tasks: Vec<Value>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, json!({"tasks": tasks}).to_string()).unwrap();
    path
}

#[test]
fn submit_waits_for_the_batch_against_a_real_cluster() {
    let c = Cluster::start(
        &[WorkerSpec::new("worker1", 2), WorkerSpec::new("worker2", 2)],
        &[("MAX_TASK_RETRIES", "0")],
    );
    c.wait_workers_up();
    let url = c.orch().url("");
    let port = c.orch().addr.rsplit(':').next().unwrap().to_string();
    let here = tempfile::tempdir().unwrap();

    // gen, then POST with --url and wait
    let out = run_in(
        here.path(),
        &[
            "gen",
            "-c",
            "6",
            "-n",
            "20..60",
            "-s",
            "10..50",
            "-o",
            "remote.json",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run_in(
        here.path(),
        &["submit", "remote.json", "--url", &url, "--wait"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("submitted remote.json to {url}: 6 tasks")),
        "{text}"
    );
    assert!(
        text.contains("algorithm  tasks  completed  failed  cancelled  unfinished  mean time"),
        "{text}"
    );
    assert!(text.contains("all 6 tasks completed in"), "{text}");

    // the same ids again: the orchestrator refuses them, nothing queued
    let out = run_in(here.path(), &["submit", "remote.json", "--url", &url], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("already exist; nothing was queued"),
        "{}",
        stderr(&out)
    );

    // dropped into the cluster's own task_queues/, followed through ORCHESTRATOR_PORT
    let out = run_in(
        c.dir.path(),
        &["gen", "-c", "4", "-n", "30", "-s", "20", "-o", "local.json"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run_in(
        c.dir.path(),
        &["submit", "local.json", "--wait"],
        &[("ORCHESTRATOR_PORT", &port)],
    );
    assert_eq!(out.status.code(), Some(0), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).starts_with("dropped local.json into task_queues/local.json: 4 tasks"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("all 4 tasks completed in"),
        "{}",
        stdout(&out)
    );
    assert!(files_in(&c.path("task_queues/processed"))
        .iter()
        .any(|n| n.ends_with("_local.json")));

    // dropped again: the orchestrator rejects the file, and submit says so
    let out = run_in(
        c.dir.path(),
        &["submit", "local.json", "--wait", "--timeout", "30"],
        &[("ORCHESTRATOR_PORT", &port)],
    );
    assert_eq!(out.status.code(), Some(1), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("the orchestrator rejected the file; nothing was queued"),
        "{}",
        stderr(&out)
    );

    // a task that fails: exit 1 and the table names it
    let file = write_batch(
        here.path(),
        "mixed.json",
        vec![
            json!({"task_id": "ok_1", "algorithm": "python", "parameters": {"num_particles": 20, "num_steps": 5, "seed": 1}}),
            json!({"task_id": "boom_1", "algorithm": "__panic", "parameters": {}}),
        ],
    );
    let out = run_in(
        here.path(),
        &[
            "submit",
            file.to_str().unwrap(),
            "--url",
            &url,
            "--wait",
            "--timeout",
            "60",
        ],
        &[("ORQUESTA_TEST_KERNELS", "1")],
    );
    assert_eq!(out.status.code(), Some(1), "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("not completed:")
            && text.lines().any(
                |l| l.split_whitespace().take(3).eq(["boom_1", "failed", "worker1"])
                    || l.split_whitespace().take(3).eq(["boom_1", "failed", "worker2"])
            ),
        "{text}"
    );
    assert!(text.contains("1 of 2 tasks completed, 1 failed"), "{text}");

    // a bad file is refused before anything is sent
    let bad = write_batch(
        here.path(),
        "bad.json",
        vec![json!({"task_id": "x", "algorithm": "python"})],
    );
    let out = run_in(
        here.path(),
        &["submit", bad.to_str().unwrap(), "--url", &url],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("tasks[0].parameters: required"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("nothing was submitted"));

    // no orchestrator there: a clear message, nothing dropped
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let out = run_in(
        here.path(),
        &["submit", "remote.json", "--wait"],
        &[("ORCHESTRATOR_PORT", &free)],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("connection refused") && stderr(&out).contains("nothing was submitted"));
    assert!(!here.path().join("task_queues").exists());
}

/// A one-answer-per-connection HTTP server that always says `body` with
/// `status`, for the failures a real worker does not produce.
fn fake_server(status: u16, body: &'static str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

#[test]
fn status_and_ping_against_a_real_cluster() {
    let c = Cluster::start(
        &[WorkerSpec::new("worker1", 2), WorkerSpec::new("worker2", 3)],
        &[],
    );
    c.wait_workers_up();
    let url = c.orch().url("");
    let here = tempfile::tempdir().unwrap();
    let r = c.orch().post(
        "/tasks",
        &json!({"tasks": [{"task_id": "s1", "algorithm": "python", "priority": "low",
            "parameters": {"num_particles": 20, "num_steps": 5, "seed": 1}}]})
        .to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    c.wait_count("completed", 1, Duration::from_secs(30));

    let out = run_in(here.path(), &["status", "--url", &url], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("2 of 2 workers up"), "{text}");
    assert!(text.contains("worker   state  load"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("worker2  ") && l.contains("0/3")),
        "{text}"
    );
    assert!(
        text.contains("priority  queued  running  completed  failed  cancelled  total"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["low", "0", "0", "1", "0", "0", "1"]),
        "{text}"
    );

    let out = run_in(here.path(), &["status", "--url", &url, "--json"], &[]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["workers"]["up"], 2);
    assert_eq!(v["stats"]["tasks"]["by_status"]["completed"], 1);

    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run_in(
        here.path(),
        &["status", "--url", &format!("http://127.0.0.1:{free}")],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("connection refused"), "{}", stderr(&out));

    // ping from the cluster's folder: the orchestrator, and both workers known to both
    let out = run_in(c.dir.path(), &["ping", "--url", &url], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("5 of 5 checks ok"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("worker1 (both)") && l.contains("/status  ok")),
        "{text}"
    );

    // every kind of failure, from a workers file of bad addresses
    let old = fake_server(200, r#"{"status": "healthy", "version": "0.0.1"}"#);
    let locked = fake_server(401, "");
    let config = json!({"workers": [
        {"id": "gone", "host": "127.0.0.1", "port": free, "capacity": 1, "algorithms": ["python"]},
        {"id": "nowhere", "host": "no-such-host.invalid", "port": 5001, "capacity": 1, "algorithms": ["python"]},
        {"id": "old", "host": "127.0.0.1", "port": old.rsplit(':').next().unwrap().parse::<u16>().unwrap(), "capacity": 1, "algorithms": ["python"]},
        {"id": "locked", "host": "127.0.0.1", "port": locked.rsplit(':').next().unwrap().parse::<u16>().unwrap(), "capacity": 1, "algorithms": ["python"]},
    ]});
    std::fs::write(here.path().join("w.json"), config.to_string()).unwrap();
    let out = run_in(
        here.path(),
        &["ping", "--url", &url, "--config", "w.json", "--timeout", "2"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    for expected in [
        format!("connection refused: nothing listens on 127.0.0.1:{free}"),
        "name resolution failed: cannot resolve no-such-host.invalid:5001".to_string(),
        format!("wrong version: 0.0.1, expected {}", env!("CARGO_PKG_VERSION")),
        "authentication refused (HTTP 401)".to_string(),
    ] {
        assert!(text.contains(&expected), "{expected}\n---\n{text}");
    }
    assert!(text.contains("5 of 9 checks ok, 4 failed"), "{text}");
}
