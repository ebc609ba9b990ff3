//! Which orchestrator this worker serves: the one (named by its data
//! folder's id, in `crate::protocol::ORCHESTRATOR_HEADER`) whose work it
//! has. Another orchestrator is refused while any of that work runs or
//! waits here, and while results of it wait to be acknowledged by an
//! orchestrator heard from in the last [`SERVED_GRACE`] (a restarted one
//! of the same folder picks them up; one gone for good frees the worker
//! after that). So two orchestrators never share the worker's slots nor
//! acknowledge each other's results; once free, the worker serves whoever
//! sends work next. Requests without the header (a curl user) are not
//! concerned.

use std::time::{Duration, Instant};

use actix::prelude::*;

use super::Executor;

/// How long the orchestrator served keeps the worker for the results it
/// has not yet acknowledged, after its last request (the orchestrator's
/// default `WORKER_TIMEOUT`).
pub const SERVED_GRACE: Duration = Duration::from_secs(30);

/// Sent by the API before it admits work (`adopt`) and on `GET /health`
/// (not `adopt`) for a request that names its orchestrator. Answers
/// `Err(id)` of the orchestrator served when that is another one with
/// work here.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct Serve {
    pub orchestrator: String,
    /// Whether this orchestrator becomes the one served (it sends work).
    pub adopt: bool,
}

impl Handler<Serve> for Executor {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: Serve, _: &mut Self::Context) -> Self::Result {
        let heard = self.served_heard.is_some_and(|t| t.elapsed() < SERVED_GRACE);
        let busy =
            !self.running.is_empty() || !self.backlog.is_empty() || (heard && self.held.holds_attempts());
        match &self.served {
            Some(served) if *served == msg.orchestrator => {
                self.served_heard = Some(Instant::now());
                Ok(())
            }
            Some(served) if busy => Err(served.clone()),
            _ if !msg.adopt => Ok(()),
            previous => {
                if let Some(previous) = previous {
                    tracing::info!(from = %previous, to = %msg.orchestrator,
                        "idle: now serving the orchestrator of another data folder");
                }
                self.served = Some(msg.orchestrator);
                self.served_heard = Some(Instant::now());
                Ok(())
            }
        }
    }
}
