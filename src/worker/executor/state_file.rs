//! `worker_<id>_state.json`: the node's status and what runs now, written
//! [`STATE_EVERY`] after a change (every change made meanwhile in one
//! write, not flushed), and once more, flushed, at shutdown.

use std::time::Duration;

use actix::prelude::*;
use actix::WeakAddr;
use serde::Serialize;

use super::Executor;
use crate::protocol::{CurrentTask, StatusAnswer};

impl Executor {
    /// What `worker_<id>_state.json` holds.
    fn snapshot(&self) -> StateSnapshot {
        StateSnapshot {
            status: self.status(),
            current: self.current(),
            updated_at: crate::util::time::now_iso(),
        }
    }

    /// The worker's state changed: `worker_<id>_state.json` is written
    /// [`STATE_EVERY`] later, with every change made by then. A timer that
    /// looked twice a second woke every idle worker for nothing, and
    /// each busy one wrote a new file twice a second: 256 one-slot
    /// workers on one machine spent about a quarter of their CPU on it.
    pub(super) fn touch_state(&mut self) {
        self.state_dirty = true;
        if self.state_write_due {
            return;
        }
        let Some(me) = self.me.as_ref().and_then(WeakAddr::upgrade) else {
            return;
        };
        self.state_write_due = true;
        actix_rt::spawn(async move {
            actix_rt::time::sleep(STATE_EVERY).await;
            me.do_send(WriteState);
        });
    }

    /// Writes `worker_<id>_state.json` off the actor's thread (not flushed
    /// to disk: a snapshot; the last one, at shutdown, is).
    fn write_state(&mut self) {
        self.state_write_due = false;
        if !self.state_dirty {
            return;
        }
        self.state_dirty = false;
        let Some(path) = self.settings.state_file.clone() else {
            return;
        };
        let snapshot = self.snapshot();
        actix_rt::task::spawn_blocking(move || {
            let text = serde_json::to_vec_pretty(&snapshot).unwrap_or_default();
            if let Err(e) = crate::util::fs::replace_snapshot(&path, &text) {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the worker state file");
            }
        });
    }

    /// Writes `worker_<id>_state.json` now and flushes it (at shutdown).
    pub(super) fn write_state_now(&self) {
        if let Some(path) = &self.settings.state_file {
            let text = serde_json::to_vec_pretty(&self.snapshot()).unwrap_or_default();
            let _ = crate::util::fs::write_atomic(path, &text);
        }
    }
}

/// How long after a change `worker_<id>_state.json` is written (every
/// change made meanwhile goes in the same write).
pub const STATE_EVERY: Duration = Duration::from_secs(2);

/// Sent by the Executor to itself [`STATE_EVERY`] after a change: write
/// the state file.
#[derive(Message)]
#[rtype(result = "()")]
struct WriteState;

impl Handler<WriteState> for Executor {
    type Result = ();
    fn handle(&mut self, _: WriteState, _: &mut Self::Context) {
        self.write_state();
    }
}

/// `worker_<id>_state.json`: the node's status and what runs now.
#[derive(Debug, Clone, Serialize)]
pub struct StateSnapshot {
    pub status: StatusAnswer,
    pub current: Vec<CurrentTask>,
    pub updated_at: String,
}
