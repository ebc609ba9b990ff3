//! Prometheus metrics (`GET /metrics/prometheus` on both processes).
//!
//! [`orchestrator`] is the orchestrator's, [`worker`] a worker node's; each
//! belongs to its side of the import rule (neither imports the other).
//! What both share (buckets, label sets, the text encoding) is
//! `util::prometheus`.

pub mod orchestrator;
pub mod worker;
