//! Executor: the worker node's one stateful actor. It admits tasks (or
//! refuses them: full, already running, draining), hands them to the
//! [`SimulationActor`] pool, and keeps what the worker knows: tasks running
//! now, results held for pickup, recent history and metrics. The HTTP
//! handlers in `api::worker` talk only to it.

mod batch;
pub mod held_results;
pub mod metrics;
mod serving;
mod state_file;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix::WeakAddr;
use tokio::sync::oneshot;

use self::batch::Reply;
pub use self::batch::{BatchEvents, ExecuteBatch, Queued};
use self::held_results::HeldResults;
use self::metrics::{Finished, NodeFigures, Stats, WorkerMetrics};
pub use self::serving::Serve;
pub use self::state_file::{StateSnapshot, STATE_EVERY};
use crate::model::{AttemptId, RunStatus, Task, TaskId, TaskResult, WorkerId};
use crate::protocol::{BatchEvent, CurrentTask, NodeState, StatusAnswer};
use crate::sim::Control;
use crate::worker::checkpoint::Checkpointer;
use crate::worker::metrics::WorkerNodeMetrics;
use crate::worker::simulation::{Outcome, RunCheckpoints, RunTask, SimulationActor};

/// What the Executor needs to know about its node.
#[derive(Debug, Clone)]
pub struct ExecutorSettings {
    pub worker_id: WorkerId,
    pub capacity: usize,
    pub algorithms: Vec<String>,
    pub threads_per_task: usize,
    pub history_size: usize,
    /// Tasks of `/execute/batch` that may wait for a slot.
    pub max_backlog: usize,
    /// Where `worker_<id>_state.json` is kept current (None: nowhere).
    pub state_file: Option<PathBuf>,
}

/// A task running now.
struct Running {
    task: Arc<Task>,
    attempt_id: Option<AttemptId>,
    control: Arc<Control>,
    started: Instant,
    started_at: String,
    /// Who hears of its end.
    reply: Reply,
    /// When its next checkpoint is due (with checkpoints on).
    next_checkpoint: Instant,
}

pub struct Executor {
    settings: Arc<ExecutorSettings>,
    sims: Addr<SimulationActor>,
    running: HashMap<TaskId, Running>,
    /// Batch tasks waiting for a slot, oldest first.
    backlog: VecDeque<Queued>,
    /// How many batch tasks may run at once: the capacity the latest
    /// batch's sender agreed with this worker (at most its own).
    batch_slots: usize,
    held: HeldResults,
    history: VecDeque<Arc<TaskResult>>,
    stats: Stats,
    /// `GET /metrics/prometheus`: each finished run counted.
    prometheus: Arc<WorkerNodeMetrics>,
    draining: bool,
    started: Instant,
    /// `worker_<id>_state.json` is behind the worker.
    state_dirty: bool,
    /// A write of it is already due ([`Executor::touch_state`]).
    state_write_due: bool,
    /// This actor, to schedule that write from code without its context
    /// (weak: the actor must not keep its own mailbox open).
    me: Option<WeakAddr<Executor>>,
    /// The orchestrator (its data folder's id) whose work this worker has
    /// ([`Serve`]).
    served: Option<String>,
    /// When the orchestrator served last asked something.
    served_heard: Option<Instant>,
    /// Where checkpoints go (None: `--join` not given or
    /// `CHECKPOINT_INTERVAL` = 0).
    checkpointer: Option<Rc<Checkpointer>>,
}

impl Executor {
    pub fn new(
        settings: ExecutorSettings,
        sims: Addr<SimulationActor>,
        held: HeldResults,
        prometheus: Arc<WorkerNodeMetrics>,
    ) -> Self {
        let batch_slots = settings.capacity;
        Self {
            settings: Arc::new(settings),
            sims,
            running: HashMap::new(),
            backlog: VecDeque::new(),
            batch_slots,
            held,
            history: VecDeque::new(),
            stats: Stats::default(),
            prometheus,
            draining: false,
            started: Instant::now(),
            state_dirty: true,
            state_write_due: false,
            me: None,
            served: None,
            served_heard: None,
            checkpointer: None,
        }
    }

    /// Saves checkpoints of running simulations through `checkpointer`.
    pub fn with_checkpointer(mut self, checkpointer: Option<Rc<Checkpointer>>) -> Self {
        self.checkpointer = checkpointer;
        self
    }

    /// Asks every simulation whose checkpoint is due for one (`now` for
    /// all of them when `all`).
    fn request_checkpoints(&mut self, all: bool) {
        let Some(interval) = self.checkpointer.as_ref().map(|c| c.interval) else {
            return;
        };
        let now = Instant::now();
        for r in self.running.values_mut() {
            if all || now >= r.next_checkpoint {
                r.control.request_checkpoint();
                r.next_checkpoint = now + interval;
            }
        }
    }
}

impl Actor for Executor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.me = Some(ctx.address().downgrade());
        self.touch_state();
        ctx.run_interval(Duration::from_secs(60), |act, _| act.held.expire());
        if let Some(c) = &self.checkpointer {
            let tick = (c.interval / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
            ctx.run_interval(tick, |act, _| act.request_checkpoints(false));
        }
    }
}

/// Sent by `POST /execute`: run a task. Answers with a receiver that gets
/// the result when the simulation ends, or a refusal.
#[derive(Message)]
#[rtype(result = "Result<oneshot::Receiver<Arc<TaskResult>>, Refusal>")]
pub struct Execute {
    pub task: Task,
    pub attempt_id: Option<AttemptId>,
}

/// Why a task was not admitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("worker is full: {running} of {capacity} task slots are busy; retry later")]
    Full { running: usize, capacity: usize },
    #[error("task {task_id} is already running on this worker")]
    AlreadyRunning {
        task_id: TaskId,
        attempt_id: Option<AttemptId>,
    },
    #[error("worker is shutting down and accepts no new tasks")]
    Draining,
}

impl Handler<Execute> for Executor {
    type Result = Result<oneshot::Receiver<Arc<TaskResult>>, Refusal>;

    fn handle(&mut self, msg: Execute, ctx: &mut Self::Context) -> Self::Result {
        if self.draining {
            return Err(Refusal::Draining);
        }
        if let Some(refusal) = self.already_here(&msg.task.task_id, msg.attempt_id) {
            return Err(refusal);
        }
        if self.running.len() >= self.settings.capacity {
            self.stats.refused_full += 1;
            return Err(Refusal::Full {
                running: self.running.len(),
                capacity: self.settings.capacity,
            });
        }
        let (tx, rx) = oneshot::channel();
        self.start(Arc::new(msg.task), msg.attempt_id, Reply::Single(Some(tx)), ctx);
        Ok(rx)
    }
}

impl Executor {
    /// A refusal if `task_id` runs here or waits in the backlog, unless
    /// `attempt_id` is newer than the attempt waiting there: its
    /// orchestrator has given the older one up (it restarted while the
    /// older one waited here behind busy slots, or counted it lost), so
    /// the older one leaves the backlog unstarted, as if taken back (its
    /// batch is told `taken_back`), and the newer one is admitted. A
    /// running one is never replaced: its result is the task's.
    fn already_here(&mut self, task_id: &TaskId, attempt_id: Option<AttemptId>) -> Option<Refusal> {
        if let Some(r) = self.running.get(task_id) {
            return Some(Refusal::AlreadyRunning {
                task_id: task_id.clone(),
                attempt_id: r.attempt_id,
            });
        }
        let at = self.backlog.iter().position(|q| &q.task.task_id == task_id)?;
        let waiting = self.backlog[at].attempt_id;
        let newer = matches!((waiting, attempt_id), (Some(old), Some(new)) if new.get() > old.get());
        if !newer {
            return Some(Refusal::AlreadyRunning {
                task_id: task_id.clone(),
                attempt_id: waiting,
            });
        }
        let q = self.backlog.remove(at).expect("the position was just found");
        tracing::info!(task = %task_id, replaced = %crate::util::logging::AttemptField(waiting),
            by = %crate::util::logging::AttemptField(attempt_id),
            "a newer attempt replaces the one waiting in the backlog, which will not run");
        let _ = q.events.send(BatchEvent::TakenBack {
            task_id: task_id.clone(),
            attempt_id: waiting,
        });
        self.touch_state();
        None
    }

    /// Gives a task a slot: it runs from now on.
    fn start(
        &mut self,
        task: Arc<Task>,
        attempt_id: Option<AttemptId>,
        reply: Reply,
        ctx: &mut Context<Self>,
    ) {
        let control = Arc::new(Control::new());
        let task_id = task.task_id.clone();
        let interval = self.checkpointer.as_ref().map_or(Duration::ZERO, |c| c.interval);
        tracing::info!(task = %task_id, attempt = %crate::util::logging::AttemptField(attempt_id), algorithm = %task.algorithm, "task started");
        reply.started(&task_id, attempt_id);
        self.running.insert(
            task_id.clone(),
            Running {
                task: Arc::clone(&task),
                attempt_id,
                control: Arc::clone(&control),
                started: Instant::now(),
                started_at: crate::util::time::now_iso(),
                reply,
                next_checkpoint: Instant::now() + interval,
            },
        );
        self.touch_state();
        let checkpointer = self.checkpointer.clone();
        let sims = self.sims.clone();
        let run = async move {
            let resume = match (&checkpointer, task.checkpoint_step) {
                (Some(c), Some(step)) => match c.fetch(&task.task_id).await {
                    Ok(bytes) => Some(bytes),
                    Err(e) => {
                        tracing::warn!(task = %task.task_id, step, error = %e,
                            "cannot fetch the checkpoint to resume from; the task starts from step 0");
                        None
                    }
                },
                (None, Some(step)) => {
                    tracing::warn!(task = %task.task_id, step,
                        "the orchestrator holds a checkpoint of this task, but this worker has no --join \
                         orchestrator to fetch it from (or CHECKPOINT_INTERVAL = 0); starting from step 0");
                    None
                }
                _ => None,
            };
            let checkpoints = RunCheckpoints {
                uploads: checkpointer.map(|c| c.sender()),
                attempt_id,
                resume,
            };
            sims.send(RunTask {
                task,
                control,
                checkpoints,
            })
            .await
        };
        run.into_actor(self)
            .map(move |outcome, act, ctx| {
                act.finished(task_id, outcome);
                act.start_next(ctx);
            })
            .spawn(ctx);
    }

    /// Records a finished task: result held for pickup, history, metrics,
    /// and the waiting request answered if it is still there.
    fn finished(&mut self, task_id: TaskId, outcome: Result<Outcome, MailboxError>) {
        let Some(running) = self.running.remove(&task_id) else {
            return;
        };
        let elapsed = running.started.elapsed().as_secs_f64();
        let outcome = outcome.unwrap_or_else(|e| Outcome {
            result: TaskResult::other(
                &running.task,
                RunStatus::Failed,
                elapsed,
                "simulation failed".into(),
                Some(format!("the simulation thread was lost: {e}")),
            ),
            particle_steps: 0.0,
            stepping_secs: 0.0,
        });
        let mut result = outcome.result;
        result.worker_id = Some(self.settings.worker_id.clone());
        result.completed_at = Some(crate::util::time::now_iso());
        result.priority = Some(running.task.priority);
        result.attempt_id = running.attempt_id;
        let status = result.result.status;
        let kernel = running.task.work.kernel();
        self.prometheus
            .finished(status, kernel.as_str(), result.execution_time);
        self.stats.record(Finished {
            status,
            algorithm: &result.algorithm,
            execution_time: result.execution_time,
            elapsed,
            particle_steps: outcome.particle_steps,
            stepping_secs: outcome.stepping_secs,
        });
        tracing::info!(task = %task_id, attempt = %crate::util::logging::AttemptField(running.attempt_id), %status,
            seconds = result.execution_time, "task finished");

        let result = Arc::new(result);
        self.held.insert(Arc::clone(&result));
        self.history.push_front(Arc::clone(&result));
        self.history.truncate(self.settings.history_size);
        if !running.reply.finished(result) {
            tracing::info!(task = %task_id, "the requester left; result held for pickup");
        }
        self.touch_state();
    }

    fn current(&self) -> Vec<CurrentTask> {
        let mut list: Vec<&Running> = self.running.values().collect();
        list.sort_by_key(|r| r.started);
        list.iter()
            .map(|r| {
                let (n, steps) = r.task.work.size();
                let done = r.control.steps_done();
                CurrentTask {
                    task_id: r.task.task_id.clone(),
                    attempt_id: r.attempt_id,
                    algorithm: r.task.algorithm.clone(),
                    kernel: r.task.work.kernel().to_string(),
                    num_particles: n,
                    num_steps: steps,
                    steps_done: done,
                    progress: if steps > 0 {
                        done as f64 / steps as f64
                    } else {
                        0.0
                    },
                    elapsed_seconds: r.started.elapsed().as_secs_f64(),
                    started_at: r.started_at.clone(),
                    cancelling: r.control.is_cancelled(),
                }
            })
            .collect()
    }

    fn state(&self) -> NodeState {
        if self.draining {
            NodeState::Draining
        } else if self.running.len() >= self.settings.capacity {
            NodeState::Full
        } else if self.running.is_empty() {
            NodeState::Idle
        } else {
            NodeState::Busy
        }
    }

    fn status(&self) -> StatusAnswer {
        StatusAnswer {
            worker_id: self.settings.worker_id.clone(),
            state: self.state(),
            capacity: self.settings.capacity,
            running: self.running.len(),
            backlog: self.backlog.len(),
            max_backlog: self.settings.max_backlog,
            algorithms: self.settings.algorithms.clone(),
            threads_per_task: self.settings.threads_per_task,
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            tasks_completed: self.stats.completed,
            tasks_failed: self.stats.failed,
            tasks_cancelled: self.stats.cancelled,
            results_held: self.held.len(),
        }
    }

    fn metrics(&self) -> WorkerMetrics {
        self.stats.snapshot(NodeFigures {
            worker_id: self.settings.worker_id.as_str(),
            running: self.running.len(),
            running_busy: self
                .running
                .values()
                .map(|r| r.started.elapsed().as_secs_f64())
                .sum(),
            uptime: self.started.elapsed().as_secs_f64(),
            capacity: self.settings.capacity,
            results_held: self.held.len(),
        })
    }
}

/// Sent by `GET /status` and `GET /health`.
#[derive(Message)]
#[rtype(result = "StatusAnswer")]
pub struct GetStatus;

impl Handler<GetStatus> for Executor {
    type Result = MessageResult<GetStatus>;
    fn handle(&mut self, _: GetStatus, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.status())
    }
}

/// Sent by `GET /metrics`.
#[derive(Message)]
#[rtype(result = "WorkerMetrics")]
pub struct GetMetrics;

impl Handler<GetMetrics> for Executor {
    type Result = MessageResult<GetMetrics>;
    fn handle(&mut self, _: GetMetrics, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.metrics())
    }
}

/// Sent by `GET /history`: the newest `limit` results, newest first.
#[derive(Message)]
#[rtype(result = "Vec<Arc<TaskResult>>")]
pub struct GetHistory {
    pub limit: usize,
}

impl Handler<GetHistory> for Executor {
    type Result = MessageResult<GetHistory>;
    fn handle(&mut self, msg: GetHistory, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.history.iter().take(msg.limit).cloned().collect())
    }
}

/// Sent by `GET /current`: tasks running now with their progress.
#[derive(Message)]
#[rtype(result = "Vec<CurrentTask>")]
pub struct GetCurrent;

impl Handler<GetCurrent> for Executor {
    type Result = MessageResult<GetCurrent>;
    fn handle(&mut self, _: GetCurrent, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.current())
    }
}

/// Sent by `POST /cancel/{task_id}`: true if the task was running (it
/// stops within about one simulation step).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Cancel {
    pub task_id: TaskId,
}

impl Handler<Cancel> for Executor {
    type Result = bool;
    fn handle(&mut self, msg: Cancel, _: &mut Self::Context) -> bool {
        match self.running.iter().find(|(id, _)| **id == msg.task_id) {
            Some((id, r)) => {
                tracing::info!(task = %id, "cancel requested");
                r.control.cancel();
                true
            }
            None => self.cancel_queued(msg.task_id.as_str()),
        }
    }
}

/// Sent by `POST /takeback/{task_id}`: give back a task sent ahead if it
/// has not started (see `Executor::take_back`).
#[derive(Message)]
#[rtype(result = "crate::protocol::node::TakeBackOutcome")]
pub struct TakeBack {
    pub task_id: TaskId,
    /// The attempt asked back; `None`: whichever attempt is here.
    pub attempt_id: Option<AttemptId>,
}

impl Handler<TakeBack> for Executor {
    type Result = MessageResult<TakeBack>;
    fn handle(&mut self, msg: TakeBack, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.take_back(&msg.task_id, msg.attempt_id))
    }
}

/// Sent by `GET /results/{task_id}`.
#[derive(Message)]
#[rtype(result = "Option<Arc<TaskResult>>")]
pub struct GetResult {
    pub task_id: TaskId,
}

impl Handler<GetResult> for Executor {
    type Result = Option<Arc<TaskResult>>;
    fn handle(&mut self, msg: GetResult, _: &mut Self::Context) -> Self::Result {
        self.held.get(msg.task_id.as_str())
    }
}

/// Sent by `DELETE /results/{task_id}` and `POST /results/ack`: frees held
/// results; answers how many were held.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct AckResults {
    pub task_ids: Vec<TaskId>,
}

impl Handler<AckResults> for Executor {
    type Result = usize;
    fn handle(&mut self, msg: AckResults, _: &mut Self::Context) -> usize {
        let freed = msg
            .task_ids
            .iter()
            .filter(|id| self.held.ack(id.as_str()))
            .count();
        if freed > 0 {
            self.touch_state();
        }
        freed
    }
}

/// Sent at shutdown: stop admitting tasks. Answers how many still run.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Drain;

impl Handler<Drain> for Executor {
    type Result = usize;
    fn handle(&mut self, _: Drain, _: &mut Self::Context) -> usize {
        if !self.draining {
            tracing::info!(running = self.running.len(), "draining: no new tasks accepted");
        }
        self.draining = true;
        self.touch_state();
        // what runs may be cut short: a checkpoint of each, at once
        self.request_checkpoints(true);
        // waiting tasks never ran: handed back, to run elsewhere
        self.refuse_backlog(Refusal::Draining);
        self.running.len()
    }
}

/// Sent at shutdown after the drain timeout: cancel everything still running.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CancelAll;

impl Handler<CancelAll> for Executor {
    type Result = usize;
    fn handle(&mut self, _: CancelAll, _: &mut Self::Context) -> usize {
        for (id, r) in &self.running {
            tracing::warn!(task = %id, "drain timeout: cancelling");
            r.control.cancel();
        }
        self.running.len()
    }
}

/// Sent last at shutdown: results journal and state file to disk.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

impl Handler<Flush> for Executor {
    type Result = ();
    fn handle(&mut self, _: Flush, _: &mut Self::Context) {
        self.held.flush();
        self.write_state_now();
    }
}
