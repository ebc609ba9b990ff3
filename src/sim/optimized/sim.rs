//! The run's state: setting it up from a [`State`], handing it back in
//! original order, the per-phase dispatch and the sums read between
//! phases.

use super::*;

impl<'c> Sim<'c> {
    pub(super) fn new(state: State, run: &Run<'c>) -> Self {
        let physics = *run.physics();
        let n = state.pos.len();
        let box_len = state.box_len;
        let list_cut = physics.cutoff + SKIN;
        let grid = Grid::new(box_len, list_cut, n);
        let strips = grid
            .strip_rows
            .iter()
            .map(|_| UnsafeCell::new(Strip::default()))
            .collect();
        assert!(
            n <= MAX_PARTICLES,
            "{n} particles is more than the optimized kernel holds"
        );
        let ncells = grid.cell_count();
        let slots = n + SENTINEL_SPACING * grid.strip_rows.len();
        let (mut pos, mut vel) = (state.pos, state.vel);
        pos.resize(slots, Particles::SENTINEL);
        vel.resize(slots, [0.0; 2]);
        let mut particles = Particles {
            pos,
            vel,
            force: vec![[0.0; 2]; slots],
            built_at: vec![[0.0; 2]; slots],
            orig: (0..n as u32).collect(),
            cell_start: vec![0; ncells + 1],
            scratch_cell: vec![0; n],
            scratch_vec: vec![[0.0; 2]; slots],
            scratch_vel: vec![[0.0; 2]; slots],
            scratch_orig: vec![0; n],
            scratch_idx: vec![0; n],
            scratch_next: vec![0; ncells],
        };
        let raw = Raw::of(&mut particles);
        Self {
            n,
            box_len,
            half_box: 0.5 * box_len,
            dt: physics.dt,
            lj: LennardJones::new(physics.cutoff),
            list_cut_sq: list_cut * list_cut,
            grid,
            particles: UnsafeCell::new(particles),
            strips,
            raw: UnsafeCell::new(raw),
            interrupted: AtomicBool::new(false),
            control: run.control(),
            width: simd::for_this_run(),
        }
    }

    pub(super) fn memory_bytes(&self) -> u64 {
        // SAFETY: called before any helper thread exists.
        let p = unsafe { &*self.particles.get() };
        let vec2 = std::mem::size_of::<[f64; 2]>();
        let per_particle = 5 * vec2 + 3 * std::mem::size_of::<u32>();
        // lists hold about 7 entries a particle at ρ = 0.5, more when denser
        let lists = self.n * 8 * std::mem::size_of::<u32>();
        (self.n * per_particle + p.cell_start.len() * 8 + lists) as u64
    }

    pub(super) fn into_state(self) -> State {
        let p = self.particles.into_inner();
        let mut pos = vec![[0.0; 2]; self.n];
        let mut vel = vec![[0.0; 2]; self.n];
        for (k, &o) in p.orig.iter().enumerate() {
            let [x, y] = p.pos[k];
            pos[o as usize] = [wrap(x, self.box_len), wrap(y, self.box_len)];
            vel[o as usize] = p.vel[k];
        }
        State {
            box_len: self.box_len,
            pos,
            vel,
        }
    }

    #[inline(always)]
    pub(super) fn min_image(&self, mut d: f64) -> f64 {
        if d > self.half_box {
            d -= self.box_len;
        } else if d < -self.half_box {
            d += self.box_len;
        }
        d
    }

    /// Runs one unit of a phase.
    ///
    /// # Safety
    /// The caller hands each unit of a phase to exactly one thread and
    /// opens phases one at a time (see the `Sync` impl).
    pub(super) unsafe fn run_unit(&self, phase: Phase, unit: usize) {
        match phase {
            Phase::KickDrift => self.kick_drift(unit),
            Phase::BuildLists => self.build_list(unit),
            Phase::ForcesEven => self.forces(2 * unit),
            Phase::ForcesOdd => self.forces(2 * unit + 1),
            Phase::Kick => self.kick(unit, 0.5 * self.dt),
            Phase::Kinetic => self.kinetic(unit),
            Phase::Permute => self.permute(unit),
        }
    }

    /// Number of units in a phase.
    pub(super) fn units(&self, phase: Phase) -> usize {
        let strips = self.strips.len();
        match phase {
            Phase::ForcesEven => strips.div_ceil(2),
            Phase::ForcesOdd => strips / 2,
            Phase::Permute => PERMUTED_ARRAYS,
            _ => strips,
        }
    }

    pub(super) fn max_displacement_sq(&self) -> f64 {
        self.strips
            .iter()
            // SAFETY: read by the driver between phases.
            .map(|s| unsafe { (*s.get()).max_disp_sq })
            .fold(0.0, f64::max)
    }

    /// Potential and kinetic energy and the virial, summed strip by strip
    /// in strip order.
    pub(super) fn energies(&self) -> (f64, f64, f64) {
        let mut potential = 0.0;
        let mut kinetic = 0.0;
        let mut virial = 0.0;
        for s in &self.strips {
            // SAFETY: read by the driver between phases.
            let s = unsafe { &*s.get() };
            potential += s.potential;
            kinetic += s.kinetic;
            virial += s.virial;
        }
        (potential, kinetic, virial)
    }
}

impl Sim<'_> {
    /// Strip `k`'s sentinel slot. Every strip has its own, a cache line or
    /// two from any other's, because the pair loop writes (zero) forces
    /// into it: one slot shared by all strips would be a data race, and a
    /// cache line that the cores pass to and fro on every other pair.
    pub(super) fn sentinel(&self, k: usize) -> usize {
        self.n + SENTINEL_SPACING * k
    }
}

impl Particles {
    /// A position so far from the box that it is beyond the cut-off of any
    /// particle, minimum image or not, while its square stays finite: a
    /// pair with it has force and energy exactly zero.
    pub(super) const SENTINEL: [f64; 2] = [1e100, 1e100];
}

/// The byte offset of particle `i` in a `[f64; 2]` array, as lists store
/// it: it always fits a u32 ([`MAX_PARTICLES`]).
#[inline(always)]
pub(super) fn offset_of(i: usize) -> u32 {
    (i * std::mem::size_of::<[f64; 2]>()) as u32
}

/// The element at byte offset `offset` of the array at `base`.
///
/// # Safety
/// `offset` is [`offset_of`] an index of the array.
#[inline(always)]
pub(super) unsafe fn at(base: *mut [f64; 2], offset: u32) -> *mut [f64; 2] {
    base.cast::<u8>().add(offset as usize).cast()
}

impl Raw {
    pub(super) fn of(p: &mut Particles) -> Self {
        Self {
            pos: p.pos.as_mut_ptr(),
            vel: p.vel.as_mut_ptr(),
            force: p.force.as_mut_ptr(),
            built_at: p.built_at.as_mut_ptr(),
        }
    }
}
