//! Placement: which worker takes which task, as plain functions and data
//! (no actix, no clock, no I/O). The core (TaskQueue's `LiveTasks`) keeps
//! the [`Loads`] of every worker, fed by membership's rosters, and places
//! each batch on them synchronously with the configured [`Strategy`]; for
//! `shortest_expected_finish` it predicts each task's time on each worker
//! from speeds learned from results ([`Expected`]) and places largest
//! first within a priority.

mod batch;
mod expected;
mod loads;
mod strategy;

use serde::Serialize;

pub use self::batch::place_batch;
pub use self::expected::{first_free, largest_first, lay, prior_speed, Expected, TaskSize, SAMPLES};
pub use self::loads::{Claims, Ended, Loads, MemberView, Released, ToPlace};
pub use self::strategy::{strategy, LeastLoaded, Load, RoundRobin, ShortestExpectedFinish, Strategy};
use crate::model::WorkerId;

/// Why a queued task waits.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub summary: String,
    pub per_worker: Vec<WorkerReason>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerReason {
    pub worker_id: WorkerId,
    pub reason: String,
}
