//! `orquesta bench cluster workers [SIZES]`: how the orchestrator's costs
//! grow with the number of workers (issue 21, item 7), one row per size:
//!
//! - up to `--max-processes` workers: real one-slot worker processes that
//!   join with `--join`, as a user starts them, then `--tasks` trivial
//!   tasks (20,000 by default) dropped by a rename: tasks/s and the
//!   orchestrator's CPU per task;
//! - beyond it: ids served by the bench itself ([`super::fleet`], one
//!   port each), all joining at once: the time until every one is `up`.
//!
//! At every size, once all are up and idle: the orchestrator's CPU per
//! worker and second (heartbeats, re-joins), `GET /workers` (whole, and a
//! page of 100), `GET /metrics/prometheus` and the first dashboard
//! snapshot (`GET /events`): latency and size. The children run with
//! `up`'s defaults (INFO logs); `ORQUESTA_BENCH_BINARY` measures another
//! build the same way.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::json;

use super::cluster::{spread, ClusterBenchArgs, TRIVIAL};
use super::fleet::Fleet;
use super::local::{http_get, task_file, DropBy, LocalCluster};
use super::procfs;

/// How long the idle cost is measured, once every worker is up.
const IDLE_WINDOW: Duration = Duration::from_secs(6);

/// One size's figures.
#[derive(Debug, Default)]
struct Row {
    workers: usize,
    processes: bool,
    /// From the first join (or the first process started) to all up.
    up_seconds: f64,
    refused_joins: usize,
    tasks_per_second: Option<f64>,
    orchestrator_us_per_task: Option<f64>,
    /// Orchestrator CPU per worker and second while idle, µs.
    idle_us_per_worker_second: Option<f64>,
    workers_list: Probe,
    workers_page: Probe,
    prometheus: Probe,
    dashboard: Probe,
}

/// A GET's median latency and its size.
#[derive(Debug, Default, Clone, Copy)]
struct Probe {
    ms: f64,
    bytes: usize,
}

pub fn run(args: &ClusterBenchArgs) -> Result<(), String> {
    let tasks = args.tasks.unwrap_or(20_000).max(1);
    if !args.json {
        println!(
            "cluster workers: one orchestrator (INFO logs), one-slot workers joined with --join (real processes up to {}, \
             beyond that ids served by the bench, membership only); {tasks} trivial tasks on real processes",
            args.max_processes
        );
        println!(
            "  {:>7} {:>9} {:>8} {:>9} {:>10} {:>11} {:>16} {:>16} {:>16} {:>10}",
            "workers",
            "kind",
            "all up s",
            "tasks/s",
            "orch µs/t",
            "idle µs/w·s",
            "/workers ms/KB",
            "?limit=100 ms/KB",
            "prometheus ms/KB",
            "dash KB"
        );
    }
    let mut rows = Vec::new();
    for &n in &args.sizes {
        let row = one_size(n.max(1), args.max_processes, tasks)?;
        if args.json {
            println!("{}", to_json(&row));
        } else {
            print_row(&row);
        }
        rows.push(row);
    }
    let rates: Vec<(usize, f64)> = rows
        .iter()
        .filter_map(|r| r.tasks_per_second.map(|t| (r.workers, t)))
        .collect();
    if let (false, [first, .., last]) = (args.json, rates.as_slice()) {
        println!(
            "  tasks/s on {} workers / on {}: {:.2}×",
            last.0,
            first.0,
            last.1 / first.1
        );
    }
    if !args.json {
        println!();
    }
    Ok(())
}

fn one_size(n: usize, max_processes: usize, tasks: usize) -> Result<Row, String> {
    let mut row = Row {
        workers: n,
        processes: n <= max_processes,
        ..Row::default()
    };
    let env = [("MAX_WORKERS", (n + 64).to_string())];
    let mut cluster = LocalCluster::orchestrator_only(&env)?;
    let pid = cluster.orchestrator_pid();
    let limit = Duration::from_secs(600);
    // kept until the row is measured: the fleet serves its ids meanwhile
    let mut _fleet = None;
    if row.processes {
        let t0 = Instant::now();
        cluster.join_workers(1, n, 1)?;
        cluster.wait_up(n, limit)?;
        row.up_seconds = t0.elapsed().as_secs_f64();
    } else {
        let fleet = Fleet::start("f", n)?;
        let t0 = Instant::now();
        let (_, refused) = fleet.join_all(&format!("http://{}", cluster.addr))?;
        row.refused_joins = refused;
        cluster.wait_up(n, limit)?;
        row.up_seconds = t0.elapsed().as_secs_f64();
        _fleet = Some(fleet);
    }
    // settled: the joins' answers and first status reads are over
    std::thread::sleep(Duration::from_secs(2));
    let c0 = procfs::cpu_seconds(pid);
    std::thread::sleep(IDLE_WINDOW);
    let c1 = procfs::cpu_seconds(pid);
    row.idle_us_per_worker_second = c0
        .zip(c1)
        .map(|(a, b)| (b - a) / (n as f64 * IDLE_WINDOW.as_secs_f64()) * 1e6);
    row.workers_list = probe(&cluster.addr, "/workers", 5)?;
    row.workers_page = probe(&cluster.addr, "/workers?limit=100", 5)?;
    row.prometheus = probe(&cluster.addr, "/metrics/prometheus", 5)?;
    row.dashboard = first_snapshot(&cluster.addr)?;
    if row.processes {
        let text = task_file("t", tasks, TRIVIAL.algorithm, TRIVIAL.particles, TRIVIAL.steps);
        let cpu0 = procfs::cpu_seconds(pid);
        let (t0, dropped_at) = cluster.drop_as("bulk.json", &text, DropBy::Rename)?;
        cluster.wait_ended(tasks as u64, Duration::from_millis(50), Duration::from_secs(900))?;
        let recorded = cluster.wait_recorded(tasks, Duration::from_secs(60))?;
        let seen = t0.elapsed().as_secs_f64();
        let cpu1 = procfs::cpu_seconds(pid);
        let wall = recorded
            .last_write
            .map(|t| t - dropped_at)
            .filter(|d| *d > 0.0 && *d <= seen)
            .unwrap_or(seen);
        if recorded.tasks < tasks || recorded.duplicates > 0 {
            return Err(format!(
                "{n} workers: {} of {tasks} tasks recorded, {} twice",
                recorded.tasks, recorded.duplicates
            ));
        }
        row.tasks_per_second = Some(tasks as f64 / wall);
        row.orchestrator_us_per_task = cpu0.zip(cpu1).map(|(a, b)| (b - a) / tasks as f64 * 1e6);
    }
    Ok(row)
}

/// `times` GETs of `path`: the median latency and the size.
fn probe(addr: &str, path: &str, times: usize) -> Result<Probe, String> {
    let mut ms = Vec::new();
    let mut bytes = 0;
    for _ in 0..times {
        let a = http_get(addr, path, Duration::from_secs(30))?;
        if a.status != 200 {
            return Err(format!("GET {path} answered {}", a.status));
        }
        ms.push(a.elapsed.as_secs_f64() * 1e3);
        bytes = a.body.len();
    }
    let ms = spread(&ms)["median"].as_f64().unwrap_or(f64::NAN);
    Ok(Probe { ms, bytes })
}

/// Opens the dashboard's stream and reads its first snapshot: the time to
/// it and its size (the `data:` line).
fn first_snapshot(addr: &str) -> Result<Probe, String> {
    let fail = |e: std::io::Error| format!("GET /events: {e}");
    let t0 = Instant::now();
    let mut s = std::net::TcpStream::connect(addr).map_err(fail)?;
    s.set_read_timeout(Some(Duration::from_secs(30))).map_err(fail)?;
    let auth = crate::cli::client::token()
        .map(|t| format!("Authorization: {}\r\n", t.bearer()))
        .unwrap_or_default();
    write!(
        s,
        "GET /events HTTP/1.1\r\nHost: {addr}\r\n{auth}Accept: text/event-stream\r\n\r\n"
    )
    .map_err(fail)?;
    let mut got = Vec::new();
    let mut buf = [0u8; 64 << 10];
    loop {
        let k = s.read(&mut buf).map_err(fail)?;
        if k == 0 {
            return Err("GET /events: the stream ended before a snapshot".into());
        }
        got.extend_from_slice(&buf[..k]);
        let text = String::from_utf8_lossy(&got);
        if let Some(start) = text.find("data: ") {
            if let Some(len) = text[start..].find("\n\n") {
                return Ok(Probe {
                    ms: t0.elapsed().as_secs_f64() * 1e3,
                    bytes: len - "data: ".len(),
                });
            }
        }
    }
}

fn print_row(r: &Row) {
    let opt = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |v| format!("{v:.d$}"));
    let p = |p: Probe| format!("{:.1} / {:.0}", p.ms, p.bytes as f64 / 1e3);
    println!(
        "  {:>7} {:>9} {:>8.2} {:>9} {:>10} {:>11} {:>16} {:>16} {:>16} {:>10.1}",
        r.workers,
        if r.processes { "processes" } else { "bench ids" },
        r.up_seconds,
        opt(r.tasks_per_second, 0),
        opt(r.orchestrator_us_per_task, 1),
        opt(r.idle_us_per_worker_second, 1),
        p(r.workers_list),
        p(r.workers_page),
        p(r.prometheus),
        r.dashboard.bytes as f64 / 1e3,
    );
    if r.refused_joins > 0 {
        println!("          {} joins refused", r.refused_joins);
    }
}

fn to_json(r: &Row) -> serde_json::Value {
    let p = |p: Probe| json!({"ms": p.ms, "bytes": p.bytes});
    json!({
        "case": "workers", "workers": r.workers,
        "kind": if r.processes { "processes" } else { "bench_ids" },
        "all_up_seconds": r.up_seconds, "refused_joins": r.refused_joins,
        "tasks_per_second": r.tasks_per_second,
        "orchestrator_cpu_us_per_task": r.orchestrator_us_per_task,
        "idle_cpu_us_per_worker_second": r.idle_us_per_worker_second,
        "workers_list": p(r.workers_list), "workers_page_100": p(r.workers_page),
        "prometheus": p(r.prometheus), "dashboard_first_snapshot": p(r.dashboard),
    })
}
