//! `orquesta bench e2e`: end to end on a local cluster of separate
//! processes ([`super::local::LocalCluster`]): the time from dropping a
//! one-task file to its dispatch, then a file of tiny tasks until every
//! one has ended. `bench cluster trivial` is the same throughput figure
//! with issue 12's defaults (1 slot per worker), the CPU per process and
//! the results files checked.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use super::local::{http_get, task_file, LocalCluster};

#[derive(Args, Debug)]
pub struct E2eBenchArgs {
    /// Tiny tasks (N = 16, one step) in the throughput file.
    #[arg(long, default_value_t = 10_000)]
    pub tasks: usize,
    /// Worker processes to start.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Capacity of each worker.
    #[arg(long, default_value_t = 8)]
    pub capacity: usize,
    /// Single-task files dropped to time the drop-to-first-dispatch latency.
    #[arg(long, default_value_t = 5)]
    pub latency_samples: usize,
}

/// End to end on a local cluster of separate processes: a file of tiny
/// tasks dropped into task_queues/ until every result is recorded, and
/// the time from dropping a one-task file to its dispatch.
pub fn e2e(args: &E2eBenchArgs) -> ExitCode {
    match run_e2e(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_e2e(args: &E2eBenchArgs) -> Result<(), String> {
    let cluster = LocalCluster::start(args.workers, args.capacity)?;
    let queue = cluster.queue_dir();

    // drop-to-first-dispatch latency: a file copied in as a user would
    let mut latencies = Vec::new();
    for i in 0..args.latency_samples {
        let id = format!("lat{i}");
        let text = task_file(&id, 1, "cython", 16, 1);
        let id = format!("{id}0");
        // at the millisecond, like the `started_at` it is compared with:
        // otherwise the truncated start can come out before the drop
        let dropped = (crate::util::time::unix_now() * 1e3).floor() / 1e3;
        std::fs::write(queue.join(format!("latency_{i}.json")), text).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let a = http_get(&cluster.addr, &format!("/tasks/{id}"), Duration::from_secs(5))?;
            if a.status == 200 {
                let v: serde_json::Value = serde_json::from_str(&a.body).map_err(|e| e.to_string())?;
                if let Some(started) = v["started_at"].as_str().and_then(crate::util::time::parse_iso) {
                    latencies.push(started - dropped);
                    break;
                }
            }
            if Instant::now() > deadline {
                return Err(format!("{id} was never dispatched"));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    latencies.sort_by(f64::total_cmp);

    // throughput: one file of many tiny tasks, until every one has ended
    let text = task_file("bulk", args.tasks, "cython", 16, 1);
    let before = cluster.ended()?.total();
    let t0 = cluster.drop_file("bulk.json", &text)?;
    let ended = cluster.wait_ended(
        before + args.tasks as u64,
        Duration::from_millis(50),
        Duration::from_secs(600),
    )?;
    let wall = t0.elapsed().as_secs_f64();
    let rate = args.tasks as f64 / wall;
    println!(
        "end to end: {} workers x capacity {}, tiny tasks (N=16, 1 step, cython), one file dropped into task_queues/",
        args.workers, args.capacity
    );
    println!("  tasks                    {}", args.tasks);
    println!("  drop to last result      {wall:.3} s");
    println!("  throughput               {rate:.0} tasks/s");
    println!("  wall time per task       {:.1} µs", 1e6 / rate);
    if ended.failed + ended.cancelled > 0 {
        println!(
            "  failed / cancelled       {} / {}",
            ended.failed, ended.cancelled
        );
    }
    let since = cluster.get_json("/stats")?["since_start"].clone();
    println!(
        "  attempts refused / lost  {} / {}",
        since["refused_attempts"], since["lost_attempts"]
    );
    if !latencies.is_empty() {
        println!(
            "  drop-to-first-dispatch   median {:.1} ms, max {:.1} ms ({} samples, 1 ms resolution)",
            latencies[latencies.len() / 2] * 1e3,
            latencies[latencies.len() - 1] * 1e3,
            latencies.len()
        );
    }
    Ok(())
}
