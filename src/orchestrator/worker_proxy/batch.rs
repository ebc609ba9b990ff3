//! Attempts travel to the worker in batches (`POST /execute/batch`):
//! every attempt handed to the proxy while it is busy goes into the next
//! request, so a burst of tiny tasks costs one request, not one each. The
//! worker answers with a stream of events, one JSON line per `started`,
//! `result` or `refused`, read here as they come, so each result is
//! reported the moment its task ends, not when its batch does.
//!
//! Whether an attempt had started matters when its worker is lost: one
//! that ran is lost (it counts as an attempt of the task), one that only
//! waited in the worker's backlog never ran and goes back to the queue
//! as refused (it does not count).

use std::collections::HashMap;
use std::future::Future;
use std::task::Poll;
use std::time::{Duration, Instant};

use actix::prelude::*;
use awc::error::SendRequestError;
use futures_util::StreamExt;
use serde_json::Value;

use super::answers::{
    check_result, judge_result, never_connected, read_execute_answer, read_refusal, ExecuteVerdict,
};
use super::{AttemptsStarted, OutcomeKind, WorkerFull};
use super::{InFlight, RunAttempt, WorkerProxy, UNAUTHORIZED};
use crate::model::{AttemptId, TaskId};
use crate::protocol::{
    BatchEvent, BatchRequest, ExecuteAnswer, ExecuteRequest, StoredTask, BATCH_FILL_BYTES, MAX_BATCH_TASKS,
};
use crate::util::logging::AttemptOf;
use crate::util::trace::{self, Stage};

/// Longest line a worker may send in a batch answer (a result is a few
/// hundred bytes; a runaway line is a lie, not a result).
const MAX_LINE_BYTES: usize = 64 << 20;

impl WorkerProxy {
    /// Puts an attempt in the next batch; the batch leaves once the
    /// messages already waiting in the mailbox have been read.
    pub(super) fn queue_for_batch(&mut self, msg: RunAttempt, ctx: &mut Context<Self>) {
        let single = !self.batching;
        self.in_flight.insert(
            msg.task_id.clone(),
            InFlight {
                attempt_id: msg.attempt_id,
                started: None,
                sent: Instant::now(),
                batch: 0,
                seq: self.next_seq,
            },
        );
        self.next_seq += 1;
        if single {
            self.send_single(msg, ctx);
            return;
        }
        self.outbox.push(msg);
        if !self.outbox_flush {
            self.outbox_flush = true;
            ctx.spawn(actix::fut::ready(()).map(|(), act: &mut Self, ctx| act.send_outbox(ctx)));
        }
    }

    /// Sends what the outbox holds, in requests of at most
    /// [`MAX_BATCH_TASKS`] tasks and about [`BATCH_FILL_BYTES`].
    fn send_outbox(&mut self, ctx: &mut Context<Self>) {
        self.outbox_flush = false;
        let mut outbox = std::mem::take(&mut self.outbox).into_iter().peekable();
        while outbox.peek().is_some() {
            let mut tasks = Vec::new();
            let mut bytes = 0;
            while let Some(next) = outbox.peek() {
                let size = next.body.len() + 32;
                if !tasks.is_empty() && (tasks.len() >= MAX_BATCH_TASKS || bytes + size > BATCH_FILL_BYTES) {
                    break;
                }
                bytes += size;
                tasks.push(outbox.next().expect("peeked"));
            }
            self.send_batch(tasks, ctx);
        }
    }

    fn send_batch(&mut self, tasks: Vec<RunAttempt>, ctx: &mut Context<Self>) {
        // cancelled (or reported) while waiting in the outbox: not sent
        let tasks: Vec<RunAttempt> = tasks
            .into_iter()
            .filter(|t| {
                self.in_flight
                    .get(&t.task_id)
                    .is_some_and(|f| f.attempt_id == t.attempt_id && f.batch == 0)
            })
            .collect();
        if tasks.is_empty() {
            return;
        }
        let batch = self.next_batch;
        self.next_batch += 1;
        let mut roster = HashMap::with_capacity(tasks.len());
        for t in &tasks {
            if let Some(f) = self.in_flight.get_mut(&t.task_id) {
                f.batch = batch;
            }
            roster.insert(t.task_id.clone(), t.attempt_id);
        }
        trace::note(
            Stage::Dispatched,
            self.id.as_str(),
            tasks.iter().map(|t| AttemptOf(&t.task_id, t.attempt_id)),
        );
        self.batches.insert(batch, roster);
        let body = BatchRequest {
            slots: Some(self.capacity.max(1)),
            tasks: tasks
                .iter()
                .map(|t| ExecuteRequest {
                    attempt_id: Some(t.attempt_id),
                    checkpoint_step: self.settings.checkpoint_step(&t.task_id, t.attempt_id),
                    task: StoredTask(&t.body),
                })
                .collect(),
        };
        // stored bodies are the objects ingest wrote: this cannot fail
        // unless the database was edited by hand (the worker then refuses
        // the empty body, and the batch's tasks go back to the queue)
        let body = serde_json::to_string(&body).unwrap_or_else(|e| {
            tracing::error!(worker = %self.id, error = %e, "a stored task is not a JSON object");
            String::new()
        });
        // no limit on the answer: it streams until the batch's last task
        // ends (simulations may run for hours); TASK_TIMEOUT is per task
        let request = self
            .client
            .post(format!("{}/execute/batch", self.base))
            .timeout(Duration::from_secs(365 * 24 * 3600))
            .insert_header(("content-type", "application/json"))
            .send_body(body);
        let me = ctx.address();
        // a worker sends a tick when it has nothing else to say: an answer
        // silent for longer is cut, its tasks go back
        let silence = super::promises::batch_silence_limit(self.settings.worker_timeout);
        actix_rt::spawn(async move {
            let end = match request.await {
                Err(e) => BatchEnd::NotSent {
                    reached: !matches!(&e, SendRequestError::Connect(c) if never_connected(c)),
                    error: e.to_string(),
                },
                Ok(resp) if resp.status().as_u16() != 200 => {
                    let mut resp = resp;
                    let code = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    let body = resp.body().limit(1 << 20).await.ok();
                    BatchEnd::Answered {
                        code,
                        retry_after,
                        body,
                    }
                }
                Ok(mut resp) => {
                    let mut pending: Vec<u8> = Vec::new();
                    // one deadline, pushed back at each chunk: a timer per
                    // chunk cost a registration and a cancel per task
                    let deadline = actix_rt::time::sleep(silence);
                    futures_util::pin_mut!(deadline);
                    loop {
                        let next = std::future::poll_fn(|cx| {
                            if let Poll::Ready(next) = resp.poll_next_unpin(cx) {
                                return Poll::Ready(Some(next));
                            }
                            deadline.as_mut().poll(cx).map(|()| None)
                        })
                        .await;
                        let Some(next) = next else {
                            break BatchEnd::Silent(silence);
                        };
                        deadline.as_mut().reset(actix_rt::time::Instant::now() + silence);
                        match next {
                            // whether the worker said `end` is judged
                            // once every line has been read
                            None if pending.is_empty() => break BatchEnd::Done,
                            None => {
                                break BatchEnd::Broken("the answer ended in the middle of a line".into())
                            }
                            Some(Err(e)) => break BatchEnd::Broken(e.to_string()),
                            Some(Ok(chunk)) => {
                                pending.extend_from_slice(&chunk);
                                let Some(cut) = pending.iter().rposition(|b| *b == b'\n') else {
                                    if pending.len() > MAX_LINE_BYTES {
                                        break BatchEnd::Broken(
                                            "a line of the answer is far too long".into(),
                                        );
                                    }
                                    continue;
                                };
                                let rest = pending.split_off(cut + 1);
                                let lines = std::mem::replace(&mut pending, rest);
                                me.do_send(BatchLines { batch, lines });
                            }
                        }
                    }
                }
            };
            me.do_send(BatchEnded { batch, end });
        });
    }

    /// The task and attempt of a result the worker reported for `batch`;
    /// none (said in the log) when the batch did not carry it.
    fn in_batch(&self, batch: u64, reported: &str) -> Option<(TaskId, AttemptId)> {
        let found = self
            .batches
            .get(&batch)
            .and_then(|r| r.get_key_value(reported))
            .map(|(id, attempt)| (id.clone(), *attempt));
        if found.is_none() {
            tracing::warn!(worker = %self.id, task = %reported,
                "the worker sent a result for a task that was not in the batch; ignored");
        }
        found
    }

    /// A result line read into its type.
    fn batch_result(&mut self, batch: u64, result: ExecuteAnswer) {
        let Some((task_id, attempt_id)) = self.in_batch(batch, result.task_id.as_str()) else {
            return;
        };
        let kind = judge_result(&task_id, attempt_id, result);
        self.settle(task_id, attempt_id, kind);
    }

    /// One event of a batch's answer.
    fn batch_event(&mut self, batch: u64, event: BatchEvent<Value>, ctx: &mut Context<Self>) {
        match event {
            BatchEvent::Started { task_id, attempt_id } => {
                let Some(f) = self.in_flight.get(&task_id) else {
                    return;
                };
                if f.batch != batch || attempt_id != Some(f.attempt_id) {
                    return;
                }
                let attempt_id = f.attempt_id;
                self.mark_started(&task_id, attempt_id);
                self.watch_capacity(ctx);
                if !self.timeout_armed {
                    if let Some(limit) = self.settings.task_timeout {
                        self.arm_timeouts(limit, ctx);
                    }
                }
            }
            BatchEvent::Result { result } => {
                let Some(reported) = result.get("task_id").and_then(Value::as_str) else {
                    tracing::warn!(worker = %self.id, "the worker sent a result without a task_id; ignored");
                    return;
                };
                let Some((task_id, attempt_id)) = self.in_batch(batch, reported) else {
                    return;
                };
                let kind = check_result(&task_id, attempt_id, result);
                self.settle(task_id, attempt_id, kind);
            }
            BatchEvent::TakenBack { task_id, attempt_id } => {
                let Some(&sent) = self.batches.get(&batch).and_then(|r| r.get(&task_id)) else {
                    return;
                };
                if attempt_id.is_none_or(|a| a == sent) {
                    self.given_back(&task_id, sent);
                }
            }
            BatchEvent::Tick => {}
            BatchEvent::End => {
                self.ended_batches.insert(batch);
            }
            BatchEvent::Refused {
                task_id,
                status,
                retry_after,
                body,
                ..
            } => {
                let Some(task_id) = task_id else { return };
                let Some(&attempt_id) = self.batches.get(&batch).and_then(|r| r.get(&task_id)) else {
                    return;
                };
                let verdict = read_refusal(status, retry_after, &body);
                self.verdict(task_id, attempt_id, verdict);
            }
        }
    }

    /// The attempt took a slot on the worker: it runs from now on (told
    /// to TaskQueue with the next [`Self::flush_started`]).
    pub(super) fn mark_started(&mut self, task_id: &TaskId, attempt_id: AttemptId) {
        if let Some(f) = self.in_flight.get_mut(task_id) {
            if f.attempt_id == attempt_id && f.started.is_none() {
                f.started = Some(Instant::now());
                self.started_out.push((task_id.clone(), attempt_id));
                // the worker runs new work: earlier judgements are over
                self.judged_running = 0;
            }
        }
    }

    /// Tells TaskQueue which attempts started, in one message.
    pub(super) fn flush_started(&mut self) {
        if self.started_out.is_empty() {
            return;
        }
        let attempts = std::mem::take(&mut self.started_out);
        self.peers.started.do_send(AttemptsStarted {
            worker_id: self.id.clone(),
            attempts,
        });
    }

    /// Reports an attempt's outcome if it is still this proxy's to
    /// report; a result that comes after the attempt was reported lost
    /// (its worker seemed gone) still counts.
    pub(super) fn settle(&mut self, task_id: TaskId, attempt_id: AttemptId, kind: OutcomeKind) {
        let ours = self
            .in_flight
            .get(&task_id)
            .is_some_and(|f| f.attempt_id == attempt_id);
        if ours {
            self.in_flight.remove(&task_id);
        } else if !matches!(kind, OutcomeKind::Result(_)) {
            return;
        }
        self.report(task_id, attempt_id, kind);
    }

    /// What an answer that is not a result means for one attempt.
    pub(super) fn verdict(&mut self, task_id: TaskId, attempt_id: AttemptId, verdict: ExecuteVerdict) {
        let kind = match verdict {
            ExecuteVerdict::Outcome(kind) => kind,
            ExecuteVerdict::Full { retry_after } => {
                if !self.retired {
                    self.peers.full.do_send(WorkerFull {
                        worker_id: self.id.clone(),
                        retry_after,
                    });
                }
                OutcomeKind::Refused("the worker is full (429)".into())
            }
            ExecuteVerdict::Unauthorized => {
                self.unauthorized();
                OutcomeKind::Refused(UNAUTHORIZED.into())
            }
            ExecuteVerdict::AlreadyRunning => {
                // already running there under another attempt: wait for its result
                if self
                    .in_flight
                    .get(&task_id)
                    .is_some_and(|f| f.attempt_id == attempt_id)
                {
                    self.in_flight.remove(&task_id);
                    self.adopted.insert(task_id, attempt_id);
                }
                return;
            }
        };
        self.settle(task_id, attempt_id, kind);
    }

    /// A batch's answer is over: its attempts without an outcome yet are
    /// settled by how it ended.
    fn batch_ended(&mut self, batch: u64, end: BatchEnd, ctx: &mut Context<Self>) {
        let roster = self.batches.remove(&batch).unwrap_or_default();
        let said_end = self.ended_batches.remove(&batch);
        // an answer that stops without `end` was cut off (the worker died)
        let end = match end {
            BatchEnd::Done if !said_end => BatchEnd::Broken("the answer stopped before its end".into()),
            end => end,
        };
        let open: Vec<(TaskId, AttemptId, bool)> = roster
            .into_iter()
            .filter_map(|(task_id, attempt_id)| {
                let f = self.in_flight.get(&task_id)?;
                (f.attempt_id == attempt_id).then(|| {
                    let started = f.started.is_some();
                    (task_id, attempt_id, started)
                })
            })
            .collect();
        if open.is_empty() {
            return;
        }
        match end {
            BatchEnd::Answered {
                code,
                retry_after,
                body,
            } => {
                for (task_id, attempt_id, _) in open {
                    let verdict =
                        read_execute_answer(&task_id, attempt_id, code, retry_after, body.as_deref());
                    self.verdict(task_id, attempt_id, verdict);
                }
            }
            BatchEnd::NotSent {
                reached: false,
                error,
            } => {
                // nothing reached the worker
                if !self.retired {
                    self.refused(error.clone(), ctx);
                }
                for (task_id, attempt_id, _) in open {
                    let why = format!("cannot connect to the worker: {error}");
                    self.settle(task_id, attempt_id, OutcomeKind::Refused(why));
                }
            }
            BatchEnd::NotSent { error, .. } => {
                self.cut_off(open, &format!("the connection to the worker broke: {error}"))
            }
            BatchEnd::Broken(e) => self.cut_off(open, &format!("the connection to the worker broke: {e}")),
            BatchEnd::Silent(limit) => {
                let why = format!(
                    "the worker's batch answer was silent for {:.1} s (WORKER_TIMEOUT; not even its tick)",
                    limit.as_secs_f64()
                );
                let ids: Vec<TaskId> = open.into_iter().map(|(task_id, _, _)| task_id).collect();
                for (task_id, attempt_id, kind) in self.judge_cut_off(&ids, &why) {
                    let kind = match kind {
                        OutcomeKind::Lost(why) => OutcomeKind::Broken(why),
                        other => other,
                    };
                    self.settle(task_id, attempt_id, kind);
                }
                self.suspect(why);
            }
            BatchEnd::Done => {
                // the worker closed the answer without a word on them: a
                // worker that does so lies, so each counts as an attempt
                for (task_id, attempt_id, _) in open {
                    let why = "the worker ended the batch without an answer for the task".to_string();
                    self.settle(task_id, attempt_id, OutcomeKind::Lost(why));
                }
            }
        }
    }

    /// The answer broke off: attempts that had started are lost; those
    /// still waiting in the worker's backlog never ran and go back (the
    /// worker drops them when it sees the requester gone).
    fn cut_off(&mut self, open: Vec<(TaskId, AttemptId, bool)>, why: &str) {
        let ids: Vec<TaskId> = open.into_iter().map(|(task_id, _, _)| task_id).collect();
        for (task_id, attempt_id, kind) in self.judge_cut_off(&ids, why) {
            self.settle(task_id, attempt_id, kind);
        }
    }

    /// What became of attempts whose worker was cut off, each
    /// `(task, attempt, outcome)`: lost if they ran there, refused (not an
    /// attempt) if they only waited in its backlog. A `started` line may
    /// not have left a worker that died at once (a task that kills its
    /// worker): of those not known to have started, as many as the
    /// worker had free slots are taken as started, oldest sent first, so
    /// such a task counts its attempts and stops at the retry limit.
    pub(super) fn judge_cut_off(
        &mut self,
        task_ids: &[TaskId],
        why: &str,
    ) -> Vec<(TaskId, AttemptId, OutcomeKind)> {
        let known_running = self.in_flight.values().filter(|f| f.started.is_some()).count();
        // slots already taken by attempts judged in an earlier cut (the
        // streams of one dead worker break one after the other)
        let mut free = self
            .capacity
            .max(1)
            .saturating_sub(known_running + self.judged_running);
        let mut cut: Vec<(u64, TaskId, AttemptId, bool)> = task_ids
            .iter()
            .filter_map(|id| {
                let f = self.in_flight.get(id)?;
                Some((f.seq, id.clone(), f.attempt_id, f.started.is_some()))
            })
            .collect();
        cut.sort_unstable_by_key(|c| c.0);
        cut.into_iter()
            .map(|(_, task_id, attempt_id, started)| {
                let ran = started || {
                    let may = free > 0;
                    free = free.saturating_sub(1);
                    may
                };
                if ran {
                    self.judged_running += 1;
                }
                let kind = if ran {
                    OutcomeKind::Lost(why.to_string())
                } else {
                    OutcomeKind::Refused(format!("{why} before the task started"))
                };
                (task_id, attempt_id, kind)
            })
            .collect()
    }
}

/// How a batch's answer ended.
pub(super) enum BatchEnd {
    /// Every line was read.
    Done,
    /// Not 200: one answer for every task of the batch.
    Answered {
        code: u16,
        retry_after: Option<u64>,
        body: Option<actix_web::web::Bytes>,
    },
    /// The request failed before an answer came; `reached`: it may have
    /// reached the worker (a pooled connection that broke).
    NotSent { reached: bool, error: String },
    /// The answer broke off.
    Broken(String),
    /// No line for this long: cut (the connection is dropped).
    Silent(Duration),
}

/// Complete lines of a batch's answer, as they arrive.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct BatchLines {
    batch: u64,
    lines: Vec<u8>,
}

impl Handler<BatchLines> for WorkerProxy {
    type Result = ();
    fn handle(&mut self, msg: BatchLines, ctx: &mut Self::Context) {
        for line in msg.lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            // a result (one per task) is read straight into its type; a
            // line that does not read so is read again below, whose
            // checks word what is wrong with it
            if let Some(result) = result_line(line).and_then(|r| serde_json::from_str(r.get()).ok()) {
                self.batch_result(msg.batch, result);
                continue;
            }
            match serde_json::from_slice::<BatchEvent<Value>>(line) {
                Ok(event) => self.batch_event(msg.batch, event, ctx),
                Err(e) => {
                    tracing::warn!(worker = %self.id, error = %e, "the worker sent a line that is not a batch event; ignored")
                }
            }
        }
        self.flush_started();
    }
}

/// A `result` line's result, still as text; none for another event.
fn result_line(line: &[u8]) -> Option<&serde_json::value::RawValue> {
    #[derive(serde::Deserialize)]
    struct Line<'a> {
        event: &'a str,
        #[serde(borrow)]
        result: Option<&'a serde_json::value::RawValue>,
    }
    let line: Line<'_> = serde_json::from_slice(line).ok()?;
    if line.event == "result" {
        line.result
    } else {
        None
    }
}

/// A batch's answer is over.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct BatchEnded {
    batch: u64,
    end: BatchEnd,
}

impl Handler<BatchEnded> for WorkerProxy {
    type Result = ();
    fn handle(&mut self, msg: BatchEnded, ctx: &mut Self::Context) {
        self.batch_ended(msg.batch, msg.end, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::result_line;

    #[test]
    fn only_a_result_line_gives_its_result_text() {
        let line = br#"{"event":"result","result":{"task_id":"a","x":[1,2]}}"#;
        assert_eq!(
            result_line(line).map(|r| r.get()),
            Some(r#"{"task_id":"a","x":[1,2]}"#)
        );
        assert!(result_line(br#"{"event":"started","task_id":"a","attempt_id":1}"#).is_none());
        assert!(result_line(br#"{"event":"result"}"#).is_none());
        assert!(result_line(b"not json").is_none());
        // an escaped event name is left to the full reading (which words it)
        assert!(result_line(br#"{"event":"res\u0075lt","result":{}}"#).is_none());
    }
}
