//! A dropped file committed whole ([`LiveTasks::file_committed`]): only
//! its first tasks come into memory, and what sorts after them is paged
//! in, also when a page was being read as the file was committed.

use super::live::{LiveTasks, RetryPolicy, WINDOW};
use crate::model::{Priority, TaskId};
use crate::orchestrator::store::QueuedRow;

fn live() -> LiveTasks {
    let policy = RetryPolicy {
        max_retries: 3,
        base_seconds: 0.5,
        max_seconds: 30.0,
    };
    LiveTasks::new(policy, 1, 7)
}

fn row(seq: i64, priority: u8) -> QueuedRow {
    QueuedRow {
        seq,
        task_id: format!("t{seq}").into(),
        priority: Priority::from_rank(priority),
        kernel: Some("reference".into()),
        algorithm: "python".into(),
        body: "{}".into(),
        attempts: 0,
        next_attempt_at: None,
        created_at: 0.0,
        source: "f.json".into(),
    }
}

#[test]
fn the_rest_of_a_file_is_paged_in_after_its_first_rows() {
    let mut live = live();
    live.file_committed(vec![row(1, 0), row(2, 0), row(3, 1)], &["reference".into()], 1000);
    assert_eq!(live.live_count(), 3 + 1, "three in memory, more in the database");
    let pages = live.pages_wanted();
    assert_eq!(pages.len(), 1);
    assert_eq!(
        pages[0].after,
        Some((Priority::Medium, 3)),
        "after the last row loaded"
    );
    let taken: Vec<TaskId> = live.take_batch(10).into_iter().map(|(id, _)| id).collect();
    assert_eq!(taken, ["t1", "t2", "t3"]);
}

#[test]
fn a_file_of_higher_priority_is_not_skipped_by_a_page_read_meanwhile() {
    let mut live = live();
    // a window of low tasks, more of them in the database
    let low: Vec<QueuedRow> = (1..=WINDOW as i64 + 1).map(|s| row(s, 2)).collect();
    live.file_committed(low, &[], WINDOW + 1);
    let drained = live.take_batch(WINDOW - WINDOW / 4);
    assert_eq!(drained.len(), WINDOW - WINDOW / 4);
    let pages = live.pages_wanted();
    assert_eq!(pages.len(), 1, "the window ran low");
    assert_eq!(pages[0].after, Some((Priority::Low, WINDOW as i64)));
    // while that page is read, a file of high tasks is committed, with
    // more of it than its first rows
    let base = 10 * WINDOW as i64;
    live.file_committed(
        vec![row(base + 1, 0), row(base + 2, 0)],
        &["reference".into()],
        5000,
    );
    // the page (read before the commit) brings low tasks only, a full page
    let page: Vec<QueuedRow> = (0..pages[0].limit as i64).map(|i| row(base / 2 + i, 2)).collect();
    live.paged_in(&pages[0], page, 0.0);
    // the next page starts at the file's last loaded row, not after the
    // low page: the file's other high tasks are not skipped
    let _ = live.take_batch(WINDOW);
    let next = live.pages_wanted();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].after, Some((Priority::High, base + 2)));
}
