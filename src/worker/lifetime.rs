//! A worker that stops by itself (workers started by an allocation job):
//! after `--drain-after` (the job's time limit less a margin, so running
//! tasks end before the cluster manager kills the job) or after
//! `--idle-exit` without running anything. Either way it then takes the
//! same path as SIGTERM: drain, flush, leave the orchestrator, exit, and
//! the job ends with its last worker.

use std::time::{Duration, Instant};

use actix::Addr;

use crate::worker::executor::{Executor, GetStatus};

/// How often the worker looks at its own load.
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// When a worker stops by itself.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Lifetime {
    pub drain_after: Option<Duration>,
    pub idle_exit: Option<Duration>,
}

/// Why a worker stopped by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfStop {
    TimeLimit,
    Idle,
}

impl SelfStop {
    pub fn as_str(self) -> &'static str {
        match self {
            SelfStop::TimeLimit => "its --drain-after time is up",
            SelfStop::Idle => "it ran nothing for its --idle-exit time",
        }
    }
}

impl Lifetime {
    /// Whether to stop now, `up` after start and `idle` without work.
    pub fn verdict(&self, up: Duration, idle: Duration) -> Option<SelfStop> {
        if self.drain_after.is_some_and(|d| up >= d) {
            return Some(SelfStop::TimeLimit);
        }
        if self.idle_exit.is_some_and(|d| idle >= d) {
            return Some(SelfStop::Idle);
        }
        None
    }

    /// Resolves when the worker should stop by itself; never when neither
    /// limit is set.
    pub async fn over(self, executor: Addr<Executor>) -> SelfStop {
        if self.drain_after.is_none() && self.idle_exit.is_none() {
            return std::future::pending().await;
        }
        let started = Instant::now();
        let mut idle_since = Instant::now();
        loop {
            actix_rt::time::sleep(LOOK_EVERY).await;
            if let Ok(status) = executor.send(GetStatus).await {
                if status.running + status.backlog > 0 {
                    idle_since = Instant::now();
                }
            }
            if let Some(why) = self.verdict(started.elapsed(), idle_since.elapsed()) {
                return why;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_stops_the_worker_and_none_never_does() {
        let s = Duration::from_secs;
        let none = Lifetime::default();
        assert_eq!(none.verdict(s(1_000_000), s(1_000_000)), None);
        let both = Lifetime {
            drain_after: Some(s(100)),
            idle_exit: Some(s(10)),
        };
        assert_eq!(both.verdict(s(50), s(5)), None);
        assert_eq!(both.verdict(s(50), s(10)), Some(SelfStop::Idle));
        assert_eq!(both.verdict(s(100), s(0)), Some(SelfStop::TimeLimit));
    }
}
