//! The orchestrator's Prometheus metrics, served by `GET
//! /metrics/prometheus` (`api::prometheus`).
//!
//! # Counted where it happens
//! Counters and histograms are [`OrchestratorMetrics`] fields bumped by a
//! one-line call where the event already happens: TaskQueue's outcome
//! handling (tasks ended, retries, refusals, late results, execution
//! time), its dispatch (queue wait), its batch commits (tasks ingested),
//! the FileWatcher (files ingested or rejected) and each WorkerProxy
//! (heartbeat failures). One `Arc` is shared by all of them: atomics and,
//! for labelled families, a hash lookup under a read lock. Labels are
//! `&'static str` (kernel names, outcomes), so counting a task allocates
//! nothing.
//!
//! # Read at scrape time
//! Gauges are never kept up to date by hooks: the scrape reads the task
//! counts the database already keeps by status and priority (one small
//! table, no scan of the tasks) and the `WorkerBoard` rows, and writes
//! them into a registry made for that one answer ([`ClusterView`]).
//! A worker removed from the cluster therefore leaves no stale series.
//!
//! # Passes done
//! A few counters count the passes of the periodic jobs (drop-folder
//! scans, results-flush ticks, dispatch sweeps, worker health checks,
//! attempt reports handled), each bumped when its pass is over. They say
//! that a job has had its chance: a test that must see that something
//! did *not* happen waits for two more passes instead of a fixed sleep.

use std::collections::BTreeMap;
use std::fmt;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::model::{Priority, TaskStatus, WorkerId};
use crate::orchestrator::board::{WorkerInfo, WorkerState};
use crate::util::prometheus::{
    duration_histogram, encode, KernelLabel, OutcomeLabels, StateLabel, StatusLabels, WorkerLabel,
};

type Histograms = Family<KernelLabel, Histogram, fn() -> Histogram>;

/// The kernel label of a task whose kernel is not known where it ended: a
/// cancelled task that waited in the database, beyond the tasks the queue
/// keeps in memory.
pub const UNKNOWN_KERNEL: &str = "unknown";

/// Every worker state, so that `orquesta_workers{state}` has a series for
/// each, zeros included.
const WORKER_STATES: [WorkerState; 5] = [
    WorkerState::Unknown,
    WorkerState::Up,
    WorkerState::Down,
    WorkerState::Draining,
    WorkerState::Drained,
];

/// The orchestrator's counters and histograms since it started.
#[derive(Debug)]
pub struct OrchestratorMetrics {
    registry: Registry,
    tasks_ended: Family<OutcomeLabels, Counter>,
    retries: Counter,
    refusals: Counter,
    late_results: Counter,
    files_ingested: Counter,
    files_rejected: Counter,
    tasks_ingested: Counter,
    tasks_reused: Counter,
    heartbeat_failures: Family<WorkerLabel, Counter>,
    worker_checks: Family<WorkerLabel, Counter>,
    drop_folder_scans: Counter,
    task_files_incomplete: Counter,
    results_flush_ticks: Counter,
    dispatch_sweeps: Counter,
    attempt_reports: Counter,
    queue_wait: Histograms,
    execution: Histograms,
}

impl Default for OrchestratorMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl OrchestratorMetrics {
    pub fn new() -> Self {
        let m = Self {
            registry: Registry::default(),
            tasks_ended: Family::default(),
            retries: Counter::default(),
            refusals: Counter::default(),
            late_results: Counter::default(),
            files_ingested: Counter::default(),
            files_rejected: Counter::default(),
            tasks_ingested: Counter::default(),
            tasks_reused: Counter::default(),
            heartbeat_failures: Family::default(),
            worker_checks: Family::default(),
            drop_folder_scans: Counter::default(),
            task_files_incomplete: Counter::default(),
            results_flush_ticks: Counter::default(),
            dispatch_sweeps: Counter::default(),
            attempt_reports: Counter::default(),
            queue_wait: Family::new_with_constructor(duration_histogram),
            execution: Family::new_with_constructor(duration_histogram),
        };
        let mut r = Registry::default();
        // registered names carry no `_total`: the encoder adds it to counters
        r.register(
            "orquesta_tasks_ended",
            "Tasks that ended, by outcome (completed, failed after its retries, cancelled) and kernel",
            m.tasks_ended.clone(),
        );
        r.register(
            "orquesta_task_retries",
            "Failed or lost attempts that were queued again for another attempt",
            m.retries.clone(),
        );
        r.register(
            "orquesta_refusals",
            "Attempts that never started: refused by the worker (429, 503, no connection) or handed back from its backlog",
            m.refusals.clone(),
        );
        r.register(
            "orquesta_late_results",
            "Results that arrived for a task that had already ended: acknowledged and ignored",
            m.late_results.clone(),
        );
        r.register(
            "orquesta_files_ingested",
            "Task files taken from the drop folder and queued",
            m.files_ingested.clone(),
        );
        r.register(
            "orquesta_files_rejected",
            "Task files moved to rejected/ with a report",
            m.files_rejected.clone(),
        );
        r.register(
            "orquesta_tasks_ingested",
            "Tasks accepted (from dropped files and POST /tasks), counted at their commit",
            m.tasks_ingested.clone(),
        );
        r.register(
            "orquesta_tasks_reused",
            "Tasks answered at their commit from the stored result of an equal completed task (nothing ran)",
            m.tasks_reused.clone(),
        );
        r.register(
            "orquesta_heartbeat_failures",
            "Heartbeats (GET /health) a worker did not answer with 200 or 503",
            m.heartbeat_failures.clone(),
        );
        // the passes of the periodic jobs (see "Passes done" above)
        r.register(
            "orquesta_worker_checks",
            "Health checks of a worker that ended: GET /health answered or failed, and for a worker not yet up the GET /status it led to",
            m.worker_checks.clone(),
        );
        r.register(
            "orquesta_drop_folder_scans",
            "Full scans of the drop folder (task_queues/) done, at start and every RESCAN_INTERVAL",
            m.drop_folder_scans.clone(),
        );
        r.register(
            "orquesta_task_files_incomplete",
            "Reads that found a task file incomplete (a copy under way): read again when it grows, rejected as truncated if it never does",
            m.task_files_incomplete.clone(),
        );
        r.register(
            "orquesta_results_flush_ticks",
            "RESULTS_FLUSH_INTERVAL ticks that found every result and failure record received before them written to results/",
            m.results_flush_ticks.clone(),
        );
        r.register(
            "orquesta_dispatch_sweeps",
            "TASK_DISTRIBUTION_INTERVAL sweeps done: ended backoffs put back in line and a dispatch tried",
            m.dispatch_sweeps.clone(),
        );
        r.register(
            "orquesta_attempt_reports",
            "Reports of how an attempt ended (a result, a failure, a loss, a refusal) handled by the task queue, late and stray ones included",
            m.attempt_reports.clone(),
        );
        r.register(
            "orquesta_task_queue_wait_seconds",
            "From a task's creation to the start of each of its attempts on a worker, by kernel",
            m.queue_wait.clone(),
        );
        r.register(
            "orquesta_task_execution_seconds",
            "Execution time of completed tasks as their worker measured it, by kernel",
            m.execution.clone(),
        );
        Self { registry: r, ..m }
    }

    /// A task completed after running `seconds` on its worker.
    pub fn completed(&self, kernel: &'static str, seconds: f64) {
        self.ended(TaskStatus::Completed, kernel);
        self.execution
            .get_or_create(&KernelLabel { kernel })
            .observe(seconds);
    }

    /// A task failed for good (no retry left).
    pub fn failed(&self, kernel: &'static str) {
        self.ended(TaskStatus::Failed, kernel);
    }

    /// A task was cancelled; its kernel is `None` when it waited in the
    /// database only (counted as [`UNKNOWN_KERNEL`]).
    pub fn cancelled(&self, kernel: Option<&'static str>) {
        self.ended(TaskStatus::Cancelled, kernel.unwrap_or(UNKNOWN_KERNEL));
    }

    fn ended(&self, outcome: TaskStatus, kernel: &'static str) {
        let labels = OutcomeLabels {
            outcome: outcome.as_str(),
            kernel,
        };
        self.tasks_ended.get_or_create(&labels).inc();
    }

    /// A failed or lost attempt will be tried again.
    pub fn retried(&self) {
        self.retries.inc();
    }

    /// An attempt never started: its worker refused it or handed it back.
    pub fn refused(&self) {
        self.refusals.inc();
    }

    /// A result came for a task that had ended.
    pub fn late_result(&self) {
        self.late_results.inc();
    }

    /// A dropped file was queued.
    pub fn file_ingested(&self) {
        self.files_ingested.inc();
    }

    /// A dropped file was rejected.
    pub fn file_rejected(&self) {
        self.files_rejected.inc();
    }

    /// `count` tasks were committed to the queue.
    pub fn tasks_ingested(&self, count: usize) {
        self.tasks_ingested.inc_by(count as u64);
    }

    /// `count` tasks were answered from stored results at their commit.
    pub fn tasks_reused(&self, count: usize) {
        self.tasks_reused.inc_by(count as u64);
    }

    /// A heartbeat to `worker` failed.
    pub fn heartbeat_failed(&self, worker: &WorkerId) {
        let labels = WorkerLabel {
            worker: worker.to_string(),
        };
        self.heartbeat_failures.get_or_create(&labels).inc();
    }

    /// A health check of `worker` ended (see [`Self::new`]'s help texts
    /// for what each of these pass counters means).
    pub fn worker_checked(&self, worker: &WorkerId) {
        let labels = WorkerLabel {
            worker: worker.to_string(),
        };
        self.worker_checks.get_or_create(&labels).inc();
    }

    /// `worker` left the cluster (removed, expired): its series go too,
    /// so the number of series follows the workers there are, not every
    /// worker there ever was.
    pub fn forget_worker(&self, worker: &WorkerId) {
        let labels = WorkerLabel {
            worker: worker.to_string(),
        };
        self.heartbeat_failures.remove(&labels);
        self.worker_checks.remove(&labels);
    }

    /// A full scan of the drop folder ended.
    pub fn drop_folder_scanned(&self) {
        self.drop_folder_scans.inc();
    }

    /// A task file was read and found incomplete; it waits for more bytes.
    pub fn task_file_incomplete(&self) {
        self.task_files_incomplete.inc();
    }

    /// A results-flush tick found everything received already written.
    pub fn results_flush_tick(&self) {
        self.results_flush_ticks.inc();
    }

    /// A dispatch sweep ended.
    pub fn dispatch_swept(&self) {
        self.dispatch_sweeps.inc();
    }

    /// The task queue handled a report of how an attempt ended.
    pub fn attempt_reported(&self) {
        self.attempt_reports.inc();
    }

    /// An attempt of a `kernel` task started, `seconds` after the task was created.
    pub fn queue_wait(&self, kernel: &'static str, seconds: f64) {
        self.queue_wait
            .get_or_create(&KernelLabel { kernel })
            .observe(seconds);
    }

    /// The whole exposition: the counters and histograms, then the gauges
    /// of `view`.
    pub fn render(&self, view: &ClusterView<'_>) -> Result<String, fmt::Error> {
        let mut text = encode(&[&self.registry, &view.gauges()])?;
        view.per_worker(&mut text)?;
        Ok(text)
    }
}

/// What the gauges show, read at scrape time.
pub struct ClusterView<'a> {
    /// `(priority, status, tasks)` from the counts the database keeps.
    pub tasks: &'a [(Priority, TaskStatus, u64)],
    /// The `WorkerBoard` rows.
    pub workers: &'a [WorkerInfo],
}

impl ClusterView<'_> {
    /// A registry of this scrape's gauges: every status × priority and
    /// every worker state (zeros included, so series do not come and go),
    /// and each worker's load.
    fn gauges(&self) -> Registry {
        let mut r = Registry::default();
        let tasks = Family::<StatusLabels, Gauge>::default();
        for p in Priority::ALL {
            for s in TaskStatus::ALL {
                let n: u64 = self
                    .tasks
                    .iter()
                    .filter(|(tp, ts, _)| *tp == p && *ts == s)
                    .map(|(_, _, n)| n)
                    .sum();
                let labels = StatusLabels {
                    status: s.as_str(),
                    priority: p.as_str(),
                };
                tasks.get_or_create(&labels).set(gauge_value(n as usize));
            }
        }
        r.register(
            "orquesta_tasks",
            "Tasks stored, by status and priority (queued includes tasks backing off or sent ahead)",
            tasks,
        );

        let mut by_state: BTreeMap<&'static str, usize> =
            WORKER_STATES.iter().map(|s| (s.as_str(), 0)).collect();
        for w in self.workers {
            *by_state.entry(w.state.as_str()).or_default() += 1;
        }
        let workers = Family::<StateLabel, Gauge>::default();
        for (state, n) in by_state {
            workers.get_or_create(&StateLabel { state }).set(gauge_value(n));
        }
        r.register("orquesta_workers", "Workers by state", workers);

        r
    }

    /// Each worker's load, four gauges a worker, written straight as
    /// text: at thousands of workers a registry of labelled families
    /// (a map entry and a label string per series) would cost most of the
    /// scrape.
    fn per_worker(&self, out: &mut String) -> fmt::Result {
        use std::fmt::Write;
        type Field = fn(&WorkerInfo) -> usize;
        let per_worker: [(&str, &str, Field); 4] = [
            (
                "orquesta_worker_in_flight",
                "Attempts sent to the worker and not ended (running plus backlog)",
                |w| w.in_flight,
            ),
            (
                "orquesta_worker_running",
                "Tasks the worker runs now (at most its capacity)",
                |w| w.running,
            ),
            (
                "orquesta_worker_backlog",
                "Tasks sent ahead to the worker, waiting there for a slot",
                |w| w.backlog,
            ),
            (
                "orquesta_worker_capacity",
                "Task slots of the worker in use by this orchestrator",
                |w| w.capacity,
            ),
        ];
        let labels: Vec<String> = self.workers.iter().map(|w| label_value(&w.id)).collect();
        for (name, help, field) in per_worker {
            writeln!(out, "# HELP {name} {help}.")?;
            writeln!(out, "# TYPE {name} gauge")?;
            for (w, label) in self.workers.iter().zip(&labels) {
                writeln!(out, "{name}{{worker=\"{label}\"}} {}", gauge_value(field(w)))?;
            }
        }
        Ok(())
    }
}

/// A label value escaped as the text format wants (backslash, quote,
/// line feed).
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::prometheus::{naming_problems, sample_value as sample};

    fn empty_view() -> ClusterView<'static> {
        ClusterView {
            tasks: &[],
            workers: &[],
        }
    }

    #[test]
    fn every_name_follows_the_conventions() {
        let m = OrchestratorMetrics::new();
        m.completed("reference", 0.5);
        m.heartbeat_failed(&WorkerId::new("w1"));
        m.worker_checked(&WorkerId::new("w1"));
        m.queue_wait("reference", 0.5);
        let tasks = [(Priority::High, TaskStatus::Queued, 3)];
        let text = m
            .render(&ClusterView {
                tasks: &tasks,
                workers: &[],
            })
            .unwrap();
        assert_eq!(naming_problems(&text), Vec::<String>::new(), "{text}");
        for family in [
            "orquesta_tasks_ended_total",
            "orquesta_task_retries_total",
            "orquesta_refusals_total",
            "orquesta_late_results_total",
            "orquesta_files_ingested_total",
            "orquesta_files_rejected_total",
            "orquesta_tasks_ingested_total",
            "orquesta_heartbeat_failures_total",
            "orquesta_worker_checks_total",
            "orquesta_drop_folder_scans_total",
            "orquesta_task_files_incomplete_total",
            "orquesta_results_flush_ticks_total",
            "orquesta_dispatch_sweeps_total",
            "orquesta_attempt_reports_total",
            "orquesta_task_queue_wait_seconds",
            "orquesta_task_execution_seconds",
            "orquesta_tasks",
            "orquesta_workers",
        ] {
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{family} missing:\n{text}"
            );
        }
    }

    #[test]
    fn hooks_count_what_happened() {
        let m = OrchestratorMetrics::new();
        m.completed("optimized", 0.0002);
        m.completed("optimized", 7200.0);
        m.completed("optimized", 1.0);
        m.failed("reference");
        m.cancelled(None);
        m.cancelled(Some("reference"));
        m.retried();
        m.retried();
        m.refused();
        m.late_result();
        m.file_ingested();
        m.file_rejected();
        m.tasks_ingested(7);
        m.heartbeat_failed(&WorkerId::new("w2"));
        m.worker_checked(&WorkerId::new("w2"));
        m.worker_checked(&WorkerId::new("w2"));
        m.drop_folder_scanned();
        m.task_file_incomplete();
        m.results_flush_tick();
        m.dispatch_swept();
        m.dispatch_swept();
        m.attempt_reported();
        m.queue_wait("optimized", 0.03);
        let text = m.render(&empty_view()).unwrap();
        let v = |s: &str| sample(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
        assert_eq!(
            v(r#"orquesta_tasks_ended_total{outcome="completed",kernel="optimized"}"#),
            3.0
        );
        assert_eq!(
            v(r#"orquesta_tasks_ended_total{outcome="failed",kernel="reference"}"#),
            1.0
        );
        assert_eq!(
            v(r#"orquesta_tasks_ended_total{outcome="cancelled",kernel="unknown"}"#),
            1.0
        );
        assert_eq!(
            v(r#"orquesta_tasks_ended_total{outcome="cancelled",kernel="reference"}"#),
            1.0
        );
        assert_eq!(v("orquesta_task_retries_total"), 2.0);
        assert_eq!(v("orquesta_refusals_total"), 1.0);
        assert_eq!(v("orquesta_late_results_total"), 1.0);
        assert_eq!(v("orquesta_files_ingested_total"), 1.0);
        assert_eq!(v("orquesta_files_rejected_total"), 1.0);
        assert_eq!(v("orquesta_tasks_ingested_total"), 7.0);
        assert_eq!(v(r#"orquesta_heartbeat_failures_total{worker="w2"}"#), 1.0);
        assert_eq!(v(r#"orquesta_worker_checks_total{worker="w2"}"#), 2.0);
        assert_eq!(v("orquesta_drop_folder_scans_total"), 1.0);
        assert_eq!(v("orquesta_task_files_incomplete_total"), 1.0);
        assert_eq!(v("orquesta_results_flush_ticks_total"), 1.0);
        assert_eq!(v("orquesta_dispatch_sweeps_total"), 2.0);
        assert_eq!(v("orquesta_attempt_reports_total"), 1.0);
        assert_eq!(
            v(r#"orquesta_task_execution_seconds_count{kernel="optimized"}"#),
            3.0
        );
        assert_eq!(
            v(r#"orquesta_task_execution_seconds_bucket{kernel="optimized",le="0.00025"}"#),
            1.0
        );
        assert_eq!(
            v(r#"orquesta_task_execution_seconds_bucket{kernel="optimized",le="3600"}"#),
            2.0
        );
        assert_eq!(
            v(r#"orquesta_task_execution_seconds_bucket{kernel="optimized",le="10800"}"#),
            3.0
        );
        assert_eq!(
            v(r#"orquesta_task_queue_wait_seconds_sum{kernel="optimized"}"#),
            0.03
        );
    }

    #[test]
    fn gauges_show_the_view_with_zeros_for_what_is_absent() {
        let m = OrchestratorMetrics::new();
        let tasks = [
            (Priority::High, TaskStatus::Queued, 4),
            (Priority::Low, TaskStatus::Completed, 9),
        ];
        let text = m
            .render(&ClusterView {
                tasks: &tasks,
                workers: &[],
            })
            .unwrap();
        let v = |s: &str| sample(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
        assert_eq!(v(r#"orquesta_tasks{status="queued",priority="high"}"#), 4.0);
        assert_eq!(v(r#"orquesta_tasks{status="completed",priority="low"}"#), 9.0);
        assert_eq!(v(r#"orquesta_tasks{status="running",priority="medium"}"#), 0.0);
        assert_eq!(text.matches("orquesta_tasks{").count(), 15, "{text}");
        assert_eq!(v(r#"orquesta_workers{state="up"}"#), 0.0);
        assert_eq!(text.matches("orquesta_workers{").count(), 5, "{text}");
    }

    #[test]
    fn worker_gauges_are_the_board_rows() {
        use crate::orchestrator::config::{Balancing, WorkerEntry};
        use crate::orchestrator::membership::Membership;
        let entry = |id: &str, port| WorkerEntry {
            id: id.into(),
            host: "127.0.0.1".into(),
            port,
            capacity: 4,
            algorithms: vec!["python".into()],
            tls: false,
        };
        let mut rows = Membership::new(&[entry("a", 1), entry("b", 2)], Balancing::RoundRobin)
            .board()
            .list();
        rows[0].state = WorkerState::Up;
        (rows[0].running, rows[0].backlog, rows[0].in_flight) = (3, 2, 5);
        rows[1].state = WorkerState::Draining;
        rows[1].capacity = 1;
        let m = OrchestratorMetrics::new();
        let text = m
            .render(&ClusterView {
                tasks: &[],
                workers: &rows,
            })
            .unwrap();
        let v = |s: &str| sample(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
        assert_eq!(v(r#"orquesta_workers{state="up"}"#), 1.0);
        assert_eq!(v(r#"orquesta_workers{state="draining"}"#), 1.0);
        assert_eq!(v(r#"orquesta_workers{state="down"}"#), 0.0);
        assert_eq!(v(r#"orquesta_worker_running{worker="a"}"#), 3.0);
        assert_eq!(v(r#"orquesta_worker_backlog{worker="a"}"#), 2.0);
        assert_eq!(v(r#"orquesta_worker_in_flight{worker="a"}"#), 5.0);
        assert_eq!(v(r#"orquesta_worker_capacity{worker="a"}"#), 4.0);
        assert_eq!(v(r#"orquesta_worker_capacity{worker="b"}"#), 1.0);
        assert_eq!(v(r#"orquesta_worker_running{worker="b"}"#), 0.0);
        // a worker that left leaves no series behind
        let text = m
            .render(&ClusterView {
                tasks: &[],
                workers: &rows[1..],
            })
            .unwrap();
        assert!(!text.contains(r#"worker="a""#), "{text}");
    }

    #[test]
    fn a_label_value_is_escaped_as_the_text_format_wants() {
        assert_eq!(label_value("node-07"), "node-07");
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
