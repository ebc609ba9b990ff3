//! `orquesta config check`: the effective settings and where each comes
//! from, the workers file, and whether each worker answers (the seed's
//! `python config_manager.py`). When an orchestrator answers at the
//! configured address, the workers that joined it (`--join`) too.

use std::process::ExitCode;
use std::time::Duration;

use super::client::{self, Endpoint};
use super::orchestrator::OrchestratorArgs;
use super::serve::{env_with_flags, workers_file, WORKERS_EXAMPLE};
use crate::orchestrator::board::WorkerInfo;
use crate::orchestrator::config::{self, SETTINGS};
use crate::orchestrator::config_watcher::ConfigStatus;
use crate::protocol::workers::WorkerList;
use crate::protocol::{MemberSource, StatusAnswer};
use crate::util::token::TOKEN_VAR;

/// `orquesta config check`.
pub fn run(args: &OrchestratorArgs) -> ExitCode {
    let env = env_with_flags(args);
    let mut ok = true;
    println!("Settings (flags > environment > .env > default):");
    for (key, default, meaning) in SETTINGS {
        let (value, from) = match env.get(*key) {
            // the secret itself is never printed, only whether it is there
            Some(_) if *key == TOKEN_VAR => ("<set, hidden>".to_string(), "set"),
            Some(v) => (v.clone(), "set"),
            None => (default.to_string(), "default"),
        };
        println!("  {key:<28} {value:<22} {from:<8} {meaning}");
    }
    let settings = match config::settings_from_env(&env) {
        Ok(s) => {
            println!("Settings are valid.");
            Some(s)
        }
        Err(problems) => {
            ok = false;
            println!("Settings have problems:");
            for p in problems {
                println!("  - {p}");
            }
            None
        }
    };
    let path = args
        .config
        .clone()
        .or_else(|| env.get("WORKERS_CONFIG").map(Into::into))
        .unwrap_or_else(|| "config_workers.json".into());
    println!("\nWorkers ({}):", path.display());
    match workers_file(&path) {
        Ok(Some(workers)) if workers.is_empty() => {
            println!("  no workers configured; workers may join with `orquesta worker --join …`");
        }
        Ok(Some(workers)) => {
            let timeout = settings.as_ref().map_or(Duration::from_secs(2), |s| {
                s.worker_timeout.min(Duration::from_secs(3))
            });
            for w in &workers {
                let addr = w.address();
                let endpoint = Endpoint::parse(&w.base_url()).unwrap_or(Endpoint { addr, tls: w.tls });
                let answer = client::request(&endpoint, "GET", "/status", None, timeout);
                let verdict = match &answer {
                    Ok(a) if a.status == 200 => {
                        let s: StatusAnswer = serde_json::from_str(&a.body).unwrap_or_default();
                        format!(
                            "answers in {:.1} ms (id {}, capacity {}, {})",
                            a.elapsed.as_secs_f64() * 1e3,
                            s.worker_id,
                            s.capacity,
                            s.state.as_str()
                        )
                    }
                    Ok(a) => format!("answers {} (is it an orquesta worker?)", a.status),
                    Err(e) => format!("does not answer: {e}"),
                };
                println!(
                    "  {:<12} {:<22} capacity {:<3} {:<28} {}",
                    w.id,
                    w.address(),
                    w.capacity,
                    w.algorithms.join(","),
                    verdict
                );
            }
        }
        Ok(None) => {
            ok = false;
            println!("  not found: create it, for example:\n{WORKERS_EXAMPLE}");
        }
        Err(_) => ok = false,
    }
    if let Some(s) = &settings {
        joined_workers(s);
    }
    if ok {
        println!("\nConfiguration is valid.");
        ExitCode::SUCCESS
    } else {
        println!("\nConfiguration is invalid: fix the problems above.");
        ExitCode::from(2)
    }
}

/// Lists the workers that joined the orchestrator answering at the
/// configured address (`GET /workers`, rows with `"source": "joined"`);
/// silent when none answers (config check also runs before the first start).
fn joined_workers(settings: &config::Settings) {
    let host = match settings.host.as_str() {
        "0.0.0.0" => "127.0.0.1",
        "::" => "::1",
        h => h,
    };
    let scheme = settings.tls.scheme();
    let Ok(endpoint) = Endpoint::parse(&format!("{scheme}://{host}:{}", settings.port)) else {
        return;
    };
    let Ok(list) =
        client::get::<WorkerList<WorkerInfo, ConfigStatus>>(&endpoint, "/workers", Duration::from_secs(2))
    else {
        return;
    };
    let rows: Vec<&WorkerInfo> = list
        .workers
        .iter()
        .filter(|w| w.source == MemberSource::Joined)
        .collect();
    println!("\nJoined workers (orchestrator at {}):", endpoint.url());
    if rows.is_empty() {
        println!("  none");
    }
    for w in rows {
        println!(
            "  {:<12} {:<22} capacity {:<3} {}",
            w.id, w.address, w.capacity, w.state
        );
    }
}
