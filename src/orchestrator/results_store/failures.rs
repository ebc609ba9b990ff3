//! ResultsStore's second file kind: `results/task_failures_<ts>[_<n>].json`,
//! a JSON array of the failure records of tasks that failed or were
//! cancelled ([`crate::orchestrator::store::FailureRecord`]: the reason, the source
//! file, the task's fields and every attempt).
//!
//! The records are composed by the database writer when a task ends, so
//! this side only asks for the pending ones: [`Store::claim_failures`]
//! names the file in the same commit that hands them over, the file is
//! written by rename, then [`Store::failures_written`] marks them. That
//! is the mechanism of results files (exactly once across crashes; see
//! `store::history`). TaskQueue says when there is something to claim
//! ([`FailuresPending`]); a restart claims once whatever it left.

use actix::prelude::*;
use serde_json::Value;

use super::{FailuresPending, ResultsStore};
use crate::orchestrator::store::{StoreError, FAILURES_PER_FILE};
use crate::util::fs::write_atomic;

impl Handler<FailuresPending> for ResultsStore {
    type Result = ();
    fn handle(&mut self, msg: FailuresPending, ctx: &mut Self::Context) {
        self.failures.pending = true;
        if msg.drained {
            self.flush_failures(ctx);
        }
    }
}

/// Where the failures side stands.
#[derive(Debug, Default)]
pub(super) struct FailuresState {
    /// Records may be waiting for a file.
    pub pending: bool,
    /// A claim or a write is under way.
    pub flushing: bool,
    pub files_written: u64,
    pub last_file: Option<String>,
    /// A file whose write failed: its records are claimed again under
    /// the same name (`Store::claim_failures` takes those named for it).
    pub retry: Option<std::path::PathBuf>,
}

impl ResultsStore {
    /// Claims the pending failure records for a new file and writes it.
    pub(super) fn flush_failures(&mut self, ctx: &mut Context<Self>) {
        if self.failures.flushing || !self.failures.pending {
            return;
        }
        self.failures.flushing = true;
        self.failures.pending = false;
        let path = match self.failures.retry.take() {
            Some(p) => p,
            None => self.next_file("task_failures", self.failures.last_file.as_deref()),
        };
        let again = path.clone();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        self.failures.last_file = Some(name.clone());
        let store = self.store.clone();
        let file_key = path.to_string_lossy().into_owned();
        async move {
            let records = store.claim_failures(&file_key, FAILURES_PER_FILE).await?;
            if records.is_empty() {
                return Ok(0);
            }
            let count = records.len();
            actix_rt::task::spawn_blocking(move || {
                let values: Vec<Value> = records
                    .iter()
                    .map(|r| serde_json::from_str(r).unwrap_or(Value::Null))
                    .collect();
                let text = serde_json::to_vec_pretty(&values).map_err(FlushError::Encode)?;
                write_atomic(&path, &text).map_err(|source| FlushError::Write { path, source })
            })
            .await
            .map_err(|e| FlushError::Stopped(e.to_string()))??;
            // the file is on disk: a crash before this commit is settled at
            // the next start by finding the file (store::history)
            store.failures_written(&file_key).await?;
            Ok::<usize, FlushError>(count)
        }
        .into_actor(self)
        .map(move |res, act, ctx| {
            act.failures.flushing = false;
            let full = count_is_full(&res);
            match res {
                Ok(0) => {}
                Ok(count) => {
                    act.failures.files_written += 1;
                    tracing::info!(file = %name, tasks = count, "failures written");
                    // a full file: more may be waiting
                    act.failures.pending |= full;
                }
                Err(e) => {
                    // at the next tick, under the same name: the records
                    // claimed for it are claimed again with the new ones
                    tracing::error!(error = %e, "cannot write a failures file; will retry");
                    act.failures.pending = true;
                    act.failures.retry = Some(again);
                }
            }
            if full {
                act.flush_failures(ctx);
            }
            act.answer_waiters();
        })
        .spawn(ctx);
    }
}

/// Why a failures file was not written (it is retried at the next tick).
#[derive(Debug, thiserror::Error)]
enum FlushError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Encode(serde_json::Error),
    #[error("{}: {source}", .path.display())]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The blocking write was cut short (shutting down).
    #[error("{0}")]
    Stopped(String),
}

/// A full file was written: the next one is written at once.
fn count_is_full(res: &Result<usize, FlushError>) -> bool {
    matches!(res, Ok(n) if *n == FAILURES_PER_FILE)
}
