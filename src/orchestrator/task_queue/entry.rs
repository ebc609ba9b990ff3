//! A task in memory ([`Entry`]) as the core keeps it wherever it is, and
//! how its size is read from its JSON ([`body_size`]).

use std::sync::Arc;

use crate::model::{KernelName, Priority, TaskId, WorkerId};
use crate::orchestrator::load_balancer::TaskSize;
use crate::orchestrator::store::{NewTask, QueuedRow};

/// A task in memory.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: i64,
    pub task_id: TaskId,
    pub priority: Priority,
    pub kernel: KernelName,
    pub algorithm: String,
    pub body: Arc<str>,
    /// The file it came from (`api` for `POST /tasks`), for its result.
    pub source: Arc<str>,
    /// Attempts started so far.
    pub attempts: u32,
    pub created_at: f64,
    pub last_error: Option<String>,
    /// Workers an attempt of this task failed on or was lost with (in
    /// memory only): its next attempt goes elsewhere when it can.
    pub failed_on: Vec<WorkerId>,
    /// (N, steps), read from `body` when first dispatched
    /// ([`body_size`]): what `shortest_expected_finish` predicts from.
    pub size: Option<(u64, u64)>,
}

impl Entry {
    /// Its kernel and size once dispatched (`None` before).
    pub fn task_size(&self) -> Option<TaskSize> {
        self.size.map(|(particles, steps)| TaskSize {
            kernel: self.kernel,
            particles,
            steps,
        })
    }

    /// Queue order: priority, then arrival.
    pub fn key(&self) -> (Priority, i64) {
        (self.priority, self.seq)
    }

    /// A queued row of the database; `None` for a kernel no longer known.
    pub fn from_row(row: QueuedRow) -> Option<Self> {
        Some(Self {
            seq: row.seq,
            priority: row.priority,
            kernel: row.kernel?,
            algorithm: row.algorithm,
            body: Arc::from(row.body),
            source: Arc::from(row.source),
            attempts: row.attempts,
            created_at: row.created_at,
            task_id: row.task_id,
            last_error: None,
            failed_on: Vec::new(),
            size: None,
        })
    }

    /// A task just inserted from `source` with sequence number `seq`.
    pub fn inserted(t: NewTask, seq: i64, source: &Arc<str>, now: f64) -> Option<Self> {
        Some(Self {
            seq,
            kernel: t.kernel,
            task_id: t.task_id,
            priority: t.priority,
            algorithm: t.algorithm,
            body: Arc::from(t.body),
            source: Arc::clone(source),
            attempts: 0,
            created_at: now,
            last_error: None,
            failed_on: Vec::new(),
            size: None,
        })
    }
}

/// (N, steps) of a task from its JSON (`parameters.num_particles`,
/// `parameters.num_steps`, validated before it was queued); (0, 0) for a
/// test kernel, which has neither. Read once per dispatched task rather
/// than kept from ingest: a million queued tasks never pay for it.
pub fn body_size(body: &str) -> (u64, u64) {
    #[derive(serde::Deserialize)]
    struct Params {
        #[serde(default)]
        num_particles: f64,
        #[serde(default)]
        num_steps: f64,
    }
    #[derive(serde::Deserialize)]
    struct Body {
        parameters: Option<Params>,
    }
    match serde_json::from_str::<Body>(body) {
        Ok(Body { parameters: Some(p) }) => (p.num_particles.max(0.0) as u64, p.num_steps.max(0.0) as u64),
        _ => (0, 0),
    }
}
