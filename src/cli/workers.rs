//! `orquesta workers [--url URL] [--json]`, `orquesta drain ID` and
//! `orquesta resume ID`: the orchestrator's members from `GET /workers` as a
//! table (id, source, state with its reason, load/capacity, done, failed,
//! mean time, address), and `POST /workers/{id}/drain` / `…/resume` for
//! taking a machine out for maintenance and back. Talks to the orchestrator
//! through `client.rs`, like `status`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::client::{self, Endpoint};
use super::table::{duration, print_text, Table};
use crate::orchestrator::board::{WorkerInfo, WorkerState};
use crate::orchestrator::config_watcher::ConfigStatus;
use crate::protocol::workers::{WorkerList, WorkerStateChanged};

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

/// `GET /workers` read as its types.
pub type Workers = WorkerList<WorkerInfo, ConfigStatus>;

/// `state`, or `state (reason)` when the orchestrator gives a reason.
fn state_cell(w: &WorkerInfo) -> String {
    let state = w.state.to_string();
    match w.state_reason.as_deref().map(str::trim) {
        Some(reason) if !reason.is_empty() => format!("{state} ({reason})"),
        _ => state,
    }
}

/// The `GET /workers` answer for people: one summary line, a line when the
/// workers file is invalid, then the table.
pub fn render(endpoint: &Endpoint, answer: &Workers) -> String {
    let workers = &answer.workers;
    let mut out = format!(
        "orchestrator {}: {} workers, {} up\n",
        endpoint.url(),
        workers.len(),
        answer.up
    );
    let config = &answer.config;
    if !config.valid && !config.path.is_empty() {
        out.push_str(&format!(
            "warning: {} is invalid, the last good configuration stays in force: {}\n",
            config.path,
            config.error.as_deref().unwrap_or("no reason given")
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
    for w in workers {
        table.row(vec![
            w.id.clone(),
            w.source.as_str().to_string(),
            state_cell(w),
            format!("{}/{}", w.in_flight, w.capacity),
            w.tasks_completed.to_string(),
            w.tasks_failed.to_string(),
            w.mean_execution_time.map_or_else(|| "-".into(), duration),
            w.address.clone(),
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
pub fn render_action(action: Action, answer: &WorkerStateChanged<WorkerState>) -> String {
    let (id, state) = (&answer.id, answer.state);
    let hint = match (action, state) {
        (Action::Drain, WorkerState::Draining) => {
            ": no new tasks; running ones finish, then it is drained \
             (`orquesta workers` shows it)"
        }
        (Action::Drain, WorkerState::Drained) => ": nothing runs there; it can be stopped",
        _ => "",
    };
    format!("{id}: {state}{hint}\n")
}

/// `orquesta workers`.
pub fn run(args: &WorkersArgs) -> ExitCode {
    let endpoint = match Endpoint::from_url_flag(args.url.as_deref()) {
        Ok(e) => e,
        Err(code) => return code,
    };
    match client::get_json(&endpoint, "/workers", TIMEOUT) {
        Ok(answer) if args.json => {
            print_text(&format!(
                "{}\n",
                serde_json::to_string_pretty(&answer).unwrap_or_default()
            ));
            ExitCode::SUCCESS
        }
        Ok(answer) => match client::answer::<Workers>(answer) {
            Ok(typed) => {
                print_text(&render(&endpoint, &typed));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {}", client::unreachable_hint(&endpoint, &e));
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("error: {}", client::unreachable_hint(&endpoint, &e));
            ExitCode::FAILURE
        }
    }
}

/// `orquesta drain ID` and `orquesta resume ID`.
pub fn act(action: Action, args: &WorkerActionArgs) -> ExitCode {
    let endpoint = match Endpoint::from_url_flag(args.url.as_deref()) {
        Ok(e) => e,
        Err(code) => return code,
    };
    match client::call::<WorkerStateChanged<WorkerState>>(
        &endpoint,
        "POST",
        &action.path(&args.id),
        None,
        TIMEOUT,
    ) {
        Ok(answer) => {
            print_text(&render_action(action, &answer));
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
    use super::*;
    use crate::model::WorkerId;
    use crate::protocol::MemberSource;

    /// A row with what the tables show; the rest at its default.
    #[allow(clippy::too_many_arguments)]
    fn row(
        id: &str,
        source: MemberSource,
        state: WorkerState,
        reason: Option<&str>,
        address: &str,
        capacity: usize,
        in_flight: usize,
        done: u64,
        failed: u64,
        mean: Option<f64>,
    ) -> WorkerInfo {
        WorkerInfo {
            id: id.into(),
            source,
            state,
            state_reason: reason.map(String::from),
            address: address.into(),
            capacity,
            in_flight,
            tasks_completed: done,
            tasks_failed: failed,
            mean_execution_time: mean,
            up: state == WorkerState::Up,
            ..WorkerInfo::default()
        }
    }

    fn list(workers: Vec<WorkerInfo>, config: ConfigStatus) -> Workers {
        WorkerList {
            total: workers.len(),
            up: workers.iter().filter(|w| w.up).count(),
            by_state: Default::default(),
            offset: 0,
            workers,
            config,
        }
    }

    fn valid() -> ConfigStatus {
        ConfigStatus {
            path: "config_workers.json".into(),
            valid: true,
            error: None,
        }
    }

    use MemberSource::{Config, Joined};
    use WorkerState::{Down, Drained, Draining, Up};

    #[test]
    fn the_table_shows_source_state_reason_and_load() {
        let answer = list(
            vec![
                row(
                    "worker1",
                    Config,
                    Up,
                    None,
                    "127.0.0.1:5001",
                    4,
                    3,
                    120,
                    2,
                    Some(0.125),
                ),
                row(
                    "node07",
                    Joined,
                    Draining,
                    Some("drain requested"),
                    "10.0.0.7:5001",
                    16,
                    1,
                    9,
                    0,
                    Some(75.0),
                ),
                row("w3", Config, Down, Some("  "), "10.0.0.3:5001", 1, 0, 0, 0, None),
            ],
            valid(),
        );
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
        let answer = list(
            vec![],
            ConfigStatus {
                path: "config_workers.json".into(),
                valid: false,
                error: Some("line 3: duplicate id \"worker1\"".into()),
            },
        );
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
    fn the_answer_read_from_the_wire_is_the_one_rendered() {
        // what the orchestrator serializes, the CLI reads back whole
        let answer = list(
            vec![
                row("a", Config, Up, None, "h:1", 1, 0, 0, 0, None),
                row("b", Joined, Drained, None, "h:2", 1, 0, 0, 0, None),
            ],
            valid(),
        );
        let wire = serde_json::to_string(&answer).unwrap();
        let read: Workers = client::answer(serde_json::from_str(&wire).unwrap()).unwrap();
        let ep = Endpoint::parse("127.0.0.1:5000").unwrap();
        assert!(render(&ep, &read).starts_with("orchestrator http://127.0.0.1:5000: 2 workers, 1 up\n"));
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
        let answer = list(
            vec![
                row(
                    "worker1",
                    Config,
                    Up,
                    None,
                    "10.0.0.11:5001",
                    4,
                    3,
                    42,
                    1,
                    Some(0.25),
                ),
                row(
                    "slurm-node07",
                    Joined,
                    Draining,
                    Some("drain requested"),
                    "node07:5001",
                    16,
                    2,
                    7,
                    0,
                    Some(1.2),
                ),
                row(
                    "worker2",
                    Config,
                    Down,
                    Some("connection refused"),
                    "10.0.0.12:5001",
                    1,
                    0,
                    0,
                    0,
                    None,
                ),
            ],
            valid(),
        );
        let ep = Endpoint::parse("127.0.0.1:5000").unwrap();
        assert_eq!(shown, render(&ep, &answer));
    }

    #[test]
    fn actions_post_to_the_worker_and_say_the_new_state() {
        assert_eq!(Action::Drain.path("worker1"), "/workers/worker1/drain");
        assert_eq!(Action::Resume.path("node:07"), "/workers/node:07/resume");
        assert_eq!(Action::Drain.path("a b/../c"), "/workers/a%20b%2F..%2Fc/drain");
        let changed = |state| WorkerStateChanged {
            id: WorkerId::new("w1"),
            state,
        };
        assert_eq!(
            render_action(Action::Drain, &changed(Draining)),
            "w1: draining: no new tasks; running ones finish, then it is drained (`orquesta workers` shows it)\n"
        );
        assert_eq!(
            render_action(Action::Drain, &changed(Drained)),
            "w1: drained: nothing runs there; it can be stopped\n"
        );
        assert_eq!(render_action(Action::Resume, &changed(Up)), "w1: up\n");
    }
}
