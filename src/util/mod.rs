//! Small support pieces with no knowledge of tasks or actors.

pub mod fs;
pub mod lock;
pub mod logging;
pub mod machine;
pub mod signal;
pub mod stats;
pub mod time;
pub mod tls;
pub mod token;
