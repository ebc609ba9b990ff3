//! LiveTasks: the in-memory half of TaskQueue, and every transition of
//! DESIGN.md "Task states" that happens in memory. Pure: no actix, no
//! clock (every event carries `now`), no I/O (its side effects are two
//! observers it never reads back: the shared Prometheus counters and the
//! dashboard's recent history). Each event method answers
//! [`Effects`]: what the actor must persist and send. Dispatch lives in
//! `dispatch.rs`, attempt outcomes in `outcome.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

pub use super::entry::{body_size, Entry};
use crate::model::{AttemptId, KernelName, Priority, TaskId, TaskResult, WorkerId};
use crate::orchestrator::activity::Activity;
pub use crate::orchestrator::load_balancer::Ended as Freed;
use crate::orchestrator::load_balancer::{Loads, MemberView, TaskSize};
use crate::orchestrator::metrics::OrchestratorMetrics;
use crate::orchestrator::store::{CancelOutcome, Change, NewTask, QueuedRow, WasRunning};
use crate::sim::rng::SplitMix64;

/// Queued tasks kept in memory per kernel; the rest wait in the database.
pub const WINDOW: usize = 20_000;

/// Queued tasks of one kernel.
#[derive(Debug, Default)]
pub(super) struct KernelQueue {
    pub ready: BTreeMap<(Priority, i64), Entry>,
    /// Largest key loaded from the database; queued tasks above it may
    /// wait there (when `more_in_db`).
    pub frontier: Option<(Priority, i64)>,
    pub more_in_db: bool,
    pub paging: bool,
    /// A file was queued while a page was being read: once the page is
    /// in, more waits in the database after at most this key (`None`:
    /// from the start), whatever the page found.
    pub after_page: Option<Option<(Priority, i64)>>,
}

/// An attempt in flight.
#[derive(Debug, Clone)]
pub struct Running {
    pub entry: Entry,
    pub attempt_id: AttemptId,
    pub worker: WorkerId,
    /// The worker said it took a slot (and the attempt was persisted);
    /// until then it was only sent ahead, and the database still says
    /// queued.
    pub started: bool,
}

/// Where a live task is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Place {
    Ready,
    /// In backoff until this unix time.
    Delayed(f64),
    /// Taken for placement within one dispatch (never between events).
    Placing,
    Running,
}

/// Retries after the first attempt, and the backoff between them.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base_seconds: f64,
    pub max_seconds: f64,
}

/// A message the actor must send.
#[derive(Debug, Clone)]
pub enum Outbound {
    Run {
        worker: WorkerId,
        task_id: TaskId,
        attempt_id: AttemptId,
        body: Arc<str>,
    },
    CancelOnWorker {
        worker: WorkerId,
        task_id: TaskId,
    },
    Ack {
        worker: WorkerId,
        task_id: TaskId,
    },
    Adopt {
        worker: WorkerId,
        task_id: TaskId,
        attempt_id: AttemptId,
    },
}

/// The first valid result of a task: committed, then handed to the
/// ResultsStore and acknowledged to `worker`.
#[derive(Debug, Clone)]
pub struct Completion {
    pub task_id: TaskId,
    pub attempt_id: AttemptId,
    pub worker: WorkerId,
    pub result: TaskResult,
    pub json: String,
    pub at: f64,
}

/// A figure for `/stats/performance`.
#[derive(Debug, Clone)]
pub enum Sample {
    QueueWait {
        algorithm: String,
        seconds: f64,
    },
    Execution {
        algorithm: String,
        worker: WorkerId,
        seconds: f64,
    },
}

/// What one event asks of the actor.
#[derive(Debug, Default)]
pub struct Effects {
    /// Changes to commit, as one job, without waiting.
    pub persist: Vec<Change>,
    pub send: Vec<Outbound>,
    pub completion: Option<Completion>,
    /// Times at which backoffs expire.
    pub wake_at: Vec<f64>,
    pub samples: Vec<Sample>,
    /// Workers whose load changed: their rows to publish.
    pub loads_changed: Vec<WorkerId>,
    /// Slots this event freed (already applied to [`LiveTasks::loads`]):
    /// on which worker, how the attempt ended, and its task's size.
    pub released: Vec<(WorkerId, Freed, Option<TaskSize>)>,
    /// Draining workers that have just become idle: membership settles them.
    pub idle: Vec<WorkerId>,
}

impl Effects {
    /// Another event's effects after these.
    pub fn merge(&mut self, other: Effects) {
        self.persist.extend(other.persist);
        self.send.extend(other.send);
        if other.completion.is_some() {
            self.completion = other.completion;
        }
        self.wake_at.extend(other.wake_at);
        self.samples.extend(other.samples);
        self.loads_changed.extend(other.loads_changed);
        self.released.extend(other.released);
        self.idle.extend(other.idle);
    }
}

/// Counts since start, for `/stats`.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub submitted: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub retried: u64,
    pub lost_attempts: u64,
    pub refused_attempts: u64,
    pub late_results_ignored: u64,
    /// Results dropped as forged or stray (see [`super::OutcomeKind::Forged`]).
    pub forged_results: u64,
}

/// Every task that has not ended and is in memory, wherever it is.
#[derive(Debug)]
pub struct LiveTasks {
    pub(super) policy: RetryPolicy,
    pub(super) queues: HashMap<KernelName, KernelQueue>,
    pub(super) delayed: BTreeMap<(u64, i64), Entry>,
    pub(super) placing: HashMap<TaskId, Entry>,
    pub(super) running: HashMap<TaskId, Running>,
    pub(super) place: HashMap<TaskId, Place>,
    /// Cancels sent to the store and not answered yet, with the queued
    /// entry taken out meanwhile (so it cannot start).
    pub(super) cancelling: HashMap<TaskId, Option<Entry>>,
    /// Ids cancelled while a page of their kernel was being read.
    pub(super) cancelled_while_paging: HashSet<TaskId>,
    /// Kernels no worker had room for at the last placement.
    pub(super) blocked: HashSet<KernelName>,
    /// Every worker's load and the strategy: placement happens here.
    pub loads: Loads,
    /// The latest `now` an event brought, for events that carry none.
    pub(super) clock: f64,
    boot: u64,
    next_attempt: u64,
    jitter: SplitMix64,
    pub counters: Counters,
    /// `GET /metrics/prometheus`: counted where each event happens.
    pub(super) metrics: Arc<OrchestratorMetrics>,
    /// The dashboard's recent history, told of every ended attempt.
    pub activity: Arc<Activity>,
}

impl LiveTasks {
    /// `boot` is the high half of every attempt id; `seed` drives the
    /// backoff jitter.
    pub fn new(policy: RetryPolicy, boot: u64, seed: u64) -> Self {
        Self {
            policy,
            queues: HashMap::new(),
            delayed: BTreeMap::new(),
            placing: HashMap::new(),
            running: HashMap::new(),
            place: HashMap::new(),
            cancelling: HashMap::new(),
            cancelled_while_paging: HashSet::new(),
            blocked: HashSet::new(),
            loads: Loads::default(),
            clock: 0.0,
            boot,
            next_attempt: 0,
            jitter: SplitMix64::new(seed),
            counters: Counters::default(),
            metrics: Arc::default(),
            activity: Arc::default(),
        }
    }

    pub(super) fn attempt_id(&mut self) -> AttemptId {
        self.next_attempt += 1;
        AttemptId::new((self.boot << 32) | (self.next_attempt & 0xFFFF_FFFF))
    }

    /// A number in [0, 1) for jitter.
    fn next_jitter(&mut self) -> f64 {
        self.jitter.next_unit()
    }

    /// The wait before the attempt after `attempts`: base doubling up to
    /// the cap, ±20% jitter so that retries of a burst do not arrive
    /// together.
    pub fn backoff(&mut self, attempts: u32) -> f64 {
        let p = self.policy;
        let exp = p.base_seconds * 2f64.powi(attempts.saturating_sub(1).min(30) as i32);
        exp.min(p.max_seconds) * (0.8 + 0.4 * self.next_jitter())
    }

    /// The one way back into the ready queue of a task's kernel.
    pub(super) fn put_ready(&mut self, entry: Entry) {
        self.place.insert(entry.task_id.clone(), Place::Ready);
        self.queues
            .entry(entry.kernel)
            .or_default()
            .ready
            .insert(entry.key(), entry);
    }

    /// Into backoff until `due`.
    pub(super) fn delay_until(&mut self, entry: Entry, due: f64, fx: &mut Effects) {
        self.place.insert(entry.task_id.clone(), Place::Delayed(due));
        self.delayed.insert(((due * 1000.0) as u64, entry.seq), entry);
        fx.wake_at.push(due);
    }

    /// A queued task into memory, or left to the database when it sorts
    /// after what is loaded; the window stays bounded.
    fn enqueue(&mut self, entry: Entry) {
        let kq = self.queues.entry(entry.kernel).or_default();
        if kq.more_in_db && kq.frontier.is_none_or(|f| entry.key() > f) {
            return; // the next page brings it
        }
        let kernel = entry.kernel;
        self.put_ready(entry);
        let kq = self.queues.get_mut(&kernel).expect("just filled");
        while kq.ready.len() > WINDOW {
            if let Some((_, evicted)) = kq.ready.pop_last() {
                self.place.remove(&evicted.task_id);
                kq.more_in_db = true;
                kq.frontier = kq.ready.last_key_value().map(|(k, _)| *k);
            }
        }
    }

    /// A live task, wherever it is in memory (not moved).
    pub(super) fn entry(&self, task_id: &str) -> Option<&Entry> {
        match self.place.get(task_id)? {
            Place::Ready => self
                .queues
                .values()
                .find_map(|kq| kq.ready.values().find(|e| e.task_id == task_id)),
            Place::Delayed(_) => self.delayed.values().find(|e| e.task_id == task_id),
            Place::Placing => self.placing.get(task_id),
            Place::Running => self.running.get(task_id).map(|r| &r.entry),
        }
    }

    /// Removes a live task from wherever it is in memory.
    pub(super) fn take(&mut self, task_id: &str) -> Option<(Entry, Option<Running>)> {
        match self.place.remove(task_id)? {
            Place::Ready => self.queues.values_mut().find_map(|kq| {
                let key = kq
                    .ready
                    .iter()
                    .find(|(_, e)| e.task_id == task_id)
                    .map(|(k, _)| *k)?;
                kq.ready.remove(&key).map(|e| (e, None))
            }),
            Place::Delayed(due) => {
                let key = self
                    .delayed
                    .range(((due * 1000.0) as u64, i64::MIN)..)
                    .find(|(_, e)| e.task_id == task_id)
                    .map(|(k, _)| *k)?;
                self.delayed.remove(&key).map(|e| (e, None))
            }
            Place::Placing => self.placing.remove(task_id).map(|e| (e, None)),
            Place::Running => self.running.remove(task_id).map(|r| (r.entry.clone(), Some(r))),
        }
    }

    /// Event: a batch from `source` was committed to the database with
    /// these sequence numbers.
    pub fn submitted(&mut self, tasks: Vec<NewTask>, seqs: Vec<i64>, source: &str, now: f64) {
        self.counters.submitted += tasks.len() as u64;
        self.metrics.tasks_ingested(tasks.len());
        let source: Arc<str> = Arc::from(source);
        for (t, seq) in tasks.into_iter().zip(seqs) {
            if let Some(entry) = Entry::inserted(t, seq, &source, now) {
                self.enqueue(entry);
            }
        }
        self.blocked.clear();
    }

    /// Event: a dropped file of `count` tasks was committed; `rows` are
    /// its first queued tasks per kernel in queue order, and `more` the
    /// kernels of which more of its tasks wait in the database. The file
    /// is never in memory whole: what sorts after the loaded rows is
    /// paged in like any queued task.
    pub fn file_committed(&mut self, rows: Vec<QueuedRow>, more: &[KernelName], count: usize) {
        self.counters.submitted += count as u64;
        self.metrics.tasks_ingested(count);
        let mut last: HashMap<KernelName, (Priority, i64)> = HashMap::new();
        for row in rows {
            if let Some(entry) = Entry::from_row(row) {
                let key = entry.key();
                last.entry(entry.kernel)
                    .and_modify(|k| *k = (*k).max(key))
                    .or_insert(key);
                self.enqueue(entry);
            }
        }
        for &kernel in more {
            let loaded = last.get(&kernel).copied();
            let kq = self.queues.entry(kernel).or_default();
            let frontier = match (kq.more_in_db, kq.frontier) {
                // already paging from the start: it finds them
                (true, None) => None,
                (true, Some(f)) => Some(loaded.map_or(f, |l| f.min(l))),
                (false, _) => loaded,
            };
            kq.more_in_db = true;
            kq.frontier = frontier;
            if kq.paging {
                // a page read before the commit must not undo this
                kq.after_page = Some(match kq.after_page {
                    Some(Some(earlier)) => frontier.map(|f| f.min(earlier)),
                    Some(None) => None,
                    None => frontier,
                });
            }
        }
        self.blocked.clear();
    }

    /// Event: `POST /tasks/{id}/retry` committed; the task is queued again.
    pub fn retried(&mut self, row: QueuedRow) {
        if let Some(entry) = Entry::from_row(row) {
            self.enqueue(entry);
            self.blocked.clear();
        }
    }

    /// Event: backoffs that ended by `now` are over.
    pub fn backoff_expired(&mut self, now: f64) {
        let now_ms = (now * 1000.0) as u64;
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            let entry = entry.remove();
            self.blocked.remove(&entry.kernel);
            self.put_ready(entry);
        }
    }

    /// Event: a worker has room again (or the safety sweep): try every kernel.
    pub fn room(&mut self) {
        self.blocked.clear();
    }

    /// Event: a cancel was asked for. A queued task leaves the queue at
    /// once, so it can never start while the store decides.
    pub fn cancel_asked(&mut self, task_id: &TaskId) {
        let parked = match self.place.get(task_id) {
            Some(Place::Ready) | Some(Place::Delayed(_)) => self.take(task_id).map(|(e, _)| e),
            _ => None,
        };
        self.cancelling.insert(task_id.clone(), parked);
        if self.queues.values().any(|q| q.paging) {
            self.cancelled_while_paging.insert(task_id.clone());
        }
    }

    /// Event: the store answered a cancel (`None`: it could not).
    pub fn cancel_answered(&mut self, task_id: &TaskId, outcome: Option<&CancelOutcome>) -> Effects {
        let mut fx = Effects::default();
        let parked = self.cancelling.remove(task_id).flatten();
        if let Some(CancelOutcome::Cancelled { .. }) = outcome {
            self.counters.cancelled += 1;
            let taken = self.take(task_id);
            let kernel = parked.as_ref().or(taken.as_ref().map(|t| &t.0)).map(|e| e.kernel);
            self.metrics.cancelled(kernel.map(KernelName::as_str));
            if let Some((_, Some(r))) = taken {
                let now = self.clock;
                self.release(&r.worker, Freed::Nothing, r.entry.task_size(), now, &mut fx);
                fx.send.push(Outbound::CancelOnWorker {
                    worker: r.worker,
                    task_id: task_id.clone(),
                });
            }
            tracing::info!(task = %task_id, "task cancelled");
        } else if let Some(e) = parked {
            // not cancellable: back where it was taken from
            self.put_ready(e);
        }
        fx
    }

    /// Event: start-up found these tasks running before the restart. Those
    /// whose worker is still configured are adopted; the rest queued again.
    pub fn recovered(
        &mut self,
        running: Vec<WasRunning>,
        known: impl Fn(&WorkerId) -> bool,
        queued_kernels: &[KernelName],
    ) -> Effects {
        let mut fx = Effects::default();
        for was in running {
            let Some(entry) = Entry::from_row(was.row) else {
                continue;
            };
            let task_id = entry.task_id.clone();
            match (was.attempt_id, was.worker_id) {
                (Some(attempt_id), Some(worker)) if known(&worker) => {
                    tracing::info!(task = %task_id, %worker, %attempt_id, "adopting a task that was running before the restart");
                    fx.send.push(Outbound::Adopt {
                        worker: worker.clone(),
                        task_id: task_id.clone(),
                        attempt_id,
                    });
                    let now = self.clock;
                    self.loads.reserve(&worker, now);
                    fx.loads_changed.push(worker.clone());
                    self.place.insert(task_id.clone(), Place::Running);
                    self.running.insert(
                        task_id,
                        Running {
                            entry,
                            attempt_id,
                            worker,
                            started: true,
                        },
                    );
                }
                _ => {
                    tracing::warn!(task = %task_id, "running before the restart on an unknown worker: queued again");
                    fx.persist.push(Change::Requeue {
                        task_id,
                        attempts: entry.attempts,
                        next_at: None,
                    });
                    self.put_ready(entry);
                }
            }
        }
        for &kernel in queued_kernels {
            let kq = self.queues.entry(kernel).or_default();
            kq.more_in_db = true;
            kq.frontier = None;
        }
        fx
    }

    /// An attempt on `worker` ended (or a task sent there was taken
    /// back): its slot is free, its time learned.
    pub(super) fn release(
        &mut self,
        worker: &WorkerId,
        freed: Freed,
        size: Option<TaskSize>,
        now: f64,
        fx: &mut Effects,
    ) {
        let r = self.loads.release(worker, freed, size, now);
        fx.loads_changed.push(worker.clone());
        fx.released.push((worker.clone(), freed, size));
        if r.room {
            self.blocked.clear();
        }
        if r.idle {
            fx.idle.push(worker.clone());
        }
    }

    /// Event: membership's list of workers changed (one came, went, came
    /// up, went down, drains, changed capacity): every kernel may have
    /// room again.
    pub fn roster(&mut self, views: Vec<MemberView>) -> Effects {
        let mut fx = Effects {
            idle: self.loads.roster(views),
            ..Effects::default()
        };
        fx.loads_changed = self.loads.ids().cloned().collect();
        self.blocked.clear();
        fx
    }

    /// Event: `worker` answered 429; nothing more to it until `until`.
    pub fn worker_full(&mut self, worker: &WorkerId, until: f64) {
        self.loads.full(worker, until);
    }

    /// Where a task is, if it is live in memory.
    pub fn place_of(&self, task_id: &str) -> Option<Place> {
        self.place.get(task_id).copied()
    }

    /// How many ready tasks are ahead of this one (in its kernel's order,
    /// kernels one after another).
    pub fn ahead_of(&self, task_id: &str) -> Option<usize> {
        self.queues
            .values()
            .flat_map(|q| q.ready.values())
            .position(|e| e.task_id == task_id)
    }

    /// The last error of a task in backoff.
    pub fn last_error(&self, task_id: &str) -> Option<String> {
        self.delayed
            .values()
            .find(|e| e.task_id == task_id)
            .and_then(|e| e.last_error.clone())
    }

    /// Tasks that have not ended: in memory, plus one if more wait in the
    /// database.
    pub fn live_count(&self) -> usize {
        let in_db = self.queues.values().any(|q| q.more_in_db);
        self.place.len() + usize::from(in_db)
    }
}
