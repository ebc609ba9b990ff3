//! The seed's task shape, once validated: what runs, with what priority.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::id::TaskId;
use crate::sim::{KernelName, SimParams};

/// Task priority; `medium` when a task gives none.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
pub enum Priority {
    High,
    #[default]
    Medium,
    Low,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Medium, Priority::Low];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Medium => "medium",
            Priority::Low => "low",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// 0 for high: the order tasks leave the queue in.
    pub fn rank(self) -> u8 {
        self as u8
    }

    /// The priority of a rank (the database's form); past low is low.
    pub fn from_rank(rank: u8) -> Self {
        match rank {
            0 => Priority::High,
            1 => Priority::Medium,
            _ => Priority::Low,
        }
    }
}

/// Kernels that exist only for fault tests; refused unless the process runs
/// with `ORQUESTA_TEST_KERNELS=1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TestKernel {
    /// Sleeps `parameters.seconds`, cancellable.
    Sleep { seconds: f64 },
    /// The kernel panics.
    Panic,
    /// The whole worker process aborts.
    Abort,
}

pub use crate::sim::TEST_KERNEL_NAMES;

/// True when `ORQUESTA_TEST_KERNELS=1` is set.
pub fn test_kernels_enabled() -> bool {
    std::env::var("ORQUESTA_TEST_KERNELS").is_ok_and(|v| v == "1")
}

/// What running a task means once it is validated.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    Simulation { kernel: KernelName, params: SimParams },
    Test(TestKernel),
}

impl Work {
    /// Particles and steps, for progress displays (0 for test kernels).
    pub fn size(&self) -> (u64, u64) {
        match self {
            Work::Simulation { params, .. } => (params.num_particles, params.num_steps),
            Work::Test(_) => (0, 0),
        }
    }

    /// The kernel that runs it (test kernels by their own name).
    pub fn kernel(&self) -> KernelName {
        let name = match self {
            Work::Simulation { kernel, .. } => return *kernel,
            Work::Test(TestKernel::Sleep { .. }) => "__sleep",
            Work::Test(TestKernel::Panic) => "__panic",
            Work::Test(TestKernel::Abort) => "__abort",
        };
        KernelName::resolve(name).expect("test kernel names are in the registry")
    }
}

/// A validated task. `parameters` and unknown fields are kept as written so
/// that results echo exactly what the user gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub task_id: TaskId,
    pub algorithm: String,
    pub parameters: Value,
    pub priority: Priority,
    pub description: Option<String>,
    /// The study it belongs to ([`super::study::check_study`]).
    pub study: Option<String>,
    pub extra: Map<String, Value>,
    pub work: Work,
    /// Set by a worker from its `/execute` body: the orchestrator holds a
    /// checkpoint of this task at this step, to resume from.
    pub checkpoint_step: Option<u64>,
}

impl Task {
    /// The task in the seed's JSON shape, unknown fields included.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("task_id".into(), Value::String(self.task_id.to_string()));
        map.insert("algorithm".into(), Value::String(self.algorithm.clone()));
        map.insert("parameters".into(), self.parameters.clone());
        map.insert("priority".into(), Value::String(self.priority.as_str().into()));
        if let Some(d) = &self.description {
            map.insert("description".into(), Value::String(d.clone()));
        }
        if let Some(s) = &self.study {
            map.insert("study".into(), Value::String(s.clone()));
        }
        for (k, v) in &self.extra {
            map.insert(k.clone(), v.clone());
        }
        Value::Object(map)
    }
}

/// The `study` of a stored task body ([`Task::to_json`]).
pub fn study_of(body: &Value) -> Option<&str> {
    body.get("study").and_then(Value::as_str)
}

/// Fields of a task that the validator reads; everything else is kept.
pub const TASK_FIELDS: [&str; 6] = [
    "task_id",
    "algorithm",
    "parameters",
    "priority",
    "description",
    "study",
];

/// The fields of a stored task body ([`Task::to_json`]) that the validator
/// does not know, as the user gave them: what the API and the results give
/// back.
pub fn unknown_fields(body: &Value) -> Map<String, Value> {
    body.as_object()
        .map(|obj| {
            obj.iter()
                .filter(|(k, _)| !TASK_FIELDS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}
