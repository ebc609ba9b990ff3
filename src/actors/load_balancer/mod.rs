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

mod board;
mod membership;
mod strategy;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use serde::Serialize;

pub use self::board::{WorkerBoard, WorkerInfo, WorkerState};
pub use self::membership::{
    ApplyConfig, DrainWorker, Join, JoinRefused, JoinedMember, Proxies, RemoveWorker, ResumeWorker,
};
pub use self::strategy::{strategy, LeastLoaded, Load, RoundRobin, Strategy};

use super::task_queue::{AttemptOutcome, CapacityAvailable};
use super::worker_proxy::{ProxySettings, WorkerProxy};
use crate::api::protocol::MemberSource;
use crate::config::{Balancing, WorkerEntry};
pub use crate::model::WorkerId;
use crate::store::Store;

/// Why a worker takes no new tasks although it may be up.
#[derive(Debug, Clone, PartialEq)]
enum Drain {
    /// `POST /workers/{id}/drain` on a configured worker: it stays listed,
    /// `drained`, until resumed.
    Asked,
    /// Removed from `config_workers.json`, or a joined worker drained: it
    /// is removed once its running tasks have finished.
    Leave,
    /// Its address changed: once idle, a new proxy at the new address
    /// takes its place (running tasks finish where they run).
    Replace(WorkerEntry),
}

/// One worker as the LoadBalancer keeps it.
struct Slot {
    id: WorkerId,
    entry: WorkerEntry,
    source: MemberSource,
    /// A joined worker's process instance (tells a re-join from a clash).
    instance: Option<String>,
    proxy: Option<Addr<WorkerProxy>>,
    up: bool,
    /// min(configured, reported by the worker)
    capacity: usize,
    /// Kernels both configured and offered by the worker.
    kernels: Vec<&'static str>,
    in_flight: usize,
    /// After a 429: the worker said it is full; wait before sending more.
    cooldown_until: Option<Instant>,
    /// As its proxy last reported it.
    state: WorkerState,
    state_reason: Option<String>,
    drain: Option<Drain>,
    last_heartbeat: Option<SystemTime>,
    completed: u64,
    failed: u64,
    busy_secs: f64,
}

impl Slot {
    fn new(entry: WorkerEntry, source: MemberSource, instance: Option<String>) -> Self {
        Slot {
            id: WorkerId::new(&entry.id),
            capacity: entry.capacity,
            kernels: entry.kernels(),
            entry,
            source,
            instance,
            proxy: None,
            up: false,
            in_flight: 0,
            cooldown_until: None,
            state: WorkerState::Unknown,
            state_reason: None,
            drain: None,
            last_heartbeat: None,
            completed: 0,
            failed: 0,
            busy_secs: 0.0,
        }
    }

    /// Up and not draining: may be given new tasks.
    fn takes_tasks(&self) -> bool {
        self.up && self.drain.is_none()
    }

    fn has_room(&self, now: Instant) -> bool {
        self.takes_tasks() && self.in_flight < self.capacity && self.cooldown_until.is_none_or(|t| t <= now)
    }

    /// The state `GET /workers` shows: a drain asked here wins over what
    /// the proxy saw.
    fn visible_state(&self) -> WorkerState {
        match (&self.drain, self.in_flight) {
            (Some(_), 0) => WorkerState::Drained,
            (Some(_), _) => WorkerState::Draining,
            (None, _) => self.state,
        }
    }

    fn visible_reason(&self) -> Option<String> {
        match &self.drain {
            Some(Drain::Asked) => Some("drained on request; POST /workers/{id}/resume to undo".into()),
            Some(Drain::Leave) => Some(match self.source {
                MemberSource::Config => "removed from the workers file; leaves once idle".into(),
                MemberSource::Joined => "leaving; removed once idle".into(),
            }),
            Some(Drain::Replace(e)) => Some(format!("moving to {} once idle", e.address())),
            None => self.state_reason.clone(),
        }
    }

    /// The row of `GET /workers`.
    fn info(&self) -> WorkerInfo {
        WorkerInfo {
            id: self.id.to_string(),
            source: self.source,
            host: self.entry.host.clone(),
            port: self.entry.port,
            address: self.entry.address(),
            state: self.visible_state(),
            state_reason: self.visible_reason(),
            up: self.up,
            capacity: self.capacity,
            configured_capacity: self.entry.capacity,
            in_flight: self.in_flight,
            load: self.in_flight as f64 / self.capacity.max(1) as f64,
            algorithms: self.entry.algorithms.clone(),
            kernels: self.kernels.clone(),
            last_heartbeat: self
                .last_heartbeat
                .map(|t| crate::util::time::Utc::from_system(t).iso()),
            tasks_completed: self.completed,
            tasks_failed: self.failed,
            mean_execution_time: (self.completed > 0).then(|| self.busy_secs / self.completed as f64),
        }
    }

    /// How a reason names the state: `down (no answer for 30.0 s)`.
    fn state_text(&self) -> String {
        match self.visible_reason() {
            Some(r) => format!("{} ({r})", self.visible_state()),
            None => self.visible_state().to_string(),
        }
    }
}

/// What the LoadBalancer needs to start a proxy for a worker that appears
/// while running (a config edit, a join); given by [`Wire`].
struct ProxyMaker {
    settings: ProxySettings,
    outcomes: Recipient<AttemptOutcome>,
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
            let why = if !w.kernels.contains(&kernel) {
                format!("does not run {kernel} (runs {})", w.kernels.join(", "))
            } else {
                capable += 1;
                if !w.takes_tasks() {
                    format!("is {}", w.state_text())
                } else {
                    capable_up += 1;
                    if w.in_flight >= w.capacity {
                        format!("is full ({}/{} tasks)", w.in_flight, w.capacity)
                    } else if w.cooldown_until.is_some_and(|t| t > now) {
                        "said it was full (429); waiting before sending more".to_string()
                    } else {
                        room += 1;
                        format!("has room ({}/{} tasks)", w.in_flight, w.capacity)
                    }
                }
            };
            per_worker.push(WorkerReason {
                worker_id: w.id.to_string(),
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
    pub kernels: Vec<&'static str>,
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
/// failed on (avoided while another capable worker exists).
#[derive(Debug, Clone)]
pub struct ToPlace {
    pub kernel: &'static str,
    pub avoid: Vec<WorkerId>,
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
        let mut out = Vec::with_capacity(msg.tasks.len());
        let mut loads = self.loads();
        for ToPlace { kernel, avoid } in msg.tasks {
            let workers = &self.workers;
            let capable = |i: usize| {
                let w = &workers[i];
                w.proxy.is_some() && w.kernels.contains(&kernel) && w.takes_tasks()
            };
            let avoided = |i: usize| avoid.contains(&workers[i].id);
            let room = |i: usize, loads: &[Load]| {
                loads[i].in_flight < workers[i].capacity && workers[i].cooldown_until.is_none_or(|t| t <= now)
            };
            // another capable worker: wait for it rather than go back to
            // one that failed the task; only when none exists, go back
            let elsewhere = (0..workers.len()).any(|i| capable(i) && !avoided(i));
            let pick = {
                let l = &loads;
                self.strategy.pick(&loads, &|i| {
                    capable(i) && room(i, l) && !(elsewhere && avoided(i))
                })
            };
            match pick {
                Some(i) => {
                    loads[i].in_flight += 1;
                    let w = &mut self.workers[i];
                    w.in_flight += 1;
                    out.push(Some(Placement {
                        worker_id: w.id.clone(),
                        proxy: w.proxy.clone().expect("eligible workers have a proxy"),
                    }));
                    self.changed(i);
                }
                None => out.push(None),
            }
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
}

impl Handler<Release> for LoadBalancer {
    type Result = ();
    fn handle(&mut self, msg: Release, ctx: &mut Self::Context) {
        let Some(&i) = self.by_id.get(&msg.worker_id) else {
            return;
        };
        let w = &mut self.workers[i];
        let was_full = !w.has_room(Instant::now());
        w.in_flight = w.in_flight.saturating_sub(1);
        match msg.ended {
            Ended::Completed { seconds } => {
                w.completed += 1;
                w.busy_secs += seconds;
            }
            Ended::Failed => w.failed += 1,
            Ended::Nothing => {}
        }
        if was_full && w.has_room(Instant::now()) {
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
    pub worker_id: String,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, port: u16) -> WorkerEntry {
        WorkerEntry {
            id: id.into(),
            host: "127.0.0.1".into(),
            port,
            capacity: 2,
            algorithms: vec!["python".into()],
        }
    }

    #[test]
    fn the_board_shows_every_worker_in_configuration_order() {
        let lb = LoadBalancer::new(&[entry("b", 2), entry("a", 1)], Balancing::RoundRobin);
        let board = lb.board();
        let ids: Vec<String> = board.list().into_iter().map(|w| w.id).collect();
        assert_eq!(ids, ["b", "a"]);
        let a = board.get("a").unwrap();
        assert_eq!(
            (a.state, a.state_reason.as_deref(), a.up),
            (WorkerState::Unknown, None, false)
        );
        assert!(board.get("c").is_none());
    }

    #[test]
    fn state_and_reason_are_apart_on_the_wire_and_together_in_explanations() {
        actix_rt::System::new().block_on(async {
            let lb = LoadBalancer::new(&[entry("w", 1)], Balancing::RoundRobin);
            let board = lb.board();
            let lb = lb.start();
            lb.send(WorkerUpdate {
                worker_id: WorkerId::new("w"),
                state: WorkerState::Down,
                reason: Some("no answer for 30.0 s".into()),
                capacity: 2,
                kernels: vec!["reference"],
                heartbeat: None,
            })
            .await
            .unwrap();
            let row = serde_json::to_value(board.get("w").unwrap()).unwrap();
            assert_eq!(row["state"], "down");
            assert_eq!(row["state_reason"], "no answer for 30.0 s");
            let why = lb
                .send(Explain {
                    kernel: "reference".into(),
                })
                .await
                .unwrap();
            assert_eq!(why.per_worker[0].reason, "is down (no answer for 30.0 s)");
        });
    }

    /// Swallows the outcomes of proxies started in tests.
    struct Sink;
    impl Actor for Sink {
        type Context = Context<Self>;
    }
    impl Handler<AttemptOutcome> for Sink {
        type Result = ();
        fn handle(&mut self, _: AttemptOutcome, _: &mut Self::Context) {}
    }
    impl Handler<CapacityAvailable> for Sink {
        type Result = ();
        fn handle(&mut self, _: CapacityAvailable, _: &mut Self::Context) {}
    }

    /// A wired LoadBalancer whose workers `up` are reported up.
    async fn wired(entries: &[WorkerEntry], up: &[&str]) -> (Addr<LoadBalancer>, WorkerBoard) {
        let lb = LoadBalancer::new(entries, Balancing::LeastLoaded);
        let board = lb.board();
        let lb = lb.start();
        let sink = Sink.start();
        lb.send(Wire {
            queue: sink.clone().recipient(),
            proxies: Vec::new(),
            outcomes: sink.recipient(),
            settings: ProxySettings {
                heartbeat_interval: Duration::from_secs(60),
                worker_timeout: Duration::from_secs(60),
                task_timeout: None,
            },
            store: None,
        })
        .await
        .unwrap();
        for id in up {
            lb.send(WorkerUpdate {
                worker_id: WorkerId::new(id),
                state: WorkerState::Up,
                reason: None,
                capacity: 1,
                kernels: vec!["reference"],
                heartbeat: None,
            })
            .await
            .unwrap();
        }
        (lb, board)
    }

    async fn place(lb: &Addr<LoadBalancer>, avoid: &[&str]) -> Option<String> {
        let avoid = avoid.iter().map(|a| WorkerId::new(a)).collect();
        let mut out = lb
            .send(Assign {
                tasks: vec![ToPlace {
                    kernel: "reference",
                    avoid,
                }],
            })
            .await
            .unwrap();
        out.pop().unwrap().map(|p| p.worker_id.to_string())
    }

    fn one(id: &str, port: u16) -> WorkerEntry {
        WorkerEntry {
            capacity: 1,
            ..entry(id, port)
        }
    }

    #[test]
    fn a_retry_avoids_the_worker_that_failed_it_while_another_can_take_it() {
        actix_rt::System::new().block_on(async {
            let (lb, _) = wired(&[one("a", 1), one("b", 2)], &["a", "b"]).await;
            // least_loaded would pick a (first); a failed the task: b
            assert_eq!(place(&lb, &["a"]).await.as_deref(), Some("b"));
            // b is full now: wait for it rather than go back to a
            assert_eq!(place(&lb, &["a"]).await, None);
            assert_eq!(place(&lb, &[]).await.as_deref(), Some("a"));
            for w in ["a", "b"] {
                lb.send(Release {
                    worker_id: WorkerId::new(w),
                    ended: Ended::Nothing,
                })
                .await
                .unwrap();
            }
            // b drained: a is the only capable worker, so back to a
            lb.send(DrainWorker { id: "b".into() }).await.unwrap();
            assert_eq!(place(&lb, &["a"]).await.as_deref(), Some("a"));
        });
    }

    #[test]
    fn a_drained_worker_takes_nothing_until_resumed() {
        actix_rt::System::new().block_on(async {
            let (lb, board) = wired(&[one("a", 1)], &["a"]).await;
            assert_eq!(place(&lb, &[]).await.as_deref(), Some("a"));
            let state = lb.send(DrainWorker { id: "a".into() }).await.unwrap();
            assert_eq!(state, Some(WorkerState::Draining), "a task still runs");
            lb.send(Release {
                worker_id: WorkerId::new("a"),
                ended: Ended::Nothing,
            })
            .await
            .unwrap();
            assert_eq!(board.get("a").unwrap().state, WorkerState::Drained);
            assert_eq!(place(&lb, &[]).await, None);
            let state = lb.send(ResumeWorker { id: "a".into() }).await.unwrap();
            assert_eq!(state, Some(WorkerState::Up));
            assert_eq!(place(&lb, &[]).await.as_deref(), Some("a"));
            assert_eq!(lb.send(DrainWorker { id: "zz".into() }).await.unwrap(), None);
        });
    }

    #[test]
    fn a_config_edit_adds_changes_and_drains_out() {
        actix_rt::System::new().block_on(async {
            let (lb, board) = wired(&[one("a", 1), one("b", 2)], &["a", "b"]).await;
            assert_eq!(place(&lb, &["a"]).await.as_deref(), Some("b"));
            let wider = WorkerEntry {
                capacity: 3,
                ..one("a", 1)
            };
            lb.send(ApplyConfig {
                entries: vec![one("c", 3), wider.clone()],
            })
            .await
            .unwrap();
            let ids: Vec<String> = board.list().into_iter().map(|w| w.id).collect();
            assert_eq!(ids, ["c", "a", "b"], "file order, the leaving worker after");
            let b = board.get("b").unwrap();
            assert_eq!((b.state, b.in_flight), (WorkerState::Draining, 1));
            assert_eq!(board.get("a").unwrap().configured_capacity, 3);
            assert_eq!(board.get("c").unwrap().state, WorkerState::Unknown);
            // b's task ends: b leaves; indexes stay right for the others
            lb.send(Release {
                worker_id: WorkerId::new("b"),
                ended: Ended::Nothing,
            })
            .await
            .unwrap();
            assert!(board.get("b").is_none());
            assert_eq!(place(&lb, &[]).await.as_deref(), Some("a"));
            assert_eq!(board.get("a").unwrap().in_flight, 1);
            // a new address while busy: moves once idle
            let moved = WorkerEntry { port: 9, ..wider };
            lb.send(ApplyConfig {
                entries: vec![one("c", 3), moved],
            })
            .await
            .unwrap();
            assert_eq!(board.get("a").unwrap().port, 1);
            assert_eq!(board.get("a").unwrap().state, WorkerState::Draining);
            lb.send(Release {
                worker_id: WorkerId::new("a"),
                ended: Ended::Nothing,
            })
            .await
            .unwrap();
            let a = board.get("a").unwrap();
            assert_eq!((a.port, a.state), (9, WorkerState::Unknown));
        });
    }

    #[test]
    fn a_join_is_refused_only_when_the_id_is_another_live_workers() {
        actix_rt::System::new().block_on(async {
            let (lb, board) = wired(&[one("a", 1)], &[]).await;
            // x's address takes connections (and never answers): a holder
            // whose address refuses them is gone, not a clash
            let live = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let x = live.local_addr().unwrap().port();
            let join = |id: &str, port: u16, instance: &str| {
                lb.send(Join {
                    member: JoinedMember {
                        entry: one(id, port),
                        instance: instance.into(),
                    },
                })
            };
            assert_eq!(join("x", x, "i1").await.unwrap(), Ok(MemberSource::Joined));
            assert_eq!(board.get("x").unwrap().source, MemberSource::Joined);
            assert_eq!(join("x", x, "i1").await.unwrap(), Ok(MemberSource::Joined));
            let clash = join("x", 6, "i2").await.unwrap();
            assert!(
                matches!(&clash, Err(JoinRefused::Taken { address, .. }) if *address == format!("127.0.0.1:{x}")),
                "{clash:?}"
            );
            // the same address after a restart of the worker: fine
            assert_eq!(join("x", x, "i3").await.unwrap(), Ok(MemberSource::Joined));
            // a configured id: only from its configured address
            assert_eq!(join("a", 1, "j").await.unwrap(), Ok(MemberSource::Config));
            assert!(join("a", 7, "j").await.unwrap().is_err());
            // drained on request: it leaves, and its re-joins stay drained
            lb.send(DrainWorker { id: "x".into() }).await.unwrap();
            assert!(board.get("x").is_none());
            assert_eq!(join("x", x, "i3").await.unwrap(), Ok(MemberSource::Joined));
            assert_eq!(board.get("x").unwrap().state, WorkerState::Drained);
            assert_eq!(board.list().len(), 2);
        });
    }
}
