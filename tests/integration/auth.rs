//! The cluster token (`ORQUESTA_TOKEN`, `ORQUESTA_TOKEN_FILE`, `--token`,
//! `--token-file`) and the bind rule (a non-loopback `--host` needs a token
//! or `--insecure`): every endpoint of both servers refuses a request
//! without the right token, the orchestrator, `--join` and the command line
//! send it, and it never shows in any output or log.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{
    http, http_with, joined_worker, joined_worker_with, orquesta, small_tasks, stderr, stdout,
    submit_wait_args, wait_until, worker_checks, worker_row, write_batch, Proc, Response, FAST, SWEEPS,
};

const SECRET: &str = "s3cret-Token-4711";
/// A wrong guess must not show in the logs either.
const GUESS: &str = "guess-Token-0815";
const LONG: Duration = Duration::from_secs(30);

/// Every route of `api::orchestrator::configure` (ids that do not exist,
/// bodies that are refused: with the token, nothing here changes anything),
/// and an unknown path.
const ORCHESTRATOR_ENDPOINTS: &[(&str, &str, Option<&str>)] = &[
    ("GET", "/", None),
    ("GET", "/tasks", None),
    ("POST", "/tasks", Some("{}")),
    ("GET", "/tasks/nope", None),
    ("DELETE", "/tasks/nope", None),
    ("POST", "/tasks/nope/retry", None),
    ("GET", "/workers", None),
    ("POST", "/workers/join", Some("{}")),
    ("GET", "/workers/nope", None),
    ("DELETE", "/workers/nope", None),
    ("POST", "/workers/nope/drain", None),
    ("POST", "/workers/nope/resume", None),
    ("GET", "/stats", None),
    ("GET", "/stats/performance", None),
    ("GET", "/studies", None),
    ("GET", "/studies/nope/report", None),
    ("POST", "/health", None),
    ("GET", "/no-such-endpoint", None),
];

/// Every route of `api::worker::configure`, the same way.
const WORKER_ENDPOINTS: &[(&str, &str, Option<&str>)] = &[
    ("POST", "/execute", Some("{}")),
    ("POST", "/cancel/nope", None),
    ("GET", "/status", None),
    ("GET", "/metrics", None),
    ("GET", "/history", None),
    ("GET", "/current", None),
    ("POST", "/results/ack", Some("{}")),
    ("GET", "/results/nope", None),
    ("DELETE", "/results/nope", None),
    ("POST", "/health", None),
    ("GET", "/no-such-endpoint", None),
];

fn with_token(env: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut v = env.to_vec();
    v.push(("ORQUESTA_TOKEN", SECRET));
    v
}

fn write_workers(dir: &Path, workers: Value) {
    std::fs::write(
        dir.join("config_workers.json"),
        json!({ "workers": workers }).to_string(),
    )
    .unwrap();
}

fn port_of(p: &Proc) -> u16 {
    p.addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// Each endpoint: 401 `unauthorized` with `WWW-Authenticate: Bearer`
/// without a token and with a wrong one; anything but 401 with the right one.
fn check_endpoints(server: &str, addr: &str, endpoints: &[(&str, &str, Option<&str>)]) {
    let right = format!("Bearer {SECRET}");
    let wrong = format!("Bearer {GUESS}");
    for (method, path, body) in endpoints {
        let body = body.map(str::as_bytes);
        for (what, headers) in [
            ("no token", vec![]),
            ("a wrong token", vec![("authorization", wrong.as_str())]),
            ("the token without Bearer", vec![("authorization", SECRET)]),
        ] {
            let r = http_with(method, addr, path, body, &headers);
            assert_eq!(
                r.status,
                401,
                "{server} {method} {path} with {what}: {}",
                r.text()
            );
            assert_eq!(r.json()["code"], "unauthorized", "{server} {method} {path}");
            assert_eq!(
                r.header("www-authenticate"),
                Some("Bearer"),
                "{server} {method} {path}"
            );
            assert!(
                r.json()["error"].as_str().unwrap().contains("ORQUESTA_TOKEN"),
                "{}",
                r.text()
            );
            assert!(
                !r.text().contains(GUESS) && !r.text().contains(SECRET),
                "{}",
                r.text()
            );
        }
        let r = http_with(method, addr, path, body, &[("authorization", &right)]);
        assert_ne!(
            r.status,
            401,
            "{server} {method} {path} with the token: {}",
            r.text()
        );
    }
    let r = http("GET", addr, "/health", None);
    assert_eq!(r.status, 200, "{server} GET /health stays open: {}", r.text());
}

/// Every file under `dir`, read as text (the logs, state files, results).
fn all_files_text(dir: &Path) -> String {
    let mut out = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            out.push_str(&all_files_text(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    out
}

#[test]
fn every_endpoint_of_both_servers_needs_the_token_and_it_never_shows() {
    let dir = tempfile::tempdir().unwrap();
    let worker = Proc::start(
        dir.path(),
        &["worker", "--worker-id", "w1", "--port", "0", "--capacity", "1"],
        &with_token(&[("ORQUESTA_TEST_KERNELS", "1")]),
    );
    // a worker without the token refuses the orchestrator until it has it
    write_workers(
        dir.path(),
        json!([{"id": "w1", "host": "127.0.0.1", "port": port_of(&worker), "capacity": 1}]),
    );
    let orch = Proc::start(dir.path(), &["orchestrator", "--port", "0"], &with_token(FAST));
    // the orchestrator sends the token: its heartbeats reach the worker
    wait_until(LONG, "w1 up through the token", || {
        let r = http_with(
            "GET",
            &orch.addr,
            "/workers/w1",
            None,
            &[("authorization", &format!("Bearer {SECRET}"))],
        );
        r.json()["state"] == "up"
    });
    check_endpoints("orchestrator", &orch.addr, ORCHESTRATOR_ENDPOINTS);
    check_endpoints("worker", &worker.addr, WORKER_ENDPOINTS);
    let seen = format!("{}\n{}\n{}", orch.log(), worker.log(), all_files_text(dir.path()));
    assert!(
        !seen.contains(SECRET),
        "the token shows in the output or a log file"
    );
    assert!(
        !seen.contains(GUESS),
        "a guessed token shows in the output or a log file"
    );
}

#[test]
fn an_orchestrator_without_the_workers_token_never_sees_it_up() {
    let dir = tempfile::tempdir().unwrap();
    let worker = Proc::start(
        dir.path(),
        &["worker", "--worker-id", "w1", "--port", "0"],
        &with_token(&[("ORQUESTA_TEST_KERNELS", "1")]),
    );
    write_workers(
        dir.path(),
        json!([{"id": "w1", "host": "127.0.0.1", "port": port_of(&worker), "capacity": 1}]),
    );
    let orch = Proc::start(dir.path(), &["orchestrator", "--port", "0"], FAST);
    // GET /health is open, so the worker answers; its /status is not: it
    // is down, with the reason on its row and one log line
    wait_until(LONG, "w1 down for the token", || {
        let row = worker_row(&orch, "w1");
        row["state"] == "down" && row.to_string().contains("ORQUESTA_TOKEN")
    });
    let r = orch.post(
        "/tasks",
        &json!({"tasks": [{"task_id": "t1", "algorithm": "python",
            "parameters": {"num_particles": 20, "num_steps": 5, "seed": 1}}]})
        .to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    // health checks of w1 (each one a chance to take it for up, hand it
    // t1 or log the refusal again), and dispatch sweeps
    orch.wait_for_passes(&worker_checks("w1"), 3);
    orch.wait_for_passes(SWEEPS, 2);
    assert_eq!(
        orch.get("/tasks/t1").json()["status"],
        "queued",
        "no task goes to it"
    );
    assert_ne!(worker_row(&orch, "w1")["state"], "up", "{}", orch.log());
    let told = orch
        .log()
        .matches("the worker refuses this orchestrator's token (401)")
        .count();
    assert_eq!(told, 1, "{}", orch.log());
}

/// `orquesta ARGS…` in `dir` with `envs` (and no token from this
/// process's environment), to completion; killed, failing the test, if it
/// runs past 120 s (a server that should have refused to start).
fn cli(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let child = orquesta()
        .args(args)
        .current_dir(dir)
        .env_remove("ORQUESTA_TOKEN")
        .env_remove("ORQUESTA_TOKEN_FILE")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if rx.recv_timeout(Duration::from_secs(120)).is_err() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let out = child.wait_with_output().unwrap();
    let _ = tx.send(());
    assert!(
        out.status.code().is_some(),
        "orquesta {args:?} did not end: {}",
        stderr(&out)
    );
    out
}

#[test]
fn a_cluster_with_a_token_runs_a_batch_and_the_cli_sends_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{SECRET}\n")).unwrap();
    let token_file = token_file.to_str().unwrap();
    let by_file = [("ORQUESTA_TOKEN_FILE", token_file)];
    let configured = Proc::start(
        dir.path(),
        &["worker", "--worker-id", "w1", "--port", "0", "--capacity", "2"],
        &[("ORQUESTA_TEST_KERNELS", "1"), by_file[0]],
    );
    write_workers(
        dir.path(),
        json!([{"id": "w1", "host": "127.0.0.1", "port": port_of(&configured), "capacity": 2}]),
    );
    let mut env = FAST.to_vec();
    env.push(by_file[0]);
    let orch = Proc::start(dir.path(), &["orchestrator", "--port", "0"], &env);
    let url = format!("http://{}", orch.addr);
    // a --join worker sends the token with its join (the join endpoint is protected)
    let joined = joined_worker_with(
        dir.path(),
        "w2",
        2,
        &url,
        &with_token(&[("ORQUESTA_TEST_KERNELS", "1")]),
    );
    let auth = format!("Bearer {SECRET}");
    let up = || {
        let r = http_with("GET", &orch.addr, "/workers", None, &[("authorization", &auth)]);
        r.json()["up"] == 2
    };
    wait_until(LONG, "w1 and the joined w2 up", up);

    // without a token the command line is refused, with a message that says how
    let out = cli(dir.path(), &["status", "--url", &url], &[]);
    assert_ne!(out.status.code(), Some(0));
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        said.contains("401") || said.contains("requires a token"),
        "{said}"
    );
    assert!(said.contains("ORQUESTA_TOKEN"), "{said}");

    let file = write_batch(dir.path(), "batch.json", small_tasks("t", 6));
    let out = cli(
        dir.path(),
        &submit_wait_args(&file, &url, "120", &["--token-file", token_file]),
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    let out = cli(
        dir.path(),
        &["status", "--url", &url, "--json"],
        &[("ORQUESTA_TOKEN", SECRET)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let status: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(status["stats"]["tasks"]["by_status"]["completed"], 6, "{status}");
    let out = cli(dir.path(), &["workers", "--url", &url, "--token", SECRET], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("w2"), "{}", stdout(&out));
    let seen = format!(
        "{}\n{}\n{}\n{}",
        orch.log(),
        configured.log(),
        joined.log(),
        all_files_text(dir.path()).replace(&format!("{SECRET}\n"), "")
    );
    // the token file itself holds it; nothing else may
    assert_eq!(
        seen.matches(SECRET).count(),
        0,
        "the token shows in an output or a log"
    );
}

#[test]
fn run_and_up_hand_the_token_to_the_workers_they_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = orquesta()
        .args([
            "run",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tareas_manuales_ejemplo.json"),
        ])
        .current_dir(dir.path())
        .envs(FAST.iter().copied())
        .env("ORQUESTA_TOKEN", SECRET)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(&out));
    assert!(text.contains("completed          10"), "{text}");
    assert!(!text.contains(SECRET) && !stderr(&out).contains(SECRET));
}

#[test]
fn config_check_says_only_whether_a_token_is_set() {
    let dir = tempfile::tempdir().unwrap();
    write_workers(dir.path(), json!([]));
    let out = cli(
        dir.path(),
        &["config", "check", "--port", "0"],
        &[("ORQUESTA_TOKEN", SECRET)],
    );
    let text = stdout(&out);
    assert!(
        text.contains("ORQUESTA_TOKEN") && text.contains("<set, hidden>"),
        "{text}"
    );
    assert!(!text.contains(SECRET) && !stderr(&out).contains(SECRET), "{text}");
}

#[test]
fn bad_token_settings_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-token");
    for (args, env, expected) in [
        (
            vec!["worker", "--port", "0"],
            vec![("ORQUESTA_TOKEN", "  ")],
            "ORQUESTA_TOKEN is set but empty",
        ),
        (
            vec!["orchestrator", "--port", "0"],
            vec![("ORQUESTA_TOKEN_FILE", missing.to_str().unwrap())],
            "cannot read",
        ),
        (
            vec!["status"],
            vec![
                ("ORQUESTA_TOKEN", SECRET),
                ("ORQUESTA_TOKEN_FILE", missing.to_str().unwrap()),
            ],
            "both set",
        ),
    ] {
        let out = cli(dir.path(), &args, &env);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains(SECRET));
    }
}

/// `orquesta ARGS…` on 0.0.0.0 port 0; its listening address rewritten to
/// 127.0.0.1 (the test connects through loopback only).
fn start_open(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut p = Proc::start(dir, args, env);
    p.addr = format!("127.0.0.1:{}", port_of(&p));
    p
}

#[test]
fn an_open_bind_needs_a_token_or_insecure() {
    let dir = tempfile::tempdir().unwrap();
    write_workers(dir.path(), json!([]));
    for args in [
        vec!["orchestrator", "--host", "0.0.0.0", "--port", "0"],
        vec!["worker", "--host", "0.0.0.0", "--port", "0"],
        vec!["worker", "--host", "::", "--port", "0"],
    ] {
        let out = cli(dir.path(), &args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let said = stderr(&out);
        assert!(
            said.contains("no token protects the API")
                && said.contains("ORQUESTA_TOKEN_FILE")
                && said.contains("--insecure"),
            "{said}"
        );
    }
    // --insecure: it starts, with one warning line
    let orch = start_open(
        dir.path(),
        &["orchestrator", "--host", "0.0.0.0", "--port", "0", "--insecure"],
        FAST,
    );
    assert_eq!(orch.get("/stats").status, 200);
    let warnings = orch
        .log()
        .lines()
        .filter(|l| l.starts_with("warning: INSECURE"))
        .count();
    assert_eq!(warnings, 1, "{}", orch.log());
    let worker = start_open(
        dir.path(),
        &["worker", "--host", "0.0.0.0", "--port", "0"],
        &[("ORQUESTA_INSECURE", "true")],
    );
    assert_eq!(worker.get("/status").status, 200);
    assert!(worker.log().contains("warning: INSECURE"), "{}", worker.log());
    // with a token: it starts without a warning, and the API is closed
    let w2 = start_open(
        dir.path(),
        &["worker", "--host", "0.0.0.0", "--port", "0"],
        &with_token(&[]),
    );
    assert!(!w2.log().contains("INSECURE"), "{}", w2.log());
    let r: Response = w2.get("/status");
    assert_eq!(r.status, 401);
    assert_eq!(w2.get("/health").status, 200);
}

#[test]
fn a_join_without_the_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_workers(dir.path(), json!([]));
    let orch = Proc::start(dir.path(), &["orchestrator", "--port", "0"], &with_token(FAST));
    let url = format!("http://{}", orch.addr);
    let w = joined_worker(dir.path(), "stranger", 1, &url);
    wait_until(LONG, "the refused join logged", || {
        w.log().contains("refused the join")
    });
    let auth = format!("Bearer {SECRET}");
    let r = http_with("GET", &orch.addr, "/workers", None, &[("authorization", &auth)]);
    assert!(r.json()["workers"].as_array().unwrap().is_empty(), "{}", r.text());
}
