//! The thread that owns a run ([`Driver`]: phases, rebuilds, records)
//! and the fork-join pool its helpers wait in.

use super::*;

/// The thread that owns the run: opens phases, sorts, records energies.
pub(super) struct Driver<'a> {
    pub(super) sim: &'a Sim<'a>,
    pub(super) pool: &'a Pool,
    pub(super) helpers: usize,
}

impl Driver<'_> {
    pub(super) fn phase(&self, phase: Phase) {
        self.pool
            .run(self.sim, phase, self.sim.units(phase), self.helpers);
    }

    /// Sorts by cell and builds the lists. Only ever called while every
    /// force is zero (a new run, a restore before its forces are put back,
    /// or a step after [`Sim::kick_drift`] cleared them), so the sort need
    /// not move the forces ([`PERMUTED_ARRAYS`]).
    pub(super) fn rebuild(&self) {
        if self.sim.sort_by_cell() {
            self.phase(Phase::Permute);
            self.sim.sort_finish();
        }
        self.phase(Phase::BuildLists);
    }

    pub(super) fn forces(&self) {
        self.phase(Phase::ForcesEven);
        self.phase(Phase::ForcesOdd);
    }

    pub(super) fn integrate(&self, run: &mut Run<'_>) {
        self.rebuild();
        self.forces();
        self.phase(Phase::Kinetic);
        let (potential, kinetic, virial) = self.sim.energies();
        if !run.record(potential, kinetic, virial) {
            return;
        }
        self.steps(run);
    }

    /// Rebuilds the lists a checkpoint's run had (its particles, in their
    /// saved order, stand at their build positions), then puts back the
    /// positions and forces of its last step.
    pub(super) fn restore(&self, pos: Vec<[f64; 2]>, force: Vec<[f64; 2]>) {
        self.rebuild();
        // SAFETY: no phase is open, so the driver is the only user.
        let p = unsafe { &mut *self.sim.particles.get() };
        let n = self.sim.n;
        p.pos[..n].copy_from_slice(&pos);
        p.force[..n].copy_from_slice(&force);
    }

    /// The state of the run now, for a checkpoint. No phase is open.
    pub(super) fn snapshot(&self) -> KernelState {
        // SAFETY: no phase is open, so the driver is the only user.
        let p = unsafe { &*self.sim.particles.get() };
        let n = self.sim.n;
        KernelState::Sorted {
            box_len: self.sim.box_len,
            pos: p.pos[..n].to_vec(),
            vel: p.vel[..n].to_vec(),
            force: p.force[..n].to_vec(),
            built_at: p.built_at[..n].to_vec(),
            orig: p.orig.clone(),
        }
    }

    /// The steps left after the last recorded one.
    pub(super) fn steps(&self, run: &mut Run<'_>) {
        let skin_half_sq = 0.25 * SKIN * SKIN;
        for _ in 0..run.steps_left() {
            self.phase(Phase::KickDrift);
            if self.sim.max_displacement_sq() > skin_half_sq {
                self.rebuild();
            }
            self.forces();
            if self.sim.interrupted.load(Ordering::Relaxed) {
                run.stop_cancelled();
                return;
            }
            self.phase(Phase::Kick);
            let (potential, kinetic, virial) = self.sim.energies();
            if !run.record(potential, kinetic, virial) {
                return;
            }
            if run.checkpoint_due() {
                run.save_checkpoint(self.snapshot());
            }
        }
    }
}

/// A fork-join pool that lives for one run: the driver opens a phase, every
/// thread takes units from a shared counter, the driver waits for all.
pub(super) struct Pool {
    generation: AtomicU64,
    phase: AtomicUsize,
    units: AtomicUsize,
    next: AtomicUsize,
    busy: AtomicUsize,
    quit: AtomicBool,
}

impl Pool {
    pub(super) fn new() -> Self {
        Self {
            generation: AtomicU64::new(0),
            phase: AtomicUsize::new(0),
            units: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            quit: AtomicBool::new(false),
        }
    }

    pub(super) fn take_units(&self, sim: &Sim, phase: Phase, units: usize) {
        loop {
            let unit = self.next.fetch_add(1, Ordering::Relaxed);
            if unit >= units {
                break;
            }
            // SAFETY: the counter gives each unit to one thread; the driver
            // opens the next phase only when every thread is done.
            unsafe { sim.run_unit(phase, unit) };
        }
    }

    /// Driver side: runs `phase` over `units` with `helpers` other threads.
    pub(super) fn run(&self, sim: &Sim, phase: Phase, units: usize, helpers: usize) {
        if helpers == 0 {
            for unit in 0..units {
                // SAFETY: single thread.
                unsafe { sim.run_unit(phase, unit) };
            }
            return;
        }
        self.phase.store(phase as usize, Ordering::Relaxed);
        self.units.store(units, Ordering::Relaxed);
        self.next.store(0, Ordering::Relaxed);
        self.busy.store(helpers, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::Release);
        self.take_units(sim, phase, units);
        let mut spins = 0u32;
        while self.busy.load(Ordering::Acquire) != 0 {
            backoff(&mut spins);
        }
    }

    /// Helper side: waits for phases until the driver shuts the pool down.
    pub(super) fn help(&self, sim: &Sim) {
        let mut seen = 0u64;
        loop {
            let mut spins = 0u32;
            let generation = loop {
                let g = self.generation.load(Ordering::Acquire);
                if g != seen {
                    break g;
                }
                if self.quit.load(Ordering::Acquire) {
                    return;
                }
                backoff(&mut spins);
            };
            seen = generation;
            let phase = Phase::from_usize(self.phase.load(Ordering::Relaxed));
            let units = self.units.load(Ordering::Relaxed);
            self.take_units(sim, phase, units);
            self.busy.fetch_sub(1, Ordering::Release);
        }
    }

    pub(super) fn shut_down(&self) {
        self.quit.store(true, Ordering::Release);
    }
}

/// Spin briefly, then yield, then nap: cheap when the other thread is about
/// to finish, polite when the machine is busy.
pub(super) fn backoff(spins: &mut u32) {
    *spins = spins.saturating_add(1);
    if *spins < 200 {
        std::hint::spin_loop();
    } else if *spins < 2_000 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(std::time::Duration::from_micros(50));
    }
}
