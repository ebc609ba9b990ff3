//! The one validator that the worker, the orchestrator and `orquesta
//! validate` share: every problem is reported with its path in the JSON,
//! what was expected and what was found.

use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

use super::id::TaskId;
use super::task::{test_kernels_enabled, Priority, Task, TestKernel, Work, TASK_FIELDS, TEST_KERNEL_NAMES};
use crate::sim::{self, Limits, SimParams};

/// One problem in a task file or request: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FieldError {
    /// Path in the JSON, e.g. `tasks[7].parameters.num_particles`.
    pub path: String,
    /// What was expected and what was found, and how to fix it.
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A JSON value described for an error message: `"abc" (a string)`, `-4`.
pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("{b} (a boolean)"),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{} (a string)", short(s)),
        Value::Array(a) => format!("an array of {} items", a.len()),
        Value::Object(_) => "an object".into(),
    }
}

/// A string quoted and cut to a readable length.
pub(crate) fn short(s: &str) -> String {
    if s.chars().count() > 40 {
        let cut: String = s.chars().take(40).collect();
        format!("{cut:?}…")
    } else {
        format!("{s:?}")
    }
}

/// Joins a path and a field: `tasks[3]` + `priority`.
fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// Checks tasks against the kernels and limits of this process.
#[derive(Debug, Clone)]
pub struct Validator {
    pub limits: Limits,
    pub test_kernels: bool,
    /// Algorithm names accepted here (None: every registered one).
    pub algorithms: Option<Vec<String>>,
}

impl Default for Validator {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            test_kernels: test_kernels_enabled(),
            algorithms: None,
        }
    }
}

impl Validator {
    /// Every registered kernel within the default limits and no test
    /// kernels, whatever the environment says: for tools and tests.
    pub fn standard() -> Self {
        Self {
            limits: Limits::default(),
            test_kernels: false,
            algorithms: None,
        }
    }

    /// Every algorithm name a task may use here.
    pub fn algorithm_names(&self) -> Vec<String> {
        let mut names: Vec<String> = match &self.algorithms {
            Some(list) => list.clone(),
            None => sim::algorithm_names().into_iter().map(String::from).collect(),
        };
        if self.test_kernels {
            names.extend(TEST_KERNEL_NAMES.iter().map(|s| s.to_string()));
        }
        names
    }

    /// The smallest particle count a task may ask for at the default
    /// density and cut-off (13 at density 0.5, cut-off 2.5), probed.
    pub fn min_particles(&self) -> u64 {
        (2..=1_000_000u64)
            .find(|&n| {
                let probe = serde_json::json!({"task_id": "probe", "algorithm": "reference",
                    "parameters": {"num_particles": n, "num_steps": 0, "seed": 0}});
                self.task(&probe, "").is_ok()
            })
            .unwrap_or(2)
    }

    /// Validates one task at `path` (e.g. `tasks[3]`, or "" for a request
    /// body), listing every problem.
    pub fn task(&self, v: &Value, path: &str) -> Result<Task, Vec<FieldError>> {
        let mut errors = Vec::new();
        let Some(obj) = v.as_object() else {
            return Err(vec![FieldError::new(
                path,
                format!(
                    "expected a task object with task_id, algorithm and parameters, found {}",
                    describe(v)
                ),
            )]);
        };
        let task_id = match obj.get("task_id") {
            None => {
                errors.push(FieldError::new(
                    join(path, "task_id"),
                    "required: a unique id such as \"task_001\"",
                ));
                None
            }
            Some(Value::String(s)) => TaskId::parse(s)
                .map_err(|e| errors.push(FieldError::new(join(path, "task_id"), e.to_string())))
                .ok(),
            Some(other) => {
                errors.push(FieldError::new(
                    join(path, "task_id"),
                    format!("expected a string, found {}", describe(other)),
                ));
                None
            }
        };
        let priority = match obj.get("priority") {
            None | Some(Value::Null) => Some(Priority::Medium),
            Some(Value::String(s)) => Priority::parse(s).or_else(|| {
                errors.push(FieldError::new(
                    join(path, "priority"),
                    format!("expected \"high\", \"medium\" or \"low\", found {}", short(s)),
                ));
                None
            }),
            Some(other) => {
                errors.push(FieldError::new(
                    join(path, "priority"),
                    format!(
                        "expected \"high\", \"medium\" or \"low\", found {}",
                        describe(other)
                    ),
                ));
                None
            }
        };
        let description = match obj.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                errors.push(FieldError::new(
                    join(path, "description"),
                    format!("expected a string, found {}", describe(other)),
                ));
                None
            }
        };
        let study = match obj.get("study") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match super::study::check_study(s) {
                Ok(()) => Some(s.clone()),
                Err(e) => {
                    errors.push(FieldError::new(join(path, "study"), e));
                    None
                }
            },
            Some(other) => {
                errors.push(FieldError::new(
                    join(path, "study"),
                    format!(
                        "expected a study name ({}), found {}",
                        super::study::STUDY_RULE,
                        describe(other)
                    ),
                ));
                None
            }
        };
        // `"reuse": false`: run it even when an equal completed task's
        // result is stored (crate::model::reuse); kept with the task's body
        match obj.get("reuse") {
            None | Some(Value::Null | Value::Bool(_)) => {}
            Some(other) => errors.push(FieldError::new(
                join(path, "reuse"),
                format!(
                    "expected true or false (false: run it even if an equal completed task's result is stored), found {}",
                    describe(other)
                ),
            )),
        }
        let algorithm = match obj.get("algorithm") {
            None => {
                errors.push(FieldError::new(
                    join(path, "algorithm"),
                    format!("required: one of {}", self.algorithm_names().join(", ")),
                ));
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                errors.push(FieldError::new(
                    join(path, "algorithm"),
                    format!("expected a string, found {}", describe(other)),
                ));
                None
            }
        };
        let parameters = obj.get("parameters");
        let work = self.work(algorithm.as_deref(), parameters, path, &mut errors);
        match (task_id, priority, algorithm, work) {
            (Some(task_id), Some(priority), Some(algorithm), Some(work)) if errors.is_empty() => Ok(Task {
                task_id,
                algorithm,
                parameters: parameters.cloned().unwrap_or(Value::Object(Map::new())),
                priority,
                description,
                study,
                extra: obj
                    .iter()
                    .filter(|(k, _)| !TASK_FIELDS.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                work,
                checkpoint_step: None,
            }),
            _ => Err(errors),
        }
    }

    /// Resolves the algorithm and checks its parameters. The parameters
    /// are checked even when the algorithm is missing or unknown (all but
    /// the cost, which depends on the kernel), so that one answer lists
    /// every problem.
    fn work(
        &self,
        algorithm: Option<&str>,
        parameters: Option<&Value>,
        path: &str,
        errors: &mut Vec<FieldError>,
    ) -> Option<Work> {
        let at = |field: &str| join(&join(path, "parameters"), field);
        if let Some(algorithm) = algorithm.filter(|a| TEST_KERNEL_NAMES.contains(a)) {
            if !self.test_kernels {
                errors.push(FieldError::new(
                    join(path, "algorithm"),
                    format!(
                        "{algorithm:?} is a test kernel, enabled only when the process runs with \
                         ORQUESTA_TEST_KERNELS=1; use one of {}",
                        self.algorithm_names().join(", ")
                    ),
                ));
                return None;
            }
            return match algorithm {
                "__sleep" => {
                    let seconds = parameters.and_then(|p| p.get("seconds"));
                    match seconds.and_then(Value::as_f64) {
                        Some(s) if (0.0..=3600.0).contains(&s) => {
                            Some(Work::Test(TestKernel::Sleep { seconds: s }))
                        }
                        _ => {
                            errors.push(FieldError::new(
                                at("seconds"),
                                format!(
                                    "expected a number of seconds from 0 to 3600, found {}",
                                    seconds.map_or("nothing".into(), describe)
                                ),
                            ));
                            None
                        }
                    }
                }
                "__panic" => Some(Work::Test(TestKernel::Panic)),
                _ => Some(Work::Test(TestKernel::Abort)),
            };
        }
        // None when missing or not a string (already reported) or unknown
        let kernel = algorithm.and_then(|algorithm| {
            // a restricted worker runs kernels: `cython` in its list takes
            // a task that names `optimized`, the kernel it stands for
            let wanted = sim::resolve_kernel(algorithm);
            let allowed = self
                .algorithms
                .as_ref()
                .is_none_or(|list| wanted.is_some() && list.iter().any(|a| sim::resolve_kernel(a) == wanted));
            let kernel = sim::lookup(algorithm).filter(|_| allowed);
            if kernel.is_none() {
                errors.push(FieldError::new(
                    join(path, "algorithm"),
                    format!(
                        "expected one of {}, found {}",
                        self.algorithm_names().join(", "),
                        short(algorithm)
                    ),
                ));
            }
            kernel
        });
        let Some(params) = parameters else {
            errors.push(FieldError::new(
                join(path, "parameters"),
                "required: an object with num_particles, num_steps and seed",
            ));
            return None;
        };
        let Some(obj) = params.as_object() else {
            errors.push(FieldError::new(
                join(path, "parameters"),
                format!(
                    "expected an object with num_particles, num_steps and seed, found {}",
                    describe(params)
                ),
            ));
            return None;
        };
        let before = errors.len();
        // the least N whose box holds twice the cut-off, at the density and
        // cut-off given (or their defaults), so that messages can say it
        let given = |range: sim::system::ParamRange, default: f64| {
            obj.get(range.field)
                .and_then(Value::as_f64)
                .filter(|v| range.contains(*v))
                .unwrap_or(default)
        };
        let rho = given(sim::system::DENSITY_RANGE, sim::system::DEFAULT_DENSITY);
        let rc = given(sim::system::CUTOFF_RANGE, sim::system::DEFAULT_CUTOFF);
        let least_n = ((rho * 4.0 * rc * rc).ceil() as u64).max(2);
        let mut whole = |field: &str, what: &str, least: u64| -> u64 {
            match obj.get(field) {
                None => {
                    errors.push(FieldError::new(at(field), format!("required: {what}")));
                    0
                }
                Some(v) => whole_number(v).unwrap_or_else(|e| {
                    let e = if least > 0 {
                        e.replace("a whole number ≥ 0", &format!("a whole number ≥ {least}"))
                    } else {
                        e
                    };
                    errors.push(FieldError::new(at(field), e));
                    0
                }),
            }
        };
        let num_particles = whole(
            "num_particles",
            &format!("the number of particles, a whole number ≥ {least_n}"),
            least_n,
        );
        let num_steps = whole("num_steps", "the number of time steps, a whole number ≥ 0", 0);
        let seed = whole(
            "seed",
            "the random seed, a whole number from 0 to 18446744073709551615",
            0,
        );
        // optional, a whole number; 0 and too many rows are refused by
        // `SimParams::physics` (one rule for every process)
        let thermo_every = match obj.get("thermo_every") {
            None | Some(Value::Null) => None,
            Some(v) => match whole_number(v) {
                Ok(every) => Some(every),
                Err(e) => {
                    let e = e.replace("a whole number ≥ 0", "a whole number ≥ 1");
                    errors.push(FieldError::new(
                        at("thermo_every"),
                        format!(
                            "{e}; thermo_every is the number of steps between two rows of metrics.thermo"
                        ),
                    ));
                    None
                }
            },
        };
        let mut real = |field: &str| -> Option<f64> {
            match obj.get(field) {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => n.as_f64(),
                Some(other) => {
                    errors.push(FieldError::new(
                        at(field),
                        format!("expected a number, found {}", describe(other)),
                    ));
                    None
                }
            }
        };
        let params = SimParams {
            num_particles,
            num_steps,
            seed,
            density: real("density"),
            temperature: real("temperature"),
            dt: real("dt"),
            cutoff: real("cutoff"),
            thermo_every,
        };
        if errors.len() > before {
            // the ranges of the other parameters are still told in the same
            // answer (a missing seed and `density: 5` are both reported);
            // a field already reported is not reported again
            if let Err(problems) = params.physics(&self.limits) {
                for p in problems {
                    let path = at(p.field);
                    if !errors[before..].iter().any(|e| e.path == path) {
                        errors.push(FieldError::new(path, p.message));
                    }
                }
            }
            return None;
        }
        let checked = match kernel {
            Some(kernel) => params.validate(kernel, &self.limits),
            None => params.physics(&self.limits),
        };
        match (kernel, checked) {
            (Some(kernel), Ok(_)) => Some(Work::Simulation {
                kernel: crate::sim::KernelName::of(kernel),
                params,
            }),
            (None, Ok(_)) => None,
            (_, Err(problems)) => {
                errors.extend(
                    problems
                        .into_iter()
                        .map(|p| FieldError::new(at(p.field), p.message)),
                );
                None
            }
        }
    }
}

/// A JSON number that is a whole number from 0 to u64::MAX (an integral
/// float such as `1e3` counts).
fn whole_number(v: &Value) -> Result<u64, String> {
    let Value::Number(n) = v else {
        return Err(format!("expected a whole number, found {}", describe(v)));
    };
    if let Some(u) = n.as_u64() {
        return Ok(u);
    }
    if let Some(i) = n.as_i64() {
        return Err(format!("expected a whole number ≥ 0, found {i}"));
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..9.007_199_254_740_992e15).contains(&f) => Ok(f as u64),
        Some(f) if f.fract() == 0.0 && f > 0.0 => Err(format!(
            "expected a whole number from 0 to 18446744073709551615, found {n}"
        )),
        Some(f) if f < 0.0 => Err(format!("expected a whole number ≥ 0, found {n}")),
        _ => Err(format!("expected a whole number, found {n}")),
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
