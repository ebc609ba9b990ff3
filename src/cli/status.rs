//! `orquesta status [--url URL] [--json] [--watch]`: the orchestrator at a
//! glance from `GET /workers` and `GET /stats`: workers (state, load bar,
//! tasks done, mean time) and the queue by status and priority, as aligned
//! tables; `--json` for scripts; `--watch` redraws every few seconds.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};

use super::client::{self, CallError, Endpoint};
use super::table::{bar, duration, print_text, Table};
use crate::model::{Priority, TaskStatus};

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

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The tables for people.
pub fn render(endpoint: &Endpoint, snapshot: &Value) -> String {
    let stats = &snapshot["stats"];
    let workers = snapshot["workers"]["workers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let up = workers.iter().filter(|w| w["up"] == json!(true)).count();
    let mut out = format!(
        "orchestrator {}: version {}, up {}, {} balancing, {up} of {} workers up\n",
        endpoint.url(),
        text(&stats["version"]),
        duration(stats["uptime_seconds"].as_f64().unwrap_or(0.0)),
        text(&stats["load_balancing_algorithm"]),
        workers.len()
    );
    let throughput = &stats["throughput"];
    if let Some(t) = throughput["tasks_per_second_60s"].as_f64() {
        out.push_str(&format!(
            "throughput: {t:.2} tasks/s over the last minute, {:.2} since start\n",
            throughput["tasks_per_second_overall"].as_f64().unwrap_or(0.0)
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
    for w in &workers {
        let load = w["load"].as_f64().unwrap_or(0.0);
        table.row(vec![
            text(&w["id"]),
            text(&w["state"]),
            format!("{} {:>3.0}%", bar(load, 10), load * 100.0),
            format!("{}/{}", text(&w["in_flight"]), text(&w["capacity"])),
            text(&w["tasks_completed"]),
            text(&w["tasks_failed"]),
            w["mean_execution_time"]
                .as_f64()
                .map_or_else(|| "-".into(), duration),
            text(&w["address"]),
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
    let by_priority = &stats["tasks"]["by_priority"];
    for p in Priority::ALL.map(Priority::as_str) {
        let counts: Vec<u64> = TaskStatus::ALL
            .iter()
            .map(|s| by_priority[p][s.as_str()].as_u64().unwrap_or(0))
            .collect();
        let mut row = vec![p.to_string()];
        row.extend(counts.iter().map(u64::to_string));
        row.push(counts.iter().sum::<u64>().to_string());
        queue.row(row);
    }
    let by_status = &stats["tasks"]["by_status"];
    let mut row = vec!["all".to_string()];
    row.extend(
        TaskStatus::ALL
            .iter()
            .map(|s| by_status[s.as_str()].as_u64().unwrap_or(0).to_string()),
    );
    row.push(text(&stats["tasks"]["total"]));
    queue.row(row);
    out.push_str(&queue.render(""));
    out.push('\n');
    out
}

/// `orquesta status`.
pub fn run(args: &StatusArgs) -> ExitCode {
    let endpoint = match Endpoint::from_flag(args.url.as_deref()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: --url: {e}");
            return ExitCode::from(2);
        }
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
            Ok(snapshot) => print_text(&render(&endpoint, snapshot)),
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

    #[test]
    fn tables_from_a_snapshot() {
        let snapshot = json!({
            "workers": {"workers": [
                {"id": "worker1", "state": "up", "up": true, "load": 0.5, "in_flight": 1, "capacity": 2,
                 "tasks_completed": 10, "tasks_failed": 0, "mean_execution_time": 0.125, "address": "127.0.0.1:5001"},
                {"id": "w2", "state": "down", "up": false, "load": 0.0, "in_flight": 0, "capacity": 4,
                 "tasks_completed": 0, "tasks_failed": 1, "mean_execution_time": null, "address": "10.0.0.2:5002"}
            ]},
            "stats": {"version": "0.1.0", "uptime_seconds": 125.0, "load_balancing_algorithm": "least_loaded",
                "tasks": {"total": 12, "by_status": {"queued": 1, "running": 1, "completed": 10},
                    "by_priority": {"high": {"completed": 10}, "low": {"queued": 1, "running": 1}}}}
        });
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
