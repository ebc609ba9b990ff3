//! Folds: a task that started and ended within one group commit is written
//! once. Its start (an `UPDATE` of `tasks` to running and an `INSERT` into
//! `attempts`) and its end (an `UPDATE` of the attempt, an `UPDATE` of the
//! task) become one whole `attempts` row and one `UPDATE` of `tasks` that
//! goes from queued to its end directly, so the task's row, its indexes and
//! the count triggers are changed once instead of twice. What is committed
//! is the same as applying both changes in order.
//!
//! Only when nothing between the two could see the difference: the ops in
//! between may only change other tasks, attempts or tables no read of the
//! group depends on; anything else (a page read, a cancel, a results file,
//! …) ends every fold in progress. Folds apply only on the straight path
//! of [`super::group`]; a replay runs every change as written.

use std::collections::HashMap;

use rusqlite::{params, Connection};

use super::writer::{Job, Op};
use super::{history, Change};
use crate::model::{AttemptEnd, AttemptId, TaskId, TaskStatus, WorkerId};

/// An op's place in a group: (job, op in the job).
type Place = (usize, usize);

/// The start of an attempt, as its `AttemptStarted` says.
#[derive(Debug, Clone, Copy)]
pub(super) struct Started<'a> {
    task_id: &'a TaskId,
    attempt_id: AttemptId,
    worker_id: &'a WorkerId,
    at: f64,
}

/// What an op of a fold writes instead of its own change.
#[derive(Debug)]
pub(super) enum Folded<'a> {
    /// A start carried by the ops of its end: nothing here.
    Skip,
    /// The attempt's row, started and ended.
    Attempt {
        started: Started<'a>,
        end: AttemptEnd,
        error: Option<&'a str>,
        at: f64,
    },
    /// The task from before its start to its end, in one `UPDATE`.
    Task { started: Started<'a>, ended: &'a Change },
}

/// Every fold found in a group.
#[derive(Debug, Default)]
pub(super) struct Plan<'a> {
    folds: HashMap<Place, Folded<'a>>,
}

impl<'a> Plan<'a> {
    /// The folds of job `job`.
    pub fn of_job<'p>(&'p self, job: usize) -> Folds<'p, 'a> {
        Folds {
            plan: (!self.folds.is_empty()).then_some(self),
            job,
        }
    }

    /// How many tasks are folded (for tests).
    #[cfg(test)]
    pub fn tasks(&self) -> usize {
        self.folds
            .values()
            .filter(|f| matches!(f, Folded::Task { .. }))
            .count()
    }
}

/// One job's view of a [`Plan`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Folds<'p, 'a> {
    plan: Option<&'p Plan<'a>>,
    job: usize,
}

impl<'p, 'a> Folds<'p, 'a> {
    /// No folds: every op as written.
    pub const NONE: Folds<'static, 'static> = Folds { plan: None, job: 0 };

    /// What op `op` of this job writes instead, if it is part of a fold.
    pub fn of(&self, op: usize) -> Option<&'p Folded<'a>> {
        self.plan?.folds.get(&(self.job, op))
    }
}

/// A start waiting for its end.
struct Open<'a> {
    place: Place,
    started: Started<'a>,
    /// Where its attempt's end is, once seen.
    attempt_end: Option<Place>,
}

/// Finds the tasks of `jobs` that start and end within them with nothing
/// in between that could tell.
pub(super) fn plan(jobs: &[Job]) -> Plan<'_> {
    let mut plan = Plan::default();
    let mut open: HashMap<&TaskId, Open<'_>> = HashMap::new();
    let mut by_attempt: HashMap<AttemptId, &TaskId> = HashMap::new();
    for (j, job) in jobs.iter().enumerate() {
        for (i, op) in job.ops.iter().enumerate() {
            if matches!(op, Op::Now) {
                continue;
            }
            let Op::Change(change) = op else {
                open.clear();
                by_attempt.clear();
                continue;
            };
            match change {
                Change::AttemptStarted {
                    task_id,
                    attempt_id,
                    worker_id,
                    at,
                } => {
                    let started = Started {
                        task_id,
                        attempt_id: *attempt_id,
                        worker_id,
                        at: *at,
                    };
                    if open.contains_key(task_id) || by_attempt.contains_key(attempt_id) {
                        // started twice in one group: written as it comes
                        forget(&mut open, &mut by_attempt, task_id);
                        continue;
                    }
                    by_attempt.insert(*attempt_id, task_id);
                    open.insert(
                        task_id,
                        Open {
                            place: (j, i),
                            started,
                            attempt_end: None,
                        },
                    );
                }
                Change::AttemptEnded { attempt_id, .. } => {
                    let Some(task_id) = by_attempt.get(attempt_id).copied() else {
                        continue;
                    };
                    match open.get_mut(task_id) {
                        Some(o) if o.attempt_end.is_none() => o.attempt_end = Some((j, i)),
                        _ => forget(&mut open, &mut by_attempt, task_id),
                    }
                }
                Change::Ended { task_id, .. } => {
                    let Some(o) = open.remove(task_id) else {
                        continue;
                    };
                    by_attempt.remove(&o.started.attempt_id);
                    let Some(attempt_end) = o.attempt_end else {
                        continue;
                    };
                    let Some(Op::Change(Change::AttemptEnded { end, error, at, .. })) =
                        jobs[attempt_end.0].ops.get(attempt_end.1)
                    else {
                        continue;
                    };
                    plan.folds.insert(o.place, Folded::Skip);
                    plan.folds.insert(
                        attempt_end,
                        Folded::Attempt {
                            started: o.started,
                            end: *end,
                            error: error.as_deref(),
                            at: *at,
                        },
                    );
                    plan.folds.insert(
                        (j, i),
                        Folded::Task {
                            started: o.started,
                            ended: change,
                        },
                    );
                }
                Change::Requeue { task_id, .. } => forget(&mut open, &mut by_attempt, task_id),
                // tables no task's start or end reads or writes
                Change::MemberJoined { .. }
                | Change::MemberLeft { .. }
                | Change::IngestMoved { .. }
                | Change::FileRejected(_)
                | Change::Allocation(_)
                | Change::FailuresWritten { .. }
                | Change::Unstage { .. }
                | Change::AttemptResumes { .. }
                | Change::Check(_) => {}
                Change::AssignResultsFile { .. } | Change::MarkWritten { .. } => {
                    open.clear();
                    by_attempt.clear();
                }
            }
        }
    }
    plan
}

/// A start that will be written as it comes.
fn forget<'a>(
    open: &mut HashMap<&'a TaskId, Open<'a>>,
    by_attempt: &mut HashMap<AttemptId, &'a TaskId>,
    task_id: &TaskId,
) {
    if let Some(o) = open.remove(task_id) {
        by_attempt.remove(&o.started.attempt_id);
    }
}

/// Writes what a folded op stands for.
pub(super) fn apply(db: &Connection, folded: &Folded<'_>) -> rusqlite::Result<()> {
    match folded {
        Folded::Skip => {}
        Folded::Attempt {
            started,
            end,
            error,
            at,
        } => {
            db.prepare_cached(
                "INSERT OR REPLACE INTO attempts(attempt_id, task_id, worker_id, started_at, ended_at, outcome, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                started.attempt_id,
                started.task_id,
                started.worker_id,
                started.at,
                at,
                end,
                error
            ])?;
        }
        Folded::Task { started, ended } => {
            let Change::Ended {
                task_id,
                status,
                result,
                error,
                worker_id,
                at,
            } = ended
            else {
                return Ok(());
            };
            // the start's change applies only to a queued or running task
            // (the right-hand sides read the row as it was)
            db.prepare_cached(
                "UPDATE tasks SET
                 attempts = attempts + (status IN ('queued', 'running')),
                 started_at = CASE WHEN status IN ('queued', 'running') THEN ?7 ELSE started_at END,
                 worker_id = COALESCE(?5, CASE WHEN status IN ('queued', 'running') THEN ?8 ELSE worker_id END),
                 status = ?2, result = COALESCE(?3, result), error = ?4, finished_at = ?6,
                 current_attempt = NULL, next_attempt_at = NULL,
                 written = CASE WHEN ?2 = 'completed' THEN 0 ELSE 1 END
                 WHERE task_id = ?1",
            )?
            .execute(params![
                task_id,
                status,
                result,
                error,
                worker_id,
                at,
                started.at,
                started.worker_id
            ])?;
            if *status != TaskStatus::Completed {
                history::record_failure(db, task_id.as_str())?;
            }
        }
    }
    Ok(())
}
