//! LiveTasks: the in-memory half of TaskQueue, and every transition of
//! DESIGN.md "Task states" that happens in memory. Pure: no actix, no
//! clock (every event carries `now`), no I/O, no observer (what the
//! Prometheus counters and the dashboard see is an effect too). Each event
//! method answers [`Effects`]: what the actor must persist, send and tell.
//!
//! One map holds every live task ([`LiveTask`]: its entry and its
//! [`TaskState`], which carries the state's data). The per-kernel ready
//! queues and the backoff timetable are indexes of ids into it, changed
//! only with a state ([`LiveTasks::transition`], [`LiveTasks::admit`],
//! [`LiveTasks::remove`]). Dispatch lives in `dispatch.rs`, attempt
//! outcomes in `outcome.rs`, cancels in `cancel.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

pub use super::effects::{Completion, Effects, Freed, Observed, Outbound, Sample};
pub use super::entry::Entry;
pub use super::takeback::SoonerStarts;
pub use super::verify::{Verifier, VerifyCounters};
use crate::model::{AttemptId, KernelName, Priority, TaskId, WorkerId};
use crate::orchestrator::placement::{Loads, MemberView, TaskSize};
use crate::orchestrator::store::{Change, NewTask, QueuedRow, WasRunning};
use crate::sim::rng::SplitMix64;

/// Queued tasks kept in memory per kernel; the rest wait in the database.
pub const WINDOW: usize = 20_000;

/// Where a live task is, with what that state needs.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskState {
    /// In its kernel's ready queue.
    Ready,
    /// Backing off after a failed attempt until this unix time.
    Delayed { until: f64 },
    /// Taken for placement within one dispatch (never between events).
    Placing,
    /// Sent to `worker` as attempt `attempt_id`, waiting there for a slot:
    /// the database still says queued.
    SentAhead { worker: WorkerId, attempt_id: AttemptId },
    /// The worker took attempt `attempt_id` into a slot; persisted as
    /// running.
    Running { worker: WorkerId, attempt_id: AttemptId },
    /// Sent ahead, and asked back from `worker` (`takeback.rs`) to run
    /// on `to` (which holds a slot for it meanwhile), or only to free its
    /// place there (`None`). Until the worker answers it is still sent
    /// ahead: the database says queued.
    TakingBack {
        worker: WorkerId,
        attempt_id: AttemptId,
        to: Option<WorkerId>,
    },
    /// Taken out of the queue while the store decides a cancel asked for
    /// it when it was ready or backing off (so it cannot start meanwhile).
    Parked,
}

impl TaskState {
    /// The open attempt: its worker and id (sent ahead or running).
    pub fn attempt(&self) -> Option<(&WorkerId, AttemptId)> {
        match self {
            TaskState::SentAhead { worker, attempt_id }
            | TaskState::Running { worker, attempt_id }
            | TaskState::TakingBack {
                worker, attempt_id, ..
            } => Some((worker, *attempt_id)),
            _ => None,
        }
    }
}

/// A task that has not ended, in memory.
#[derive(Debug, Clone)]
pub struct LiveTask {
    pub entry: Entry,
    pub state: TaskState,
}

/// Queued tasks of one kernel: an index of the ready ones, in queue order.
#[derive(Debug, Default)]
pub(super) struct KernelQueue {
    pub ready: BTreeMap<(Priority, i64), TaskId>,
    /// No worker had room for this kernel at the last placement.
    pub blocked: bool,
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

/// What one worker holds of the task map: the attempts sent there, by
/// state, and the slots held there for tasks being taken back elsewhere.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct OnWorker {
    /// [`TaskState::Running`] here.
    pub running: usize,
    /// [`TaskState::SentAhead`] here, in queue order.
    pub sent_ahead: BTreeMap<(Priority, i64), TaskId>,
    /// [`TaskState::TakingBack`] from here, in queue order.
    pub taking_back: BTreeMap<(Priority, i64), TaskId>,
    /// [`TaskState::TakingBack`] to here: slots held for them.
    pub incoming: usize,
}

impl OnWorker {
    fn is_empty(&self) -> bool {
        *self == OnWorker::default()
    }
}

/// The indexes of the task map, each naming the tasks of one state.
#[derive(Debug, Default)]
pub(super) struct Indexes {
    /// [`TaskState::Ready`], per kernel.
    pub queues: HashMap<KernelName, KernelQueue>,
    /// [`TaskState::Delayed`], by (due in ms, seq).
    pub delayed: BTreeMap<(u64, i64), TaskId>,
    /// How many are [`TaskState::Parked`].
    pub parked: usize,
    /// Sent ahead, running and being taken back, per worker.
    pub workers: HashMap<WorkerId, OnWorker>,
    /// How many are sent ahead or being taken back, by priority (high,
    /// medium, low): with one priority only, nothing is held back for
    /// priority (`takeback.rs`), at no cost.
    pub ahead_by_priority: [usize; 3],
}

/// The backoff timetable's key of a task due at `until`.
pub(super) fn delayed_key(until: f64, seq: i64) -> (u64, i64) {
    ((until * 1000.0) as u64, seq)
}

impl Indexes {
    fn add(&mut self, id: &TaskId, entry: &Entry, state: &TaskState) {
        match state {
            TaskState::Ready => {
                let kq = self.queues.entry(entry.kernel).or_default();
                kq.ready.insert(entry.key(), id.clone());
            }
            TaskState::Delayed { until } => {
                self.delayed.insert(delayed_key(*until, entry.seq), id.clone());
            }
            TaskState::Parked => self.parked += 1,
            TaskState::SentAhead { worker, .. } => {
                let on = self.workers.entry(worker.clone()).or_default();
                on.sent_ahead.insert(entry.key(), id.clone());
                self.ahead_by_priority[entry.priority as usize] += 1;
            }
            TaskState::Running { worker, .. } => self.workers.entry(worker.clone()).or_default().running += 1,
            TaskState::TakingBack { worker, to, .. } => {
                let on = self.workers.entry(worker.clone()).or_default();
                on.taking_back.insert(entry.key(), id.clone());
                self.ahead_by_priority[entry.priority as usize] += 1;
                if let Some(to) = to {
                    self.workers.entry(to.clone()).or_default().incoming += 1;
                }
            }
            TaskState::Placing => {}
        }
    }

    /// Changes one worker's entry, dropping it once it holds nothing.
    fn on_worker(&mut self, worker: &WorkerId, change: impl FnOnce(&mut OnWorker)) {
        if let Some(on) = self.workers.get_mut(worker) {
            change(on);
            if on.is_empty() {
                self.workers.remove(worker);
            }
        }
    }

    fn remove(&mut self, entry: &Entry, state: &TaskState) {
        match state {
            TaskState::Ready => {
                if let Some(kq) = self.queues.get_mut(&entry.kernel) {
                    kq.ready.remove(&entry.key());
                }
            }
            TaskState::Delayed { until } => {
                self.delayed.remove(&delayed_key(*until, entry.seq));
            }
            TaskState::Parked => self.parked -= 1,
            TaskState::SentAhead { worker, .. } => {
                self.ahead_by_priority[entry.priority as usize] -= 1;
                self.on_worker(worker, |on| {
                    on.sent_ahead.remove(&entry.key());
                })
            }
            TaskState::Running { worker, .. } => self.on_worker(worker, |on| on.running -= 1),
            TaskState::TakingBack { worker, to, .. } => {
                self.ahead_by_priority[entry.priority as usize] -= 1;
                self.on_worker(worker, |on| {
                    on.taking_back.remove(&entry.key());
                });
                if let Some(to) = to {
                    self.on_worker(to, |on| on.incoming -= 1);
                }
            }
            TaskState::Placing => {}
        }
    }
}

/// Where a live task is, as `GET /tasks/{id}` explains it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Place {
    Ready,
    /// In backoff until this unix time.
    Delayed(f64),
    /// Taken for placement within one dispatch (never between events).
    Placing,
    /// Sent ahead or running.
    Running,
}

/// Retries after the first attempt, and the backoff between them.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base_seconds: f64,
    pub max_seconds: f64,
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
    /// Tasks sent ahead and given back by their worker before they
    /// started (`takeback.rs`).
    pub taken_back: u64,
}

/// Every task that has not ended and is in memory, wherever it is.
#[derive(Debug)]
pub struct LiveTasks {
    pub(super) policy: RetryPolicy,
    /// Every live task, by id: the one truth of where each is.
    pub(super) tasks: HashMap<TaskId, LiveTask>,
    /// Ids by state, in the orders dispatch and backoffs need.
    pub(super) index: Indexes,
    /// Cancels sent to the store and not answered yet (of tasks in memory
    /// or only in the database): their attempts' reports no longer count,
    /// and a page does not bring them back.
    pub(super) cancelling: HashSet<TaskId>,
    /// Ids cancelled while a page was being read: that page may still
    /// hold them as queued.
    pub(super) cancelled_while_paging: HashSet<TaskId>,
    /// Every worker's load and the strategy: placement happens here.
    pub loads: Loads,
    /// The latest `now` an event brought, for events that carry none.
    pub(super) clock: f64,
    boot: u64,
    next_attempt: u64,
    jitter: SplitMix64,
    pub counters: Counters,
    /// Replication: completed results run again elsewhere (`verify.rs`).
    pub verify: Verifier,
    /// Not looked for sooner starts elsewhere again before this time
    /// (`takeback.rs`: at most every [`super::takeback::SOONER_EVERY`]).
    pub(super) sooner_after: f64,
    /// The margins of a move to a sooner start elsewhere (`takeback.rs`);
    /// `None`: tasks sent ahead are never moved for a sooner start (free
    /// slots and priority still take them back).
    pub sooner: Option<SoonerStarts>,
}

impl LiveTasks {
    /// `boot` is the high half of every attempt id; `seed` drives the
    /// backoff jitter.
    pub fn new(policy: RetryPolicy, boot: u64, seed: u64) -> Self {
        Self {
            policy,
            tasks: HashMap::new(),
            index: Indexes::default(),
            cancelling: HashSet::new(),
            cancelled_while_paging: HashSet::new(),
            loads: Loads::default(),
            clock: 0.0,
            boot,
            next_attempt: 0,
            jitter: SplitMix64::new(seed),
            counters: Counters::default(),
            verify: Verifier::default(),
            sooner_after: 0.0,
            sooner: Some(SoonerStarts::default()),
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

    /// A task comes into memory in `state` (replacing any live task of
    /// the same id).
    pub(super) fn admit(&mut self, entry: Entry, state: TaskState) {
        let id = entry.task_id.clone();
        self.remove(&id);
        self.index.add(&id, &entry, &state);
        self.tasks.insert(id, LiveTask { entry, state });
    }

    /// The one way a live task changes state: out of its old index, into
    /// the new one. Answers the state it leaves (`None`: not live).
    pub(super) fn transition(&mut self, task_id: &TaskId, to: TaskState) -> Option<TaskState> {
        let t = self.tasks.get_mut(task_id)?;
        self.index.remove(&t.entry, &t.state);
        self.index.add(task_id, &t.entry, &to);
        Some(std::mem::replace(&mut t.state, to))
    }

    /// A live task leaves memory (it ended, or waits in the database).
    pub(super) fn remove(&mut self, task_id: &TaskId) -> Option<LiveTask> {
        let t = self.tasks.remove(task_id)?;
        self.index.remove(&t.entry, &t.state);
        Some(t)
    }

    /// Into backoff until `due`.
    pub(super) fn delay_until(&mut self, task_id: &TaskId, due: f64, fx: &mut Effects) {
        self.transition(task_id, TaskState::Delayed { until: due });
        fx.wake_at.push(due);
    }

    /// A queued task into memory, or left to the database when it sorts
    /// after what is loaded; the window stays bounded.
    fn enqueue(&mut self, entry: Entry) {
        let kq = self.index.queues.entry(entry.kernel).or_default();
        if kq.more_in_db && kq.frontier.is_none_or(|f| entry.key() > f) {
            return; // the next page brings it
        }
        let kernel = entry.kernel;
        self.admit(entry, TaskState::Ready);
        loop {
            let kq = self.index.queues.get_mut(&kernel).expect("just filled");
            if kq.ready.len() <= WINDOW {
                break;
            }
            let Some((_, evicted)) = kq.ready.last_key_value().map(|(k, id)| (*k, id.clone())) else {
                break;
            };
            self.remove(&evicted);
            let kq = self.index.queues.get_mut(&kernel).expect("just filled");
            kq.more_in_db = true;
            kq.frontier = kq.ready.last_key_value().map(|(k, _)| *k);
        }
    }

    /// A live task, wherever it is in memory (a parked one is not).
    pub(super) fn entry(&self, task_id: &str) -> Option<&Entry> {
        self.tasks
            .get(task_id)
            .filter(|t| t.state != TaskState::Parked)
            .map(|t| &t.entry)
    }

    /// A live task's state (parked ones too).
    pub fn state_of(&self, task_id: &str) -> Option<&TaskState> {
        self.tasks.get(task_id).map(|t| &t.state)
    }

    /// Every open attempt: (task, worker, attempt id, whether it started).
    pub fn attempts(&self) -> impl Iterator<Item = (&TaskId, &WorkerId, AttemptId, bool)> + '_ {
        self.tasks.iter().filter_map(|(id, t)| {
            let started = matches!(t.state, TaskState::Running { .. });
            t.state.attempt().map(|(w, a)| (id, w, a, started))
        })
    }

    /// Event: a batch from `source` was committed to the database with
    /// these sequence numbers.
    pub fn submitted(&mut self, tasks: Vec<NewTask>, seqs: Vec<i64>, source: &str, now: f64) -> Effects {
        let mut fx = Effects::default();
        self.counters.submitted += tasks.len() as u64;
        fx.observed.push(Observed::Ingested(tasks.len()));
        let source: Arc<str> = Arc::from(source);
        for (t, seq) in tasks.into_iter().zip(seqs) {
            if let Some(entry) = Entry::inserted(t, seq, &source, now) {
                self.enqueue(entry);
            }
        }
        self.room();
        fx
    }

    /// Event: `count` tasks of a commit were answered at once from equal
    /// completed tasks' stored results (the store's reuse): accepted like
    /// the others, completed already, never live.
    pub fn answered(&mut self, count: usize) -> Effects {
        let mut fx = Effects::default();
        if count > 0 {
            self.counters.submitted += count as u64;
            fx.observed.push(Observed::Ingested(count));
            fx.observed.push(Observed::Reused(count));
        }
        fx
    }

    /// Event: a dropped file of `count` tasks was committed; `rows` are
    /// its first queued tasks per kernel in queue order, and `more` the
    /// kernels of which more of its tasks wait in the database. The file
    /// is never in memory whole: what sorts after the loaded rows is
    /// paged in like any queued task.
    pub fn file_committed(&mut self, rows: Vec<QueuedRow>, more: &[KernelName], count: usize) -> Effects {
        let mut fx = Effects::default();
        self.counters.submitted += count as u64;
        fx.observed.push(Observed::Ingested(count));
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
            let kq = self.index.queues.entry(kernel).or_default();
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
        self.room();
        fx
    }

    /// Event: `POST /tasks/{id}/retry` committed; the task is queued again.
    pub fn retried(&mut self, row: QueuedRow) {
        if let Some(entry) = Entry::from_row(row) {
            self.enqueue(entry);
            self.room();
        }
    }

    /// Event: backoffs that ended by `now` are over.
    pub fn backoff_expired(&mut self, now: f64) {
        let now_ms = (now * 1000.0) as u64;
        while let Some((key, id)) = self.index.delayed.first_key_value() {
            if key.0 > now_ms {
                break;
            }
            let id = id.clone();
            if self.transition(&id, TaskState::Ready).is_none() {
                self.index.delayed.pop_first(); // not live: never indexed
                continue;
            }
            if let Some(kq) = self
                .tasks
                .get(&id)
                .and_then(|t| self.index.queues.get_mut(&t.entry.kernel))
            {
                kq.blocked = false;
            }
        }
    }

    /// Event: a worker has room again (or the safety sweep): try every kernel.
    pub fn room(&mut self) {
        for kq in self.index.queues.values_mut() {
            kq.blocked = false;
        }
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
                    self.admit(entry, TaskState::Running { worker, attempt_id });
                }
                _ => {
                    tracing::warn!(task = %task_id, "running before the restart on an unknown worker: queued again");
                    fx.persist.push(Change::Requeue {
                        task_id,
                        attempts: entry.attempts,
                        next_at: None,
                    });
                    self.admit(entry, TaskState::Ready);
                }
            }
        }
        for &kernel in queued_kernels {
            let kq = self.index.queues.entry(kernel).or_default();
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
            self.room();
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
        self.room();
        fx
    }

    /// Event: these workers changed (a new one is added at the end); the
    /// others are as they were. O(changes), where [`Self::roster`] is O(N).
    pub fn roster_changes(&mut self, views: Vec<MemberView>) -> Effects {
        let loads_changed = views.iter().map(|v| v.id.clone()).collect();
        let mut fx = Effects {
            idle: self.loads.changes(views),
            ..Effects::default()
        };
        fx.loads_changed = loads_changed;
        self.room();
        fx
    }

    /// Event: `worker` answered 429; nothing more to it until `until`.
    pub fn worker_full(&mut self, worker: &WorkerId, until: f64) {
        self.loads.full(worker, until);
    }

    /// Where a task is, if it is live in memory (a parked one is not).
    pub fn place_of(&self, task_id: &str) -> Option<Place> {
        match self.tasks.get(task_id)?.state {
            TaskState::Ready => Some(Place::Ready),
            TaskState::Delayed { until } => Some(Place::Delayed(until)),
            TaskState::Placing => Some(Place::Placing),
            TaskState::SentAhead { .. } | TaskState::Running { .. } | TaskState::TakingBack { .. } => {
                Some(Place::Running)
            }
            TaskState::Parked => None,
        }
    }

    /// How many ready tasks are ahead of this one (in its kernel's order,
    /// kernels one after another).
    pub fn ahead_of(&self, task_id: &str) -> Option<usize> {
        self.index
            .queues
            .values()
            .flat_map(|q| q.ready.values())
            .position(|id| id.as_str() == task_id)
    }

    /// The last error of a task in backoff.
    pub fn last_error(&self, task_id: &str) -> Option<String> {
        self.tasks
            .get(task_id)
            .filter(|t| matches!(t.state, TaskState::Delayed { .. }))
            .and_then(|t| t.entry.last_error.clone())
    }

    /// Tasks that have not ended: in memory (parked ones aside), plus one
    /// if more wait in the database.
    pub fn live_count(&self) -> usize {
        let in_db = self.index.queues.values().any(|q| q.more_in_db);
        self.tasks.len() - self.index.parked + usize::from(in_db)
    }
}
