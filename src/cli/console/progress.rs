//! The progress of a running batch: how many of its tasks ended, how
//! many failed, the rate, and when it should be done. Pure arithmetic on
//! two readings of the queue's counts (`/stats`), so it is unit-tested.

use std::fmt;
use std::time::{Duration, Instant};

/// The queue's counts at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Queued or running: not ended yet.
    pub live: u64,
}

impl Tally {
    pub fn ended(&self) -> u64 {
        self.completed + self.failed + self.cancelled
    }

    /// What ended between `earlier` and this reading.
    pub fn since(&self, earlier: &Tally) -> Tally {
        Tally {
            completed: self.completed.saturating_sub(earlier.completed),
            failed: self.failed.saturating_sub(earlier.failed),
            cancelled: self.cancelled.saturating_sub(earlier.cancelled),
            live: self.live,
        }
    }
}

/// A batch: from the moment the queue had work until it had none again.
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    /// The counts just before it began.
    pub base: Tally,
    pub started: Instant,
}

/// One progress line.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
    pub failed: u64,
    /// Tasks ended per second since the batch began.
    pub rate: f64,
    /// Until the rest ends at that rate; none before any ended.
    pub eta: Option<Duration>,
}

impl Batch {
    pub fn progress(&self, now: &Tally, at: Instant) -> Progress {
        let d = now.since(&self.base);
        let done = d.ended();
        let seconds = at.saturating_duration_since(self.started).as_secs_f64();
        let rate = if seconds > 0.0 { done as f64 / seconds } else { 0.0 };
        let eta = (rate > 0.0).then(|| Duration::from_secs_f64(now.live as f64 / rate));
        Progress {
            done,
            total: done + now.live,
            failed: d.failed,
            rate,
            eta,
        }
    }
}

/// `progress 120/500 tasks, 2 failed, 85.3 tasks/s, ETA 4 s`
impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "progress {}/{} tasks, {} failed, {:.1} tasks/s, ETA ",
            self.done, self.total, self.failed, self.rate
        )?;
        match self.eta {
            Some(eta) => write!(f, "{}", duration(eta)),
            None => f.write_str("unknown"),
        }
    }
}

/// `42 s`, `3 min 5 s`, `2 h 10 min`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_what_ended_since_the_batch_began() {
        let t0 = Instant::now();
        let batch = Batch {
            base: Tally {
                completed: 100,
                failed: 1,
                cancelled: 0,
                live: 0,
            },
            started: t0,
        };
        let now = Tally {
            completed: 140,
            failed: 3,
            cancelled: 0,
            live: 58,
        };
        let p = batch.progress(&now, t0 + Duration::from_secs(2));
        assert_eq!((p.done, p.total, p.failed), (42, 100, 2));
        assert!((p.rate - 21.0).abs() < 1e-9);
        assert_eq!(p.eta, Some(Duration::from_secs_f64(58.0 / 21.0)));
        assert_eq!(
            p.to_string(),
            "progress 42/100 tasks, 2 failed, 21.0 tasks/s, ETA 2 s"
        );
    }

    #[test]
    fn nothing_ended_yet_has_no_eta() {
        let t0 = Instant::now();
        let batch = Batch {
            base: Tally::default(),
            started: t0,
        };
        let p = batch.progress(
            &Tally {
                live: 5,
                ..Tally::default()
            },
            t0,
        );
        assert_eq!(p.eta, None);
        assert!(p.to_string().ends_with("ETA unknown"), "{p}");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(Duration::from_secs(42)), "42 s");
        assert_eq!(duration(Duration::from_secs(185)), "3 min 5 s");
        assert_eq!(duration(Duration::from_secs(7800)), "2 h 10 min");
    }
}
