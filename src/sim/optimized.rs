//! `optimized` (alias `cython`): Verlet neighbour lists built from cell
//! lists, a half stencil (each pair once, Newton's third law), particles
//! kept sorted by cell so that neighbours sit close in memory, and no
//! allocation in the step loop once the lists have grown.
//!
//! # Determinism with threads
//! The box is cut into an even number of horizontal strips of cell rows,
//! fixed by N and the box alone. A strip's pairs write forces into its own
//! particles and into the first cell row of the next strip, so all even
//! strips can run at once, then all odd strips. Every force is therefore
//! summed in the same order whatever the number of threads, and energies are
//! summed strip by strip in strip order. Threads only decide who does which
//! strip, never what is computed.
//!
//! Boxes too small for a 3 × 3 cell stencil (e.g. N = 16 at ρ = 0.5) use one
//! strip whose neighbour list is built from all pairs.

use std::cell::UnsafeCell;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::kernel::{Control, Estimate, Kernel, Run};
use super::system::{wrap, LennardJones, Physics, State};

pub struct Optimized;

/// Extra distance beyond the cut-off kept in the neighbour lists; lists are
/// rebuilt once any particle has moved half of it.
fn skin() -> f64 {
    std::env::var("ORQ_SKIN")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.3)
}
/// Strips are sized to hold about this many particles.
const PARTICLES_PER_STRIP: usize = 1024;
/// Below this many particles a second thread costs more than it saves.
const MIN_PARTICLES_FOR_THREADS: usize = 4096;

impl Kernel for Optimized {
    fn name(&self) -> &'static str {
        "optimized"
    }

    fn summary(&self) -> &'static str {
        "cell-built Verlet lists, half stencil, O(N) per step, multi-threaded for large N"
    }

    fn estimate(&self, physics: &Physics, num_steps: u64) -> Estimate {
        let n = physics.num_particles as f64;
        let reach = physics.cutoff + skin();
        // half of the neighbours within the list cut-off, at least one
        let listed = (std::f64::consts::PI * reach * reach * physics.density / 2.0).min(n);
        Estimate {
            pair_evaluations: n * (listed + 1.0) * (num_steps as f64 + 1.0),
            memory_bytes: n * (5.0 * 16.0 + 12.0 + 4.0 * (listed + 1.0) * 1.5),
        }
    }

    fn run(&self, state: State, run: &mut Run<'_>) -> State {
        let sim = Sim::new(state, run);
        run.note_memory(sim.memory_bytes());
        let helpers = if sim.n >= MIN_PARTICLES_FOR_THREADS {
            run.threads().min(sim.strips.len() / 2).saturating_sub(1)
        } else {
            0
        };
        let pool = Pool::new();
        std::thread::scope(|scope| {
            for _ in 0..helpers {
                scope.spawn(|| pool.help(&sim));
            }
            let driver = Driver {
                sim: &sim,
                pool: &pool,
                helpers,
            };
            driver.integrate(run);
            pool.shut_down();
        });
        sim.into_state()
    }
}

/// Work that the threads share, one strip (or a strip of one parity) per
/// unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
enum Phase {
    KickDrift = 0,
    BuildLists = 1,
    ForcesEven = 2,
    ForcesOdd = 3,
    Kick = 4,
    Kinetic = 5,
}

impl Phase {
    fn from_usize(v: usize) -> Self {
        match v {
            0 => Phase::KickDrift,
            1 => Phase::BuildLists,
            2 => Phase::ForcesEven,
            3 => Phase::ForcesOdd,
            4 => Phase::Kick,
            _ => Phase::Kinetic,
        }
    }
}

/// How the box is cut into cells and strips; fixed for the whole run.
struct Grid {
    /// Cells per side, or 0 when the box is too small for a cell stencil.
    cells: usize,
    cell_len: f64,
    /// Cell rows of each strip.
    strip_rows: Vec<Range<usize>>,
}

impl Grid {
    fn new(box_len: f64, list_cut: f64, n: usize) -> Self {
        let cells = (box_len / list_cut).floor() as usize;
        if cells < 3 {
            return Self {
                cells: 0,
                cell_len: box_len,
                strip_rows: std::iter::once(0..1).collect(),
            };
        }
        let wanted = (n / PARTICLES_PER_STRIP).max(2);
        let strips = (wanted.min(cells) & !1).max(2);
        let strip_rows = (0..strips)
            .map(|k| (k * cells / strips)..((k + 1) * cells / strips))
            .collect();
        Self {
            cells,
            cell_len: box_len / cells as f64,
            strip_rows,
        }
    }

    fn cell_of(&self, p: [f64; 2]) -> usize {
        let cx = ((p[0] / self.cell_len) as usize).min(self.cells - 1);
        let cy = ((p[1] / self.cell_len) as usize).min(self.cells - 1);
        cy * self.cells + cx
    }
}

/// Per-particle arrays, in cell-sorted order.
struct Particles {
    pos: Vec<[f64; 2]>,
    vel: Vec<[f64; 2]>,
    force: Vec<[f64; 2]>,
    /// Positions at the last list build, for the displacement test.
    built_at: Vec<[f64; 2]>,
    /// Original index of each sorted slot.
    orig: Vec<u32>,
    /// First particle of each cell (cells + 1 entries), from the last sort.
    cell_start: Vec<u32>,
    // scratch for the counting sort
    scratch_cell: Vec<u32>,
    scratch_vec: Vec<[f64; 2]>,
    scratch_idx: Vec<u32>,
}

/// One strip's share: its particle range, its half neighbour list (CSR) and
/// its partial sums for the current step.
#[derive(Default)]
struct Strip {
    range: Range<usize>,
    list_start: Vec<u32>,
    list: Vec<u32>,
    potential: f64,
    kinetic: f64,
    max_disp_sq: f64,
}

struct Sim<'c> {
    n: usize,
    box_len: f64,
    half_box: f64,
    dt: f64,
    lj: LennardJones,
    list_cut_sq: f64,
    grid: Grid,
    particles: UnsafeCell<Particles>,
    strips: Vec<UnsafeCell<Strip>>,
    /// Raw views of the particle arrays for the phases (refreshed after
    /// every sort, which swaps buffers).
    raw: UnsafeCell<Raw>,
    /// Set when a strip saw the run cancelled in the middle of a step.
    interrupted: AtomicBool,
    control: &'c Control,
}

/// Pointers to the per-particle arrays that phases write. Strips write
/// disjoint elements through them (see the `Sync` impl); no `&mut` to a
/// whole array is ever held by two threads.
#[derive(Clone, Copy)]
struct Raw {
    pos: *mut [f64; 2],
    vel: *mut [f64; 2],
    force: *mut [f64; 2],
    built_at: *mut [f64; 2],
}

// SAFETY: `Sim` is shared between the driver and pool helpers. Strips are
// handed out one thread at a time through the pool's counter, so each
// `strips[k]` has one user per phase. `particles` is written during a phase
// only in ranges that a strip owns for that phase: KickDrift, BuildLists and
// Kick touch only the strip's own particle range; ForcesEven/ForcesOdd
// write forces in the strip's range plus the first cell row of the next
// strip, and strips of one parity never share those (module docs). The
// counting sort runs on the driver while no phase is open.
unsafe impl Sync for Sim<'_> {}

impl<'c> Sim<'c> {
    fn new(state: State, run: &Run<'c>) -> Self {
        let physics = *run.physics();
        let n = state.pos.len();
        let box_len = state.box_len;
        let list_cut = physics.cutoff + skin();
        let grid = Grid::new(box_len, list_cut, n);
        let strips = grid
            .strip_rows
            .iter()
            .map(|_| UnsafeCell::new(Strip::default()))
            .collect();
        let ncells = grid.cells * grid.cells;
        let mut particles = Particles {
            pos: state.pos,
            vel: state.vel,
            force: vec![[0.0; 2]; n],
            built_at: vec![[0.0; 2]; n],
            orig: (0..n as u32).collect(),
            cell_start: vec![0; ncells + 1],
            scratch_cell: vec![0; n],
            scratch_vec: vec![[0.0; 2]; n],
            scratch_idx: vec![0; n],
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
        }
    }

    fn memory_bytes(&self) -> u64 {
        // SAFETY: called before any helper thread exists.
        let p = unsafe { &*self.particles.get() };
        let vec2 = std::mem::size_of::<[f64; 2]>();
        let per_particle = 5 * vec2 + 3 * std::mem::size_of::<u32>();
        // lists hold about 7 entries a particle at ρ = 0.5, more when denser
        let lists = self.n * 8 * std::mem::size_of::<u32>();
        (self.n * per_particle + p.cell_start.len() * 4 + lists) as u64
    }

    fn into_state(self) -> State {
        let p = self.particles.into_inner();
        let mut pos = vec![[0.0; 2]; self.n];
        let mut vel = vec![[0.0; 2]; self.n];
        for (k, &o) in p.orig.iter().enumerate() {
            pos[o as usize] = p.pos[k];
            vel[o as usize] = p.vel[k];
        }
        State {
            box_len: self.box_len,
            pos,
            vel,
        }
    }

    #[inline(always)]
    fn min_image(&self, mut d: f64) -> f64 {
        if d > self.half_box {
            d -= self.box_len;
        } else if d < -self.half_box {
            d += self.box_len;
        }
        d
    }

    /// Sorts particles by cell (counting sort, stable) and records where each
    /// strip's particles now lie. Driver only, with no phase open.
    fn sort_by_cell(&self) {
        // SAFETY: no phase is open, so the driver is the only user.
        let p = unsafe { &mut *self.particles.get() };
        if self.grid.cells == 0 {
            let strip = unsafe { &mut *self.strips[0].get() };
            strip.range = 0..self.n;
            p.built_at.copy_from_slice(&p.pos);
            return;
        }
        let ncells = self.grid.cells * self.grid.cells;
        p.cell_start.iter_mut().for_each(|c| *c = 0);
        for (i, &pos) in p.pos.iter().enumerate() {
            let c = self.grid.cell_of(pos);
            p.scratch_cell[i] = c as u32;
            p.cell_start[c + 1] += 1;
        }
        for c in 0..ncells {
            p.cell_start[c + 1] += p.cell_start[c];
        }
        // destination of each particle, reusing scratch_idx
        {
            let mut next: Vec<u32> = p.cell_start[..ncells].to_vec();
            for i in 0..self.n {
                let c = p.scratch_cell[i] as usize;
                p.scratch_idx[i] = next[c];
                next[c] += 1;
            }
        }
        for field in [&mut p.pos, &mut p.vel, &mut p.force] {
            for (&to, &value) in p.scratch_idx.iter().zip(field.iter()) {
                p.scratch_vec[to as usize] = value;
            }
            std::mem::swap(field, &mut p.scratch_vec);
        }
        let mut orig = std::mem::take(&mut p.scratch_cell);
        for i in 0..self.n {
            orig[p.scratch_idx[i] as usize] = p.orig[i];
        }
        p.scratch_cell = std::mem::replace(&mut p.orig, orig);
        p.built_at.copy_from_slice(&p.pos);
        unsafe { *self.raw.get() = Raw::of(p) };
        for (k, rows) in self.grid.strip_rows.iter().enumerate() {
            let strip = unsafe { &mut *self.strips[k].get() };
            let first = p.cell_start[rows.start * self.grid.cells] as usize;
            let last = p.cell_start[rows.end * self.grid.cells] as usize;
            strip.range = first..last;
        }
    }

    /// Runs one unit of a phase.
    ///
    /// # Safety
    /// The caller hands each unit of a phase to exactly one thread and
    /// opens phases one at a time (see the `Sync` impl).
    unsafe fn run_unit(&self, phase: Phase, unit: usize) {
        match phase {
            Phase::KickDrift => self.kick_drift(unit),
            Phase::BuildLists => self.build_list(unit),
            Phase::ForcesEven => self.forces(2 * unit),
            Phase::ForcesOdd => self.forces(2 * unit + 1),
            Phase::Kick => self.kick(unit, 0.5 * self.dt),
            Phase::Kinetic => self.kinetic(unit),
        }
    }

    /// Number of units in a phase.
    fn units(&self, phase: Phase) -> usize {
        let strips = self.strips.len();
        match phase {
            Phase::ForcesEven => strips.div_ceil(2),
            Phase::ForcesOdd => strips / 2,
            _ => strips,
        }
    }

    /// First half kick, drift, wrap; clears forces; measures displacement.
    unsafe fn kick_drift(&self, k: usize) {
        let strip = &mut *self.strips[k].get();
        let r = *self.raw.get();
        let (half_dt, dt, l) = (0.5 * self.dt, self.dt, self.box_len);
        let mut max_disp_sq: f64 = 0.0;
        for i in strip.range.clone() {
            let f = *r.force.add(i);
            let v = &mut *r.vel.add(i);
            v[0] += half_dt * f[0];
            v[1] += half_dt * f[1];
            let pos = &mut *r.pos.add(i);
            let x = wrap(pos[0] + dt * v[0], l);
            let y = wrap(pos[1] + dt * v[1], l);
            *pos = [x, y];
            *r.force.add(i) = [0.0, 0.0];
            let built = *r.built_at.add(i);
            let dx = self.min_image(x - built[0]);
            let dy = self.min_image(y - built[1]);
            max_disp_sq = max_disp_sq.max(dx * dx + dy * dy);
        }
        strip.max_disp_sq = max_disp_sq;
    }

    /// Kinetic energy of the strip, without moving anything (step 0).
    unsafe fn kinetic(&self, k: usize) {
        let strip = &mut *self.strips[k].get();
        let r = *self.raw.get();
        let mut sum_v2 = 0.0;
        for i in strip.range.clone() {
            let v = *r.vel.add(i);
            sum_v2 += v[0] * v[0] + v[1] * v[1];
        }
        strip.kinetic = 0.5 * sum_v2;
    }

    /// Second half kick; kinetic energy of the strip.
    unsafe fn kick(&self, k: usize, half_dt: f64) {
        let strip = &mut *self.strips[k].get();
        let r = *self.raw.get();
        let mut sum_v2 = 0.0;
        for i in strip.range.clone() {
            let f = *r.force.add(i);
            let v = &mut *r.vel.add(i);
            v[0] += half_dt * f[0];
            v[1] += half_dt * f[1];
            sum_v2 += v[0] * v[0] + v[1] * v[1];
        }
        strip.kinetic = 0.5 * sum_v2;
    }

    /// Builds strip `k`'s half neighbour list from the cell sort.
    unsafe fn build_list(&self, k: usize) {
        let strip = &mut *self.strips[k].get();
        // nothing writes particles during this phase
        let p = &*self.particles.get();
        let pos = &p.pos;
        let range = strip.range.clone();
        strip.list.clear();
        strip.list_start.clear();
        strip.list_start.push(0);
        if self.grid.cells == 0 {
            for i in range {
                let mut cand = CandidateWriter::new(&mut strip.list, self.n - i - 1);
                for j in (i + 1)..self.n {
                    let dx = self.min_image(pos[i][0] - pos[j][0]);
                    let dy = self.min_image(pos[i][1] - pos[j][1]);
                    cand.offer(j, dx * dx + dy * dy < self.list_cut_sq);
                }
                cand.finish();
                strip.list_start.push(strip.list.len() as u32);
            }
            return;
        }
        let cells = self.grid.cells;
        let l = self.box_len;
        let start_of = |c: usize| p.cell_start[c] as usize;
        for cy in self.grid.strip_rows[k].clone() {
            let up = (cy + 1) % cells;
            let shift_y = if cy + 1 == cells { l } else { 0.0 };
            for cx in 0..cells {
                let left = (cx + cells - 1) % cells;
                let right = (cx + 1) % cells;
                let shift_left = if cx == 0 { -l } else { 0.0 };
                let shift_right = if cx + 1 == cells { l } else { 0.0 };
                // the four forward cells of the half stencil, each with the
                // offset that brings its particles next to this cell
                let forward = [
                    (cy * cells + right, shift_right, 0.0),
                    (up * cells + left, shift_left, shift_y),
                    (up * cells + cx, 0.0, shift_y),
                    (up * cells + right, shift_right, shift_y),
                ];
                let c = cy * cells + cx;
                let own_end = start_of(c + 1);
                let forward_count: usize = forward.iter().map(|f| start_of(f.0 + 1) - start_of(f.0)).sum();
                for i in start_of(c)..own_end {
                    let [xi, yi] = pos[i];
                    let mut cand = CandidateWriter::new(&mut strip.list, own_end - i - 1 + forward_count);
                    for (j, pj) in pos.iter().enumerate().take(own_end).skip(i + 1) {
                        let (dx, dy) = (xi - pj[0], yi - pj[1]);
                        cand.offer(j, dx * dx + dy * dy < self.list_cut_sq);
                    }
                    for &(nc, sx, sy) in &forward {
                        for (j, pj) in pos.iter().enumerate().take(start_of(nc + 1)).skip(start_of(nc)) {
                            let (dx, dy) = (xi - (pj[0] + sx), yi - (pj[1] + sy));
                            cand.offer(j, dx * dx + dy * dy < self.list_cut_sq);
                        }
                    }
                    cand.finish();
                    strip.list_start.push(strip.list.len() as u32);
                }
            }
        }
    }

    /// Pair forces of strip `k`'s list; potential energy of the strip.
    unsafe fn forces(&self, k: usize) {
        let strip = &mut *self.strips[k].get();
        let r = *self.raw.get();
        let lj = self.lj;
        let (cutoff_sq, shift) = (lj.cutoff_sq, lj.shift);
        let (box_len, half_box) = (self.box_len, self.half_box);
        let min_image = |mut d: f64| {
            if d > half_box {
                d -= box_len;
            } else if d < -half_box {
                d += box_len;
            }
            d
        };
        let mut potential = 0.0;
        let start = strip.range.start;
        for (a, i) in strip.range.clone().enumerate() {
            if a % 4096 == 4095 && self.control.is_cancelled() {
                self.interrupted.store(true, Ordering::Relaxed);
                break;
            }
            let [xi, yi] = *r.pos.add(i);
            let (mut fxi, mut fyi) = (0.0, 0.0);
            let from = strip.list_start[i - start] as usize;
            let to = strip.list_start[i - start + 1] as usize;
            for &j in &strip.list[from..to] {
                let j = j as usize;
                let pj = *r.pos.add(j);
                let dx = min_image(xi - pj[0]);
                let dy = min_image(yi - pj[1]);
                let r2 = dx * dx + dy * dy;
                // Branch-free: about one listed pair in five lies beyond the
                // cut-off, too often for the branch predictor. Outside, sr2
                // is 0 and so are the force and the energy.
                let mask = ((r2 < cutoff_sq) as u64).wrapping_neg();
                let sr2 = f64::from_bits((1.0 / r2).to_bits() & mask);
                let sr6 = sr2 * sr2 * sr2;
                potential += 4.0 * sr6 * (sr6 - 1.0) - f64::from_bits(shift.to_bits() & mask);
                let factor = 24.0 * sr2 * sr6 * (2.0 * sr6 - 1.0);
                let (fx, fy) = (factor * dx, factor * dy);
                fxi += fx;
                fyi += fy;
                let fj = &mut *r.force.add(j);
                fj[0] -= fx;
                fj[1] -= fy;
            }
            let f = &mut *r.force.add(i);
            f[0] += fxi;
            f[1] += fyi;
        }
        strip.potential = potential;
    }

    fn max_displacement_sq(&self) -> f64 {
        self.strips
            .iter()
            // SAFETY: read by the driver between phases.
            .map(|s| unsafe { (*s.get()).max_disp_sq })
            .fold(0.0, f64::max)
    }

    /// Potential and kinetic energy, summed strip by strip in strip order.
    fn energies(&self) -> (f64, f64) {
        let mut potential = 0.0;
        let mut kinetic = 0.0;
        for s in &self.strips {
            // SAFETY: read by the driver between phases.
            let s = unsafe { &*s.get() };
            potential += s.potential;
            kinetic += s.kinetic;
        }
        (potential, kinetic)
    }
}

impl Raw {
    fn of(p: &mut Particles) -> Self {
        Self {
            pos: p.pos.as_mut_ptr(),
            vel: p.vel.as_mut_ptr(),
            force: p.force.as_mut_ptr(),
            built_at: p.built_at.as_mut_ptr(),
        }
    }
}

/// Appends candidate neighbours without a branch per candidate: each is
/// written, and the length only moves past it when it is near.
struct CandidateWriter<'v> {
    list: &'v mut Vec<u32>,
    len: usize,
}

impl<'v> CandidateWriter<'v> {
    /// Makes room for `max` more entries.
    fn new(list: &'v mut Vec<u32>, max: usize) -> Self {
        list.reserve(max);
        let len = list.len();
        Self { list, len }
    }

    #[inline(always)]
    fn offer(&mut self, j: usize, near: bool) {
        debug_assert!(self.len < self.list.capacity());
        // SAFETY: `new` reserved room for every offer; only entries below
        // `len` are ever exposed (in `finish`).
        unsafe { *self.list.as_mut_ptr().add(self.len) = j as u32 };
        self.len += near as usize;
    }

    fn finish(self) {
        // SAFETY: entries below `len` were all written by `offer`.
        unsafe { self.list.set_len(self.len) };
    }
}

/// The thread that owns the run: opens phases, sorts, records energies.
struct Driver<'a> {
    sim: &'a Sim<'a>,
    pool: &'a Pool,
    helpers: usize,
}

impl Driver<'_> {
    fn phase(&self, phase: Phase) {
        self.pool
            .run(self.sim, phase, self.sim.units(phase), self.helpers);
    }

    fn rebuild(&self) {
        self.sim.sort_by_cell();
        self.phase(Phase::BuildLists);
    }

    fn forces(&self) {
        self.phase(Phase::ForcesEven);
        self.phase(Phase::ForcesOdd);
    }

    fn integrate(&self, run: &mut Run<'_>) {
        let skin_half_sq = 0.25 * skin() * skin();
        self.rebuild();
        self.forces();
        self.phase(Phase::Kinetic);
        let (potential, kinetic) = self.sim.energies();
        if !run.record(potential, kinetic) {
            return;
        }
        for _ in 0..run.steps() {
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
            let (potential, kinetic) = self.sim.energies();
            if !run.record(potential, kinetic) {
                return;
            }
        }
    }
}

/// A fork-join pool that lives for one run: the driver opens a phase, every
/// thread takes units from a shared counter, the driver waits for all.
struct Pool {
    generation: AtomicU64,
    phase: AtomicUsize,
    units: AtomicUsize,
    next: AtomicUsize,
    busy: AtomicUsize,
    quit: AtomicBool,
}

impl Pool {
    fn new() -> Self {
        Self {
            generation: AtomicU64::new(0),
            phase: AtomicUsize::new(0),
            units: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            quit: AtomicBool::new(false),
        }
    }

    fn take_units(&self, sim: &Sim, phase: Phase, units: usize) {
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
    fn run(&self, sim: &Sim, phase: Phase, units: usize, helpers: usize) {
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
    fn help(&self, sim: &Sim) {
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

    fn shut_down(&self) {
        self.quit.store(true, Ordering::Release);
    }
}

/// Spin briefly, then yield, then nap: cheap when the other thread is about
/// to finish, polite when the machine is busy.
fn backoff(spins: &mut u32) {
    *spins = spins.saturating_add(1);
    if *spins < 200 {
        std::hint::spin_loop();
    } else if *spins < 2_000 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(std::time::Duration::from_micros(50));
    }
}
