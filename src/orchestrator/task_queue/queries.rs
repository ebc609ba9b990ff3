//! What TaskQueue answers about itself: the live snapshot behind `/stats`,
//! `/stats/performance` and `orchestrator_stats.json` ([`QueueSnapshot`]),
//! why a queued task waits ([`WhyWaiting`]), how many tasks are live.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::Serialize;

use super::live::{Counters, LiveTasks, Place, Sample};
use super::TaskQueue;
use crate::model::TaskId;
use crate::orchestrator::placement::Explanation;
use crate::util::stats::{Samples, Summary};
use crate::util::time::{iso_at, unix_now};

/// Recent figures kept for `/stats/performance`.
const RECENT: usize = 2048;
/// Completion times kept for the throughput figures.
const COMPLETIONS: usize = 100_000;

/// Throughput and timing figures, fed by [`Sample`]s.
#[derive(Default)]
pub(super) struct Performance {
    completions: VecDeque<Instant>,
    queue_wait: BTreeMap<String, Samples>,
    execution: BTreeMap<String, Samples>,
    execution_by_worker: BTreeMap<String, Samples>,
}

impl Performance {
    pub fn completed(&mut self) {
        self.completions.push_back(Instant::now());
        while self.completions.len() > COMPLETIONS {
            self.completions.pop_front();
        }
    }

    pub fn sample(&mut self, sample: Sample) {
        let push = |m: &mut BTreeMap<String, Samples>, key: String, v: f64| {
            m.entry(key).or_insert_with(|| Samples::new(RECENT)).push(v);
        };
        match sample {
            Sample::QueueWait { algorithm, seconds } => push(&mut self.queue_wait, algorithm, seconds),
            Sample::Execution {
                algorithm,
                worker,
                seconds,
            } => {
                push(&mut self.execution, algorithm, seconds);
                push(&mut self.execution_by_worker, worker.to_string(), seconds);
            }
        }
    }

    fn throughput(&self, window: Duration, started: Instant) -> f64 {
        let since = Instant::now().checked_sub(window);
        let n = self
            .completions
            .iter()
            .rev()
            .take_while(|t| since.is_none_or(|s| **t >= s))
            .count();
        n as f64
            / window
                .as_secs_f64()
                .min(started.elapsed().as_secs_f64())
                .max(1e-3)
    }
}

/// In-memory queue figures.
#[derive(Debug, Clone, Serialize)]
pub struct QueueCounts {
    pub ready_in_memory: usize,
    pub ready_by_kernel: BTreeMap<String, usize>,
    /// high, medium, low
    pub ready_by_priority: [usize; 3],
    pub backing_off: usize,
    pub running: usize,
    pub more_in_database: bool,
}

/// Counts since start.
#[derive(Debug, Clone, Serialize)]
pub struct SinceStart {
    pub submitted: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub retries: u64,
    pub lost_attempts: u64,
    pub refused_attempts: u64,
    pub late_results_ignored: u64,
    pub forged_results_dropped: u64,
    /// Replication (`VERIFY_FRACTION`): runs, agreements, mismatches,
    /// corrected results, quarantined workers.
    pub verification: super::live::VerifyCounters,
}

impl From<&Counters> for SinceStart {
    fn from(c: &Counters) -> Self {
        Self {
            submitted: c.submitted,
            completed: c.completed,
            failed: c.failed,
            cancelled: c.cancelled,
            retries: c.retried,
            lost_attempts: c.lost_attempts,
            refused_attempts: c.refused_attempts,
            late_results_ignored: c.late_results_ignored,
            forged_results_dropped: c.forged_results,
            verification: Default::default(),
        }
    }
}

/// Completed tasks per second.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Throughput {
    pub tasks_per_second_10s: f64,
    pub tasks_per_second_60s: f64,
    pub tasks_per_second_overall: f64,
}

/// TaskQueue's live figures, as `/stats` and the stats file show them.
#[derive(Debug, Clone, Serialize)]
pub struct QueueSnapshot {
    pub uptime_seconds: f64,
    pub since_start: SinceStart,
    pub queue: QueueCounts,
    pub throughput: Throughput,
    pub performance_monitoring: bool,
    pub queue_wait_seconds: BTreeMap<String, Summary>,
    pub execution_time_seconds: BTreeMap<String, Summary>,
    pub execution_time_by_worker_seconds: BTreeMap<String, Summary>,
}

impl LiveTasks {
    pub fn counts(&self) -> QueueCounts {
        let mut by_kernel = BTreeMap::new();
        let mut by_priority = [0usize; 3];
        let queues = &self.index.queues;
        for (k, q) in queues {
            by_kernel.insert(k.to_string(), q.ready.len());
            for (p, _) in q.ready.keys() {
                by_priority[(*p as usize).min(2)] += 1;
            }
        }
        let ready: usize = queues.values().map(|q| q.ready.len()).sum();
        let backing_off = self.index.delayed.len();
        QueueCounts {
            ready_in_memory: ready,
            ready_by_kernel: by_kernel,
            ready_by_priority: by_priority,
            backing_off,
            // placing, sent ahead or running
            running: self.tasks.len() - ready - backing_off - self.index.parked,
            more_in_database: queues.values().any(|q| q.more_in_db),
        }
    }
}

/// Sent by the API and the ResultsStore's stats writer: live counts and
/// performance.
#[derive(Message)]
#[rtype(result = "QueueSnapshot")]
pub struct QueueStats;

impl Handler<QueueStats> for TaskQueue {
    type Result = MessageResult<QueueStats>;
    fn handle(&mut self, _: QueueStats, _: &mut Self::Context) -> Self::Result {
        let perf = &self.performance;
        let summarize =
            |m: &BTreeMap<String, Samples>| m.iter().map(|(k, s)| (k.clone(), s.summary())).collect();
        let uptime = self.started.elapsed().as_secs_f64();
        MessageResult(QueueSnapshot {
            uptime_seconds: uptime,
            since_start: SinceStart {
                verification: self.live.verify.stats(),
                ..SinceStart::from(&self.live.counters)
            },
            queue: self.live.counts(),
            throughput: Throughput {
                tasks_per_second_10s: perf.throughput(Duration::from_secs(10), self.started),
                tasks_per_second_60s: perf.throughput(Duration::from_secs(60), self.started),
                tasks_per_second_overall: self.live.counters.completed as f64 / uptime.max(1e-3),
            },
            performance_monitoring: self.settings.performance,
            queue_wait_seconds: summarize(&perf.queue_wait),
            execution_time_seconds: summarize(&perf.execution),
            execution_time_by_worker_seconds: summarize(&perf.execution_by_worker),
        })
    }
}

/// Why a task waits, for `GET /tasks/{id}`.
#[derive(Debug, Clone, Serialize)]
pub struct Waiting {
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<Explanation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Sent by the API for a queued task.
#[derive(Message)]
#[rtype(result = "Option<Waiting>")]
pub struct WhyWaiting {
    pub task_id: TaskId,
    /// As the task's view names it (a row may name a kernel this build
    /// does not know).
    pub kernel: String,
}

impl Handler<WhyWaiting> for TaskQueue {
    type Result = ResponseActFuture<Self, Option<Waiting>>;

    fn handle(&mut self, msg: WhyWaiting, _: &mut Self::Context) -> Self::Result {
        let place = self.live.place_of(&msg.task_id);
        let sent_to = self.live.sent_ahead_to(&msg.task_id);
        let last_error = self.live.last_error(&msg.task_id);
        let ahead = self.live.ahead_of(&msg.task_id);
        let explanation = self.live.loads.explain(&msg.kernel, unix_now());
        Box::pin(
            async move {
                match place {
                    Some(Place::Delayed(until)) => Some(Waiting {
                        reason: format!("backing off after a failed attempt until {}", iso_at(until)),
                        workers: None,
                        retry_at: Some(iso_at(until)),
                        last_error,
                    }),
                    Some(Place::Running) if sent_to.is_some() => Some(Waiting {
                        reason: format!(
                            "sent ahead to worker {}, which is busy: it starts there as soon as a slot frees",
                            sent_to.expect("checked")
                        ),
                        workers: None,
                        retry_at: None,
                        last_error,
                    }),
                    Some(Place::Placing) | Some(Place::Running) => Some(Waiting {
                        reason: "being dispatched".into(),
                        workers: None,
                        retry_at: None,
                        last_error: None,
                    }),
                    _ => {
                        let reason = match (place, ahead) {
                            (Some(Place::Ready), Some(n)) if n > 0 => format!(
                                "{}; {n} task{} ahead of it",
                                explanation.summary,
                                if n == 1 { "" } else { "s" }
                            ),
                            (None, _) => format!("{}; many tasks are ahead of it", explanation.summary),
                            _ => explanation.summary.clone(),
                        };
                        Some(Waiting {
                            reason,
                            workers: Some(explanation),
                            retry_at: None,
                            last_error: None,
                        })
                    }
                }
            }
            .into_actor(self),
        )
    }
}

/// Sent by `orquesta run`: how many tasks have not ended.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct LiveCount;

impl Handler<LiveCount> for TaskQueue {
    type Result = usize;
    fn handle(&mut self, _: LiveCount, _: &mut Self::Context) -> usize {
        self.live.live_count()
    }
}
