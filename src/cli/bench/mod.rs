//! `orquesta bench …`: measurements that print the figures the issues ask
//! for. Speed is measured here, never asserted in tests.
//!
//! Here: `bench sim` (the kernels alone) and `bench worker` (one worker's
//! `/execute`). Beside it: `e2e.rs` (`bench e2e`), `cluster.rs` and
//! `ingest.rs` (`bench cluster`, issue 12's workloads), `workers.rs` and
//! `fleet.rs` (`bench cluster workers`, costs by cluster size), `local.rs` (the
//! throw-away local cluster they all start) and `procfs.rs` (CPU and
//! memory of its processes).

mod cluster;
mod e2e;
mod fleet;
mod ingest;
mod local;
mod procfs;
mod workers;

pub use cluster::{run as cluster, ClusterBenchArgs};
pub use e2e::{e2e, E2eBenchArgs};

use std::process::ExitCode;

mod makespan;
pub use self::makespan::{makespan, MakespanArgs};

use clap::Args;

use crate::cli::cluster::KillOnDrop;
use crate::sim::{self, lookup, Control, Limits, RunOptions, SimParams, SimStatus, KERNELS};
use crate::util::machine::available_threads;
use local::start_self;
use tempfile::TempDir;

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
    /// Record `metrics.thermo` every this many steps, to measure what the
    /// series costs [default: no series].
    #[arg(long, value_name = "STEPS")]
    pub thermo_every: Option<u64>,
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

fn measure(
    kernel: &str,
    particles: u64,
    steps: u64,
    threads: usize,
    thermo_every: Option<u64>,
) -> Option<(f64, f64)> {
    let params = SimParams {
        num_particles: particles,
        num_steps: steps,
        seed: 2024,
        thermo_every,
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
    // the width changes the speed of `optimized`, never its bits
    let (width, refused) = sim::simd::choice();
    if let Some(e) = refused {
        eprintln!("warning: {e}; running {width}");
    }
    // on stderr, so that stdout stays the table (or the JSON lines)
    let names: Vec<_> = sim::simd::Width::supported().iter().map(|w| w.name()).collect();
    eprintln!(
        "optimized kernel vectors: {width} (set {} to force one: {})",
        sim::simd::SIMD_ENV,
        names.join(", ")
    );
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
                let Some((rate, _)) = measure(kernel, n, probe_steps, threads, args.thermo_every) else {
                    eprintln!("error: {kernel} failed at N = {n}");
                    return ExitCode::FAILURE;
                };
                let mut steps = ((args.seconds * rate / n as f64) as u64).clamp(probe_steps, 1_000_000);
                if let Some(every) = args.thermo_every {
                    // no more rows than a task may ask for
                    steps = steps.min(every.saturating_mul(sim::MAX_THERMO_ROWS - 1));
                }
                let Some((rate, seconds)) = measure(kernel, n, steps, threads, args.thermo_every) else {
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

#[derive(Args, Debug)]
pub struct WorkerBenchArgs {
    /// A running worker to measure [default: start one here on a free port].
    #[arg(long)]
    pub url: Option<String>,
    /// Tasks to send.
    #[arg(long, default_value_t = 20_000)]
    pub requests: usize,
    /// Requests in flight at once (one keep-alive connection each).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Capacity of the worker started here.
    #[arg(long, default_value_t = 8)]
    pub capacity: usize,
}

/// Requests per second of tiny tasks (N = 16, one step) on `/execute`,
/// with keep-alive connections on loopback.
pub fn worker(args: &WorkerBenchArgs) -> ExitCode {
    // kept alive until the measurement ends: the worker, then its folder
    let mut _started: Option<(KillOnDrop, TempDir)> = None;
    let base = match &args.url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let started = tempfile::Builder::new()
                .prefix("orquesta-bench-")
                .tempdir()
                .map_err(|e| e.to_string())
                .and_then(|dir| {
                    let capacity = args.capacity.to_string();
                    let logs = dir.path().join("logs").to_string_lossy().into_owned();
                    let worker_args = [
                        "worker",
                        "--worker-id",
                        "bench",
                        "--port",
                        "0",
                        "--capacity",
                        &capacity,
                        "--logs-dir",
                        &logs,
                    ];
                    let (child, addr) = start_self("bench", &worker_args, dir.path())?;
                    Ok((child, dir, addr))
                });
            match started {
                Ok((child, dir, addr)) => {
                    _started = Some((child, dir));
                    format!("http://{addr}")
                }
                Err(e) => {
                    eprintln!("error: cannot start a worker: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let requests = args.requests.max(1);
    let concurrency = args.concurrency.clamp(1, requests);
    let outcome = actix_rt::System::new().block_on(drive_worker(base.clone(), requests, concurrency));
    match outcome {
        Ok(report) => {
            println!(
                "worker /execute, tiny tasks (N=16, 1 step), {concurrency} keep-alive connections, {base}"
            );
            println!("  requests        {}", report.done);
            println!("  refused (429)   {}", report.refused);
            println!("  seconds         {:.3}", report.seconds);
            println!("  requests/s      {:.0}", report.done as f64 / report.seconds);
            println!(
                "  latency ms      p50 {:.3}  p90 {:.3}  p99 {:.3}",
                report.latency_ms(0.50),
                report.latency_ms(0.90),
                report.latency_ms(0.99)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

struct DriveReport {
    done: usize,
    refused: usize,
    seconds: f64,
    latencies: Vec<f64>,
}

impl DriveReport {
    fn latency_ms(&self, q: f64) -> f64 {
        crate::util::stats::percentile(&self.latencies, q) * 1e3
    }
}

async fn drive_worker(base: String, requests: usize, concurrency: usize) -> Result<DriveReport, String> {
    use std::time::Instant;
    let mut client = awc::Client::builder().timeout(std::time::Duration::from_secs(60));
    if let Some(token) = super::client::token() {
        client = client.add_default_header((awc::http::header::AUTHORIZATION, token.bearer()));
    }
    let client = client.finish();
    let batch = format!("{:x}", std::process::id());
    let started = Instant::now();
    let mut handles = Vec::new();
    for lane in 0..concurrency {
        let client = client.clone();
        let (base, batch) = (base.clone(), batch.clone());
        handles.push(actix_rt::spawn(async move {
            let mut latencies = Vec::new();
            let mut refused = 0usize;
            let mut i = lane;
            let mut acks: Vec<String> = Vec::new();
            while i < requests {
                let task_id = format!("bench-{batch}-{i}");
                let body = serde_json::json!({
                    "task_id": task_id, "algorithm": "optimized",
                    "parameters": {"num_particles": 16, "num_steps": 1, "seed": i},
                });
                let t0 = Instant::now();
                let mut resp = client
                    .post(format!("{base}/execute"))
                    .send_json(&body)
                    .await
                    .map_err(|e| format!("request failed: {e}"))?;
                let _ = resp
                    .body()
                    .limit(1 << 20)
                    .await
                    .map_err(|e| format!("reading a response: {e}"))?;
                match resp.status().as_u16() {
                    200 => {
                        latencies.push(t0.elapsed().as_secs_f64());
                        acks.push(task_id);
                        i += concurrency;
                    }
                    429 => refused += 1,
                    other => return Err(format!("unexpected status {other}")),
                }
                if acks.len() >= 500 {
                    let ids = std::mem::take(&mut acks);
                    let _ = client
                        .post(format!("{base}/results/ack"))
                        .send_json(&serde_json::json!({ "task_ids": ids }))
                        .await;
                }
            }
            if !acks.is_empty() {
                let _ = client
                    .post(format!("{base}/results/ack"))
                    .send_json(&serde_json::json!({ "task_ids": acks }))
                    .await;
            }
            Ok::<_, String>((latencies, refused))
        }));
    }
    let mut report = DriveReport {
        done: 0,
        refused: 0,
        seconds: 0.0,
        latencies: Vec::new(),
    };
    for h in handles {
        let (lat, refused) = h.await.map_err(|e| format!("a client task died: {e}"))??;
        report.done += lat.len();
        report.refused += refused;
        report.latencies.extend(lat);
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.latencies.sort_by(f64::total_cmp);
    Ok(report)
}
