//! Orquesta: a distributed task orchestrator for particle simulations.
//!
//! # Layout
//! - [`sim`]: the 2-D Lennard-Jones simulation every task runs; pure
//!   computation, usable as a library (kernels `reference` and `optimized`).
//! - [`task`]: the task and result shapes of the seed's JSON files.
//! - [`cli`]: the `orquesta` command line (thin: parse, then call in).
//! - [`bench`]: the `orquesta bench …` measurements.

pub mod bench;
pub mod cli;
pub mod sim;
pub mod task;
