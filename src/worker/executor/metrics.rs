//! The worker's counters and its `/metrics` snapshot (the seed's JSON
//! shape): plain data the [`super::Executor`] feeds one finished task at a
//! time.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;

use crate::model::{RunStatus, WorkerId};
use crate::util::stats::percentile;

/// Execution times kept per algorithm for percentiles (the most recent).
const RECENT_TIMES: usize = 1024;

/// Per-algorithm execution times, for means and percentiles.
#[derive(Default)]
struct AlgorithmStats {
    count: u64,
    total_secs: f64,
    /// The most recent times (bounded), for percentiles.
    recent: VecDeque<f64>,
}

/// What the worker has done since it started.
#[derive(Default)]
pub struct Stats {
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub refused_full: u64,
    particle_steps: f64,
    stepping_secs: f64,
    busy_secs: f64,
    by_algorithm: HashMap<String, AlgorithmStats>,
}

/// One finished task, as the counters see it.
pub struct Finished<'a> {
    pub status: RunStatus,
    pub algorithm: &'a str,
    /// The result's `execution_time`.
    pub execution_time: f64,
    /// Wall time the slot was busy.
    pub elapsed: f64,
    pub particle_steps: f64,
    pub stepping_secs: f64,
}

impl Stats {
    pub fn record(&mut self, f: Finished<'_>) {
        match f.status {
            RunStatus::Completed => self.completed += 1,
            RunStatus::Cancelled => self.cancelled += 1,
            RunStatus::Failed => self.failed += 1,
        }
        self.particle_steps += f.particle_steps;
        self.stepping_secs += f.stepping_secs;
        self.busy_secs += f.elapsed;
        let alg = self.by_algorithm.entry(f.algorithm.to_string()).or_default();
        alg.count += 1;
        alg.total_secs += f.execution_time;
        alg.recent.push_back(f.execution_time);
        if alg.recent.len() > RECENT_TIMES {
            alg.recent.pop_front();
        }
    }

    /// The `/metrics` answer. `running_busy`: seconds the running tasks
    /// have taken so far.
    pub fn snapshot(&self, node: NodeFigures<'_>) -> WorkerMetrics {
        let busy = (self.busy_secs + node.running_busy) / (node.uptime * node.capacity as f64).max(1e-9);
        let (resident, peak) = crate::util::machine::memory();
        let per_algorithm = self
            .by_algorithm
            .iter()
            .map(|(name, a)| {
                let mut times: Vec<f64> = a.recent.iter().copied().collect();
                times.sort_by(f64::total_cmp);
                let m = AlgorithmMetrics {
                    tasks: a.count,
                    mean_seconds: a.total_secs / a.count.max(1) as f64,
                    p50_seconds: percentile(&times, 0.50),
                    p90_seconds: percentile(&times, 0.90),
                    p99_seconds: percentile(&times, 0.99),
                    max_seconds: times.last().copied().unwrap_or(0.0),
                };
                (name.clone(), m)
            })
            .collect();
        WorkerMetrics {
            worker_id: WorkerId::new(node.worker_id),
            tasks_completed: self.completed,
            tasks_failed: self.failed,
            tasks_cancelled: self.cancelled,
            tasks_running: node.running,
            refused_full: self.refused_full,
            per_algorithm,
            particle_steps_total: self.particle_steps,
            particle_steps_per_second: if self.stepping_secs > 0.0 {
                self.particle_steps / self.stepping_secs
            } else {
                0.0
            },
            busy_fraction: busy.min(1.0),
            uptime_seconds: node.uptime,
            memory: MemoryMetrics {
                resident_bytes: resident,
                peak_resident_bytes: peak,
            },
            results_held: node.results_held,
        }
    }
}

/// What the snapshot needs from the node beside the counters.
pub struct NodeFigures<'a> {
    pub worker_id: &'a str,
    pub running: usize,
    pub running_busy: f64,
    pub uptime: f64,
    pub capacity: usize,
    pub results_held: usize,
}

/// `GET /metrics` (field order is the JSON's).
#[derive(Debug, Clone, Serialize)]
pub struct WorkerMetrics {
    pub worker_id: WorkerId,
    pub tasks_completed: u64,
    pub tasks_failed: u64,
    pub tasks_cancelled: u64,
    pub tasks_running: usize,
    pub refused_full: u64,
    /// By algorithm name, sorted.
    pub per_algorithm: BTreeMap<String, AlgorithmMetrics>,
    pub particle_steps_total: f64,
    pub particle_steps_per_second: f64,
    pub busy_fraction: f64,
    pub uptime_seconds: f64,
    pub memory: MemoryMetrics,
    pub results_held: usize,
}

/// One algorithm's execution times in `/metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct AlgorithmMetrics {
    pub tasks: u64,
    pub mean_seconds: f64,
    pub p50_seconds: f64,
    pub p90_seconds: f64,
    pub p99_seconds: f64,
    pub max_seconds: f64,
}

/// The process's memory in `/metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryMetrics {
    pub resident_bytes: u64,
    pub peak_resident_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_status_and_times_by_algorithm() {
        let mut s = Stats::default();
        for (status, t) in [
            (RunStatus::Completed, 1.0),
            (RunStatus::Failed, 3.0),
            (RunStatus::Cancelled, 2.0),
        ] {
            s.record(Finished {
                status,
                algorithm: "python",
                execution_time: t,
                elapsed: t,
                particle_steps: 100.0,
                stepping_secs: 1.0,
            });
        }
        let m = s.snapshot(NodeFigures {
            worker_id: "w",
            running: 0,
            running_busy: 0.0,
            uptime: 12.0,
            capacity: 1,
            results_held: 3,
        });
        assert_eq!((m.tasks_completed, m.tasks_failed, m.tasks_cancelled), (1, 1, 1));
        assert_eq!(m.per_algorithm["python"].tasks, 3);
        assert_eq!(m.per_algorithm["python"].mean_seconds, 2.0);
        assert_eq!(m.particle_steps_per_second, 100.0);
        assert_eq!(m.busy_fraction, 0.5);
        let v = serde_json::to_value(&m).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(keys[..3], ["worker_id", "tasks_completed", "tasks_failed"]);
    }
}
