//! Activity: the recent history the dashboard draws and the store does
//! not keep cheaply — completions, failures and particle-steps per second
//! over the last [`WINDOW_SECONDS`], execution-time histograms per kernel
//! and per worker, and the last [`RECENT_FAILURES`] failures with their
//! reasons. In memory only (a restart starts it empty).
//!
//! Fed by TaskQueue from one place, where an attempt's outcome is decided
//! (`task_queue/outcome.rs`): one short call per ended attempt that takes
//! a `Mutex` for a few additions, allocates nothing on a completion, and
//! copies two strings on a failure. Read by the dashboard's stream
//! (`api::dashboard`) a few times a second while somebody watches.
//!
//! # Why a `Mutex` and not atomics
//! A completion touches a per-second slot (that may have to be reset for
//! a new second), a kernel's and a worker's histogram: several fields that
//! must move together. The lock is held for those additions only, never
//! across I/O, so neither side waits more than a few hundred nanoseconds.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;

use crate::model::{AttemptEnd, TaskId, WorkerId};

/// How far back the per-second history goes: ten minutes.
pub const WINDOW_SECONDS: usize = 600;

/// Seconds per point of the throughput chart: 60 points over the window.
pub const BIN_SECONDS: usize = 10;

/// The failures kept, newest first.
pub const RECENT_FAILURES: usize = 50;

/// A failure's reason is cut to this many characters: the whole of it is
/// in `GET /tasks/{id}`.
const REASON_CHARS: usize = 300;

/// Upper bounds of the execution-time buckets in seconds, 1-2-5 steps from
/// 1 ms to 1000 s; one more bucket holds everything longer. Fixed, so that
/// a histogram is a few counters and its buckets mean the same everywhere.
pub const BUCKETS: [f64; 19] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0,
    500.0, 1000.0,
];

/// Execution times on the fixed [`BUCKETS`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Histogram {
    /// `counts[i]`: times ≤ `BUCKETS[i]` (and above the bucket before); the
    /// last one: above every bound.
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS.len() + 1],
            count: 0,
            sum_seconds: 0.0,
        }
    }

    fn add(&mut self, seconds: f64) {
        let seconds = if seconds.is_finite() {
            seconds.max(0.0)
        } else {
            0.0
        };
        let i = BUCKETS.partition_point(|&b| b < seconds);
        self.counts[i] += 1;
        self.count += 1;
        self.sum_seconds += seconds;
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_seconds / self.count as f64)
    }

    /// The `q` quantile (0..=1), interpolated inside its bucket; `None`
    /// when empty. Above the last bound it answers the last bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * self.count as f64).max(1.0);
        let mut seen = 0.0;
        for (i, &n) in self.counts.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if seen + n as f64 >= rank {
                let Some(&upper) = BUCKETS.get(i) else {
                    return BUCKETS.last().copied();
                };
                let lower = if i == 0 { 0.0 } else { BUCKETS[i - 1] };
                return Some(lower + (upper - lower) * (rank - seen) / n as f64);
            }
            seen += n as f64;
        }
        BUCKETS.last().copied()
    }
}

/// One second of the history.
#[derive(Debug, Clone, Copy, Default)]
struct Second {
    /// The unix second this slot holds; a slot of an older second is
    /// stale and counts as zero.
    at: u64,
    completed: u32,
    failed: u32,
    particle_steps: u64,
}

/// An attempt that ended without a result, as TaskQueue tells it.
pub struct EndedAttempt<'a> {
    pub task_id: &'a TaskId,
    pub worker: &'a WorkerId,
    /// Which attempt of the task it was (1 = the first).
    pub attempt: u32,
    /// `Failed` or `Lost`.
    pub end: AttemptEnd,
    /// No retry left: the task failed for good (counted in the history)
    /// rather than going back to the queue.
    pub for_good: bool,
    pub reason: &'a str,
}

/// One failed attempt, as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    /// Unix seconds.
    pub at: f64,
    pub task_id: TaskId,
    pub worker_id: WorkerId,
    /// Which attempt of the task it was (1 = the first).
    pub attempt: u32,
    /// `failed` or `lost`.
    pub outcome: AttemptEnd,
    /// True when the task failed for good (no retry left).
    pub is_final: bool,
    pub reason: String,
}

#[derive(Debug)]
struct Recorder {
    seconds: Vec<Second>,
    kernels: Vec<(&'static str, Histogram)>,
    workers: Vec<(WorkerId, Histogram)>,
    failures: VecDeque<Failure>,
    failures_total: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            seconds: vec![Second::default(); WINDOW_SECONDS],
            kernels: Vec::new(),
            workers: Vec::new(),
            failures: VecDeque::with_capacity(RECENT_FAILURES),
            failures_total: 0,
        }
    }
}

impl Recorder {
    fn second(&mut self, now: f64) -> &mut Second {
        let at = now.max(0.0) as u64;
        let slot = &mut self.seconds[at as usize % WINDOW_SECONDS];
        if slot.at != at {
            *slot = Second {
                at,
                ..Second::default()
            };
        }
        slot
    }
}

/// The recorder, shared (`Arc`) by TaskQueue and the dashboard.
#[derive(Debug, Default)]
pub struct Activity {
    inner: Mutex<Recorder>,
}

/// A kernel's or a worker's execution times.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Times {
    pub name: String,
    pub count: u64,
    pub mean_seconds: Option<f64>,
    pub p95_seconds: Option<f64>,
    pub histogram: Vec<u64>,
}

impl Times {
    fn of(name: &str, h: &Histogram) -> Self {
        Self {
            name: name.to_string(),
            count: h.count,
            mean_seconds: h.mean(),
            p95_seconds: h.quantile(0.95),
            histogram: h.counts.clone(),
        }
    }
}

/// What the dashboard's stream sends of the activity: the chart's series
/// (oldest bin first), the rates of the last [`BIN_SECONDS`] complete
/// seconds, and the histograms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActivityView {
    pub bin_seconds: usize,
    /// The unix second the last bin ends at (excluded).
    pub until: u64,
    pub completed: Vec<u32>,
    pub failed: Vec<u32>,
    pub particle_steps: Vec<u64>,
    pub completed_per_second: f64,
    pub particle_steps_per_second: f64,
    pub bucket_bounds_seconds: &'static [f64],
    pub kernels: Vec<Times>,
    pub workers: Vec<Times>,
    /// Failures recorded since start: the page fetches the list again
    /// when this changes.
    pub failures_total: u64,
}

impl Activity {
    fn lock(&self) -> MutexGuard<'_, Recorder> {
        // a panic elsewhere while holding it leaves counters, never a
        // broken invariant: keep counting
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A task completed on `worker` in `seconds`; `size` is its (N,
    /// steps) when known. No allocation after a kernel's and a worker's
    /// first result.
    pub fn completed(
        &self,
        now: f64,
        kernel: &'static str,
        worker: &WorkerId,
        seconds: f64,
        size: Option<(u64, u64)>,
    ) {
        let mut r = self.lock();
        let s = r.second(now);
        s.completed += 1;
        if let Some((n, steps)) = size {
            s.particle_steps += n.saturating_mul(steps);
        }
        match r.kernels.iter_mut().find(|(k, _)| *k == kernel) {
            Some((_, h)) => h.add(seconds),
            None => {
                let mut h = Histogram::new();
                h.add(seconds);
                r.kernels.push((kernel, h));
            }
        }
        match r.workers.iter_mut().find(|(w, _)| w == worker) {
            Some((_, h)) => h.add(seconds),
            None => {
                let mut h = Histogram::new();
                h.add(seconds);
                r.workers.push((worker.clone(), h));
            }
        }
    }

    /// An attempt failed or was lost (see [`EndedAttempt`]).
    pub fn failed(&self, now: f64, a: EndedAttempt<'_>) {
        let failure = Failure {
            at: now,
            task_id: a.task_id.clone(),
            worker_id: a.worker.clone(),
            attempt: a.attempt,
            outcome: a.end,
            is_final: a.for_good,
            reason: a.reason.chars().take(REASON_CHARS).collect(),
        };
        let mut r = self.lock();
        if a.for_good {
            r.second(now).failed += 1;
        }
        if r.failures.len() == RECENT_FAILURES {
            r.failures.pop_back();
        }
        r.failures.push_front(failure);
        r.failures_total += 1;
    }

    /// The last failures, newest first.
    pub fn failures(&self) -> Vec<Failure> {
        self.lock().failures.iter().cloned().collect()
    }

    /// The chart's series and the histograms at `now`. The lock is held
    /// while 600 slots are summed into bins (microseconds).
    pub fn view(&self, now: f64) -> ActivityView {
        let now = now.max(0.0) as u64;
        let bins = WINDOW_SECONDS / BIN_SECONDS;
        // bins end at the next whole bin boundary after `now`, so the
        // last bin is the one filling up now
        let until = (now / BIN_SECONDS as u64 + 1) * BIN_SECONDS as u64;
        let first = until.saturating_sub(WINDOW_SECONDS as u64);
        let mut completed = vec![0u32; bins];
        let mut failed = vec![0u32; bins];
        let mut particle_steps = vec![0u64; bins];
        let (mut recent_completed, mut recent_steps) = (0u64, 0u64);
        let r = self.lock();
        for s in &r.seconds {
            if s.at < first || s.at >= until || s.at > now {
                continue;
            }
            let b = ((s.at - first) as usize / BIN_SECONDS).min(bins - 1);
            completed[b] += s.completed;
            failed[b] += s.failed;
            particle_steps[b] += s.particle_steps;
            // the rate: the last BIN_SECONDS complete seconds
            if s.at < now && s.at + BIN_SECONDS as u64 >= now {
                recent_completed += u64::from(s.completed);
                recent_steps += s.particle_steps;
            }
        }
        ActivityView {
            bin_seconds: BIN_SECONDS,
            until,
            completed,
            failed,
            particle_steps,
            completed_per_second: recent_completed as f64 / BIN_SECONDS as f64,
            particle_steps_per_second: recent_steps as f64 / BIN_SECONDS as f64,
            bucket_bounds_seconds: &BUCKETS,
            kernels: r.kernels.iter().map(|(k, h)| Times::of(k, h)).collect(),
            workers: r.workers.iter().map(|(w, h)| Times::of(w.as_str(), h)).collect(),
            failures_total: r.failures_total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: f64 = 1_700_000_000.0;

    fn w(id: &str) -> WorkerId {
        WorkerId::new(id)
    }

    #[test]
    fn a_histogram_puts_each_time_in_its_bucket_and_answers_p95() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile(0.95), None);
        assert_eq!(h.mean(), None);
        for _ in 0..95 {
            h.add(0.004); // (0.002, 0.005]
        }
        for _ in 0..5 {
            h.add(3.0); // (2, 5]
        }
        h.add(f64::NAN);
        assert_eq!(h.counts[2], 95);
        assert_eq!(h.counts[11], 5);
        assert_eq!(h.counts[0], 1, "NaN counts as 0 s, never a panic");
        let p95 = h.quantile(0.95).unwrap();
        assert!((0.002..=0.005).contains(&p95), "{p95}");
        let p99 = h.quantile(0.99).unwrap();
        assert!((2.0..=5.0).contains(&p99), "{p99}");
        let mut long = Histogram::new();
        long.add(5000.0);
        assert_eq!(long.counts[BUCKETS.len()], 1);
        assert_eq!(long.quantile(0.5), Some(1000.0));
    }

    #[test]
    fn completions_fill_the_chart_bins_and_the_rates() {
        let a = Activity::default();
        // 3 completions a second for the 10 complete seconds before now
        let now = T0 + 25.5;
        for s in 15..25 {
            for _ in 0..3 {
                a.completed(T0 + s as f64 + 0.1, "reference", &w("w1"), 0.2, Some((100, 50)));
            }
        }
        a.completed(now, "optimized", &w("w2"), 2.0, None);
        let v = a.view(now);
        assert_eq!(v.completed.len(), WINDOW_SECONDS / BIN_SECONDS);
        assert_eq!(v.completed.iter().sum::<u32>(), 31);
        assert_eq!(v.particle_steps.iter().sum::<u64>(), 30 * 5000);
        assert_eq!(
            *v.completed.last().unwrap(),
            3 * 5 + 1,
            "the bin filling now is last"
        );
        assert_eq!(v.completed_per_second, 3.0);
        assert_eq!(v.particle_steps_per_second, 3.0 * 5000.0);
        assert_eq!(v.until % BIN_SECONDS as u64, 0);
        let names: Vec<&str> = v.kernels.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["reference", "optimized"]);
        assert_eq!(v.kernels[0].count, 30);
        assert_eq!(v.workers[1].name, "w2");
        assert_eq!(v.workers[1].mean_seconds, Some(2.0));
    }

    #[test]
    fn seconds_older_than_the_window_are_forgotten() {
        let a = Activity::default();
        a.completed(T0, "reference", &w("w1"), 0.1, Some((10, 10)));
        let later = T0 + WINDOW_SECONDS as f64 + 30.0;
        // the same slot, reused by a later second: reset, not added to
        a.completed(T0 + WINDOW_SECONDS as f64, "reference", &w("w1"), 0.1, None);
        let v = a.view(later);
        assert_eq!(v.completed.iter().sum::<u32>(), 1);
        assert_eq!(v.particle_steps.iter().sum::<u64>(), 0);
        assert_eq!(
            a.view(later + 2.0 * WINDOW_SECONDS as f64)
                .completed
                .iter()
                .sum::<u32>(),
            0
        );
        // the histograms keep everything since start
        assert_eq!(v.kernels[0].count, 2);
    }

    #[test]
    fn failures_are_kept_newest_first_and_bounded() {
        let a = Activity::default();
        let long = "x".repeat(2000);
        for i in 0..(RECENT_FAILURES + 7) {
            let is_final = i % 2 == 0;
            let end = if i == RECENT_FAILURES + 5 {
                AttemptEnd::Lost
            } else {
                AttemptEnd::Failed
            };
            let (task_id, worker) = (TaskId::from(format!("t{i}")), w("w1"));
            let attempt = EndedAttempt {
                task_id: &task_id,
                worker: &worker,
                attempt: 1,
                end,
                for_good: is_final,
                reason: &long,
            };
            a.failed(T0 + i as f64, attempt);
        }
        let list = a.failures();
        assert_eq!(list.len(), RECENT_FAILURES);
        assert_eq!(list[0].task_id, format!("t{}", RECENT_FAILURES + 6));
        assert_eq!(list[0].reason.chars().count(), REASON_CHARS);
        assert_eq!(list[1].outcome, AttemptEnd::Lost);
        let v = a.view(T0 + (RECENT_FAILURES + 7) as f64);
        assert_eq!(v.failures_total, (RECENT_FAILURES + 7) as u64);
        // only failures for good count in the chart: 29 of the 57
        assert_eq!(v.failed.iter().sum::<u32>(), 29);
    }
}
