//! Memory given back when the queue drains. The orchestrator's heap grows
//! with the tasks it holds and the results it writes; glibc keeps what was
//! freed (after 300,000 tasks about 235 MB stayed, 84 MB after a trim,
//! issue 21). When a large batch is done, the freed memory is returned to
//! the system, off the actor's thread.

/// Results recorded since the last trim for a drain to trim: a trim walks
/// the whole heap (milliseconds), so a queue that drains after every small
/// batch does not pay it each time.
pub const TRIM_AFTER: usize = 10_000;

/// Counts results and says when a drain should give memory back: once
/// the drain's results are written (their buffer is freed then).
#[derive(Debug, Default)]
pub struct DrainTrim {
    since: usize,
    due: bool,
}

impl DrainTrim {
    /// One result recorded; `drained`: nothing is left queued or running.
    pub fn recorded(&mut self, drained: bool) {
        self.since += 1;
        if drained && self.since >= TRIM_AFTER {
            self.since = 0;
            self.due = true;
        }
    }

    /// After a write of results, with nothing left to write: whether to
    /// give memory back now.
    pub fn take_due(&mut self) -> bool {
        std::mem::take(&mut self.due)
    }
}

/// Gives freed memory back on a thread of its own, and says how much.
pub fn give_back() {
    let spawned = std::thread::Builder::new().name("memory-trim".into()).spawn(|| {
        let before = crate::util::machine::resident_bytes();
        crate::util::platform::give_back_memory();
        let after = crate::util::machine::resident_bytes();
        tracing::info!(
            rss_before_mb = before >> 20,
            rss_after_mb = after >> 20,
            "the queue drained: freed memory given back to the system"
        );
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a thread to give memory back");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_trims_only_after_a_large_batch() {
        let mut t = DrainTrim::default();
        // small batches draining one after another: no trim
        for _ in 0..10 {
            t.recorded(true);
            assert!(!t.take_due());
        }
        for i in 0..TRIM_AFTER - 10 {
            t.recorded(i + 1 == TRIM_AFTER - 10);
        }
        assert!(t.take_due(), "the drain after a large batch trims");
        assert!(!t.take_due(), "once");
        // and the count starts again
        t.recorded(true);
        assert!(!t.take_due());
        // a large batch that never drains never trims
        let mut t = DrainTrim::default();
        for _ in 0..3 * TRIM_AFTER {
            t.recorded(false);
        }
        assert!(!t.take_due());
    }
}
