//! `orquesta bench makespan`: how soon a mixed batch finishes under each
//! `LOAD_BALANCING_ALGORITHM`, against the lower bound
//! max(total work / total capacity, largest task).
//!
//! Seven real slots cannot be measured honestly on a 2-core machine, so
//! the workers are simulated: a deterministic discrete-event simulation of
//! workers with the given capacities and speeds, driven by the real
//! placement code ([`place_batch`], the real [`Strategy`] implementations
//! and the real speed model [`Expected`]) the way TaskQueue drives the
//! Membership (up to [`DISPATCH_BATCH`] ready tasks per batch, again at
//! every completion). Task times come from the work model calibrated by
//! timing real runs of [`crate::sim::simulate`] on this machine, so the
//! figures are in real seconds of one thread; each task's time is then
//! blurred by a seeded ±`noise` the model does not know.

use std::collections::HashSet;
use std::process::ExitCode;

use clap::Args;

use super::measure;
use crate::model::{KernelName, Priority, WorkerId};
use crate::orchestrator::config::Balancing;
use crate::orchestrator::placement::{
    place_batch, prior_speed, strategy, Expected, Load, Strategy, TaskSize, SAMPLES,
};
use crate::sim::rng::SplitMix64;

/// Tasks handed to the placement at once (TaskQueue's batch).
pub const DISPATCH_BATCH: usize = 512;

#[derive(Args, Debug)]
pub struct MakespanArgs {
    /// Tasks in the batch.
    #[arg(long, default_value_t = 200)]
    pub tasks: usize,
    /// Seed of the batch and of its noise.
    #[arg(long, default_value_t = 12)]
    pub seed: u64,
    /// Slots of each simulated worker.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub capacities: Vec<usize>,
    /// Speed of each simulated worker per slot (1.0 = this machine, one thread).
    #[arg(long, value_delimiter = ',', default_value = "1.0,1.0,0.7")]
    pub speeds: Vec<f64>,
    /// Smallest and largest N of a task.
    #[arg(long, value_delimiter = ',', default_value = "100,3000")]
    pub particles: Vec<u64>,
    /// Fewest and most steps of a task.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    pub steps: Vec<u64>,
    /// Each task's time is off the model by up to ± this fraction.
    #[arg(long, default_value_t = 0.1)]
    pub noise: f64,
    /// Skip timing real runs: use the built-in prior speeds (a quick look).
    #[arg(long)]
    pub no_calibration: bool,
}

/// One task of the simulated batch: its size and its true time at speed 1.
#[derive(Debug, Clone, Copy)]
pub struct SimTask {
    pub size: TaskSize,
    pub seconds: f64,
}

/// The simulated workers: slots and speed of each.
#[derive(Debug, Clone)]
pub struct SimCluster {
    pub capacities: Vec<usize>,
    pub speeds: Vec<f64>,
}

impl SimCluster {
    fn ids(&self) -> Vec<WorkerId> {
        (1..=self.capacities.len())
            .map(|i| WorkerId::new(&format!("w{i}")))
            .collect()
    }

    /// max(total work / Σ capacity·speed, largest task on the fastest
    /// worker): no placement can finish sooner.
    pub fn lower_bound(&self, tasks: &[SimTask]) -> f64 {
        let total: f64 = tasks.iter().map(|t| t.seconds).sum();
        let largest = tasks.iter().map(|t| t.seconds).fold(0.0, f64::max);
        let power: f64 = self
            .capacities
            .iter()
            .zip(&self.speeds)
            .map(|(&c, &s)| c as f64 * s)
            .sum();
        let fastest = self.speeds.iter().copied().fold(0.0, f64::max);
        (total / power).max(largest / fastest)
    }

    /// A model as if each worker had already reported [`SAMPLES`] results
    /// of each kernel at its true speed.
    pub fn known(&self, seconds_per_unit: &dyn Fn(&str) -> f64) -> Expected {
        let mut e = Expected::new();
        for (id, speed) in self.ids().iter().zip(&self.speeds) {
            for kernel in ["optimized", "reference"] {
                let t = TaskSize {
                    kernel: kernel_named(kernel),
                    particles: 1000,
                    steps: 1000,
                };
                for _ in 0..SAMPLES {
                    e.placed(id, Some(t), 0.0);
                    e.released(
                        id,
                        Some(t),
                        Some(t.work() * seconds_per_unit(kernel) / speed),
                        true,
                    );
                }
            }
        }
        e
    }
}

/// Runs `tasks` (one priority, in this order) to the end on `cluster`
/// placed by `strategy` with the model `expected`; answers the makespan in
/// seconds.
pub fn simulate(
    strategy: &mut dyn Strategy,
    mut expected: Expected,
    cluster: &SimCluster,
    tasks: &[SimTask],
) -> f64 {
    let ids = cluster.ids();
    let caps = &cluster.capacities;
    let mut in_flight = vec![0usize; ids.len()];
    let mut queue: Vec<usize> = (0..tasks.len()).collect();
    // (ends at, worker, task)
    let mut running: Vec<(f64, usize, usize)> = Vec::new();
    let mut now = 0.0_f64;
    loop {
        if !queue.is_empty() {
            let batch: Vec<usize> = queue.iter().take(DISPATCH_BATCH).copied().collect();
            let sized: Vec<(Priority, TaskSize)> =
                batch.iter().map(|&j| (Priority::Medium, tasks[j].size)).collect();
            let mut loads: Vec<Load> = caps
                .iter()
                .zip(&in_flight)
                .map(|(&c, &n)| Load {
                    in_flight: n,
                    capacity: c.max(1),
                    expected_finish: 0.0,
                })
                .collect();
            let room = |_: usize, i: usize, l: &[Load]| l[i].in_flight < caps[i];
            let picks = place_batch(strategy, &mut expected, &ids, &mut loads, &sized, now, &room);
            let mut placed = HashSet::new();
            for (b, pick) in picks.into_iter().enumerate() {
                if let Some(i) = pick {
                    let j = batch[b];
                    in_flight[i] += 1;
                    running.push((now + tasks[j].seconds / cluster.speeds[i], i, j));
                    placed.insert(j);
                }
            }
            queue.retain(|j| !placed.contains(j));
        }
        let Some(next) = (0..running.len()).min_by(|&a, &b| running[a].0.total_cmp(&running[b].0)) else {
            assert!(
                queue.is_empty(),
                "tasks left with no worker running: no worker has a slot"
            );
            return now;
        };
        let (end, i, j) = running.swap_remove(next);
        now = end;
        in_flight[i] -= 1;
        let took = tasks[j].seconds / cluster.speeds[i];
        expected.released(&ids[i], Some(tasks[j].size), Some(took), in_flight[i] == 0);
    }
}

/// A seeded mixed batch: N and steps uniform in their ranges, either
/// kernel with even odds, each task's time the model's × (1 ± noise).
pub fn batch(args: &MakespanArgs, seconds_per_unit: &dyn Fn(&str) -> f64) -> Vec<SimTask> {
    let mut rng = SplitMix64::new(args.seed);
    let mut uniform = |lo: u64, hi: u64| lo + (rng.next_unit() * (hi - lo + 1) as f64) as u64;
    let mut out = Vec::with_capacity(args.tasks);
    for _ in 0..args.tasks {
        let kernel = if uniform(0, 1) == 0 {
            "optimized"
        } else {
            "reference"
        };
        let particles = uniform(args.particles[0], args.particles[1]);
        let steps = uniform(args.steps[0], args.steps[1]);
        let blur = 1.0 + args.noise * (2.0 * (uniform(0, 1_000_000) as f64 / 1e6) - 1.0);
        let size = TaskSize {
            kernel: kernel_named(kernel),
            particles,
            steps,
        };
        out.push(SimTask {
            size,
            seconds: size.work() * seconds_per_unit(kernel) * blur,
        });
    }
    out
}

/// A kernel of the registry by its name (the bench names only real ones).
fn kernel_named(name: &str) -> KernelName {
    KernelName::resolve(name).expect("the bench names registered kernels")
}

/// Seconds per work unit of `kernel` on one thread of this machine: the
/// median over real runs of two sizes, three times each. Prints them.
fn calibrate(kernel: &'static str) -> Option<f64> {
    let sizes: [(u64, u64); 2] = match kernel {
        "reference" => [(300, 200), (1000, 20)],
        _ => [(300, 2000), (3000, 300)],
    };
    let mut rates = Vec::new();
    let mut shown = Vec::new();
    for (particles, steps) in sizes {
        let size = TaskSize {
            kernel: kernel_named(kernel),
            particles,
            steps,
        };
        let mut here = Vec::new();
        for _ in 0..3 {
            let (_, elapsed) = measure(kernel, particles, steps, 1, None)?;
            here.push(size.work() / elapsed);
        }
        here.sort_by(f64::total_cmp);
        shown.push(format!("N={particles} steps={steps}: {:.3e}/s", here[1]));
        rates.extend(here);
    }
    rates.sort_by(f64::total_cmp);
    let rate = (rates[2] + rates[3]) / 2.0;
    println!("  {kernel}: {rate:.3e} units/s ({})", shown.join(", "));
    Some(1.0 / rate)
}

fn check(args: &MakespanArgs) -> Result<(), String> {
    if args.capacities.is_empty() || args.capacities.len() != args.speeds.len() {
        return Err(format!(
            "--capacities has {} workers and --speeds {}: give one speed per worker",
            args.capacities.len(),
            args.speeds.len()
        ));
    }
    if args.capacities.contains(&0) {
        return Err("--capacities: every worker needs at least one slot".into());
    }
    if args.speeds.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err("--speeds: every speed must be a number above 0".into());
    }
    for (name, r) in [("--particles", &args.particles), ("--steps", &args.steps)] {
        if r.len() != 2 || r[0] > r[1] || r[0] == 0 {
            return Err(format!(
                "{name}: expected LOW,HIGH with 0 < LOW ≤ HIGH, found {r:?}"
            ));
        }
    }
    if args.particles[0] < 2 {
        return Err("--particles: a simulation needs at least 2 particles".into());
    }
    if !(0.0..1.0).contains(&args.noise) {
        return Err(format!(
            "--noise: expected a fraction in [0, 1), found {}",
            args.noise
        ));
    }
    if args.tasks == 0 {
        return Err("--tasks: expected at least one task".into());
    }
    Ok(())
}

pub fn makespan(args: &MakespanArgs) -> ExitCode {
    if let Err(e) = check(args) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let per_unit: [(&str, f64); 2] = if args.no_calibration {
        println!("calibration skipped: built-in prior speeds");
        ["optimized", "reference"].map(|k| (k, 1.0 / prior_speed(k)))
    } else {
        println!("calibration (real runs of the simulation, one thread; optimized N·steps/s, reference N²·steps/s):");
        let mut out = [("optimized", 0.0), ("reference", 0.0)];
        for (kernel, v) in out.iter_mut() {
            match calibrate(kernel) {
                Some(s) => *v = s,
                None => {
                    eprintln!("error: a calibration run of {kernel} failed");
                    return ExitCode::FAILURE;
                }
            }
        }
        out
    };
    let seconds_per_unit = |k: &str| per_unit.iter().find(|(n, _)| *n == k).map_or(0.0, |(_, v)| *v);
    let tasks = batch(args, &seconds_per_unit);
    let cluster = SimCluster {
        capacities: args.capacities.clone(),
        speeds: args.speeds.clone(),
    };
    let workers: Vec<String> = cluster
        .capacities
        .iter()
        .zip(&cluster.speeds)
        .enumerate()
        .map(|(i, (c, s))| format!("w{} capacity {c} speed {s}", i + 1))
        .collect();
    let total: f64 = tasks.iter().map(|t| t.seconds).sum();
    let largest = tasks.iter().map(|t| t.seconds).fold(0.0, f64::max);
    let reference = tasks.iter().filter(|t| t.size.kernel == "reference").count();
    println!(
        "batch: {} tasks (seed {}), N {}–{}, steps {}–{}, reference {reference} / optimized {}, one priority; \
         each time ±{:.0}% off the model",
        tasks.len(),
        args.seed,
        args.particles[0],
        args.particles[1],
        args.steps[0],
        args.steps[1],
        tasks.len() - reference,
        args.noise * 100.0
    );
    println!("workers (simulated, discrete events): {}", workers.join(", "));
    let bound = cluster.lower_bound(&tasks);
    println!(
        "work: {total:.1} s at speed 1, largest task {largest:.2} s; lower bound {bound:.2} s \
         = max(total / Σ capacity·speed, largest / fastest speed)"
    );
    println!();
    println!(
        "{:<26} {:<16} {:>12} {:>8}",
        "strategy", "speeds", "makespan", "ratio"
    );
    let mut rows: Vec<(&str, &str, f64)> = Vec::new();
    for b in [Balancing::RoundRobin, Balancing::LeastLoaded] {
        let mut s = strategy(b);
        rows.push((
            b.as_str(),
            "not used",
            simulate(s.as_mut(), Expected::new(), &cluster, &tasks),
        ));
    }
    let sef = Balancing::ShortestExpectedFinish;
    let known = cluster.known(&seconds_per_unit);
    rows.push((
        sef.as_str(),
        "known",
        simulate(strategy(sef).as_mut(), known, &cluster, &tasks),
    ));
    rows.push((
        sef.as_str(),
        "learned online",
        simulate(strategy(sef).as_mut(), Expected::new(), &cluster, &tasks),
    ));
    for (name, speeds, m) in rows {
        println!("{name:<26} {speeds:<16} {:>10.3} s {:>8.3}", m, m / bound);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
#[path = "makespan_tests.rs"]
mod tests;
