//! Logging: lines on stdout and the same lines appended to a log file (the
//! seed's `logs/*.log`), rotated by size (`LOG_MAX_BYTES`, `LOG_FILES`), as
//! text or JSON (`LOG_FORMAT`). `RUST_LOG` sets the level, e.g.
//! `RUST_LOG=debug` or `RUST_LOG=info,orquesta=debug`.
//!
//! Lines are written by a thread of their own ([`super::log_writer`]),
//! never dropped; `cli::main` writes the last ones as the process ends.
//!
//! A worker's lines carry `worker=<id>` (a `worker` key in JSON): local
//! workers share one `worker_service.log`, and without it their lines
//! cannot be told apart.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::{Format, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, Registry};

use super::log_writer::{Background, StdoutSink};
use super::rotating::RotatingFile;

/// `LOG_FORMAT`: how a line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-01-01T00:00:00Z  INFO worker=w1 task started task=t1 attempt=3`
    Text,
    /// One JSON object a line: `timestamp`, `level`, `message`, `fields`
    /// and `worker` for a worker.
    Json,
}

impl LogFormat {
    /// The accepted values of `LOG_FORMAT`, for the message refusing another.
    pub const ACCEPTED: &'static str = "text, json";

    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim() {
            "text" => Some(Self::Text),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// `LOG_MAX_BYTES`, `LOG_FILES`, `LOG_FORMAT` (the same for both processes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// Size a log file is rotated at; 0: never.
    pub max_bytes: u64,
    /// Rotated files kept (`file.log.1` … `file.log.N`).
    pub files: u32,
    pub format: LogFormat,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            max_bytes: 10_000_000,
            files: 5,
            format: LogFormat::Text,
        }
    }
}

/// A layer of the global subscriber given by the caller (the console of
/// `orquesta up` and `orquesta run`), with its own filter.
pub type ExtraLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the global subscriber. `file` is appended to (created with its
/// folder if needed); several processes may share it. `worker`: this
/// process's worker id, put on every line. Returns a warning when the file
/// cannot be opened (logging then goes to stdout only).
pub fn init(file: Option<&Path>, options: &LogOptions, worker: Option<&str>) -> Option<String> {
    init_with(file, options, worker, Stdout::All, None)
}

/// Which lines also go to stdout.
#[derive(Debug, Clone)]
pub enum Stdout {
    /// Every line `RUST_LOG` keeps.
    All,
    /// Only those this filter keeps (`orquesta up` keeps the terminal for
    /// what a person needs, the log file for everything).
    Only(Targets),
}

/// [`init`], with the lines on stdout that `stdout` says, and with an
/// `extra` layer that sees events whatever `RUST_LOG` says.
pub fn init_with(
    file: Option<&Path>,
    options: &LogOptions,
    worker: Option<&str>,
    stdout: Stdout,
    extra: Option<ExtraLayer>,
) -> Option<String> {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| Targets::from_str(&v).ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let line = Line {
        worker: worker.map(str::to_string),
        format: options.format,
        text: tracing_subscriber::fmt::format().with_target(false),
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout()) && options.format == LogFormat::Text;
    let terminal = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .event_format(line.clone());
    let mut layers: Vec<ExtraLayer> = vec![match stdout {
        // a process's own output (a worker's, read by `up`): written off
        // the logging thread, as the file is
        Stdout::All => Box::new(
            terminal
                .with_writer(Arc::new(Background::start_echo(
                    "log-stdout",
                    Box::new(StdoutSink),
                )))
                .with_filter(filter.clone()),
        ),
        // a person's terminal, shared with the console's own lines: in order
        Stdout::Only(only) => Box::new(terminal.with_filter(only)),
    }];
    let mut warning = None;
    if let Some(path) = file {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match RotatingFile::open(path, options.max_bytes, options.files) {
            Ok(f) => layers.push(Box::new(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .event_format(line)
                    .with_writer(Arc::new(Background::start("log-file", Box::new(f))))
                    .with_filter(filter),
            )),
            Err(e) => warning = Some(format!("cannot open log file {}: {e}", path.display())),
        }
    }
    layers.extend(extra);
    let _ = tracing_subscriber::registry().with(layers).try_init();
    warning
}

/// Formats one event: tracing's text line with `worker=<id>` in front, or
/// a JSON object.
#[derive(Clone)]
struct Line {
    worker: Option<String>,
    format: LogFormat,
    text: Format,
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        match self.format {
            LogFormat::Text => {
                if let Some(w) = &self.worker {
                    write!(writer, "worker={w} ")?;
                }
                self.text.format_event(ctx, writer, event)
            }
            LogFormat::Json => writeln!(writer, "{}", json_line(event, self.worker.as_deref())),
        }
    }
}

/// The JSON object of one event.
fn json_line(event: &Event<'_>, worker: Option<&str>) -> Value {
    let mut timestamp = String::new();
    let _ = SystemTime.format_time(&mut Writer::new(&mut timestamp));
    let mut fields = JsonFields(Map::new());
    event.record(&mut fields);
    let message = fields.0.remove("message").unwrap_or(Value::String(String::new()));
    let meta = event.metadata();
    let mut line = Map::new();
    line.insert("timestamp".into(), timestamp.into());
    line.insert("level".into(), meta.level().as_str().into());
    line.insert("target".into(), meta.target().into());
    if let Some(w) = worker {
        line.insert("worker".into(), w.into());
    }
    line.insert("message".into(), message);
    line.insert("fields".into(), Value::Object(fields.0));
    Value::Object(line)
}

/// An event's fields as JSON values (numbers and booleans kept as such).
struct JsonFields(Map<String, Value>);

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
}

/// An attempt id as a log field: the number, or `none` for a task posted
/// by hand without one (not `Some(3)`).
pub struct AttemptField<A = u64>(pub Option<A>);

impl<A: fmt::Display> fmt::Display for AttemptField<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("none"),
        }
    }
}

/// Task ids per log line that lists ids: every id is in the log (so one
/// task can be followed by its id), and a line stays readable.
pub const IDS_PER_LINE: usize = 1000;

/// Items as one log field, `a,b,c`, formatted only when the line is
/// written: a whole batch of tasks on one line, so that
/// `grep <task id> logs/*.log` finds every stage of a task's life without
/// a line per task on the hot path.
pub struct Listed<I>(pub I);

impl<I> fmt::Display for Listed<I>
where
    I: Clone + IntoIterator,
    I::Item: fmt::Display,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.0.clone().into_iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{item}")?;
        }
        Ok(())
    }
}

/// One attempt of a task in a log line: `task@attempt` (`t1@42`).
pub struct AttemptOf<'a, A = u64>(pub &'a str, pub A);

impl<A: fmt::Display> fmt::Display for AttemptOf<'_, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.0, self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_print_comma_separated_and_attempts_as_id_at_number() {
        let ids = ["a", "b", "c"];
        assert_eq!(Listed(ids.iter()).to_string(), "a,b,c");
        assert_eq!(Listed(std::iter::empty::<&str>()).to_string(), "");
        let pairs = [("t1".to_string(), 3u64), ("t2".to_string(), 4)];
        let shown = Listed(pairs.iter().map(|(t, a)| AttemptOf(t, *a)));
        assert_eq!(shown.to_string(), "t1@3,t2@4");
    }

    #[test]
    fn attempt_ids_print_plainly() {
        assert_eq!(AttemptField(Some(42)).to_string(), "42");
        assert_eq!(AttemptField::<u64>(None).to_string(), "none");
    }

    #[test]
    fn only_text_and_json_are_formats() {
        assert_eq!(LogFormat::parse("json"), Some(LogFormat::Json));
        assert_eq!(LogFormat::parse("text"), Some(LogFormat::Text));
        assert_eq!(LogFormat::parse("yaml"), None);
    }
}
