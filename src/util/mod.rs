//! Small support pieces with no knowledge of tasks or actors (time, files,
//! locks, logging, the machine, signals, statistics, the Prometheus encoding
//! both processes share); what differs between Unix and Windows is all in
//! `platform`.

pub mod duration;
pub mod fs;
pub mod lock;
pub mod log_writer;
pub mod logging;
pub mod machine;
pub mod platform;
pub mod prometheus;
pub mod rotating;
pub mod secret;
pub mod settings;
pub mod signal;
pub mod stats;
pub mod time;
pub mod tls;
pub mod token;
pub mod trace;

/// An env map from pairs: the input of every "settings from an env map"
/// function, for their unit tests (config, token, TLS).
#[cfg(test)]
pub(crate) fn env_map(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
