//! How an attempt ended, and what follows: completed (recorded once),
//! retried after a backoff, failed for good, or queued again without
//! counting (refused). The transitions are [`LiveTasks`] methods.

use super::live::{Completion, Effects, Entry, Freed, LiveTasks, Observed, Outbound, Sample, TaskState};
use super::OutcomeKind;
use crate::model::{AttemptEnd, AttemptId, RunStatus, TaskId, TaskResult, TaskStatus, WorkerId};
use crate::orchestrator::store::Change;
use crate::util::time::iso_at;

/// Why a worker's result is not for the stored task (another algorithm
/// as written, other parameters), or `None` when it is. The task's body
/// is the JSON the worker was sent (its parameters fingerprinted once,
/// when the task came into memory); the worker echoes both fields as it
/// received them.
pub fn mismatch_with_task(entry: &Entry, result: &TaskResult) -> Option<String> {
    if result.algorithm != entry.algorithm {
        return Some(format!(
            "the result is for algorithm {:?}, the task asks for {:?}",
            result.algorithm, entry.algorithm
        ));
    }
    match entry.parameters {
        Some(p) if p == super::entry::fingerprint(&result.parameters) => None,
        Some(_) => Some("the result is for other parameters than the task's".into()),
        None => Some("the stored task has no parameters to compare the result with".into()),
    }
}

impl LiveTasks {
    /// Event: `worker` reports how attempt `attempt_id` of `task_id` ended.
    /// A completed result is accepted from any attempt of a task that has
    /// not ended; anything else counts only for the current attempt.
    pub fn outcome(
        &mut self,
        task_id: &TaskId,
        attempt_id: AttemptId,
        worker: &WorkerId,
        kind: OutcomeKind,
        now: f64,
    ) -> Effects {
        self.clock = self.clock.max(now);
        if self.is_verification(task_id, attempt_id) {
            // a run of a completed task on another worker: compared, never
            // an attempt (`verify.rs`)
            return self.verification_outcome(task_id, kind, now);
        }
        let mut fx = Effects::default();
        let cancelling = self.cancelling.contains(task_id);
        let attempt = self
            .state_of(task_id)
            .and_then(TaskState::attempt)
            .map(|(w, a)| (w.clone(), a));
        let is_current = !cancelling && attempt.as_ref().map(|(_, a)| *a) == Some(attempt_id);
        let started = matches!(self.state_of(task_id), Some(TaskState::Running { .. }));
        if is_current && !started && !matches!(kind, OutcomeKind::Refused(_)) {
            // it ran after all (a result, a failure, a loss): it is an
            // attempt, persisted as one before it ends
            fx = self.started(task_id, attempt_id, now);
        } else if is_current && !started {
            // sent ahead and handed back before it took a slot: nothing
            // of it reached the database, and nothing needs to
            self.hand_back(task_id, now, &mut fx);
            return fx;
        }
        let kind = match kind {
            OutcomeKind::Result(result) => {
                match self.entry(task_id).and_then(|e| mismatch_with_task(e, &result)) {
                    Some(why) => OutcomeKind::Forged(why),
                    None => OutcomeKind::Result(result),
                }
            }
            other => other,
        };
        let broken = matches!(kind, OutcomeKind::Broken(_));
        let (end, error) = match kind {
            OutcomeKind::Forged(why) => {
                self.counters.forged_results += 1;
                tracing::warn!(task = %task_id, %attempt_id, %worker, %why,
                    "forged or stray result dropped; the attempt counts as lost");
                if !is_current {
                    return fx;
                }
                (
                    AttemptEnd::Lost,
                    format!("forged or stray result from worker {worker} dropped: {why}"),
                )
            }
            OutcomeKind::Result(result) => {
                let run = result.result.status;
                if run == RunStatus::Completed {
                    if self.place_of(task_id).is_some() && !cancelling {
                        if !is_current {
                            tracing::info!(task = %task_id, %attempt_id, "result of an earlier attempt accepted");
                        }
                        self.complete(task_id, attempt_id, worker, *result, now, &mut fx);
                    } else {
                        self.counters.late_results_ignored += 1;
                        fx.observed.push(Observed::LateResult);
                        tracing::info!(task = %task_id, %attempt_id, %worker,
                            "result for a task that already ended: ignored");
                        fx.send.push(Outbound::Ack {
                            worker: worker.clone(),
                            task_id: task_id.clone(),
                        });
                    }
                    return fx;
                }
                if !is_current {
                    return fx;
                }
                fx.send.push(Outbound::Ack {
                    worker: worker.clone(),
                    task_id: task_id.clone(),
                });
                if run == RunStatus::Cancelled {
                    let why = format!("cancelled on worker {worker} (it was shutting down?)");
                    (AttemptEnd::Lost, why)
                } else {
                    let r = result.result;
                    (AttemptEnd::Failed, r.error.unwrap_or(r.output))
                }
            }
            _ if !is_current => return fx,
            OutcomeKind::Refused(why) => (AttemptEnd::Refused, why),
            OutcomeKind::Failed(error) | OutcomeKind::TimedOut(error) => (AttemptEnd::Failed, error),
            OutcomeKind::Lost(error) | OutcomeKind::Broken(error) => (AttemptEnd::Lost, error),
        };
        let worker = attempt.map(|(w, _)| w).expect("the current attempt runs");
        let entry = &mut self
            .tasks
            .get_mut(task_id)
            .expect("the current attempt runs")
            .entry;
        if matches!(end, AttemptEnd::Failed | AttemptEnd::Lost) && !entry.failed_on.contains(&worker) {
            // redistribution: the next attempt prefers another worker
            entry.failed_on.push(worker.clone());
        }
        let (size, attempts) = (entry.task_size(), entry.attempts);
        let freed = if end == AttemptEnd::Failed {
            Freed::Failed
        } else {
            Freed::Nothing
        };
        self.release(&worker, freed, Some(size), now, &mut fx);
        if end != AttemptEnd::Refused {
            fx.observed.push(Observed::AttemptFailed {
                task_id: task_id.clone(),
                worker,
                attempt: attempts,
                end,
                for_good: !broken && self.fails_for_good(attempts),
                reason: error.clone(),
                at: now,
            });
        }
        match end {
            AttemptEnd::Lost if broken => {
                self.counters.lost_attempts += 1;
                self.not_counted(task_id, attempt_id, AttemptEnd::Lost, error, now, &mut fx);
            }
            AttemptEnd::Refused => {
                self.counters.refused_attempts += 1;
                fx.observed.push(Observed::Refused);
                self.not_counted(task_id, attempt_id, AttemptEnd::Refused, error, now, &mut fx);
            }
            AttemptEnd::Lost => {
                self.counters.lost_attempts += 1;
                self.retry_or_fail(task_id, attempt_id, end, error, now, &mut fx);
            }
            _ => self.retry_or_fail(task_id, attempt_id, end, error, now, &mut fx),
        }
        fx
    }

    /// A task sent ahead comes back before it took a slot: its slot is
    /// free, the attempt is not counted, and it is ready again at once.
    pub(super) fn hand_back(&mut self, task_id: &TaskId, now: f64, fx: &mut Effects) {
        let Some((worker, _)) = self.state_of(task_id).and_then(TaskState::attempt) else {
            return;
        };
        let worker = worker.clone();
        let entry = &mut self.tasks.get_mut(task_id).expect("it was sent").entry;
        entry.attempts = entry.attempts.saturating_sub(1);
        let size = entry.task_size();
        self.transition(task_id, TaskState::Ready);
        self.release(&worker, Freed::Nothing, Some(size), now, fx);
        self.counters.refused_attempts += 1;
        fx.observed.push(Observed::Refused);
    }

    /// Whether a task whose attempt number `attempts` failed has no retry left.
    fn fails_for_good(&self, attempts: u32) -> bool {
        attempts > self.policy.max_retries
    }

    /// Nothing ran (`Refused`), or the worker broke its promise while it
    /// ran (`Lost`, [`OutcomeKind::Broken`]): back to the ready queue at
    /// once, the attempt not counted.
    fn not_counted(
        &mut self,
        task_id: &TaskId,
        attempt_id: AttemptId,
        end: AttemptEnd,
        why: String,
        now: f64,
        fx: &mut Effects,
    ) {
        let entry = &mut self
            .tasks
            .get_mut(task_id)
            .expect("the current attempt runs")
            .entry;
        entry.attempts = entry.attempts.saturating_sub(1);
        fx.persist.push(Change::AttemptEnded {
            attempt_id,
            end,
            error: Some(format!("{why} (not counted as an attempt)")),
            at: now,
        });
        fx.persist.push(Change::Requeue {
            task_id: task_id.clone(),
            attempts: entry.attempts,
            next_at: None,
        });
        self.transition(task_id, TaskState::Ready);
    }

    /// An attempt failed or was lost: back to the queue after a backoff, or
    /// failed for good once the retries are used up.
    fn retry_or_fail(
        &mut self,
        task_id: &TaskId,
        attempt_id: AttemptId,
        end: AttemptEnd,
        error: String,
        now: f64,
        fx: &mut Effects,
    ) {
        fx.persist.push(Change::AttemptEnded {
            attempt_id,
            end,
            error: Some(error.clone()),
            at: now,
        });
        let entry = &mut self
            .tasks
            .get_mut(task_id)
            .expect("the current attempt runs")
            .entry;
        entry.last_error = Some(error.clone());
        let attempts = entry.attempts;
        if !self.fails_for_good(attempts) {
            let delay = self.backoff(attempts);
            let due = now + delay;
            tracing::warn!(task = %task_id, attempt = attempts, outcome = %end, %error,
                retry_in = delay, "attempt failed; will retry");
            self.counters.retried += 1;
            fx.observed.push(Observed::Retried);
            fx.persist.push(Change::Requeue {
                task_id: task_id.clone(),
                attempts,
                next_at: Some(due),
            });
            self.delay_until(task_id, due, fx);
        } else {
            tracing::error!(task = %task_id, attempts, %error, "task failed");
            let kernel = self
                .remove(task_id)
                .expect("the current attempt runs")
                .entry
                .kernel;
            self.counters.failed += 1;
            fx.observed.push(Observed::Failed { kernel });
            fx.persist.push(Change::Ended {
                task_id: task_id.clone(),
                status: TaskStatus::Failed,
                result: None,
                error: Some(format!(
                    "failed after {} attempt{}; last: {end}: {error}",
                    attempts,
                    if attempts == 1 { "" } else { "s" }
                )),
                worker_id: None,
                at: now,
            });
        }
    }

    /// The first valid result of a task that has not ended: recorded once,
    /// then acknowledged to the worker that holds it; another attempt still
    /// at work on it is stopped.
    fn complete(
        &mut self,
        task_id: &TaskId,
        attempt_id: AttemptId,
        from: &WorkerId,
        mut result: TaskResult,
        now: f64,
        fx: &mut Effects,
    ) {
        let Some(taken) = self.remove(task_id) else {
            return;
        };
        let entry = taken.entry;
        let seconds = result.execution_time;
        if let Some((worker, running)) = taken.state.attempt() {
            self.release(
                worker,
                Freed::Completed { seconds },
                Some(entry.task_size()),
                now,
                fx,
            );
            if running != attempt_id {
                fx.send.push(Outbound::CancelOnWorker {
                    worker: worker.clone(),
                    task_id: task_id.clone(),
                });
            }
        }
        result.worker_id = Some(from.clone());
        result.completed_at.get_or_insert_with(|| iso_at(now));
        result.priority = Some(entry.priority);
        result.attempt_id = None;
        result.echo(&entry.echo());
        result.source = Some(entry.source.to_string());
        self.verify_completed(&entry, from, &result, fx);
        let json = serde_json::to_string(&result).unwrap_or_default();
        self.counters.completed += 1;
        fx.observed.push(Observed::Completed {
            kernel: entry.kernel,
            worker: from.clone(),
            seconds,
            size: entry.size,
            at: now,
        });
        fx.samples.push(Sample::Execution {
            algorithm: entry.algorithm,
            worker: from.clone(),
            seconds,
        });
        fx.completion = Some(Completion {
            task_id: task_id.clone(),
            attempt_id,
            worker: from.clone(),
            result,
            json,
            at: now,
        });
    }
}
