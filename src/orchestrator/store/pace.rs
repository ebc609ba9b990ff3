//! When the writer commits a group: task changes (a start, an end, a
//! requeue) wait up to [`PACE`] after the last group began for others to
//! join them; anything else commits at once.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::writer::{runs_alone, Job, Op};
use super::Change;

/// The least time between two group commits of task changes only (a
/// task's start, its end, a requeue): what arrives meanwhile waits and
/// joins the next group. Each commit writes every page it changed to the
/// write-ahead log, and a few tasks per commit change about as many pages
/// (each index's leaves for queued, running and completed, the tasks'
/// rows) as many tasks do; a task that starts and ends within one group is
/// written once ([`super::fold`]). A job with anything else (a file's
/// tasks, a cancel, a read, a results file, a sync) ends the wait, and a
/// change that comes to an idle writer commits at once.
pub(super) const PACE: Duration = Duration::from_millis(20);

/// Jobs a group takes at most.
pub(super) const GROUP_JOBS: usize = 4096;

/// A job that may wait for [`PACE`]: task changes nobody needs committed
/// at once.
pub(super) fn may_wait(job: &Job) -> bool {
    !job.ops.is_empty()
        && job.ops.iter().all(|op| {
            matches!(
                op,
                Op::Change(
                    Change::AttemptStarted { .. }
                        | Change::AttemptEnded { .. }
                        | Change::Ended { .. }
                        | Change::Requeue { .. }
                )
            )
        })
}

/// Until when the group of `jobs` waits for more: [`PACE`] after the last
/// group began, if every job of it may wait.
pub(super) fn pace_until(last_group: Option<Instant>, jobs: &[Job]) -> Option<Instant> {
    let until = last_group? + PACE;
    (until > Instant::now() && jobs.iter().all(may_wait)).then_some(until)
}

/// Adds to `jobs` every job waiting, and those that come until `until`
/// while each may wait; answers a job that must run alone after the
/// group (it is not added).
pub(super) fn gather(
    rx: &mpsc::Receiver<Job>,
    jobs: &mut Vec<Job>,
    mut until: Option<Instant>,
) -> Option<Job> {
    while jobs.len() < GROUP_JOBS {
        let next = match until.map(|t| t.saturating_duration_since(Instant::now())) {
            Some(wait) if !wait.is_zero() => rx.recv_timeout(wait).ok(),
            _ => rx.try_recv().ok(),
        };
        let Some(job) = next else {
            break;
        };
        // in order: the group commits first, then it runs
        if runs_alone(&job) {
            return Some(job);
        }
        if !may_wait(&job) {
            until = None;
        }
        jobs.push(job);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::fold;
    use super::*;
    use crate::model::{AttemptId, TaskStatus, WorkerId};

    fn job(ops: Vec<Op>) -> Job {
        Job { ops, reply: None }
    }

    fn start(task: &str) -> Job {
        job(vec![Op::Change(Change::AttemptStarted {
            task_id: task.into(),
            attempt_id: AttemptId::new(1),
            worker_id: WorkerId::new("w1"),
            at: 1.0,
        })])
    }

    #[test]
    fn task_changes_wait_and_anything_else_ends_the_wait() {
        assert!(may_wait(&start("a")));
        assert!(!may_wait(&job(Vec::new())), "a sync never waits");
        assert!(!may_wait(&job(vec![Op::Change(Change::MarkWritten {
            file: "f".into()
        })])));
        assert!(!may_wait(&job(vec![Op::Cancel { task_id: "a".into() }])));
        assert!(
            !may_wait(&job(vec![Op::Now])),
            "the last result of a drained queue"
        );
        // a change to an idle writer commits at once
        assert!(pace_until(None, &[start("a")]).is_none());
        let just_now = Some(Instant::now());
        assert!(pace_until(just_now, &[start("a")]).is_some());
        assert!(pace_until(just_now, &[start("a"), job(Vec::new())]).is_none());
        assert!(pace_until(Some(Instant::now() - PACE), &[start("a")]).is_none());
    }

    #[test]
    fn a_job_that_must_commit_now_ends_the_wait_for_the_group() {
        let (tx, rx) = mpsc::channel();
        tx.send(start("b")).unwrap();
        tx.send(job(vec![Op::Cancel { task_id: "c".into() }])).unwrap();
        tx.send(start("d")).unwrap();
        let mut jobs = vec![start("a")];
        // were it to wait for the hour, the test would hang
        let until = Some(Instant::now() + Duration::from_secs(3600));
        assert!(gather(&rx, &mut jobs, until).is_none());
        assert_eq!(jobs.len(), 4, "every job waiting joins the group");
        // a job that runs alone is held for after the group
        tx.send(start("e")).unwrap();
        tx.send(job(vec![Op::Space { vacuum: false }])).unwrap();
        tx.send(start("f")).unwrap();
        let mut jobs = vec![start("a")];
        let held = gather(&rx, &mut jobs, until);
        assert!(matches!(held.map(|j| j.ops), Some(ops) if matches!(ops[..], [Op::Space { .. }])));
        assert_eq!(jobs.len(), 2);
    }

    #[test]
    fn a_result_committed_at_once_is_still_folded_with_its_start() {
        let end = job(vec![
            Op::Change(Change::AttemptEnded {
                attempt_id: AttemptId::new(1),
                end: crate::model::AttemptEnd::Completed,
                error: None,
                at: 2.0,
            }),
            Op::Change(Change::Ended {
                task_id: "a".into(),
                status: TaskStatus::Completed,
                result: Some("{}".into()),
                error: None,
                worker_id: Some(WorkerId::new("w1")),
                at: 2.0,
            }),
            Op::Now,
        ]);
        let jobs = [start("a"), end];
        assert_eq!(fold::plan(&jobs).tasks(), 1);
    }
}
