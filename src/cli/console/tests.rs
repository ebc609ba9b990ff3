use std::time::{Duration, Instant};

use super::events::ConsoleEvent;
use super::progress::Tally;
use super::*;

fn text(c: Console<Vec<u8>>) -> String {
    String::from_utf8(c.into_inner()).unwrap()
}

fn live(completed: u64, failed: u64, live: u64) -> Tally {
    Tally {
        completed,
        failed,
        cancelled: 0,
        live,
    }
}

#[test]
fn in_a_pipe_progress_is_a_line_every_ten_seconds_then_the_batch_is_summed_up() {
    let mut c = Console::new(Vec::new(), false);
    let t0 = Instant::now();
    c.tally(live(0, 0, 0), t0);
    c.tally(live(0, 0, 10), t0 + Duration::from_secs(1));
    c.tally(live(4, 0, 6), t0 + Duration::from_secs(2));
    c.tally(live(6, 1, 3), t0 + Duration::from_secs(11));
    c.tally(live(9, 1, 0), t0 + Duration::from_secs(12));
    let out = text(c);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("progress 0/10 tasks, 0 failed"), "{out}");
    assert!(
        lines[1].starts_with("progress 7/10 tasks, 1 failed, 0.7 tasks/s"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("batch done: 10 tasks ended (9 completed, 1 failed, 0 cancelled) in 11.0 s"),
        "{out}"
    );
    assert!(!out.contains('\r'), "{out}");
}

#[test]
fn on_a_terminal_progress_is_rewritten_in_place_under_the_event_lines() {
    let mut c = Console::new(Vec::new(), true);
    let t0 = Instant::now();
    c.tally(live(0, 0, 5), t0);
    c.tally(live(2, 0, 3), t0 + Duration::from_secs(1));
    c.event(
        ConsoleEvent::FileTaken {
            name: "b.json".into(),
            tasks: 1,
        },
        t0,
    );
    c.finish();
    let out = text(c);
    assert!(out.starts_with("\r\x1b[Kprogress 0/5"), "{out:?}");
    assert!(out.contains("\r\x1b[Kprogress 2/5"), "{out:?}");
    // the progress line is cleared before an event's line
    assert!(out.contains("\r\x1b[Kfile taken: b.json (1 task)\n"), "{out:?}");
}

#[test]
fn failures_beyond_five_in_ten_seconds_are_counted_in_one_line() {
    let mut c = Console::new(Vec::new(), false);
    let t0 = Instant::now();
    for i in 0..8 {
        c.event(
            ConsoleEvent::TaskFailed {
                task: format!("t{i}"),
                attempts: 1,
                error: "boom".into(),
            },
            t0,
        );
    }
    c.tally(live(0, 8, 0), t0 + FAILURE_WINDOW);
    let out = text(c);
    assert_eq!(out.matches("task failed: ").count(), 5, "{out}");
    assert!(out.contains("task failed: t0 after 1 attempt: boom"), "{out}");
    assert!(out.contains("… and 3 more tasks failed"), "{out}");
}

#[test]
fn files_and_workers_are_said_once_per_change() {
    let mut c = Console::new(Vec::new(), false);
    let row = |state: &'static str, reason: Option<&str>| WorkerSeen {
        id: "w1".into(),
        address: "127.0.0.1:5001".into(),
        state,
        reason: reason.map(String::from),
    };
    c.workers(&[row("unknown", None)]);
    c.workers(&[row("up", None)]);
    c.workers(&[row("up", None)]);
    c.workers(&[row("down", Some("no answer for 2.0 s"))]);
    c.event(
        ConsoleEvent::FileRejected {
            name: "bad.json".into(),
            summary: "tasks[0].algorithm: unknown".into(),
            report: Some("task_queues/rejected/bad.json.error.txt".into()),
        },
        Instant::now(),
    );
    assert_eq!(
        text(c),
        "worker w1 up at 127.0.0.1:5001\n\
         worker w1 down at 127.0.0.1:5001: no answer for 2.0 s\n\
         file rejected: bad.json: tasks[0].algorithm: unknown; report: task_queues/rejected/bad.json.error.txt\n"
    );
}

#[test]
fn a_batch_that_ends_between_two_readings_is_still_said() {
    let mut c = Console::new(Vec::new(), false);
    let t0 = Instant::now();
    // the first reading is history, not news
    c.tally(live(50, 0, 0), t0);
    c.tally(live(53, 1, 0), t0 + Duration::from_secs(1));
    assert_eq!(
        text(c),
        "batch done: 4 tasks ended (3 completed, 1 failed, 0 cancelled)\n"
    );
}
