//! `orquesta status [--url URL] [--json] [--watch]`: the orchestrator at a
//! glance from `GET /workers` and `GET /stats`: workers (state, load bar,
//! tasks done, mean time) and the queue by status and priority, as aligned
//! tables; `--json` for scripts; `--watch` redraws every few seconds.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;
use serde_json::{json, Value};

use super::client::{self, CallError, Endpoint};
use super::table::{bar, duration, print_text, Table};
use crate::model::{Priority, TaskStatus};
use crate::orchestrator::board::WorkerInfo;
use crate::orchestrator::config_watcher::ConfigStatus;
use crate::orchestrator::task_queue::Throughput;
use crate::protocol::stats::Stats;
use crate::protocol::workers::WorkerList;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The orchestrator [default: http://ORCHESTRATOR_HOST:ORCHESTRATOR_PORT,
    /// else http://127.0.0.1:5000].
    #[arg(long)]
    pub url: Option<String>,
    /// Print {"workers": …, "stats": …} as JSON (one line per refresh with --watch).
    #[arg(long)]
    pub json: bool,
    /// Refresh every SECONDS (default 2) until Ctrl-C.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2")]
    pub watch: Option<f64>,
}

const TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /workers` and `GET /stats` together.
pub fn fetch(endpoint: &Endpoint) -> Result<Value, CallError> {
    let workers = client::get_json(endpoint, "/workers", TIMEOUT)?;
    let stats = client::get_json(endpoint, "/stats", TIMEOUT)?;
    Ok(json!({"workers": workers, "stats": stats}))
}

/// The two answers read as their types, for the tables.
#[derive(Debug, Clone, Deserialize)]
pub struct Snapshot {
    pub workers: WorkerList<WorkerInfo, ConfigStatus>,
    /// The queue's own figures stay `Value`s: the tables do not show them.
    pub stats: Stats<Value, Value, Option<Throughput>>,
}

/// The tables for people.
pub fn render(endpoint: &Endpoint, snapshot: &Snapshot) -> String {
    let stats = &snapshot.stats;
    let workers = &snapshot.workers.workers;
    let up = workers.iter().filter(|w| w.up).count();
    let mut out = format!(
        "orchestrator {}: version {}, up {}, {} balancing, {up} of {} workers up\n",
        endpoint.url(),
        stats.version,
        duration(stats.uptime_seconds),
        stats.load_balancing_algorithm,
        workers.len()
    );
    if let Some(t) = &stats.throughput {
        out.push_str(&format!(
            "throughput: {:.2} tasks/s over the last minute, {:.2} since start\n",
            t.tasks_per_second_60s, t.tasks_per_second_overall
        ));
    }
    out.push('\n');
    let mut table = Table::new(&[
        "worker",
        "state",
        "load",
        "running",
        "done",
        "failed",
        "mean time",
        "address",
    ])
    .right(&[3, 4, 5, 6]);
    for w in workers {
        table.row(vec![
            w.id.clone(),
            w.state.to_string(),
            format!("{} {:>3.0}%", bar(w.load, 10), w.load * 100.0),
            format!("{}/{}", w.in_flight, w.capacity),
            w.tasks_completed.to_string(),
            w.tasks_failed.to_string(),
            w.mean_execution_time.map_or_else(|| "-".into(), duration),
            w.address.clone(),
        ]);
    }
    if table.is_empty() {
        out.push_str("no workers configured\n");
    } else {
        out.push_str(&table.render(""));
        out.push('\n');
    }
    out.push('\n');
    let mut header = vec!["priority"];
    header.extend(TaskStatus::ALL.map(TaskStatus::as_str));
    header.push("total");
    let mut queue = Table::new(&header).right(&[1, 2, 3, 4, 5, 6]);
    for p in Priority::ALL {
        let of = stats.tasks.by_priority.get(&p);
        let counts: Vec<u64> = TaskStatus::ALL
            .iter()
            .map(|s| of.and_then(|c| c.get(s)).copied().unwrap_or(0))
            .collect();
        let mut row = vec![p.as_str().to_string()];
        row.extend(counts.iter().map(u64::to_string));
        row.push(counts.iter().sum::<u64>().to_string());
        queue.row(row);
    }
    let mut row = vec!["all".to_string()];
    row.extend(
        TaskStatus::ALL
            .iter()
            .map(|s| stats.tasks.by_status.get(s).copied().unwrap_or(0).to_string()),
    );
    row.push(stats.tasks.total.to_string());
    queue.row(row);
    out.push_str(&queue.render(""));
    out.push('\n');
    out
}

/// `orquesta status`.
pub fn run(args: &StatusArgs) -> ExitCode {
    let endpoint = match Endpoint::from_url_flag(args.url.as_deref()) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let every = match args.watch {
        None => None,
        Some(s) if s.is_finite() && s >= 0.1 => Some(Duration::from_secs_f64(s)),
        Some(s) => {
            eprintln!("error: --watch: expected a number of seconds ≥ 0.1, found {s}");
            return ExitCode::from(2);
        }
    };
    let clear = std::io::stdout().is_terminal() && !args.json;
    loop {
        let result = fetch(&endpoint);
        if clear && every.is_some() {
            print!("\x1b[2J\x1b[H");
        }
        match &result {
            Ok(snapshot) if args.json && every.is_some() => print_text(&format!("{snapshot}\n")),
            Ok(snapshot) if args.json => print_text(&format!(
                "{}\n",
                serde_json::to_string_pretty(snapshot).unwrap_or_default()
            )),
            Ok(snapshot) => match client::answer::<Snapshot>(snapshot.clone()) {
                Ok(typed) => print_text(&render(&endpoint, &typed)),
                Err(e) => eprintln!("error: {}", client::unreachable_hint(&endpoint, &e)),
            },
            Err(e) => eprintln!("error: {}", client::unreachable_hint(&endpoint, e)),
        }
        match every {
            None => {
                return if result.is_ok() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Some(d) => std::thread::sleep(d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::board::WorkerState;
    use crate::protocol::stats::{TaskCounts, WorkerSummary};

    #[test]
    fn tables_from_a_snapshot() {
        let worker =
            |id: &str, state, load, in_flight, capacity, done, failed, mean, address: &str| WorkerInfo {
                id: id.into(),
                state,
                up: state == WorkerState::Up,
                load,
                in_flight,
                capacity,
                tasks_completed: done,
                tasks_failed: failed,
                mean_execution_time: mean,
                address: address.into(),
                ..WorkerInfo::default()
            };
        let workers = vec![
            worker(
                "worker1",
                WorkerState::Up,
                0.5,
                1,
                2,
                10,
                0,
                Some(0.125),
                "127.0.0.1:5001",
            ),
            worker("w2", WorkerState::Down, 0.0, 0, 4, 0, 1, None, "10.0.0.2:5002"),
        ];
        let tasks = TaskCounts::new(
            &[
                (TaskStatus::Queued, 1),
                (TaskStatus::Running, 1),
                (TaskStatus::Completed, 10),
            ],
            &[
                (Priority::High, TaskStatus::Completed, 10),
                (Priority::Low, TaskStatus::Queued, 1),
                (Priority::Low, TaskStatus::Running, 1),
            ],
        );
        let snapshot = Snapshot {
            workers: WorkerList {
                total: workers.len(),
                up: 1,
                by_state: Default::default(),
                offset: 0,
                workers,
                config: ConfigStatus {
                    path: "config_workers.json".into(),
                    valid: true,
                    error: None,
                },
            },
            stats: Stats {
                tasks,
                workers: WorkerSummary::default(),
                queue: Value::Null,
                since_start: Value::Null,
                throughput: None,
                uptime_seconds: 125.0,
                load_balancing_algorithm: "least_loaded".into(),
                version: "0.1.0".into(),
            },
        };
        let ep = Endpoint::parse("127.0.0.1:5000").unwrap();
        let text = render(&ep, &snapshot);
        assert_eq!(
            text,
            "orchestrator http://127.0.0.1:5000: version 0.1.0, up 2 min 05 s, least_loaded balancing, 1 of 2 workers up\n\n\
             worker   state  load             running  done  failed  mean time  address\n\
             worker1  up     █████░░░░░  50%      1/2    10       0     125 ms  127.0.0.1:5001\n\
             w2       down   ░░░░░░░░░░   0%      0/4     0       1          -  10.0.0.2:5002\n\n\
             priority  queued  running  completed  failed  cancelled  total\n\
             high           0        0         10       0          0     10\n\
             medium         0        0          0       0          0      0\n\
             low            1        1          0       0          0      2\n\
             all            1        1         10       0          0     12\n"
        );
    }
}
