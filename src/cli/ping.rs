//! `orquesta ping`: what the seed's `test_communication.py` did. Reaches
//! the orchestrator (`GET /health`), every worker it knows (addresses from
//! `GET /workers`) and every worker of `config_workers.json` directly
//! (`GET /health` and `GET /status`), and prints the round-trip times and
//! what fails: name resolution, refused, timed out, wrong version, auth,
//! and a worker of the workers file that the running orchestrator does not
//! know ([`config_gaps`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::client::{self, Answer, Endpoint, NoAnswer};
use super::table::Table;
use crate::orchestrator::board::WorkerInfo;
use crate::orchestrator::config_watcher::ConfigStatus;
use crate::protocol::service::{HealthReport, OrchestratorHealth};
use crate::protocol::workers::WorkerList;
use crate::protocol::{Health, HealthAnswer, StatusAnswer};

#[derive(Args, Debug)]
pub struct PingArgs {
    /// The orchestrator [default: http://ORCHESTRATOR_HOST:ORCHESTRATOR_PORT,
    /// else http://127.0.0.1:5000].
    #[arg(long)]
    pub url: Option<String>,
    /// Workers file whose workers are checked directly [default:
    /// WORKERS_CONFIG, else config_workers.json; skipped if that is missing].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Seconds each request may take.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
    pub timeout: f64,
}

/// The outcome of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub ok: bool,
    pub rtt: Option<Duration>,
    /// What was found (the state) or what went wrong.
    pub note: String,
}

/// What any Orquesta answer says about itself, read loosely: a server of
/// another version (whose answers may have another shape) is still named
/// by its version, and a refusal by its reason.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct About {
    version: Option<String>,
    /// An error body's message.
    error: Option<String>,
    /// The word of a `/health` answer (`draining`, `unhealthy`, …).
    status: Option<String>,
}

/// Judges one answer: reachable, not refused for auth, JSON, the same
/// version as this binary, and read as `T` for `describe`.
pub fn judge<T: DeserializeOwned>(
    result: Result<Answer, NoAnswer>,
    describe: impl Fn(&T) -> String,
) -> Check {
    let answer = match result {
        Ok(a) => a,
        Err(e) => {
            let note = match e {
                NoAnswer::Resolve(addr) => format!("name resolution failed: cannot resolve {addr}"),
                NoAnswer::Refused(addr) => format!("connection refused: nothing listens on {addr}"),
                NoAnswer::Timeout(d) => {
                    format!("timed out after {}", super::table::duration(d.as_secs_f64()))
                }
                NoAnswer::Other(m) => m,
            };
            return Check {
                ok: false,
                rtt: None,
                note,
            };
        }
    };
    let rtt = Some(answer.elapsed);
    let fail = |note: String| Check { ok: false, rtt, note };
    if answer.status == 401 || answer.status == 403 {
        return fail(format!(
            "authentication refused (HTTP {}): the server wants credentials orquesta does not send; \
             is something else listening there?",
            answer.status
        ));
    }
    let Ok(body) = serde_json::from_str::<Value>(&answer.body) else {
        return fail(format!(
            "HTTP {} with a body that is not JSON: not an orquesta server?",
            answer.status
        ));
    };
    let about = About::deserialize(&body).unwrap_or_default();
    if !(200..300).contains(&answer.status) {
        let why = about.error.or(about.status);
        let why = why.as_deref().unwrap_or("no reason given");
        return fail(format!("HTTP {}: {why}", answer.status));
    }
    let expected = env!("CARGO_PKG_VERSION");
    match about.version.as_deref() {
        Some(v) if v == expected => match T::deserialize(&body) {
            Ok(typed) => Check {
                ok: true,
                rtt,
                note: describe(&typed),
            },
            Err(e) => fail(format!("an answer of another shape: {e}")),
        },
        Some(v) => fail(format!("wrong version: {v}, expected {expected}")),
        None => fail(format!("wrong version: none reported, expected {expected}")),
    }
}

/// A worker to check and who knows it.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    id: String,
    addr: String,
    /// Reached over HTTPS.
    tls: bool,
    known_to: &'static str,
}

fn worker_health(body: &HealthAnswer) -> String {
    match body.status {
        Health::Healthy => "healthy",
        Health::Draining => "draining",
    }
    .to_string()
}

fn worker_status(body: &StatusAnswer) -> String {
    format!(
        "{}, {} running of {}, {}",
        body.state.as_str(),
        body.running,
        body.capacity,
        body.algorithms.join(" ")
    )
}

/// `orquesta ping`.
pub fn run(args: &PingArgs) -> ExitCode {
    let endpoint = match Endpoint::from_url_flag(args.url.as_deref()) {
        Ok(e) => e,
        Err(code) => return code,
    };
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout < 3600.0) {
        eprintln!(
            "error: --timeout: expected a number of seconds from 0 to 3600, found {}",
            args.timeout
        );
        return ExitCode::from(2);
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    let mut table = Table::new(&["target", "address", "check", "result", "time", "note"]).right(&[4]);
    let mut checks: Vec<bool> = Vec::new();
    let mut add = |table: &mut Table, target: &str, addr: &str, path: &str, c: Check| {
        checks.push(c.ok);
        table.row(vec![
            target.to_string(),
            addr.to_string(),
            path.to_string(),
            if c.ok { "ok".into() } else { "FAILED".into() },
            c.rtt
                .map_or_else(|| "-".into(), |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0)),
            c.note,
        ]);
    };

    let health = client::request(&endpoint, "GET", "/health", None, timeout);
    let orchestrator_up = health.is_ok();
    let check = judge(health, |b: &HealthReport| {
        let status = match b.status {
            OrchestratorHealth::Healthy => "healthy",
            OrchestratorHealth::Degraded => "degraded",
            OrchestratorHealth::Unhealthy => "unhealthy",
        };
        format!("{status}, {} of {} workers up", b.workers_up, b.workers_total)
    });
    add(&mut table, "orchestrator", &endpoint.addr, "/health", check);

    let mut targets: Vec<Target> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    // (id, address) of every worker the orchestrator knows, when it said
    let mut known: Option<Vec<(String, String)>> = None;
    if orchestrator_up {
        match client::get::<WorkerList<WorkerInfo, ConfigStatus>>(&endpoint, "/workers", timeout) {
            Ok(list) => {
                known = Some(
                    list.workers
                        .iter()
                        .map(|w| (w.id.clone(), w.address.clone()))
                        .collect(),
                );
                for w in list.workers {
                    targets.push(Target {
                        id: w.id,
                        addr: w.address,
                        tls: w.tls,
                        known_to: "orchestrator",
                    });
                }
            }
            Err(e) => notes.push(format!("GET /workers failed: {e}")),
        }
    }
    let explicit = args.config.is_some();
    let config = args.config.clone().unwrap_or_else(|| {
        std::env::var("WORKERS_CONFIG")
            .ok()
            .filter(|p| !p.trim().is_empty())
            .map_or_else(|| PathBuf::from("config_workers.json"), PathBuf::from)
    });
    let mut config_failed = false;
    match crate::orchestrator::config::read_workers_file(&config) {
        Ok(bytes) => match crate::orchestrator::config::parse_workers(&bytes) {
            Ok(entries) => {
                if let Some(known) = &known {
                    let listed: Vec<(String, String)> =
                        entries.iter().map(|e| (e.id.clone(), e.address())).collect();
                    for (id, note) in config_gaps(&listed, known, &config.display().to_string()) {
                        add(
                            &mut table,
                            &format!("{id} (config)"),
                            &endpoint.addr,
                            "/workers",
                            Check {
                                ok: false,
                                rtt: None,
                                note,
                            },
                        );
                    }
                }
                for e in entries {
                    let addr = e.address();
                    match targets.iter_mut().find(|t| t.id == e.id && t.addr == addr) {
                        Some(t) => t.known_to = "both",
                        None => targets.push(Target {
                            id: e.id.clone(),
                            addr,
                            tls: e.tls,
                            known_to: "config",
                        }),
                    }
                }
            }
            Err(problems) => {
                config_failed = true;
                notes.push(format!(
                    "{} is invalid: {}",
                    config.display(),
                    problems.join("; ")
                ));
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => notes.push(format!(
            "{} not found: only the orchestrator's workers were checked",
            config.display()
        )),
        Err(e) => {
            config_failed = true;
            notes.push(format!("cannot read {}: {e}", config.display()));
        }
    }

    for t in &targets {
        let label = format!("{} ({})", t.id, t.known_to);
        let ep = Endpoint {
            addr: Endpoint::parse(&t.addr).map_or_else(|_| t.addr.clone(), |e| e.addr),
            tls: t.tls,
        };
        let health = client::request(&ep, "GET", "/health", None, timeout);
        let check = judge(health, worker_health);
        let healthy = check.ok;
        add(&mut table, &label, &t.addr, "/health", check);
        // /status only tells more about a worker that answered /health well
        if healthy {
            let status = client::request(&ep, "GET", "/status", None, timeout);
            add(
                &mut table,
                &label,
                &t.addr,
                "/status",
                judge(status, worker_status),
            );
        }
    }

    println!("orquesta ping (version {}):\n", env!("CARGO_PKG_VERSION"));
    println!("{}", table.render(""));
    for n in &notes {
        println!("note: {n}");
    }
    let failed = checks.iter().filter(|ok| !**ok).count();
    println!(
        "\n{} of {} checks ok{}",
        checks.len() - failed,
        checks.len(),
        if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        }
    );
    if failed == 0 && !config_failed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Workers of the workers file (`listed`: id, address) that the running
/// orchestrator (`known`) does not have, or has at another address, each
/// with what to say about it.
pub fn config_gaps(
    listed: &[(String, String)],
    known: &[(String, String)],
    file: &str,
) -> Vec<(String, String)> {
    listed
        .iter()
        .filter_map(|(id, addr)| match known.iter().find(|(k, _)| k == id) {
            Some((_, a)) if a == addr => None,
            Some((_, a)) => Some((
                id.clone(),
                format!("{file} puts it at {addr}, the running orchestrator at {a}"),
            )),
            None => Some((
                id.clone(),
                format!(
                    "listed in {file} but unknown to the running orchestrator (is it serving another folder's file?)"
                ),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_worker_the_orchestrator_lacks_is_reported() {
        let pair = |i: &str, a: &str| (i.to_string(), a.to_string());
        let listed = [
            pair("w1", "127.0.0.1:5001"),
            pair("w2", "127.0.0.1:5002"),
            pair("w3", "h:1"),
        ];
        let known = [
            pair("w1", "127.0.0.1:5001"),
            pair("w3", "h:2"),
            pair("joined", "x:1"),
        ];
        let gaps = config_gaps(&listed, &known, "c.json");
        assert_eq!(gaps.len(), 2, "{gaps:?}");
        assert_eq!(gaps[0].0, "w2");
        assert!(gaps[0].1.contains("unknown to the running orchestrator"));
        assert_eq!(
            gaps[1],
            pair("w3", "c.json puts it at h:1, the running orchestrator at h:2")
        );
    }

    fn answer(status: u16, body: &str) -> Result<Answer, NoAnswer> {
        Ok(Answer {
            status,
            body: body.into(),
            elapsed: Duration::from_millis(2),
        })
    }

    #[test]
    fn every_kind_of_failure_is_named() {
        let v = env!("CARGO_PKG_VERSION");
        let ok = judge(
            answer(200, &format!(r#"{{"status": "healthy", "version": "{v}"}}"#)),
            worker_health,
        );
        assert_eq!((ok.ok, ok.note.as_str()), (true, "healthy"));
        let cases = [
            (
                answer(200, r#"{"version": "0.0.1"}"#),
                format!("wrong version: 0.0.1, expected {v}"),
            ),
            (
                answer(200, r#"{"status": "ok"}"#),
                format!("wrong version: none reported, expected {v}"),
            ),
            (answer(401, ""), "authentication refused (HTTP 401)".to_string()),
            (answer(403, "{}"), "authentication refused (HTTP 403)".to_string()),
            (
                answer(503, r#"{"status": "draining"}"#),
                "HTTP 503: draining".to_string(),
            ),
            (
                answer(200, "<html>"),
                "HTTP 200 with a body that is not JSON".to_string(),
            ),
            (
                Err(NoAnswer::Resolve("x.invalid:1".into())),
                "name resolution failed".to_string(),
            ),
            (
                Err(NoAnswer::Refused("127.0.0.1:9".into())),
                "connection refused: nothing listens on 127.0.0.1:9".to_string(),
            ),
            (
                Err(NoAnswer::Timeout(Duration::from_secs(3))),
                "timed out after 3.00 s".to_string(),
            ),
        ];
        for (result, expected) in cases {
            let c = judge(result, worker_health);
            assert!(!c.ok && c.note.starts_with(&expected), "{expected:?} vs {c:?}");
        }
    }
}
