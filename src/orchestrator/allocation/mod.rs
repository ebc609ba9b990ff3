//! Allocator: the allocation queues (workers from a cluster manager). Each
//! queue submits jobs when queued work exceeds what live workers and its
//! pending jobs will take ([`demand::jobs_wanted`]), never more than its
//! `max_jobs`; each job starts `orquesta worker --join` per slot
//! ([`spec::job_script`]), whose workers drain themselves before the time
//! limit and when idle, so the job ends by itself. Every command runs on
//! the blocking pool ([`manager`]) with a timeout, one at a time per queue,
//! so the cluster manager never holds up dispatch; failures are kept for
//! `GET /allocations` and retried with backoff. Queues and their live jobs
//! are kept in the database.
//!
//! Messages: [`ListAllocations`], [`AddAllocation`], [`PauseAllocation`],
//! [`RemoveAllocation`] (from `api::allocations`); [`AllocationTick`]
//! (its own timer).

pub mod demand;
pub mod manager;
mod requests;
mod runs;
pub mod spec;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::orchestrator::board::WorkerBoard;
use crate::orchestrator::store::{AllocationChange, Change, Store, StoredAllocation};
use crate::orchestrator::task_queue::TaskQueue;
use crate::protocol::allocations::{
    Allocation, AllocationError, AllocationJob, AllocationList, AllocationSpec, JobState, QueueState,
};
use crate::util::time::{iso_at, unix_now};
use demand::{jobs_wanted, read_demand, Demand};
use manager::{CommandError, JobStatus, ManagerState};
pub use requests::{AddAllocation, AllocationRefused, ListAllocations, PauseAllocation, RemoveAllocation};
use runs::{JobRun, QueueRun};
use spec::{check_spec, job_script, worker_prefix};

/// How often the allocator looks at the demand (it reads TaskQueue's
/// stats: once a second keeps that off the dispatch path).
const TICK: Duration = Duration::from_secs(1);
/// How often a queue asks its cluster manager about its jobs.
const POLL_EVERY: Duration = Duration::from_secs(2);
/// A job the manager runs this long without any worker joining is given up.
const JOIN_GRACE: Duration = Duration::from_secs(90);
/// First wait after a failure; doubles per failure in a row up to [`BACKOFF_MAX`].
const BACKOFF_BASE: Duration = Duration::from_secs(5);
const BACKOFF_MAX: Duration = Duration::from_secs(600);
/// Failed jobs still shown per queue.
const FAILED_SHOWN: usize = 5;

/// Where the allocator's jobs come from and go to.
pub struct AllocatorSettings {
    /// The URL the jobs' workers join.
    pub join_url: String,
    /// Whether that URL is loopback (the workers then bind loopback too).
    pub loopback: bool,
    /// The binary the jobs run.
    pub binary: PathBuf,
    /// Job scripts and outputs: `DIR/<queue>/`.
    pub dir: PathBuf,
    /// Passed to each job in its environment.
    pub token: Option<String>,
    /// `ALLOCATION_COMMAND_TIMEOUT`: the longest a submit, status or
    /// cancel command may take before it is killed.
    pub command_timeout: Duration,
}

pub struct Allocator {
    settings: AllocatorSettings,
    store: Store,
    queue: Addr<TaskQueue>,
    board: WorkerBoard,
    queues: BTreeMap<String, QueueRun>,
    next_seq: u64,
    reading_demand: bool,
}

impl Allocator {
    /// The allocator with the queues kept in the database.
    pub fn new(
        settings: AllocatorSettings,
        store: Store,
        queue: Addr<TaskQueue>,
        board: WorkerBoard,
        stored: Vec<StoredAllocation>,
    ) -> Self {
        let mut queues = BTreeMap::new();
        let mut next_seq = 1;
        for s in stored {
            let plan = serde_json::from_str::<AllocationSpec>(&s.spec)
                .map_err(|e| vec![e.to_string()])
                .and_then(|spec| check_spec(&spec));
            let plan = match plan {
                Ok(p) => p,
                Err(problems) => {
                    tracing::warn!(queue = %s.name, ?problems, "a kept allocation queue is unusable; ignored");
                    continue;
                }
            };
            let mut run = QueueRun::new(plan, s.paused);
            for j in s.jobs {
                next_seq = next_seq.max(j.seq + 1);
                run.jobs.push(JobRun {
                    id: j.job_id,
                    seq: j.seq,
                    submitted_at: j.submitted_at,
                    manager: ManagerState::Pending,
                    reason: Some("known from before a restart".into()),
                    running_since: None,
                    ever_joined: false,
                    adopted: true,
                    cancelled: false,
                    failed: None,
                });
            }
            queues.insert(s.name, run);
        }
        if !queues.is_empty() {
            tracing::info!(
                queues = queues.len(),
                "allocation queues restored from the database"
            );
        }
        Self {
            settings,
            store,
            queue,
            board,
            queues,
            next_seq,
            reading_demand: false,
        }
    }

    /// The ids of the registered workers of a job that take tasks.
    fn joined(&self, queue: &str, seq: u64) -> Vec<crate::model::WorkerId> {
        let prefix = worker_prefix(queue, seq);
        self.board
            .list()
            .into_iter()
            .filter(|w| w.id.starts_with(&prefix))
            .map(|w| crate::model::WorkerId::new(&w.id))
            .collect()
    }

    fn view(&self, name: &str, q: &QueueRun) -> Allocation {
        let now = unix_now();
        let jobs = q
            .jobs
            .iter()
            .map(|j| {
                let workers = self.joined(name, j.seq);
                let state = if j.failed.is_some() {
                    JobState::Failed
                } else if j.cancelled || (j.ever_joined && workers.is_empty()) {
                    JobState::Ending
                } else if !workers.is_empty() {
                    JobState::Running
                } else {
                    JobState::Pending
                };
                AllocationJob {
                    id: j.id.clone(),
                    state,
                    workers_joined: workers.len(),
                    workers,
                    age_seconds: (now - j.submitted_at).max(0.0),
                    submitted_at: iso_at(j.submitted_at),
                    reason: j.failed.clone().or_else(|| j.reason.clone()),
                }
            })
            .collect();
        let state = if q.removing {
            QueueState::Removing
        } else if q.paused {
            QueueState::Paused
        } else if q.backing_off() {
            QueueState::BackingOff
        } else {
            QueueState::Active
        };
        Allocation {
            name: name.to_string(),
            kind: q.plan.spec.kind,
            spec: q.plan.spec.clone(),
            state,
            paused: q.paused,
            jobs,
            jobs_submitted: q.submitted,
            jobs_failed: q.failed,
            backoff_until: q
                .backoff_until
                .filter(|_| q.backing_off())
                .map(|(_, at)| iso_at(at)),
            last_error: q.last_error.clone(),
        }
    }

    /// Notes which jobs have workers now (a join resets the backoff).
    fn note_joins(&mut self) {
        let joined: Vec<(String, u64)> = self
            .queues
            .iter()
            .flat_map(|(name, q)| {
                q.jobs
                    .iter()
                    .filter(|j| j.alive() && !j.ever_joined)
                    .map(move |j| (name.clone(), j.seq))
            })
            .filter(|(name, seq)| !self.joined(name, *seq).is_empty())
            .collect();
        for (name, seq) in joined {
            if let Some(q) = self.queues.get_mut(&name) {
                q.failures_in_a_row = 0;
                q.backoff_until = None;
                if let Some(j) = q.jobs.iter_mut().find(|j| j.seq == seq) {
                    j.ever_joined = true;
                    tracing::info!(queue = %name, job = %j.id, "allocation job's first worker joined");
                }
            }
        }
    }

    /// One decision per idle queue: cancel (removing), poll, or submit.
    fn decide(&mut self, demand: &Demand, ctx: &mut Context<Self>) {
        self.note_joins();
        let names: Vec<String> = self.queues.keys().cloned().collect();
        for name in names {
            let Some(q) = self.queues.get(&name) else { continue };
            if q.busy {
                continue;
            }
            if q.removing {
                let next = q.alive_jobs().find(|j| !j.cancelled).map(|j| j.id.clone());
                match next {
                    Some(id) => self.cancel(&name, id, "its queue was removed", ctx),
                    None => {
                        self.queues.remove(&name);
                    }
                }
                continue;
            }
            let poll_due = q.last_poll.is_none_or(|t| t.elapsed() >= POLL_EVERY);
            if poll_due && q.alive_jobs().next().is_some() {
                self.poll(&name, ctx);
                continue;
            }
            // a job the manager runs but whose workers never came
            let stuck = q.alive_jobs().find(|j| {
                !j.ever_joined && !j.cancelled && j.running_since.is_some_and(|t| t.elapsed() >= JOIN_GRACE)
            });
            if let Some(id) = stuck.map(|j| j.id.clone()) {
                let why = format!(
                    "running for {}s but no worker joined; see {}",
                    JOIN_GRACE.as_secs(),
                    self.settings
                        .dir
                        .join(&name)
                        .join(format!("job-{id}.out"))
                        .display()
                );
                self.cancel(&name, id, &why, ctx);
                continue;
            }
            if q.paused || q.backing_off() {
                continue;
            }
            let pending_slots = q.alive_jobs().filter(|j| !j.ever_joined).count() * q.plan.slots_per_job();
            let wanted = jobs_wanted(
                demand,
                q.plan.kernels.as_deref(),
                q.plan.slots_per_job(),
                pending_slots,
                q.alive_jobs().count(),
                q.plan.spec.max_jobs as usize,
            );
            if wanted > 0 {
                self.submit(&name, ctx);
            }
        }
    }

    fn submit(&mut self, name: &str, ctx: &mut Context<Self>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let Some(q) = self.queues.get_mut(name) else {
            return;
        };
        let dir = self.settings.dir.join(name);
        let script_path = dir.join(format!("job-{seq}.sh"));
        let script = job_script(
            &q.plan,
            seq,
            &self.settings.join_url,
            &self.settings.binary,
            self.settings.loopback,
        );
        let manager = q.plan.manager.clone();
        let mut env = Vec::new();
        if let Some(t) = &self.settings.token {
            env.push(("ORQUESTA_TOKEN".to_string(), t.clone()));
        }
        q.busy = true;
        let timeout = self.settings.command_timeout;
        let work = move || -> Result<String, CommandError> {
            write_script(&dir, &script_path, &script).map_err(|e| CommandError {
                message: format!("cannot write the job script {}: {e}", script_path.display()),
                output: String::new(),
            })?;
            manager.submit(&script_path, &env, timeout)
        };
        let name = name.to_string();
        let started = Instant::now();
        ctx.spawn(
            actix::fut::wrap_future(actix_rt::task::spawn_blocking(work)).map(move |res, act: &mut Self, _| {
                let Some(q) = act.queues.get_mut(&name) else { return };
                q.busy = false;
                match res.unwrap_or_else(|e| {
                    Err(CommandError {
                        message: format!("the submit command panicked: {e}"),
                        output: String::new(),
                    })
                }) {
                    Ok(id) => {
                        let at = unix_now();
                        tracing::info!(queue = %name, job = %id, seq, took_ms = started.elapsed().as_millis() as u64,
                            "allocation job submitted");
                        q.submitted += 1;
                        q.jobs.push(JobRun {
                            id: id.clone(),
                            seq,
                            submitted_at: at,
                            manager: ManagerState::Pending,
                            reason: None,
                            running_since: None,
                            ever_joined: false,
                            adopted: false,
                            cancelled: false,
                            failed: None,
                        });
                        act.store.persist(vec![Change::Allocation(AllocationChange::JobSubmitted {
                            queue: name.clone(),
                            job_id: id,
                            seq,
                            at,
                        })]);
                    }
                    Err(e) => {
                        tracing::warn!(queue = %name, error = %e.message, output = %e.output, "allocation job not submitted");
                        q.note_error(&e);
                        q.failed += 1;
                        q.back_off();
                    }
                }
            }),
        );
    }

    fn poll(&mut self, name: &str, ctx: &mut Context<Self>) {
        let Some(q) = self.queues.get_mut(name) else {
            return;
        };
        q.busy = true;
        q.last_poll = Some(Instant::now());
        let ids: Vec<String> = q.alive_jobs().map(|j| j.id.clone()).collect();
        let manager = q.plan.manager.clone();
        let timeout = self.settings.command_timeout;
        let work = move || -> Vec<(String, Result<JobStatus, CommandError>)> {
            ids.into_iter()
                .map(|id| {
                    let s = manager.status(&id, timeout);
                    (id, s)
                })
                .collect()
        };
        let name = name.to_string();
        ctx.spawn(actix::fut::wrap_future(actix_rt::task::spawn_blocking(work)).map(
            move |res, act: &mut Self, _| {
                let statuses = res.unwrap_or_default();
                act.apply_statuses(&name, statuses);
            },
        ));
    }

    fn apply_statuses(&mut self, name: &str, statuses: Vec<(String, Result<JobStatus, CommandError>)>) {
        let joined: Vec<(u64, bool)> = match self.queues.get(name) {
            Some(q) => q
                .jobs
                .iter()
                .map(|j| (j.seq, !self.joined(name, j.seq).is_empty()))
                .collect(),
            None => return,
        };
        let Some(q) = self.queues.get_mut(name) else {
            return;
        };
        q.busy = false;
        let mut gone = Vec::new();
        for (id, status) in statuses {
            let Some(j) = q.jobs.iter_mut().find(|j| j.id == id) else {
                continue;
            };
            let status = match status {
                Ok(s) => s,
                Err(e) => {
                    q.last_error = Some(AllocationError {
                        at: iso_at(unix_now()),
                        message: e.message,
                        output: e.output,
                    });
                    continue;
                }
            };
            if status.state == ManagerState::Running && j.running_since.is_none() {
                j.running_since = Some(Instant::now());
            }
            j.manager = status.state;
            j.reason = status.reason;
            let has_workers = joined.iter().any(|(s, w)| *s == j.seq && *w);
            match status.state {
                ManagerState::Pending | ManagerState::Running => {}
                ManagerState::Ended if j.ever_joined || j.cancelled || has_workers || j.adopted => {
                    tracing::info!(queue = %name, job = %id, "allocation job ended");
                    gone.push(id.clone());
                }
                ManagerState::Ended | ManagerState::Failed => {
                    let why = format!(
                        "{} ({}); see {}",
                        if j.ever_joined || j.adopted {
                            "the job failed"
                        } else {
                            "the job ended without any worker joining"
                        },
                        j.reason.clone().unwrap_or_else(|| "no reason given".into()),
                        self.settings
                            .dir
                            .join(name)
                            .join(format!("job-{id}.out"))
                            .display()
                    );
                    tracing::warn!(queue = %name, job = %id, reason = %why, "allocation job failed");
                    j.failed = Some(why.clone());
                    q.failed += 1;
                    q.last_error = Some(AllocationError {
                        at: iso_at(unix_now()),
                        message: format!("job {id}: {why}"),
                        output: String::new(),
                    });
                    if !j.cancelled || !j.ever_joined {
                        q.back_off();
                    }
                    gone.push(id.clone());
                }
            }
        }
        // ended jobs leave the list; failed ones stay a while to be seen
        q.jobs.retain(|j| !(j.failed.is_none() && gone.contains(&j.id)));
        let failed: Vec<usize> = q
            .jobs
            .iter()
            .enumerate()
            .filter(|(_, j)| j.failed.is_some())
            .map(|(i, _)| i)
            .collect();
        if failed.len() > FAILED_SHOWN {
            let drop: Vec<String> = failed[..failed.len() - FAILED_SHOWN]
                .iter()
                .map(|&i| q.jobs[i].id.clone())
                .collect();
            q.jobs.retain(|j| !drop.contains(&j.id));
        }
        let changes = gone
            .into_iter()
            .map(|job_id| {
                Change::Allocation(AllocationChange::JobGone {
                    queue: name.to_string(),
                    job_id,
                })
            })
            .collect();
        self.store.persist(changes);
    }

    fn cancel(&mut self, name: &str, id: String, why: &str, ctx: &mut Context<Self>) {
        let Some(q) = self.queues.get_mut(name) else {
            return;
        };
        q.busy = true;
        if let Some(j) = q.jobs.iter_mut().find(|j| j.id == id) {
            j.cancelled = true;
            j.reason = Some(format!("cancelled: {why}"));
            if !j.ever_joined && !q.removing {
                j.failed = Some(why.to_string());
                q.failed += 1;
                q.back_off();
                self.store
                    .persist(vec![Change::Allocation(AllocationChange::JobGone {
                        queue: name.to_string(),
                        job_id: id.clone(),
                    })]);
            }
        }
        tracing::info!(queue = %name, job = %id, reason = why, "cancelling allocation job");
        let manager = q.plan.manager.clone();
        let name = name.to_string();
        let timeout = self.settings.command_timeout;
        ctx.spawn(
            actix::fut::wrap_future(actix_rt::task::spawn_blocking(move || {
                manager.cancel(&id, timeout)
            }))
            .map(move |res, act: &mut Self, _| {
                let Some(q) = act.queues.get_mut(&name) else {
                    return;
                };
                q.busy = false;
                if let Ok(Err(e)) = res {
                    q.note_error(&e);
                }
            }),
        );
    }
}

/// Writes a job script readable and runnable by its owner only.
fn write_script(dir: &std::path::Path, path: &std::path::Path, text: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("logs"))?;
    std::fs::write(path, text)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

impl Actor for Allocator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(TICK, |_, ctx| ctx.notify(AllocationTick));
    }
}

/// The allocator's timer: read the demand, then decide per queue.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AllocationTick;

impl Handler<AllocationTick> for Allocator {
    type Result = ();
    fn handle(&mut self, _: AllocationTick, ctx: &mut Self::Context) {
        if self.reading_demand || self.queues.is_empty() {
            return;
        }
        self.reading_demand = true;
        let (queue, board) = (self.queue.clone(), self.board.clone());
        ctx.spawn(
            actix::fut::wrap_future(async move { read_demand(&queue, &board).await }).map(
                |demand, act: &mut Self, ctx| {
                    act.reading_demand = false;
                    if let Some(d) = demand {
                        act.decide(&d, ctx);
                    }
                },
            ),
        );
    }
}
