//! A task's simulation parameters as its file gives them, the defaults
//! filled in ([`EffectiveParameters`]), and their validation against the
//! worker's [`Limits`], every problem named with its fix.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::*;

/// The parameters of one task as its file gives them; optional ones take
/// the DESIGN.md defaults.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SimParams {
    pub num_particles: u64,
    pub num_steps: u64,
    pub seed: u64,
    pub density: Option<f64>,
    pub temperature: Option<f64>,
    pub dt: Option<f64>,
    pub cutoff: Option<f64>,
    /// Steps between two rows of `metrics.thermo` (None: no series).
    pub thermo_every: Option<u64>,
}

/// The most rows `metrics.thermo` may hold (step 0 included): about 1.7 MB
/// of JSON, well inside what a result may weigh on its way to the
/// orchestrator. A longer series is a smaller `thermo_every` away from
/// being refused, with the least one that fits in the message.
pub const MAX_THERMO_ROWS: u64 = 10_000;

/// The fewest bytes `rows` rows of `metrics.thermo` can weigh as JSON:
/// each row at least as long as step 0's with every number `0.0` (the
/// shortest a float is written), plus the comma between rows. A real row
/// is longer (about 170 bytes), so a series this bound refuses could never
/// fit.
pub fn thermo_least_bytes(rows: u64) -> u64 {
    let row = kernel::ThermoRow {
        step: 0,
        temperature: 0.0,
        potential_energy: 0.0,
        kinetic_energy: 0.0,
        total_energy: 0.0,
        pressure: 0.0,
    };
    let one = serde_json::to_string(&row).map_or(0, |s| s.len() as u64) + 1;
    rows.saturating_mul(one)
}

/// Every parameter of a run with the defaults filled in: what a result
/// records as `effective_parameters`, so that it can be reproduced even if
/// a default changes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EffectiveParameters {
    pub num_particles: u64,
    pub num_steps: u64,
    pub seed: u64,
    pub density: f64,
    pub temperature: f64,
    pub dt: f64,
    pub cutoff: f64,
    /// Present when the task asked for a series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thermo_every: Option<u64>,
}

/// Bounds that keep one task from taking a worker's memory or time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_particles: u64,
    /// Largest N · num_steps.
    pub max_particle_steps: f64,
    /// Largest estimated count of pair evaluations (what bounds `reference`).
    pub max_pair_evaluations: f64,
    /// Largest estimated simulation memory of one run.
    pub max_memory_bytes: f64,
    /// The setting that sets `max_memory_bytes` here, named in the refusal
    /// ("" when it is the built-in default).
    pub memory_setting: &'static str,
    /// `MAX_RESULT_BYTES` of the orchestrator: a task whose own
    /// `metrics.thermo` series would weigh more can never be recorded, so it
    /// is refused before it runs (None: no such limit here, e.g. on a worker).
    pub max_result_bytes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_particles: 2_000_000,
            max_particle_steps: 1e11,
            max_pair_evaluations: 2e12,
            max_memory_bytes: 4e9,
            memory_setting: "",
            max_result_bytes: None,
        }
    }
}

/// One problem with a task's parameters: which field, and what is wrong
/// and how to fix it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamError {
    pub field: &'static str,
    pub message: String,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl ParamError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

impl SimParams {
    /// Every parameter, the defaults of the optional ones filled in.
    pub fn effective(&self) -> EffectiveParameters {
        EffectiveParameters {
            num_particles: self.num_particles,
            num_steps: self.num_steps,
            seed: self.seed,
            density: self.density.unwrap_or(system::DEFAULT_DENSITY),
            temperature: self.temperature.unwrap_or(system::DEFAULT_TEMPERATURE),
            dt: self.dt.unwrap_or(system::DEFAULT_DT),
            cutoff: self.cutoff.unwrap_or(system::DEFAULT_CUTOFF),
            thermo_every: self.thermo_every,
        }
    }

    /// Checks every parameter and the run's cost with `kernel` against
    /// `limits`; on failure lists every problem found, not just the first.
    pub fn validate(&self, kernel: &dyn Kernel, limits: &Limits) -> Result<Physics, Vec<ParamError>> {
        let physics = self.physics(limits)?;
        let mut errors = Vec::new();
        let particle_steps = self.num_particles as f64 * self.num_steps as f64;
        if particle_steps > limits.max_particle_steps {
            errors.push(ParamError::new(
                "num_steps",
                format!(
                    "num_particles × num_steps = {particle_steps:.3e} is more than the limit of {:.3e}; \
                     split the run into shorter tasks",
                    limits.max_particle_steps
                ),
            ));
        }
        let estimate = kernel.estimate(&physics, self.num_steps);
        if estimate.pair_evaluations > limits.max_pair_evaluations {
            errors.push(ParamError::new(
                "num_steps",
                format!(
                    "this run needs about {:.3e} pair evaluations with `{}`, more than the limit of {:.3e}; \
                     use the optimized kernel, fewer particles or fewer steps",
                    estimate.pair_evaluations,
                    kernel.name(),
                    limits.max_pair_evaluations
                ),
            ));
        }
        // an estimate that is not a number is refused too
        if estimate.memory_bytes.is_nan() || estimate.memory_bytes > limits.max_memory_bytes {
            let setting = match limits.memory_setting {
                "" => String::new(),
                name => format!(" ({name})"),
            };
            errors.push(ParamError::new(
                "num_particles",
                format!(
                    "this run needs about {} of memory with `{}`, more than the memory limit of {}{setting}; \
                     use fewer particles, a smaller cutoff or a lower density",
                    bytes(estimate.memory_bytes),
                    kernel.name(),
                    bytes(limits.max_memory_bytes)
                ),
            ));
        }
        if errors.is_empty() {
            Ok(physics)
        } else {
            Err(errors)
        }
    }

    /// Checks the parameters that do not depend on the kernel: each
    /// physical parameter against its range ([`system::DENSITY_RANGE`] …),
    /// N against the limit and the box against the cut-off. Lists every
    /// problem found.
    pub fn physics(&self, limits: &Limits) -> Result<Physics, Vec<ParamError>> {
        let mut errors = Vec::new();
        let mut ranged = |range: system::ParamRange, value: Option<f64>, default: f64| {
            let v = value.unwrap_or(default);
            if !range.contains(v) {
                let finite = if v.is_finite() { "" } else { "finite " };
                let expected = range
                    .describe()
                    .replacen("a number", &format!("a {finite}number"), 1);
                errors.push(ParamError::new(
                    range.field,
                    format!("expected {expected}, found {}", system::number(v)),
                ));
            }
            v
        };
        let density = ranged(system::DENSITY_RANGE, self.density, system::DEFAULT_DENSITY);
        let dt = ranged(system::DT_RANGE, self.dt, system::DEFAULT_DT);
        let cutoff = ranged(system::CUTOFF_RANGE, self.cutoff, system::DEFAULT_CUTOFF);
        let temperature = ranged(
            system::TEMPERATURE_RANGE,
            self.temperature,
            system::DEFAULT_TEMPERATURE,
        );

        match self.thermo_every {
            None => {}
            Some(0) => errors.push(ParamError::new(
                "thermo_every",
                "expected a whole number of steps ≥ 1, found 0; leave thermo_every out for no series",
            )),
            Some(every) => {
                let rows = self.num_steps / every + 1;
                let least = thermo_least_bytes(rows);
                if rows > MAX_THERMO_ROWS {
                    errors.push(ParamError::new(
                        "thermo_every",
                        format!(
                            "a row every {every} steps of {} gives {rows} rows, more than the limit of \
                             {MAX_THERMO_ROWS}; use thermo_every ≥ {}",
                            self.num_steps,
                            self.num_steps / MAX_THERMO_ROWS + 1
                        ),
                    ));
                } else if let Some(limit) = limits.max_result_bytes.filter(|l| least > *l) {
                    let fits = limit / thermo_least_bytes(1);
                    let fix = if fits >= 2 {
                        format!(
                            "use thermo_every ≥ {}, or raise MAX_RESULT_BYTES on the orchestrator",
                            self.num_steps / (fits - 1) + 1
                        )
                    } else {
                        "raise MAX_RESULT_BYTES on the orchestrator".to_string()
                    };
                    errors.push(ParamError::new(
                        "thermo_every",
                        format!(
                            "a row every {every} steps of {} gives {rows} rows of metrics.thermo, at least \
                             {least} bytes of result, more than MAX_RESULT_BYTES = {limit}: its result could \
                             never be recorded; {fix}",
                            self.num_steps
                        ),
                    ));
                }
            }
        }

        let n = self.num_particles;
        if n < 2 {
            errors.push(ParamError::new(
                "num_particles",
                format!("expected a whole number ≥ 2, found {n}"),
            ));
        } else if n > limits.max_particles {
            errors.push(ParamError::new(
                "num_particles",
                format!(
                    "{n} is more than the limit MAX_PARTICLES = {}; split the system, or raise \
                     MAX_PARTICLES (on the orchestrator and on every worker)",
                    limits.max_particles
                ),
            ));
        } else if errors.is_empty() {
            let box_len = (n as f64 / density).sqrt();
            if box_len < 2.0 * cutoff {
                let min_n = (density * 4.0 * cutoff * cutoff).ceil() as u64;
                errors.push(ParamError::new(
                    "num_particles",
                    format!(
                        "expected a whole number ≥ {min_n}, found {n}: at density {density} the box side \
                         would be {box_len:.4}, smaller than 2 × cutoff = {}; use more particles, a lower \
                         density or a smaller cutoff",
                        2.0 * cutoff
                    ),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Physics {
            num_particles: n as usize,
            density,
            temperature,
            dt,
            cutoff,
        })
    }
}

/// Bytes for a message, in the units of `memory_used` (MB = 10⁶ bytes).
fn bytes(b: f64) -> String {
    if b >= 1e9 {
        format!("{:.1} GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.1} kB", b / 1e3)
    }
}
