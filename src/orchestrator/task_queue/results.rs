//! What TaskQueue tells the ResultsStore: a result committed
//! ([`RecordResult`]) and failure records waiting for their file
//! ([`FailuresPending`]). Defined beside their sender, so that the queue
//! names no other actor of that side.

use actix::prelude::*;

use crate::model::TaskResult;

/// Sent by TaskQueue after a result is committed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RecordResult {
    pub result: TaskResult,
    /// No task of the queue is left to end: write the file now rather than
    /// at the next `RESULTS_FLUSH_INTERVAL` tick, so whoever waits on a
    /// batch finds its results as soon as its last task ends.
    pub drained: bool,
}

/// Sent by TaskQueue when a task has failed or been cancelled (its record
/// is queued to the database before this message is sent).
#[derive(Message)]
#[rtype(result = "()")]
pub struct FailuresPending {
    /// No task of the queue is left to end: write the file now rather
    /// than at the next `RESULTS_FLUSH_INTERVAL` tick.
    pub drained: bool,
}
