//! Heartbeats spaced as the cluster grows. Every proxy beats its worker
//! once per interval, so the orchestrator's idle cost is proportional to
//! workers / interval; past `HEARTBEAT_RATE` beats per second in all the
//! interval grows with the number of workers (as Dask's does), so the
//! idle cost per worker falls as workers are added:
//!
//! - interval = max(`HEARTBEAT_INTERVAL`, workers / `HEARTBEAT_RATE`)
//! - timeout = `WORKER_TIMEOUT` × interval / `HEARTBEAT_INTERVAL`
//!
//! The timeout grows in the same proportion as the interval, so a worker
//! is declared down after the same number of silent beats as configured:
//! a spaced heartbeat never makes a healthy worker look frozen. A refused
//! connection still marks a worker down at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The interval and the timeout for `workers` workers (the rule above);
/// `rate` 0 never spaces them.
pub fn spaced(interval: Duration, timeout: Duration, workers: usize, rate: u64) -> (Duration, Duration) {
    if rate == 0 || interval.is_zero() {
        return (interval, timeout);
    }
    let wanted = Duration::from_secs_f64(workers as f64 / rate as f64);
    if wanted <= interval {
        return (interval, timeout);
    }
    let factor = wanted.as_secs_f64() / interval.as_secs_f64();
    (wanted, timeout.mul_f64(factor))
}

/// The pace every proxy reads at each beat: the configured timers, the
/// rate, and how many workers there are now (kept by membership).
#[derive(Debug, Clone)]
pub struct HeartbeatPace {
    pub interval: Duration,
    pub timeout: Duration,
    /// `HEARTBEAT_RATE`: beats per second in all before spacing (0: never).
    pub rate: u64,
    workers: Arc<AtomicUsize>,
}

impl HeartbeatPace {
    pub fn new(interval: Duration, timeout: Duration, rate: u64, workers: usize) -> Self {
        Self {
            interval,
            timeout,
            rate,
            workers: Arc::new(AtomicUsize::new(workers)),
        }
    }

    /// Membership says how many workers there are (shared by every proxy).
    pub fn set_workers(&self, n: usize) {
        self.workers.store(n, Ordering::Relaxed);
    }

    /// The interval and timeout in force now.
    pub fn now(&self) -> (Duration, Duration) {
        spaced(
            self.interval,
            self.timeout,
            self.workers.load(Ordering::Relaxed),
            self.rate,
        )
    }

    /// The heartbeat interval in force now.
    pub fn interval(&self) -> Duration {
        self.now().0
    }

    /// The `WORKER_TIMEOUT` in force now.
    pub fn timeout(&self) -> Duration {
        self.now().1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(f64) -> Duration = Duration::from_secs_f64;

    #[test]
    fn a_small_cluster_keeps_the_configured_timers() {
        assert_eq!(spaced(S(1.0), S(30.0), 10, 500), (S(1.0), S(30.0)));
        assert_eq!(spaced(S(1.0), S(30.0), 500, 500), (S(1.0), S(30.0)));
    }

    #[test]
    fn a_large_cluster_spaces_beats_and_the_timeout_with_them() {
        let (i, t) = spaced(S(1.0), S(30.0), 4000, 500);
        assert_eq!(i, S(8.0));
        assert!((t.as_secs_f64() - 240.0).abs() < 1e-9);
        // the same number of silent beats before down, at every size
        for n in [1, 499, 501, 1000, 4000, 100_000] {
            let (i, t) = spaced(S(0.5), S(3.0), n, 200);
            assert!(i >= S(0.5) && i >= S(n as f64 / 200.0) - S(1e-9));
            assert!((t.as_secs_f64() / i.as_secs_f64() - 6.0).abs() < 1e-9, "n = {n}");
        }
    }

    #[test]
    fn rate_zero_never_spaces() {
        assert_eq!(spaced(S(1.0), S(30.0), 1_000_000, 0), (S(1.0), S(30.0)));
    }

    #[test]
    fn the_pace_follows_the_member_count() {
        let pace = HeartbeatPace::new(S(1.0), S(30.0), 100, 1);
        let shared = pace.clone();
        assert_eq!(pace.interval(), S(1.0));
        shared.set_workers(300);
        assert_eq!(pace.interval(), S(3.0));
        assert_eq!(pace.timeout(), S(90.0));
    }
}
