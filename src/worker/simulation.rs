//! SimulationActor: runs one task at a time on its own thread of a
//! `SyncArbiter`, so CPU-bound work never blocks the async runtime. The
//! worker's Executor sends it [`RunTask`] and gets the result back; a panic
//! in a kernel becomes a failed result, never a lost thread.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::model::{AttemptId, RunStatus, Task, TaskResult, TestKernel, Work};
use crate::sim::{self, Checkpointing, Control, Limits, RunOptions, SimError};
use crate::worker::checkpoint::{Upload, UploadSender};

/// One simulation thread.
pub struct SimulationActor {
    /// Threads each simulation may use (cores / capacity, at least 1), so
    /// that `capacity` tasks at once never oversubscribe the machine.
    pub threads: usize,
    pub limits: Limits,
}

impl Actor for SimulationActor {
    type Context = SyncContext<Self>;
}

/// Sent by the Executor: run `task` to the end or until `control` says
/// cancel. Answers with the result (never an error: failures are results).
#[derive(Message)]
#[rtype(result = "Outcome")]
pub struct RunTask {
    pub task: Arc<Task>,
    pub control: Arc<Control>,
    /// Checkpointing of this run: where its checkpoints go, and the one to
    /// resume from.
    pub checkpoints: RunCheckpoints,
}

/// Where a run's checkpoints go and the one it resumes from.
#[derive(Default)]
pub struct RunCheckpoints {
    pub uploads: Option<UploadSender>,
    pub attempt_id: Option<AttemptId>,
    /// A checkpoint's bytes, as the orchestrator held them.
    pub resume: Option<Vec<u8>>,
}

/// A finished task: its result, and what it computed for the metrics.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub result: TaskResult,
    pub particle_steps: f64,
    pub stepping_secs: f64,
}

impl Handler<RunTask> for SimulationActor {
    type Result = MessageResult<RunTask>;

    fn handle(&mut self, msg: RunTask, _: &mut Self::Context) -> Self::Result {
        let started = Instant::now();
        let task = &msg.task;
        let run = panic::catch_unwind(AssertUnwindSafe(|| self.run(task, &msg.control, msg.checkpoints)));
        let outcome = run.unwrap_or_else(|payload| {
            let reason = panic_message(payload.as_ref());
            tracing::error!(task = %task.task_id, %reason, "kernel panicked");
            Outcome {
                result: TaskResult::other(
                    task,
                    RunStatus::Failed,
                    started.elapsed().as_secs_f64(),
                    "simulation failed: the kernel panicked".into(),
                    Some(format!("kernel panicked: {reason}")),
                ),
                particle_steps: 0.0,
                stepping_secs: 0.0,
            }
        });
        MessageResult(outcome)
    }
}

impl SimulationActor {
    fn run(&self, task: &Task, control: &Control, checkpoints: RunCheckpoints) -> Outcome {
        let started = Instant::now();
        match &task.work {
            Work::Simulation { kernel, params } => {
                let options = RunOptions {
                    threads: self.threads,
                    limits: self.limits,
                };
                let RunCheckpoints {
                    uploads,
                    attempt_id,
                    resume,
                } = checkpoints;
                let task_id = task.task_id.clone();
                let sink = match (uploads, attempt_id) {
                    (Some(uploads), Some(attempt_id)) => Some(Box::new(move |c: sim::Checkpoint| {
                        let _ = uploads.send(Upload {
                            task_id: task_id.clone(),
                            attempt_id,
                            step: c.step,
                            bytes: c.encode(),
                        });
                    })
                        as sim::CheckpointSink<'_>),
                    _ => None,
                };
                let checkpointing = Checkpointing {
                    resume: resume.as_deref(),
                    sink,
                    at_step: None,
                };
                match sim::simulate_with(kernel.as_str(), params, &options, control, checkpointing) {
                    Ok(report) => {
                        if let Some(why) = &report.resume_refused {
                            tracing::warn!(task = %task.task_id, reason = %why,
                                "checkpoint refused; the task started again from step 0");
                        } else if let Some(step) = report.resumed_from_step {
                            tracing::info!(task = %task.task_id, step, "resumed from a checkpoint");
                        }
                        let steps = report.metrics.steps_completed as f64;
                        let n = report.metrics.particles_processed as f64;
                        let rate = report.metrics.particle_steps_per_second;
                        let result = TaskResult::from_report(
                            &task.task_id,
                            &task.algorithm,
                            task.parameters.clone(),
                            &report,
                        );
                        Outcome {
                            result,
                            particle_steps: n * steps,
                            stepping_secs: if rate > 0.0 { n * steps / rate } else { 0.0 },
                        }
                    }
                    // validated on arrival, so only a limit changed in between
                    Err(e @ (SimError::UnknownAlgorithm { .. } | SimError::InvalidParameters(_))) => {
                        Outcome {
                            result: TaskResult::other(
                                task,
                                RunStatus::Failed,
                                started.elapsed().as_secs_f64(),
                                "simulation refused".into(),
                                Some(e.to_string()),
                            ),
                            particle_steps: 0.0,
                            stepping_secs: 0.0,
                        }
                    }
                }
            }
            Work::Test(kernel) => {
                let (status, output) = run_test_kernel(*kernel, control);
                Outcome {
                    result: TaskResult::other(task, status, started.elapsed().as_secs_f64(), output, None),
                    particle_steps: 0.0,
                    stepping_secs: 0.0,
                }
            }
        }
    }
}

/// The fault-test kernels (enabled only with `ORQUESTA_TEST_KERNELS=1`).
fn run_test_kernel(kernel: TestKernel, control: &Control) -> (RunStatus, String) {
    match kernel {
        TestKernel::Sleep { seconds } => {
            let until = Instant::now() + Duration::from_secs_f64(seconds);
            while Instant::now() < until {
                if control.is_cancelled() {
                    return (RunStatus::Cancelled, "sleep cancelled".into());
                }
                std::thread::sleep(
                    Duration::from_millis(5).min(until.saturating_duration_since(Instant::now())),
                );
            }
            (RunStatus::Completed, format!("slept {seconds} s"))
        }
        TestKernel::Panic => panic!("__panic test kernel: panicking on purpose"),
        TestKernel::Abort => {
            tracing::error!("__abort test kernel: aborting the worker process on purpose");
            std::process::abort()
        }
    }
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
