//! TaskQueue: the source of truth for every task and its state machine
//! (DESIGN.md "Task states"). Durable through the [`Store`]; in memory it
//! keeps a bounded window of queued tasks per kernel (priority, then
//! arrival order), the tasks in backoff, and the attempts in flight.
//! Dispatch is event-driven: new tasks, a finished attempt or a worker
//! with room trigger it at once; `TASK_DISTRIBUTION_INTERVAL` is only a
//! safety sweep.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::Serialize;
use serde_json::{json, Value};

use super::load_balancer::{
    Assign, Ended, Explain, Explanation, LoadBalancer, Placement, Release, Reserve, WorkerId,
};
use super::results_store::{RecordResult, ResultsStore};
use super::worker_proxy::{AckResult, Adopt, CancelOnWorker, RunAttempt, WorkerProxy};
use crate::model::{Task, TaskResult};
use crate::sim::resolve_kernel;
use crate::store::{self, CancelOutcome, Ingest, NewTask, Op, QueuedRow, Reply, RetryOutcome, Store};

/// Queued tasks kept in memory per kernel; the rest wait in the database.
const WINDOW: usize = 20_000;
/// Tasks handed to the LoadBalancer in one message.
const DISPATCH_BATCH: usize = 512;
/// Recent figures kept for `/stats/performance`.
const RECENT: usize = 2048;

/// Retry and window settings.
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    pub max_retries: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub sweep_interval: Duration,
    pub performance: bool,
}

/// A task in memory.
#[derive(Debug, Clone)]
struct Entry {
    seq: i64,
    task_id: String,
    priority: u8,
    kernel: &'static str,
    algorithm: String,
    body: Arc<str>,
    /// Attempts started so far.
    attempts: u32,
    created_at: f64,
    last_error: Option<String>,
}

impl Entry {
    fn key(&self) -> (u8, i64) {
        (self.priority, self.seq)
    }

    fn from_row(row: QueuedRow) -> Option<Self> {
        Some(Self {
            seq: row.seq,
            priority: row.priority,
            kernel: resolve_kernel(&row.kernel)?,
            algorithm: row.algorithm,
            body: Arc::from(row.body),
            attempts: row.attempts,
            created_at: row.created_at,
            task_id: row.task_id,
            last_error: None,
        })
    }
}

/// Queued tasks of one kernel.
#[derive(Default)]
struct KernelQueue {
    ready: BTreeMap<(u8, i64), Entry>,
    /// Largest key loaded from the database; queued tasks above it may
    /// wait there (when `more_in_db`).
    frontier: Option<(u8, i64)>,
    more_in_db: bool,
    paging: bool,
}

struct Running {
    entry: Entry,
    attempt_id: u64,
    worker: WorkerId,
    proxy: Addr<WorkerProxy>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Place {
    Ready,
    /// In backoff until this unix time.
    Delayed(f64),
    Placing,
    Running,
}

/// Bounded recent samples.
#[derive(Default)]
struct Samples(VecDeque<f64>);

impl Samples {
    fn push(&mut self, v: f64) {
        if self.0.len() == RECENT {
            self.0.pop_front();
        }
        self.0.push_back(v);
    }

    fn summary(&self) -> Value {
        let mut v: Vec<f64> = self.0.iter().copied().collect();
        if v.is_empty() {
            return json!({"count": 0});
        }
        v.sort_by(f64::total_cmp);
        let pct = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        json!({
            "count": v.len(),
            "mean": v.iter().sum::<f64>() / v.len() as f64,
            "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": v[v.len() - 1],
        })
    }
}

#[derive(Default)]
struct Stats {
    submitted: u64,
    completed: u64,
    failed: u64,
    cancelled: u64,
    retried: u64,
    lost_attempts: u64,
    refused_attempts: u64,
    late_results_ignored: u64,
    completions: VecDeque<Instant>,
    queue_wait: HashMap<String, Samples>,
    execution: HashMap<String, Samples>,
    execution_by_worker: HashMap<String, Samples>,
}

pub struct TaskQueue {
    store: Store,
    lb: Addr<LoadBalancer>,
    results: Addr<ResultsStore>,
    proxies: HashMap<WorkerId, Addr<WorkerProxy>>,
    settings: QueueSettings,
    queues: HashMap<&'static str, KernelQueue>,
    delayed: BTreeMap<(u64, i64), Entry>,
    running: HashMap<String, Running>,
    placing: HashMap<String, Entry>,
    live: HashMap<String, Place>,
    /// Cancels sent to the store and not yet answered.
    cancelling: HashSet<String>,
    /// Ids cancelled while a page of their kernel was being read.
    cancelled_while_paging: HashSet<String>,
    boot: u64,
    next_attempt: u64,
    dispatching: bool,
    dispatch_again: bool,
    blocked: HashSet<&'static str>,
    stats: Stats,
    started: Instant,
}

impl TaskQueue {
    pub fn new(
        store: Store,
        lb: Addr<LoadBalancer>,
        results: Addr<ResultsStore>,
        proxies: HashMap<WorkerId, Addr<WorkerProxy>>,
        settings: QueueSettings,
        boot: u64,
    ) -> Self {
        Self {
            store,
            lb,
            results,
            proxies,
            settings,
            queues: HashMap::new(),
            delayed: BTreeMap::new(),
            running: HashMap::new(),
            placing: HashMap::new(),
            live: HashMap::new(),
            cancelling: HashSet::new(),
            cancelled_while_paging: HashSet::new(),
            boot,
            next_attempt: 0,
            dispatching: false,
            dispatch_again: false,
            blocked: HashSet::new(),
            stats: Stats::default(),
            started: Instant::now(),
        }
    }

    fn attempt_id(&mut self) -> u64 {
        self.next_attempt += 1;
        (self.boot << 32) | (self.next_attempt & 0xFFFF_FFFF)
    }

    /// Puts a queued task in memory (or leaves it to the database when it
    /// sorts after what is loaded).
    fn enqueue(&mut self, entry: Entry) {
        let kq = self.queues.entry(entry.kernel).or_default();
        if kq.more_in_db && kq.frontier.is_none_or(|f| entry.key() > f) {
            return; // the next page brings it
        }
        self.live.insert(entry.task_id.clone(), Place::Ready);
        kq.ready.insert(entry.key(), entry);
        while kq.ready.len() > WINDOW {
            if let Some((_, evicted)) = kq.ready.pop_last() {
                self.live.remove(&evicted.task_id);
                kq.more_in_db = true;
                kq.frontier = kq.ready.last_key_value().map(|(k, _)| *k);
            }
        }
    }

    fn remove_ready(&mut self, task_id: &str) -> Option<Entry> {
        for kq in self.queues.values_mut() {
            if let Some(key) = kq
                .ready
                .iter()
                .find(|(_, e)| e.task_id == task_id)
                .map(|(k, _)| *k)
            {
                return kq.ready.remove(&key);
            }
        }
        None
    }

    fn remove_delayed(&mut self, task_id: &str) -> Option<Entry> {
        let key = self
            .delayed
            .iter()
            .find(|(_, e)| e.task_id == task_id)
            .map(|(k, _)| *k)?;
        self.delayed.remove(&key)
    }

    /// Loads the next page of queued tasks of a kernel when its window runs low.
    fn maybe_page(&mut self, kernel: &'static str, ctx: &mut Context<Self>) {
        let Some(kq) = self.queues.get_mut(kernel) else {
            return;
        };
        if !kq.more_in_db || kq.paging || kq.ready.len() > WINDOW / 4 {
            return;
        }
        kq.paging = true;
        let after = kq.frontier;
        let limit = WINDOW - kq.ready.len();
        self.store
            .apply(vec![Op::Page {
                kernel: kernel.to_string(),
                after,
                limit,
            }])
            .into_actor(self)
            .map(move |reply, act, ctx| {
                let rows = match reply {
                    Ok(mut r) => match r.pop() {
                        Some(Reply::Page(rows)) => rows,
                        _ => Vec::new(),
                    },
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read queued tasks from the database");
                        Vec::new()
                    }
                };
                let full_page = rows.len() == limit;
                let last = rows.last().map(|r| (r.priority, r.seq));
                let skip = std::mem::take(&mut act.cancelled_while_paging);
                let now = store::now();
                for row in rows {
                    if act.live.contains_key(&row.task_id) || skip.contains(&row.task_id) {
                        continue;
                    }
                    let due = row.next_attempt_at.filter(|t| *t > now);
                    let Some(entry) = Entry::from_row(row) else {
                        continue;
                    };
                    match due {
                        Some(t) => act.delay_until(entry, t, ctx),
                        None => {
                            act.live.insert(entry.task_id.clone(), Place::Ready);
                            if let Some(kq) = act.queues.get_mut(kernel) {
                                kq.ready.insert(entry.key(), entry);
                            }
                        }
                    }
                }
                if let Some(kq) = act.queues.get_mut(kernel) {
                    kq.paging = false;
                    if last.is_some() {
                        kq.frontier = last.max(kq.frontier);
                    }
                    kq.more_in_db = full_page;
                }
                act.try_dispatch(ctx);
            })
            .spawn(ctx);
    }

    /// Hands the next tasks, in priority order across kernels, to the
    /// LoadBalancer; starts those it places.
    fn try_dispatch(&mut self, ctx: &mut Context<Self>) {
        if self.dispatching {
            self.dispatch_again = true;
            return;
        }
        let mut batch: Vec<Entry> = Vec::new();
        while batch.len() < DISPATCH_BATCH {
            let next = self
                .queues
                .iter()
                .filter(|(k, _)| !self.blocked.contains(*k))
                .filter_map(|(k, q)| q.ready.first_key_value().map(|(key, _)| (*key, *k)))
                .min();
            let Some((key, kernel)) = next else { break };
            let entry = self
                .queues
                .get_mut(kernel)
                .and_then(|q| q.ready.remove(&key))
                .expect("the key was just seen");
            self.live.insert(entry.task_id.clone(), Place::Placing);
            batch.push(entry);
        }
        let kernels: Vec<&'static str> = self.queues.keys().copied().collect();
        for k in kernels {
            self.maybe_page(k, ctx);
        }
        if batch.is_empty() {
            return;
        }
        self.dispatching = true;
        let kernels = batch.iter().map(|e| e.kernel).collect();
        for e in &batch {
            self.placing.insert(e.task_id.clone(), e.clone());
        }
        let ids: Vec<String> = batch.into_iter().map(|e| e.task_id).collect();
        self.lb
            .send(Assign { kernels })
            .into_actor(self)
            .map(move |placements, act, ctx| {
                act.dispatching = false;
                let placements = placements.unwrap_or_default();
                let mut placed_any = false;
                for (i, task_id) in ids.into_iter().enumerate() {
                    let placement = placements.get(i).cloned().flatten();
                    let Some(entry) = act.placing.remove(&task_id) else {
                        // cancelled or finished while being placed
                        if let Some(p) = placement {
                            act.lb.do_send(Release {
                                worker_id: p.worker_id,
                                ended: Ended::Nothing,
                            });
                        }
                        continue;
                    };
                    match placement {
                        Some(p) => {
                            placed_any = true;
                            act.start_attempt(entry, p);
                        }
                        None => {
                            act.blocked.insert(entry.kernel);
                            act.live.insert(entry.task_id.clone(), Place::Ready);
                            act.queues
                                .entry(entry.kernel)
                                .or_default()
                                .ready
                                .insert(entry.key(), entry);
                        }
                    }
                }
                if placed_any || std::mem::take(&mut act.dispatch_again) {
                    act.try_dispatch(ctx);
                }
            })
            .spawn(ctx);
    }

    fn start_attempt(&mut self, mut entry: Entry, p: Placement) {
        let attempt_id = self.attempt_id();
        entry.attempts += 1;
        let now = store::now();
        if self.settings.performance {
            self.stats
                .queue_wait
                .entry(entry.algorithm.clone())
                .or_default()
                .push((now - entry.created_at).max(0.0));
        }
        self.store.submit(vec![Op::Started {
            task_id: entry.task_id.clone(),
            attempt_id,
            worker_id: p.worker_id.to_string(),
            at: now,
        }]);
        p.proxy.do_send(RunAttempt {
            task_id: entry.task_id.clone(),
            attempt_id,
            body: Arc::clone(&entry.body),
        });
        self.live.insert(entry.task_id.clone(), Place::Running);
        self.running.insert(
            entry.task_id.clone(),
            Running {
                entry,
                attempt_id,
                worker: p.worker_id,
                proxy: p.proxy,
            },
        );
    }

    /// Removes a live task from wherever it is in memory.
    fn take_live(&mut self, task_id: &str) -> Option<(Entry, Option<Running>)> {
        match self.live.remove(task_id)? {
            Place::Ready => self.remove_ready(task_id).map(|e| (e, None)),
            Place::Delayed(_) => self.remove_delayed(task_id).map(|e| (e, None)),
            Place::Placing => self.placing.remove(task_id).map(|e| (e, None)),
            Place::Running => self.running.remove(task_id).map(|r| (r.entry.clone(), Some(r))),
        }
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let base = self.settings.retry_base.as_secs_f64();
        let exp = base * 2f64.powi(attempts.saturating_sub(1).min(30) as i32);
        let capped = exp.min(self.settings.retry_max.as_secs_f64());
        // ±20% jitter so that retries of a burst do not arrive together
        let jitter = 0.8 + 0.4 * pseudo_random();
        Duration::from_secs_f64(capped * jitter)
    }

    fn delay_until(&mut self, entry: Entry, due: f64, ctx: &mut Context<Self>) {
        let wait = Duration::from_secs_f64((due - store::now()).max(0.0));
        self.live.insert(entry.task_id.clone(), Place::Delayed(due));
        self.delayed.insert(((due * 1000.0) as u64, entry.seq), entry);
        ctx.run_later(wait, |act, ctx| act.promote_due(ctx));
    }

    /// Moves tasks whose backoff is over back to the ready queues.
    fn promote_due(&mut self, ctx: &mut Context<Self>) {
        let now_ms = (store::now() * 1000.0) as u64;
        let due: Vec<(u64, i64)> = self
            .delayed
            .range(..=(now_ms, i64::MAX))
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            if let Some(entry) = self.delayed.remove(&key) {
                self.live.remove(&entry.task_id);
                self.blocked.remove(entry.kernel);
                self.live.insert(entry.task_id.clone(), Place::Ready);
                self.queues
                    .entry(entry.kernel)
                    .or_default()
                    .ready
                    .insert(entry.key(), entry);
            }
        }
        self.try_dispatch(ctx);
    }

    /// An attempt failed or was lost: back to the queue after a backoff, or
    /// failed for good once the retries are used up.
    fn retry_or_fail(
        &mut self,
        mut entry: Entry,
        attempt_id: u64,
        outcome: &str,
        error: String,
        ctx: &mut Context<Self>,
    ) {
        let at = store::now();
        let mut ops = vec![Op::AttemptEnded {
            attempt_id,
            outcome: outcome.to_string(),
            error: Some(error.clone()),
            at,
        }];
        entry.last_error = Some(error.clone());
        if entry.attempts <= self.settings.max_retries {
            let delay = self.backoff(entry.attempts);
            let due = at + delay.as_secs_f64();
            tracing::warn!(task = %entry.task_id, attempt = entry.attempts, %outcome, %error,
                retry_in = delay.as_secs_f64(), "attempt failed; will retry");
            self.stats.retried += 1;
            ops.push(Op::Requeue {
                task_id: entry.task_id.clone(),
                attempts: entry.attempts,
                next_at: Some(due),
                error: Some(format!("attempt {} {outcome}: {error}", entry.attempts)),
            });
            self.store.submit(ops);
            self.delay_until(entry, due, ctx);
        } else {
            tracing::error!(task = %entry.task_id, attempts = entry.attempts, %error, "task failed");
            self.stats.failed += 1;
            ops.push(Op::Ended {
                task_id: entry.task_id.clone(),
                status: "failed",
                result: None,
                error: Some(format!(
                    "failed after {} attempt{}; last: {outcome}: {error}",
                    entry.attempts,
                    if entry.attempts == 1 { "" } else { "s" }
                )),
                worker_id: None,
                at,
            });
            self.store.submit(ops);
        }
    }

    /// The first valid result of a task that has not ended: recorded once,
    /// then acknowledged to the worker that holds it.
    fn complete(&mut self, task_id: &str, attempt_id: u64, from: &WorkerId, mut result: TaskResult) {
        let Some((entry, running)) = self.take_live(task_id) else {
            return;
        };
        let seconds = result.execution_time;
        if let Some(r) = &running {
            self.lb.do_send(Release {
                worker_id: r.worker.clone(),
                ended: Ended::Completed { seconds },
            });
            if r.attempt_id != attempt_id {
                // another attempt is still at work on it: stop it
                r.proxy.do_send(CancelOnWorker {
                    task_id: task_id.to_string(),
                });
            }
        }
        let at = store::now();
        result.worker_id = Some(from.to_string());
        result.completed_at.get_or_insert_with(|| store::iso(at));
        result.priority = Some(store::priority_name(entry.priority).to_string());
        result.attempt_id = None;
        let json = serde_json::to_string(&result).unwrap_or_default();
        self.stats.completed += 1;
        self.stats.completions.push_back(Instant::now());
        while self.stats.completions.len() > 100_000 {
            self.stats.completions.pop_front();
        }
        if self.settings.performance {
            self.stats
                .execution
                .entry(entry.algorithm.clone())
                .or_default()
                .push(seconds);
            self.stats
                .execution_by_worker
                .entry(from.to_string())
                .or_default()
                .push(seconds);
        }
        let ops = vec![
            Op::AttemptEnded {
                attempt_id,
                outcome: "completed".into(),
                error: None,
                at,
            },
            Op::Ended {
                task_id: task_id.to_string(),
                status: "completed",
                result: Some(json),
                error: None,
                worker_id: Some(from.to_string()),
                at,
            },
        ];
        let store = self.store.clone();
        let proxy = self.proxies.get(from).cloned();
        let results = self.results.clone();
        let task_id = task_id.to_string();
        actix_rt::spawn(async move {
            match store.apply(ops).await {
                Ok(_) => {
                    results.do_send(RecordResult { result });
                    if let Some(p) = proxy {
                        p.do_send(AckResult { task_id });
                    }
                }
                Err(e) => tracing::error!(task = %task_id, error = %e, "cannot record a result"),
            }
        });
    }

    fn throughput(&self, window: Duration) -> f64 {
        let since = Instant::now().checked_sub(window);
        let n = self
            .stats
            .completions
            .iter()
            .rev()
            .take_while(|t| since.is_none_or(|s| **t >= s))
            .count();
        n as f64
            / window
                .as_secs_f64()
                .min(self.started.elapsed().as_secs_f64())
                .max(1e-3)
    }

    fn counts(&self) -> QueueCounts {
        let mut by_kernel = BTreeMap::new();
        let mut by_priority = [0usize; 3];
        for (k, q) in &self.queues {
            by_kernel.insert(k.to_string(), q.ready.len());
            for (p, _) in q.ready.keys() {
                by_priority[(*p as usize).min(2)] += 1;
            }
        }
        QueueCounts {
            ready_in_memory: self.queues.values().map(|q| q.ready.len()).sum(),
            ready_by_kernel: by_kernel,
            ready_by_priority: by_priority,
            backing_off: self.delayed.len(),
            running: self.running.len() + self.placing.len(),
            more_in_database: self.queues.values().any(|q| q.more_in_db),
        }
    }
}

/// A number in [0, 1) for jitter; quality does not matter here.
fn pseudo_random() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

impl Actor for TaskQueue {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.settings.sweep_interval, |act, ctx| {
            act.blocked.clear();
            act.promote_due(ctx);
        });
    }
}

/// Sent by FileWatcher and `POST /tasks`: queue a validated batch, all or
/// nothing. Answers after the commit.
#[derive(Message)]
#[rtype(result = "Result<Submitted, SubmitError>")]
pub struct SubmitBatch {
    pub tasks: Vec<Task>,
    pub ingest: Option<Ingest>,
    /// File name, or "api".
    pub source: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    Queued {
        count: usize,
    },
    /// The same file was ingested before a crash and never moved.
    AlreadyIngested,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SubmitError {
    #[error("{} task id{} already known: {}", .0.len(), if .0.len() == 1 { " is" } else { "s are" }, .0.iter().take(20).cloned().collect::<Vec<_>>().join(", "))]
    Duplicates(Vec<String>),
    #[error("{0}")]
    Store(String),
}

impl Handler<SubmitBatch> for TaskQueue {
    type Result = ResponseActFuture<Self, Result<Submitted, SubmitError>>;

    fn handle(&mut self, msg: SubmitBatch, _: &mut Self::Context) -> Self::Result {
        let new: Vec<NewTask> = msg
            .tasks
            .iter()
            .map(|t| NewTask {
                task_id: t.task_id.to_string(),
                priority: t.priority.rank(),
                algorithm: t.algorithm.clone(),
                kernel: t.work.kernel().to_string(),
                body: t.to_json().to_string(),
            })
            .collect();
        let op = Op::Insert {
            tasks: new.clone(),
            ingest: msg.ingest,
            source: msg.source,
        };
        Box::pin(
            self.store
                .apply(vec![op])
                .into_actor(self)
                .map(move |reply, act, ctx| {
                    let reply = reply.map_err(|e| SubmitError::Store(e.to_string()))?;
                    match reply.into_iter().next() {
                        Some(Reply::Inserted { seqs }) => {
                            let now = store::now();
                            let count = new.len();
                            for (t, seq) in new.into_iter().zip(seqs) {
                                let Some(kernel) = resolve_kernel(&t.kernel) else {
                                    continue;
                                };
                                act.enqueue(Entry {
                                    seq,
                                    task_id: t.task_id,
                                    priority: t.priority,
                                    kernel,
                                    algorithm: t.algorithm,
                                    body: Arc::from(t.body),
                                    attempts: 0,
                                    created_at: now,
                                    last_error: None,
                                });
                            }
                            act.stats.submitted += count as u64;
                            act.blocked.clear();
                            act.try_dispatch(ctx);
                            Ok(Submitted::Queued { count })
                        }
                        Some(Reply::Duplicates(d)) => Err(SubmitError::Duplicates(d)),
                        Some(Reply::AlreadyIngested { .. }) => Ok(Submitted::AlreadyIngested),
                        _ => Err(SubmitError::Store("unexpected answer from the database".into())),
                    }
                }),
        )
    }
}

/// Sent by the LoadBalancer when a worker has room again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CapacityAvailable;

impl Handler<CapacityAvailable> for TaskQueue {
    type Result = ();
    fn handle(&mut self, _: CapacityAvailable, ctx: &mut Self::Context) {
        self.blocked.clear();
        self.try_dispatch(ctx);
    }
}

/// How an attempt ended, as a WorkerProxy saw it.
#[derive(Debug)]
pub enum OutcomeKind {
    /// The worker's result (completed, failed or cancelled there).
    Result(Box<TaskResult>),
    /// The attempt failed without a usable result.
    Failed(String),
    /// The worker was lost while running it.
    Lost(String),
    /// Nothing ran (429, 503, no connection): not an attempt.
    Refused(String),
    TimedOut(String),
}

/// Sent by a WorkerProxy for every attempt it was given (or adopted).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct AttemptOutcome {
    pub task_id: String,
    pub attempt_id: u64,
    pub worker_id: WorkerId,
    pub kind: OutcomeKind,
}

impl Handler<AttemptOutcome> for TaskQueue {
    type Result = ();

    fn handle(&mut self, msg: AttemptOutcome, ctx: &mut Self::Context) {
        let AttemptOutcome {
            task_id,
            attempt_id,
            worker_id,
            kind,
        } = msg;
        let live = self.live.get(&task_id).copied();
        let current = self.running.get(&task_id).map(|r| r.attempt_id);
        let is_current = current == Some(attempt_id) && !self.cancelling.contains(&task_id);

        if let OutcomeKind::Result(result) = kind {
            if result.result.status == crate::model::RunStatus::Completed {
                if live.is_some() && !self.cancelling.contains(&task_id) {
                    if !is_current {
                        tracing::info!(task = %task_id, attempt_id, "result of an earlier attempt accepted");
                    }
                    self.complete(&task_id, attempt_id, &worker_id, *result);
                } else {
                    self.stats.late_results_ignored += 1;
                    tracing::info!(task = %task_id, attempt_id, worker = %worker_id,
                        "result for a task that already ended: ignored");
                    if let Some(p) = self.proxies.get(&worker_id) {
                        p.do_send(AckResult { task_id });
                    }
                }
                self.try_dispatch(ctx);
                return;
            }
            if !is_current {
                return;
            }
            let (label, error) = if result.result.status == crate::model::RunStatus::Cancelled {
                (
                    "lost",
                    format!("cancelled on worker {worker_id} (it was shutting down?)"),
                )
            } else {
                (
                    "failed",
                    result
                        .result
                        .error
                        .clone()
                        .unwrap_or_else(|| result.result.output.clone()),
                )
            };
            if let Some(p) = self.proxies.get(&worker_id) {
                p.do_send(AckResult {
                    task_id: task_id.clone(),
                });
            }
            let r = self.running.remove(&task_id).expect("current attempt");
            self.live.remove(&task_id);
            self.lb.do_send(Release {
                worker_id: r.worker.clone(),
                ended: if label == "failed" {
                    Ended::Failed
                } else {
                    Ended::Nothing
                },
            });
            if label == "lost" {
                self.stats.lost_attempts += 1;
            }
            self.retry_or_fail(r.entry, attempt_id, label, error, ctx);
            self.try_dispatch(ctx);
            return;
        }
        if !is_current {
            return;
        }
        let r = self.running.remove(&task_id).expect("current attempt");
        self.live.remove(&task_id);
        match kind {
            OutcomeKind::Refused(why) => {
                self.stats.refused_attempts += 1;
                self.lb.do_send(Release {
                    worker_id: r.worker.clone(),
                    ended: Ended::Nothing,
                });
                let mut entry = r.entry;
                entry.attempts = entry.attempts.saturating_sub(1);
                self.store.submit(vec![
                    Op::AttemptEnded {
                        attempt_id,
                        outcome: "refused".into(),
                        error: Some(format!("{why} (not counted as an attempt)")),
                        at: store::now(),
                    },
                    Op::Requeue {
                        task_id: task_id.clone(),
                        attempts: entry.attempts,
                        next_at: None,
                        error: entry.last_error.clone(),
                    },
                ]);
                self.live.insert(task_id, Place::Ready);
                self.queues
                    .entry(entry.kernel)
                    .or_default()
                    .ready
                    .insert(entry.key(), entry);
            }
            OutcomeKind::Failed(error) | OutcomeKind::TimedOut(error) => {
                self.lb.do_send(Release {
                    worker_id: r.worker.clone(),
                    ended: Ended::Failed,
                });
                self.retry_or_fail(r.entry, attempt_id, "failed", error, ctx);
            }
            OutcomeKind::Lost(error) => {
                self.stats.lost_attempts += 1;
                self.lb.do_send(Release {
                    worker_id: r.worker.clone(),
                    ended: Ended::Nothing,
                });
                self.retry_or_fail(r.entry, attempt_id, "lost", error, ctx);
            }
            OutcomeKind::Result(_) => unreachable!("handled above"),
        }
        self.try_dispatch(ctx);
    }
}

/// Sent by `DELETE /tasks/{id}`: cancel a queued or running task. Durable
/// before it answers.
#[derive(Message)]
#[rtype(result = "Result<CancelOutcome, String>")]
pub struct CancelTask {
    pub task_id: String,
}

impl Handler<CancelTask> for TaskQueue {
    type Result = ResponseActFuture<Self, Result<CancelOutcome, String>>;

    fn handle(&mut self, msg: CancelTask, _: &mut Self::Context) -> Self::Result {
        let task_id = msg.task_id;
        self.cancelling.insert(task_id.clone());
        // a queued task leaves the queue at once, so it can never start
        let parked = match self.live.get(&task_id) {
            Some(Place::Ready) | Some(Place::Delayed(_)) => self.take_live(&task_id).map(|(e, _)| e),
            _ => None,
        };
        if self.queues.values().any(|q| q.paging) {
            self.cancelled_while_paging.insert(task_id.clone());
        }
        let ops = vec![Op::Cancel {
            task_id: task_id.clone(),
        }];
        Box::pin(
            self.store
                .apply(ops)
                .into_actor(self)
                .map(move |reply, act, ctx| {
                    act.cancelling.remove(&task_id);
                    let outcome = match reply.map_err(|e| e.to_string())?.pop() {
                        Some(Reply::Cancel(c)) => c,
                        _ => return Err("unexpected answer from the database".into()),
                    };
                    match &outcome {
                        CancelOutcome::Cancelled { .. } => {
                            act.stats.cancelled += 1;
                            if let Some((_, Some(r))) = act.take_live(&task_id) {
                                act.lb.do_send(Release {
                                    worker_id: r.worker.clone(),
                                    ended: Ended::Nothing,
                                });
                                r.proxy.do_send(CancelOnWorker {
                                    task_id: task_id.clone(),
                                });
                            }
                            tracing::info!(task = %task_id, "task cancelled");
                        }
                        _ => {
                            // not cancellable: put back what was taken out
                            if let Some(e) = parked {
                                act.live.insert(e.task_id.clone(), Place::Ready);
                                act.queues.entry(e.kernel).or_default().ready.insert(e.key(), e);
                            }
                        }
                    }
                    act.try_dispatch(ctx);
                    Ok(outcome)
                }),
        )
    }
}

/// Sent by `POST /tasks/{id}/retry`: a failed or cancelled task back to
/// the queue.
#[derive(Message)]
#[rtype(result = "Result<RetryOutcome, String>")]
pub struct RetryTask {
    pub task_id: String,
}

impl Handler<RetryTask> for TaskQueue {
    type Result = ResponseActFuture<Self, Result<RetryOutcome, String>>;

    fn handle(&mut self, msg: RetryTask, _: &mut Self::Context) -> Self::Result {
        let ops = vec![Op::Retry { task_id: msg.task_id }];
        Box::pin(self.store.apply(ops).into_actor(self).map(|reply, act, ctx| {
            let outcome = match reply.map_err(|e| e.to_string())?.pop() {
                Some(Reply::Retry(r)) => r,
                _ => return Err("unexpected answer from the database".into()),
            };
            if let RetryOutcome::Queued { row } = &outcome {
                if let Some(entry) = Entry::from_row(row.clone()) {
                    act.enqueue(entry);
                    act.blocked.clear();
                    act.try_dispatch(ctx);
                }
            }
            Ok(outcome)
        }))
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
    pub task_id: String,
    pub kernel: String,
}

impl Handler<WhyWaiting> for TaskQueue {
    type Result = ResponseActFuture<Self, Option<Waiting>>;

    fn handle(&mut self, msg: WhyWaiting, _: &mut Self::Context) -> Self::Result {
        let place = self.live.get(&msg.task_id).copied();
        let delayed_error = self
            .delayed
            .values()
            .find(|e| e.task_id == msg.task_id)
            .and_then(|e| e.last_error.clone());
        let ahead = self
            .queues
            .values()
            .flat_map(|q| q.ready.values())
            .position(|e| e.task_id == msg.task_id);
        let lb = self.lb.clone();
        Box::pin(
            async move {
                match place {
                    Some(Place::Delayed(until)) => Some(Waiting {
                        reason: format!("backing off after a failed attempt until {}", store::iso(until)),
                        workers: None,
                        retry_at: Some(store::iso(until)),
                        last_error: delayed_error,
                    }),
                    Some(Place::Placing) | Some(Place::Running) => Some(Waiting {
                        reason: "being dispatched".into(),
                        workers: None,
                        retry_at: None,
                        last_error: None,
                    }),
                    _ => {
                        let explanation = lb.send(Explain { kernel: msg.kernel }).await.ok()?;
                        let reason = match (place, ahead) {
                            (Some(Place::Ready), Some(n)) if n > 0 => {
                                format!(
                                    "{}; {n} task{} ahead of it",
                                    explanation.summary,
                                    if n == 1 { "" } else { "s" }
                                )
                            }
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

/// Sent by the API and the stats writer: live counts and performance.
#[derive(Message)]
#[rtype(result = "Value")]
pub struct QueueStats;

impl Handler<QueueStats> for TaskQueue {
    type Result = MessageResult<QueueStats>;
    fn handle(&mut self, _: QueueStats, _: &mut Self::Context) -> Self::Result {
        let s = &self.stats;
        let summarize = |m: &HashMap<String, Samples>| -> Value {
            let mut names: Vec<&String> = m.keys().collect();
            names.sort();
            Value::Object(names.into_iter().map(|k| (k.clone(), m[k].summary())).collect())
        };
        MessageResult(json!({
            "uptime_seconds": self.started.elapsed().as_secs_f64(),
            "since_start": {
                "submitted": s.submitted,
                "completed": s.completed,
                "failed": s.failed,
                "cancelled": s.cancelled,
                "retries": s.retried,
                "lost_attempts": s.lost_attempts,
                "refused_attempts": s.refused_attempts,
                "late_results_ignored": s.late_results_ignored,
            },
            "queue": self.counts(),
            "throughput": {
                "tasks_per_second_10s": self.throughput(Duration::from_secs(10)),
                "tasks_per_second_60s": self.throughput(Duration::from_secs(60)),
                "tasks_per_second_overall": s.completed as f64 / self.started.elapsed().as_secs_f64().max(1e-3),
            },
            "performance_monitoring": self.settings.performance,
            "queue_wait_seconds": summarize(&s.queue_wait),
            "execution_time_seconds": summarize(&s.execution),
            "execution_time_by_worker_seconds": summarize(&s.execution_by_worker),
        }))
    }
}

/// Sent at start-up with what the database held.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Recover {
    /// Tasks that were running: (task_id, attempt_id, worker_id, row).
    pub running: Vec<(String, Option<u64>, Option<String>, QueuedRow)>,
    pub queued_kernels: Vec<String>,
}

impl Handler<Recover> for TaskQueue {
    type Result = ();

    fn handle(&mut self, msg: Recover, ctx: &mut Self::Context) {
        for (task_id, attempt_id, worker, row) in msg.running {
            let Some(entry) = Entry::from_row(row) else {
                continue;
            };
            let worker: Option<WorkerId> = worker.map(|w| WorkerId::new(w.as_str()));
            let proxy = worker.as_ref().and_then(|w| self.proxies.get(w)).cloned();
            match (attempt_id, worker, proxy) {
                (Some(attempt_id), Some(worker), Some(proxy)) => {
                    // adopted: its worker is asked for the result
                    tracing::info!(task = %task_id, %worker, attempt_id, "adopting a task that was running before the restart");
                    proxy.do_send(Adopt {
                        task_id: task_id.clone(),
                        attempt_id,
                    });
                    self.lb.do_send(Reserve {
                        worker_id: worker.clone(),
                    });
                    self.live.insert(task_id.clone(), Place::Running);
                    self.running.insert(
                        task_id,
                        Running {
                            entry,
                            attempt_id,
                            worker,
                            proxy,
                        },
                    );
                }
                _ => {
                    tracing::warn!(task = %task_id, "running before the restart on an unknown worker: queued again");
                    self.store.submit(vec![Op::Requeue {
                        task_id: task_id.clone(),
                        attempts: entry.attempts,
                        next_at: None,
                        error: Some("its worker is no longer configured".into()),
                    }]);
                    self.live.insert(task_id, Place::Ready);
                    self.queues
                        .entry(entry.kernel)
                        .or_default()
                        .ready
                        .insert(entry.key(), entry);
                }
            }
        }
        for kernel in msg.queued_kernels {
            if let Some(k) = resolve_kernel(&kernel) {
                let kq = self.queues.entry(k).or_default();
                kq.more_in_db = true;
                kq.frontier = None;
            }
        }
        self.try_dispatch(ctx);
    }
}

/// Sent by `orquesta run`: how many tasks have not ended.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct LiveCount;

impl Handler<LiveCount> for TaskQueue {
    type Result = usize;
    fn handle(&mut self, _: LiveCount, _: &mut Self::Context) -> usize {
        let in_db = self.queues.values().any(|q| q.more_in_db);
        self.live.len() + usize::from(in_db)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::actors::load_balancer::Wire;
    use crate::config::Balancing;
    use crate::model::Validator;

    fn tasks(ids: &[(&str, &str)]) -> Vec<Task> {
        let v = Validator {
            limits: crate::sim::Limits::default(),
            test_kernels: false,
            algorithms: None,
        };
        ids.iter()
            .map(|(id, priority)| {
                v.task(
                    &json!({"task_id": id, "algorithm": "python", "priority": priority,
                            "parameters": {"num_particles": 100, "num_steps": 5, "seed": 1}}),
                    "",
                )
                .unwrap()
            })
            .collect()
    }

    /// A queue with no workers: everything stays queued, so its state
    /// machine can be driven message by message.
    #[test]
    fn the_state_machine_without_workers() {
        let dir = tempfile::tempdir().unwrap();
        actix_rt::System::new().block_on(async {
            let store = Store::start(store::open(&dir.path().join("q.db"), false).unwrap());
            let lb = LoadBalancer::new(&[], Balancing::RoundRobin).start();
            let results = ResultsStore::new(store.clone(), dir.path(), dir.path(), Duration::from_secs(60), "round_robin").start();
            let settings = QueueSettings {
                max_retries: 3,
                retry_base: Duration::from_millis(10),
                retry_max: Duration::from_millis(100),
                sweep_interval: Duration::from_secs(60),
                performance: true,
            };
            let queue = TaskQueue::new(store, lb.clone(), results, HashMap::new(), settings, 1).start();
            lb.send(Wire {
                queue: queue.clone().recipient(),
                proxies: Vec::new(),
            })
            .await
            .unwrap();
            let submit = |t: Vec<Task>| {
                queue.send(SubmitBatch {
                    tasks: t,
                    ingest: None,
                    source: "test".into(),
                })
            };
            let r = submit(tasks(&[("a", "low"), ("b", "high"), ("c", "medium")])).await.unwrap();
            assert_eq!(r, Ok(Submitted::Queued { count: 3 }));
            let dup = submit(tasks(&[("d", "low"), ("b", "low")])).await.unwrap();
            assert_eq!(dup, Err(SubmitError::Duplicates(vec!["b".into()])));
            assert_eq!(queue.send(LiveCount).await.unwrap(), 3, "d was not queued");

            let stats = queue.send(QueueStats).await.unwrap();
            assert_eq!(stats["queue"]["ready_by_priority"], json!([1, 1, 1]));
            assert_eq!(stats["since_start"]["submitted"], 3);

            let why = queue
                .send(WhyWaiting {
                    task_id: "a".into(),
                    kernel: "reference".into(),
                })
                .await
                .unwrap()
                .unwrap();
            assert!(why.reason.contains("no configured worker runs reference"), "{}", why.reason);
            assert!(why.reason.contains("2 tasks ahead"), "{}", why.reason);

            let cancel = |id: &str| queue.send(CancelTask { task_id: id.into() });
            assert!(matches!(cancel("b").await.unwrap(), Ok(CancelOutcome::Cancelled { was, .. }) if was == "queued"));
            assert_eq!(queue.send(LiveCount).await.unwrap(), 2);
            assert!(matches!(cancel("b").await.unwrap(), Ok(CancelOutcome::AlreadyEnded { .. })));
            assert_eq!(cancel("zz").await.unwrap(), Ok(CancelOutcome::NotFound));

            let retry = queue.send(RetryTask { task_id: "b".into() }).await.unwrap();
            assert!(matches!(retry, Ok(RetryOutcome::Queued { .. })));
            assert_eq!(queue.send(LiveCount).await.unwrap(), 3);
            let again = queue.send(RetryTask { task_id: "a".into() }).await.unwrap();
            assert!(matches!(again, Ok(RetryOutcome::NotRetryable { status }) if status == "queued"));

            // a result for a task nobody ran is ignored and counted
            queue
                .send(AttemptOutcome {
                    task_id: "gone".into(),
                    attempt_id: 7,
                    worker_id: crate::model::WorkerId::new("w"),
                    kind: OutcomeKind::Failed("x".into()),
                })
                .await
                .unwrap();
            assert_eq!(queue.send(LiveCount).await.unwrap(), 3);
        });
    }

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        let dir = tempfile::tempdir().unwrap();
        actix_rt::System::new().block_on(async {
            let store = Store::start(store::open(&dir.path().join("q.db"), false).unwrap());
            let lb = LoadBalancer::new(&[], Balancing::RoundRobin).start();
            let results = ResultsStore::new(
                store.clone(),
                dir.path(),
                dir.path(),
                Duration::from_secs(60),
                "x",
            )
            .start();
            let settings = QueueSettings {
                max_retries: 3,
                retry_base: Duration::from_millis(500),
                retry_max: Duration::from_secs(30),
                sweep_interval: Duration::from_secs(60),
                performance: false,
            };
            let q = TaskQueue::new(store, lb, results, HashMap::new(), settings, 1);
            for (attempts, base) in [(1u32, 0.5f64), (2, 1.0), (3, 2.0), (10, 30.0), (40, 30.0)] {
                let d = q.backoff(attempts).as_secs_f64();
                assert!(
                    d >= base * 0.8 - 1e-9 && d <= base * 1.2 + 1e-9,
                    "attempt {attempts}: {d}"
                );
            }
        });
    }
}
