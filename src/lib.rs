//! Orquesta: a distributed task orchestrator for particle simulations.
//!
//! # Layout
//! Two processes share this crate: the orchestrator and the worker node.
//! Neither process's code imports the other's; both use the shared parts
//! below them (`.ci/check-imports.sh` keeps it so).
//! - [`cli`]: the `orquesta` command line, one file per subcommand, benches under `cli/bench/`.
//! - [`orchestrator`]: the orchestrator process: start, wiring and shutdown
//!   order (`mod.rs`), its actors, its REST API (`api/`), its durable SQLite
//!   queue (`store/`), its metrics and its settings.
//! - [`worker`]: a worker node: start and shutdown, the executor and the
//!   simulation pool, its API, metrics and settings.
//! - [`protocol`]: the wire types both processes exchange.
//! - [`http`]: what both servers wrap around their routes: the token check,
//!   the JSON error shape, per-client limits.
//! - [`model`]: tasks, statuses, task files, validation, results: the domain types.
//! - [`sim`]: the 2-D Lennard-Jones simulation every task runs (pure: no actix, no I/O).
//! - [`util`]: time, files, locks, logging, the machine, signals, statistics,
//!   the settings reader both processes share, the cluster token and TLS;
//!   `util::platform` holds everything that differs between Unix and Windows.

pub mod cli;
pub mod http;
pub mod model;
pub mod orchestrator;
pub mod protocol;
pub mod sim;
pub mod util;
pub mod worker;

#[cfg(test)]
mod layout_tests;
