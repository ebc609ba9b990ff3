//! Orquesta: a distributed task orchestrator for particle simulations.
//!
//! # Layout
//! Two processes share this crate: the orchestrator and the worker node.
//! Orchestrator-side code never imports worker-side code and the reverse;
//! they share only [`api::protocol`], [`api::auth`], [`model`], [`sim`], [`config`] and [`util`].
//! - [`sim`]: the 2-D Lennard-Jones simulation every task runs (pure: no actix, no I/O).
//! - [`model`]: tasks, statuses, task files, validation, results: the shared domain types.
//! - [`actors`]: the actix actors, one per file; orchestrator side and worker side.
//! - [`api`]: the HTTP routes of both servers, their error type, the token check, and the wire protocol.
//! - [`store`]: the orchestrator's durable SQLite queue.
//! - [`config`]: settings of both processes, as pure functions of an env map.
//! - [`metrics`]: the Prometheus metrics of each process (`GET /metrics/prometheus`).
//! - [`util`]: time, files, the machine, signals, logging, statistics, the
//!   cluster token and TLS.
//! - [`cli`]: the `orquesta` command line, one file per subcommand, benches under `cli/bench/`.
//! - [`orchestrator`], [`worker`]: each process's start, wiring and shutdown order.

pub mod actors;
pub mod api;
pub mod cli;
pub mod config;
pub mod metrics;
pub mod model;
pub mod orchestrator;
pub mod sim;
pub mod store;
pub mod util;
pub mod worker;
