//! A worker node's Prometheus metrics, served by its `GET
//! /metrics/prometheus` (`worker::api::prometheus`); its `GET /metrics`
//! stays the seed's JSON.
//!
//! Every series carries `worker="<id>"` (the id is not secret; it is in
//! every result), so a worker's counters line up with the orchestrator's
//! `{worker}` series. The Executor counts each finished run with one call
//! ([`WorkerNodeMetrics::finished`]); the load gauges are read from the
//! Executor's status at scrape time. Their names differ from the
//! orchestrator's per-worker gauges (`orquesta_worker_running{worker}`…)
//! so that a sum over every target never adds the two views together.

use std::borrow::Cow;
use std::fmt;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::model::{RunStatus, WorkerId};
use crate::protocol::StatusAnswer;
use crate::util::prometheus::{duration_histogram, encode, KernelLabel, OutcomeLabels};

/// A worker's counters and histogram since it started.
#[derive(Debug)]
pub struct WorkerNodeMetrics {
    worker_id: WorkerId,
    registry: Registry,
    tasks: Family<OutcomeLabels, Counter>,
    execution: Family<KernelLabel, Histogram, fn() -> Histogram>,
}

impl WorkerNodeMetrics {
    pub fn new(worker_id: &str) -> Self {
        let tasks = Family::<OutcomeLabels, Counter>::default();
        let execution: Family<KernelLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        let mut registry = labelled(worker_id);
        registry.register(
            "orquesta_worker_tasks",
            "Runs this worker finished, by outcome (completed, failed, cancelled) and kernel",
            tasks.clone(),
        );
        registry.register(
            "orquesta_worker_task_execution_seconds",
            "Execution time of the runs this worker completed, by kernel",
            execution.clone(),
        );
        Self {
            worker_id: WorkerId::new(worker_id),
            registry,
            tasks,
            execution,
        }
    }

    /// A run of a `kernel` task ended with `status` after `seconds`.
    pub fn finished(&self, status: RunStatus, kernel: &'static str, seconds: f64) {
        let labels = OutcomeLabels {
            outcome: status.as_str(),
            kernel,
        };
        self.tasks.get_or_create(&labels).inc();
        if status == RunStatus::Completed {
            self.execution
                .get_or_create(&KernelLabel { kernel })
                .observe(seconds);
        }
    }

    /// The whole exposition: the counters, the histogram, then the load
    /// gauges from `status` (the Executor's, read for this scrape).
    pub fn render(&self, status: &StatusAnswer) -> Result<String, fmt::Error> {
        let mut gauges = labelled(self.worker_id.as_str());
        let gauge = |n: usize| {
            let g = Gauge::<i64>::default();
            g.set(i64::try_from(n).unwrap_or(i64::MAX));
            g
        };
        gauges.register(
            "orquesta_worker_tasks_running",
            "Tasks running on this worker now",
            gauge(status.running),
        );
        gauges.register(
            "orquesta_worker_tasks_backlog",
            "Tasks sent ahead to this worker, waiting for a slot",
            gauge(status.backlog),
        );
        gauges.register(
            "orquesta_worker_slots",
            "Task slots of this worker (its capacity)",
            gauge(status.capacity),
        );
        gauges.register(
            "orquesta_worker_results_held",
            "Results held for the orchestrator to pick up and acknowledge",
            gauge(status.results_held),
        );
        encode(&[&self.registry, &gauges])
    }
}

/// A registry whose every series carries `worker="<id>"`.
fn labelled(worker_id: &str) -> Registry {
    Registry::with_labels(std::iter::once((
        Cow::Borrowed("worker"),
        Cow::Owned(worker_id.to_string()),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::NodeState;
    use crate::util::prometheus::{naming_problems, sample_value as sample};

    fn status() -> StatusAnswer {
        StatusAnswer {
            worker_id: "w1".into(),
            state: NodeState::Busy,
            capacity: 4,
            running: 3,
            backlog: 2,
            max_backlog: 512,
            algorithms: vec![],
            threads_per_task: 1,
            uptime_seconds: 1.0,
            version: "0".into(),
            tasks_completed: 0,
            tasks_failed: 0,
            tasks_cancelled: 0,
            results_held: 1,
        }
    }

    #[test]
    fn runs_are_counted_by_outcome_and_kernel_and_completed_ones_timed() {
        let m = WorkerNodeMetrics::new("w1");
        m.finished(RunStatus::Completed, "reference", 0.001);
        m.finished(RunStatus::Completed, "reference", 2.0);
        m.finished(RunStatus::Failed, "__panic", 0.0);
        m.finished(RunStatus::Cancelled, "optimized", 3.0);
        let text = m.render(&status()).unwrap();
        let v = |s: &str| sample(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
        assert_eq!(
            v(r#"orquesta_worker_tasks_total{worker="w1",outcome="completed",kernel="reference"}"#),
            2.0
        );
        assert_eq!(
            v(r#"orquesta_worker_tasks_total{worker="w1",outcome="failed",kernel="__panic"}"#),
            1.0
        );
        assert_eq!(
            v(r#"orquesta_worker_tasks_total{worker="w1",outcome="cancelled",kernel="optimized"}"#),
            1.0
        );
        assert_eq!(
            v(r#"orquesta_worker_task_execution_seconds_count{worker="w1",kernel="reference"}"#),
            2.0
        );
        assert_eq!(
            v(r#"orquesta_worker_task_execution_seconds_sum{worker="w1",kernel="reference"}"#),
            2.001
        );
        assert!(
            !text.contains(r#"execution_seconds_count{worker="w1",kernel="optimized"}"#),
            "{text}"
        );
        assert_eq!(v(r#"orquesta_worker_tasks_running{worker="w1"}"#), 3.0);
        assert_eq!(v(r#"orquesta_worker_tasks_backlog{worker="w1"}"#), 2.0);
        assert_eq!(v(r#"orquesta_worker_slots{worker="w1"}"#), 4.0);
        assert_eq!(v(r#"orquesta_worker_results_held{worker="w1"}"#), 1.0);
    }

    #[test]
    fn every_name_follows_the_conventions() {
        let m = WorkerNodeMetrics::new("w1");
        m.finished(RunStatus::Completed, "reference", 0.5);
        let text = m.render(&status()).unwrap();
        assert_eq!(naming_problems(&text), Vec::<String>::new(), "{text}");
    }
}
