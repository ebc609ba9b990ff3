//! `orquesta bench cluster ingest`: a file of a million tiny tasks dropped
//! into `task_queues/` until it is accepted (moved to `processed/`, which
//! happens only after the commit), the orchestrator's resident memory at
//! its peak and after, and then, with every task stored and the workers
//! running the batch, how long the read endpoints take (median and max of
//! a few calls each).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::cluster::{spread, ClusterBenchArgs, TRIVIAL};
use super::local::{http_get, task_file, LocalCluster};
use super::procfs;

/// Calls of each endpoint per run.
const CALLS: usize = 5;

/// One run's figures.
struct IngestFigures {
    tasks: usize,
    file_bytes: usize,
    accept_seconds: f64,
    rss_peak: Option<u64>,
    rss_after: Option<u64>,
    /// (endpoint, the calls' times in ms, sorted)
    latencies: Vec<(String, Vec<f64>)>,
}

impl IngestFigures {
    fn tasks_per_second(&self) -> f64 {
        self.tasks as f64 / self.accept_seconds
    }
}

fn mb(bytes: Option<u64>) -> f64 {
    bytes.map_or(f64::NAN, |b| b as f64 / 1e6)
}

/// The endpoints timed, with 1M tasks stored: a queued page, one task in
/// the middle of the file, one worker's tasks, the two a monitor polls,
/// the files with their kept counts, and the file filter and the sorts of
/// `GET /tasks`.
fn endpoints(tasks: usize) -> Vec<String> {
    vec![
        "/health".into(),
        "/stats".into(),
        "/tasks?status=queued&limit=100".into(),
        format!("/tasks/bulk{}", tasks / 2),
        "/tasks?worker=w1".into(),
        "/files".into(),
        "/files/1".into(),
        "/tasks?file=bulk.json&limit=100".into(),
        "/tasks?sort=-created_at&limit=100".into(),
        "/tasks?status=queued&sort=priority&limit=100".into(),
    ]
}

fn ingest_run(workers: usize, slots: usize, tasks: usize) -> Result<IngestFigures, String> {
    let cluster = LocalCluster::start(workers, slots)?;
    let text = task_file("bulk", tasks, TRIVIAL.algorithm, TRIVIAL.particles, TRIVIAL.steps);
    let pid = cluster.orchestrator_pid();
    let t0 = cluster.drop_file("bulk.json", &text)?;
    let file_bytes = text.len();
    drop(text);
    cluster.wait_accepted("bulk.json", Duration::from_secs(1800))?;
    let accept_seconds = t0.elapsed().as_secs_f64();
    let memory = procfs::rss(pid);
    let mut latencies = Vec::new();
    for path in endpoints(tasks) {
        let mut times = Vec::new();
        for _ in 0..CALLS {
            let started = Instant::now();
            let answer = http_get(&cluster.addr, &path, Duration::from_secs(120))?;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            if answer.status != 200 {
                return Err(format!("GET {path} answered {}: {}", answer.status, answer.body));
            }
            times.push(ms);
        }
        times.sort_by(f64::total_cmp);
        latencies.push((path, times));
    }
    let stored = cluster.get_json("/stats")?["tasks"]["total"]
        .as_u64()
        .unwrap_or(0);
    if stored < tasks as u64 {
        return Err(format!(
            "the file was accepted but /stats counts {stored} of {tasks} tasks"
        ));
    }
    Ok(IngestFigures {
        tasks,
        file_bytes,
        accept_seconds,
        rss_peak: memory.map(|(_, peak)| peak),
        rss_after: memory.map(|(now, _)| now),
        latencies,
    })
}

pub fn run(args: &ClusterBenchArgs) -> Result<(), String> {
    let tasks = args.tasks.unwrap_or(1_000_000).max(1);
    let (workers, slots) = (args.workers.max(1), args.slots.max(1));
    if !args.json {
        println!(
            "cluster ingest: one file of {tasks} tiny tasks dropped into task_queues/ until accepted (moved to processed/), {workers} workers x {slots} slot{} running it",
            if slots == 1 { "" } else { "s" }
        );
    }
    let mut runs = Vec::new();
    for i in 1..=args.runs.max(1) {
        let r = ingest_run(workers, slots, tasks)?;
        if !args.json {
            println!(
                "  run {i}: {:.1} MB accepted in {:.2} s = {:.0} tasks/s; orchestrator RSS peak {:.0} MB, after {:.0} MB",
                r.file_bytes as f64 / 1e6,
                r.accept_seconds,
                r.tasks_per_second(),
                mb(r.rss_peak),
                mb(r.rss_after)
            );
            println!(
                "    {:<34} {:>10} {:>10}   ({CALLS} calls, {tasks} tasks stored)",
                "endpoint", "median ms", "max ms"
            );
            for (path, times) in &r.latencies {
                println!(
                    "    {path:<34} {:>10.2} {:>10.2}",
                    times[times.len() / 2],
                    times[times.len() - 1]
                );
            }
        }
        runs.push(r);
    }
    let pick = |f: &dyn Fn(&IngestFigures) -> f64| spread(&runs.iter().map(f).collect::<Vec<_>>());
    let mut endpoint_figures = serde_json::Map::new();
    for path in endpoints(tasks) {
        let of = |f: fn(&[f64]) -> f64| {
            spread(
                &runs
                    .iter()
                    .filter_map(|r| r.latencies.iter().find(|(p, _)| *p == path))
                    .map(|(_, t)| f(t))
                    .collect::<Vec<_>>(),
            )
        };
        endpoint_figures.insert(
            path.clone(),
            json!({"median_ms": of(|t| t[t.len() / 2]), "max_ms": of(|t| t[t.len() - 1])}),
        );
    }
    let summary: Value = json!({
        "case": "ingest", "workers": workers, "slots": slots, "tasks": tasks,
        "file_bytes": runs[0].file_bytes,
        "accept_seconds": pick(&|r| r.accept_seconds),
        "tasks_per_second": pick(&|r| r.tasks_per_second()),
        "orchestrator_rss_peak_mb": pick(&|r| mb(r.rss_peak)),
        "orchestrator_rss_after_mb": pick(&|r| mb(r.rss_after)),
        "calls_per_endpoint": CALLS,
        "endpoints": endpoint_figures,
    });
    if args.json {
        println!("{summary}");
    } else {
        if runs.len() > 1 {
            let f = |k: &str, s: &str| summary[k][s].as_f64().unwrap_or(f64::NAN);
            println!(
                "  over {} runs: tasks/s median {:.0} (min {:.0}, max {:.0}); RSS peak median {:.0} MB",
                runs.len(),
                f("tasks_per_second", "median"),
                f("tasks_per_second", "min"),
                f("tasks_per_second", "max"),
                f("orchestrator_rss_peak_mb", "median")
            );
        }
        println!();
    }
    Ok(())
}
