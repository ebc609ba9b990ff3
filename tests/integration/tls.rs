//! TLS end to end (`ORQUESTA_TLS_CERT`, `ORQUESTA_TLS_KEY`, `ORQUESTA_TLS_CA`):
//! an orchestrator and two workers serving HTTPS with a self-signed
//! certificate made here with `openssl` (the README's line), one worker
//! listed with `"tls": true`, one joining an `https://` URL; a batch runs,
//! the command line reads the status over HTTPS, and plain HTTP to a TLS
//! port fails without harming the server.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{
    joined_worker_with, missing_tool, orquesta, small_tasks, stderr, stdout, submit_wait_args, wait_until,
    write_batch, Proc, FAST,
};

const SECRET: &str = "tls-test-token-31337";
const LONG: Duration = Duration::from_secs(60);

/// `cert.pem` and `key.pem` for localhost and 127.0.0.1 in `dir`, made
/// with the README's `openssl req -x509` line; `None` (test skipped, and
/// said so) when openssl is not installed.
fn self_signed(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-days", "2", "-subj", "/CN=orquesta-test"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => Some((cert, key)),
        Ok(o) => panic!("openssl failed: {}", stderr(&o)),
        Err(e) => {
            missing_tool(
                "tls",
                &format!("openssl to make a certificate (it cannot run here: {e})"),
            );
            None
        }
    }
}

fn port_of(p: &Proc) -> u16 {
    p.addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// `orquesta ARGS…` in `dir` with `envs` and no TLS or token settings
/// from this process's environment, to completion.
fn cli(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    orquesta()
        .args(args)
        .current_dir(dir)
        .env_remove("ORQUESTA_TOKEN")
        .env_remove("ORQUESTA_TOKEN_FILE")
        .env_remove("ORQUESTA_TLS_CA")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_cluster_over_https_runs_a_batch_and_plain_http_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let Some((cert, key)) = self_signed(dir.path()) else {
        return;
    };
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let tls: Vec<(&str, &str)> = vec![
        ("ORQUESTA_TLS_CERT", cert),
        ("ORQUESTA_TLS_KEY", key),
        ("ORQUESTA_TLS_CA", cert),
        ("ORQUESTA_TOKEN", SECRET),
        ("ORQUESTA_TEST_KERNELS", "1"),
    ];
    let listed = Proc::start(
        dir.path(),
        &["worker", "--worker-id", "w1", "--port", "0", "--capacity", "2"],
        &tls,
    );
    std::fs::write(
        dir.path().join("config_workers.json"),
        json!({"workers": [{"id": "w1", "host": "127.0.0.1", "port": port_of(&listed), "capacity": 2, "tls": true}]})
            .to_string(),
    )
    .unwrap();
    let mut env = FAST.to_vec();
    env.extend(tls.iter().copied());
    let orch = Proc::start(dir.path(), &["orchestrator", "--port", "0"], &env);
    let url = format!("https://127.0.0.1:{}", port_of(&orch));
    let joined = joined_worker_with(dir.path(), "w2", 2, &url, &tls);
    let client = [("ORQUESTA_TLS_CA", cert), ("ORQUESTA_TOKEN", SECRET)];
    let status = || -> Value {
        let out = cli(dir.path(), &["status", "--url", &url, "--json"], &client);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_str(&stdout(&out)).unwrap()
    };
    wait_until(LONG, "both workers up over https", || {
        status()["workers"]["up"] == 2
    });

    let file = write_batch(dir.path(), "batch.json", small_tasks("s", 8));
    let out = cli(dir.path(), &submit_wait_args(&file, &url, "120", &[]), &client);
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(status()["stats"]["tasks"]["by_status"]["completed"], 8);

    // plain HTTP to the TLS port: no HTTP answer, and the server goes on
    let mut raw = std::net::TcpStream::connect(&orch.addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = raw.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let out = cli(
        dir.path(),
        &["status", "--url", &format!("http://{}", orch.addr)],
        &client,
    );
    assert_ne!(
        out.status.code(),
        Some(0),
        "plain http to an https port must fail"
    );
    // https without a CA to trust: a message that says what to set
    let out = cli(
        dir.path(),
        &["status", "--url", &url],
        &[("ORQUESTA_TOKEN", SECRET)],
    );
    assert_ne!(out.status.code(), Some(0));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("ORQUESTA_TLS_CA"), "{said}");
    // still serving
    assert_eq!(status()["stats"]["tasks"]["by_status"]["completed"], 8);
    let seen = format!("{}\n{}\n{}", orch.log(), listed.log(), joined.log());
    assert!(!seen.contains(SECRET));
}

#[test]
fn a_certificate_without_its_key_or_an_unreadable_one_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    for (args, env, expected) in [
        (
            vec!["worker", "--port", "0"],
            vec![("ORQUESTA_TLS_CERT", "/no/such/cert.pem")],
            "ORQUESTA_TLS_CERT is set but ORQUESTA_TLS_KEY is not",
        ),
        (
            vec!["orchestrator", "--port", "0"],
            vec![
                ("ORQUESTA_TLS_CERT", "/no/such/cert.pem"),
                ("ORQUESTA_TLS_KEY", "/no/such/key.pem"),
            ],
            "cannot read certificates from /no/such/cert.pem",
        ),
        (
            vec!["worker", "--port", "0", "--join", "https://127.0.0.1:9"],
            vec![],
            "an https:// URL needs ORQUESTA_TLS_CA",
        ),
    ] {
        let out = cli(dir.path(), &args, &env);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{args:?}: {}", stderr(&out));
    }
}
