//! Retention (`HISTORY_RETENTION_DAYS`): forgets ended tasks older than the
//! setting, the way `orquesta purge --before` does ([`Store::purge`]: only
//! tasks whose records are on disk), once at start and then every hour
//! (every tenth of the retention when that is shorter, so a short setting
//! is kept to within about a tenth of itself). Unset: nothing is forgotten.

use std::time::Duration;

use actix::prelude::*;

use crate::orchestrator::store::Store;
use crate::util::time::unix_now;

/// How often a retention of `keep` is applied: hourly, or a tenth of
/// `keep` when shorter (at least a second).
pub fn period(keep: Duration) -> Duration {
    (keep / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

pub struct Retention {
    store: Store,
    keep: Duration,
    /// A purge is under way: the next tick waits for the one after.
    running: bool,
}

impl Retention {
    pub fn new(store: Store, keep: Duration) -> Self {
        Self {
            store,
            keep,
            running: false,
        }
    }

    fn apply(&mut self, ctx: &mut Context<Self>) {
        if self.running {
            return;
        }
        self.running = true;
        let before = unix_now() - self.keep.as_secs_f64();
        let store = self.store.clone();
        let days = self.keep.as_secs_f64() / 86_400.0;
        async move { store.purge(before, false, false).await }
            .into_actor(self)
            .map(move |res, act, _| {
                act.running = false;
                match res {
                    Ok(r) if r.tasks > 0 => tracing::info!(
                        retention_days = days, before = %r.before, tasks = r.tasks, attempts = r.attempts,
                        files = r.files, kept_unwritten = r.kept_unwritten,
                        "history older than HISTORY_RETENTION_DAYS purged; those task ids are no longer known"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot purge history (HISTORY_RETENTION_DAYS); will try again"),
                }
            })
            .spawn(ctx);
    }
}

impl Actor for Retention {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.apply(ctx);
        ctx.run_interval(period(self.keep), |act, ctx| act.apply(ctx));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hourly_or_a_tenth_of_a_short_retention() {
        let day = Duration::from_secs(86_400);
        assert_eq!(period(day * 30), Duration::from_secs(3600));
        assert_eq!(period(day / 4), Duration::from_secs(2160));
        assert_eq!(period(Duration::from_millis(500)), Duration::from_secs(1));
    }
}
