//! WorkerProxy: the orchestrator's side of one worker (DESIGN.md
//! "Orchestrator ↔ worker protocol"). It heartbeats the worker, tells the
//! Membership when it is up or down and what it can run, sends it
//! attempts over a pooled `awc` client, enforces `TASK_TIMEOUT`, and reports
//! every outcome to TaskQueue. Results are acknowledged to the worker only
//! after TaskQueue has committed them.
//!
//! It speaks the wire types of [`crate::protocol`] and holds its
//! peers as [`Recipient`]s of the messages it sends ([`ProxyPeers`]), so
//! it depends on no other actor's type. What an answer means is decided by
//! the pure functions of [`answers`].

mod answers;
mod batch;
mod health;
mod http;
mod pace;
mod plausible;
mod promises;
mod reports;
mod single;
mod takeback;
mod traced;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use awc::error::SendRequestError;
use serde_json::Value;

use self::answers::{agree, check_result};
use self::http::{fetch_json, FetchError};
pub use self::pace::{spaced, HeartbeatPace};
pub use self::reports::{
    AttemptOutcome, AttemptsStarted, Heartbeat, OutcomeKind, TakeBackOutcome, TakenBack, WorkerFull,
    WorkerSuspect, WorkerUpdate,
};
use self::traced::Reported;
use super::board::WorkerState;
use crate::model::{AttemptId, KernelName, TaskId, WorkerId};
use crate::orchestrator::config::WorkerEntry;
use crate::orchestrator::metrics::OrchestratorMetrics;
use crate::protocol::{AckRequest, CurrentAnswer, StatusAnswer};
use crate::util::token::Token;
use crate::util::trace::{self, Stage};

/// Timers and limits of a proxy (runtime settings, so tests shorten them),
/// and the token every request to the worker carries.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// `WORKER_TIMEOUT` as configured (the heartbeat's own, spaced with
    /// the cluster, is [`Self::pace`]'s).
    pub worker_timeout: Duration,
    pub task_timeout: Option<Duration>,
    pub token: Option<Token>,
    /// What `https://` workers are trusted with (`ORQUESTA_TLS_CA`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// `GET /metrics/prometheus` (heartbeat failures).
    pub metrics: Arc<OrchestratorMetrics>,
    /// `MAX_RESULT_BYTES`: a larger result fails its attempt.
    pub max_result_bytes: usize,
    /// `STALL_TIMEOUT`: the least time without a step advance after which
    /// a running task is taken back (none: never).
    pub stall_timeout: Option<Duration>,
    /// The id of this orchestrator's data folder, sent to workers in
    /// [`crate::protocol::ORCHESTRATOR_HEADER`].
    pub orchestrator_id: String,
    /// Checkpoints held, so that a task's next attempt resumes from one.
    pub checkpoints: Option<Arc<crate::orchestrator::store::Checkpoints>>,
    /// The heartbeat interval and timeout in force, spaced as the cluster
    /// grows (`HEARTBEAT_RATE`, [`pace`]).
    pub pace: HeartbeatPace,
}

#[cfg(test)]
impl ProxySettings {
    /// Settings for unit tests: these timers, no token, no TLS, the
    /// default result limit.
    pub fn for_tests(heartbeat_interval: Duration, worker_timeout: Duration) -> Self {
        Self {
            worker_timeout,
            task_timeout: None,
            token: None,
            tls: None,
            metrics: Default::default(),
            max_result_bytes: 16 << 20,
            stall_timeout: None,
            orchestrator_id: "tests".into(),
            checkpoints: None,
            pace: HeartbeatPace::new(heartbeat_interval, worker_timeout, 0, 0),
        }
    }
}

impl ProxySettings {
    /// The step a new attempt of `task_id` resumes from, if a checkpoint
    /// of it is held (recorded as the attempt's start).
    fn checkpoint_step(&self, task_id: &TaskId, attempt_id: AttemptId) -> Option<u64> {
        self.checkpoints.as_ref()?.resume_step(task_id, attempt_id)
    }
}

/// Who a proxy reports to: TaskQueue (outcomes) and the Membership
/// (liveness, capacity, 429s).
#[derive(Clone)]
pub struct ProxyPeers {
    pub outcomes: Recipient<AttemptOutcome>,
    /// Attempts that took a slot on the worker.
    pub started: Recipient<AttemptsStarted>,
    /// Answers to take-backs.
    pub took_back: Recipient<TakenBack>,
    pub heartbeats: Recipient<Heartbeat>,
    pub updates: Recipient<WorkerUpdate>,
    pub full: Recipient<WorkerFull>,
    /// Where a broken promise is told (membership).
    pub suspects: Recipient<WorkerSuspect>,
}

/// An attempt sent to the worker and not yet answered.
struct InFlight {
    attempt_id: AttemptId,
    /// When the worker said it took a slot; none while it waits in the
    /// worker's backlog (or is still on its way there).
    started: Option<Instant>,
    /// When it was handed to this proxy.
    sent: Instant,
    /// The batch request that carries it (0: not sent yet).
    batch: u64,
    /// Order handed to the proxy.
    seq: u64,
}

pub struct WorkerProxy {
    id: WorkerId,
    entry: WorkerEntry,
    base: String,
    settings: ProxySettings,
    client: awc::Client,
    peers: ProxyPeers,
    up: bool,
    /// Last time the worker answered anything.
    last_ok: Instant,
    heartbeat_pending: bool,
    status_pending: bool,
    in_flight: HashMap<TaskId, InFlight>,
    /// Attempts waiting for the next batch request.
    outbox: Vec<RunAttempt>,
    /// A batch request is about to be made from the outbox.
    outbox_flush: bool,
    /// Batches on their way or streaming back: each task's attempt id.
    batches: HashMap<u64, HashMap<TaskId, AttemptId>>,
    next_batch: u64,
    next_seq: u64,
    /// The capacity agreed with the worker when it came up.
    capacity: usize,
    /// Attempts of a cut-off worker already taken as having run (see
    /// `judge_cut_off`); cleared when it is seen running work again.
    judged_running: usize,
    /// Batches whose answer said `end`.
    ended_batches: std::collections::HashSet<u64>,
    /// Attempts seen starting, not yet told to TaskQueue.
    started_out: Vec<(TaskId, AttemptId)>,
    /// The worker takes `POST /execute/batch` (it reports a backlog).
    batching: bool,
    /// Kernels agreed with the worker when it was last up.
    kernels: Vec<KernelName>,
    /// Attempts from before a restart (or refused with 409) whose result
    /// is fetched with `GET /results/{id}`.
    adopted: HashMap<TaskId, AttemptId>,
    acks: Vec<TaskId>,
    /// Whether the worker has ever answered; until then it is reported
    /// at start and every [`NEVER_ANSWERED_EVERY`] (is it started?).
    ever_answered: bool,
    never_answered_logged: Option<Instant>,
    /// The Membership was told that this never-answered worker refuses
    /// connections (once).
    refusal_told: bool,
    /// The worker answered 401 (another token): logged once.
    unauthorized_told: bool,
    /// Whether "serves another orchestrator" was said since it was last up.
    serves_another_told: bool,
    /// The address is not a worker (`GET /status` is 404): logged once.
    not_a_worker_told: bool,
    /// How far each running attempt had got when last asked, for stall
    /// detection (`promises.rs`).
    progress: HashMap<TaskId, promises::Progress>,
    /// A `GET /current` for stall detection is on its way.
    current_pending: bool,
    /// A check of starts over capacity is armed (`promises.rs`).
    capacity_check_armed: bool,
    /// The `TASK_TIMEOUT` check is armed (`batch.rs`).
    timeout_armed: bool,
    /// Removed from the cluster ([`Retire`]): sends nothing more to the
    /// Membership (a successor may hold the same id) and refuses new
    /// attempts until it stops.
    retired: bool,
}

/// Why a worker that answers 401 gets no tasks.
pub const UNAUTHORIZED: &str =
    "the worker refuses this orchestrator's token (401): give both the same ORQUESTA_TOKEN or ORQUESTA_TOKEN_FILE";

/// Why a worker that has work from another orchestrator is down here.
pub const SERVES_ANOTHER: &str = "the worker has work from the orchestrator of another data folder (409 \
    other_orchestrator); it takes this one's once that work is done: give each orchestrator its own workers";

/// How often a configured worker that has never answered is reported.
pub const NEVER_ANSWERED_EVERY: Duration = Duration::from_secs(60);

impl WorkerProxy {
    pub fn new(entry: WorkerEntry, settings: ProxySettings, peers: ProxyPeers) -> Self {
        let mut connector = awc::Connector::new();
        if let Some(tls) = &settings.tls {
            connector = connector.rustls_0_23(Arc::clone(tls));
        }
        let mut client = awc::Client::builder()
            .connector(connector)
            .timeout(settings.worker_timeout)
            .disable_redirects();
        if let Some(token) = &settings.token {
            // every call (heartbeat, execute, results, acks, cancel) carries it
            client = client.add_default_header((awc::http::header::AUTHORIZATION, token.bearer()));
        }
        if !settings.orchestrator_id.is_empty() {
            client = client.add_default_header((
                crate::protocol::ORCHESTRATOR_HEADER,
                settings.orchestrator_id.as_str(),
            ));
        }
        let client = client.finish();
        Self {
            id: WorkerId::new(&entry.id),
            base: entry.base_url(),
            entry,
            settings,
            client,
            peers,
            up: false,
            last_ok: Instant::now(),
            heartbeat_pending: false,
            status_pending: false,
            in_flight: HashMap::new(),
            outbox: Vec::new(),
            outbox_flush: false,
            batches: HashMap::new(),
            next_batch: 1,
            next_seq: 0,
            capacity: 1,
            judged_running: 0,
            ended_batches: Default::default(),
            started_out: Vec::new(),
            batching: false,
            kernels: Vec::new(),
            adopted: HashMap::new(),
            acks: Vec::new(),
            ever_answered: false,
            never_answered_logged: None,
            refusal_told: false,
            unauthorized_told: false,
            serves_another_told: false,
            progress: HashMap::new(),
            current_pending: false,
            capacity_check_armed: false,
            timeout_armed: false,
            not_a_worker_told: false,
            retired: false,
        }
    }

    /// Tells TaskQueue how an attempt ended (and the log, see [`trace`]).
    /// A result over `MAX_RESULT_BYTES` or with impossible physics fails
    /// the attempt here; impossible physics is a lie, so the worker is
    /// also suspect.
    fn report(&self, task_id: TaskId, attempt_id: AttemptId, kind: OutcomeKind) {
        let kind = answers::bounded(kind, self.settings.max_result_bytes);
        let (kind, lie) = plausible::plausible(kind);
        if let Some(why) = lie {
            self.suspect(format!("task {task_id}: {why}"));
        }
        if trace::enabled() {
            trace::note(
                Stage::Ended,
                self.id.as_str(),
                [Reported::of(&task_id, attempt_id, &kind)],
            );
        }
        self.peers.outcomes.do_send(AttemptOutcome {
            task_id,
            attempt_id,
            worker_id: self.id.clone(),
            kind,
        });
    }

    /// Results of adopted attempts: picked up if the worker holds them,
    /// lost if it neither holds nor runs them.
    fn poll_adopted(&mut self, ctx: &mut Context<Self>) {
        if self.adopted.is_empty() {
            return;
        }
        let ids: Vec<(TaskId, AttemptId)> = self
            .adopted
            .iter()
            .take(64)
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let client = self.client.clone();
        let base = self.base.clone();
        async move {
            let current = fetch_json::<CurrentAnswer>(&client, &format!("{base}/current"))
                .await
                .ok();
            let mut found = Vec::new();
            for (task_id, attempt_id) in ids {
                match fetch_json::<Value>(&client, &format!("{base}/results/{task_id}")).await {
                    Ok(v) => found.push((task_id, attempt_id, Some(v))),
                    Err(FetchError::NotFound) if current.as_ref().is_some_and(|c| !c.runs(&task_id)) => {
                        found.push((task_id, attempt_id, None))
                    }
                    Err(_) => {}
                }
            }
            found
        }
        .into_actor(self)
        .map(|found, act, _| {
            for (task_id, attempt_id, result) in found {
                if act.adopted.remove(&task_id).is_none() {
                    continue;
                }
                let kind = match result {
                    Some(v) => check_result(&task_id, attempt_id, v),
                    None => OutcomeKind::Lost("the worker neither runs nor holds it (it restarted?)".into()),
                };
                act.report(task_id, attempt_id, kind);
            }
        })
        .spawn(ctx);
    }

    fn flush_acks(&mut self, ctx: &mut Context<Self>) {
        if !self.up {
            return;
        }
        self.flush_acks_now(ctx);
    }

    /// Acknowledges what is pending even if the worker is not known up.
    fn flush_acks_now(&mut self, ctx: &mut Context<Self>) {
        if self.acks.is_empty() {
            return;
        }
        let ids = std::mem::take(&mut self.acks);
        let request = self
            .client
            .post(format!("{}/results/ack", self.base))
            .send_json(&AckRequest { task_ids: ids });
        async move { request.await.map(|r| r.status().is_success()) }
            .into_actor(self)
            .map(move |res, act, _| {
                if !matches!(res, Ok(true)) {
                    tracing::debug!(worker = %act.id, "acknowledging results failed; the worker frees them later");
                }
            })
            .spawn(ctx);
    }
}

impl Actor for WorkerProxy {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.heartbeat(ctx);
        self.next_heartbeat(ctx);
        if let Some(stall) = self.settings.stall_timeout {
            ctx.run_interval(promises::stall_check_every(stall), |act, ctx| {
                act.check_stalls(ctx)
            });
        }
    }
}

/// Sent by TaskQueue: run this attempt on the worker.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RunAttempt {
    pub task_id: TaskId,
    pub attempt_id: AttemptId,
    /// The task's JSON; `attempt_id` is added to it here.
    pub body: Arc<str>,
}

impl Handler<RunAttempt> for WorkerProxy {
    type Result = ();

    fn handle(&mut self, msg: RunAttempt, ctx: &mut Self::Context) {
        if self.retired {
            let why = format!("worker {} was removed before the attempt was sent", self.id);
            self.report(msg.task_id, msg.attempt_id, OutcomeKind::Refused(why));
            return;
        }
        self.queue_for_batch(msg, ctx);
    }
}

/// Sent by TaskQueue: stop this task on the worker (cancelled by a user,
/// or another attempt already finished it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CancelOnWorker {
    pub task_id: TaskId,
}

impl Handler<CancelOnWorker> for WorkerProxy {
    type Result = ();
    fn handle(&mut self, msg: CancelOnWorker, _: &mut Self::Context) {
        self.in_flight.remove(&msg.task_id);
        self.adopted.remove(&msg.task_id);
        self.acks.push(msg.task_id.clone());
        let request = self
            .client
            .post(format!("{}/cancel/{}", self.base, msg.task_id))
            .send();
        actix_rt::spawn(async move {
            let _ = request.await;
        });
    }
}

/// Sent by TaskQueue: give back this attempt, sent ahead, if the worker
/// has not started it (answered with [`TakenBack`]; see `takeback.rs`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct TakeBack {
    pub task_id: TaskId,
    pub attempt_id: AttemptId,
}

/// Sent by TaskQueue once a result from this worker is committed: the
/// worker may free it (sent in batches with the heartbeat).
#[derive(Message)]
#[rtype(result = "()")]
pub struct AckResult {
    pub task_id: TaskId,
}

impl Handler<AckResult> for WorkerProxy {
    type Result = ();
    fn handle(&mut self, msg: AckResult, ctx: &mut Self::Context) {
        self.acks.push(msg.task_id);
        if self.acks.len() >= 512 {
            self.flush_acks(ctx);
        }
    }
}

/// Sent by TaskQueue at start-up for tasks that were running here before a
/// restart: adopt them (their results are fetched, or they are reported
/// lost).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Adopt {
    pub task_id: TaskId,
    pub attempt_id: AttemptId,
}

impl Handler<Adopt> for WorkerProxy {
    type Result = ();
    fn handle(&mut self, msg: Adopt, _: &mut Self::Context) {
        self.adopted.insert(msg.task_id, msg.attempt_id);
    }
}

/// Sent at shutdown: acknowledge what is pending.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushAcks;

impl Handler<FlushAcks> for WorkerProxy {
    type Result = ();
    fn handle(&mut self, _: FlushAcks, ctx: &mut Self::Context) {
        self.flush_acks(ctx);
    }
}

/// An attempt on this worker, for `GET /workers/{id}`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AttemptHere {
    pub task_id: TaskId,
    pub attempt_id: AttemptId,
    /// Seconds since it took a slot there; none while it waits in the
    /// worker's backlog.
    pub running_seconds: Option<f64>,
    /// Seconds since it was sent.
    pub sent_seconds: f64,
}

/// The attempts on this worker, running or sent ahead.
#[derive(Message)]
#[rtype(result = "Vec<AttemptHere>")]
pub struct InFlightAttempts;

impl Handler<InFlightAttempts> for WorkerProxy {
    type Result = MessageResult<InFlightAttempts>;
    fn handle(&mut self, _: InFlightAttempts, _: &mut Self::Context) -> Self::Result {
        MessageResult(
            self.in_flight
                .iter()
                .map(|(id, f)| AttemptHere {
                    task_id: id.clone(),
                    attempt_id: f.attempt_id,
                    running_seconds: f.started.map(|t| t.elapsed().as_secs_f64()),
                    sent_seconds: f.sent.elapsed().as_secs_f64(),
                })
                .collect(),
        )
    }
}

/// Sent by the Membership when this worker leaves the cluster (removed
/// now, drained, or replaced at a new address). Its running attempts go
/// back to the queue at once as refused (not counted as attempts) and are
/// cancelled on the worker if it still answers; an attempt that reaches
/// it later is refused; it stops after `WORKER_TIMEOUT`, once late
/// answers had their chance. Answers how many attempts went back.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Retire;

impl Handler<Retire> for WorkerProxy {
    type Result = usize;
    fn handle(&mut self, _: Retire, ctx: &mut Self::Context) -> usize {
        self.retired = true;
        let back: Vec<(TaskId, AttemptId)> = std::mem::take(&mut self.in_flight)
            .into_iter()
            .map(|(task_id, f)| (task_id, f.attempt_id))
            .chain(std::mem::take(&mut self.adopted))
            .collect();
        for (task_id, attempt_id) in &back {
            let cancel = self.client.post(format!("{}/cancel/{task_id}", self.base)).send();
            actix_rt::spawn(async move {
                let _ = cancel.await;
            });
            let why = format!("worker {} was removed from the cluster", self.id);
            self.report(task_id.clone(), *attempt_id, OutcomeKind::Refused(why));
        }
        self.flush_acks_now(ctx);
        ctx.run_later(self.settings.worker_timeout, |_, ctx| ctx.stop());
        back.len()
    }
}

/// [`Retire`] for a worker that leaves the cluster for good (removed,
/// drained and gone, expired), sent by the Membership and
/// `DELETE /workers/{id}`: its per-worker Prometheus series go too, in the
/// same turn that stops its checks, so none comes back.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct RetireRemoved;

impl Handler<RetireRemoved> for WorkerProxy {
    type Result = usize;
    fn handle(&mut self, _: RetireRemoved, ctx: &mut Self::Context) -> usize {
        let back = <Self as Handler<Retire>>::handle(self, Retire, ctx);
        self.settings.metrics.forget_worker(&self.id);
        back
    }
}

/// Sent by the Membership when the worker's configured capacity or
/// algorithms changed (same address): agreed again with the worker.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpdateEntry {
    pub entry: WorkerEntry,
}

impl Handler<UpdateEntry> for WorkerProxy {
    type Result = ();
    fn handle(&mut self, msg: UpdateEntry, ctx: &mut Self::Context) {
        self.entry = msg.entry;
        if self.up {
            self.fetch_status(ctx);
        }
    }
}
