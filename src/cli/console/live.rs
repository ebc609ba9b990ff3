//! The console fed from an orchestrator running in this process (`up`,
//! `run`): events from the log layer as they come, the workers' rows from
//! the board and the queue's counts from the database, at each [`Live::tick`].

use std::io::Write;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Instant;

use super::events::ConsoleEvent;
pub use super::progress::Tally;
use super::{Console, WorkerSeen};
use crate::model::TaskStatus;
use crate::orchestrator::board::WorkerBoard;
use crate::orchestrator::store::{ReadPool, StoreError};

/// How often `up` and `run` look at the workers and the queue.
pub const TICK: std::time::Duration = std::time::Duration::from_millis(500);

pub struct Live<W: Write> {
    pub console: Console<W>,
    events: Receiver<ConsoleEvent>,
    board: WorkerBoard,
    read: Arc<ReadPool>,
}

/// The queue's counts now (from `task_counts`: a few rows, never a scan).
pub fn tally(read: &ReadPool) -> Result<Tally, StoreError> {
    let (by_status, _) = read.counts()?;
    let n = |s: TaskStatus| by_status.iter().find(|(k, _)| *k == s).map_or(0, |(_, n)| *n);
    Ok(Tally {
        completed: n(TaskStatus::Completed),
        failed: n(TaskStatus::Failed),
        cancelled: n(TaskStatus::Cancelled),
        live: n(TaskStatus::Queued) + n(TaskStatus::Running),
    })
}

/// Every worker's state as the console shows it.
pub fn workers(board: &WorkerBoard) -> Vec<WorkerSeen> {
    board
        .list()
        .into_iter()
        .map(|w| WorkerSeen {
            id: w.id,
            address: w.address,
            state: w.state.as_str(),
            reason: w.state_reason,
        })
        .collect()
}

impl<W: Write> Live<W> {
    pub fn new(
        console: Console<W>,
        events: Receiver<ConsoleEvent>,
        board: WorkerBoard,
        read: Arc<ReadPool>,
    ) -> Self {
        Self {
            console,
            events,
            board,
            read,
        }
    }

    /// Shows what happened since the last tick.
    pub async fn tick(&mut self) {
        self.console.workers(&workers(&self.board));
        self.drain_events();
        let read = Arc::clone(&self.read);
        if let Ok(Ok(t)) = actix_rt::task::spawn_blocking(move || tally(&read)).await {
            // events logged while the counts were read come first
            self.drain_events();
            self.console.tally(t, Instant::now());
        }
    }

    fn drain_events(&mut self) {
        while let Ok(e) = self.events.try_recv() {
            self.console.event(e, Instant::now());
        }
    }
}
