//! Orquesta: a distributed task orchestrator for particle simulations.
//!
//! # Layout
//! - [`sim`]: the 2-D Lennard-Jones simulation every task runs; pure
//!   computation, usable as a library (kernels `reference` and `optimized`).
//! - [`task`]: the task and result shapes of the seed's JSON files, and the
//!   validator every entry point shares.
//! - [`orchestrator`]: the orchestrator's actor tree (see [`actors`]),
//!   durable through [`store`] (SQLite), with the REST API of
//!   [`api::orchestrator`]; [`taskfile`] reads task files; [`cluster`]
//!   starts local workers for `orquesta up` and `orquesta run`.
//! - [`worker`]: a worker node (its own actix system): [`actors::executor`],
//!   [`actors::simulation`] and the HTTP routes of [`api::worker`];
//!   [`held_results`] keeps results until the orchestrator picks them up.
//! - [`config`], [`logging`], [`files`], [`time`], [`process`]: support.
//! - [`cli`]: the `orquesta` command line (thin: parse, then call in).
//! - [`bench`]: the `orquesta bench …` measurements.
//! - [`tools`]: tools for people: `gen`, `validate`, `schema`, `submit`,
//!   `status`, `ping`, `completions`.

pub mod actors;
pub mod api;
pub mod bench;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod files;
pub mod held_results;
pub mod logging;
pub mod orchestrator;
pub mod probe;
pub mod process;
pub mod run;
pub mod sim;
pub mod store;
pub mod task;
pub mod taskfile;
pub mod time;
pub mod tools;
pub mod worker;
