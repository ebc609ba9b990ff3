//! Small support pieces with no knowledge of tasks or actors (time, files,
//! locks, logging, the machine and its open-files limit, signals, statistics).

pub mod fs;
pub mod lock;
pub mod logging;
pub mod machine;
pub mod rlimit;
pub mod signal;
pub mod stats;
pub mod time;
pub mod tls;
pub mod token;
