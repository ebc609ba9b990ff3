//! The particle simulation every task runs: a 2-D Lennard-Jones fluid
//! (DESIGN.md "The simulation"). Pure computation: no actix, no I/O.
//!
//! - [`system`]: parameters, the initial lattice and velocities, the pair
//!   potential;
//! - [`kernel`]: the [`Kernel`] trait, the registry and aliases, the
//!   [`Control`] block for cancellation and progress;
//! - [`reference`] and [`optimized`]: the two kernels;
//! - [`checkpoint`]: a running simulation's state saved after a step, and
//!   resumed bit for bit;
//! - [`simd`]: the vector width `optimized` runs at (the widest the CPU
//!   has, or `ORQUESTA_SIMD`); every width gives the same bits;
//! - `params.rs`: a task's parameters and their validation against
//!   [`Limits`];
//! - this file: [`simulate`], which runs a kernel and turns its energies
//!   into [`Metrics`].

pub mod checkpoint;
pub mod kernel;
pub mod optimized;
mod params;
pub mod reference;
pub mod rng;
pub mod simd;
pub mod system;

use std::time::Instant;

use serde::Serialize;

pub use checkpoint::{Checkpoint, CheckpointRefused, Checkpointing};
pub use kernel::{
    algorithm_names, lookup, resolve_kernel, CheckpointSink, Control, Kernel, KernelName, Stop, ThermoRow,
    KERNELS, TEST_KERNEL_NAMES,
};
pub use params::*;
pub use system::{Physics, State};

/// An energy for a message: four decimals, or three significant digits
/// when it is very small or large.
fn energy(v: f64) -> String {
    if v != 0.0 && v.is_finite() && (v.abs() < 1e-3 || v.abs() >= 1e6) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

/// The start of the reason of every run stopped by [`kernel::drift_bound`]
/// or a non-finite energy.
pub const UNSTABLE: &str = "unstable: energy not conserved; dt too large?";

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum SimStatus {
    Completed,
    Cancelled,
    Failed(String),
}

impl SimStatus {
    /// The seed's `result.status` word.
    pub fn as_str(&self) -> &'static str {
        match self {
            SimStatus::Completed => "completed",
            SimStatus::Cancelled => "cancelled",
            SimStatus::Failed(_) => "failed",
        }
    }
}

/// `result.metrics` of a finished simulation (DESIGN.md "Output").
/// Energies are per particle. A value is absent only when the run became
/// unstable and it is not finite: JSON never carries NaN or infinity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    pub particles_processed: u64,
    pub steps_completed: u64,
    pub memory_used: String,
    pub memory_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub potential_energy_initial: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kinetic_energy_initial: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_energy_initial: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub potential_energy_final: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kinetic_energy_final: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_energy_final: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature_final: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_energy_drift: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position_checksum: Option<f64>,
    /// LAMMPS's `press` at step 0 ([`system::pressure`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pressure_initial: Option<f64>,
    /// ... and after the last step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pressure_final: Option<f64>,
    pub particle_steps_per_second: f64,
    pub kernel: &'static str,
    pub threads: usize,
    /// With `thermo_every`: the series, every `thermo_every` steps from
    /// step 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thermo: Option<Vec<ThermoRow>>,
    /// With `thermo_every`: means and standard errors over the rows of the
    /// second half of the run ([`Averages::of`]); absent when that half
    /// holds no row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub averages: Option<Averages>,
}

/// `metrics.averages`: each observable's mean and standard error over the
/// rows of `metrics.thermo` whose step is in the second half of the run
/// (2·step ≥ steps completed).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Averages {
    pub temperature: MeanSem,
    pub pressure: MeanSem,
    pub potential_energy: MeanSem,
    pub total_energy: MeanSem,
}

/// A mean and its standard error: the sample standard deviation (n − 1 in
/// the denominator) over √n. Rows of a time series are correlated, so this
/// underestimates the true error unless rows are further apart than the
/// correlation time; it is what a reader computes from the rows at hand.
/// With one row there is no spread to measure: `sem` is absent (never NaN,
/// never a misleading 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MeanSem {
    pub mean: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sem: Option<f64>,
}

impl MeanSem {
    /// Of `values`, summed in order; `None` for no value.
    pub fn of(values: impl Iterator<Item = f64> + Clone) -> Option<Self> {
        let n = values.clone().count();
        if n == 0 {
            return None;
        }
        let mean = values.clone().sum::<f64>() / n as f64;
        let sem = (n >= 2).then(|| {
            let squares: f64 = values.map(|v| (v - mean) * (v - mean)).sum();
            (squares / (n as f64 - 1.0)).sqrt() / (n as f64).sqrt()
        });
        Some(Self { mean, sem })
    }
}

impl Averages {
    /// Over the rows of `thermo` in the second half of a run of `steps`
    /// steps; `None` when no row falls there.
    pub fn of(thermo: &[ThermoRow], steps: u64) -> Option<Self> {
        let half = thermo.iter().filter(|r| r.step.saturating_mul(2) >= steps);
        let of = |f: fn(&ThermoRow) -> f64| MeanSem::of(half.clone().map(f));
        Some(Self {
            temperature: of(|r| r.temperature)?,
            pressure: of(|r| r.pressure)?,
            potential_energy: of(|r| r.potential_energy)?,
            total_energy: of(|r| r.total_energy)?,
        })
    }
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub struct SimReport {
    pub status: SimStatus,
    /// What ran: every parameter, defaults filled in.
    pub parameters: EffectiveParameters,
    pub metrics: Metrics,
    /// Wall time of the whole run, set-up included, in seconds.
    pub elapsed: f64,
    /// The final state, in original particle order.
    pub state: State,
    /// The step this run continued from, when it resumed a checkpoint.
    pub resumed_from_step: Option<u64>,
    /// Why the checkpoint it was given was not resumed (it started at 0).
    pub resume_refused: Option<CheckpointRefused>,
}

impl SimReport {
    /// The seed's `result.output`: one line a person can read.
    pub fn output(&self) -> String {
        let m = &self.metrics;
        match &self.status {
            SimStatus::Completed => format!(
                "simulation completed: {} particles, {} steps, E/N {:.6} -> {:.6}",
                m.particles_processed,
                m.steps_completed,
                m.total_energy_initial.unwrap_or(f64::NAN),
                m.total_energy_final.unwrap_or(f64::NAN)
            ),
            SimStatus::Cancelled => format!("simulation cancelled after {} of its steps", m.steps_completed),
            SimStatus::Failed(reason) => format!("simulation failed: {reason}"),
        }
    }
}

/// Options of one run that are not physics.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Threads the kernel may use (1 = single-threaded).
    pub threads: usize,
    pub limits: Limits,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            threads: 1,
            limits: Limits::default(),
        }
    }
}

/// Why a simulation could not start.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    #[error("unknown algorithm {name:?}: expected one of {}", algorithm_names().join(", "))]
    UnknownAlgorithm { name: String },
    #[error("invalid parameters: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    InvalidParameters(Vec<ParamError>),
}

/// Validates, builds the initial state, runs `algorithm` and measures it.
pub fn simulate(
    algorithm: &str,
    params: &SimParams,
    options: &RunOptions,
    control: &Control,
) -> Result<SimReport, SimError> {
    simulate_with(algorithm, params, options, control, Checkpointing::default())
}

/// [`simulate`], resuming and saving checkpoints as `checkpointing` says.
pub fn simulate_with(
    algorithm: &str,
    params: &SimParams,
    options: &RunOptions,
    control: &Control,
    checkpointing: Checkpointing<'_>,
) -> Result<SimReport, SimError> {
    let started = Instant::now();
    let kernel = lookup(algorithm).ok_or_else(|| SimError::UnknownAlgorithm {
        name: algorithm.to_string(),
    })?;
    let physics = params
        .validate(kernel, &options.limits)
        .map_err(SimError::InvalidParameters)?;
    let state = State::initial(&physics, params.seed);
    let run = kernel::Run::new(physics, params.num_steps, options.threads, control)
        .with_thermo(params.thermo_every);
    let (mut run, resumed_from_step, resume_refused) = checkpointing.apply(run, kernel, &params.effective());
    let stepping = Instant::now();
    let state = kernel.run(state, &mut run);
    let stepping_secs = stepping.elapsed().as_secs_f64();
    let ran = Ran {
        kernel,
        physics: &physics,
        parameters: params.effective(),
        run: &run,
    };
    let mut report = measure(ran, state, stepping_secs, started);
    report.resumed_from_step = resumed_from_step;
    report.resume_refused = resume_refused;
    Ok(report)
}

/// What [`measure`] reports on: the kernel, its physics and parameters,
/// and the run it made.
struct Ran<'a> {
    kernel: &'a dyn Kernel,
    physics: &'a Physics,
    parameters: EffectiveParameters,
    run: &'a kernel::Run<'a>,
}

fn measure(ran: Ran<'_>, state: State, stepping_secs: f64, started: Instant) -> SimReport {
    let Ran {
        kernel,
        physics,
        parameters,
        run,
    } = ran;
    let n = physics.num_particles as f64;
    let log = run.energies;
    let (p0, k0, w0) = log.initial.unwrap_or((f64::NAN, f64::NAN, f64::NAN));
    let (p1, k1, w1) = log.last;
    let steps = log.steps_recorded;
    // this run's own steps: a resumed run did not step the earlier ones
    let stepped = steps - run.start_step.min(steps);
    let status = match run.stop {
        None => SimStatus::Completed,
        Some(Stop::Cancelled) => SimStatus::Cancelled,
        Some(Stop::Unstable {
            step,
            initial,
            now,
            bound,
        }) => SimStatus::Failed(format!(
            "{UNSTABLE}: E/N went from {} to {} by step {step}, a drift beyond the bound of {} \
             (max(1, (|U0| + K0) / 2N)); lower dt, temperature or density",
            energy(initial),
            energy(now),
            energy(bound)
        )),
    };
    let stable = |v: f64| v.is_finite().then_some(v);
    let finite_final = p1.is_finite() && k1.is_finite();
    let checksum = system::position_checksum(&state.pos);
    let memory = run.memory_bytes;
    let metrics = Metrics {
        particles_processed: physics.num_particles as u64,
        steps_completed: steps,
        memory_used: format!("{:.1} MB", memory as f64 / 1e6),
        memory_bytes: memory,
        potential_energy_initial: stable(p0 / n),
        kinetic_energy_initial: stable(k0 / n),
        total_energy_initial: stable((p0 + k0) / n),
        potential_energy_final: stable(p1 / n),
        kinetic_energy_final: stable(k1 / n),
        total_energy_final: stable((p1 + k1) / n),
        temperature_final: stable(system::temperature_of(k1, physics.num_particles)),
        max_energy_drift: if finite_final { stable(log.max_drift) } else { None },
        position_checksum: if finite_final { stable(checksum) } else { None },
        pressure_initial: stable(system::pressure(physics, k0, w0)),
        pressure_final: stable(system::pressure(physics, k1, w1)),
        particle_steps_per_second: if stepped > 0 && stepping_secs > 0.0 {
            n * stepped as f64 / stepping_secs
        } else {
            0.0
        },
        kernel: kernel.name(),
        threads: run.threads(),
        thermo: run.thermo_every().map(|_| run.thermo().to_vec()),
        averages: run.thermo_every().and_then(|_| Averages::of(run.thermo(), steps)),
    };
    SimReport {
        status,
        parameters,
        metrics,
        elapsed: started.elapsed().as_secs_f64(),
        state,
        resumed_from_step: None,
        resume_refused: None,
    }
}

#[cfg(test)]
mod checkpoint_tests;
#[cfg(test)]
mod lammps_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod width_tests;
