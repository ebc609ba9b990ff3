//! The snapshot the dashboard's stream sends on each tick: kept counts by
//! status and priority (`task_counts`, a few rows), the newest file
//! record's id (one index lookup), every worker's board
//! row with its execution times, the recent activity, and the running
//! tasks' progress, and the allocation queues with their jobs. Nothing
//! here reads a task: the cost is the same with a million stored as with
//! ten.

use std::collections::HashMap;

use serde::Serialize;

use crate::model::KernelName;
use crate::orchestrator::activity::{Activity, ActivityView, Times};
use crate::orchestrator::board::{BoardCounts, WorkerInfo, WorkerState};
use crate::orchestrator::progress_poller::RunningTask;
use crate::orchestrator::store::{Counts, ReadPool, StoreError};
use crate::protocol::allocations::Allocation;
use crate::protocol::stats::TaskCounts;
use crate::protocol::MemberSource;
use crate::util::time::parse_iso;

/// Everything one snapshot is made of.
pub struct Parts {
    /// Unix seconds (the page measures ages against it, not its own clock).
    pub now: f64,
    pub uptime_seconds: f64,
    pub counts: Counts,
    /// The newest file record's id ([`ReadPool::last_file_id`]).
    pub last_file_id: i64,
    /// The first [`super::WORKER_ROWS`] workers.
    pub workers: Vec<WorkerInfo>,
    /// Counts over every worker.
    pub worker_counts: BoardCounts,
    pub activity: ActivityView,
    pub running: Vec<RunningTask>,
    /// The allocation queues as `GET /allocations` shows them (their
    /// jobs with id, state, workers joined, age; the last error).
    pub allocations: Vec<Allocation>,
}

/// Reads the parts that come from this process: the kept counts (the
/// only database read) and the activity. Blocking (SQLite): called on a
/// blocking thread.
pub fn read_parts(
    read: &ReadPool,
    activity: &Activity,
    (workers, worker_counts): (Vec<WorkerInfo>, BoardCounts),
    running: Vec<RunningTask>,
    allocations: Vec<Allocation>,
    now: f64,
    uptime_seconds: f64,
) -> Result<Parts, StoreError> {
    Ok(Parts {
        now,
        uptime_seconds,
        counts: read.counts()?,
        last_file_id: read.last_file_id()?,
        workers,
        worker_counts,
        activity: activity.view(now),
        running,
        allocations,
    })
}

/// What the stream sends on each tick (built once per tick and shared by
/// every open stream; each stream puts its own `seq` in front:
/// [`with_seq`]).
#[derive(Debug, Serialize)]
pub struct Snapshot<'a> {
    /// Unix seconds.
    pub now: f64,
    pub uptime_seconds: f64,
    pub version: &'static str,
    pub tasks: TaskCounts,
    /// Changes when a file is taken or rejected: with the counts, what
    /// tells the page to read its Files and Studies lists again.
    pub last_file_id: i64,
    /// The first [`super::WORKER_ROWS`] workers in configuration order
    /// (`GET /workers?offset=` pages through the rest).
    pub workers: Vec<WorkerRow<'a>>,
    /// Every worker counted.
    pub worker_counts: WorkerCounts<'a>,
    pub activity: Series<'a>,
    pub running: &'a [RunningTask],
    pub allocations: &'a [Allocation],
}

/// Counts over every worker, beside the bounded list of rows.
#[derive(Debug, Serialize)]
pub struct WorkerCounts<'a> {
    pub total: usize,
    pub up: usize,
    pub joined: usize,
    pub by_state: &'a std::collections::BTreeMap<&'static str, usize>,
}

/// A snapshot's JSON (an object) with this stream's `seq` put first.
pub fn with_seq(json: &str, seq: u64) -> String {
    let rest = json.strip_prefix('{').unwrap_or(json);
    let sep = if rest.starts_with('}') { "" } else { "," };
    format!("{{\"seq\":{seq}{sep}{rest}")
}

/// What the stream sends instead when a snapshot cannot be made.
#[derive(Debug, Serialize)]
pub struct Unavailable {
    pub seq: u64,
    pub error: String,
}

/// The activity's recent bins and rates (its per-worker times go into
/// the worker rows instead).
#[derive(Debug, Serialize)]
pub struct Series<'a> {
    pub bin_seconds: usize,
    /// The unix second the last bin ends at (excluded).
    pub until: u64,
    pub completed: &'a [u32],
    pub failed: &'a [u32],
    pub particle_steps: &'a [u64],
    pub completed_per_second: f64,
    pub particle_steps_per_second: f64,
    pub bucket_bounds_seconds: &'static [f64],
    pub kernels: &'a [Times],
    /// Failures recorded since start: the page fetches the list again
    /// when this changes.
    pub failures_total: u64,
}

/// One worker's row: the board's, with its heartbeat age and its times.
#[derive(Debug, Serialize)]
pub struct WorkerRow<'a> {
    pub id: &'a str,
    pub source: MemberSource,
    pub address: &'a str,
    pub state: WorkerState,
    pub state_reason: Option<&'a str>,
    pub capacity: usize,
    pub configured_capacity: usize,
    pub running: usize,
    pub backlog: usize,
    pub in_flight: usize,
    pub heartbeat_age_seconds: Option<f64>,
    pub tasks_completed: u64,
    pub tasks_failed: u64,
    /// From this process's histogram, the board's mean else.
    pub mean_seconds: Option<f64>,
    pub p95_seconds: Option<f64>,
    pub kernels: &'a [KernelName],
}

/// The snapshot of `p`.
pub fn render(p: &Parts) -> Snapshot<'_> {
    let (by_status, by_priority) = &p.counts;
    let a = &p.activity;
    // each row finds its times by name: a map, not a scan per row
    let times: HashMap<&str, &Times> = a.workers.iter().map(|t| (t.name.as_str(), t)).collect();
    Snapshot {
        now: p.now,
        uptime_seconds: p.uptime_seconds,
        version: env!("CARGO_PKG_VERSION"),
        tasks: TaskCounts::new(by_status, by_priority),
        last_file_id: p.last_file_id,
        workers: p.workers.iter().map(|w| worker(w, &times, p.now)).collect(),
        worker_counts: WorkerCounts {
            total: p.worker_counts.total,
            up: p.worker_counts.up,
            joined: p.worker_counts.joined,
            by_state: &p.worker_counts.by_state,
        },
        activity: Series {
            bin_seconds: a.bin_seconds,
            until: a.until,
            completed: &a.completed,
            failed: &a.failed,
            particle_steps: &a.particle_steps,
            completed_per_second: a.completed_per_second,
            particle_steps_per_second: a.particle_steps_per_second,
            bucket_bounds_seconds: a.bucket_bounds_seconds,
            kernels: &a.kernels,
            failures_total: a.failures_total,
        },
        running: &p.running,
        allocations: &p.allocations,
    }
}

/// One worker's row: the board's, with its heartbeat age and its times
/// (mean and p95 from this process's histogram, the board's mean else).
fn worker<'a>(w: &'a WorkerInfo, times: &HashMap<&str, &Times>, now: f64) -> WorkerRow<'a> {
    let t = times.get(w.id.as_str());
    WorkerRow {
        id: &w.id,
        source: w.source,
        address: &w.address,
        state: w.state,
        state_reason: w.state_reason.as_deref(),
        capacity: w.capacity,
        configured_capacity: w.configured_capacity,
        running: w.running,
        backlog: w.backlog,
        in_flight: w.in_flight,
        heartbeat_age_seconds: w
            .last_heartbeat
            .as_deref()
            .and_then(parse_iso)
            .map(|at| (now - at).max(0.0)),
        tasks_completed: w.tasks_completed,
        tasks_failed: w.tasks_failed,
        mean_seconds: t.and_then(|t| t.mean_seconds).or(w.mean_execution_time),
        p95_seconds: t.and_then(|t| t.p95_seconds),
        kernels: &w.kernels,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::model::WorkerId;
    use crate::util::time::iso_at;

    fn json(v: impl Serialize) -> Value {
        serde_json::to_value(v).unwrap()
    }

    const NOW: f64 = 1_700_000_100.0;

    fn row(id: &str) -> WorkerInfo {
        WorkerInfo {
            id: id.into(),
            source: MemberSource::Joined,
            host: "127.0.0.1".into(),
            port: 5001,
            address: "127.0.0.1:5001".into(),
            tls: false,
            state: WorkerState::Draining,
            state_reason: None,
            up: true,
            capacity: 4,
            configured_capacity: 4,
            in_flight: 5,
            running: 4,
            backlog: 1,
            prefetch: 1,
            load: 1.0,
            algorithms: vec!["python".into()],
            kernels: vec!["reference".into()],
            last_heartbeat: Some(iso_at(NOW - 1.5)),
            tasks_completed: 7,
            tasks_failed: 1,
            mean_execution_time: Some(9.0),
            suspect: None,
        }
    }

    /// A database of `n` tasks whose `tasks` table is then renamed away:
    /// any read of a task fails, the kept counts still answer.
    fn store_without_task_reads(dir: &std::path::Path, n: u32) -> ReadPool {
        let path = dir.join("q.db");
        let conn = crate::orchestrator::store::open(&path, false).unwrap();
        conn.execute_batch(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
             INSERT INTO tasks(task_id, priority, algorithm, kernel, status, body, source, created_at) \
             SELECT printf('t%05d', i), i % 3, 'python', 'reference', 'queued', '{{}}', 'test', 0 FROM n; \
             ALTER TABLE tasks RENAME TO tasks_not_to_be_read;"
        ))
        .unwrap();
        drop(conn);
        ReadPool::new(&path)
    }

    #[test]
    fn a_snapshot_reads_no_task_only_the_kept_counts() {
        let dir = tempfile::tempdir().unwrap();
        let read = store_without_task_reads(dir.path(), 3000);
        assert!(
            read.tasks(&Default::default(), 1, 0).is_err(),
            "the trap is set: reading a task fails"
        );
        let activity = Activity::default();
        activity.completed(NOW - 2.0, "reference", &WorkerId::new("w1"), 0.3, Some((10, 20)));
        let parts = read_parts(
            &read,
            &activity,
            (vec![row("w1")], BoardCounts::default()),
            Vec::new(),
            Vec::new(),
            NOW,
            5.0,
        )
        .unwrap();
        let v: Value =
            serde_json::from_str(&with_seq(&serde_json::to_string(&render(&parts)).unwrap(), 3)).unwrap();
        assert_eq!(v["tasks"]["total"], 3000);
        assert_eq!(v["tasks"]["by_status"]["queued"], 3000);
        assert_eq!(v["tasks"]["by_status"]["running"], 0, "every status is named");
        assert_eq!(v["tasks"]["by_priority"]["high"]["queued"], 1000);
        assert_eq!(v["seq"], 3);
        assert_eq!(v["activity"]["completed"].as_array().unwrap().len(), 60);
        assert_eq!(
            v["allocations"],
            serde_json::json!([]),
            "no queue: an empty list, not a missing key"
        );
    }

    #[test]
    fn a_worker_row_carries_state_load_heartbeat_age_and_times() {
        let activity = Activity::default();
        let w1 = WorkerId::new("w1");
        for s in [0.1, 0.1, 0.1, 0.1, 4.0] {
            activity.completed(NOW - 1.0, "reference", &w1, s, None);
        }
        let view = activity.view(NOW);
        let times: HashMap<&str, &Times> = view.workers.iter().map(|t| (t.name.as_str(), t)).collect();
        let v = json(worker(&row("w1"), &times, NOW));
        assert_eq!(v["state"], "draining");
        assert_eq!(v["source"], "joined");
        assert_eq!(
            (
                v["running"].as_u64(),
                v["backlog"].as_u64(),
                v["capacity"].as_u64()
            ),
            (Some(4), Some(1), Some(4))
        );
        let age = v["heartbeat_age_seconds"].as_f64().unwrap();
        assert!((age - 1.5).abs() < 0.01, "{age}");
        let mean = v["mean_seconds"].as_f64().unwrap();
        assert!(
            (mean - 0.88).abs() < 1e-9,
            "from the histogram, not the board: {mean}"
        );
        assert!(v["p95_seconds"].as_f64().unwrap() > 2.0);
        // a worker with no result yet: the board's mean, no p95
        let v = json(worker(&row("w2"), &times, NOW));
        assert_eq!(v["mean_seconds"], 9.0);
        assert!(v["p95_seconds"].is_null());
    }
}
