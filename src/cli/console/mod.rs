//! What `orquesta up` and `orquesta run` print on the terminal: start-up,
//! workers up/down/draining as they change, files taken and rejected, a
//! progress line for running batches, failures with their reasons, and a
//! summary at the end. Every other line goes to the log files only
//! (`--verbose` puts them back on the terminal).
//!
//! [`Console`] is fed three things: events as they happen
//! ([`events::ConsoleEvent`], from the orchestrator's log), the workers'
//! rows and the queue's counts, read once a second. On a terminal the
//! progress line is rewritten in place (`\r`); in a pipe or a CI log it is
//! a new line every [`PROGRESS_EVERY`], so the output stays readable.
//! Failure lines are limited to [`FAILURE_LINES`] per [`FAILURE_WINDOW`];
//! the rest are counted in one "… and N more" line.

pub mod events;
pub mod live;
pub mod progress;
pub mod summary;

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use self::events::ConsoleEvent;
use self::progress::{Batch, Tally};

/// How often the progress line is printed when stdout is not a terminal.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// Failure lines shown per [`FAILURE_WINDOW`]; more are counted.
pub const FAILURE_LINES: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(10);

/// A worker's state as the console shows it: `up`, `down`, `draining`…
/// and why, when it says.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSeen {
    pub id: String,
    pub address: String,
    pub state: &'static str,
    pub reason: Option<String>,
}

/// The terminal's state: what was printed, the batch running.
pub struct Console<W: Write> {
    out: W,
    /// Rewrite the progress line in place (stdout is a terminal).
    tty: bool,
    /// The progress line is on screen, not ended by a newline.
    progress_open: bool,
    last_progress: Option<Instant>,
    batch: Option<Batch>,
    last_tally: Option<Tally>,
    workers: HashMap<String, &'static str>,
    window_start: Option<Instant>,
    failure_lines: usize,
    failures_unshown: u64,
}

impl<W: Write> Console<W> {
    pub fn new(out: W, tty: bool) -> Self {
        Self {
            out,
            tty,
            progress_open: false,
            last_progress: None,
            batch: None,
            last_tally: None,
            workers: HashMap::new(),
            window_start: None,
            failure_lines: 0,
            failures_unshown: 0,
        }
    }

    /// Prints one line, above the progress line on a terminal.
    pub fn line(&mut self, text: &str) {
        if self.progress_open {
            let _ = write!(self.out, "\r\x1b[K");
            self.progress_open = false;
        }
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }

    /// An event as it happens.
    pub fn event(&mut self, event: ConsoleEvent, now: Instant) {
        match event {
            ConsoleEvent::FileTaken { name, tasks } => {
                self.line(&format!("file taken: {name} ({tasks} task{})", plural(tasks)))
            }
            ConsoleEvent::FileRejected {
                name,
                summary,
                report,
            } => {
                let report = report.map_or(String::new(), |r| format!("; report: {r}"));
                self.line(&format!("file rejected: {name}: {summary}{report}"));
            }
            ConsoleEvent::EntryIgnored { name, why } => self.line(&format!(
                "never read: {name}: {why}; put regular files in the folder"
            )),
            ConsoleEvent::TaskFailed {
                task,
                attempts,
                error,
            } => {
                if self
                    .window_start
                    .is_none_or(|s| now.saturating_duration_since(s) >= FAILURE_WINDOW)
                {
                    self.flush_failures();
                    self.window_start = Some(now);
                    self.failure_lines = 0;
                }
                if self.failure_lines < FAILURE_LINES {
                    self.failure_lines += 1;
                    self.line(&format!(
                        "task failed: {task} after {attempts} attempt{}: {error}",
                        plural(attempts)
                    ));
                } else {
                    self.failures_unshown += 1;
                }
            }
        }
    }

    /// "… and N more failed": the failures not shown one by one.
    fn flush_failures(&mut self) {
        if self.failures_unshown > 0 {
            let n = std::mem::take(&mut self.failures_unshown);
            self.line(&format!(
                "… and {n} more task{} failed (each with its reason in the orchestrator's log)",
                plural(n)
            ));
        }
    }

    /// The workers' rows now: a line for each one whose state changed.
    pub fn workers(&mut self, rows: &[WorkerSeen]) {
        for w in rows {
            if self.workers.get(&w.id) == Some(&w.state) {
                continue;
            }
            let first = !self.workers.contains_key(&w.id);
            self.workers.insert(w.id.clone(), w.state);
            if first && w.state == "unknown" {
                continue; // not heard from yet: said once it is up or down
            }
            let why = w.reason.as_ref().map_or(String::new(), |r| format!(": {r}"));
            self.line(&format!("worker {} {} at {}{why}", w.id, w.state, w.address));
        }
    }

    /// The queue's counts now: starts, shows and ends the batch.
    pub fn tally(&mut self, now_tally: Tally, now: Instant) {
        if self
            .window_start
            .is_some_and(|s| now.saturating_duration_since(s) >= FAILURE_WINDOW)
        {
            self.flush_failures();
            self.window_start = None;
        }
        // none before the first reading: what ended before it is history
        let previous = self.last_tally.replace(now_tally);
        let before = previous.unwrap_or_default();
        match self.batch {
            None if now_tally.live > 0 => {
                // what ended since the last reading belongs to the batch too
                let base = Tally { live: 0, ..before };
                self.batch = Some(Batch { base, started: now });
                self.last_progress = None;
                self.show_progress(now_tally, now);
            }
            // a batch that began and ended between two readings
            None if previous.is_some_and(|p| now_tally.ended() > p.ended()) => {
                let d = now_tally.since(&before);
                self.flush_failures();
                self.line(&format!(
                    "batch done: {} task{} ended ({} completed, {} failed, {} cancelled)",
                    d.ended(),
                    plural(d.ended()),
                    d.completed,
                    d.failed,
                    d.cancelled
                ));
            }
            None => {}
            Some(batch) if now_tally.live == 0 => {
                self.flush_failures();
                let d = now_tally.since(&batch.base);
                let secs = now.saturating_duration_since(batch.started).as_secs_f64();
                let rate = if secs > 0.0 { d.ended() as f64 / secs } else { 0.0 };
                self.line(&format!(
                    "batch done: {} task{} ended ({} completed, {} failed, {} cancelled) in {:.1} s, {:.1} tasks/s",
                    d.ended(),
                    plural(d.ended()),
                    d.completed,
                    d.failed,
                    d.cancelled,
                    secs,
                    rate
                ));
                self.batch = None;
            }
            Some(_) => self.show_progress(now_tally, now),
        }
    }

    fn show_progress(&mut self, tally: Tally, now: Instant) {
        let Some(batch) = self.batch else { return };
        let text = batch.progress(&tally, now).to_string();
        if self.tty {
            let _ = write!(self.out, "\r\x1b[K{text}");
            let _ = self.out.flush();
            self.progress_open = true;
        } else if self
            .last_progress
            .is_none_or(|t| now.saturating_duration_since(t) >= PROGRESS_EVERY)
        {
            self.last_progress = Some(now);
            self.line(&text);
        }
    }

    /// Ends the progress line and says the failures not shown yet.
    pub fn finish(&mut self) {
        self.flush_failures();
        if self.progress_open {
            let _ = writeln!(self.out);
            self.progress_open = false;
        }
        let _ = self.out.flush();
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

pub fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests;
