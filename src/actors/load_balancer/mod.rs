//! LoadBalancer: knows every worker's state (from its WorkerProxy) and load
//! (from TaskQueue's assignments and releases), and places tasks: only on a
//! worker that is up, has a free slot and runs the task's kernel, chosen
//! among those by the [`Strategy`] of `LOAD_BALANCING_ALGORITHM`.
//!
//! Every change to a worker's row is published to a [`WorkerBoard`], a
//! concurrent map the API reads for `GET /workers` without a round trip
//! through this actor's mailbox (busy with placements under load).

mod board;
mod strategy;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use serde::Serialize;

pub use self::board::{WorkerBoard, WorkerInfo, WorkerState};
pub use self::strategy::{strategy, LeastLoaded, Load, RoundRobin, Strategy};

use super::task_queue::CapacityAvailable;
use super::worker_proxy::WorkerProxy;
use crate::config::{Balancing, WorkerEntry};
pub use crate::model::WorkerId;

/// One worker as the LoadBalancer keeps it.
struct Slot {
    id: WorkerId,
    entry: WorkerEntry,
    proxy: Option<Addr<WorkerProxy>>,
    up: bool,
    /// min(configured, reported by the worker)
    capacity: usize,
    /// Kernels both configured and offered by the worker.
    kernels: Vec<&'static str>,
    in_flight: usize,
    /// After a 429: the worker said it is full; wait before sending more.
    cooldown_until: Option<Instant>,
    state: WorkerState,
    state_reason: Option<String>,
    last_heartbeat: Option<SystemTime>,
    completed: u64,
    failed: u64,
    busy_secs: f64,
}

impl Slot {
    fn has_room(&self, now: Instant) -> bool {
        self.up && self.in_flight < self.capacity && self.cooldown_until.is_none_or(|t| t <= now)
    }
}

impl Slot {
    /// The row of `GET /workers`.
    fn info(&self) -> WorkerInfo {
        WorkerInfo {
            id: self.id.to_string(),
            host: self.entry.host.clone(),
            port: self.entry.port,
            address: self.entry.address(),
            state: self.state,
            state_reason: self.state_reason.clone(),
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
        match &self.state_reason {
            Some(r) => format!("{} ({r})", self.state),
            None => self.state.to_string(),
        }
    }
}

pub struct LoadBalancer {
    workers: Vec<Slot>,
    by_id: HashMap<WorkerId, usize>,
    strategy: Box<dyn Strategy>,
    queue: Option<Recipient<CapacityAvailable>>,
    board: WorkerBoard,
}

impl LoadBalancer {
    pub fn new(entries: &[WorkerEntry], balancing: Balancing) -> Self {
        let workers: Vec<Slot> = entries
            .iter()
            .map(|e| Slot {
                id: WorkerId::new(&e.id),
                entry: e.clone(),
                proxy: None,
                up: false,
                capacity: e.capacity,
                kernels: e.kernels(),
                in_flight: 0,
                cooldown_until: None,
                state: WorkerState::Unknown,
                state_reason: None,
                last_heartbeat: None,
                completed: 0,
                failed: 0,
                busy_secs: 0.0,
            })
            .collect();
        let by_id = workers
            .iter()
            .enumerate()
            .map(|(i, w)| (w.id.clone(), i))
            .collect();
        let board = WorkerBoard::new(workers.iter().map(|w| w.id.clone()).collect());
        for w in &workers {
            board.publish(&w.id, w.info());
        }
        Self {
            workers,
            by_id,
            strategy: strategy(balancing),
            queue: None,
            board,
        }
    }

    /// The live snapshot of every worker, for the API (take it before
    /// starting the actor).
    pub fn board(&self) -> WorkerBoard {
        self.board.clone()
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
                if !w.up {
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
                "no configured worker runs {kernel}; add it to a worker's algorithms in config_workers.json"
            )
        } else if capable_up == 0 {
            format!("every worker that runs {kernel} is down")
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

/// Sent once at start-up: who to tell when room appears, and each
/// worker's proxy.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wire {
    pub queue: Recipient<CapacityAvailable>,
    pub proxies: Vec<(String, Addr<WorkerProxy>)>,
}

impl Handler<Wire> for LoadBalancer {
    type Result = ();
    fn handle(&mut self, msg: Wire, _: &mut Self::Context) {
        self.queue = Some(msg.queue);
        for (id, proxy) in msg.proxies {
            if let Some(&i) = self.by_id.get(id.as_str()) {
                self.workers[i].proxy = Some(proxy);
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
        if up && !was_up {
            tracing::info!(worker = %w.id, capacity = w.capacity, kernels = ?w.kernels, "worker up");
            self.notify_room();
        } else if !up && was_up {
            tracing::warn!(worker = %w.id, state = %w.state_text(), "worker down");
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

/// Sent by TaskQueue: place these tasks (task id, kernel), in this order.
/// Answers one entry per task; a placed task counts as in flight on its
/// worker until [`Release`].
#[derive(Message)]
#[rtype(result = "Vec<Option<Placement>>")]
pub struct Assign {
    pub kernels: Vec<&'static str>,
}

impl Handler<Assign> for LoadBalancer {
    type Result = MessageResult<Assign>;
    fn handle(&mut self, msg: Assign, _: &mut Self::Context) -> Self::Result {
        let now = Instant::now();
        let mut out = Vec::with_capacity(msg.kernels.len());
        let mut loads = self.loads();
        for kernel in msg.kernels {
            let workers = &self.workers;
            let eligible = |i: usize| {
                let w = &workers[i];
                w.proxy.is_some()
                    && w.kernels.contains(&kernel)
                    && w.up
                    && loads[i].in_flight < w.capacity
                    && w.cooldown_until.is_none_or(|t| t <= now)
            };
            match self.strategy.pick(&loads, &eligible) {
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
    fn handle(&mut self, msg: Release, _: &mut Self::Context) {
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
}
