//! The orchestrator (the seed's `elastic_orchestrator_v6.py`): opens the
//! durable queue, reconciles what a crash left, wires the actor tree
//! (FileWatcher → TaskQueue, whose core places tasks itself → WorkerProxy
//! per worker; Membership, the membership, which starts the proxies and
//! tells TaskQueue of workers; ResultsStore) and the REST API. [`shutdown`] owns the stop order: stop
//! intake, write results, acknowledge, commit.

pub mod activity;
pub mod allocation;
pub mod api;
pub mod board;
pub mod config;
pub mod config_watcher;
pub mod file_watcher;
pub mod membership;
pub mod metrics;
pub mod placement;
pub mod progress_poller;
pub mod report;
pub mod results_store;
pub mod retention;
pub mod store;
pub mod task_queue;
pub mod worker_proxy;

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};

use crate::http::auth;
use crate::http::browser::{self, BrowserGuard};
use crate::http::error::ApiError;
use crate::http::limits::{self, BodyRules};
use crate::model::{Validator, WorkerId};
use crate::orchestrator::activity::Activity;
use crate::orchestrator::allocation::{Allocator, AllocatorSettings};
use crate::orchestrator::api::allocations::AllocationApi;
use crate::orchestrator::api::dashboard::Dashboard;
use crate::orchestrator::api::{self as routes, OrchestratorApi};
use crate::orchestrator::board::WorkerBoard;
use crate::orchestrator::config::{member_entry, Settings, WorkerEntry, NO_WORKERS_CONFIGURED};
use crate::orchestrator::config_watcher::{ConfigStatus, ConfigWatcher, SharedConfigStatus};
use crate::orchestrator::file_watcher::{FileWatcher, StopWatching, WatchSettings};
use crate::orchestrator::membership::{JoinedMember, Membership, Proxies, Wire};
use crate::orchestrator::metrics::OrchestratorMetrics;
use crate::orchestrator::placement::{strategy, Loads};
use crate::orchestrator::progress_poller::ProgressPoller;
use crate::orchestrator::results_store::{FlushNow, RecoverResults, ResultsStore, WireStats};
use crate::orchestrator::store::{ReadPool, Store, StoreError};
use crate::orchestrator::task_queue::{Peers, ProxyPeer, QueueSettings, Recover, TaskQueue};
use crate::orchestrator::worker_proxy::{FlushAcks, HeartbeatPace, ProxyPeers, ProxySettings, WorkerProxy};
use crate::util::lock::{InstanceLock, LockError};
use crate::util::token::{insecure_warning, BindVerdict};

#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    #[error("cannot listen on {addr}: {source}; is another orchestrator running? pick another port with --port (0 = any free port)")]
    Bind { addr: String, source: std::io::Error },
    /// Another orchestrator holds one of this one's folders (its database,
    /// drop folder or results folder). Two would ingest the same files and
    /// acknowledge each other's results, so there is no way around it but
    /// stopping the other one.
    #[error("another orchestrator already uses {} ({holder}); stop it first: one drop folder, results folder and database serve one orchestrator at a time", .path.display())]
    Locked {
        path: std::path::PathBuf,
        holder: String,
    },
    #[error("{0}")]
    Lock(LockError),
    /// A folder of the drop folder that files must not be moved into.
    #[error("cannot use the task folder: {0}")]
    TaskFolder(crate::orchestrator::file_watcher::FolderError),
    #[error("cannot keep the data folder's id in {}: {source}; is the database folder writable?", .path.display())]
    FolderId {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A running orchestrator's handles.
pub struct Started {
    pub queue: Addr<TaskQueue>,
    pub lb: Addr<Membership>,
    /// Every worker's live row (`GET /workers`), readable without a message.
    pub board: WorkerBoard,
    pub results: Addr<ResultsStore>,
    pub watcher: Option<Addr<FileWatcher>>,
    /// Applies edits of the workers file (when the drop folder is watched).
    pub config_watcher: Option<Addr<ConfigWatcher>>,
    pub store: Store,
    pub read: Arc<ReadPool>,
    pub server: actix_web::dev::ServerHandle,
    /// The dashboard's shared state: its open streams end at shutdown.
    pub dashboard: web::Data<Dashboard>,
    pub local_addr: std::net::SocketAddr,
    /// `https` when the API serves TLS (`ORQUESTA_TLS_CERT`), else `http`.
    pub scheme: &'static str,
    /// Held for the process's life: one orchestrator per database, drop
    /// folder and results folder.
    pub lock: FolderLocks,
}

/// The id of the data folder, kept beside the database
/// (`data/orquesta.db` → `data/orquesta.db.id`) and made at the first
/// start: workers serve one orchestrator id at a time, and a restarted
/// orchestrator is the same one to them (it adopts its work).
fn folder_id(db: &std::path::Path) -> Result<String, OrchestratorError> {
    let mut name = db.as_os_str().to_owned();
    name.push(".id");
    let path = std::path::PathBuf::from(name);
    let kept = std::fs::read_to_string(&path).unwrap_or_default();
    let kept = kept.trim();
    if kept.len() == 32 && kept.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(kept.to_string());
    }
    let mut id = crate::util::secret::new_secret().unwrap_or_else(|| format!("{:032x}", std::process::id()));
    id.truncate(32);
    crate::util::fs::write_atomic(&path, format!("{id}\n").as_bytes()).map_err(|source| {
        OrchestratorError::FolderId {
            path: path.clone(),
            source,
        }
    })?;
    Ok(id)
}

/// The lock beside the database: `data/orquesta.db` → `data/orquesta.db.lock`.
fn lock_path(db: &std::path::Path) -> std::path::PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    name.into()
}

/// The lock file inside a folder the orchestrator consumes (hidden: the
/// drop folder never reads a name starting with a dot).
pub const FOLDER_LOCK: &str = ".orquesta.lock";

/// The locks one orchestrator holds for its life: beside its database, and
/// inside its drop folder (when watched) and its results folder. A second
/// orchestrator sharing any of them is refused, whatever its
/// `DATABASE_PATH`.
#[derive(Debug)]
pub struct FolderLocks(Vec<(std::path::PathBuf, InstanceLock)>);

impl FolderLocks {
    /// Takes every lock or none: `shown` is how the refusal names the
    /// thing held (the database path, or a folder). `watch`: whether the
    /// drop folder is consumed too. `up` takes them before it starts any
    /// worker, so a second copy is refused before it touches one.
    pub fn acquire(settings: &Settings, watch: bool) -> Result<Self, OrchestratorError> {
        let mut wanted = vec![(settings.db_path.clone(), lock_path(&settings.db_path))];
        let mut folders = vec![&settings.results_dir];
        if watch {
            folders.insert(0, &settings.task_queue_dir);
        }
        let mut seen = std::collections::HashSet::new();
        for dir in folders {
            std::fs::create_dir_all(dir)?;
            // one lock per real folder: two settings naming the same
            // folder must not lock it twice against each other
            if seen.insert(std::fs::canonicalize(dir)?) {
                wanted.push((dir.clone(), dir.join(FOLDER_LOCK)));
            }
        }
        let mut held = Vec::with_capacity(wanted.len());
        for (shown, path) in wanted {
            let lock = InstanceLock::acquire(&path).map_err(|e| match e {
                LockError::Held { holder, .. } => OrchestratorError::Locked {
                    path: shown.clone(),
                    holder,
                },
                other => OrchestratorError::Lock(other),
            })?;
            held.push((shown, lock));
        }
        Ok(Self(held))
    }

    /// Names the holder (pid, address) in every lock file.
    fn record(&mut self, holder: &str) -> std::io::Result<()> {
        self.0.iter_mut().try_for_each(|(_, lock)| lock.record(holder))
    }
}

/// Starts everything inside the current actix system. `watch`: whether
/// the drop folder is watched (`orquesta run` submits its file directly).
pub fn start(
    settings: &Settings,
    workers: &[WorkerEntry],
    watch: bool,
) -> Result<(Started, actix_web::dev::Server), OrchestratorError> {
    // before anything else: one orchestrator per database and per folder
    // it consumes, or two would ingest the same files, adopt each other's
    // running tasks and record results twice
    let lock = FolderLocks::acquire(settings, watch)?;
    start_locked(settings, workers, watch, lock)
}

/// [`start`] with the locks already taken ([`FolderLocks::acquire`] with
/// the same `watch`).
pub fn start_locked(
    settings: &Settings,
    workers: &[WorkerEntry],
    watch: bool,
    mut lock: FolderLocks,
) -> Result<(Started, actix_web::dev::Server), OrchestratorError> {
    if watch {
        crate::orchestrator::file_watcher::check_folders(&settings.task_queue_dir)
            .map_err(OrchestratorError::TaskFolder)?;
    }
    let addr = format!("{}:{}", settings.host, settings.port);
    let listener = TcpListener::bind(&addr).map_err(|source| OrchestratorError::Bind {
        addr: addr.clone(),
        source,
    })?;
    let local_addr = listener.local_addr()?;
    if settings.bind == BindVerdict::Insecure {
        eprintln!("{}", insecure_warning("orchestrator", &local_addr.to_string()));
    }
    let scheme = settings.tls.scheme();
    lock.record(&format!("pid {}, {scheme}://{local_addr}", std::process::id()))?;

    let conn = store::open(&settings.db_path, settings.sync_full)?;
    let orchestrator_id = folder_id(&settings.db_path)?;
    tracing::info!(orchestrator_id = %orchestrator_id, "this data folder's orchestrator id");
    let boot = store::next_boot(&conn)?;
    let allocations = store::load_allocations(&conn)?;
    let recovery = store::recover(&conn)?;
    if !recovery.counts.is_empty() {
        tracing::info!(counts = ?recovery.counts, running = recovery.running.len(),
            unwritten_results = recovery.unwritten.len(), "queue restored from the database");
    }
    let store = Store::start(conn);
    let read = Arc::new(ReadPool::new(&settings.db_path).sharing_faults(store.fault()));
    let checkpoints = Arc::new(
        store::Checkpoints::open(
            &settings.db_path,
            store.clone(),
            !settings.checkpoint_interval.is_zero(),
            settings.checkpoint_max_bytes,
            settings.checkpoint_total_bytes,
        )
        .map_err(|e| StoreError::Failed(e.to_string()))?,
    );
    let validator = Arc::new(Validator {
        limits: settings.limits,
        test_kernels: settings.test_kernels,
        algorithms: None,
    });

    // joined workers from before a restart: known again at once, so their
    // running tasks are adopted (state unknown until the first heartbeat)
    let joined: Vec<JoinedMember> = recovery
        .members
        .iter()
        .filter_map(|m| match member_entry(&m.id, &m.url, m.capacity, &m.algorithms) {
            Ok(entry) => Some(JoinedMember {
                entry,
                instance: m.instance.clone(),
                secret_sha256: m.secret_sha256.clone(),
            }),
            Err(problems) => {
                tracing::warn!(worker = %m.id, ?problems, "a remembered joined worker is unusable; forgotten");
                None
            }
        })
        .collect();
    if !joined.is_empty() {
        tracing::info!(
            count = joined.len(),
            "joined workers remembered from before the restart"
        );
    }
    if workers.is_empty() {
        tracing::warn!("{NO_WORKERS_CONFIGURED}");
    }
    // one set of counters for every actor and `GET /metrics/prometheus`
    let metrics = Arc::new(OrchestratorMetrics::new());
    let lb = Membership::with_members(workers, &joined, settings.balancing);
    let lb_workers = lb.entries().len();
    let every_worker = lb.entries();
    let board = lb.board();
    // the core knows every worker before it adopts their running tasks
    let mut loads = Loads::new(strategy(settings.balancing));
    loads.roster(lb.views());
    let lb = lb.start();
    let results = ResultsStore::new(
        store.clone(),
        &settings.results_dir,
        &settings.logs_dir,
        settings.flush_interval,
        settings.balancing.as_str(),
    )
    .with_metrics(Arc::clone(&metrics))
    .start();
    let pace = HeartbeatPace::new(
        settings.heartbeat_interval,
        settings.worker_timeout,
        settings.heartbeat_rate,
        lb_workers,
    );
    let proxy_settings = ProxySettings {
        worker_timeout: settings.worker_timeout,
        task_timeout: settings.task_timeout,
        token: settings.token.clone(),
        tls: settings.tls.client.clone(),
        metrics: Arc::clone(&metrics),
        max_result_bytes: settings.max_result_bytes,
        stall_timeout: settings.stall_timeout,
        orchestrator_id: orchestrator_id.clone(),
        checkpoints: Some(Arc::clone(&checkpoints)),
        pace: pace.clone(),
    };
    let queue_settings = QueueSettings {
        max_retries: settings.max_retries,
        retry_base: settings.retry_base,
        retry_max: settings.retry_max,
        sweep_interval: settings.distribution_interval,
        performance: settings.performance_monitoring,
        verify_fraction: settings.verify_fraction,
        sooner_starts: settings.sooner_starts,
    };
    let mut proxies: HashMap<String, Addr<WorkerProxy>> = HashMap::new();
    let activity = Arc::new(Activity::default());
    let dashboard = web::Data::new(Dashboard::new(
        Arc::clone(&activity),
        ProgressPoller::new(settings.token.as_ref(), settings.tls.client.clone()).start(),
    ));
    let queue = {
        let (store, lb, results, board) = (store.clone(), lb.clone(), results.clone(), board.clone());
        let proxy_settings = proxy_settings.clone();
        let metrics = Arc::clone(&metrics);
        let workers = every_worker;
        let proxies = &mut proxies;
        TaskQueue::create(move |ctx| {
            let me = ctx.address();
            let mut by_id: HashMap<WorkerId, ProxyPeer> = HashMap::new();
            for w in workers {
                let peers = ProxyPeers {
                    outcomes: me.clone().recipient(),
                    started: me.clone().recipient(),
                    took_back: me.clone().recipient(),
                    heartbeats: lb.clone().recipient(),
                    updates: lb.clone().recipient(),
                    full: me.clone().recipient(),
                    suspects: lb.clone().recipient(),
                };
                let proxy = WorkerProxy::new(w.clone(), proxy_settings.clone(), peers).start();
                by_id.insert(WorkerId::new(&w.id), ProxyPeer::of(&proxy));
                proxies.insert(w.id.clone(), proxy);
            }
            TaskQueue::new(
                store,
                Peers::new(&lb, &results, by_id),
                queue_settings,
                boot,
                loads,
                board,
                metrics,
                activity,
            )
        })
    };
    lb.do_send(Wire {
        core: queue.clone().recipient(),
        full: queue.clone().recipient(),
        proxies: proxies.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        outcomes: queue.clone().recipient(),
        started: queue.clone().recipient(),
        took_back: queue.clone().recipient(),
        settings: proxy_settings,
        store: Some(store.clone()),
        limits: crate::orchestrator::membership::MembershipLimits {
            max_workers: settings.max_workers,
            expiry: settings.worker_expiry,
        },
    });
    let (config_watcher, config_status): (Option<Addr<ConfigWatcher>>, SharedConfigStatus) = if watch {
        let initial = crate::orchestrator::config::read_workers_file(&settings.workers_file).ok();
        let (w, status) = ConfigWatcher::new(settings.workers_file.clone(), initial, lb.clone().recipient());
        (Some(w.start()), status)
    } else {
        let status = ConfigStatus {
            path: settings.workers_file.display().to_string(),
            valid: true,
            error: None,
        };
        (None, Arc::new(std::sync::RwLock::new(status)))
    };
    results.do_send(WireStats {
        queue: queue.clone().recipient(),
        lb: lb.clone().recipient(),
        read: Arc::clone(&read),
    });
    results.do_send(RecoverResults {
        unwritten: recovery.unwritten,
    });
    queue.do_send(Recover {
        running: recovery.running,
        queued_kernels: recovery.queued_kernels,
        checks: recovery.checks,
    });
    let watcher = watch.then(|| {
        FileWatcher::new(
            WatchSettings {
                dir: settings.task_queue_dir.clone(),
                quiet: settings.file_quiet,
                rescan: settings.rescan_interval,
                max_bytes: settings.max_file_bytes,
            },
            Arc::clone(&validator),
            queue.clone().recipient(),
            store.clone(),
            Arc::clone(&metrics),
        )
        .start()
    });

    let api = web::Data::new(OrchestratorApi {
        queue: queue.clone(),
        lb: lb.clone(),
        workers: board.clone(),
        config: config_status,
        pace,
        read: Arc::clone(&read),
        validator,
        max_request_bytes: settings.max_request_bytes,
        bodies: BodyRules::new(settings.http.body_timeout),
        started: Instant::now(),
        own_addr: local_addr,
    });
    let allocator = Allocator::new(
        allocator_settings(settings, local_addr, scheme),
        store.clone(),
        queue.clone(),
        board.clone(),
        allocations,
    )
    .start();
    let allocation_api = web::Data::new(AllocationApi { allocator });
    let metrics = web::Data::from(metrics);
    let purge_api = web::Data::new(crate::orchestrator::api::purge::PurgeApi { store: store.clone() });
    if let Some(keep) = settings.history_retention {
        crate::orchestrator::retention::Retention::new(store.clone(), keep).start();
    }
    routes::checkpoints::start_sweeping(Arc::clone(&checkpoints));
    let checkpoints = web::Data::from(checkpoints);
    let token = settings.token.clone();
    let guard = BrowserGuard::new(token.is_some(), settings.bind == BindVerdict::Insecure);
    let dash = dashboard.clone();
    let server = HttpServer::new(move || {
        let token = token.clone();
        App::new()
            .wrap(from_fn(move |req, next| browser::check(guard, req, next)))
            .wrap(from_fn(move |req, next| auth::check(token.clone(), req, next)))
            .app_data(api.clone())
            .app_data(metrics.clone())
            .app_data(purge_api.clone())
            .app_data(allocation_api.clone())
            .app_data(limits::query_config())
            .app_data(
                web::PathConfig::default().error_handler(|e, _| ApiError::bad_request(e.to_string()).into()),
            )
            .app_data(dash.clone())
            .app_data(checkpoints.clone())
            .configure(routes::configure)
    });
    let server = limits::apply(server, &settings.http, 2)
        // the socket under a request: an /events stream its client does not
        // read ends its connection itself
        .on_connect(crate::http::socket::remember)
        .disable_signals()
        .shutdown_timeout(5);
    let server = match &settings.tls.server {
        Some(tls) => server.listen_rustls_0_23(listener, (**tls).clone())?,
        None => server.listen(listener)?,
    }
    .run();
    tracing::info!(%local_addr, workers = workers.len(), balancing = settings.balancing.as_str(),
        "orchestrator started");
    crate::util::trace::start_flushing();
    Ok((
        Started {
            queue,
            lb,
            board,
            results,
            watcher,
            config_watcher,
            store,
            read,
            server: server.handle(),
            dashboard,
            local_addr,
            scheme,
            lock,
        },
        server,
    ))
}

/// Where allocation jobs join and what they run: `ORQUESTA_ADVERTISE_URL`,
/// else the bound address (this host's name when bound to every
/// interface); `ORQUESTA_WORKER_BINARY`, else this binary. Scripts and
/// outputs go beside the database (`allocations/<queue>/`).
fn allocator_settings(settings: &Settings, local: std::net::SocketAddr, scheme: &str) -> AllocatorSettings {
    let join_url = settings.advertise_url.clone().unwrap_or_else(|| {
        let host = if local.ip().is_unspecified() {
            this_host_name().unwrap_or_else(|| "127.0.0.1".into())
        } else if local.ip().is_ipv6() {
            format!("[{}]", local.ip())
        } else {
            local.ip().to_string()
        };
        format!("{scheme}://{host}:{}", local.port())
    });
    let loopback = join_url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.rsplit_once(':'))
        .is_some_and(|(host, _)| {
            crate::util::token::is_loopback_literal(host.trim_matches(['[', ']'])) || host == "localhost"
        });
    let dir = settings
        .db_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."))
        .join("allocations");
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    AllocatorSettings {
        join_url,
        loopback,
        binary: settings
            .worker_binary
            .clone()
            .or_else(|| std::env::current_exe().ok())
            .unwrap_or_else(|| "orquesta".into()),
        dir,
        token: settings.token.as_ref().map(|t| t.expose().to_string()),
        command_timeout: settings.allocation_command_timeout,
    }
}

/// This machine's name (Linux's kernel record, else the usual variables).
fn this_host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// How often a joined worker joins again: five heartbeats at the pace in
/// force (spaced as the cluster grows), at least 2 s (it is idempotent
/// and cheap, and brings the worker back after a restart of the
/// orchestrator).
pub fn rejoin_interval(pace: &HeartbeatPace) -> std::time::Duration {
    (pace.interval() * 5).max(std::time::Duration::from_secs(2))
}

/// The stop order: no new files, no new requests, results on disk,
/// acknowledgements sent, every change committed.
pub async fn shutdown(started: &Started) {
    tracing::info!("orchestrator stopping");
    if let Some(w) = &started.watcher {
        w.do_send(StopWatching);
    }
    started.dashboard.stop_streams();
    started.server.stop(true).await;
    let _ = started.results.send(FlushNow).await;
    for p in started.lb.send(Proxies { id: None }).await.unwrap_or_default() {
        let _ = p.send(FlushAcks).await;
    }
    // give the acknowledgements a moment on the wire
    actix_rt::time::sleep(std::time::Duration::from_millis(100)).await;
    let store = started.store.clone();
    let _ = actix_rt::task::spawn_blocking(move || store.sync_and_checkpoint()).await;
    crate::util::trace::flush();
    tracing::info!("orchestrator stopped");
}

/// `orquesta orchestrator`: serves until SIGTERM or Ctrl-C.
pub fn serve(settings: Settings, workers: Vec<WorkerEntry>) -> Result<(), OrchestratorError> {
    actix_rt::System::new().block_on(async move {
        let (started, server) = start(&settings, &workers, true)?;
        // a stop asked for once it says it listens shuts down in order
        let stop = crate::util::signal::StopSignals::install();
        announce(&started);
        let server = actix_rt::spawn(server);
        stop.recv().await;
        shutdown(&started).await;
        let _ = server.await;
        Ok(())
    })
}

/// Prints the line scripts and tests wait for.
pub fn announce(started: &Started) {
    // the log lines logged before it (written by a thread of their own)
    // come before it on stdout, as they were logged
    crate::util::log_writer::flush_all();
    println!("listening on {}://{}", started.scheme, started.local_addr);
    let _ = std::io::stdout().flush();
}
