//! Taking back an attempt sent ahead (DESIGN.md "Orchestrator ↔ worker
//! protocol"): the core wants a task that waits in this worker's backlog
//! to run elsewhere. Only the worker can say whether it has started, so
//! it is asked (`POST /takeback/{task_id}?attempt_id=N`) and its answer
//! decides, once: given back (the attempt ends here, uncounted), started
//! (it stays and runs once), or not there (it stays where it was sent).
//!
//! The worker also says `taken_back` on the batch's answer; whichever of
//! the two is read first settles the attempt ([`WorkerProxy::given_back`]
//! takes it out of `in_flight`), so the core hears of it once.

use actix::prelude::*;

use super::http::fetch_json_post;
use super::{TakeBack, TakeBackOutcome, TakenBack, WorkerProxy};
use crate::model::{AttemptId, TaskId};
use crate::protocol::node::TakeBackAnswer;

impl Handler<TakeBack> for WorkerProxy {
    type Result = ();

    fn handle(&mut self, msg: TakeBack, ctx: &mut Self::Context) {
        let TakeBack { task_id, attempt_id } = msg;
        let Some(f) = self
            .in_flight
            .get(&task_id)
            .filter(|f| f.attempt_id == attempt_id)
        else {
            // already reported (a result, a loss) or never ours
            self.tell_taken_back(task_id, attempt_id, TakeBackOutcome::NotHere);
            return;
        };
        if f.started.is_some() {
            self.tell_taken_back(task_id, attempt_id, TakeBackOutcome::Started);
            return;
        }
        if f.batch == 0 && self.outbox.iter().any(|r| r.task_id == task_id) {
            // still in the outbox: it never left this process
            self.outbox.retain(|r| r.task_id != task_id);
            self.given_back(&task_id, attempt_id);
            return;
        }
        let url = format!("{}/takeback/{task_id}?attempt_id={attempt_id}", self.base);
        let ask = fetch_json_post::<TakeBackAnswer>(&self.client, &url);
        ask.into_actor(self)
            .map(move |answer, act, _| match answer.map(|a| a.outcome) {
                Ok(TakeBackOutcome::Returned) => act.given_back(&task_id, attempt_id),
                Ok(TakeBackOutcome::Started) => {
                    // the batch's `started` line may still be on its way
                    act.mark_started(&task_id, attempt_id);
                    act.flush_started();
                    act.tell_taken_back(task_id, attempt_id, TakeBackOutcome::Started);
                }
                Ok(TakeBackOutcome::NotHere) | Err(_) => {
                    act.tell_taken_back(task_id, attempt_id, TakeBackOutcome::NotHere)
                }
            })
            .spawn(ctx);
    }
}

impl WorkerProxy {
    /// The worker gave the attempt back (its answer to the take-back, or
    /// the `taken_back` line of its batch, whichever came first): it is
    /// no longer this worker's, and the core is told once.
    pub(super) fn given_back(&mut self, task_id: &TaskId, attempt_id: AttemptId) {
        let ours = self
            .in_flight
            .get(task_id)
            .is_some_and(|f| f.attempt_id == attempt_id && f.started.is_none());
        if !ours {
            return;
        }
        self.in_flight.remove(task_id);
        tracing::info!(worker = %self.id, task = %task_id, %attempt_id, "taken back before it started");
        self.tell_taken_back(task_id.clone(), attempt_id, TakeBackOutcome::Returned);
    }

    fn tell_taken_back(&self, task_id: TaskId, attempt_id: AttemptId, outcome: TakeBackOutcome) {
        self.peers.took_back.do_send(TakenBack {
            worker_id: self.id.clone(),
            task_id,
            attempt_id,
            outcome,
        });
    }
}
