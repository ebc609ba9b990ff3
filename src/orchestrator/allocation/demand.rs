//! What the allocator decides on: the queued tasks per kernel and the live
//! workers' room, read through [`read_demand`] (the one place that knows
//! where those figures live: TaskQueue's stats and the worker board), and
//! [`jobs_wanted`], the pure rule that turns them into a number of jobs.

use std::collections::BTreeMap;

use actix::Addr;

use crate::model::KernelName;
use crate::orchestrator::board::{WorkerBoard, WorkerState};
use crate::orchestrator::task_queue::{QueueStats, TaskQueue};

/// A worker that takes (or will soon take) tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveWorker {
    pub id: String,
    pub kernels: Vec<KernelName>,
    pub capacity: usize,
    pub in_flight: usize,
    /// Tasks sent ahead to it, waiting there for a slot: work that waits.
    pub backlog: usize,
    /// Up: takes tasks now (a worker not heard from yet may never be: its
    /// room is not counted, or a stale row would hold work back forever).
    pub taking: bool,
}

/// The work waiting and the room for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Demand {
    /// Tasks ready to run, by kernel name.
    pub queued_by_kernel: BTreeMap<String, usize>,
    pub workers: Vec<LiveWorker>,
}

/// Reads the demand now; `None` when TaskQueue does not answer.
pub async fn read_demand(queue: &Addr<TaskQueue>, board: &WorkerBoard) -> Option<Demand> {
    let stats = queue.send(QueueStats).await.ok()?;
    let workers = board
        .list()
        .into_iter()
        .map(|w| LiveWorker {
            taking: w.state == WorkerState::Up,
            id: w.id,
            kernels: w.kernels,
            capacity: w.capacity,
            in_flight: w.in_flight,
            backlog: w.backlog,
        })
        .collect();
    Some(Demand {
        queued_by_kernel: stats.queue.ready_by_kernel,
        workers,
    })
}

/// How many jobs a queue should submit now.
///
/// `kernels`: what its workers run (`None`: every kernel); `slots_per_job`:
/// workers per job × capacity; `pending_slots`: the slots of its jobs whose
/// workers have not joined yet; `alive_jobs`: its jobs not ended. Only
/// tasks its workers could run count, and only what the workers that take
/// them (free slots) and the jobs already asked for (pending slots) will
/// not absorb; never past `max_jobs`. Tasks sent ahead to a worker and
/// waiting there for a slot count as waiting work (pipelined dispatch may
/// send a whole drop ahead to the first worker that joins).
pub fn jobs_wanted(
    demand: &Demand,
    kernels: Option<&[KernelName]>,
    slots_per_job: usize,
    pending_slots: usize,
    alive_jobs: usize,
    max_jobs: usize,
) -> usize {
    let runs = |k: &str| kernels.is_none_or(|ks| ks.iter().any(|x| x == k));
    let queued: usize = demand
        .queued_by_kernel
        .iter()
        .filter(|(k, _)| runs(k))
        .map(|(_, n)| n)
        .sum();
    let ours = |w: &&LiveWorker| w.kernels.iter().any(|k| runs(k.as_str()));
    let sent_ahead: usize = demand.workers.iter().filter(ours).map(|w| w.backlog).sum();
    let free: usize = demand
        .workers
        .iter()
        .filter(|w| w.taking)
        .filter(ours)
        .map(|w| w.capacity.saturating_sub(w.in_flight))
        .sum();
    let queued = queued + sent_ahead;
    let uncovered = queued.saturating_sub(free + pending_slots);
    let room = max_jobs.saturating_sub(alive_jobs);
    uncovered.div_ceil(slots_per_job.max(1)).min(room)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(name: &str) -> KernelName {
        KernelName::resolve(name).unwrap()
    }

    fn demand(queued: &[(&str, usize)], workers: Vec<LiveWorker>) -> Demand {
        Demand {
            queued_by_kernel: queued.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
            workers,
        }
    }

    fn worker(kernels: &[&str], capacity: usize, in_flight: usize) -> LiveWorker {
        LiveWorker {
            id: "w".into(),
            kernels: kernels.iter().map(|k| kernel(k)).collect(),
            capacity,
            in_flight,
            backlog: in_flight.saturating_sub(capacity),
            taking: true,
        }
    }

    #[test]
    fn queued_work_past_the_room_asks_for_jobs_up_to_the_limit() {
        let d = demand(&[("reference", 200)], vec![]);
        assert_eq!(jobs_wanted(&d, None, 4, 0, 0, 3), 3);
        assert_eq!(jobs_wanted(&d, None, 4, 0, 2, 3), 1);
        assert_eq!(jobs_wanted(&d, None, 4, 0, 3, 3), 0);
        let few = demand(&[("reference", 5)], vec![]);
        assert_eq!(jobs_wanted(&few, None, 4, 0, 0, 10), 2);
    }

    #[test]
    fn free_slots_and_pending_jobs_absorb_work_first() {
        let d = demand(&[("reference", 6)], vec![worker(&["reference"], 4, 0)]);
        assert_eq!(jobs_wanted(&d, None, 2, 0, 0, 10), 1);
        assert_eq!(jobs_wanted(&d, None, 2, 2, 1, 10), 0);
        let nothing = demand(&[], vec![]);
        assert_eq!(jobs_wanted(&nothing, None, 1, 0, 0, 10), 0);
    }

    #[test]
    fn a_queue_whose_workers_cannot_run_a_task_does_not_submit_for_it() {
        let d = demand(&[("optimized", 50)], vec![]);
        let only_reference = [kernel("reference")];
        assert_eq!(jobs_wanted(&d, Some(&only_reference), 1, 0, 0, 5), 0);
        assert_eq!(jobs_wanted(&d, Some(&[kernel("optimized")]), 1, 0, 0, 5), 5);
        // a worker that cannot run them does not absorb them either
        let busy = demand(&[("optimized", 2)], vec![worker(&["reference"], 8, 0)]);
        assert_eq!(jobs_wanted(&busy, Some(&[kernel("optimized")]), 1, 0, 0, 5), 2);
    }

    #[test]
    fn work_sent_ahead_to_a_busy_worker_still_asks_for_jobs() {
        // a drop of 200 all sent ahead to the one worker of 2 slots
        let d = demand(&[], vec![worker(&["reference"], 2, 200)]);
        assert_eq!(jobs_wanted(&d, None, 4, 0, 1, 3), 2);
        assert_eq!(jobs_wanted(&d, None, 4, 8, 3, 3), 0);
    }
}
