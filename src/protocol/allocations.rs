//! `/allocations`: allocation queues (workers from a cluster manager),
//! their bodies and answers, shared by `orchestrator::api::allocations`,
//! the allocator that keeps them, and `orquesta alloc`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::WorkerId;

/// How a queue asks its cluster manager for jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AllocationKind {
    /// `sbatch`, `squeue`, `scancel` (extra arguments go to `sbatch`).
    Slurm,
    /// The user's own submit, status and cancel commands.
    Command,
}

impl AllocationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AllocationKind::Slurm => "slurm",
            AllocationKind::Command => "command",
        }
    }
}

fn one() -> u32 {
    1
}
fn hour() -> String {
    "1h".into()
}
fn five_minutes() -> String {
    "5m".into()
}

/// `POST /allocations`: a new queue, as `orquesta alloc add` sends it and
/// as it is kept in the database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocationSpec {
    /// Letters, digits, `-` and `_`; names the queue in every route.
    pub name: String,
    pub kind: AllocationKind,
    /// Jobs alive at once at most (pending, running or ending).
    #[serde(default = "one")]
    pub max_jobs: u32,
    /// Workers each job starts (one per slot it asks for).
    #[serde(default = "one")]
    pub workers_per_job: u32,
    /// Tasks each of those workers runs at once.
    #[serde(default = "one")]
    pub capacity: u32,
    /// The job's wall-time limit (`90s`, `15m`, `2h`); its workers drain
    /// themselves a margin before it.
    #[serde(default = "hour")]
    pub time_limit: String,
    /// A worker idle this long drains and stops; the job ends with its last worker.
    #[serde(default = "five_minutes")]
    pub idle_timeout: String,
    /// Algorithms the jobs' workers accept (default: all). Tasks of other
    /// kernels never make this queue submit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithms: Option<Vec<String>>,
    /// `slurm`: more `sbatch` arguments (`--partition=gpu`, `--account=x`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
    /// `command`: run with the job script's path; prints the job id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submit: Option<String>,
    /// `command`: run with a job id; prints pending, running, ended or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `command`: run with a job id; cancels it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel: Option<String>,
}

/// A job's state as `GET /allocations` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Submitted; no worker of it has joined yet.
    Pending,
    /// At least one of its workers has joined.
    Running,
    /// Cancelled or draining; its workers are leaving.
    Ending,
    /// Ended without a worker joining, or the cluster manager says failed.
    Failed,
}

/// One job of a queue.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AllocationJob {
    /// The cluster manager's id (Slurm's job id).
    pub id: String,
    pub state: JobState,
    /// How many of its workers are registered now.
    pub workers_joined: usize,
    pub workers: Vec<WorkerId>,
    /// Since it was submitted.
    pub age_seconds: f64,
    pub submitted_at: String,
    /// Why it is pending, ending or failed, as far as known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The last command of a queue that failed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AllocationError {
    pub at: String,
    pub message: String,
    /// What the command printed (stdout then stderr, shortened).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub output: String,
}

/// A queue's state word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    /// Submits when work waits.
    Active,
    /// Submits nothing (its jobs run on).
    Paused,
    /// Submits again after `backoff_until`, after failures.
    BackingOff,
    /// Being removed: its jobs are cancelled.
    Removing,
}

/// One queue in `GET /allocations`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Allocation {
    pub name: String,
    pub kind: AllocationKind,
    /// The queue as it was added.
    pub spec: AllocationSpec,
    pub state: QueueState,
    pub paused: bool,
    pub jobs: Vec<AllocationJob>,
    /// Since the orchestrator started.
    pub jobs_submitted: u64,
    /// Jobs that failed or never joined, since the orchestrator started.
    pub jobs_failed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<AllocationError>,
}

/// `GET /allocations`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AllocationList {
    pub allocations: Vec<Allocation>,
    /// The URL jobs join (`ORQUESTA_ADVERTISE_URL`).
    pub join_url: String,
}
