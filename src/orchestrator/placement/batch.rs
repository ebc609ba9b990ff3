//! The placement of one batch: in which order its tasks are placed and
//! where each goes. Apart from the actor (which says who may take what)
//! so that `orquesta bench makespan` drives this very code in simulated
//! time.

use super::expected::{largest_first, Expected, TaskSize};
use super::strategy::{Load, Strategy};
use crate::model::{Priority, WorkerId};

/// Places `tasks` (priority rank, size; best priority first) among the
/// workers `ids`, whose `loads` are updated as tasks are placed. A task
/// `k` may go to worker `i` only when `allowed(k, i, loads)`. A strategy
/// that [`Strategy::uses_estimates`] gets each worker's expected finish
/// of the task and the batch largest first within each priority; the
/// others get it in the order given and pay nothing for the model. Every
/// placement is recorded in `expected` at `now`. Answers, per task in the
/// order given, the index of its worker (`None`: no room for it now).
pub fn place_batch(
    strategy: &mut dyn Strategy,
    expected: &mut Expected,
    ids: &[WorkerId],
    loads: &mut [Load],
    tasks: &[(Priority, TaskSize)],
    now: f64,
    allowed: &dyn Fn(usize, usize, &[Load]) -> bool,
) -> Vec<Option<usize>> {
    let estimates = strategy.uses_estimates();
    let order = if estimates {
        let sizes: Vec<(Priority, f64)> = tasks
            .iter()
            .map(|(priority, size)| (*priority, expected.typical_seconds(size)))
            .collect();
        largest_first(&sizes)
    } else {
        (0..tasks.len()).collect()
    };
    let mut out = vec![None; tasks.len()];
    for k in order {
        let size = tasks[k].1;
        if estimates {
            for (i, id) in ids.iter().enumerate() {
                loads[i].expected_finish = expected.finish_in(id, loads[i].capacity, &size, now);
            }
        }
        let pick = {
            let l = &*loads;
            strategy.pick(l, &|i| allowed(k, i, l))
        };
        if let Some(i) = pick {
            loads[i].in_flight += 1;
            expected.placed(&ids[i], Some(size), now);
            out[k] = Some(i);
        }
    }
    out
}
