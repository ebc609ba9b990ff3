//! Every task's life in the log by its id, without a line per task: the
//! stages of many tasks (ids read from a file, queued, dispatched with
//! their attempt ids, ended with outcome and time, recorded in a results
//! file) are noted here as they happen and written every [`FLUSH_EVERY`]
//! as one line per stage and file or worker, e.g.
//!
//! ```text
//! INFO tasks dispatched worker=w1 count=3 attempts=t1@7,t2@8,t3@9
//! INFO attempts ended worker=w1 count=2 outcomes=t1@7=completed:0.012s,t2@8=failed
//! INFO results recorded file=task_results_20260101_120000.json count=1 ids=t1
//! ```
//!
//! so `grep t1 logs/elastic_orchestrator.log` shows its stages in order.
//! Why a buffer: at 14k tasks/s a line per task and stage costs the
//! orchestrator's one actor thread a fifth of its throughput (measured,
//! see docs/operations.md "Logs"); a note costs a lock and a short string.
//!
//! Order: a window's lines go out stage by stage ([`Stage`]'s order), and
//! windows in turn, so a task's stages are never out of order in the log,
//! whichever actors noted them. The lines' target is this module:
//! `RUST_LOG=info,orquesta::util::trace=off` leaves them out.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::{Mutex, Once};
use std::time::Duration;

use super::logging::{Listed, IDS_PER_LINE};

/// How long notes wait before they are written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// A stage of a task's life; within a window, lines go out in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Read from a dropped file (group: the file); queued with the file.
    Read,
    /// Queued from `POST /tasks` or `orquesta run` (group: the source).
    Queued,
    /// Sent to a worker (group: the worker; item `task@attempt`).
    Dispatched,
    /// The attempt's outcome as the worker's answer said (group: the worker).
    Ended,
    /// Written to a results file (group: the file).
    Recorded,
}

type Window = BTreeMap<(Stage, String), Vec<String>>;

static NOTES: Mutex<Window> = Mutex::new(BTreeMap::new());
static FLUSHER: Once = Once::new();

/// Whether notes are taken: the log keeps INFO lines somewhere. (Not
/// `tracing::enabled!`: with per-layer filters it leaves a filter's
/// verdict behind for the thread's next event, which the console's layer
/// then misses.)
pub fn enabled() -> bool {
    tracing::level_filters::LevelFilter::current() >= tracing::level_filters::LevelFilter::INFO
}

/// Notes `items` at `stage` for `group` (a file, a worker, a source).
pub fn note<I>(stage: Stage, group: &str, items: I)
where
    I: IntoIterator,
    I::Item: Display,
{
    if !enabled() {
        return;
    }
    let texts: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    if texts.is_empty() {
        return;
    }
    let mut notes = NOTES.lock().unwrap_or_else(|e| e.into_inner());
    notes.entry((stage, group.to_string())).or_default().extend(texts);
}

/// Starts the thread that writes the notes every [`FLUSH_EVERY`] (once
/// per process; the orchestrator's start calls it).
pub fn start_flushing() {
    FLUSHER.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("trace-flush".into())
            .spawn(|| loop {
                std::thread::sleep(FLUSH_EVERY);
                flush();
            });
    });
}

/// Writes what was noted (also at shutdown, so the last notes are not lost).
pub fn flush() {
    let window = std::mem::take(&mut *NOTES.lock().unwrap_or_else(|e| e.into_inner()));
    for ((stage, group), items) in window {
        let count = items.len();
        for part in items.chunks(IDS_PER_LINE) {
            let listed = Listed(part.iter());
            match stage {
                Stage::Read => tracing::info!(file = %group, count, ids = %listed, "task ids read"),
                Stage::Queued => tracing::info!(source = %group, count, ids = %listed, "tasks queued"),
                Stage::Dispatched => {
                    tracing::info!(worker = %group, count, attempts = %listed, "tasks dispatched")
                }
                Stage::Ended => tracing::info!(worker = %group, count, outcomes = %listed, "attempts ended"),
                Stage::Recorded => tracing::info!(file = %group, count, ids = %listed, "results recorded"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex as StdMutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// The messages and ids of the lines written, in order.
    #[derive(Clone, Default)]
    struct Lines(Arc<StdMutex<Vec<String>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Lines {
        fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            struct V(String);
            impl tracing::field::Visit for V {
                fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                    if f.name() != "count" {
                        self.0.push_str(&format!("{}={v:?} ", f.name()));
                    }
                }
            }
            let mut v = V(String::new());
            event.record(&mut v);
            self.0.lock().unwrap().push(v.0.trim_end().to_string());
        }
    }

    #[test]
    fn a_window_goes_out_stage_by_stage_one_line_per_group() {
        let lines = Lines::default();
        let subscriber = tracing_subscriber::registry().with(lines.clone());
        tracing::subscriber::with_default(subscriber, || {
            // noted out of stage order, as two actors might
            note(Stage::Ended, "tw1", ["a@1=completed:0.010s"]);
            note(Stage::Dispatched, "tw1", ["a@1", "b@2"]);
            note(Stage::Read, "tf.json", ["a", "b"]);
            note(Stage::Dispatched, "tw1", ["c@3"]);
            note(Stage::Recorded, "t_results_1.json", ["a"]);
            note(Stage::Dispatched, "tw2", std::iter::empty::<&str>());
            flush();
            flush(); // nothing left: no line
        });
        // the buffer is the process's: lines of other tests running at the
        // same time may come out in this flush too; only this test's groups
        // (names no other test uses) are compared
        let ours = ["=tw1 ", "=tw2 ", "=tf.json ", "=t_results_1.json "];
        let got: Vec<String> = lines
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| ours.iter().any(|g| l.contains(g)))
            .cloned()
            .collect();
        assert_eq!(
            got,
            vec![
                "message=task ids read file=tf.json ids=a,b",
                "message=tasks dispatched worker=tw1 attempts=a@1,b@2,c@3",
                "message=attempts ended worker=tw1 outcomes=a@1=completed:0.010s",
                "message=results recorded file=t_results_1.json ids=a",
            ]
        );
    }
}
