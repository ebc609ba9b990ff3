//! The examples under `deploy/` checked with the tools this machine has
//! (`deploy/check.sh`); outside CI a missing tool makes a test say SKIP
//! and why, under CI (`CI` set) it fails ([`missing_tool`]). The
//! `workers`, `drain` and `resume` commands are tested in `workers_cli`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{missing_tool, stderr, stdout};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// A check that did not run for want of a tool: said on the terminal
/// outside CI, a failure under CI.
fn skip(test: &str, reason: &str) {
    missing_tool(&format!("deploy::{test}"), reason.trim());
}

/// `deploy/check.sh ARGS…`: `None` when it skipped for want of a tool
/// (the reason printed; under CI the test fails instead). check.sh itself
/// fails rather than skips when `CI` is set, which this also reports.
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
    // 0.0.0.0 needs the token: a root-only file handed over as a credential
    for (name, unit) in [("orchestrator", &orch), ("worker", &worker)] {
        assert_eq!(
            values(unit, "Service", "LoadCredential"),
            ["token:/etc/orquesta/token"],
            "{name}"
        );
        assert!(
            values(unit, "Service", "Environment").contains(&"ORQUESTA_TOKEN_FILE=%d/token"),
            "{name}"
        );
    }
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
            "kubernetes-validate to check the Kubernetes schema (pip install kubernetes-validate)",
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
            ("ORQUESTA_TOKEN_FILE", "/shared/orquesta-token"),
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
            ("ORQUESTA_TOKEN", "from-the-environment"),
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

    // no token: a message, not workers on 0.0.0.0 that refuse to start
    let out = slurm_script(
        &["http://head.cluster:5000"],
        &[("ORQUESTA_DRY_RUN", "1"), ("SLURM_JOB_NODELIST", "c7")],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no token") && stderr(&out).contains("ORQUESTA_TOKEN_FILE"),
        "{}",
        stderr(&out)
    );
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
            ("ORQUESTA_INSECURE", "true"),
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

#[test]
fn the_keda_scaled_object_passes_kedas_schema_and_a_typo_does_not() {
    let test = "the_keda_scaled_object_passes_kedas_schema_and_a_typo_does_not";
    let Some(out) = check_sh(test, &["keda"]) else {
        return;
    };
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(text.contains("ScaledObject ok (KEDA schema, strict)"), "{text}");
    let manifest = std::fs::read_to_string(deploy_dir().join("kubernetes/keda.yaml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (from, to, expected) in [
        (
            "  minReplicaCount: 0",
            "  minReplicaCnt: 0",
            "minReplicaCnt: not a field of KEDA's ScaledObjectSpec",
        ),
        (
            "    name: orquesta-worker\n  #",
            "    name: orquesta-workers\n  #",
            "scaleTargetRef should be",
        ),
        ("  scaleTargetRef:", "  scaleTarget:", "KEDA's schema refuses it"),
    ] {
        assert!(manifest.contains(from), "{from}");
        let path = dir.path().join("broken.yaml");
        std::fs::write(&path, manifest.replacen(from, to, 1)).unwrap();
        let out = check_sh(test, &["keda", path.to_str().unwrap()]).expect("checked a moment ago");
        assert_eq!(out.status.code(), Some(1), "{to}: {}", stdout(&out));
        assert!(
            stdout(&out).contains(expected),
            "{expected}\n---\n{}",
            stdout(&out)
        );
    }
}
