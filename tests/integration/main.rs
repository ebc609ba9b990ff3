//! Integration tests: each module starts the real `orquesta` binary as a
//! separate process. One test binary for all of them saves link time.

mod auth;
mod bad_input;
mod bench_cluster;
mod chaos;
mod commands;
mod common;
mod console;
mod deploy;
mod faults;
mod fuzz;
mod hostile;
mod hostile_files;
mod hygiene;
mod ingest;
mod join;
mod join_worker;
mod limits;
mod logs;
mod membership;
mod orchestrator;
mod pipeline;
mod records;
mod scheduling;
mod sim_cli;
mod sim_safety;
mod simd_cli;
mod tls;
mod tools;
mod tools_cluster;
mod tools_terminal;
mod worker;
mod workers_cli;
