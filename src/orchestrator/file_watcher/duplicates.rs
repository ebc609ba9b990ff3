//! The report of a file whose task ids the orchestrator already knows
//! (the seed's workflow copies the example file under a new name): the
//! ids, where each one stands and where its result is, and how to run
//! them again. Bounded for a huge file: the first
//! [`DUPLICATES_SHOWN`](crate::orchestrator::store::DUPLICATES_SHOWN) ids are named
//! one per line, the rest are counted by status.

use crate::model::taskfile::Rejection;
use crate::model::{FieldError, TaskStatus};
use crate::orchestrator::store::{Duplicates, KnownTask, StatusCounts};
use crate::orchestrator::task_queue::SubmitError;

/// The rejection of a file with ids that exist: the one wording of
/// "these ids exist" (shared with `POST /tasks`) as its one problem, then
/// where they are and what to do.
pub(super) fn rejection(dups: &Duplicates) -> Rejection {
    let message = SubmitError::message(dups);
    let mut r = Rejection::many(vec![FieldError::new(
        "tasks",
        format!("{message} (was this file dropped before?)"),
    )]);
    r.advice = Some(advice(dups));
    r
}

/// Where one known task stands, in a few words.
fn where_it_is(t: &KnownTask) -> String {
    match (t.status, &t.results_file) {
        (TaskStatus::Completed, Some(file)) => format!("completed, result in {file}"),
        (TaskStatus::Completed, None) => {
            "completed, result not in a results file yet (written within RESULTS_FLUSH_INTERVAL)".into()
        }
        (TaskStatus::Failed, _) => "failed, no result (GET /tasks/{id} says why)".into(),
        (TaskStatus::Cancelled, _) => "cancelled, no result".into(),
        (TaskStatus::Running, _) => "running now".into(),
        (TaskStatus::Queued, _) => "queued, not run yet".into(),
    }
}

/// `950 completed, 30 failed`: the non-zero counts.
fn by_status(c: &StatusCounts) -> String {
    [
        (c.completed, "completed"),
        (c.failed, "failed"),
        (c.cancelled, "cancelled"),
        (c.running, "running"),
        (c.queued, "queued"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, s)| format!("{n} {s}"))
    .collect::<Vec<_>>()
    .join(", ")
}

fn advice(dups: &Duplicates) -> String {
    let total = dups.ids.len();
    let mut out = if dups.first.len() < total {
        format!(
            "Where these tasks are (the first {} of {total}; all of them: {}):\n",
            dups.first.len(),
            by_status(&dups.by_status)
        )
    } else {
        "Where these tasks are:\n".to_string()
    };
    out.push_str(&listing(dups));
    out.push_str(
        "\nA results file (results/task_results_<time>.json) is a JSON array of results: look for the \
         task's \"task_id\" in it. GET /tasks/{id} shows any task with its attempts and its result.\n\
         \nTo run them again:\n",
    );
    out.push_str(&how_to_run_again(dups));
    out
}

/// One line per named id (`  task_001  completed, result in FILE`), then
/// `  and N more: …` counted by status.
pub fn listing(dups: &Duplicates) -> String {
    let width = dups.first.iter().map(|t| t.task_id.len()).max().unwrap_or(0);
    let mut out = String::new();
    for t in &dups.first {
        out.push_str(&format!("  {:<width$}  {}\n", t.task_id, where_it_is(t)));
    }
    if dups.first.len() < dups.ids.len() {
        let mut shown = StatusCounts::default();
        for t in &dups.first {
            shown.add(t.status, 1);
        }
        out.push_str(&format!(
            "  and {} more: {}\n",
            dups.ids.len() - dups.first.len(),
            by_status(&dups.by_status.without(&shown))
        ));
    }
    out
}

/// The two ways to run known ids again: a retry for a failed or cancelled
/// task (an example with one of them if there is one), new ids for new work.
pub fn how_to_run_again(dups: &Duplicates) -> String {
    let retry_example = dups
        .first
        .iter()
        .find(|t| t.status.is_retryable())
        .map_or("ID", |t| t.task_id.as_str());
    format!(
        "- a failed or cancelled task: POST /tasks/{{id}}/retry queues it again, e.g.\n    \
         curl -X POST http://127.0.0.1:5000/tasks/{retry_example}/retry\n\
         - the file as new work (a task id runs once; a completed task is never run again under \
         its id): give its tasks new ids, by editing each \"task_id\" (e.g. add a suffix such as \
         _run2) and dropping the file again, or make a new file with fresh ids: orquesta gen\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dups(n: usize) -> Duplicates {
        let mut d = Duplicates::default();
        for i in 0..n {
            let (status, file) = match i % 4 {
                0 => (
                    TaskStatus::Completed,
                    Some("results/task_results_20240115_103000.json".to_string()),
                ),
                1 => (TaskStatus::Failed, None),
                2 => (TaskStatus::Completed, None),
                _ => (TaskStatus::Queued, None),
            };
            d.push(format!("task_{i:03}").into(), status, file);
        }
        d
    }

    #[test]
    fn the_report_says_where_results_are_and_how_to_run_again() {
        let r = rejection(&dups(4));
        let text = r.report("copy.json");
        assert!(
            text.contains(
                "4 task id(s) already exist; nothing was queued; already known to the orchestrator: \
                           task_000, task_001, task_002, task_003 (was this file dropped before?)"
            ),
            "{text}"
        );
        assert!(
            text.contains("task_000  completed, result in results/task_results_20240115_103000.json"),
            "{text}"
        );
        assert!(text.contains("task_001  failed, no result"), "{text}");
        assert!(
            text.contains("task_002  completed, result not in a results file yet"),
            "{text}"
        );
        assert!(text.contains("task_003  queued, not run yet"), "{text}");
        assert!(
            text.contains("curl -X POST http://127.0.0.1:5000/tasks/task_001/retry"),
            "{text}"
        );
        assert!(text.contains("orquesta gen"), "{text}");
        assert!(!text.contains("The expected shape"), "{text}");
        assert_eq!(r.problems.len(), 1, "one problem: the summary stays one line");
    }

    #[test]
    fn a_huge_file_names_the_first_ids_and_counts_the_rest() {
        let d = dups(100_000);
        let text = rejection(&d).report("big.json");
        assert!(text.contains("the first 20 of 100000"), "{text}");
        assert!(
            text.contains("all of them: 50000 completed, 25000 failed, 25000 queued"),
            "{text}"
        );
        // 20 shown: 10 completed, 5 failed, 5 queued
        assert!(
            text.contains("and 99980 more: 49990 completed, 24995 failed, 24995 queued"),
            "{text}"
        );
        assert!(!text.contains("task_020"), "only the first 20 are named");
        assert!(text.len() < 4000, "bounded: {} bytes", text.len());
    }
}
