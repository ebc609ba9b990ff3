//! The orchestrator at a glance: `GET /stats`, `GET /stats/performance`,
//! written by `orchestrator::api::stats` (the dashboard's snapshot shares
//! [`TaskCounts`]) and read by `orquesta status`. The TaskQueue's live
//! figures are its own views: type parameters, `Value`s to a client.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::model::{Priority, TaskStatus, WorkerId};

/// The kept tasks by status and priority.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskCounts {
    pub total: u64,
    /// Every status, zeros included.
    #[schema(value_type = BTreeMap<String, u64>)]
    pub by_status: BTreeMap<TaskStatus, u64>,
    /// priority → status → count, the counts that are not zero.
    #[schema(value_type = BTreeMap<String, BTreeMap<String, u64>>)]
    pub by_priority: BTreeMap<Priority, BTreeMap<TaskStatus, u64>>,
    /// Tasks answered at once from the stored result of an equal completed
    /// task (nothing ran; their result names it in `reused_from`), since
    /// the database was made; counted among `completed` too.
    #[serde(default)]
    pub reused: u64,
}

impl TaskCounts {
    /// From the store's counts: every status named, zeros included.
    pub fn new(by_status: &[(TaskStatus, u64)], by_priority: &[(Priority, TaskStatus, u64)]) -> Self {
        let mut counts = TaskCounts {
            by_status: TaskStatus::ALL.iter().map(|s| (*s, 0)).collect(),
            ..TaskCounts::default()
        };
        for (s, n) in by_status {
            counts.total += n;
            counts.by_status.insert(*s, *n);
        }
        for (p, s, n) in by_priority {
            counts.by_priority.entry(*p).or_default().insert(*s, *n);
        }
        counts
    }
}

/// The workers together.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkerSummary {
    pub total: usize,
    pub up: usize,
    /// The slots of the workers that are up.
    pub capacity_up: usize,
    /// Attempts sent and not ended, on every worker (running, plus those
    /// sent ahead and waiting on the worker for a slot).
    pub in_flight: usize,
    /// Tasks running now on the workers that are up.
    #[serde(default)]
    pub running: usize,
    /// The share of the up workers' slots that run a task now: running /
    /// capacity_up, from 0 to 1; 0 without capacity.
    pub utilisation: f64,
}

/// `GET /stats`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(bound = "")]
pub struct Stats<Queue = Value, SinceStart = Value, Throughput = Value> {
    pub tasks: TaskCounts,
    pub workers: WorkerSummary,
    /// What the TaskQueue holds now: ready by kernel and priority,
    /// backing off, running.
    #[schema(value_type = Object)]
    pub queue: Queue,
    /// Counts since this process started.
    #[schema(value_type = Object)]
    pub since_start: SinceStart,
    /// Tasks per second over 10 s, 60 s and since start.
    #[schema(value_type = Object)]
    pub throughput: Throughput,
    pub uptime_seconds: f64,
    pub load_balancing_algorithm: String,
    pub version: String,
}

/// `GET /stats/performance`: with `PERFORMANCE_MONITORING=false`, only
/// `performance_monitoring`, `note` and `throughput`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(bound = "")]
pub struct Performance<Throughput = Value, Summary = Value> {
    pub performance_monitoring: bool,
    /// Why the rest is missing, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[schema(value_type = Object)]
    pub throughput: Throughput,
    /// Per algorithm: count, mean, p50, p95, max.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BTreeMap<String, Object>>)]
    pub queue_wait_seconds: Option<BTreeMap<String, Summary>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BTreeMap<String, Object>>)]
    pub execution_time_seconds: Option<BTreeMap<String, Summary>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BTreeMap<String, Object>>)]
    pub execution_time_by_worker_seconds: Option<BTreeMap<String, Summary>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilisation: Option<WorkerSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<Vec<WorkerPerformance>>,
}

/// One worker in `GET /stats/performance`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkerPerformance {
    pub id: WorkerId,
    /// running / capacity.
    pub load: f64,
    pub in_flight: usize,
    pub capacity: usize,
    pub tasks_completed: u64,
    /// Seconds; null before its first task.
    pub mean_execution_time: Option<f64>,
}

/// `GET /activity/failures`: the last failed or lost attempts, newest
/// first, with their reasons (kept in memory since start).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(bound = "")]
pub struct RecentFailures<Failure = Value> {
    /// `{"at", "task_id", "worker_id", "kernel", "reason", …}` each.
    #[schema(value_type = Vec<Object>)]
    pub failures: Vec<Failure>,
    pub returned: usize,
}
