//! The figures of the summaries `up` and `run` print at the end: tasks by
//! worker (counted as tasks, not attempts) and `up`'s session summary.

use std::fmt;

use super::plural;
use super::progress::Tally;
use crate::model::TaskStatus;
use crate::orchestrator::store::{ReadPool, StoreError, TaskFilter};

/// One row of the per-worker table.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerTasks {
    pub worker: String,
    /// Tasks whose result came from this worker.
    pub completed: u64,
    /// Tasks that ended `failed` with their last attempt on this worker
    /// (a task retried elsewhere first counts once, where it failed for
    /// good; its earlier attempts are in the log).
    pub failed: u64,
}

/// Tasks completed and failed on each of `workers`, all time. Two counts
/// on the `worker_id` index per worker: for the end of a run, not a loop.
pub fn tasks_by_worker(read: &ReadPool, workers: &[String]) -> Result<Vec<WorkerTasks>, StoreError> {
    let count = |worker: &str, status: TaskStatus| -> Result<u64, StoreError> {
        let filter = TaskFilter {
            status: Some(status),
            worker: Some(worker.to_string()),
            ..TaskFilter::default()
        };
        Ok(read.tasks(&filter, 0, 0)?.1)
    };
    workers
        .iter()
        .map(|w| {
            Ok(WorkerTasks {
                worker: w.clone(),
                completed: count(w, TaskStatus::Completed)?,
                failed: count(w, TaskStatus::Failed)?,
            })
        })
        .collect()
}

/// `rows` minus what each worker had at `before` (a session's share).
pub fn since(rows: &[WorkerTasks], before: &[WorkerTasks]) -> Vec<WorkerTasks> {
    rows.iter()
        .map(|r| {
            let b = before.iter().find(|b| b.worker == r.worker);
            WorkerTasks {
                worker: r.worker.clone(),
                completed: r.completed.saturating_sub(b.map_or(0, |b| b.completed)),
                failed: r.failed.saturating_sub(b.map_or(0, |b| b.failed)),
            }
        })
        .collect()
}

/// The per-worker table.
pub fn worker_table(f: &mut fmt::Formatter<'_>, rows: &[WorkerTasks]) -> fmt::Result {
    writeln!(f, "{:<14} {:>10} {:>10}", "worker", "completed", "failed")?;
    for r in rows {
        writeln!(f, "{:<14} {:>10} {:>10}", r.worker, r.completed, r.failed)?;
    }
    Ok(())
}

/// What `orquesta up` prints when it stops: the tasks that ended while
/// it ran, by outcome, the time, the results files it wrote, and the
/// share of each worker.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSummary {
    /// What ended during the session; `live`: left queued or running.
    pub ended: Tally,
    pub wall_seconds: f64,
    pub results_files: Vec<String>,
    pub per_worker: Vec<WorkerTasks>,
}

impl fmt::Display for SessionSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.ended;
        writeln!(f)?;
        writeln!(
            f,
            "summary: {} task{} ended: {} completed, {} failed, {} cancelled",
            e.ended(),
            plural(e.ended()),
            e.completed,
            e.failed,
            e.cancelled
        )?;
        if e.live > 0 {
            writeln!(
                f,
                "  {} task{} still queued or running: kept in the database, resumed at the next start",
                e.live,
                plural(e.live)
            )?;
        }
        let rate = if self.wall_seconds > 0.0 {
            e.ended() as f64 / self.wall_seconds
        } else {
            0.0
        };
        writeln!(
            f,
            "  wall time {:.1} s, throughput {rate:.1} tasks/s",
            self.wall_seconds
        )?;
        if self.results_files.is_empty() {
            writeln!(f, "  no results file written")?;
        } else {
            writeln!(f, "  results files written:")?;
            for r in &self.results_files {
                writeln!(f, "    {r}")?;
            }
        }
        writeln!(f)?;
        worker_table(f, &self.per_worker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(w: &str, completed: u64, failed: u64) -> WorkerTasks {
        WorkerTasks {
            worker: w.into(),
            completed,
            failed,
        }
    }

    #[test]
    fn a_session_counts_only_what_it_saw() {
        let now = [row("w1", 10, 2), row("w2", 4, 0)];
        let before = [row("w1", 7, 1)];
        assert_eq!(since(&now, &before), vec![row("w1", 3, 1), row("w2", 4, 0)]);
    }

    #[test]
    fn the_session_summary_says_outcomes_time_files_and_workers() {
        let s = SessionSummary {
            ended: Tally {
                completed: 9,
                failed: 1,
                cancelled: 0,
                live: 2,
            },
            wall_seconds: 5.0,
            results_files: vec!["results/task_results_1.json".into()],
            per_worker: vec![row("w1", 9, 1)],
        };
        let text = s.to_string();
        assert!(
            text.contains("summary: 10 tasks ended: 9 completed, 1 failed, 0 cancelled"),
            "{text}"
        );
        assert!(text.contains("2 tasks still queued or running"), "{text}");
        assert!(text.contains("throughput 2.0 tasks/s"), "{text}");
        assert!(text.contains("    results/task_results_1.json"), "{text}");
        assert!(text.contains("w1                      9          1"), "{text}");
    }
}
