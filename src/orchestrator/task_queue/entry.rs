//! A task in memory ([`Entry`]) as the core keeps it wherever it is, and
//! what is read from its JSON once, when it comes into memory: its size
//! ([`body_size`]), a fingerprint of its parameters and the fields its
//! result echoes.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::model::{Echo, KernelName, Priority, TaskId, WorkerId};
use crate::orchestrator::placement::TaskSize;
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
    /// The [`fingerprint`] of the body's `parameters`, which a worker's
    /// result must echo (`None`: the body has none). A fingerprint, not
    /// the parsed object: up to `WINDOW` queued tasks per kernel sit in
    /// memory, and a parsed object costs each about a kilobyte.
    pub parameters: Option<u64>,
    /// What the task's result echoes of its body ([`Entry::echo`]), as
    /// JSON text, `None` when it echoes nothing: parsed, its maps cost a
    /// queued task several hundred bytes.
    pub echo_json: Option<Box<str>>,
    /// Not asked back from a worker before this unix time (a take-back
    /// found it not there: `takeback.rs`).
    pub take_back_after: f64,
    /// Not moved to a worker where it would start sooner before this unix
    /// time (it was just moved: `takeback.rs`, so it does not bounce).
    pub settled_after: f64,
}

/// What is read from a task's body, once.
struct Read {
    size: (u64, u64),
    parameters: Option<u64>,
    echo_json: Option<Box<str>>,
}

impl Read {
    fn of(body: &str) -> Self {
        let v: Value = serde_json::from_str(body).unwrap_or_default();
        let size = size_of(&v);
        let echo = Echo::of(&v);
        let echo_json = (echo != Echo::default())
            .then(|| serde_json::to_string(&echo).ok().map(String::into_boxed_str))
            .flatten();
        let parameters = v.get("parameters").map(fingerprint);
        Self {
            size,
            parameters,
            echo_json,
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

    /// What the task's result echoes of its body, read when it came into
    /// memory.
    pub fn echo(&self) -> Echo {
        self.echo_json
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default()
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
            echo_json: read.echo_json,
            take_back_after: 0.0,
            settled_after: 0.0,
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
            echo_json: read.echo_json,
            take_back_after: 0.0,
            settled_after: 0.0,
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

/// A 64-bit fingerprint of a JSON value, equal for values that are equal
/// as [`Value`]s: object keys in any order, `1` and `1.0` apart. Keyed once
/// per process at random, so a worker cannot craft a result whose other
/// parameters share the task's fingerprint.
pub fn fingerprint(v: &Value) -> u64 {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    let mut h = KEYS.get_or_init(RandomState::new).build_hasher();
    feed(v, &mut h);
    h.finish()
}

fn feed(v: &Value, h: &mut impl Hasher) {
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => (1u8, b).hash(h),
        // the text tells an integer from a float, as Number's equality does
        Value::Number(n) => (2u8, n.to_string()).hash(h),
        Value::String(s) => (3u8, s).hash(h),
        Value::Array(items) => {
            (4u8, items.len()).hash(h);
            items.iter().for_each(|x| feed(x, h));
        }
        Value::Object(map) => {
            (5u8, map.len()).hash(h);
            let mut pairs: Vec<_> = map.iter().collect();
            pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (k, x) in pairs {
                k.hash(h);
                feed(x, h);
            }
        }
    }
}
