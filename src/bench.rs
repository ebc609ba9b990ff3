//! `orquesta bench …`: measurements that print the figures the issues ask
//! for. Speed is measured here, never asserted in tests.

use std::process::ExitCode;

use clap::Args;

use crate::cli::available_threads;
use crate::sim::{self, lookup, Control, Limits, RunOptions, SimParams, SimStatus, KERNELS};

#[derive(Args, Debug)]
pub struct SimBenchArgs {
    /// Particle counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000,100000")]
    pub sizes: Vec<u64>,
    /// Kernels to measure (default: all).
    #[arg(long, value_delimiter = ',')]
    pub kernels: Vec<String>,
    /// The "all threads" column (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Target seconds per measurement.
    #[arg(long, default_value_t = 1.0)]
    pub seconds: f64,
    /// Skip a reference measurement whose calibration step would take longer.
    #[arg(long, default_value_t = 5.0)]
    pub reference_budget: f64,
    /// Print one JSON object per measurement instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// One row of the table.
struct Measurement {
    kernel: &'static str,
    particles: u64,
    threads: usize,
    steps: u64,
    seconds: f64,
    rate: f64,
}

fn measure(kernel: &str, particles: u64, steps: u64, threads: usize) -> Option<(f64, f64)> {
    let params = SimParams {
        num_particles: particles,
        num_steps: steps,
        seed: 2024,
        ..SimParams::default()
    };
    let options = RunOptions {
        threads,
        limits: Limits {
            max_pair_evaluations: f64::INFINITY,
            max_particle_steps: f64::INFINITY,
            ..Limits::default()
        },
    };
    let report = sim::simulate(kernel, &params, &options, &Control::new()).ok()?;
    (report.status == SimStatus::Completed)
        .then_some((report.metrics.particle_steps_per_second, report.elapsed))
}

pub fn sim(args: &SimBenchArgs) -> ExitCode {
    let all = args.threads.unwrap_or_else(available_threads).max(1);
    let kernels: Vec<&'static str> = if args.kernels.is_empty() {
        KERNELS.iter().map(|k| k.name()).collect()
    } else {
        let mut names = Vec::new();
        for k in &args.kernels {
            match lookup(k) {
                Some(kernel) => names.push(kernel.name()),
                None => {
                    eprintln!(
                        "error: unknown kernel {k:?}: expected one of {}",
                        sim::algorithm_names().join(", ")
                    );
                    return ExitCode::from(2);
                }
            }
        }
        names
    };
    let mut thread_counts = vec![1];
    if all > 1 {
        thread_counts.push(all);
    }
    if !args.json {
        println!(
            "{:<10} {:>9} {:>7} {:>8} {:>8} {:>18} {:>11}",
            "kernel", "N", "threads", "steps", "seconds", "M particle-steps/s", "vs 1 thread"
        );
    }
    let mut rows: Vec<Measurement> = Vec::new();
    for &kernel in &kernels {
        for &n in &args.sizes {
            if kernel == "reference" {
                // one step is N²/2 pairs at roughly 1e8 pairs/s
                let step_secs = (n as f64).powi(2) / 2.0 / 1e8;
                if step_secs * 3.0 > args.reference_budget {
                    if !args.json {
                        println!(
                            "{kernel:<10} {n:>9} {:>7} skipped: one step would take ~{step_secs:.0} s",
                            "-"
                        );
                    }
                    continue;
                }
            }
            for &threads in &thread_counts {
                if kernel == "reference" && threads > 1 {
                    continue; // single-threaded by design
                }
                // calibrate on a short run, then size the real one
                let probe_steps = if kernel == "reference" { 2 } else { 20 };
                let Some((rate, _)) = measure(kernel, n, probe_steps, threads) else {
                    eprintln!("error: {kernel} failed at N = {n}");
                    return ExitCode::FAILURE;
                };
                let steps = ((args.seconds * rate / n as f64) as u64).clamp(probe_steps, 1_000_000);
                let Some((rate, seconds)) = measure(kernel, n, steps, threads) else {
                    eprintln!("error: {kernel} failed at N = {n}");
                    return ExitCode::FAILURE;
                };
                let row = Measurement {
                    kernel,
                    particles: n,
                    threads,
                    steps,
                    seconds,
                    rate,
                };
                print_row(&row, &rows, args.json);
                rows.push(row);
            }
        }
    }
    ExitCode::SUCCESS
}

fn print_row(row: &Measurement, earlier: &[Measurement], json: bool) {
    let single = earlier
        .iter()
        .find(|m| m.kernel == row.kernel && m.particles == row.particles && m.threads == 1)
        .map(|m| m.rate);
    let speedup = single.map(|s| row.rate / s);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "kernel": row.kernel, "particles": row.particles, "threads": row.threads,
                "steps": row.steps, "seconds": row.seconds,
                "particle_steps_per_second": row.rate, "speedup_vs_one_thread": speedup,
            })
        );
    } else {
        let speedup = speedup.map_or("-".to_string(), |s| format!("{s:.2}x"));
        println!(
            "{:<10} {:>9} {:>7} {:>8} {:>8.3} {:>18.2} {:>11}",
            row.kernel,
            row.particles,
            row.threads,
            row.steps,
            row.seconds,
            row.rate / 1e6,
            speedup
        );
    }
}
