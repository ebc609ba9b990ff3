//! The placement half of the worker list, kept by the core (TaskQueue's
//! [`crate::orchestrator::task_queue::LiveTasks`]) and read synchronously
//! as it dispatches: who may take what (from [`MemberView`]s that the
//! membership actor sends when a worker changes), what each holds, how
//! fast it went, and the [`Strategy`] that picks. Pure: time is a value
//! (unix seconds), no actix, no I/O. Placing a batch, releasing a slot and
//! reserving one for an adopted attempt are plain calls, so no message
//! goes back and forth to place a task.

use std::collections::HashMap;
use std::fmt;

use super::batch::place_batch;
use super::expected::{Expected, TaskSize};
use super::strategy::{Load, RoundRobin, Strategy};
use super::{Explanation, WorkerReason};
use crate::model::{KernelName, Priority, WorkerId};
use crate::orchestrator::board::LoadRow;

/// Seconds of work per slot kept waiting on a worker.
const PREFETCH_SECONDS: f64 = 0.05;
/// The most tasks sent ahead to one worker.
const MAX_PREFETCH: usize = 512;
/// Weight of the newest execution time in the moving average.
const RECENT_WEIGHT: f64 = 0.1;

/// What membership says of one worker, in configuration order: all that
/// placement needs besides its load.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberView {
    pub id: WorkerId,
    /// Its proxy is running (placements go only where one is).
    pub reachable: bool,
    pub up: bool,
    /// Drained, leaving or moving (why): takes no new tasks; drained
    /// once it holds nothing.
    pub drain_reason: Option<String>,
    /// min(configured, reported by the worker)
    pub capacity: usize,
    pub kernels: Vec<KernelName>,
    /// The most tasks it keeps waiting for a slot (`max_backlog`).
    pub backlog_limit: usize,
    /// How an explanation names its state when it is down or unknown:
    /// `down (no answer for 30.0 s)`.
    pub state_text: String,
}

impl MemberView {
    pub fn draining(&self) -> bool {
        self.drain_reason.is_some()
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

/// What the core holds back on some workers while it places a batch
/// (`task_queue/takeback.rs`): slots held for tasks being taken back to
/// them, and the lowest priority each may still be sent ahead (queued in
/// its backlog, no slot free): none below a task that waits in another
/// worker's backlog and that it could run, so that its slot, when it
/// frees, does not start a lower-priority task than one waiting elsewhere.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    pub incoming: HashMap<WorkerId, usize>,
    pub floor: HashMap<WorkerId, Priority>,
}

/// One worker as placement sees it.
#[derive(Debug, Clone)]
struct WorkerLoad {
    view: MemberView,
    /// Attempts sent and not yet ended: running there, or sent ahead and
    /// waiting in its backlog.
    in_flight: usize,
    /// Recent execution time of its tasks (moving average), which sets
    /// how far ahead it is sent work ([`WorkerLoad::prefetch`]).
    recent_secs: Option<f64>,
    /// After a 429: the worker said it is full; nothing more until then.
    cooldown_until: Option<f64>,
    completed: u64,
    failed: u64,
    busy_secs: f64,
}

impl WorkerLoad {
    /// A worker listed for the first time (or again after it was removed).
    fn fresh(view: MemberView) -> Self {
        WorkerLoad {
            view,
            in_flight: 0,
            recent_secs: None,
            cooldown_until: None,
            completed: 0,
            failed: 0,
            busy_secs: 0.0,
        }
    }

    /// Membership's new view of it; a worker gone down forgets its 429.
    fn renew(&mut self, view: MemberView) {
        if !view.up {
            self.cooldown_until = None;
        }
        self.view = view;
    }

    fn takes_tasks(&self) -> bool {
        self.view.up && !self.view.draining()
    }

    fn has_room(&self, now: f64) -> bool {
        self.takes_tasks() && self.in_flight < self.window() && self.cooldown_until.is_none_or(|t| t <= now)
    }

    /// How many tasks it is sent ahead, beyond its slots, so that a slot
    /// that frees never waits for the round trip to the orchestrator
    /// (result, commit, next dispatch): enough to keep its slots busy for
    /// [`PREFETCH_SECONDS`] at its recent pace. Deep for tiny tasks, one
    /// for long ones; `capacity` until a first task has ended.
    fn prefetch(&self) -> usize {
        let capacity = self.view.capacity;
        let want = match self.recent_secs {
            None => capacity,
            Some(secs) => ((PREFETCH_SECONDS * capacity as f64 / secs.max(1e-6)).ceil() as usize).max(1),
        };
        want.min(self.view.backlog_limit).min(MAX_PREFETCH)
    }

    /// Slots plus the backlog it is sent ahead: the most attempts it has
    /// at once.
    fn window(&self) -> usize {
        self.view.capacity + self.prefetch()
    }

    /// How far its backlog must have run down before it is sent more:
    /// half of what it is sent ahead. A release that crosses this asks for
    /// a dispatch ([`Loads::release`]).
    fn refill(&self) -> usize {
        (self.prefetch() / 2).max(1)
    }

    /// Worth sending tasks to in a batch placed now, holding `in_flight`
    /// attempts: its backlog has run down to half (always so when a slot
    /// is free: the room is then more than all it is sent ahead). One
    /// that is merely a few tasks short waits for its refill, so that what
    /// it is sent travels together: topped up by a task or two at every
    /// dispatch, a worker among hundreds was sent a request per task or
    /// two.
    fn hungry(&self, in_flight: usize) -> bool {
        self.window().saturating_sub(in_flight) >= self.refill()
    }

    fn learn(&mut self, secs: f64) {
        if !secs.is_finite() || secs < 0.0 {
            return;
        }
        self.recent_secs = Some(match self.recent_secs {
            None => secs,
            Some(old) => old + (secs - old) * RECENT_WEIGHT,
        });
    }

    fn running(&self) -> usize {
        self.in_flight.min(self.view.capacity)
    }

    fn row(&self) -> LoadRow {
        LoadRow {
            in_flight: self.in_flight,
            running: self.running(),
            backlog: self.in_flight - self.running(),
            prefetch: if self.takes_tasks() { self.prefetch() } else { 0 },
            load: self.running() as f64 / self.view.capacity.max(1) as f64,
            completed: self.completed,
            failed: self.failed,
            mean_execution_time: (self.completed > 0).then(|| self.busy_secs / self.completed as f64),
        }
    }
}

/// What a release changed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Released {
    /// The worker's backlog was short and is now half spent: worth
    /// dispatching to again.
    pub room: bool,
    /// A draining worker holds nothing any more: membership may settle it.
    pub idle: bool,
}

/// Every worker's load, in configuration order, and the strategy.
pub struct Loads {
    workers: Vec<WorkerLoad>,
    by_id: HashMap<WorkerId, usize>,
    strategy: Box<dyn Strategy>,
    /// Learned speeds and what each worker holds, for strategies that
    /// [`Strategy::uses_estimates`].
    expected: Expected,
}

impl fmt::Debug for Loads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loads")
            .field("workers", &self.workers)
            .field("strategy", &self.strategy.name())
            .finish()
    }
}

impl Default for Loads {
    fn default() -> Self {
        Self::new(Box::<RoundRobin>::default())
    }
}

impl Loads {
    pub fn new(strategy: Box<dyn Strategy>) -> Self {
        Self {
            workers: Vec::new(),
            by_id: HashMap::new(),
            strategy,
            expected: Expected::new(),
        }
    }

    pub fn strategy_name(&self) -> &'static str {
        self.strategy.name()
    }

    /// Event: membership's list changed. Loads of workers still listed
    /// are kept; a worker no longer listed is forgotten (one that comes
    /// back under its id starts afresh). Answers the workers that have
    /// just become draining and idle (membership settles them).
    pub fn roster(&mut self, views: Vec<MemberView>) -> Vec<WorkerId> {
        let mut old: HashMap<WorkerId, WorkerLoad> =
            self.workers.drain(..).map(|w| (w.view.id.clone(), w)).collect();
        let mut idle = Vec::new();
        for view in views {
            let was_idle = old
                .get(&view.id)
                .is_some_and(|w| w.view.draining() && w.in_flight == 0);
            let w = match old.remove(&view.id) {
                Some(mut w) => {
                    w.renew(view);
                    w
                }
                None => WorkerLoad::fresh(view),
            };
            if w.view.draining() && w.in_flight == 0 && !was_idle {
                idle.push(w.view.id.clone());
            }
            self.workers.push(w);
        }
        for gone in old.keys() {
            self.expected.forget(gone);
        }
        self.by_id = self
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| (w.view.id.clone(), i))
            .collect();
        idle
    }

    /// Event: these workers changed (one not listed yet is added at the
    /// end); the others are as they were. Answers, as [`Self::roster`],
    /// the workers that have just become draining and idle.
    pub fn changes(&mut self, views: Vec<MemberView>) -> Vec<WorkerId> {
        let mut idle = Vec::new();
        for view in views {
            match self.by_id.get(&view.id) {
                Some(&i) => {
                    let w = &mut self.workers[i];
                    let was_idle = w.view.draining() && w.in_flight == 0;
                    w.renew(view);
                    if w.view.draining() && w.in_flight == 0 && !was_idle {
                        idle.push(w.view.id.clone());
                    }
                }
                None => {
                    let w = WorkerLoad::fresh(view);
                    if w.view.draining() {
                        idle.push(w.view.id.clone());
                    }
                    self.by_id.insert(w.view.id.clone(), self.workers.len());
                    self.workers.push(w);
                }
            }
        }
        idle
    }

    /// The listed workers' ids, in order.
    pub fn ids(&self) -> impl Iterator<Item = &WorkerId> {
        self.workers.iter().map(|w| &w.view.id)
    }

    /// Is this worker listed?
    pub fn knows(&self, id: &WorkerId) -> bool {
        self.by_id.contains_key(id)
    }

    /// Places `tasks` (best priority first) where `strategy` says, among
    /// workers that are up, not draining, not cooling down after a 429,
    /// reachable, run the task's kernel and have room; a task avoids the
    /// workers its attempts failed on while another capable one exists.
    /// Answers, per task in the order given, its worker (`None`: no room).
    pub fn place(&mut self, tasks: &[ToPlace], now: f64) -> Vec<Option<WorkerId>> {
        self.place_with(tasks, now, &Claims::default())
    }

    /// [`Self::place`] with `claims`: a worker counts the slots held on
    /// it as taken, and takes a task into its backlog (its slots all
    /// taken) only at or above its floor.
    pub fn place_with(&mut self, tasks: &[ToPlace], now: f64, claims: &Claims) -> Vec<Option<WorkerId>> {
        let workers = &self.workers;
        let capable = |k: usize, i: usize| {
            let w = &workers[i];
            w.view.reachable && w.view.kernels.contains(&tasks[k].kernel) && w.takes_tasks()
        };
        let avoided = |k: usize, i: usize| tasks[k].avoid.contains(&workers[i].view.id);
        let mut loads: Vec<Load> = workers
            .iter()
            .map(|w| Load {
                in_flight: w.in_flight + claims.incoming.get(&w.view.id).copied().unwrap_or(0),
                capacity: w.view.capacity.max(1),
                expected_finish: 0.0,
            })
            .collect();
        // who takes tasks in this batch is decided before it is placed
        let hungry: Vec<bool> = workers
            .iter()
            .zip(&loads)
            .map(|(w, load)| w.hungry(load.in_flight))
            .collect();
        let room = |i: usize, loads: &[Load]| {
            hungry[i]
                && loads[i].in_flight < workers[i].window()
                && workers[i].cooldown_until.is_none_or(|t| t <= now)
        };
        // another capable worker: wait for it rather than go back to one
        // that failed the task; only when none exists, go back
        let elsewhere: Vec<bool> = (0..tasks.len())
            .map(|k| (0..workers.len()).any(|i| capable(k, i) && !avoided(k, i)))
            .collect();
        let floors: Vec<Option<Priority>> = workers
            .iter()
            .map(|w| claims.floor.get(&w.view.id).copied())
            .collect();
        let queued_ok = |k: usize, i: usize, loads: &[Load]| {
            loads[i].in_flight < workers[i].view.capacity || floors[i].is_none_or(|f| tasks[k].priority <= f)
        };
        let allowed = |k: usize, i: usize, loads: &[Load]| {
            capable(k, i) && room(i, loads) && !(elsewhere[k] && avoided(k, i)) && queued_ok(k, i, loads)
        };
        let ids: Vec<WorkerId> = workers.iter().map(|w| w.view.id.clone()).collect();
        let sized: Vec<(Priority, TaskSize)> = tasks.iter().map(|t| (t.priority, t.task_size())).collect();
        let picks = place_batch(
            self.strategy.as_mut(),
            &mut self.expected,
            &ids,
            &mut loads,
            &sized,
            now,
            &allowed,
        );
        picks
            .into_iter()
            .map(|pick| {
                pick.map(|i| {
                    self.workers[i].in_flight += 1;
                    self.workers[i].view.id.clone()
                })
            })
            .collect()
    }

    /// An attempt placed on `id` ended; `size` is its task's, when known
    /// (what `expected.rs` learns speeds from).
    pub fn release(&mut self, id: &WorkerId, ended: Ended, size: Option<TaskSize>, now: f64) -> Released {
        let Some(&i) = self.by_id.get(id) else {
            return Released::default();
        };
        let w = &mut self.workers[i];
        // dispatch is worth it once a worker's backlog is half spent, not
        // at every release, so the tasks it is sent travel together
        let refill = w.refill();
        let free = |w: &WorkerLoad| w.window().saturating_sub(w.in_flight);
        let was_short = !w.has_room(now) || free(w) < refill;
        w.in_flight = w.in_flight.saturating_sub(1);
        let seconds = match ended {
            Ended::Completed { seconds } => Some(seconds),
            _ => None,
        };
        self.expected
            .released(&w.view.id, size, seconds, w.in_flight == 0);
        match ended {
            Ended::Completed { seconds } => {
                w.completed += 1;
                w.busy_secs += seconds;
                w.learn(seconds);
            }
            Ended::Failed => w.failed += 1,
            Ended::Nothing => {}
        }
        Released {
            room: was_short && w.has_room(now) && free(w) >= refill,
            idle: w.view.draining() && w.in_flight == 0,
        }
    }

    /// Whether `id` takes a task of `kernel` now (listed, reachable, up,
    /// not draining, runs it, not cooling down after a 429), whatever its
    /// load.
    pub fn accepts(&self, id: &WorkerId, kernel: KernelName, now: f64) -> bool {
        self.by_id.get(id).is_some_and(|&i| {
            let w = &self.workers[i];
            w.view.reachable
                && w.takes_tasks()
                && w.view.kernels.contains(&kernel)
                && w.cooldown_until.is_none_or(|t| t <= now)
        })
    }

    /// Whether `id` has room for one more task now (a free slot or room
    /// in the backlog it is sent ahead), `extra` more counted as held.
    pub fn has_room(&self, id: &WorkerId, extra: usize, now: f64) -> bool {
        self.by_id.get(id).is_some_and(|&i| {
            let w = &self.workers[i];
            w.view.reachable && w.has_room(now) && w.in_flight + extra < w.window()
        })
    }

    /// Its capacity (slots), if listed.
    pub fn capacity(&self, id: &WorkerId) -> Option<usize> {
        self.by_id.get(id).map(|&i| self.workers[i].view.capacity)
    }

    /// A task taken back to `id` is placed there, on the slot held for
    /// it, whatever its window.
    pub fn assign(&mut self, id: &WorkerId, size: TaskSize, now: f64) {
        if let Some(&i) = self.by_id.get(id) {
            self.workers[i].in_flight += 1;
            self.expected.placed(id, Some(size), now);
        }
    }

    /// The listed workers that take tasks now, with their kernels.
    pub fn taking(&self, now: f64) -> impl Iterator<Item = (&WorkerId, &[KernelName])> + '_ {
        self.workers
            .iter()
            .filter(move |w| w.view.reachable && w.takes_tasks() && w.cooldown_until.is_none_or(|t| t <= now))
            .map(|w| (&w.view.id, w.view.kernels.as_slice()))
    }

    /// An attempt adopted from before a restart occupies a slot on `id`
    /// until released.
    pub fn reserve(&mut self, id: &WorkerId, now: f64) {
        if let Some(&i) = self.by_id.get(id) {
            self.workers[i].in_flight += 1;
            self.expected.placed(id, None, now);
        }
    }

    /// The worker answered 429: nothing more to it until `until`.
    pub fn full(&mut self, id: &WorkerId, until: f64) {
        if let Some(&i) = self.by_id.get(id) {
            self.workers[i].cooldown_until = Some(until);
        }
    }

    /// The load half of a worker's row.
    pub fn row(&self, id: &WorkerId) -> Option<LoadRow> {
        self.by_id.get(id).map(|&i| self.workers[i].row())
    }

    /// Attempts in flight on `id` (0 for an unknown worker).
    pub fn in_flight(&self, id: &WorkerId) -> usize {
        self.by_id.get(id).map_or(0, |&i| self.workers[i].in_flight)
    }

    /// The speed model, for tests and the makespan bench.
    pub fn expected(&self) -> &Expected {
        &self.expected
    }

    /// Why a task of `kernel` cannot be placed now, and per worker why not.
    pub fn explain(&self, kernel: &str, now: f64) -> Explanation {
        let mut per_worker = Vec::new();
        let (mut capable, mut capable_up, mut room) = (0, 0, 0);
        for w in &self.workers {
            let why = if !w.view.kernels.iter().any(|k| *k == kernel) {
                let runs: Vec<&str> = w.view.kernels.iter().map(|k| k.as_str()).collect();
                format!("does not run {kernel} (runs {})", runs.join(", "))
            } else {
                capable += 1;
                if !w.takes_tasks() {
                    match &w.view.drain_reason {
                        Some(why) if w.in_flight == 0 => format!("is drained ({why})"),
                        Some(why) => format!("is draining ({why})"),
                        None => format!("is {}", w.view.state_text),
                    }
                } else {
                    capable_up += 1;
                    if w.in_flight >= w.window() {
                        format!(
                            "is full ({}/{} tasks running, {} more sent ahead)",
                            w.running(),
                            w.view.capacity,
                            w.in_flight - w.running()
                        )
                    } else if w.cooldown_until.is_some_and(|t| t > now) {
                        "said it was full (429); waiting before sending more".to_string()
                    } else {
                        room += 1;
                        format!("has room ({}/{} tasks running)", w.running(), w.view.capacity)
                    }
                }
            };
            per_worker.push(WorkerReason {
                worker_id: w.view.id.clone(),
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

#[cfg(test)]
#[path = "loads_tests.rs"]
mod tests;
