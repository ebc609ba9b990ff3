//! What the [`super::Allocator`] keeps of each queue and of each job:
//! the manager's last word, joins, failures and the queue's backoff.

use std::time::Instant;

use super::manager::{CommandError, ManagerState};
use super::spec::Plan;
use super::{BACKOFF_BASE, BACKOFF_MAX};
use crate::protocol::allocations::AllocationError;
use crate::util::time::{iso_at, unix_now};

/// One job of a queue.
#[derive(Debug, Clone)]
pub(super) struct JobRun {
    pub(super) id: String,
    pub(super) seq: u64,
    pub(super) submitted_at: f64,
    pub(super) manager: ManagerState,
    pub(super) reason: Option<String>,
    /// When the manager first said running.
    pub(super) running_since: Option<Instant>,
    pub(super) ever_joined: bool,
    /// Known from the database at start: submitted by an orchestrator
    /// that stopped or was killed. Its workers may have joined and the job
    /// ended while nobody watched; an end is then no failure.
    pub(super) adopted: bool,
    pub(super) cancelled: bool,
    /// Ended badly: why.
    pub(super) failed: Option<String>,
}

impl JobRun {
    pub(super) fn alive(&self) -> bool {
        self.failed.is_none() && !matches!(self.manager, ManagerState::Ended | ManagerState::Failed)
    }
}

/// One queue.
pub(super) struct QueueRun {
    pub(super) plan: Plan,
    pub(super) paused: bool,
    pub(super) removing: bool,
    /// A command of this queue is running.
    pub(super) busy: bool,
    pub(super) jobs: Vec<JobRun>,
    pub(super) last_poll: Option<Instant>,
    pub(super) failures_in_a_row: u32,
    pub(super) backoff_until: Option<(Instant, f64)>,
    pub(super) last_error: Option<AllocationError>,
    pub(super) submitted: u64,
    pub(super) failed: u64,
}

impl QueueRun {
    pub(super) fn new(plan: Plan, paused: bool) -> Self {
        Self {
            plan,
            paused,
            removing: false,
            busy: false,
            jobs: Vec::new(),
            last_poll: None,
            failures_in_a_row: 0,
            backoff_until: None,
            last_error: None,
            submitted: 0,
            failed: 0,
        }
    }

    pub(super) fn note_error(&mut self, e: &CommandError) {
        self.last_error = Some(AllocationError {
            at: iso_at(unix_now()),
            message: e.message.clone(),
            output: e.output.clone(),
        });
    }

    /// A failure counts against the queue: it waits longer before the next submission.
    pub(super) fn back_off(&mut self) {
        self.failures_in_a_row += 1;
        let wait = BACKOFF_BASE
            .saturating_mul(1 << (self.failures_in_a_row - 1).min(16))
            .min(BACKOFF_MAX);
        self.backoff_until = Some((Instant::now() + wait, unix_now() + wait.as_secs_f64()));
    }

    pub(super) fn backing_off(&self) -> bool {
        self.backoff_until.is_some_and(|(t, _)| Instant::now() < t)
    }

    pub(super) fn alive_jobs(&self) -> impl Iterator<Item = &JobRun> {
        self.jobs.iter().filter(|j| j.alive())
    }
}
