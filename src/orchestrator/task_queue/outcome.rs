//! How an attempt ended, and what follows: completed (recorded once),
//! retried after a backoff, failed for good, or queued again without
//! counting (refused). The transitions are [`LiveTasks`] methods.

use super::live::{Completion, Effects, Entry, Freed, LiveTasks, Outbound, Sample};
use super::OutcomeKind;
use crate::model::{AttemptEnd, AttemptId, RunStatus, TaskId, TaskResult, TaskStatus, WorkerId};
use crate::orchestrator::activity::EndedAttempt;
use crate::orchestrator::store::Change;
use crate::util::time::iso_at;

/// Why a worker's result is not for the stored task (another algorithm
/// as written, other parameters), or `None` when it is. The task's body
/// is the JSON the worker was sent; the worker echoes both fields as it
/// received them.
pub fn mismatch_with_task(entry: &Entry, result: &TaskResult) -> Option<String> {
    if result.algorithm != entry.algorithm {
        return Some(format!(
            "the result is for algorithm {:?}, the task asks for {:?}",
            result.algorithm, entry.algorithm
        ));
    }
    let stored: Option<serde_json::Value> = serde_json::from_str::<serde_json::Value>(&entry.body)
        .ok()
        .and_then(|mut v| v.get_mut("parameters").map(serde_json::Value::take));
    match stored {
        Some(p) if p == result.parameters => None,
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
        let mut fx = Effects::default();
        let cancelling = self.cancelling.contains_key(task_id);
        let is_current = !cancelling && self.running.get(task_id).map(|r| r.attempt_id) == Some(attempt_id);
        let started = self.running.get(task_id).is_some_and(|r| r.started);
        if is_current && !started && !matches!(kind, OutcomeKind::Refused(_)) {
            // it ran after all (a result, a failure, a loss): it is an
            // attempt, persisted as one before it ends
            fx = self.started(task_id, attempt_id, now);
        } else if is_current && !started {
            // sent ahead and handed back before it took a slot: nothing
            // of it reached the database, and nothing needs to
            let r = self.running.remove(task_id).expect("the current attempt runs");
            self.place.remove(task_id);
            self.release(&r.worker, Freed::Nothing, r.entry.task_size(), now, &mut fx);
            self.counters.refused_attempts += 1;
            self.metrics.refused();
            let mut entry = r.entry;
            entry.attempts = entry.attempts.saturating_sub(1);
            self.put_ready(entry);
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
                    if self.place.contains_key(task_id) && !cancelling {
                        if !is_current {
                            tracing::info!(task = %task_id, %attempt_id, "result of an earlier attempt accepted");
                        }
                        self.complete(task_id, attempt_id, worker, *result, now, &mut fx);
                    } else {
                        self.counters.late_results_ignored += 1;
                        self.metrics.late_result();
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
            OutcomeKind::Lost(error) => (AttemptEnd::Lost, error),
        };
        let mut r = self.running.remove(task_id).expect("the current attempt runs");
        if matches!(end, AttemptEnd::Failed | AttemptEnd::Lost) && !r.entry.failed_on.contains(&r.worker) {
            // redistribution: the next attempt prefers another worker
            r.entry.failed_on.push(r.worker.clone());
        }
        self.place.remove(task_id);
        let freed = if end == AttemptEnd::Failed {
            Freed::Failed
        } else {
            Freed::Nothing
        };
        self.release(&r.worker, freed, r.entry.task_size(), now, &mut fx);
        if end != AttemptEnd::Refused {
            self.failure_seen(task_id, &r.worker, r.entry.attempts, end, &error, now);
        }
        match end {
            AttemptEnd::Refused => {
                self.counters.refused_attempts += 1;
                self.metrics.refused();
                self.refused(r.entry, attempt_id, error, now, &mut fx);
            }
            AttemptEnd::Lost => {
                self.counters.lost_attempts += 1;
                self.retry_or_fail(r.entry, attempt_id, end, error, now, &mut fx);
            }
            _ => self.retry_or_fail(r.entry, attempt_id, end, error, now, &mut fx),
        }
        fx
    }

    /// Whether a task whose attempt number `attempts` failed has no retry left.
    fn fails_for_good(&self, attempts: u32) -> bool {
        attempts > self.policy.max_retries
    }

    /// Tells the dashboard's recent history of a failed or lost attempt.
    fn failure_seen(
        &self,
        task_id: &TaskId,
        worker: &WorkerId,
        attempt: u32,
        end: AttemptEnd,
        reason: &str,
        now: f64,
    ) {
        let for_good = self.fails_for_good(attempt);
        let ended = EndedAttempt {
            task_id,
            worker,
            attempt,
            end,
            for_good,
            reason,
        };
        self.activity.failed(now, ended);
    }

    /// Nothing ran: back to the ready queue at once, the attempt not counted.
    fn refused(&mut self, mut entry: Entry, attempt_id: AttemptId, why: String, now: f64, fx: &mut Effects) {
        entry.attempts = entry.attempts.saturating_sub(1);
        fx.persist.push(Change::AttemptEnded {
            attempt_id,
            end: AttemptEnd::Refused,
            error: Some(format!("{why} (not counted as an attempt)")),
            at: now,
        });
        fx.persist.push(Change::Requeue {
            task_id: entry.task_id.clone(),
            attempts: entry.attempts,
            next_at: None,
        });
        self.put_ready(entry);
    }

    /// An attempt failed or was lost: back to the queue after a backoff, or
    /// failed for good once the retries are used up.
    fn retry_or_fail(
        &mut self,
        mut entry: Entry,
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
        entry.last_error = Some(error.clone());
        if !self.fails_for_good(entry.attempts) {
            let delay = self.backoff(entry.attempts);
            let due = now + delay;
            tracing::warn!(task = %entry.task_id, attempt = entry.attempts, outcome = %end, %error,
                retry_in = delay, "attempt failed; will retry");
            self.counters.retried += 1;
            self.metrics.retried();
            fx.persist.push(Change::Requeue {
                task_id: entry.task_id.clone(),
                attempts: entry.attempts,
                next_at: Some(due),
            });
            self.delay_until(entry, due, fx);
        } else {
            tracing::error!(task = %entry.task_id, attempts = entry.attempts, %error, "task failed");
            self.counters.failed += 1;
            self.metrics.failed(entry.kernel.as_str());
            fx.persist.push(Change::Ended {
                task_id: entry.task_id.clone(),
                status: TaskStatus::Failed,
                result: None,
                error: Some(format!(
                    "failed after {} attempt{}; last: {end}: {error}",
                    entry.attempts,
                    if entry.attempts == 1 { "" } else { "s" }
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
        let Some((entry, running)) = self.take(task_id) else {
            return;
        };
        let seconds = result.execution_time;
        if let Some(r) = running {
            self.release(
                &r.worker,
                Freed::Completed { seconds },
                r.entry.task_size(),
                now,
                fx,
            );
            if r.attempt_id != attempt_id {
                fx.send.push(Outbound::CancelOnWorker {
                    worker: r.worker,
                    task_id: task_id.clone(),
                });
            }
        }
        result.worker_id = Some(from.clone());
        result.completed_at.get_or_insert_with(|| iso_at(now));
        result.priority = Some(entry.priority);
        result.attempt_id = None;
        result.echo_unknown_fields(&entry.body);
        result.source = Some(entry.source.to_string());
        let json = serde_json::to_string(&result).unwrap_or_default();
        self.counters.completed += 1;
        self.metrics.completed(entry.kernel.as_str(), seconds);
        self.activity
            .completed(now, entry.kernel.as_str(), from, seconds, entry.size);
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
