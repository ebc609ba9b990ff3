//! `reference` (alias `python`): every pair, every step, written to be
//! obviously right rather than fast. O(N²) per step.

use super::checkpoint::KernelState;
use super::kernel::{Estimate, Kernel, Run};
use super::system::{sum_v2, wrap, LennardJones, Physics, State};

pub struct Reference;

/// Forces on every particle, the total potential energy and the pair
/// virial Σ rᵢⱼ·fᵢⱼ, from a direct sum over all pairs i < j with the
/// minimum-image convention.
/// Returns None if `cancelled` said yes part-way (checked every 256 rows, so
/// that a huge N still stops within milliseconds).
fn forces(
    pos: &[[f64; 2]],
    box_len: f64,
    lj: &LennardJones,
    force: &mut [[f64; 2]],
    cancelled: &dyn Fn() -> bool,
) -> Option<(f64, f64)> {
    force.iter_mut().for_each(|f| *f = [0.0, 0.0]);
    let mut potential = 0.0;
    let mut virial = 0.0;
    for i in 0..pos.len() {
        if i % 256 == 255 && cancelled() {
            return None;
        }
        for j in (i + 1)..pos.len() {
            let mut dx = pos[i][0] - pos[j][0];
            let mut dy = pos[i][1] - pos[j][1];
            dx -= box_len * (dx / box_len).round();
            dy -= box_len * (dy / box_len).round();
            let r2 = dx * dx + dy * dy;
            if r2 < lj.cutoff_sq {
                let (energy, factor) = lj.pair(r2);
                potential += energy;
                // rᵢⱼ·fᵢⱼ = (dx, dy)·factor·(dx, dy)
                virial += factor * r2;
                force[i][0] += factor * dx;
                force[i][1] += factor * dy;
                force[j][0] -= factor * dx;
                force[j][1] -= factor * dy;
            }
        }
    }
    Some((potential, virial))
}

impl Kernel for Reference {
    fn name(&self) -> &'static str {
        "reference"
    }

    fn summary(&self) -> &'static str {
        "direct sum over all pairs, O(N^2) per step, one thread"
    }

    fn build(&self) -> &'static str {
        "reference-1"
    }

    fn estimate(&self, physics: &Physics, num_steps: u64) -> Estimate {
        let n = physics.num_particles as f64;
        Estimate {
            pair_evaluations: n * (n - 1.0) / 2.0 * (num_steps as f64 + 1.0),
            memory_bytes: n * 3.0 * 16.0,
        }
    }

    fn run(&self, mut state: State, run: &mut Run<'_>) -> State {
        // a checkpoint's positions give its forces again, bit for bit
        let resumed = match run.take_resume() {
            Some(KernelState::Plain { box_len, pos, vel }) => {
                state = State { box_len, pos, vel };
                true
            }
            Some(KernelState::Sorted { .. }) => unreachable!("Checkpoint::check matches the state's kind"),
            None => false,
        };
        let physics = *run.physics();
        let lj = LennardJones::new(physics.cutoff);
        let (dt, box_len) = (physics.dt, state.box_len);
        let n = state.pos.len();
        let mut force = vec![[0.0; 2]; n];
        run.note_memory((3 * n * std::mem::size_of::<[f64; 2]>()) as u64);

        let control = run.control();
        let cancelled = || control.is_cancelled();
        let Some((potential, virial)) = forces(&state.pos, box_len, &lj, &mut force, &cancelled) else {
            run.stop_cancelled();
            return state;
        };
        if !resumed && !run.record(potential, 0.5 * sum_v2(&state.vel), virial) {
            return state;
        }
        for _ in 0..run.steps_left() {
            for ((v, x), f) in state.vel.iter_mut().zip(&mut state.pos).zip(&force) {
                for d in 0..2 {
                    v[d] += 0.5 * dt * f[d];
                    x[d] = wrap(x[d] + dt * v[d], box_len);
                }
            }
            let Some((potential, virial)) = forces(&state.pos, box_len, &lj, &mut force, &cancelled) else {
                run.stop_cancelled();
                break;
            };
            for (v, f) in state.vel.iter_mut().zip(&force) {
                v[0] += 0.5 * dt * f[0];
                v[1] += 0.5 * dt * f[1];
            }
            if !run.record(potential, 0.5 * sum_v2(&state.vel), virial) {
                break;
            }
            if run.checkpoint_due() {
                run.save_checkpoint(KernelState::Plain {
                    box_len,
                    pos: state.pos.clone(),
                    vel: state.vel.clone(),
                });
            }
        }
        state
    }
}
