//! LoadBalancer: knows every worker's state (from its WorkerProxy) and load
//! (from TaskQueue's assignments and releases), and places tasks: only on a
//! worker that is up, has a free slot and runs the task's kernel, chosen
//! among those by the [`Strategy`] of `LOAD_BALANCING_ALGORITHM`. A task
//! whose attempt failed on a worker avoids it while another capable
//! worker exists ([`ToPlace::avoid`]). Workers come and go while running
//! (config edits, joins, drains): see `membership.rs`.
//!
//! Every change to a worker's row is published to a [`WorkerBoard`], a
//! concurrent map the API reads for `GET /workers` without a round trip
//! through this actor's mailbox (busy with placements under load).
//!
//! For `shortest_expected_finish` it also predicts how long each task
//! takes on each worker, from speeds learned from results
//! (`expected.rs`), and places each batch largest first within a priority.

mod board;
mod expected;
mod membership;
mod placement;
#[cfg(test)]
mod sef_tests;
mod slot;
mod strategy;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use serde::Serialize;

pub use self::board::{WorkerBoard, WorkerInfo, WorkerState};
pub use self::expected::{largest_first, prior_speed, Expected, TaskSize, SAMPLES};
pub use self::membership::{
    ApplyConfig, DrainWorker, Join, JoinRefused, JoinedMember, Proxies, RemoveWorker, ResumeWorker,
};
pub use self::placement::place_batch;
use self::slot::{Drain, Slot};
pub use self::strategy::{strategy, LeastLoaded, Load, RoundRobin, ShortestExpectedFinish, Strategy};

use super::task_queue::{AttemptOutcome, AttemptsStarted, CapacityAvailable};
use super::worker_proxy::{ProxySettings, WorkerProxy};
pub use crate::model::WorkerId;
use crate::model::{KernelName, Priority};
use crate::orchestrator::config::{Balancing, WorkerEntry};
use crate::orchestrator::store::Store;
use crate::protocol::MemberSource;

/// What the LoadBalancer needs to start a proxy for a worker that appears
/// while running (a config edit, a join); given by [`Wire`].
struct ProxyMaker {
    settings: ProxySettings,
    outcomes: Recipient<AttemptOutcome>,
    started: Recipient<AttemptsStarted>,
}

pub struct LoadBalancer {
    /// Configuration order, joined workers after. Indexes into it are only
    /// held within one message: a removal shifts them (`by_id` is rebuilt).
    workers: Vec<Slot>,
    by_id: HashMap<WorkerId, usize>,
    strategy: Box<dyn Strategy>,
    queue: Option<Recipient<CapacityAvailable>>,
    maker: Option<ProxyMaker>,
    /// Where joined members are kept across restarts.
    store: Option<Store>,
    /// Joined workers drained on request and removed, by process instance:
    /// the same process joining again (it re-joins every few seconds)
    /// comes back drained, so a drain holds until resumed or the worker
    /// restarts.
    drained_members: HashMap<WorkerId, String>,
    board: WorkerBoard,
    /// Learned speeds and what each worker holds, for strategies that
    /// [`Strategy::uses_estimates`].
    expected: Expected,
    /// The clock of `expected`: seconds since this instant.
    epoch: Instant,
}

impl LoadBalancer {
    pub fn new(entries: &[WorkerEntry], balancing: Balancing) -> Self {
        Self::with_members(entries, &[], balancing)
    }

    /// Configured workers, then joined ones remembered from before a
    /// restart (a configured id wins over a joined one).
    pub fn with_members(entries: &[WorkerEntry], joined: &[JoinedMember], balancing: Balancing) -> Self {
        let mut workers: Vec<Slot> = entries
            .iter()
            .map(|e| Slot::new(e.clone(), MemberSource::Config, None))
            .collect();
        for m in joined {
            if !workers.iter().any(|w| w.entry.id == m.entry.id) {
                workers.push(Slot::new(
                    m.entry.clone(),
                    MemberSource::Joined,
                    Some(m.instance.clone()),
                ));
            }
        }
        let board = WorkerBoard::new(workers.iter().map(|w| w.id.clone()).collect());
        let mut lb = Self {
            workers,
            by_id: HashMap::new(),
            strategy: strategy(balancing),
            queue: None,
            maker: None,
            store: None,
            drained_members: HashMap::new(),
            board,
            expected: Expected::new(),
            epoch: Instant::now(),
        };
        lb.reindex();
        for i in 0..lb.workers.len() {
            lb.changed(i);
        }
        lb
    }

    /// Every worker's entry (configured and joined), for starting proxies.
    pub fn entries(&self) -> Vec<WorkerEntry> {
        self.workers.iter().map(|w| w.entry.clone()).collect()
    }

    /// The live snapshot of every worker, for the API (take it before
    /// starting the actor).
    pub fn board(&self) -> WorkerBoard {
        self.board.clone()
    }

    /// Rebuilds `by_id` and the board's order after workers were added,
    /// removed or reordered.
    fn reindex(&mut self) {
        self.by_id = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| (w.id.clone(), i))
            .collect();
        self.board
            .reorder(self.workers.iter().map(|w| w.id.clone()).collect());
    }

    /// Publishes worker `i`'s row after a change.
    fn changed(&self, i: usize) {
        let w = &self.workers[i];
        self.board.publish(&w.id, w.info());
    }

    fn loads(&self) -> Vec<Load> {
        self.workers
            .iter()
            .map(|w| Load {
                in_flight: w.in_flight,
                capacity: w.capacity.max(1),
                expected_finish: 0.0,
            })
            .collect()
    }

    fn notify_room(&self) {
        if let Some(q) = &self.queue {
            q.do_send(CapacityAvailable);
        }
    }

    /// Why a task of `kernel` cannot be placed now, and per worker why not.
    fn explain(&self, kernel: &str) -> Explanation {
        let now = Instant::now();
        let mut per_worker = Vec::new();
        let (mut capable, mut capable_up, mut room) = (0, 0, 0);
        for w in &self.workers {
            let why = if !w.kernels.iter().any(|k| *k == kernel) {
                let runs: Vec<&str> = w.kernels.iter().map(|k| k.as_str()).collect();
                format!("does not run {kernel} (runs {})", runs.join(", "))
            } else {
                capable += 1;
                if !w.takes_tasks() {
                    format!("is {}", w.state_text())
                } else {
                    capable_up += 1;
                    if w.in_flight >= w.window() {
                        format!(
                            "is full ({}/{} tasks running, {} more sent ahead)",
                            w.running(),
                            w.capacity,
                            w.in_flight - w.running()
                        )
                    } else if w.cooldown_until.is_some_and(|t| t > now) {
                        "said it was full (429); waiting before sending more".to_string()
                    } else {
                        room += 1;
                        format!("has room ({}/{} tasks running)", w.running(), w.capacity)
                    }
                }
            };
            per_worker.push(WorkerReason {
                worker_id: w.id.clone(),
                reason: why,
            });
        }
        let summary = if capable == 0 {
            format!(
                "no configured worker runs {kernel}; add it to a worker's algorithms in config_workers.json, or start one with --join"
            )
        } else if capable_up == 0 {
            format!("every worker that runs {kernel} is down or draining")
        } else if room == 0 {
            format!("every worker that runs {kernel} is busy")
        } else {
            "a worker has room; the task is about to be dispatched".into()
        };
        Explanation { summary, per_worker }
    }
}

impl Actor for LoadBalancer {
    type Context = Context<Self>;
}

/// Sent once at start-up: who to tell when room appears, each worker's
/// proxy, and what a proxy started later needs.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wire {
    pub queue: Recipient<CapacityAvailable>,
    pub proxies: Vec<(String, Addr<WorkerProxy>)>,
    pub outcomes: Recipient<AttemptOutcome>,
    pub started: Recipient<AttemptsStarted>,
    pub settings: ProxySettings,
    pub store: Option<Store>,
}

impl Handler<Wire> for LoadBalancer {
    type Result = ();
    fn handle(&mut self, msg: Wire, ctx: &mut Self::Context) {
        self.queue = Some(msg.queue);
        self.maker = Some(ProxyMaker {
            settings: msg.settings,
            outcomes: msg.outcomes,
            started: msg.started,
        });
        self.store = msg.store;
        for (id, proxy) in msg.proxies {
            if let Some(&i) = self.by_id.get(id.as_str()) {
                self.workers[i].proxy = Some(proxy);
            }
        }
        for i in 0..self.workers.len() {
            if self.workers[i].proxy.is_none() {
                self.start_proxy(i, ctx.address());
            }
        }
    }
}

/// Sent by a WorkerProxy when its worker comes up, goes down or reports
/// its own capacity and algorithms.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WorkerUpdate {
    pub worker_id: WorkerId,
    pub state: WorkerState,
    /// Why it is in that state (none when up).
    pub reason: Option<String>,
    pub capacity: usize,
    /// The most tasks it keeps waiting for a slot (`/status` `max_backlog`).
    pub backlog_limit: usize,
    pub kernels: Vec<KernelName>,
    pub heartbeat: Option<SystemTime>,
}

impl Handler<WorkerUpdate> for LoadBalancer {
    type Result = ();
    fn handle(&mut self, msg: WorkerUpdate, _: &mut Self::Context) {
        let Some(&i) = self.by_id.get(&msg.worker_id) else {
            return;
        };
        let w = &mut self.workers[i];
        if msg.state == WorkerState::Unknown {
            // a worker that has never answered says why (connection
            // refused); it never overrides a state already known
            if w.state == WorkerState::Unknown {
                w.state_reason = msg.reason;
                self.changed(i);
            }
            return;
        }
        let was_up = w.up;
        let up = msg.state.is_up();
        w.up = up;
        w.capacity = msg.capacity;
        if up {
            w.backlog_limit = msg.backlog_limit;
        }
        w.kernels = msg.kernels;
        w.state = msg.state;
        w.state_reason = msg.reason;
        if msg.heartbeat.is_some() {
            w.last_heartbeat = msg.heartbeat;
        }
        if !up {
            // its attempts are reported lost by the proxy, one by one
            w.cooldown_until = None;
        }
        if up && !was_up && w.drain.is_none() {
            tracing::info!(worker = %w.id, capacity = w.capacity, kernels = ?w.kernels, "worker up");
            self.notify_room();
        } else if !up && was_up {
            if msg.state == WorkerState::Draining {
                tracing::info!(worker = %w.id, "worker shutting down: no new tasks; its running tasks finish");
            } else {
                tracing::warn!(worker = %w.id, state = %w.state_text(), "worker down");
            }
        }
        self.changed(i);
    }
}

/// Sent by WorkerProxy on each heartbeat: only the time.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Heartbeat {
    pub worker_id: WorkerId,
    pub at: SystemTime,
}

impl Handler<Heartbeat> for LoadBalancer {
    type Result = ();
    fn handle(&mut self, msg: Heartbeat, _: &mut Self::Context) {
        if let Some(&i) = self.by_id.get(&msg.worker_id) {
            self.workers[i].last_heartbeat = Some(msg.at);
            self.changed(i);
        }
    }
}

/// A placement: which worker, through which proxy.
#[derive(Clone)]
pub struct Placement {
    pub worker_id: WorkerId,
    pub proxy: Addr<WorkerProxy>,
}

/// One task to place: its kernel, and the workers its earlier attempts
/// failed on (avoided while another capable worker exists); its priority
/// rank and size (N, steps) for `shortest_expected_finish`.
#[derive(Debug, Clone)]
pub struct ToPlace {
    pub kernel: KernelName,
    pub avoid: Vec<WorkerId>,
    pub priority: Priority,
    pub size: (u64, u64),
}

impl ToPlace {
    pub fn task_size(&self) -> TaskSize {
        TaskSize {
            kernel: self.kernel,
            particles: self.size.0,
            steps: self.size.1,
        }
    }
}

/// Sent by TaskQueue: place these tasks, in this order. Answers one entry
/// per task; a placed task counts as in flight on its worker until
/// [`Release`].
#[derive(Message)]
#[rtype(result = "Vec<Option<Placement>>")]
pub struct Assign {
    pub tasks: Vec<ToPlace>,
}

impl Handler<Assign> for LoadBalancer {
    type Result = MessageResult<Assign>;
    fn handle(&mut self, msg: Assign, _: &mut Self::Context) -> Self::Result {
        let now = Instant::now();
        let workers = &self.workers;
        let capable = |k: usize, i: usize| {
            let w = &workers[i];
            w.proxy.is_some() && w.kernels.contains(&msg.tasks[k].kernel) && w.takes_tasks()
        };
        let avoided = |k: usize, i: usize| msg.tasks[k].avoid.contains(&workers[i].id);
        let room = |i: usize, loads: &[Load]| {
            loads[i].in_flight < workers[i].window() && workers[i].cooldown_until.is_none_or(|t| t <= now)
        };
        // another capable worker: wait for it rather than go back to one
        // that failed the task; only when none exists, go back
        let elsewhere: Vec<bool> = (0..msg.tasks.len())
            .map(|k| (0..workers.len()).any(|i| capable(k, i) && !avoided(k, i)))
            .collect();
        let allowed = |k: usize, i: usize, loads: &[Load]| {
            capable(k, i) && room(i, loads) && !(elsewhere[k] && avoided(k, i))
        };
        let ids: Vec<WorkerId> = workers.iter().map(|w| w.id.clone()).collect();
        let tasks: Vec<(Priority, TaskSize)> =
            msg.tasks.iter().map(|t| (t.priority, t.task_size())).collect();
        let mut loads = self.loads();
        let at = self.epoch.elapsed().as_secs_f64();
        let picks = place_batch(
            self.strategy.as_mut(),
            &mut self.expected,
            &ids,
            &mut loads,
            &tasks,
            at,
            &allowed,
        );
        let mut out = Vec::with_capacity(picks.len());
        for pick in picks {
            out.push(pick.map(|i| {
                let w = &mut self.workers[i];
                w.in_flight += 1;
                let placement = Placement {
                    worker_id: w.id.clone(),
                    proxy: w.proxy.clone().expect("eligible workers have a proxy"),
                };
                self.changed(i);
                placement
            }));
        }
        MessageResult(out)
    }
}

/// How an attempt ended, for the per-worker counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ended {
    Completed {
        seconds: f64,
    },
    Failed,
    /// Not an attempt (refused, cancelled before it ran).
    Nothing,
}

/// Sent by TaskQueue when an attempt placed on `worker_id` ends.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Release {
    pub worker_id: WorkerId,
    pub ended: Ended,
    /// The task's size, when known: what `expected.rs` learns speeds from.
    pub size: Option<TaskSize>,
}

impl Handler<Release> for LoadBalancer {
    type Result = ();
    fn handle(&mut self, msg: Release, ctx: &mut Self::Context) {
        let Some(&i) = self.by_id.get(&msg.worker_id) else {
            return;
        };
        let w = &mut self.workers[i];
        let now = Instant::now();
        // TaskQueue hears of room once a worker's backlog is half spent,
        // not at every release, so the tasks it sends travel together
        let refill = (w.prefetch() / 2).max(1);
        let free = |w: &Slot| w.window().saturating_sub(w.in_flight);
        let was_short = !w.has_room(now) || free(w) < refill;
        w.in_flight = w.in_flight.saturating_sub(1);
        let seconds = match msg.ended {
            Ended::Completed { seconds } => Some(seconds),
            _ => None,
        };
        self.expected.released(&w.id, msg.size, seconds, w.in_flight == 0);
        match msg.ended {
            Ended::Completed { seconds } => {
                w.completed += 1;
                w.busy_secs += seconds;
                w.learn(seconds);
            }
            Ended::Failed => w.failed += 1,
            Ended::Nothing => {}
        }
        if was_short && w.has_room(now) && free(w) >= refill {
            self.notify_room();
        }
        self.changed(i);
        self.settle(i, ctx.address());
    }
}

/// Sent by TaskQueue at start-up for attempts adopted from before a
/// restart: they occupy a slot until released.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reserve {
    pub worker_id: WorkerId,
}

impl Handler<Reserve> for LoadBalancer {
    type Result = ();
    fn handle(&mut self, msg: Reserve, _: &mut Self::Context) {
        if let Some(&i) = self.by_id.get(&msg.worker_id) {
            self.workers[i].in_flight += 1;
            let at = self.epoch.elapsed().as_secs_f64();
            self.expected.placed(&msg.worker_id, None, at);
            self.changed(i);
        }
    }
}

/// Sent by a WorkerProxy when its worker answered 429: no more tasks to it
/// for `retry_after`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WorkerFull {
    pub worker_id: WorkerId,
    pub retry_after: Duration,
}

impl Handler<WorkerFull> for LoadBalancer {
    type Result = ();
    fn handle(&mut self, msg: WorkerFull, ctx: &mut Self::Context) {
        if let Some(&i) = self.by_id.get(&msg.worker_id) {
            self.workers[i].cooldown_until = Some(Instant::now() + msg.retry_after);
            ctx.run_later(msg.retry_after, |act, _| act.notify_room());
        }
    }
}

/// Why a queued task waits.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub summary: String,
    pub per_worker: Vec<WorkerReason>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerReason {
    pub worker_id: WorkerId,
    pub reason: String,
}

/// Sent by the API for a queued task: why is nothing running it?
#[derive(Message)]
#[rtype(result = "Explanation")]
pub struct Explain {
    pub kernel: String,
}

impl Handler<Explain> for LoadBalancer {
    type Result = MessageResult<Explain>;
    fn handle(&mut self, msg: Explain, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.explain(&msg.kernel))
    }
}

/// Sent by the API, the stats writer and `orquesta status`.
#[derive(Message)]
#[rtype(result = "Vec<WorkerInfo>")]
pub struct Workers;

impl Handler<Workers> for LoadBalancer {
    type Result = MessageResult<Workers>;
    fn handle(&mut self, _: Workers, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.workers.iter().map(Slot::info).collect())
    }
}

/// Sent by the API: the name of the strategy in use.
#[derive(Message)]
#[rtype(result = "&'static str")]
pub struct StrategyName;

impl Handler<StrategyName> for LoadBalancer {
    type Result = MessageResult<StrategyName>;
    fn handle(&mut self, _: StrategyName, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.strategy.name())
    }
}
