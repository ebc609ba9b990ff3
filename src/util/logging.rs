//! Logging: human-readable lines on stdout and the same lines appended to a
//! log file (the seed's `logs/*.log`). `RUST_LOG` sets the level, e.g.
//! `RUST_LOG=debug` or `RUST_LOG=info,orquesta=debug`.

use std::fs::OpenOptions;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

/// Installs the global subscriber. `file` is appended to (created with its
/// folder if needed); several processes may share it. Returns a warning
/// when the file cannot be opened (logging then goes to stdout only).
pub fn init(file: Option<&Path>) -> Option<String> {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| Targets::from_str(&v).ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let stdout = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let mut warning = None;
    let file_layer = file.and_then(|path| {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match OpenOptions::new().create(true).append(true).open(path) {
            Ok(f) => Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_target(false)
                    .with_writer(Arc::new(f)),
            ),
            Err(e) => {
                warning = Some(format!("cannot open log file {}: {e}", path.display()));
                None
            }
        }
    });
    let _ = tracing_subscriber::registry()
        .with(stdout)
        .with(file_layer)
        .with(filter)
        .try_init();
    warning
}
