//! What the in-process orchestrator of `orquesta up` and `orquesta run`
//! tells the console as it happens: files taken and rejected, tasks that
//! failed for good. A tracing layer with its own filter picks these few
//! events out of the orchestrator's log (whatever `RUST_LOG` says) and
//! hands them over a channel; it never blocks the actor that logged them.
//!
//! The events are the log lines written by `FileWatcher` ("task file
//! queued", "task file rejected") and `TaskQueue` ("task failed"); the
//! console test of `up` fails if one of them is renamed.

use std::fmt;
use std::sync::mpsc::Sender;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::Registry;

use crate::util::logging::{ExtraLayer, Stdout};

/// Something a person running `up` wants to see when it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum ConsoleEvent {
    FileTaken {
        name: String,
        tasks: u64,
    },
    FileRejected {
        name: String,
        summary: String,
        /// Where the full report was written.
        report: Option<String>,
    },
    /// An entry of the task folder that is never read (a FIFO, a
    /// directory, a socket): it stays there, so it is said once.
    EntryIgnored {
        name: String,
        why: String,
    },
    /// A task ended `failed` (its retries, if any, used up).
    TaskFailed {
        task: String,
        attempts: u64,
        error: String,
    },
}

/// The fields of one event that the console reads.
#[derive(Default)]
struct Fields {
    message: String,
    file: Option<String>,
    tasks: Option<u64>,
    summary: Option<String>,
    report: Option<String>,
    task: Option<String>,
    attempts: Option<u64>,
    error: Option<String>,
    why: Option<String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        let slot = match field.name() {
            "message" => {
                self.message = value.to_string();
                return;
            }
            "file" => &mut self.file,
            "summary" => &mut self.summary,
            "report" => &mut self.report,
            "task" => &mut self.task,
            "why" => &mut self.why,
            "error" => &mut self.error,
            _ => return,
        };
        *slot = Some(value.to_string());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "tasks" => self.tasks = Some(value),
            "attempts" => self.attempts = Some(value),
            _ => {}
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, value.max(0) as u64);
    }
}

impl Fields {
    /// The console event these fields make, if any.
    fn event(self) -> Option<ConsoleEvent> {
        match self.message.as_str() {
            "task file queued" => Some(ConsoleEvent::FileTaken {
                name: self.file?,
                tasks: self.tasks.unwrap_or(0),
            }),
            "task file rejected" => Some(ConsoleEvent::FileRejected {
                name: self.file?,
                summary: self.summary.unwrap_or_default(),
                report: self.report,
            }),
            "an entry of the task folder will never be read" => Some(ConsoleEvent::EntryIgnored {
                name: self.file?,
                why: self.why.unwrap_or_default(),
            }),
            "task failed" => Some(ConsoleEvent::TaskFailed {
                task: self.task?,
                attempts: self.attempts.unwrap_or(0),
                error: self.error.unwrap_or_default(),
            }),
            _ => None,
        }
    }
}

/// Sends the console's events down `tx`.
struct ConsoleLayer {
    tx: Mutex<Sender<ConsoleEvent>>,
}

impl<S: Subscriber> Layer<S> for ConsoleLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let Some(e) = fields.event() {
            let _ = self.tx.lock().unwrap_or_else(|e| e.into_inner()).send(e);
        }
    }
}

/// The layer for [`crate::util::logging::init_with`]: only the modules
/// whose events the console shows reach it.
pub fn layer(tx: Sender<ConsoleEvent>) -> ExtraLayer {
    let filter = Targets::new()
        .with_target("orquesta::orchestrator::file_watcher", Level::INFO)
        .with_target("orquesta::orchestrator::task_queue", Level::ERROR);
    Box::new(ConsoleLayer { tx: Mutex::new(tx) }.with_filter(filter))
        as Box<dyn Layer<Registry> + Send + Sync>
}

/// What of the in-process orchestrator's own log reaches a quiet
/// terminal: errors (a results file that cannot be written, a database
/// that fails), except a failed task's, which the console says itself,
/// rate-limited.
pub fn quiet_stdout() -> Stdout {
    Stdout::Only(
        Targets::new()
            .with_default(Level::ERROR)
            .with_target("orquesta::orchestrator::task_queue::outcome", LevelFilter::OFF),
    )
}

/// The orchestrator's lines on the terminal: all of them with `--verbose`.
pub fn stdout(verbose: bool) -> Stdout {
    if verbose {
        Stdout::All
    } else {
        quiet_stdout()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_watchers_lines_and_failed_tasks_become_events_and_others_do_not() {
        let (tx, rx) = std::sync::mpsc::channel();
        let subscriber = tracing_subscriber::registry().with(vec![layer(tx)]);
        tracing::subscriber::with_default(subscriber, || {
            emit();
        });
        let got: Vec<ConsoleEvent> = rx.try_iter().collect();
        assert_eq!(
            got,
            vec![
                ConsoleEvent::FileTaken {
                    name: "a.json".into(),
                    tasks: 3
                },
                ConsoleEvent::FileRejected {
                    name: "b.json".into(),
                    summary: "tasks[0].algorithm: unknown".into(),
                    report: Some("task_queues/rejected/b.json.error.txt".into()),
                },
                ConsoleEvent::EntryIgnored {
                    name: "p.json".into(),
                    why: "it is a FIFO (named pipe), not a regular file".into(),
                },
            ]
        );
    }

    use tracing_subscriber::layer::SubscriberExt;

    /// Events as the file watcher logs them, from a target under it.
    fn emit() {
        tracing::info!(target: "orquesta::orchestrator::file_watcher", file = %"a.json", tasks = 3, "task file queued");
        tracing::warn!(target: "orquesta::orchestrator::file_watcher", file = %"b.json", problems = 1,
            summary = %"tasks[0].algorithm: unknown", report = %"task_queues/rejected/b.json.error.txt",
            "task file rejected");
        tracing::warn!(target: "orquesta::orchestrator::file_watcher", file = %"p.json",
            why = "it is a FIFO (named pipe), not a regular file", "an entry of the task folder will never be read");
        // another module, and another line of the same module: ignored
        tracing::info!(target: "orquesta::worker::executor", file = %"c.json", tasks = 1, "task file queued");
        tracing::info!(target: "orquesta::orchestrator::file_watcher", file = %"d.json", "file was queued before a restart");
        // below the task queue's level: ignored
        tracing::warn!(target: "orquesta::orchestrator::task_queue::outcome", task = %"t1", "attempt failed; will retry");
    }

    #[test]
    fn a_quiet_terminal_shows_the_orchestrators_errors_but_not_a_failed_tasks_twice() {
        let Stdout::Only(quiet) = quiet_stdout() else {
            panic!("a quiet terminal filters");
        };
        assert!(quiet.would_enable("orquesta::orchestrator::results_store", &Level::ERROR));
        assert!(quiet.would_enable("orquesta::orchestrator::task_queue", &Level::ERROR));
        assert!(!quiet.would_enable("orquesta::orchestrator::results_store", &Level::WARN));
        assert!(!quiet.would_enable("orquesta::orchestrator::task_queue::outcome", &Level::ERROR));
        assert!(matches!(stdout(true), Stdout::All));
    }

    #[test]
    fn a_task_that_failed_for_good_is_an_event_with_its_reason() {
        let (tx, rx) = std::sync::mpsc::channel();
        let subscriber = tracing_subscriber::registry().with(vec![layer(tx)]);
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "orquesta::orchestrator::task_queue::outcome", task = %"t9", attempts = 2u64,
                error = %"kernel panicked: boom", "task failed");
        });
        assert_eq!(
            rx.try_iter().collect::<Vec<_>>(),
            vec![ConsoleEvent::TaskFailed {
                task: "t9".into(),
                attempts: 2,
                error: "kernel panicked: boom".into()
            }]
        );
    }
}
