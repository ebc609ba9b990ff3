//! Adding and draining workers: `orquesta workers`, `drain` and `resume`
//! against a fake orchestrator that records what it was asked, and the
//! examples under `deploy/` checked with the tools this machine has
//! (`deploy/check.sh`); a missing tool makes a test say SKIP and why.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{stderr, stdout, Cluster, WorkerSpec};
use crate::tools::run_in;

/// A fake orchestrator on a free loopback port: answers every request with
/// `route(method, path)` (status, JSON body) and records `METHOD path`.
struct FakeOrchestrator {
    addr: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeOrchestrator {
    fn start(route: fn(&str, &str) -> (u16, Value)) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let Some(head) = read_head(&mut stream) else {
                    continue;
                };
                let mut words = head.split_whitespace();
                let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                seen.lock().unwrap().push(format!("{method} {path}"));
                let (status, body) = route(method, path);
                let body = body.to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { addr, requests }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// The request line and headers (the tools send no body with these calls).
fn read_head(stream: &mut std::net::TcpStream) -> Option<String> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

fn not_found(id: &str) -> (u16, Value) {
    (
        404,
        json!({"error": format!("no worker {id:?}: `orquesta workers` lists them"), "code": "not_found"}),
    )
}

/// Two workers known, `ghost` unknown.
fn cluster_route(method: &str, path: &str) -> (u16, Value) {
    match (method, path) {
        ("GET", "/workers") => (
            200,
            json!({
                "workers": [
                    {"id": "worker1", "source": "config", "state": "up", "address": "127.0.0.1:5001",
                     "capacity": 4, "in_flight": 3, "load": 0.75, "tasks_completed": 42, "tasks_failed": 1,
                     "mean_execution_time": 0.25, "algorithms": ["python"], "last_heartbeat": "2026-01-01T00:00:00Z"},
                    {"id": "slurm-node07", "source": "joined", "state": "draining",
                     "state_reason": "drain requested", "address": "node07:5001", "capacity": 16,
                     "in_flight": 2, "load": 0.125, "tasks_completed": 7, "tasks_failed": 0,
                     "mean_execution_time": null, "algorithms": ["python"], "last_heartbeat": null},
                    {"id": "worker2", "source": "config", "state": "down", "state_reason": "connection refused",
                     "address": "127.0.0.1:5002", "capacity": 1, "in_flight": 0, "load": 0.0,
                     "tasks_completed": 0, "tasks_failed": 0, "mean_execution_time": null,
                     "algorithms": ["python"], "last_heartbeat": null}
                ],
                "total": 3, "up": 1,
                "config": {"path": "config_workers.json", "valid": true}
            }),
        ),
        ("POST", "/workers/worker1/drain") => (200, json!({"id": "worker1", "state": "draining"})),
        ("POST", "/workers/worker1/resume") => (200, json!({"id": "worker1", "state": "up"})),
        ("POST", p) if p.starts_with("/workers/ghost/") => not_found("ghost"),
        _ => (
            404,
            json!({"error": "no endpoint at that path", "code": "unknown_endpoint"}),
        ),
    }
}

#[test]
fn workers_lists_sources_states_and_load() {
    let fake = FakeOrchestrator::start(cluster_route);
    let here = tempfile::tempdir().unwrap();
    let out = run_in(here.path(), &["workers", "--url", &fake.url()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("orchestrator {}: 3 workers, 1 up\n", fake.url())),
        "{text}"
    );
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip_while(|l| !l.starts_with("worker "))
        .map(|l| l.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec![
                "worker",
                "source",
                "state",
                "load",
                "done",
                "failed",
                "mean time",
                "address"
            ],
            vec![
                "worker1",
                "config",
                "up",
                "3/4",
                "42",
                "1",
                "250 ms",
                "127.0.0.1:5001"
            ],
            vec![
                "slurm-node07",
                "joined",
                "draining (drain requested)",
                "2/16",
                "7",
                "0",
                "-",
                "node07:5001"
            ],
            vec![
                "worker2",
                "config",
                "down (connection refused)",
                "0/1",
                "0",
                "0",
                "-",
                "127.0.0.1:5002"
            ],
        ],
        "{text}"
    );
    assert_eq!(fake.requests(), ["GET /workers"]);

    let out = run_in(here.path(), &["workers", "--url", &fake.url(), "--json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, cluster_route("GET", "/workers").1);
}

#[test]
fn workers_takes_the_orchestrator_from_the_environment() {
    let fake = FakeOrchestrator::start(cluster_route);
    let here = tempfile::tempdir().unwrap();
    let port = fake.addr.rsplit(':').next().unwrap().to_string();
    let out = run_in(
        here.path(),
        &["workers"],
        &[("ORCHESTRATOR_HOST", "127.0.0.1"), ("ORCHESTRATOR_PORT", &port)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(fake.requests(), ["GET /workers"]);
}

#[test]
fn drain_and_resume_post_to_the_worker_and_print_its_state() {
    let fake = FakeOrchestrator::start(cluster_route);
    let here = tempfile::tempdir().unwrap();
    let out = run_in(here.path(), &["drain", "worker1", "--url", &fake.url()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("worker1: draining"), "{}", stdout(&out));
    let out = run_in(here.path(), &["resume", "worker1", "--url", &fake.url()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "worker1: up\n");
    assert_eq!(
        fake.requests(),
        ["POST /workers/worker1/drain", "POST /workers/worker1/resume"]
    );
}

#[test]
fn an_unknown_worker_exits_1_with_the_orchestrators_message() {
    let fake = FakeOrchestrator::start(cluster_route);
    let here = tempfile::tempdir().unwrap();
    for verb in ["drain", "resume"] {
        let out = run_in(here.path(), &[verb, "ghost", "--url", &fake.url()], &[]);
        assert_eq!(out.status.code(), Some(1), "{verb}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains(&format!("cannot {verb} \"ghost\"")), "{err}");
        assert!(
            err.contains("HTTP 404: no worker \"ghost\": `orquesta workers` lists them"),
            "{err}"
        );
        assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    }
    assert_eq!(
        fake.requests(),
        ["POST /workers/ghost/drain", "POST /workers/ghost/resume"]
    );
}

#[test]
fn no_orchestrator_is_said_plainly() {
    let free = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let here = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{free}");
    for args in [vec!["workers", "--url", &url], vec!["drain", "w1", "--url", &url]] {
        let out = run_in(here.path(), &args, &[]);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).contains("cannot reach the orchestrator"),
            "{}",
            stderr(&out)
        );
    }
}

/// The table reads the real orchestrator's `GET /workers`, not only the
/// fake's idea of it.
#[test]
fn workers_reads_a_real_orchestrator() {
    let c = Cluster::start(&[WorkerSpec::new("worker1", 2)], &[]);
    c.wait_workers_up();
    let here = tempfile::tempdir().unwrap();
    let url = c.orch().url("");
    let out = run_in(here.path(), &["workers", "--url", &url], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(": 1 workers, 1 up\n"), "{text}");
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("worker1 "))
        .unwrap_or_else(|| panic!("{text}"))
        .split_whitespace()
        .collect();
    assert!(row.contains(&"up") && row.contains(&"0/2"), "{text}");
    assert_eq!(row.last(), Some(&c.workers[0].addr.as_str()), "{text}");
    // an id the orchestrator does not know: exit 1 and its words
    let out = run_in(here.path(), &["drain", "ghost", "--url", &url], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("HTTP 404"), "{}", stderr(&out));
}

#[test]
fn the_commands_explain_themselves() {
    let here = tempfile::tempdir().unwrap();
    for (sub, says) in [
        ("workers", "orquesta workers --url http://10.0.0.5:5000"),
        ("drain", "wait until worker1 shows drained"),
        ("resume", "orquesta resume worker1"),
    ] {
        let out = run_in(here.path(), &[sub, "--help"], &[]);
        assert!(out.status.success(), "{sub}: {}", stderr(&out));
        let help = stdout(&out);
        assert!(
            help.contains("Examples:\n  orquesta ") && help.contains(says),
            "{sub}: {help}"
        );
    }
    let out = run_in(here.path(), &["drain"], &[]);
    assert_eq!(out.status.code(), Some(2), "drain needs an id");
}

// ---- deploy/ ----

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Says on the terminal (not captured by the test harness) that a check
/// did not run and why.
fn skip(test: &str, reason: &str) {
    let _ = writeln!(std::io::stderr(), "SKIP deploy::{test}: {}", reason.trim());
}

/// `deploy/check.sh ARGS…`: `None` when it skipped (the reason printed).
fn check_sh(test: &str, args: &[&str]) -> Option<Output> {
    let out = Command::new("bash")
        .arg(deploy_dir().join("check.sh"))
        .args(args)
        .output()
        .expect("bash runs");
    if out.status.code() == Some(77) {
        skip(test, stdout(&out).trim().trim_start_matches("SKIP: "));
        return None;
    }
    Some(out)
}

/// `[Section]` → key → values, in the order written (keys may repeat).
fn unit_keys(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        } else {
            panic!("not a unit file line: {line:?}");
        }
    }
    out
}

fn values<'a>(keys: &'a [(String, String, String)], section: &str, key: &str) -> Vec<&'a str> {
    keys.iter()
        .filter(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v.as_str())
        .collect()
}

#[test]
fn systemd_units_say_what_matters() {
    let dir = deploy_dir().join("systemd");
    let orch = unit_keys(&std::fs::read_to_string(dir.join("orquesta-orchestrator.service")).unwrap());
    let worker = unit_keys(&std::fs::read_to_string(dir.join("orquesta-worker@.service")).unwrap());
    for (name, unit) in [("orchestrator", &orch), ("worker", &worker)] {
        for key in ["WorkingDirectory", "ExecStart", "User", "TimeoutStopSec"] {
            assert_eq!(values(unit, "Service", key).len(), 1, "{name}: {key}");
        }
        assert_eq!(values(unit, "Service", "Restart"), ["on-failure"], "{name}");
        assert_eq!(values(unit, "Service", "KillSignal"), ["SIGTERM"], "{name}");
        assert_eq!(
            values(unit, "Install", "WantedBy"),
            ["multi-user.target"],
            "{name}"
        );
    }
    assert_eq!(
        values(&orch, "Service", "ExecStart"),
        ["/usr/local/bin/orquesta orchestrator --host 0.0.0.0 --port 5000"]
    );
    assert_eq!(
        values(&orch, "Service", "EnvironmentFile"),
        ["-/var/lib/orquesta/.env"]
    );
    let stop: u64 = values(&orch, "Service", "TimeoutStopSec")[0].parse().unwrap();
    assert!(stop >= 60, "the orchestrator needs time to stop in order: {stop}");

    let exec = values(&worker, "Service", "ExecStart")[0];
    let argv: Vec<&str> = exec.split_whitespace().collect();
    let after = |flag: &str| argv.iter().position(|a| *a == flag).map(|i| argv[i + 1]);
    assert_eq!(&argv[..2], ["/usr/local/bin/orquesta", "worker"]);
    assert_eq!(
        after("--worker-id"),
        Some("%i"),
        "the instance name is the worker id"
    );
    assert_eq!(after("--join"), Some("${ORQUESTA_URL}"));
    assert_eq!(
        after("--advertise"),
        Some("${WORKER_ADVERTISE_HOST}:${WORKER_PORT}")
    );
    assert_eq!(
        values(&worker, "Service", "EnvironmentFile"),
        ["/etc/orquesta/worker.env", "-/etc/orquesta/worker-%i.env"]
    );
    let env = values(&worker, "Service", "Environment");
    assert!(env.contains(&"WORKER_PORT=5001"), "{env:?}");
    let drain: u64 = env
        .iter()
        .find_map(|e| e.strip_prefix("WORKER_DRAIN_TIMEOUT="))
        .expect("WORKER_DRAIN_TIMEOUT set")
        .parse()
        .unwrap();
    let stop: u64 = values(&worker, "Service", "TimeoutStopSec")[0].parse().unwrap();
    assert!(
        stop > drain,
        "systemd would kill a draining worker: {stop} <= {drain}"
    );
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let bin = env!("CARGO_BIN_EXE_orquesta");
    let Some(out) = check_sh("systemd_units_pass_systemd_analyze_verify", &["systemd", bin]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("orquesta-worker@check1.service: systemd-analyze verify ok"));

    // and the check does catch a mistake
    let broken = tempfile::tempdir().unwrap();
    for unit in ["orquesta-orchestrator.service", "orquesta-worker@.service"] {
        let text = std::fs::read_to_string(deploy_dir().join("systemd").join(unit)).unwrap();
        let text = text.replace("Restart=on-failure", "Restart=on-falure");
        std::fs::write(broken.path().join(unit), text).unwrap();
    }
    let out = check_sh(
        "systemd_units_pass_systemd_analyze_verify",
        &["systemd", bin, broken.path().to_str().unwrap()],
    )
    .expect("systemd-analyze was there a moment ago");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("on-falure"), "{}", stdout(&out));
}

#[test]
fn kubernetes_manifest_has_the_structure_kubectl_and_orquesta_need() {
    let test = "kubernetes_manifest_has_the_structure_kubectl_and_orquesta_need";
    let Some(out) = check_sh(test, &["kubernetes"]) else {
        return;
    };
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(text.contains("5 documents, structure ok"), "{text}");
    if !text.contains("schema ok") {
        skip(
            test,
            "the Kubernetes schema was not checked: pip install kubernetes-validate",
        );
    }

    // and the check does catch what would break a cluster
    let manifest = std::fs::read_to_string(deploy_dir().join("kubernetes/orquesta.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (from, to, expected) in [
        (
            "- http://orquesta:5000",
            "- http://orchestrator:5000",
            "--join should be http://orquesta:5000",
        ),
        (
            "type: Recreate",
            "type: RollingUpdate",
            "strategy must be Recreate",
        ),
        (
            "path: /health",
            "path: /healthz",
            "readinessProbe is not GET /health",
        ),
        (
            "- $(POD_IP):5001",
            "- $(POD_IP):5002",
            "--advertise should be $(POD_IP):5001",
        ),
    ] {
        assert!(manifest.contains(from), "{from}");
        let path = dir.path().join("broken.yaml");
        std::fs::write(&path, manifest.replacen(from, to, 1)).unwrap();
        let out = check_sh(test, &["kubernetes", path.to_str().unwrap()]).expect("checked a moment ago");
        assert_eq!(out.status.code(), Some(1), "{to}: {}", stdout(&out));
        assert!(
            stdout(&out).contains(expected),
            "{expected}\n---\n{}",
            stdout(&out)
        );
    }
}

fn sbatch() -> PathBuf {
    deploy_dir().join("slurm/orquesta-workers.sbatch")
}

/// The Slurm script run by bash with only these variables (no `SLURM_*`
/// or `ORQUESTA_*` leaking in from the machine running the tests).
fn slurm_script(args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(sbatch())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

#[test]
fn slurm_script_starts_one_joining_worker_per_node() {
    let syntax = Command::new("bash").arg("-n").arg(sbatch()).output().unwrap();
    assert!(syntax.status.success(), "{}", stderr(&syntax));

    let out = slurm_script(
        &["http://head.cluster:5000"],
        &[
            ("ORQUESTA_DRY_RUN", "1"),
            ("SLURM_JOB_ID", "4711"),
            ("SLURM_JOB_NODELIST", "node[01-02,10],gpu5"),
            ("SLURM_JOB_CPUS_PER_NODE", "16(x3),8"),
            ("SLURM_CPUS_ON_NODE", "16"),
            ("ORQUESTA_BIN", "/shared/bin/orquesta"),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines: Vec<Vec<String>> = stdout(&out)
        .lines()
        .map(|l| l.split(' ').map(String::from).collect())
        .collect();
    let expected = [("node01", 16), ("node02", 16), ("node10", 16), ("gpu5", 8)];
    assert_eq!(lines.len(), expected.len(), "{}", stdout(&out));
    for (argv, (node, cpus)) in lines.iter().zip(expected) {
        let want: Vec<String> = format!(
            "srun --nodes=1 --ntasks=1 --nodelist={node} --cpus-per-task={cpus} --kill-on-bad-exit=0 \
             --job-name=orquesta-{node} /shared/bin/orquesta worker --worker-id slurm-{node} \
             --host 0.0.0.0 --port 5001 --capacity {cpus} --join http://head.cluster:5000 \
             --advertise {node}:5001"
        )
        .split(' ')
        .map(String::from)
        .collect();
        assert_eq!(argv, &want);
    }

    // the URL from the environment, SLURM_CPUS_ON_NODE when the per-node list is absent
    let out = slurm_script(
        &[],
        &[
            ("ORQUESTA_DRY_RUN", "1"),
            ("ORQUESTA_URL", "http://10.0.0.1:5050"),
            ("WORKER_PORT", "6001"),
            ("WORKER_ID_PREFIX", "job9-"),
            ("SLURM_JOB_NODELIST", "c7"),
            ("SLURM_CPUS_ON_NODE", "12"),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.trim_end().ends_with(
            "orquesta worker --worker-id job9-c7 --host 0.0.0.0 --port 6001 --capacity 12 \
             --join http://10.0.0.1:5050 --advertise c7:6001"
        ),
        "{text}"
    );

    // no URL: a message, not a worker that cannot join
    let out = slurm_script(&[], &[("ORQUESTA_DRY_RUN", "1"), ("SLURM_JOB_NODELIST", "c7")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no orchestrator URL"), "{}", stderr(&out));
}

#[test]
fn shell_scripts_pass_shellcheck() {
    let Some(out) = check_sh("shell_scripts_pass_shellcheck", &["scripts"]) else {
        return;
    };
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("shellcheck ok"), "{}", stdout(&out));
}

/// The script's SIGTERM trap reaches every worker step: a stand-in for
/// `srun` (ORQUESTA_SRUN) records its arguments, waits, and records the
/// SIGTERM it gets; the script waits for them and exits 0.
#[test]
fn slurm_script_passes_sigterm_on_so_workers_drain() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("srun.log");
    let fake = dir.path().join("srun");
    std::fs::write(
        &fake,
        format!(
            "#!/usr/bin/env bash\n\
             node=${{3#--nodelist=}}\n\
             sleep 30 &\n\
             trap 'echo \"$node TERM\" >> {log}; kill $!; exit 0' TERM\n\
             echo \"$node started\" >> {log}\n\
             wait\n",
            log = log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut child = slurm_script(
        &["http://127.0.0.1:9"],
        &[
            ("ORQUESTA_SRUN", fake.to_str().unwrap()),
            ("SLURM_JOB_NODELIST", "n[1-2]"),
            ("SLURM_CPUS_ON_NODE", "2"),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let started = Instant::now();
    while read_log().lines().filter(|l| l.ends_with("started")).count() < 2 {
        assert!(started.elapsed() < Duration::from_secs(20), "{}", read_log());
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the script did not end: {}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    let mut lines: Vec<String> = read_log().lines().map(String::from).collect();
    lines.sort();
    assert_eq!(lines, ["n1 TERM", "n1 started", "n2 TERM", "n2 started"], "{err}");
    assert!(err.contains("SIGTERM: draining 2 workers"), "{err}");
    assert!(err.contains("every worker ended (exit status 0)"), "{err}");
}

#[test]
fn deploy_readme_names_every_file() {
    let readme = std::fs::read_to_string(deploy_dir().join("README.md")).unwrap();
    for file in [
        "systemd/orquesta-orchestrator.service",
        "systemd/orquesta-worker@.service",
        "slurm/orquesta-workers.sbatch",
        "kubernetes/orquesta.yaml",
        "kubernetes/Dockerfile",
        "check.sh",
    ] {
        assert!(deploy_dir().join(file).exists(), "{file}");
        assert!(readme.contains(file), "deploy/README.md does not mention {file}");
    }
}
