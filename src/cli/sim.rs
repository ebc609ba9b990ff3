//! `orquesta sim`: one simulation run here, printed as the result JSON a
//! worker returns for that task.

use std::process::ExitCode;

use clap::Args;
use serde_json::{json, Map, Value};

use super::available_threads;
use crate::model::TaskResult;
use crate::sim::{self, Control, Limits, RunOptions, SimError, SimParams, SimStatus};

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct SimArgs {
    /// Number of particles N.
    #[arg(long, short = 'n')]
    pub particles: u64,
    /// Number of time steps (0 gives the initial state).
    #[arg(long, short = 's')]
    pub steps: u64,
    /// Seed of the initial velocities (any 64-bit unsigned integer).
    #[arg(long)]
    pub seed: u64,
    /// Kernel: reference, optimized, or the seed's aliases python, cython.
    #[arg(long, short = 'a', default_value = "optimized")]
    pub algorithm: String,
    /// Threads for the optimized kernel (default: every core). Results do
    /// not depend on it.
    #[arg(long, short = 't')]
    pub threads: Option<usize>,
    /// Reduced density ρ [default: 0.5].
    #[arg(long)]
    pub density: Option<f64>,
    /// Initial temperature T0 [default: 1.0].
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Time step [default: 0.005].
    #[arg(long)]
    pub dt: Option<f64>,
    /// Cut-off radius [default: 2.5].
    #[arg(long)]
    pub cutoff: Option<f64>,
    /// Steps between two rows of `metrics.thermo` (T, energies, pressure),
    /// with their second-half averages in `metrics.averages` [default: no
    /// series].
    #[arg(long, value_name = "STEPS")]
    pub thermo_every: Option<u64>,
    /// Task id to put in the result.
    #[arg(long, default_value = "local", value_parser = |s: &str| crate::model::TaskId::parse(s))]
    pub task_id: crate::model::TaskId,
    /// Print the JSON on one line.
    #[arg(long)]
    pub compact: bool,
}

/// `orquesta sim`.
pub fn run(args: &SimArgs) -> ExitCode {
    let params = SimParams {
        num_particles: args.particles,
        num_steps: args.steps,
        seed: args.seed,
        density: args.density,
        temperature: args.temperature,
        dt: args.dt,
        cutoff: args.cutoff,
        thermo_every: args.thermo_every,
    };
    let options = RunOptions {
        threads: args.threads.unwrap_or_else(available_threads).max(1),
        limits: Limits::default(),
    };
    let control = Control::new();
    match sim::simulate(&args.algorithm, &params, &options, &control) {
        Ok(report) => {
            let result =
                TaskResult::from_report(&args.task_id, &args.algorithm, parameters_json(&params), &report);
            let text = if args.compact {
                serde_json::to_string(&result)
            } else {
                serde_json::to_string_pretty(&result)
            };
            println!("{}", text.expect("a result always serialises"));
            if report.status == SimStatus::Completed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            match err {
                SimError::InvalidParameters(errors) => {
                    eprintln!("error: invalid parameters");
                    for e in errors {
                        eprintln!("  {}: {}", flag_of(e.field), e.message);
                    }
                }
                other => eprintln!("error: {other}"),
            }
            ExitCode::from(2)
        }
    }
}

/// The flag a parameter comes from, so messages point at what to change.
fn flag_of(field: &str) -> String {
    match field {
        "num_particles" => "--particles".into(),
        "num_steps" => "--steps".into(),
        other => format!("--{}", other.replace('_', "-")),
    }
}

/// The `parameters` object of the task that `orquesta sim` runs.
fn parameters_json(p: &SimParams) -> Value {
    let mut map = Map::new();
    map.insert("num_particles".into(), json!(p.num_particles));
    map.insert("num_steps".into(), json!(p.num_steps));
    map.insert("seed".into(), json!(p.seed));
    for (name, value) in [
        ("density", p.density),
        ("temperature", p.temperature),
        ("dt", p.dt),
        ("cutoff", p.cutoff),
    ] {
        if let Some(v) = value {
            map.insert(name.into(), json!(v));
        }
    }
    if let Some(every) = p.thermo_every {
        map.insert("thermo_every".into(), json!(every));
    }
    Value::Object(map)
}
