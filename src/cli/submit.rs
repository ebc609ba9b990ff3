//! `orquesta submit FILE [--url URL] [--wait]`: validates a task file
//! locally, then drops it atomically into the local drop folder or POSTs
//! it to an orchestrator; with `--wait`, follows the batch's tasks with a
//! live progress bar until every one has ended, prints a summary table,
//! and exits 0 only if every task completed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use super::client::{self, CallError, Endpoint};
use super::gen::{is_in_dir, queue_dir};
use super::table::{duration, Table};
use super::validate::{check, local_validator, print_rejection, read_input, summary};
use crate::model::{FieldError, TaskStatus};
use crate::orchestrator::store::TaskView;
use crate::protocol::tasks::TaskPage;

#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// The task file (the seed's format; `orquesta validate` checks it the same way).
    pub file: PathBuf,
    /// POST the file to the orchestrator at this URL instead of dropping it
    /// into the local task_queues/ (TASK_QUEUE_DIR).
    #[arg(long)]
    pub url: Option<String>,
    /// Follow the batch with a progress bar until every task has ended,
    /// then print a summary; the exit status is 0 only if all completed.
    /// Without --url the orchestrator is ORCHESTRATOR_HOST:ORCHESTRATOR_PORT,
    /// else 127.0.0.1:5000.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds (exit 1) [default: never].
    #[arg(long, value_name = "SECONDS", requires = "wait")]
    pub timeout: Option<f64>,
}

/// How long a request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the orchestrator may stay unreachable while waiting.
const LOST_AFTER: Duration = Duration::from_secs(30);
/// Tasks asked for per `GET /tasks` page.
const PAGE: usize = 1000;
/// What the last poll said about one task.
#[derive(Debug, Clone, Default)]
struct Seen {
    /// None: a status this version does not know (a newer orchestrator).
    status: Option<TaskStatus>,
    algorithm: String,
    worker: Option<String>,
    execution_time: Option<f64>,
    error: Option<String>,
}

/// The batch being followed.
struct Batch {
    ids: Vec<String>,
    index: HashMap<String, usize>,
    seen: Vec<Option<Seen>>,
    /// Where the scan of `GET /tasks` starts: the batch's position once known.
    window_start: usize,
}

impl Batch {
    fn new(ids: Vec<String>, window_start: usize) -> Self {
        let index = ids.iter().enumerate().map(|(i, id)| (id.clone(), i)).collect();
        let seen = vec![None; ids.len()];
        Self {
            ids,
            index,
            seen,
            window_start,
        }
    }

    fn count(&self, status: TaskStatus) -> usize {
        self.seen
            .iter()
            .filter(|s| s.as_ref().is_some_and(|s| s.status == Some(status)))
            .count()
    }

    fn ended(&self) -> usize {
        self.seen
            .iter()
            .filter(|s| {
                s.as_ref()
                    .is_some_and(|s| s.status.is_some_and(TaskStatus::has_ended))
            })
            .count()
    }

    fn found(&self) -> usize {
        self.seen.iter().filter(|s| s.is_some()).count()
    }

    /// One sweep of `GET /tasks` pages from the batch's position until every
    /// task of the batch has been seen or the list ends.
    fn poll(&mut self, endpoint: &Endpoint) -> Result<(), CallError> {
        let mut offset = self.window_start;
        let mut first: Option<usize> = None;
        let mut found = 0;
        loop {
            let page: TaskPage<TaskView> = client::get(
                endpoint,
                &format!("/tasks?limit={PAGE}&offset={offset}"),
                REQUEST_TIMEOUT,
            )?;
            let tasks = page.tasks;
            for (k, t) in tasks.iter().enumerate() {
                let Some(&i) = self.index.get(t.task_id.as_str()) else {
                    continue;
                };
                first.get_or_insert(offset + k);
                found += 1;
                self.seen[i] = Some(Seen {
                    status: Some(t.status),
                    algorithm: t.algorithm.clone(),
                    worker: t.worker_id.as_ref().map(|w| w.as_str().to_string()),
                    execution_time: t.execution_time,
                    error: t.error.clone(),
                });
            }
            if found == self.ids.len() || tasks.len() < PAGE {
                break;
            }
            offset += tasks.len();
        }
        match first {
            // the list is in arrival order and a batch arrives together
            Some(start) if found == self.ids.len() => self.window_start = start,
            // some are missing after the window: look from the start next time
            _ if self.found() > 0 => self.window_start = 0,
            _ => {}
        }
        Ok(())
    }

    fn message(&self) -> String {
        if self.found() == 0 {
            return "waiting for the orchestrator to queue the batch".into();
        }
        format!(
            "{} completed, {} failed, {} cancelled, {} running, {} queued",
            self.count(TaskStatus::Completed),
            self.count(TaskStatus::Failed),
            self.count(TaskStatus::Cancelled),
            self.count(TaskStatus::Running),
            self.count(TaskStatus::Queued)
        )
    }
}

/// Total tasks the orchestrator knows now: where a new batch will start.
fn known_tasks(endpoint: &Endpoint) -> Result<usize, CallError> {
    let page: TaskPage<TaskView> = client::get(endpoint, "/tasks?limit=1", REQUEST_TIMEOUT)?;
    Ok(page.total as usize)
}

/// A report in `rejected/` for a file dropped as `name` since `since`.
fn rejection_report(queue: &Path, name: &str, since: SystemTime) -> Option<String> {
    let suffix = format!("{name}.error.txt");
    let entries = std::fs::read_dir(queue.join("rejected")).ok()?;
    for e in entries.flatten() {
        let file_name = e.file_name().to_string_lossy().into_owned();
        let recent = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t + Duration::from_secs(2) >= since);
        if file_name.ends_with(&suffix) && recent {
            return std::fs::read_to_string(e.path()).ok();
        }
    }
    None
}

/// POSTs the file; the problem, if any, in words.
fn post(endpoint: &Endpoint, bytes: &[u8]) -> Result<Value, String> {
    match client::call_json(endpoint, "POST", "/tasks", Some(bytes), Duration::from_secs(120)) {
        Ok((v, _)) => Ok(v),
        Err(CallError::Status {
            status: 409,
            message,
            body,
        }) => {
            let ids: Vec<String> = body
                .detail::<Vec<String>>("duplicates")
                .unwrap_or_default()
                .into_iter()
                .take(10)
                .collect();
            Err(format!(
                "{message} (the orchestrator already has {}); give the tasks new ids, e.g. with `orquesta gen`",
                ids.join(", ")
            ))
        }
        Err(CallError::Status {
            status: 422,
            message,
            body,
        }) => {
            let problems: Vec<String> = body
                .detail::<Vec<FieldError>>("errors")
                .unwrap_or_default()
                .iter()
                .map(|p| format!("  {}: {}", p.path, p.message))
                .collect();
            Err(format!(
                "the orchestrator refused the file: {message}\n{}",
                problems.join("\n")
            ))
        }
        Err(e) => Err(client::unreachable_hint(endpoint, &e)),
    }
}

/// Copies the file into the drop folder; its name there.
fn drop_locally(file: &Path, bytes: &[u8]) -> Result<(PathBuf, bool), String> {
    let queue = queue_dir();
    let name = file
        .file_name()
        .ok_or_else(|| format!("expected a file name, found {}", file.display()))?;
    if is_in_dir(file, &queue) {
        return Ok((queue.join(name), false));
    }
    let dest = queue.join(name);
    super::place::write_new(&dest, bytes, false).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => format!(
            "{} already exists: a file of that name waits to be picked up; rename yours and submit again",
            dest.display()
        ),
        _ => format!("cannot write {}: {e}", dest.display()),
    })?;
    Ok((dest, true))
}

/// `orquesta submit`.
pub fn run(args: &SubmitArgs) -> ExitCode {
    let bytes = match read_input(&args.file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let batch = match check(&bytes, &local_validator()) {
        Ok(b) => b,
        Err(rejection) => {
            print_rejection(&args.file.display().to_string(), &rejection);
            eprintln!("error: nothing was submitted");
            return ExitCode::FAILURE;
        }
    };
    for w in &batch.warnings {
        eprintln!("warning: {w}");
    }
    let endpoint = match Endpoint::from_url_flag(args.url.as_deref()) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let timeout = match args.timeout {
        Some(t) if !(t.is_finite() && t > 0.0) => {
            eprintln!("error: --timeout: expected a number of seconds > 0, found {t}");
            return ExitCode::from(2);
        }
        t => t.map(Duration::from_secs_f64),
    };
    // where the batch will appear in GET /tasks; also proves the
    // orchestrator is there before anything is submitted
    let mut window_start = if args.wait {
        match known_tasks(&endpoint) {
            Ok(n) => n,
            Err(e) => {
                eprintln!(
                    "error: {}; nothing was submitted",
                    client::unreachable_hint(&endpoint, &e)
                );
                return ExitCode::FAILURE;
            }
        }
    } else {
        0
    };
    let what = summary(&batch.tasks);
    let dropped_at = SystemTime::now();
    let local_name = if args.url.is_some() {
        if let Err(e) = post(&endpoint, &bytes) {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        println!("submitted {} to {}: {what}", args.file.display(), endpoint.url());
        None
    } else {
        match drop_locally(&args.file, &bytes) {
            Ok((dest, true)) => {
                println!("dropped {} into {}: {what}", args.file.display(), dest.display());
                dest.file_name().map(|n| n.to_string_lossy().into_owned())
            }
            Ok((dest, false)) => {
                // the orchestrator may have queued it before `window_start` was read
                window_start = 0;
                println!("{} is already in the drop folder: {what}", dest.display());
                dest.file_name().map(|n| n.to_string_lossy().into_owned())
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    if !args.wait {
        return ExitCode::SUCCESS;
    }
    let ids = batch.tasks.iter().map(|t| t.task_id.to_string()).collect();
    follow(
        &endpoint,
        Batch::new(ids, window_start),
        local_name.as_deref(),
        dropped_at,
        timeout,
    )
}

/// Polls until every task has ended; prints the summary.
fn follow(
    endpoint: &Endpoint,
    mut batch: Batch,
    local_name: Option<&str>,
    dropped_at: SystemTime,
    timeout: Option<Duration>,
) -> ExitCode {
    let started = Instant::now();
    let total = batch.ids.len();
    let interval = if total <= PAGE {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(1)
    };
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} ended [{elapsed}]  {msg}") {
        bar.set_style(style.progress_chars("█▓░"));
    }
    let mut unreachable_since: Option<Instant> = None;
    loop {
        match batch.poll(endpoint) {
            Ok(()) => unreachable_since = None,
            Err(e) => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                bar.set_message(format!("cannot reach the orchestrator: {e}"));
                if since.elapsed() > LOST_AFTER {
                    bar.abandon();
                    eprintln!(
                        "error: lost the orchestrator at {} for {} s ({e}); the tasks may still run: \
                         check with `orquesta status`",
                        endpoint.url(),
                        LOST_AFTER.as_secs()
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
        if unreachable_since.is_none() {
            bar.set_position(batch.ended() as u64);
            bar.set_message(batch.message());
        }
        if batch.ended() == total {
            break;
        }
        if batch.found() == 0 {
            if let Some(report) = local_name.and_then(|n| rejection_report(&queue_dir(), n, dropped_at)) {
                bar.abandon();
                eprintln!("error: the orchestrator rejected the file; nothing was queued:\n{report}");
                return ExitCode::FAILURE;
            }
        }
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            bar.abandon();
            print_summary(&batch, started.elapsed());
            eprintln!(
                "error: gave up waiting after {}: {} of {total} tasks had ended",
                duration(started.elapsed().as_secs_f64()),
                batch.ended()
            );
            return ExitCode::FAILURE;
        }
        std::thread::sleep(interval);
    }
    bar.finish_and_clear();
    print_summary(&batch, started.elapsed());
    if batch.count(TaskStatus::Completed) == total {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The table of outcomes per algorithm, the tasks that did not complete,
/// and a closing line.
fn print_summary(batch: &Batch, elapsed: Duration) {
    #[derive(Default)]
    struct Row {
        tasks: usize,
        by_status: BTreeMap<TaskStatus, usize>,
        time: f64,
        timed: usize,
    }
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for s in batch.seen.iter().flatten() {
        let row = rows.entry(s.algorithm.clone()).or_default();
        row.tasks += 1;
        if let Some(status) = s.status {
            *row.by_status.entry(status).or_default() += 1;
        }
        if let Some(t) = s.execution_time {
            row.time += t;
            row.timed += 1;
        }
    }
    let mut table = Table::new(&[
        "algorithm",
        "tasks",
        "completed",
        "failed",
        "cancelled",
        "unfinished",
        "mean time",
    ])
    .right(&[1, 2, 3, 4, 5, 6]);
    for (algorithm, row) in &rows {
        let n = |s: TaskStatus| row.by_status.get(&s).copied().unwrap_or(0);
        let (completed, failed, cancelled) = (
            n(TaskStatus::Completed),
            n(TaskStatus::Failed),
            n(TaskStatus::Cancelled),
        );
        let unfinished = row.tasks - completed - failed - cancelled;
        table.row(vec![
            algorithm.clone(),
            row.tasks.to_string(),
            completed.to_string(),
            failed.to_string(),
            cancelled.to_string(),
            unfinished.to_string(),
            if row.timed > 0 {
                duration(row.time / row.timed as f64)
            } else {
                "-".into()
            },
        ]);
    }
    println!("{}", table.render(""));
    let not_completed: Vec<(&String, &Seen)> = batch
        .ids
        .iter()
        .zip(&batch.seen)
        .filter_map(|(id, s)| s.as_ref().map(|s| (id, s)))
        .filter(|(_, s)| s.status != Some(TaskStatus::Completed))
        .collect();
    if !not_completed.is_empty() {
        let mut t = Table::new(&["task_id", "status", "worker", "error"]);
        for (id, s) in not_completed.iter().take(20) {
            t.row(vec![
                id.to_string(),
                s.status.map_or("?", TaskStatus::as_str).to_string(),
                s.worker.clone().unwrap_or_else(|| "-".into()),
                s.error.clone().unwrap_or_default(),
            ]);
        }
        println!("\nnot completed:\n{}", t.render("  "));
        if not_completed.len() > 20 {
            println!("  … and {} more", not_completed.len() - 20);
        }
    }
    let total = batch.ids.len();
    let completed = batch.count(TaskStatus::Completed);
    if completed == total {
        println!(
            "all {total} tasks completed in {}",
            duration(elapsed.as_secs_f64())
        );
    } else {
        println!(
            "{completed} of {total} tasks completed, {} failed, {} cancelled, {} not ended ({})",
            batch.count(TaskStatus::Failed),
            batch.count(TaskStatus::Cancelled),
            total - batch.ended(),
            duration(elapsed.as_secs_f64())
        );
    }
}
