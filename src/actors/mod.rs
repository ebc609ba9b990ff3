//! The actors, one per file, each with its messages beside it.
//!
//! Orchestrator: [`file_watcher`] → [`task_queue`] (the source of truth,
//! durable through `store`) ↔ [`load_balancer`] → one [`worker_proxy`] per
//! worker; [`results_store`] writes results and statistics;
//! [`config_watcher`] applies edits of `config_workers.json` while running;
//! [`retention`] forgets old history (`HISTORY_RETENTION_DAYS`).
//! [`activity`] keeps the recent history the dashboard draws, [`progress_poller`]
//! asks workers how far their running tasks are while a dashboard watches.
//!
//! Worker node: [`executor`] (admission, held results, metrics) and
//! [`simulation`] (the CPU-bound pool); [`registrar`] joins the
//! orchestrator for a worker started with `--join`.

pub mod activity;
pub mod config_watcher;
pub mod executor;
pub mod file_watcher;
pub mod load_balancer;
pub mod progress_poller;
pub mod registrar;
pub mod results_store;
pub mod retention;
pub mod simulation;
pub mod task_queue;
pub mod worker_proxy;
