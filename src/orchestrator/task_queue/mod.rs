//! TaskQueue: the source of truth for every task. Durable through the
//! [`Store`]; in memory through [`LiveTasks`], a pure state machine that
//! this actor feeds with events (a batch committed, a placement, an
//! attempt's outcome, a cancel answered, a backoff over) and whose
//! [`Effects`] it carries out: changes to persist, messages to send.
//!
//! # The states
//! DESIGN.md "Task states". In memory every live task is one entry of one
//! map, whose [`TaskState`] carries the state's data: *ready* (in its
//! kernel's window), *delayed* (backing off after a failed attempt, until
//! when), *sent ahead* (an attempt waiting in a worker's backlog for a
//! slot), *running* (an attempt in a slot), or *parked* while the store
//! decides a cancel. The ready queues and the backoff timetable are
//! indexes of ids, changed only with a state. Ended tasks are only in the
//! database: a result that arrives for one is counted and acknowledged,
//! never recorded twice. What the Prometheus counters and the dashboard
//! see is an effect too ([`Observed`]), told by this actor.
//!
//! # The window
//! A million queued tasks do not live in memory: each kernel keeps at most
//! `WINDOW` ready tasks in queue order (priority, then arrival). When
//! more wait in the database the window remembers its *frontier*, the
//! last key it loaded; a new task sorting after it is left for the next
//! page, read when the window falls to a quarter.
//!
//! # Dispatch
//! Event-driven: new tasks, a finished attempt, a worker with room or an
//! expired backoff dispatch at once; `TASK_DISTRIBUTION_INTERVAL` is only
//! a safety sweep. Placement is part of the core ([`LiveTasks::loads`]):
//! batches of up to `DISPATCH_BATCH` tasks across kernels in priority
//! order are placed by a plain call; a kernel that found no room is
//! *blocked* until a worker has room, so a queue of tasks nobody can run
//! does not spin. Membership (the Membership actor) tells the core of
//! workers as a [`Roster`]; the core publishes each worker's load on the
//! [`WorkerBoard`].
//!
//! Peers are held as recipients of the messages this actor sends
//! ([`Peers`]), so it imports messages, not actors.

mod cancel;
mod dispatch;
mod effects;
mod entry;
#[cfg(test)]
mod file_tests;
mod live;
#[cfg(test)]
mod live_tests;
mod members;
#[cfg(test)]
mod metrics_tests;
mod outcome;
mod queries;
mod results;
#[cfg(test)]
mod size_tests;
mod submit;
mod takeback;
#[cfg(test)]
mod tests;
mod verify;
#[cfg(test)]
mod verify_tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

pub use crate::orchestrator::worker_proxy::{AttemptOutcome, AttemptsStarted, OutcomeKind};
pub use dispatch::Dispatched;
pub use live::{Effects, LiveTasks, Observed, Place, RetryPolicy, SoonerStarts, TaskState};
pub use queries::{LiveCount, QueueCounts, QueueSnapshot, QueueStats, Throughput, Waiting, WhyWaiting};
pub use results::{FailuresPending, RecordResult};
pub use submit::{SubmitBatch, SubmitError, SubmitStaged, Submitted};
pub use verify::MAX_CHECKS;

use super::activity::Activity;
use super::worker_proxy::{AckResult, Adopt, CancelOnWorker, RunAttempt, TakeBack, TakenBack, WorkerSuspect};
use crate::model::{KernelName, TaskId, TaskStatus, WorkerId};
use crate::orchestrator::board::WorkerBoard;
use crate::orchestrator::membership::WorkerIdle;
use crate::orchestrator::metrics::OrchestratorMetrics;
use crate::orchestrator::placement::Loads;
use crate::orchestrator::store::{
    CancelOutcome, Change, RetryOutcome, Store, StoreError, StoredCheck, WasRunning,
};
use crate::util::time::unix_now;
use live::Outbound;

/// Retry and window settings.
#[derive(Debug, Clone, Copy)]
pub struct QueueSettings {
    pub max_retries: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub sweep_interval: Duration,
    pub performance: bool,
    /// `VERIFY_FRACTION` (`verify.rs`).
    pub verify_fraction: f64,
    /// `SOONER_START_*` (`takeback.rs`; `None`: no move to a sooner start).
    pub sooner_starts: Option<SoonerStarts>,
}

/// One worker's proxy, as the messages TaskQueue sends it.
#[derive(Clone)]
pub struct ProxyPeer {
    pub run: Recipient<RunAttempt>,
    pub cancel: Recipient<CancelOnWorker>,
    pub ack: Recipient<AckResult>,
    pub adopt: Recipient<Adopt>,
    pub take_back: Recipient<TakeBack>,
}

impl ProxyPeer {
    pub fn of<A>(addr: &Addr<A>) -> Self
    where
        A: Actor<Context = Context<A>>
            + Handler<RunAttempt>
            + Handler<CancelOnWorker>
            + Handler<AckResult>
            + Handler<Adopt>
            + Handler<TakeBack>,
    {
        Self {
            run: addr.clone().recipient(),
            cancel: addr.clone().recipient(),
            ack: addr.clone().recipient(),
            adopt: addr.clone().recipient(),
            take_back: addr.clone().recipient(),
        }
    }
}

/// Everyone TaskQueue talks to, as the messages it sends them.
pub struct Peers {
    /// Membership: told when a draining worker holds nothing.
    pub idle: Recipient<WorkerIdle>,
    pub results: Recipient<RecordResult>,
    /// Told when a task failed or was cancelled: its record waits for a
    /// `task_failures_*.json`.
    pub failures: Recipient<FailuresPending>,
    /// Membership: told of a worker a verification found wrong.
    pub suspects: Recipient<WorkerSuspect>,
    pub proxies: HashMap<WorkerId, ProxyPeer>,
}

impl Peers {
    /// Membership's and the ResultsStore's recipients, and the proxies.
    pub fn new<L, R>(lb: &Addr<L>, results: &Addr<R>, proxies: HashMap<WorkerId, ProxyPeer>) -> Self
    where
        L: Actor<Context = Context<L>> + Handler<WorkerIdle> + Handler<WorkerSuspect>,
        R: Actor<Context = Context<R>> + Handler<RecordResult> + Handler<FailuresPending>,
    {
        Self {
            idle: lb.clone().recipient(),
            results: results.clone().recipient(),
            failures: results.clone().recipient(),
            suspects: lb.clone().recipient(),
            proxies,
        }
    }
}

pub struct TaskQueue {
    store: Store,
    peers: Peers,
    settings: QueueSettings,
    live: LiveTasks,
    /// Where each worker's load is published for `GET /workers`.
    board: WorkerBoard,
    /// How many tasks the next placement batch offers: the room the last
    /// one found, so that a full cluster is not offered hundreds of tasks
    /// to take back one at a time.
    dispatch_size: usize,
    /// A dispatch is due once the messages already in the mailbox have
    /// been read ([`Self::dispatch_soon`]).
    dispatch_due: bool,
    performance: queries::Performance,
    started: Instant,
    /// `GET /metrics/prometheus`: told what each event observed.
    metrics: Arc<OrchestratorMetrics>,
    /// The dashboard's recent history, told of every ended attempt.
    activity: Arc<Activity>,
}

impl TaskQueue {
    /// `metrics`: shared with the other actors and `GET /metrics/prometheus`.
    /// `activity`: where every ended attempt is also told, for the dashboard.
    /// `loads`: the workers as membership first listed them, and the
    /// strategy; `board`: where their loads are published.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        peers: Peers,
        settings: QueueSettings,
        boot: u64,
        loads: Loads,
        board: WorkerBoard,
        metrics: Arc<OrchestratorMetrics>,
        activity: Arc<Activity>,
    ) -> Self {
        let policy = RetryPolicy {
            max_retries: settings.max_retries,
            base_seconds: settings.retry_base.as_secs_f64(),
            max_seconds: settings.retry_max.as_secs_f64(),
        };
        let mut live = LiveTasks::new(policy, boot, seed());
        live.loads = loads;
        live.verify = live::Verifier::new(settings.verify_fraction);
        live.sooner = settings.sooner_starts;
        for id in live.loads.ids() {
            if let Some(row) = live.loads.row(id) {
                board.publish_load(id, row);
            }
        }
        Self {
            store,
            peers,
            settings,
            live,
            board,
            dispatch_size: dispatch::DISPATCH_BATCH,
            dispatch_due: false,
            performance: Default::default(),
            started: Instant::now(),
            metrics,
            activity,
        }
    }

    /// Carries out what an event asks: persist (one job), send, tell the
    /// observers, schedule the end of backoffs, record a result after its
    /// commit.
    fn apply(&mut self, fx: Effects, ctx: &mut Context<Self>) {
        for o in &fx.observed {
            o.tell(&self.metrics, &self.activity);
        }
        let failed = fx
            .persist
            .iter()
            .any(|c| matches!(c, Change::Ended { status, .. } if *status != TaskStatus::Completed));
        self.store.persist(fx.persist);
        if failed {
            // after the persist: the record is queued before it is claimed
            self.failures_pending();
        }
        for s in fx.send {
            if let Some(unasked) = self.send(s) {
                // no proxy to ask: answered at once, so that the slot held
                // for the task elsewhere is not held for ever
                ctx.notify(unasked);
            }
        }
        for id in &fx.loads_changed {
            if let Some(row) = self.live.loads.row(id) {
                self.board.publish_load(id, row);
            }
        }
        for worker_id in fx.idle {
            self.peers.idle.do_send(WorkerIdle { worker_id });
        }
        for (worker_id, reason) in fx.quarantine {
            self.peers.suspects.do_send(WorkerSuspect { worker_id, reason });
        }
        for result in fx.corrected {
            // after the persist above: the corrected record is committed first
            let drained = self.live.live_count() == 0;
            self.peers.results.do_send(RecordResult { result, drained });
        }
        for due in fx.wake_at {
            let wait = Duration::from_secs_f64((due - unix_now()).max(0.0));
            ctx.run_later(wait, |act, ctx| act.backoff_over(ctx));
        }
        if self.settings.performance {
            for s in fx.samples {
                self.performance.sample(s);
            }
        }
        if let Some(c) = fx.completion {
            self.performance.completed();
            let drained = self.live.live_count() == 0;
            let mut commit =
                self.store
                    .record_result(&c.task_id, c.attempt_id, c.json.clone(), &c.worker, c.at, drained);
            let results = self.peers.results.clone();
            let ack = self.peers.proxies.get(&c.worker).map(|p| p.ack.clone());
            let store = self.store.clone();
            let (task_id, result, attempt_id, json, worker, at) =
                (c.task_id, c.result, c.attempt_id, c.json, c.worker, c.at);
            actix_rt::spawn(async move {
                loop {
                    match commit.await {
                        Ok(()) => {
                            results.do_send(RecordResult { result, drained });
                            if let Some(ack) = ack {
                                ack.do_send(AckResult { task_id });
                            }
                        }
                        // a full disk: the result is kept (the worker holds
                        // it too, unacknowledged) and recorded once there
                        // is room
                        Err(e) if store.fault().full().is_some() => {
                            tracing::warn!(task = %task_id, error = %e, "a result waits for disk space");
                            actix_rt::time::sleep(Duration::from_secs(1)).await;
                            commit =
                                store.record_result(&task_id, attempt_id, json.clone(), &worker, at, drained);
                            continue;
                        }
                        Err(e) => tracing::error!(task = %task_id, error = %e, "cannot record a result"),
                    }
                    break;
                }
            });
        }
    }

    /// A task failed or was cancelled: ResultsStore writes its record.
    fn failures_pending(&self) {
        self.peers.failures.do_send(FailuresPending {
            drained: self.live.live_count() == 0,
        });
    }

    /// Sends one message; answers the take-back to tell the core
    /// if its worker has no proxy to ask.
    fn send(&self, s: Outbound) -> Option<TakenBack> {
        let proxy = |w: &WorkerId| {
            let p = self.peers.proxies.get(w);
            if p.is_none() {
                tracing::warn!(worker = %w, "no proxy for this worker");
            }
            p
        };
        match s {
            Outbound::Run {
                worker,
                task_id,
                attempt_id,
                body,
            } => {
                if let Some(p) = proxy(&worker) {
                    p.run.do_send(RunAttempt {
                        task_id,
                        attempt_id,
                        body,
                    });
                }
            }
            Outbound::CancelOnWorker { worker, task_id } => {
                if let Some(p) = proxy(&worker) {
                    p.cancel.do_send(CancelOnWorker { task_id });
                }
            }
            Outbound::Ack { worker, task_id } => {
                if let Some(p) = self.peers.proxies.get(&worker) {
                    p.ack.do_send(AckResult { task_id });
                }
            }
            Outbound::Adopt {
                worker,
                task_id,
                attempt_id,
            } => {
                if let Some(p) = proxy(&worker) {
                    p.adopt.do_send(Adopt { task_id, attempt_id });
                }
            }
            Outbound::TakeBack {
                worker,
                task_id,
                attempt_id,
            } => match proxy(&worker) {
                Some(p) => p.take_back.do_send(TakeBack { task_id, attempt_id }),
                None => {
                    return Some(TakenBack {
                        worker_id: worker,
                        task_id,
                        attempt_id,
                        outcome: crate::orchestrator::worker_proxy::TakeBackOutcome::NotHere,
                    })
                }
            },
        }
        None
    }

    /// Backoffs ended: their tasks are ready again.
    fn backoff_over(&mut self, ctx: &mut Context<Self>) {
        self.live.backoff_expired(unix_now());
        self.try_dispatch(ctx);
    }
}

/// A seed for the backoff jitter; quality does not matter here.
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

impl Actor for TaskQueue {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.settings.sweep_interval, |act, ctx| {
            act.live.room();
            act.backoff_over(ctx);
            act.metrics.dispatch_swept();
        });
    }
}

/// Why TaskQueue could not answer a cancel or a retry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueueError {
    #[error("{0}")]
    Unavailable(String),
}

impl From<StoreError> for QueueError {
    fn from(e: StoreError) -> Self {
        QueueError::Unavailable(e.to_string())
    }
}

impl Handler<AttemptOutcome> for TaskQueue {
    type Result = ();

    fn handle(&mut self, msg: AttemptOutcome, ctx: &mut Self::Context) {
        let worker = msg.worker_id.clone();
        let fx = self
            .live
            .outcome(&msg.task_id, msg.attempt_id, &worker, msg.kind, unix_now());
        self.apply(fx, ctx);
        self.dispatch_soon(ctx);
        self.metrics.attempt_reported();
    }
}

impl Handler<AttemptsStarted> for TaskQueue {
    type Result = ();

    fn handle(&mut self, msg: AttemptsStarted, ctx: &mut Self::Context) {
        let now = unix_now();
        for (task_id, attempt_id) in msg.attempts {
            let fx = self.live.started(&task_id, attempt_id, now);
            self.apply(fx, ctx);
        }
    }
}

impl Handler<TakenBack> for TaskQueue {
    type Result = ();

    fn handle(&mut self, msg: TakenBack, ctx: &mut Self::Context) {
        let fx = self
            .live
            .took_back(&msg.task_id, msg.attempt_id, msg.outcome, unix_now());
        self.apply(fx, ctx);
        self.dispatch_soon(ctx);
    }
}

/// Sent by `DELETE /tasks/{id}`: cancel a queued or running task. Durable
/// before it answers.
#[derive(Message)]
#[rtype(result = "Result<CancelOutcome, QueueError>")]
pub struct CancelTask {
    pub task_id: TaskId,
}

impl Handler<CancelTask> for TaskQueue {
    type Result = ResponseActFuture<Self, Result<CancelOutcome, QueueError>>;

    fn handle(&mut self, msg: CancelTask, _: &mut Self::Context) -> Self::Result {
        let task_id = msg.task_id;
        self.live.cancel_asked(&task_id);
        Box::pin(
            self.store
                .cancel(&task_id)
                .into_actor(self)
                .map(move |reply, act, ctx| {
                    let fx = act.live.cancel_answered(&task_id, reply.as_ref().ok());
                    if let Ok(CancelOutcome::Cancelled { .. }) = &reply {
                        act.failures_pending();
                    }
                    act.apply(fx, ctx);
                    act.try_dispatch(ctx);
                    Ok(reply?)
                }),
        )
    }
}

/// Sent by `POST /tasks/{id}/retry`: a failed or cancelled task back to
/// the queue.
#[derive(Message)]
#[rtype(result = "Result<RetryOutcome, QueueError>")]
pub struct RetryTask {
    pub task_id: TaskId,
}

impl Handler<RetryTask> for TaskQueue {
    type Result = ResponseActFuture<Self, Result<RetryOutcome, QueueError>>;

    fn handle(&mut self, msg: RetryTask, _: &mut Self::Context) -> Self::Result {
        Box::pin(
            self.store
                .retry(&msg.task_id)
                .into_actor(self)
                .map(|reply, act, ctx| {
                    let outcome = reply?;
                    if let RetryOutcome::Queued { row } = &outcome {
                        act.live.retried(row.clone());
                        act.try_dispatch(ctx);
                    }
                    Ok(outcome)
                }),
        )
    }
}

/// Sent at start-up with what the database held.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Recover {
    pub running: Vec<WasRunning>,
    pub queued_kernels: Vec<KernelName>,
    /// Verifications that were waiting (`verify.rs`).
    pub checks: Vec<StoredCheck>,
}

impl Handler<Recover> for TaskQueue {
    type Result = ();

    fn handle(&mut self, msg: Recover, ctx: &mut Self::Context) {
        let known: std::collections::HashSet<WorkerId> = self
            .live
            .loads
            .ids()
            .filter(|w| self.peers.proxies.contains_key(*w))
            .cloned()
            .collect();
        let fx = self
            .live
            .recovered(msg.running, |w| known.contains(w), &msg.queued_kernels);
        self.live.checks_recovered(msg.checks);
        self.apply(fx, ctx);
        self.try_dispatch(ctx);
    }
}

/// Sent by `POST /workers/{id}/resume` after membership took the worker
/// back: a quarantine (replication, `verify.rs`) is lifted in the core too.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LiftQuarantine {
    pub worker_id: WorkerId,
}

impl Handler<LiftQuarantine> for TaskQueue {
    type Result = ();

    fn handle(&mut self, msg: LiftQuarantine, ctx: &mut Self::Context) {
        if self.live.verify.lift(&msg.worker_id) {
            tracing::info!(worker = %msg.worker_id, "quarantine lifted by a resume");
            self.try_dispatch(ctx);
        }
    }
}
