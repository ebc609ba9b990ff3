//! A worker node (the seed's `worker_service.py`): its own actix system
//! with an [`Executor`], a `SyncArbiter` of [`SimulationActor`]s and the
//! HTTP front of `api::worker`. [`run`] owns start-up and the shutdown
//! order: stop admitting, drain, cancel what is left, flush, leave the
//! orchestrator (with `--join`), stop. One worker per id per logs folder:
//! `logs/worker_<id>.lock` (an OS lock, gone with the process).

pub mod api;
pub mod checkpoint;
pub mod config;
pub mod executor;
pub mod lifetime;
pub mod metrics;
pub mod registrar;
pub mod simulation;

use std::io::Write;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};

use crate::http::auth;
use crate::http::browser::{self, BrowserGuard};
use crate::http::error::ApiError;
use crate::http::limits::{self, BodyRules};
use crate::model::Validator;
use crate::protocol::JoinRequest;
use crate::util::lock::{InstanceLock, LockError};
use crate::util::token::{insecure_warning, BindVerdict};
use crate::worker::api::{self as routes, WorkerApi};
use crate::worker::config::WorkerSettings;
use crate::worker::executor::held_results::HeldResults;
use crate::worker::executor::{CancelAll, Drain, Executor, ExecutorSettings, Flush, GetStatus};
use crate::worker::metrics::WorkerNodeMetrics;
use crate::worker::registrar::{Leave, Registrar};
use crate::worker::simulation::SimulationActor;

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot listen on {addr}: {source}; is another process using the port? pick another with --port (0 = any free port)")]
    Bind { addr: String, source: std::io::Error },
    #[error("worker {id} already runs with the logs folder {} ({holder}); stop it first, or give this one another --worker-id or --logs-dir", .logs_dir.display())]
    Locked {
        id: String,
        logs_dir: std::path::PathBuf,
        holder: String,
    },
    #[error("{0}")]
    Lock(LockError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Takes `logs/worker_<id>.lock`, so that two workers with one id never
/// share a results journal or a state file.
fn lock_worker_id(logs_dir: &std::path::Path, id: &str) -> Result<InstanceLock, WorkerError> {
    InstanceLock::acquire(&logs_dir.join(format!("worker_{id}.lock"))).map_err(|e| match e {
        LockError::Held { holder, .. } => WorkerError::Locked {
            id: id.to_string(),
            logs_dir: logs_dir.to_path_buf(),
            holder,
        },
        other => WorkerError::Lock(other),
    })
}

/// Starts a worker node and blocks until it has shut down.
pub fn run(config: WorkerSettings) -> Result<(), WorkerError> {
    let algorithms = config.algorithms.clone();
    // before binding, when the id is known: the message then names the
    // worker in the way rather than a busy port
    let mut lock = match &config.worker_id {
        Some(id) => Some(lock_worker_id(&config.logs_dir, id)?),
        None => None,
    };
    let addr = format!("{}:{}", config.host, config.port);
    let listener = TcpListener::bind(&addr).map_err(|source| WorkerError::Bind {
        addr: addr.clone(),
        source,
    })?;
    let local = listener.local_addr()?;
    if config.bind == BindVerdict::Insecure {
        eprintln!("{}", insecure_warning("worker", &local.to_string()));
    }
    let worker_id = config
        .worker_id
        .clone()
        .unwrap_or_else(|| format!("worker-{}", local.port()));
    let mut lock = match lock.take() {
        Some(l) => l,
        None => lock_worker_id(&config.logs_dir, &worker_id)?,
    };
    let scheme = config.tls.scheme();
    lock.record(&format!("pid {}, {scheme}://{local}", std::process::id()))?;
    let advertised = match &config.advertise {
        Some(a) => a.clone(),
        None => local.to_string(),
    };
    if let Some(w) = crate::util::logging::init(
        Some(&config.logs_dir.join("worker_service.log")),
        &config.log,
        Some(&worker_id),
    ) {
        eprintln!("warning: {w}");
    }
    let validator = Arc::new(Validator {
        limits: config.limits,
        test_kernels: config.test_kernels,
        algorithms: algorithms.clone(),
    });
    let threads_per_task = config
        .threads_per_task
        .unwrap_or(crate::util::machine::available_threads() / config.capacity)
        .max(1);
    let held_path = config.logs_dir.join(format!("worker_{worker_id}_results.jsonl"));
    let held = HeldResults::open(&held_path, config.max_held_results, config.result_retention).unwrap_or_else(|e| {
        tracing::warn!(path = %held_path.display(), error = %e, "cannot keep results on disk; holding them in memory");
        HeldResults::in_memory(config.max_held_results, config.result_retention)
    });
    if !held.is_empty() {
        tracing::info!(
            count = held.len(),
            "results from before a restart held for pickup"
        );
    }
    let settings = ExecutorSettings {
        worker_id: crate::model::WorkerId::new(&worker_id),
        capacity: config.capacity,
        algorithms: validator.algorithm_names(),
        threads_per_task,
        history_size: config.history_size,
        max_backlog: config.max_backlog,
        state_file: Some(config.logs_dir.join(format!("worker_{worker_id}_state.json"))),
    };

    // the secret the orchestrator gave this id at its first join: shown
    // again after a restart to take the id back
    let secret_file = config.logs_dir.join(format!("worker_{worker_id}_join_secret"));
    let join = config.join.clone().map(|orchestrator| {
        let request = JoinRequest {
            secret: registrar::read_secret(&secret_file),
            id: worker_id.clone(),
            url: format!("{scheme}://{advertised}"),
            capacity: config.capacity,
            algorithms: settings.algorithms.clone(),
            instance: registrar::new_instance(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        (orchestrator, request)
    });

    let system = actix_rt::System::new();
    system.block_on(async move {
        let limits = config.limits;
        let sims = SyncArbiter::start(config.capacity, move || SimulationActor {
            threads: threads_per_task,
            limits,
        });
        let prometheus = Arc::new(WorkerNodeMetrics::new(&worker_id));
        let checkpointer = checkpoint::Checkpointer::start(
            config.join.as_deref(),
            settings.worker_id.clone(),
            config.checkpoint_interval,
            config.token.as_ref(),
            config.tls.client.clone(),
        );
        let executor = Executor::new(settings, sims, held, Arc::clone(&prometheus))
            .with_checkpointer(checkpointer)
            .start();
        let prometheus = web::Data::from(prometheus);
        let api = web::Data::new(WorkerApi {
            executor: executor.clone(),
            validator,
            history_size: config.history_size,
            bodies: BodyRules::new(config.http.body_timeout),
        });
        let token = config.token.clone();
        let guard = BrowserGuard::new(token.is_some(), config.bind == BindVerdict::Insecure);
        let server = HttpServer::new(move || {
            let token = token.clone();
            App::new()
                .wrap(from_fn(move |req, next| browser::check(guard, req, next)))
                .wrap(from_fn(move |req, next| auth::check(token.clone(), req, next)))
                .app_data(api.clone())
                .app_data(prometheus.clone())
                .app_data(json_errors_for_extractors())
                .app_data(web::PathConfig::default().error_handler(|e, _| ApiError::bad_request(e.to_string()).into()))
                .configure(routes::configure)
        });
        let server = limits::apply(server, &config.http, config.http_workers)
            .disable_signals()
            .shutdown_timeout(5);
        let server = match &config.tls.server {
            Some(tls) => server.listen_rustls_0_23(listener, (**tls).clone())?,
            None => server.listen(listener)?,
        }
        .run();
        // a stop asked for once it says it listens is drained, not fatal
        let stop = crate::util::signal::StopSignals::install();
        // the log lines logged before it come before it on stdout
        crate::util::log_writer::flush_all();
        println!("listening on {scheme}://{local}");
        let _ = std::io::stdout().flush();
        tracing::info!(worker = %worker_id, %local, capacity = config.capacity, threads_per_task, "worker node started");

        let token = config.token.clone();
        let tls = config.tls.client.clone();
        let registrar = join.map(|(orchestrator, request)| {
            Registrar::new(orchestrator, request, token.as_ref(), tls)
                .keeping_secret_in(secret_file)
                .start()
        });
        let handle = server.handle();
        let drain_timeout = config.drain_timeout;
        let lifetime = lifetime::Lifetime {
            drain_after: config.drain_after,
            idle_exit: config.idle_exit,
        };
        actix_rt::spawn(async move {
            let signal = std::pin::pin!(stop.recv());
            let own = std::pin::pin!(lifetime.over(executor.clone()));
            if let futures_util::future::Either::Right((why, _)) = futures_util::future::select(signal, own).await {
                tracing::info!(reason = why.as_str(), "worker stopping by itself");
            }
            shutdown(executor, registrar, drain_timeout).await;
            handle.stop(true).await;
        });
        server.await
    })?;
    tracing::info!("worker node stopped");
    drop(lock);
    Ok(())
}

fn json_errors_for_extractors() -> web::QueryConfig {
    limits::query_config()
}

/// The shutdown order: stop admitting, let running tasks finish up to the
/// drain timeout, cancel the rest, write everything down, then leave the
/// orchestrator (after the drain, so that it records the last results first).
async fn shutdown(executor: Addr<Executor>, registrar: Option<Addr<Registrar>>, drain_timeout: Duration) {
    tracing::info!("shutdown requested");
    let deadline = Instant::now() + drain_timeout;
    let mut running = executor.send(Drain).await.unwrap_or(0);
    while running > 0 && Instant::now() < deadline {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        running = executor.send(GetStatus).await.map_or(0, |s| s.running);
    }
    if running > 0 {
        executor.send(CancelAll).await.ok();
        let cancel_deadline = Instant::now() + Duration::from_secs(10);
        while running > 0 && Instant::now() < cancel_deadline {
            actix_rt::time::sleep(Duration::from_millis(20)).await;
            running = executor.send(GetStatus).await.map_or(0, |s| s.running);
        }
    }
    executor.send(Flush).await.ok();
    if let Some(r) = registrar {
        r.send(Leave).await.ok();
    }
}
