//! Helpers shared by the integration tests: the binary's path and running
//! it to completion.

use std::process::{Command, Output};

/// The `orquesta` binary that cargo built for these tests.
pub fn orquesta() -> Command {
    Command::new(env!("CARGO_BIN_EXE_orquesta"))
}

/// Runs `orquesta ARGS…` to completion.
pub fn run(args: &[&str]) -> Output {
    orquesta().args(args).output().expect("the orquesta binary runs")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
