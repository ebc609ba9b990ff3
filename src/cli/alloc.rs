//! `orquesta alloc add|list|pause|resume|remove`: the allocation queues of
//! the running orchestrator (workers from a cluster manager), through its
//! `/allocations` routes, with `--url` and the token like `orquesta purge`.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::client::{self, CallError, Endpoint};
use super::table::print_text;
use crate::protocol::allocations::{Allocation, AllocationKind, AllocationList, AllocationSpec, JobState};

#[derive(Args, Debug)]
pub struct AllocArgs {
    #[command(subcommand)]
    pub action: AllocAction,
}

/// Where the orchestrator is, and how to print.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// The orchestrator [default: http://ORCHESTRATOR_HOST:ORCHESTRATOR_PORT,
    /// else http://127.0.0.1:5000].
    #[arg(long)]
    pub url: Option<String>,
    /// Print the orchestrator's answer as JSON, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// What every `alloc add` takes.
#[derive(Args, Debug, Clone)]
pub struct QueueFlags {
    /// The queue's name (letters, digits, - and _) [default: the kind].
    #[arg(long)]
    pub name: Option<String>,
    /// Jobs alive at once at most.
    #[arg(long, default_value_t = 1)]
    pub max_jobs: u32,
    /// Workers each job starts (one per slot it asks for).
    #[arg(long, default_value_t = 1)]
    pub workers_per_job: u32,
    /// Tasks each worker runs at once.
    #[arg(long, default_value_t = 1)]
    pub capacity: u32,
    /// The job's time limit (90s, 15m, 2h); workers drain a margin before it.
    #[arg(long, default_value = "1h")]
    pub time_limit: String,
    /// A worker idle this long drains and stops; the job ends with its last worker.
    #[arg(long, default_value = "5m")]
    pub idle_timeout: String,
    /// Algorithms the workers accept, comma-separated [default: all].
    #[arg(long, value_delimiter = ',')]
    pub algorithms: Option<Vec<String>>,
    #[command(flatten)]
    pub target: Target,
}

#[derive(Subcommand, Debug)]
pub enum AllocAction {
    /// Add a queue whose jobs Slurm runs (sbatch, squeue, scancel); what
    /// follows `--` goes to sbatch.
    #[command(
        after_help = "Examples:\n  orquesta alloc add slurm --name cpu --max-jobs 4 --workers-per-job 2 \
                            --time-limit 2h --idle-timeout 5m -- --partition=short\n\n\
                            Exit status: 0 when added, 1 otherwise."
    )]
    #[command(name = "add")]
    Add {
        #[command(subcommand)]
        kind: AddKind,
    },
    /// List the queues and their jobs.
    List(Target),
    /// Stop submitting jobs (the running ones go on).
    Pause(NameArgs),
    /// Submit jobs again (and forget the queue's backoff).
    Resume(NameArgs),
    /// Remove a queue and cancel its jobs.
    Remove(NameArgs),
}

#[derive(Subcommand, Debug)]
pub enum AddKind {
    /// Jobs through Slurm: sbatch, squeue, scancel.
    Slurm {
        #[command(flatten)]
        queue: QueueFlags,
        /// More sbatch arguments, after `--`.
        #[arg(last = true)]
        sbatch_args: Vec<String>,
    },
    /// Jobs through your own commands (PBS, LSF, a cloud CLI).
    Command {
        #[command(flatten)]
        queue: QueueFlags,
        /// Run with the job script's path; prints the job id.
        #[arg(long)]
        submit: String,
        /// Run with a job id; prints pending, running, ended or failed.
        #[arg(long)]
        status: String,
        /// Run with a job id; cancels it.
        #[arg(long)]
        cancel: String,
    },
}

#[derive(Args, Debug)]
pub struct NameArgs {
    /// The queue's name (`orquesta alloc list` shows them).
    pub name: String,
    #[command(flatten)]
    pub target: Target,
}

const TIMEOUT: Duration = Duration::from_secs(30);

/// The spec `alloc add` sends.
pub fn spec_of(kind: &AddKind) -> (AllocationSpec, &Target) {
    let (q, kind_word, extra, commands) = match kind {
        AddKind::Slurm { queue, sbatch_args } => (queue, AllocationKind::Slurm, sbatch_args.clone(), None),
        AddKind::Command {
            queue,
            submit,
            status,
            cancel,
        } => (
            queue,
            AllocationKind::Command,
            Vec::new(),
            Some((submit.clone(), status.clone(), cancel.clone())),
        ),
    };
    let (submit, status, cancel) = match commands {
        Some((a, b, c)) => (Some(a), Some(b), Some(c)),
        None => (None, None, None),
    };
    let spec = AllocationSpec {
        name: q.name.clone().unwrap_or_else(|| kind_word.as_str().to_string()),
        kind: kind_word,
        max_jobs: q.max_jobs,
        workers_per_job: q.workers_per_job,
        capacity: q.capacity,
        time_limit: q.time_limit.clone(),
        idle_timeout: q.idle_timeout.clone(),
        algorithms: q.algorithms.clone(),
        extra_args: extra,
        submit,
        status,
        cancel,
    };
    (spec, &q.target)
}

/// An enum's word on the wire (`backing_off`, `pending`).
fn word<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(|w| w.replace('_', " ")))
        .unwrap_or_default()
}

/// One queue for people: its line, then one line per job.
pub fn render(a: &Allocation) -> String {
    let s = &a.spec;
    let alive = a.jobs.iter().filter(|j| j.state != JobState::Failed).count();
    let mut out = format!(
        "{} ({}): {}, {alive} of {} jobs, {} worker(s) × {} slot(s) each, time limit {}, idle timeout {}\n",
        a.name,
        a.kind.as_str(),
        word(&a.state),
        s.max_jobs,
        s.workers_per_job,
        s.capacity,
        s.time_limit,
        s.idle_timeout,
    );
    for j in &a.jobs {
        out.push_str(&format!(
            "  job {}: {}, {} worker(s) joined, {:.0}s old{}\n",
            j.id,
            word(&j.state),
            j.workers_joined,
            j.age_seconds,
            j.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
        ));
    }
    if let Some(until) = &a.backoff_until {
        out.push_str(&format!("  backing off until {until}\n"));
    }
    if let Some(e) = &a.last_error {
        out.push_str(&format!("  last error ({}): {}\n", e.at, e.message));
        for line in e.output.lines().take(5) {
            out.push_str(&format!("    | {line}\n"));
        }
    }
    out
}

fn endpoint(target: &Target) -> Result<Endpoint, ExitCode> {
    Endpoint::from_url_flag(target.url.as_deref())
}

fn call(target: &Target, method: &str, path: &str, body: Option<Vec<u8>>, what: &str) -> ExitCode {
    let endpoint = match endpoint(target) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let answer = match client::call_json(&endpoint, method, path, body.as_deref(), TIMEOUT) {
        Ok((v, _)) => v,
        Err(CallError::Status { message, body, .. }) => {
            eprintln!("error: cannot {what}: {message}");
            for p in body.detail::<Vec<String>>("problems").unwrap_or_default() {
                eprintln!("  - {p}");
            }
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!(
                "error: cannot {what}: {}",
                client::unreachable_hint(&endpoint, &e)
            );
            return ExitCode::FAILURE;
        }
    };
    if target.json {
        println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    let text = if let Ok(list) = serde_json::from_value::<AllocationList>(answer.clone()) {
        if list.allocations.is_empty() {
            "no allocation queues; add one with `orquesta alloc add slurm --name NAME`\n".to_string()
        } else {
            let mut t = format!("jobs join {}\n", list.join_url);
            for a in &list.allocations {
                t.push_str(&render(a));
            }
            t
        }
    } else if let Ok(one) = serde_json::from_value::<Allocation>(answer) {
        render(&one)
    } else {
        eprintln!("error: cannot {what}: the orchestrator's answer is not an allocation queue");
        return ExitCode::FAILURE;
    };
    print_text(&text);
    ExitCode::SUCCESS
}

pub fn run(args: &AllocArgs) -> ExitCode {
    match &args.action {
        AllocAction::Add { kind } => {
            let (spec, target) = spec_of(kind);
            let body = serde_json::to_vec(&spec).unwrap_or_default();
            call(
                target,
                "POST",
                "/allocations",
                Some(body),
                "add the allocation queue",
            )
        }
        AllocAction::List(target) => call(target, "GET", "/allocations", None, "list the allocation queues"),
        AllocAction::Pause(n) => call(
            &n.target,
            "POST",
            &format!("/allocations/{}/pause", n.name),
            None,
            "pause it",
        ),
        AllocAction::Resume(n) => call(
            &n.target,
            "POST",
            &format!("/allocations/{}/resume", n.name),
            None,
            "resume it",
        ),
        AllocAction::Remove(n) => call(
            &n.target,
            "DELETE",
            &format!("/allocations/{}", n.name),
            None,
            "remove it",
        ),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    #[test]
    fn add_slurm_passes_what_follows_the_dashes_to_sbatch() {
        let cli = Cli::try_parse_from([
            "orquesta",
            "alloc",
            "add",
            "slurm",
            "--name",
            "cpu",
            "--max-jobs",
            "4",
            "--time-limit",
            "2h",
            "--",
            "--partition=short",
            "--account=phys",
        ])
        .unwrap();
        let crate::cli::Command::Alloc(AllocArgs {
            action: AllocAction::Add { kind },
        }) = cli.command
        else {
            panic!("not alloc add");
        };
        let (spec, _) = spec_of(&kind);
        assert_eq!(spec.name, "cpu");
        assert_eq!(spec.max_jobs, 4);
        assert_eq!(spec.time_limit, "2h");
        assert_eq!(spec.extra_args, ["--partition=short", "--account=phys"]);
        assert!(crate::orchestrator::allocation::spec::check_spec(&spec).is_ok());
    }
}
