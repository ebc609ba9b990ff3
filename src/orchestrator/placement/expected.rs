//! How long a task will take on a worker, and when that worker would
//! finish it: the model behind `shortest_expected_finish`.
//!
//! # The model
//! - **Work** of a task, from its parameters only: `N·steps` for
//!   `optimized` (cell lists: cost grows with N) and `N²·steps` for
//!   `reference` (every pair). Other kernels count as `N·steps`; the test
//!   kernels have no size and count as no work.
//! - **Speed** of a worker for a kernel, in work units per second, learned
//!   online from each completed attempt: `work / execution_time` (the
//!   worker's own measure of the run, not the round trip). The estimate is
//!   the median of the last [`SAMPLES`] speeds, so a few outliers (a run
//!   slowed by a neighbour, a cold cache) move it little, while a lasting
//!   change (the machine got busier) wins within [`SAMPLES`]/2 results.
//!   Runs shorter than [`MIN_SAMPLE_SECONDS`] are not learned from: their
//!   time is mostly set-up, which would make a worker look slow for large
//!   tasks.
//! - **Prior**, before a worker's first result for a kernel: the median of
//!   the speeds learned on the other workers for that kernel (they likely
//!   run the same code on similar machines), else [`prior_speed`], a rough
//!   one-thread figure of this code (docs/performance.md "Benchmarks").
//! - **Expected finish** of a task on a worker, in seconds from now: each
//!   of its `capacity` slots is free at some time; the tasks it holds are
//!   laid on the slots in the order they were placed, the first
//!   `capacity` of them (running) with what remains of their predicted
//!   time, the rest (a backlog) whole, each on the slot free first; this
//!   task starts when a slot is free first and takes its predicted time at
//!   this worker's speed. With no backlog and a free slot this is just the
//!   task's predicted time there: the fastest free worker wins.
//!
//! # Cost
//! Every question is answered in time independent of the number of
//! workers: a worker's estimate is kept beside its samples (recomputed
//! when one is learned), and the typical speed of a kernel is cached
//! until a worker's estimate for it changes. Take-backs ask for speeds
//! per worker per task sent ahead; the median over every worker, taken
//! afresh at each question, made a dispatch among 256 workers cost
//! their square.
//!
//! The Membership keeps one [`Expected`] for all workers: a placement
//! adds the task to its worker's holdings ([`Expected::placed`]), a
//! release removes it and learns from its time ([`Expected::released`]).
//! Pure: every call takes `now` (seconds on any clock that only goes
//! forward), so `orquesta bench makespan` drives the same code in
//! simulated time.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};

use crate::model::{KernelName, WorkerId};

/// Speeds remembered per worker and kernel (the median of these is used).
pub const SAMPLES: usize = 9;

/// Runs shorter than this are not learned from (mostly set-up time).
pub const MIN_SAMPLE_SECONDS: f64 = 0.002;

/// A task's kernel and size: what its predicted time is made of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskSize {
    pub kernel: KernelName,
    pub particles: u64,
    pub steps: u64,
}

impl TaskSize {
    /// Work units (see the module doc): `N·steps` or `N²·steps`.
    pub fn work(&self) -> f64 {
        let (n, steps) = (self.particles as f64, self.steps as f64);
        match self.kernel.as_str() {
            "reference" => n * n * steps,
            _ => n * steps,
        }
    }
}

/// Work units per second of one thread of this code on a 2020s x86-64
/// core (docs/performance.md "Benchmarks": `reference` 0.5–3.8 M particle-steps/s at
/// N = 1,000–100, i.e. ~4·10⁸ pair-steps/s; `optimized` ~50 M
/// particle-steps/s). Only used until some worker has reported a result.
pub fn prior_speed(kernel: &str) -> f64 {
    match kernel {
        "reference" => 4e8,
        _ => 5e7,
    }
}

/// One task a worker holds: placed, not yet released.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// `None` for an attempt adopted after a restart (its size unknown
    /// here): it occupies a slot but is predicted to take no time.
    size: Option<TaskSize>,
    placed_at: f64,
}

/// The recent speeds of one worker on one kernel and their median.
#[derive(Debug)]
struct Samples {
    /// Oldest first, at most [`SAMPLES`].
    recent: VecDeque<f64>,
    /// The median of `recent` (the estimate).
    median: f64,
}

/// What the model knows of one worker.
#[derive(Debug, Default)]
struct WorkerModel {
    /// Recent speeds per kernel.
    speeds: HashMap<&'static str, Samples>,
    /// In placement order.
    held: Vec<Held>,
}

/// Learned speeds and current holdings of every worker.
#[derive(Debug, Default)]
pub struct Expected {
    workers: HashMap<WorkerId, WorkerModel>,
    /// [`Expected::typical_speed`] per kernel, as last computed; a kernel
    /// is dropped from it when a worker's estimate for it changes.
    typical: RefCell<HashMap<String, Option<f64>>>,
}

fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

impl Expected {
    pub fn new() -> Self {
        Self::default()
    }

    /// The speed learned for `worker` on `kernel`, if it has reported any
    /// result long enough to learn from.
    pub fn learned_speed(&self, worker: &WorkerId, kernel: &str) -> Option<f64> {
        Some(self.workers.get(worker)?.speeds.get(kernel)?.median)
    }

    /// The speed used for `worker` on `kernel`: learned, else the median of
    /// the other workers' learned speeds, else [`prior_speed`].
    pub fn speed(&self, worker: &WorkerId, kernel: &str) -> f64 {
        self.learned_speed(worker, kernel)
            .or_else(|| self.typical_speed(kernel))
            .unwrap_or_else(|| prior_speed(kernel))
    }

    /// The median of every worker's learned speed on `kernel` (cached
    /// until one of them changes).
    fn typical_speed(&self, kernel: &str) -> Option<f64> {
        if let Some(known) = self.typical.borrow().get(kernel) {
            return *known;
        }
        let typical = median(
            self.workers
                .values()
                .filter_map(|m| m.speeds.get(kernel))
                .map(|s| s.median),
        );
        self.typical.borrow_mut().insert(kernel.to_string(), typical);
        typical
    }

    /// Predicted seconds of `task` on `worker`.
    pub fn predict(&self, worker: &WorkerId, task: &TaskSize) -> f64 {
        task.work() / self.speed(worker, task.kernel.as_str())
    }

    /// Predicted seconds of `task` on a typical worker (to order tasks by
    /// size across kernels, whose work units differ).
    pub fn typical_seconds(&self, task: &TaskSize) -> f64 {
        let speed = self
            .typical_speed(task.kernel.as_str())
            .unwrap_or_else(|| prior_speed(task.kernel.as_str()));
        task.work() / speed
    }

    /// Seconds from `now` until `worker`, with `capacity` slots, would
    /// finish `task` if given it now (see the module doc).
    pub fn finish_in(&self, worker: &WorkerId, capacity: usize, task: &TaskSize, now: f64) -> f64 {
        self.start_in(worker, capacity, now) + self.predict(worker, task)
    }

    /// Seconds from `now` until `worker`, with `capacity` slots, would
    /// start one more task: a slot free after everything it holds (see
    /// the module doc).
    pub fn start_in(&self, worker: &WorkerId, capacity: usize, now: f64) -> f64 {
        let held = self.workers.get(worker).map_or(0, |m| m.held.len());
        let slots = self.slots_after(worker, capacity, held, now);
        first_free(&slots)
    }

    /// When each of `worker`'s `capacity` slots is free, in seconds from
    /// `now`, counting only the first `count` tasks it holds (in
    /// placement order): the first `capacity` of them running since they
    /// were placed (what remains of their predicted time), the rest whole,
    /// each on the slot free first. With `count` its running tasks, this
    /// is where the tasks waiting in its backlog are laid, in the order it
    /// will start them ([`lay`]), to tell when each would start there.
    pub fn slots_after(&self, worker: &WorkerId, capacity: usize, count: usize, now: f64) -> Vec<f64> {
        let capacity = capacity.max(1);
        let mut slots = vec![0.0_f64; capacity];
        if let Some(m) = self.workers.get(worker) {
            // each kernel's speed looked up once (a median), and tasks of
            // no work (the test kernels) cost nothing: this runs at every
            // dispatch, over backlogs of hundreds of tiny tasks
            let mut speeds: Vec<(KernelName, f64)> = Vec::new();
            for (k, h) in m.held.iter().take(count).enumerate() {
                let Some(size) = &h.size else { continue };
                let work = size.work();
                if work <= 0.0 {
                    continue;
                }
                let speed = match speeds.iter().find(|(kernel, _)| *kernel == size.kernel) {
                    Some((_, s)) => *s,
                    None => {
                        let s = self.speed(worker, size.kernel.as_str());
                        speeds.push((size.kernel, s));
                        s
                    }
                };
                let mut left = work / speed;
                if k < capacity {
                    // running since it was placed (about): what remains
                    left = (left - (now - h.placed_at)).max(0.0);
                }
                lay(&mut slots, left);
            }
        }
        slots
    }

    /// `task` was placed on `worker` at `now` (`None`: an adopted attempt
    /// of unknown size).
    pub fn placed(&mut self, worker: &WorkerId, task: Option<TaskSize>, now: f64) {
        self.workers.entry(worker.clone()).or_default().held.push(Held {
            size: task,
            placed_at: now,
        });
    }

    /// An attempt of `task` on `worker` ended; `seconds` is its execution
    /// time when it completed. `idle`: the worker now holds nothing (any
    /// holding left is dropped, so a lost release cannot skew it for long).
    pub fn released(&mut self, worker: &WorkerId, task: Option<TaskSize>, seconds: Option<f64>, idle: bool) {
        let Some(m) = self.workers.get_mut(worker) else {
            return;
        };
        // the same size is the same prediction: which of equal ones goes
        // does not matter; an unknown one takes an adopted (unknown) slot,
        // else the newest (a task placed just as it was cancelled)
        let exact = task.and_then(|t| m.held.iter().position(|h| h.size == Some(t)));
        let at = exact
            .or_else(|| m.held.iter().position(|h| h.size.is_none()))
            .or_else(|| task.is_none().then(|| m.held.len().checked_sub(1)).flatten());
        if let Some(at) = at {
            m.held.remove(at);
        }
        if idle {
            m.held.clear();
        }
        if let (Some(t), Some(s)) = (task, seconds) {
            let work = t.work();
            if s.is_finite() && s >= MIN_SAMPLE_SECONDS && work > 0.0 {
                let kernel = t.kernel.as_str();
                let samples = m.speeds.entry(kernel).or_insert_with(|| Samples {
                    recent: VecDeque::with_capacity(SAMPLES),
                    median: 0.0,
                });
                if samples.recent.len() == SAMPLES {
                    samples.recent.pop_front();
                }
                samples.recent.push_back(work / s);
                samples.median = median(samples.recent.iter().copied()).unwrap_or(0.0);
                self.typical.get_mut().remove(kernel);
            }
        }
    }

    /// Forgets a worker that left (a new one under its id starts afresh).
    pub fn forget(&mut self, worker: &WorkerId) {
        if self.workers.remove(worker).is_some_and(|m| !m.speeds.is_empty()) {
            self.typical.get_mut().clear();
        }
    }
}

/// When the first of `slots` (their free times) is free.
pub fn first_free(slots: &[f64]) -> f64 {
    slots.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Lays a task of `seconds` on the slot free first; answers when it
/// starts there.
pub fn lay(slots: &mut [f64], seconds: f64) -> f64 {
    let Some(first) = slots.iter_mut().min_by(|a, b| a.total_cmp(b)) else {
        return 0.0;
    };
    let start = *first;
    *first += seconds;
    start
}

/// The order to place a batch in, largest first: within each run of equal
/// priority (the batch comes best priority first), by `seconds`
/// descending, stable; never across priorities. Answers indexes into
/// `tasks` (priority, predicted seconds).
pub fn largest_first<P: PartialEq>(tasks: &[(P, f64)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..tasks.len()).collect();
    let mut start = 0;
    while start < tasks.len() {
        let end = (start..tasks.len())
            .find(|&i| tasks[i].0 != tasks[start].0)
            .unwrap_or(tasks.len());
        order[start..end].sort_by(|&a, &b| tasks[b].1.total_cmp(&tasks[a].1));
        start = end;
    }
    order
}

#[cfg(test)]
#[path = "expected_tests.rs"]
mod tests;
