//! `orquesta workers [--url URL] [--json]`, `orquesta drain ID` and
//! `orquesta resume ID`: the orchestrator's members from `GET /workers` as a
//! table (id, source, state with its reason, load/capacity, done, failed,
//! mean time, address), and `POST /workers/{id}/drain` / `…/resume` for
//! taking a machine out for maintenance and back. Talks to the orchestrator
//! through `client.rs`, like `status`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use super::client::{self, Endpoint};
use super::table::{duration, print_text, Table};

#[derive(Args, Debug)]
pub struct WorkersArgs {
    /// The orchestrator [default: http://ORCHESTRATOR_HOST:ORCHESTRATOR_PORT,
    /// else http://127.0.0.1:5000].
    #[arg(long)]
    pub url: Option<String>,
    /// Print the orchestrator's `GET /workers` answer as JSON, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `drain ID` and `resume ID`.
#[derive(Args, Debug)]
pub struct WorkerActionArgs {
    /// The worker's id, as `orquesta workers` lists it.
    pub id: String,
    /// The orchestrator [default: http://ORCHESTRATOR_HOST:ORCHESTRATOR_PORT,
    /// else http://127.0.0.1:5000].
    #[arg(long)]
    pub url: Option<String>,
}

/// What `drain` and `resume` ask of the orchestrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Drain,
    Resume,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Drain => "drain",
            Action::Resume => "resume",
        }
    }

    /// `POST` path for worker `id`; the id is percent-encoded, so whatever
    /// the user typed reaches the server as one path segment.
    pub fn path(self, id: &str) -> String {
        format!("/workers/{}/{}", path_segment(id), self.verb())
    }
}

const TIMEOUT: Duration = Duration::from_secs(10);

/// `id` as one URL path segment: unreserved characters (and `:`, which
/// worker ids may hold) kept, every other byte as `%XX`.
fn path_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `state`, or `state (reason)` when the orchestrator gives a reason.
fn state_cell(w: &Value) -> String {
    let state = text(&w["state"]);
    match w["state_reason"].as_str().map(str::trim) {
        Some(reason) if !reason.is_empty() => format!("{state} ({reason})"),
        _ => state,
    }
}

/// The `GET /workers` answer for people: one summary line, a line when the
/// workers file is invalid, then the table.
pub fn render(endpoint: &Endpoint, answer: &Value) -> String {
    let workers = answer["workers"].as_array().cloned().unwrap_or_default();
    let up = answer["up"]
        .as_u64()
        .unwrap_or_else(|| workers.iter().filter(|w| w["state"] == "up").count() as u64);
    let mut out = format!(
        "orchestrator {}: {} workers, {up} up\n",
        endpoint.url(),
        workers.len()
    );
    let config = &answer["config"];
    if config["valid"] == Value::Bool(false) {
        out.push_str(&format!(
            "warning: {} is invalid, the last good configuration stays in force: {}\n",
            config["path"].as_str().unwrap_or("the workers file"),
            config["error"].as_str().unwrap_or("no reason given")
        ));
    }
    out.push('\n');
    let mut table = Table::new(&[
        "worker",
        "source",
        "state",
        "load",
        "done",
        "failed",
        "mean time",
        "address",
    ])
    .right(&[3, 4, 5, 6]);
    for w in &workers {
        table.row(vec![
            text(&w["id"]),
            text(&w["source"]),
            state_cell(w),
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
        out.push_str(
            "no workers: add one to config_workers.json or start one with \
             `orquesta worker --join URL`\n",
        );
    } else {
        out.push_str(&table.render(""));
        out.push('\n');
    }
    out
}

/// What `drain`/`resume` print from the orchestrator's `{"id", "state"}`.
pub fn render_action(action: Action, id: &str, answer: &Value) -> String {
    let state = answer["state"].as_str().unwrap_or("unknown");
    let id = answer["id"].as_str().unwrap_or(id);
    let hint = match (action, state) {
        (Action::Drain, "draining") => {
            ": no new tasks; running ones finish, then it is drained \
             (`orquesta workers` shows it)"
        }
        (Action::Drain, "drained") => ": nothing runs there; it can be stopped",
        _ => "",
    };
    format!("{id}: {state}{hint}\n")
}

/// `orquesta workers`.
pub fn run(args: &WorkersArgs) -> ExitCode {
    let endpoint = match Endpoint::from_flag(args.url.as_deref()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: --url: {e}");
            return ExitCode::from(2);
        }
    };
    match client::get_json(&endpoint, "/workers", TIMEOUT) {
        Ok(answer) if args.json => {
            print_text(&format!(
                "{}\n",
                serde_json::to_string_pretty(&answer).unwrap_or_default()
            ));
            ExitCode::SUCCESS
        }
        Ok(answer) => {
            print_text(&render(&endpoint, &answer));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", client::unreachable_hint(&endpoint, &e));
            ExitCode::FAILURE
        }
    }
}

/// `orquesta drain ID` and `orquesta resume ID`.
pub fn act(action: Action, args: &WorkerActionArgs) -> ExitCode {
    let endpoint = match Endpoint::from_flag(args.url.as_deref()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: --url: {e}");
            return ExitCode::from(2);
        }
    };
    match client::call_json(&endpoint, "POST", &action.path(&args.id), None, TIMEOUT) {
        Ok((answer, _)) => {
            print_text(&render_action(action, &args.id, &answer));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "error: cannot {} {:?}: {}",
                action.verb(),
                args.id,
                client::unreachable_hint(&endpoint, &e)
            );
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_table_shows_source_state_reason_and_load() {
        let answer = json!({
            "workers": [
                {"id": "worker1", "source": "config", "state": "up", "address": "127.0.0.1:5001",
                 "capacity": 4, "in_flight": 3, "load": 0.75, "tasks_completed": 120, "tasks_failed": 2,
                 "mean_execution_time": 0.125},
                {"id": "node07", "source": "joined", "state": "draining", "state_reason": "drain requested",
                 "address": "10.0.0.7:5001", "capacity": 16, "in_flight": 1, "load": 0.0625,
                 "tasks_completed": 9, "tasks_failed": 0, "mean_execution_time": 75.0},
                {"id": "w3", "source": "config", "state": "down", "state_reason": "  ",
                 "address": "10.0.0.3:5001", "capacity": 1, "in_flight": 0, "load": 0.0,
                 "tasks_completed": 0, "tasks_failed": 0, "mean_execution_time": null}
            ],
            "total": 3, "up": 1,
            "config": {"path": "config_workers.json", "valid": true}
        });
        let ep = Endpoint::parse("127.0.0.1:5000").unwrap();
        assert_eq!(
            render(&ep, &answer),
            "orchestrator http://127.0.0.1:5000: 3 workers, 1 up\n\n\
             worker   source  state                       load  done  failed   mean time  address\n\
             worker1  config  up                           3/4   120       2      125 ms  127.0.0.1:5001\n\
             node07   joined  draining (drain requested)  1/16     9       0  1 min 15 s  10.0.0.7:5001\n\
             w3       config  down                         0/1     0       0           -  10.0.0.3:5001\n"
        );
    }

    #[test]
    fn an_invalid_workers_file_and_no_workers_are_said() {
        let answer = json!({"workers": [], "total": 0, "up": 0,
            "config": {"path": "config_workers.json", "valid": false,
                       "error": "line 3: duplicate id \"worker1\""}});
        let ep = Endpoint::parse("10.0.0.5:5050").unwrap();
        let text = render(&ep, &answer);
        assert_eq!(
            text,
            "orchestrator http://10.0.0.5:5050: 0 workers, 0 up\n\
             warning: config_workers.json is invalid, the last good configuration stays in force: \
             line 3: duplicate id \"worker1\"\n\n\
             no workers: add one to config_workers.json or start one with `orquesta worker --join URL`\n"
        );
    }

    #[test]
    fn up_is_counted_when_the_answer_lacks_it() {
        let answer = json!({"workers": [{"id": "a", "state": "up"}, {"id": "b", "state": "drained"}]});
        let ep = Endpoint::parse("127.0.0.1:5000").unwrap();
        assert!(render(&ep, &answer).starts_with("orchestrator http://127.0.0.1:5000: 2 workers, 1 up\n"));
    }

    /// The example in docs/workers-and-deployment.md ("Draining a machine
    /// for maintenance", under "Adding workers") is what the command prints.
    #[test]
    fn the_docs_example_is_real_output() {
        let page = include_str!("../../docs/workers-and-deployment.md");
        let start = page
            .find("$ orquesta workers\n")
            .expect("docs/workers-and-deployment.md shows `orquesta workers`")
            + "$ orquesta workers\n".len();
        let shown = &page[start..start + page[start..].find("```").unwrap()];
        let worker =
            |id, source, state, reason: Option<&str>, address, cap, busy, done, failed, mean: Option<f64>| {
                json!({"id": id, "source": source, "state": state, "state_reason": reason, "address": address,
                   "capacity": cap, "in_flight": busy, "tasks_completed": done, "tasks_failed": failed,
                   "mean_execution_time": mean})
            };
        let answer = json!({"workers": [
            worker("worker1", "config", "up", None, "10.0.0.11:5001", 4, 3, 42, 1, Some(0.25)),
            worker("slurm-node07", "joined", "draining", Some("drain requested"), "node07:5001", 16, 2, 7, 0, Some(1.2)),
            worker("worker2", "config", "down", Some("connection refused"), "10.0.0.12:5001", 1, 0, 0, 0, None),
        ], "total": 3, "up": 1, "config": {"path": "config_workers.json", "valid": true}});
        let ep = Endpoint::parse("127.0.0.1:5000").unwrap();
        assert_eq!(shown, render(&ep, &answer));
    }

    #[test]
    fn actions_post_to_the_worker_and_say_the_new_state() {
        assert_eq!(Action::Drain.path("worker1"), "/workers/worker1/drain");
        assert_eq!(Action::Resume.path("node:07"), "/workers/node:07/resume");
        assert_eq!(Action::Drain.path("a b/../c"), "/workers/a%20b%2F..%2Fc/drain");
        assert_eq!(
            render_action(Action::Drain, "w1", &json!({"id": "w1", "state": "draining"})),
            "w1: draining: no new tasks; running ones finish, then it is drained (`orquesta workers` shows it)\n"
        );
        assert_eq!(
            render_action(Action::Drain, "w1", &json!({"id": "w1", "state": "drained"})),
            "w1: drained: nothing runs there; it can be stopped\n"
        );
        assert_eq!(
            render_action(Action::Resume, "w1", &json!({"id": "w1", "state": "up"})),
            "w1: up\n"
        );
    }
}
