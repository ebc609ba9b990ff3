//! A task in memory ([`Entry`]) as the core keeps it wherever it is, and
//! what is read from its JSON once, when it comes into memory: its size
//! ([`body_size`]), its parameters and the fields its result echoes.

use std::sync::Arc;

use serde_json::Value;

use crate::model::{Echo, KernelName, Priority, TaskId, WorkerId};
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
    /// (N, steps) ([`body_size`]): what `shortest_expected_finish`
    /// predicts from.
    pub size: (u64, u64),
    /// The body's `parameters`: what a worker's result must echo.
    pub parameters: Option<Value>,
    /// What the task's result echoes of its body.
    pub echo: Echo,
}

/// What is read from a task's body, once.
struct Read {
    size: (u64, u64),
    parameters: Option<Value>,
    echo: Echo,
}

impl Read {
    fn of(body: &str) -> Self {
        let mut v: Value = serde_json::from_str(body).unwrap_or_default();
        let size = size_of(&v);
        let echo = Echo::of(&v);
        let parameters = v.get_mut("parameters").map(Value::take);
        Self {
            size,
            parameters,
            echo,
        }
    }
}

impl Entry {
    /// Its kernel and size.
    pub fn task_size(&self) -> TaskSize {
        TaskSize {
            kernel: self.kernel,
            particles: self.size.0,
            steps: self.size.1,
        }
    }

    /// Queue order: priority, then arrival.
    pub fn key(&self) -> (Priority, i64) {
        (self.priority, self.seq)
    }

    /// A queued row of the database; `None` for a kernel no longer known.
    pub fn from_row(row: QueuedRow) -> Option<Self> {
        let read = Read::of(&row.body);
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
            size: read.size,
            parameters: read.parameters,
            echo: read.echo,
        })
    }

    /// A task just inserted from `source` with sequence number `seq`.
    pub fn inserted(t: NewTask, seq: i64, source: &Arc<str>, now: f64) -> Option<Self> {
        let read = Read::of(&t.body);
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
            size: read.size,
            parameters: read.parameters,
            echo: read.echo,
        })
    }
}

/// (N, steps) of a task from its JSON (`parameters.num_particles`,
/// `parameters.num_steps`, validated before it was queued); (0, 0) for a
/// test kernel, which has neither.
#[cfg(test)]
pub fn body_size(body: &str) -> (u64, u64) {
    size_of(&serde_json::from_str(body).unwrap_or_default())
}

/// [`body_size`] of a parsed body.
fn size_of(body: &Value) -> (u64, u64) {
    let Some(p) = body.get("parameters").filter(|p| p.is_object()) else {
        return (0, 0);
    };
    let read = |name: &str| p.get(name).and_then(Value::as_f64).unwrap_or(0.0).max(0.0) as u64;
    (read("num_particles"), read("num_steps"))
}
