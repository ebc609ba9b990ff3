//! One attempt per `POST /execute`, held until the simulation ends: how
//! the proxy talks to a worker that does not take batches (a worker of an
//! older version, or a hand-made one; it says so by reporting no
//! `max_backlog` in `/status`). Such a worker is sent no work ahead.

use std::time::Duration;

use actix::prelude::*;
use awc::error::SendRequestError;

use super::answers::{never_connected, read_execute_answer};
use super::http::{self, RawAnswer};
use super::OutcomeKind;
use super::{RunAttempt, WorkerProxy};
use crate::protocol::{ExecuteRequest, StoredTask};
use crate::util::logging::AttemptOf;
use crate::util::trace::{self, Stage};

impl WorkerProxy {
    pub(super) fn send_single(&mut self, msg: RunAttempt, ctx: &mut Context<Self>) {
        let RunAttempt {
            task_id,
            attempt_id,
            body,
        } = msg;
        trace::note(
            Stage::Dispatched,
            self.id.as_str(),
            [AttemptOf(&task_id, attempt_id)],
        );
        // it runs from now on (or is refused, and goes back uncounted)
        self.mark_started(&task_id, attempt_id);
        self.flush_started();
        let payload = serde_json::to_string(&ExecuteRequest {
            attempt_id: Some(attempt_id),
            checkpoint_step: self.settings.checkpoint_step(&task_id, attempt_id),
            task: StoredTask(&body),
        })
        .unwrap_or_else(|e| {
            // as in a batch: only a hand-edited database gets here
            tracing::error!(worker = %self.id, error = %e, "a stored task is not a JSON object");
            String::new()
        });
        // no limit unless TASK_TIMEOUT: simulations may run for hours
        let timeout = self
            .settings
            .task_timeout
            .unwrap_or(Duration::from_secs(365 * 24 * 3600));
        http::execute(&self.client, &self.base, payload, timeout)
            .into_actor(self)
            .map(move |res, act, ctx| {
                let verdict = match res {
                    Ok(RawAnswer {
                        code,
                        retry_after,
                        body,
                    }) => read_execute_answer(&task_id, attempt_id, code, retry_after, body.as_deref()),
                    Err(SendRequestError::Connect(e)) if never_connected(&e) => {
                        // nothing reached the worker
                        if !act.retired {
                            act.refused(e.to_string(), ctx);
                        }
                        let why = format!("cannot connect to the worker: {e}");
                        act.settle(task_id, attempt_id, OutcomeKind::Refused(why));
                        return;
                    }
                    Err(SendRequestError::Timeout) => {
                        let limit = act.settings.task_timeout.map_or(0.0, |d| d.as_secs_f64());
                        let cancel = act.client.post(format!("{}/cancel/{task_id}", act.base)).send();
                        actix_rt::spawn(async move {
                            let _ = cancel.await;
                        });
                        let why = format!("the attempt ran longer than TASK_TIMEOUT = {limit} s");
                        act.settle(task_id, attempt_id, OutcomeKind::TimedOut(why));
                        return;
                    }
                    Err(e) => {
                        let why = format!("the connection to the worker broke: {e}");
                        act.settle(task_id, attempt_id, OutcomeKind::Lost(why));
                        return;
                    }
                };
                act.verdict(task_id, attempt_id, verdict);
            })
            .spawn(ctx);
    }
}
