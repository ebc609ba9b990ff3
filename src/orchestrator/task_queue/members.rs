//! What membership tells the core: the list of workers ([`Roster`]) and
//! a worker that answered 429 ([`WorkerFull`]). Both change where tasks
//! may be placed, so both end in a dispatch.

use actix::prelude::*;

use super::{ProxyPeer, TaskQueue};
use crate::orchestrator::membership::{Roster, WorkerFull};
use crate::util::time::unix_now;

impl Handler<Roster> for TaskQueue {
    type Result = ();
    fn handle(&mut self, msg: Roster, ctx: &mut Self::Context) {
        // a worker that moved to a new address has a new proxy under the
        // same id
        let proxies = msg.proxies.iter().map(|(id, p)| (id.clone(), ProxyPeer::of(p)));
        let fx = if msg.full {
            self.peers.proxies = proxies.collect();
            self.live.roster(msg.views)
        } else {
            self.peers.proxies.extend(proxies);
            self.live.roster_changes(msg.views)
        };
        self.apply(fx, ctx);
        self.try_dispatch(ctx);
    }
}

impl Handler<WorkerFull> for TaskQueue {
    type Result = ();
    fn handle(&mut self, msg: WorkerFull, ctx: &mut Self::Context) {
        let until = unix_now() + msg.retry_after.as_secs_f64();
        self.live.worker_full(&msg.worker_id, until);
        ctx.run_later(msg.retry_after, |act, ctx| {
            act.live.room();
            act.try_dispatch(ctx);
        });
    }
}
