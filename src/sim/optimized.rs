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
//! # Where the time goes, and what keeps it low
//! - The pair loop takes two neighbours at a time in SSE2 registers (one
//!   `divpd` for two pairs). Every x86-64 has SSE2; other architectures run
//!   the same lane operations on `[f64; 2]` (`Portable`), IEEE operation
//!   for IEEE operation, so the bits are the same everywhere (tested). There
//!   is no FMA anywhere.
//! - Where the CPU has AVX2 ([`super::simd`] decides at run time), the pair
//!   loop takes four neighbours at a time and the list build tests four
//!   candidates at a time ([`wide`]): the same operations lane by lane, the
//!   sums in the 128-bit order, so the same bits again (tested).
//! - Each strip's list is one flat run of pairs of pairs, every particle's
//!   neighbours padded to an even count with a far-away sentinel, so the
//!   pair loop has no data-dependent branch at all.
//! - Positions are wrapped into the box only when the lists are rebuilt
//!   (and when the state is handed back). Between builds a particle may
//!   stray up to half the skin outside [0, L), so a listed pair's plain
//!   difference is already its minimum image unless the pair was found
//!   across the periodic boundary. Only particles of the cells on the
//!   boundary (first and last column, last row) have such pairs; only they
//!   pay for the minimum-image test.
//!
//! Boxes too small for a 3 × 3 cell stencil (e.g. N = 16 at ρ = 0.5) use one
//! strip whose neighbour list is built from all pairs.

use std::cell::UnsafeCell;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::checkpoint::KernelState;
use super::kernel::{Control, Estimate, Kernel, Run};
use super::simd::{self, Width};
use super::system::{wrap, LennardJones, Physics, State};

#[cfg(target_arch = "x86_64")]
mod wide;

pub struct Optimized;

/// Extra distance beyond the cut-off kept in the neighbour lists; lists are
/// rebuilt once any particle has moved half of it. A constant, not a
/// setting: the skin decides the order of the force sums, so it is part of
/// what makes a result reproducible on every worker. Chosen by measurement
/// (N = 10⁴ and 10⁵ at the default density): anything from 0.25 to 0.4 is
/// within noise of the best; LAMMPS uses 0.3 too.
const SKIN: f64 = 0.3;
/// Strips are sized to hold about this many particles.
const PARTICLES_PER_STRIP: usize = 1024;
/// Largest N this kernel handles: lists store byte offsets as u32, and
/// the sentinel slots come after the particles.
const MAX_PARTICLES: usize = (u32::MAX as usize) / 32;
/// Slots between two strips' sentinels: 128 bytes.
const SENTINEL_SPACING: usize = 8;
/// Arrays moved by the sort, one Permute unit each: positions,
/// velocities, forces, original indices.
const PERMUTED_ARRAYS: usize = 4;
/// Below this many particles a second thread costs more than it saves.
const MIN_PARTICLES_FOR_THREADS: usize = 4096;
/// At most this many cells per particle. A cell list needs cells at least
/// the list cut-off wide, not as many as fit: in a dilute box nearly all of
/// the (L / (rc + skin))² cells of that width are empty, and their count
/// has no bound (ρ = 1e-9, N = 100: 1.3e10 cells, 51 GB of cell index).
/// Wider cells find the same pairs; at the cap a cell holds a quarter of a
/// particle on average. Boxes denser than 1 / (4 (rc + skin)²) ≈ 0.03 at
/// the default cut-off never reach the cap, so their results keep their
/// bits.
const MAX_CELLS_PER_PARTICLE: usize = 4;

impl Kernel for Optimized {
    fn name(&self) -> &'static str {
        "optimized"
    }

    fn summary(&self) -> &'static str {
        "cell-built Verlet lists, half stencil, O(N) per step, multi-threaded for large N"
    }

    fn build(&self) -> &'static str {
        "optimized-1"
    }

    fn estimate(&self, physics: &Physics, num_steps: u64) -> Estimate {
        let n = physics.num_particles as f64;
        let reach = physics.cutoff + SKIN;
        // half of the neighbours within the list cut-off, at least one
        let listed = (std::f64::consts::PI * reach * reach * physics.density / 2.0).min(n);
        let (cells, strips) = Grid::shape(physics.box_len(), reach, physics.num_particles);
        Estimate {
            pair_evaluations: n * (listed + 1.0) * (num_steps as f64 + 1.0),
            memory_bytes: peak_bytes(n, cells as f64, strips as f64, listed),
        }
    }

    fn run(&self, state: State, run: &mut Run<'_>) -> State {
        let (sim, resumed) = match run.take_resume() {
            Some(KernelState::Sorted {
                box_len,
                pos,
                vel,
                force,
                built_at,
                orig,
            }) => {
                // the lists are built again from the build positions in the
                // saved order: a stable sort of a sorted order moves nothing
                let mut sim = Sim::new(
                    State {
                        box_len,
                        pos: built_at,
                        vel,
                    },
                    run,
                );
                sim.particles.get_mut().orig = orig;
                (sim, Some((pos, force)))
            }
            Some(KernelState::Plain { .. }) => unreachable!("Checkpoint::check matches the state's kind"),
            None => (Sim::new(state, run), None),
        };
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
            match resumed {
                Some((pos, force)) => {
                    driver.restore(pos, force);
                    driver.steps(run);
                }
                None => driver.integrate(run),
            }
            pool.shut_down();
        });
        sim.into_state()
    }
}

/// The most bytes a run holds at once, in floating point so that nothing
/// can overflow: every array [`Sim::new`] allocates, the neighbour lists at
/// twice their expected length (a `Vec` grows by doubling, and the density
/// fluctuates), and the state handed in and the one handed back. `cells`
/// per side, `listed` neighbours per particle.
fn peak_bytes(n: f64, cells: f64, strips: f64, listed: f64) -> f64 {
    const VEC2: f64 = std::mem::size_of::<[f64; 2]>() as f64;
    const INDEX: f64 = std::mem::size_of::<u32>() as f64;
    let slots = n + SENTINEL_SPACING as f64 * strips;
    // pos, vel, force, built_at and three sort scratch arrays; orig,
    // scratch_cell, scratch_orig, scratch_idx
    let particles = 7.0 * VEC2 * slots + 4.0 * INDEX * n;
    // cell_start (one more than the cells) and scratch_next
    let grid = INDEX * (2.0 * cells * cells + 1.0);
    // each particle: its neighbours padded to an even count, an owner per
    // pair of them, a CSR start
    let lists = 2.0 * INDEX * n * (1.5 * (listed + 1.0) + 1.0);
    let states = 2.0 * 2.0 * VEC2 * n;
    particles + grid + lists + states
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
    /// The counting sort's moves, one array per unit.
    Permute = 6,
}

impl Phase {
    fn from_usize(v: usize) -> Self {
        match v {
            0 => Phase::KickDrift,
            1 => Phase::BuildLists,
            2 => Phase::ForcesEven,
            3 => Phase::ForcesOdd,
            4 => Phase::Kick,
            5 => Phase::Kinetic,
            _ => Phase::Permute,
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
        let (cells, strips) = Self::shape(box_len, list_cut, n);
        if cells == 0 {
            return Self {
                cells: 0,
                cell_len: box_len,
                strip_rows: std::iter::once(0..1).collect(),
            };
        }
        let strip_rows = (0..strips)
            .map(|k| (k * cells / strips)..((k + 1) * cells / strips))
            .collect();
        Self {
            cells,
            cell_len: box_len / cells as f64,
            strip_rows,
        }
    }

    /// Cells per side (0: all pairs, the box is too small for a 3 × 3
    /// stencil) and strips of a box of side `box_len` holding `n`
    /// particles: as many cells of at least `list_cut` as fit, but never
    /// more than [`MAX_CELLS_PER_PARTICLE`] · n in all, so that
    /// cells² fits a `usize` for any box and any float.
    fn shape(box_len: f64, list_cut: f64, n: usize) -> (usize, usize) {
        let fit = box_len / list_cut;
        // NaN is not ≥ 3 either: nothing that is not a number reaches a cast
        if fit.is_nan() || fit < 3.0 {
            return (0, 1);
        }
        let cap = n.saturating_mul(MAX_CELLS_PER_PARTICLE).isqrt().max(3);
        // below `cap`, so finite and small: the cast is a floor
        let cells = if fit < cap as f64 { fit as usize } else { cap };
        let wanted = (n / PARTICLES_PER_STRIP).max(2);
        let strips = (wanted.min(cells) & !1).max(2);
        (cells, strips)
    }

    /// Entries of the cell index: cells².
    fn cell_count(&self) -> usize {
        self.cells
            .checked_mul(self.cells)
            .expect("`shape` caps cells² at MAX_CELLS_PER_PARTICLE · n")
    }

    /// The cell of a position inside [0, L)².
    fn cell_of(&self, p: [f64; 2]) -> usize {
        let cx = ((p[0] / self.cell_len) as usize).min(self.cells - 1);
        let cy = ((p[1] / self.cell_len) as usize).min(self.cells - 1);
        cy * self.cells + cx
    }
}

/// Per-particle arrays, in cell-sorted order, followed by the sentinel
/// slots ([`Sim::sentinel`]): each strip pads its particles' lists to an
/// even length with a neighbour at [`Particles::SENTINEL`] of its own.
struct Particles {
    /// Positions, wrapped into [0, L) at the last list build and not since
    /// (module docs).
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
    scratch_vel: Vec<[f64; 2]>,
    scratch_force: Vec<[f64; 2]>,
    scratch_orig: Vec<u32>,
    scratch_idx: Vec<u32>,
    scratch_next: Vec<u32>,
}

/// A run of consecutive particles of one strip, and whether their listed
/// pairs may cross the periodic boundary (so need the minimum image).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    start: u32,
    end: u32,
    crosses: bool,
}

/// One strip's share: its particle range, its half neighbour list (CSR) and
/// its partial sums for the current step.
#[derive(Default)]
struct Strip {
    range: Range<usize>,
    /// The strip's particles in order, cut where the need for the minimum
    /// image changes.
    segments: Vec<Segment>,
    /// Where each particle's neighbours start in `list`, in pairs of
    /// entries (CSR, one more entry than particles).
    chunk_start: Vec<u32>,
    /// Neighbours as byte offsets into the particle arrays
    /// ([`offset_of`]), each particle's padded to an even count with
    /// [`Particles::SENTINEL`]'s slot, so that they go two by two.
    list: Vec<u32>,
    /// The particle (byte offset) whose neighbours each pair of `list`
    /// entries are.
    owner: Vec<u32>,
    potential: f64,
    /// Σ rᵢⱼ·fᵢⱼ over the strip's pairs.
    virial: f64,
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
    /// The pair loop's vector width, fixed for the run ([`simd`]).
    width: Width,
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
// counting sort is planned and finished on the driver while no phase is
// open; its Permute phase gives each array (and its scratch) to one unit.
unsafe impl Sync for Sim<'_> {}

impl<'c> Sim<'c> {
    fn new(state: State, run: &Run<'c>) -> Self {
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
            scratch_force: vec![[0.0; 2]; slots],
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

    fn memory_bytes(&self) -> u64 {
        // SAFETY: called before any helper thread exists.
        let p = unsafe { &*self.particles.get() };
        let vec2 = std::mem::size_of::<[f64; 2]>();
        let per_particle = 5 * vec2 + 3 * std::mem::size_of::<u32>();
        // lists hold about 7 entries a particle at ρ = 0.5, more when denser
        let lists = self.n * 8 * std::mem::size_of::<u32>();
        (self.n * per_particle + p.cell_start.len() * 8 + lists) as u64
    }

    fn into_state(self) -> State {
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
    fn min_image(&self, mut d: f64) -> f64 {
        if d > self.half_box {
            d -= self.box_len;
        } else if d < -self.half_box {
            d += self.box_len;
        }
        d
    }

    /// Wraps positions back into the box and plans the counting sort by
    /// cell (stable): where each particle goes. The moves themselves are
    /// the Permute phase, then [`Self::sort_finish`]. Returns false when
    /// there is nothing to sort (a box too small for cells). Driver only,
    /// with no phase open.
    fn sort_by_cell(&self) -> bool {
        // SAFETY: no phase is open, so the driver is the only user.
        let p = unsafe { &mut *self.particles.get() };
        let l = self.box_len;
        if self.grid.cells == 0 {
            for x in &mut p.pos[..self.n] {
                *x = [wrap(x[0], l), wrap(x[1], l)];
            }
            // SAFETY: as above.
            let strip = unsafe { &mut *self.strips[0].get() };
            strip.range = 0..self.n;
            strip.segments.clear();
            strip.segments.push(Segment {
                start: 0,
                end: self.n as u32,
                crosses: true,
            });
            p.built_at.copy_from_slice(&p.pos);
            return false;
        }
        let ncells = self.grid.cell_count();
        p.cell_start.iter_mut().for_each(|c| *c = 0);
        for (i, x) in p.pos[..self.n].iter_mut().enumerate() {
            *x = [wrap(x[0], l), wrap(x[1], l)];
            let c = self.grid.cell_of(*x);
            p.scratch_cell[i] = c as u32;
            p.cell_start[c + 1] += 1;
        }
        for c in 0..ncells {
            p.cell_start[c + 1] += p.cell_start[c];
        }
        // destination of each particle, into scratch_idx
        p.scratch_next.copy_from_slice(&p.cell_start[..ncells]);
        for i in 0..self.n {
            let c = p.scratch_cell[i] as usize;
            p.scratch_idx[i] = p.scratch_next[c];
            p.scratch_next[c] += 1;
        }
        true
    }

    /// Moves one array to its sorted order (a unit of [`Phase::Permute`]):
    /// positions, velocities, forces or original indices. Pure data
    /// movement, so who does it never changes a bit.
    ///
    /// # Safety
    /// Only inside the Permute phase, each unit on one thread: units touch
    /// disjoint fields, reached through raw field pointers so that no
    /// thread holds a reference to the whole `Particles`.
    unsafe fn permute(&self, unit: usize) {
        let p = self.particles.get();
        let to = &*std::ptr::addr_of!((*p).scratch_idx);
        let n = self.n;
        let move_vec = |field: *mut Vec<[f64; 2]>, scratch: *mut Vec<[f64; 2]>, pad: [f64; 2]| {
            let (field, scratch) = (&mut *field, &mut *scratch);
            for (&t, &value) in to.iter().zip(field.iter()) {
                scratch[t as usize] = value;
            }
            std::mem::swap(field, scratch);
            // the slots past the particles came along from the scratch buffer
            field[n..].fill(pad);
        };
        match unit {
            0 => {
                move_vec(
                    std::ptr::addr_of_mut!((*p).pos),
                    std::ptr::addr_of_mut!((*p).scratch_vec),
                    Particles::SENTINEL,
                );
                let built_at = &mut *std::ptr::addr_of_mut!((*p).built_at);
                built_at.copy_from_slice(&*std::ptr::addr_of!((*p).pos));
            }
            1 => move_vec(
                std::ptr::addr_of_mut!((*p).vel),
                std::ptr::addr_of_mut!((*p).scratch_vel),
                [0.0; 2],
            ),
            2 => move_vec(
                std::ptr::addr_of_mut!((*p).force),
                std::ptr::addr_of_mut!((*p).scratch_force),
                [0.0; 2],
            ),
            _ => {
                let orig = &mut *std::ptr::addr_of_mut!((*p).orig);
                let sorted = &mut *std::ptr::addr_of_mut!((*p).scratch_orig);
                for (i, &t) in to.iter().enumerate() {
                    sorted[t as usize] = orig[i];
                }
                std::mem::swap(orig, sorted);
            }
        }
    }

    /// After the moves: fresh pointers and each strip's particle ranges.
    /// Driver only, with no phase open.
    fn sort_finish(&self) {
        // SAFETY: no phase is open, so the driver is the only user.
        let p = unsafe { &mut *self.particles.get() };
        if self.grid.cells == 0 {
            return;
        }
        // SAFETY: as above.
        unsafe { *self.raw.get() = Raw::of(p) };
        let cells = self.grid.cells;
        let start_of = |c: usize| p.cell_start[c];
        for (k, rows) in self.grid.strip_rows.iter().enumerate() {
            // SAFETY: as above.
            let strip = unsafe { &mut *self.strips[k].get() };
            let first = start_of(rows.start * cells) as usize;
            let last = start_of(rows.end * cells) as usize;
            strip.range = first..last;
            strip.segments.clear();
            let mut push = |start: u32, end: u32, crosses: bool| match strip.segments.last_mut() {
                Some(s) if s.crosses == crosses && s.end == start => s.end = end,
                _ if start == end => {}
                _ => strip.segments.push(Segment { start, end, crosses }),
            };
            for cy in rows.clone() {
                let row = cy * cells;
                let last_row = cy + 1 == cells;
                // first column (its up-left cell wraps), the middle, the
                // last column (its right and up-right cells wrap); the last
                // row's upper cells all wrap
                push(start_of(row), start_of(row + 1), true);
                push(start_of(row + 1), start_of(row + cells - 1), last_row);
                push(start_of(row + cells - 1), start_of(row + cells), true);
            }
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
            Phase::Permute => self.permute(unit),
        }
    }

    /// Number of units in a phase.
    fn units(&self, phase: Phase) -> usize {
        let strips = self.strips.len();
        match phase {
            Phase::ForcesEven => strips.div_ceil(2),
            Phase::ForcesOdd => strips / 2,
            Phase::Permute => PERMUTED_ARRAYS,
            _ => strips,
        }
    }

    /// First half kick and drift (no wrap: see the module docs); clears
    /// forces; measures the displacement since the last build.
    // out of line so that profiles show each phase apart; costs nothing
    #[inline(never)]
    unsafe fn kick_drift(&self, k: usize) {
        let strip = &mut *self.strips[k].get();
        let r = *self.raw.get();
        let (half_dt, dt) = (0.5 * self.dt, self.dt);
        let mut max_disp_sq: f64 = 0.0;
        for i in strip.range.clone() {
            let f = *r.force.add(i);
            let v = &mut *r.vel.add(i);
            v[0] += half_dt * f[0];
            v[1] += half_dt * f[1];
            let pos = &mut *r.pos.add(i);
            let x = pos[0] + dt * v[0];
            let y = pos[1] + dt * v[1];
            *pos = [x, y];
            *r.force.add(i) = [0.0, 0.0];
            let built = *r.built_at.add(i);
            let (dx, dy) = (x - built[0], y - built[1]);
            let disp_sq = dx * dx + dy * dy;
            // one `maxsd`; `f64::max` adds a NaN test to the loop's chain
            // (a NaN position shows up in the energy and stops the run)
            if disp_sq > max_disp_sq {
                max_disp_sq = disp_sq;
            }
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
    // out of line so that profiles show each phase apart; costs nothing
    #[inline(never)]
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

    /// Builds strip `k`'s half neighbour list from the cell sort. Positions
    /// are inside the box here (the sort wrapped them).
    // out of line so that profiles show each phase apart; costs nothing
    #[inline(never)]
    unsafe fn build_list(&self, k: usize) {
        #[cfg(target_arch = "x86_64")]
        match self.width {
            Width::Base => self.build_list_with::<Sse2, false>(k),
            Width::Avx2 => self.build_list_avx2(k),
        }
        #[cfg(not(target_arch = "x86_64"))]
        self.build_list_with::<Portable, false>(k);
    }

    /// [`Self::build_list`] offering candidates four at a time in AVX2
    /// registers ([`wide::offer_run_avx2`]): the same lists.
    ///
    /// # Safety
    /// That of [`Self::build_list`], and the CPU has AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn build_list_avx2(&self, k: usize) {
        self.build_list_with::<Sse2, true>(k);
    }

    /// [`Self::build_list`] with the lane implementation `V`, and with
    /// AVX2 registers for the candidates when `AVX2` (only from
    /// [`Self::build_list_avx2`]).
    #[inline(always)]
    unsafe fn build_list_with<V: Lanes, const AVX2: bool>(&self, k: usize) {
        let strip = &mut *self.strips[k].get();
        // nothing writes particles during this phase
        let p = &*self.particles.get();
        let pos = &p.pos;
        let range = strip.range.clone();
        strip.list.clear();
        strip.owner.clear();
        strip.chunk_start.clear();
        strip.chunk_start.push(0);
        let sentinel = self.sentinel(k);
        if self.grid.cells == 0 {
            for i in range {
                let mut cand = CandidateWriter::new(&mut strip.list, self.n - i);
                for j in (i + 1)..self.n {
                    let dx = self.min_image(pos[i][0] - pos[j][0]);
                    let dy = self.min_image(pos[i][1] - pos[j][1]);
                    cand.offer(j, dx * dx + dy * dy < self.list_cut_sq);
                }
                cand.finish(i, sentinel, &mut strip.owner);
                strip.chunk_start.push(strip.owner.len() as u32);
            }
            return;
        }
        let cells = self.grid.cells;
        let l = self.box_len;
        let start_of = |c: usize| p.cell_start[c] as usize;
        let cut_sq = V::splat(self.list_cut_sq);
        for cy in self.grid.strip_rows[k].clone() {
            let (up, shift_y) = if cy + 1 == cells { (0, l) } else { (cy + 1, 0.0) };
            for cx in 0..cells {
                let c = cy * cells + cx;
                let own_end = start_of(c + 1);
                // The forward cells of the half stencil (right, up-left, up,
                // up-right) as runs of consecutive particles, each with the
                // offset that brings its particles next to this cell: cells
                // that are neighbours in memory too are merged into one run.
                let mut runs = [(0, 0, 0.0, 0.0); 4];
                let mut nruns = 0;
                let mut add = |cells_run: Range<usize>, sx: f64, sy: f64| {
                    runs[nruns] = (start_of(cells_run.start), start_of(cells_run.end), sx, sy);
                    nruns += 1;
                };
                // the right cell follows this one in memory unless it wraps
                let own_run_end = if cx + 1 < cells {
                    start_of(c + 2)
                } else {
                    add(cy * cells..cy * cells + 1, l, 0.0);
                    own_end
                };
                let row = up * cells;
                if cx == 0 {
                    add(row + cells - 1..row + cells, -l, shift_y);
                    add(row..row + 2, 0.0, shift_y);
                } else if cx + 1 == cells {
                    add(row + cx - 1..row + cx + 1, 0.0, shift_y);
                    add(row..row + 1, l, shift_y);
                } else {
                    add(row + cx - 1..row + cx + 2, 0.0, shift_y);
                }
                let runs = &runs[..nruns];
                let forward: usize = runs.iter().map(|r| r.1 - r.0).sum();
                for i in start_of(c)..own_end {
                    let pi = V::load(&pos[i]);
                    let mut cand = CandidateWriter::new(&mut strip.list, own_run_end - i + forward);
                    let mut offer = |run: Range<usize>, shift: [f64; 2]| {
                        #[cfg(target_arch = "x86_64")]
                        if AVX2 {
                            // SAFETY: AVX2 is set only by `build_list_avx2`,
                            // which runs when the CPU has AVX2.
                            let cut = self.list_cut_sq;
                            unsafe { wide::offer_run_avx2(&mut cand, pos, pi.to_array(), run, shift, cut) };
                            return;
                        }
                        offer_run(&mut cand, pos, pi, run, shift, cut_sq);
                    };
                    offer(i + 1..own_run_end, [0.0, 0.0]);
                    for &(from, to, sx, sy) in runs {
                        offer(from..to, [sx, sy]);
                    }
                    cand.finish(i, sentinel, &mut strip.owner);
                    strip.chunk_start.push(strip.owner.len() as u32);
                }
            }
        }
    }

    /// Pair forces of strip `k`'s list; potential energy and virial of the
    /// strip.
    unsafe fn forces(&self, k: usize) {
        #[cfg(target_arch = "x86_64")]
        match self.width {
            Width::Base => {
                self.forces_with::<Sse2>(k, [pair_forces::<Sse2, false>, pair_forces::<Sse2, true>])
            }
            Width::Avx2 => self.forces_with::<Sse2>(
                k,
                [wide::pair_forces_avx2::<false>, wide::pair_forces_avx2::<true>],
            ),
        }
        #[cfg(not(target_arch = "x86_64"))]
        self.forces_with::<Portable>(k, [pair_forces::<Portable, false>, pair_forces::<Portable, true>]);
    }

    /// [`Self::forces`] with the lane implementation `V` and its pair loops
    /// without and with the minimum image: all give the same bits
    /// (tested).
    #[inline(always)]
    unsafe fn forces_with<V: Lanes>(&self, k: usize, loops: [PairLoop<V>; 2]) {
        let strip = &mut *self.strips[k].get();
        let r = *self.raw.get();
        let consts = PairConsts::<V>::new(&self.lj, self.box_len);
        let mut sums = PotentialSums::<V>::new();
        let first = strip.range.start;
        for seg in &strip.segments {
            if self.control.is_cancelled() {
                self.interrupted.store(true, Ordering::Relaxed);
                break;
            }
            let chunk = |i: u32| strip.chunk_start[i as usize - first] as usize;
            let chunks = chunk(seg.start)..chunk(seg.end);
            let owner = &strip.owner[chunks.clone()];
            let list = &strip.list[2 * chunks.start..2 * chunks.end];
            loops[seg.crosses as usize](r, &consts, owner, list, &mut sums);
        }
        strip.potential = sums.total();
        strip.virial = sums.virial();
    }

    fn max_displacement_sq(&self) -> f64 {
        self.strips
            .iter()
            // SAFETY: read by the driver between phases.
            .map(|s| unsafe { (*s.get()).max_disp_sq })
            .fold(0.0, f64::max)
    }

    /// Potential and kinetic energy and the virial, summed strip by strip
    /// in strip order.
    fn energies(&self) -> (f64, f64, f64) {
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
    fn sentinel(&self, k: usize) -> usize {
        self.n + SENTINEL_SPACING * k
    }
}

impl Particles {
    /// A position so far from the box that it is beyond the cut-off of any
    /// particle, minimum image or not, while its square stays finite: a
    /// pair with it has force and energy exactly zero.
    const SENTINEL: [f64; 2] = [1e100, 1e100];
}

/// The byte offset of particle `i` in a `[f64; 2]` array, as lists store
/// it: it always fits a u32 ([`MAX_PARTICLES`]).
#[inline(always)]
fn offset_of(i: usize) -> u32 {
    (i * std::mem::size_of::<[f64; 2]>()) as u32
}

/// The element at byte offset `offset` of the array at `base`.
///
/// # Safety
/// `offset` is [`offset_of`] an index of the array.
#[inline(always)]
unsafe fn at(base: *mut [f64; 2], offset: u32) -> *mut [f64; 2] {
    base.cast::<u8>().add(offset as usize).cast()
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

/// Two f64 lanes and the few IEEE operations the pair loop needs, each
/// applied lane by lane (so an implementation cannot change a bit).
/// Masks are lanes with every bit set (true) or clear (false).
trait Lanes: Copy {
    fn splat(v: f64) -> Self;
    /// # Safety
    /// `p` is valid for reads.
    unsafe fn load(p: *const [f64; 2]) -> Self;
    /// # Safety
    /// `p` is valid for writes.
    unsafe fn store(self, p: *mut [f64; 2]);
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn div(self, o: Self) -> Self;
    /// Bitwise and, with a mask.
    fn and(self, mask: Self) -> Self;
    /// Mask of `self < o`.
    fn lt(self, o: Self) -> Self;
    /// `[self[0], o[0]]`.
    fn lows(self, o: Self) -> Self;
    /// `[self[1], o[1]]`.
    fn highs(self, o: Self) -> Self;
    fn to_array(self) -> [f64; 2];
    /// The sign bits of a mask: bit 0 for lane 0, bit 1 for lane 1.
    fn mask_bits(self) -> usize;
}

/// Lanes in an SSE2 register: one instruction per operation.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Sse2(std::arch::x86_64::__m128d);

// SSE2 is part of the x86-64 baseline, so these intrinsics are always
// available; newer compilers consider the register-only ones safe, older
// ones (the crate's minimum Rust) need the `unsafe` blocks.
#[cfg(target_arch = "x86_64")]
#[allow(unused_unsafe)]
impl Lanes for Sse2 {
    #[inline(always)]
    fn splat(v: f64) -> Self {
        // SAFETY: SSE2 is baseline on x86-64.
        Self(unsafe { std::arch::x86_64::_mm_set1_pd(v) })
    }
    #[inline(always)]
    unsafe fn load(p: *const [f64; 2]) -> Self {
        Self(std::arch::x86_64::_mm_loadu_pd(p.cast()))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut [f64; 2]) {
        std::arch::x86_64::_mm_storeu_pd(p.cast(), self.0)
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        // SAFETY: SSE2 is baseline on x86-64.
        Self(unsafe { std::arch::x86_64::_mm_add_pd(self.0, o.0) })
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        // SAFETY: SSE2 is baseline on x86-64.
        Self(unsafe { std::arch::x86_64::_mm_sub_pd(self.0, o.0) })
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        // SAFETY: SSE2 is baseline on x86-64.
        Self(unsafe { std::arch::x86_64::_mm_mul_pd(self.0, o.0) })
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        // SAFETY: SSE2 is baseline on x86-64.
        Self(unsafe { std::arch::x86_64::_mm_div_pd(self.0, o.0) })
    }
    #[inline(always)]
    fn and(self, mask: Self) -> Self {
        // SAFETY: SSE2 is baseline on x86-64.
        Self(unsafe { std::arch::x86_64::_mm_and_pd(self.0, mask.0) })
    }
    #[inline(always)]
    fn lt(self, o: Self) -> Self {
        // SAFETY: SSE2 is baseline on x86-64.
        Self(unsafe { std::arch::x86_64::_mm_cmplt_pd(self.0, o.0) })
    }
    #[inline(always)]
    fn lows(self, o: Self) -> Self {
        // SAFETY: SSE2 is baseline on x86-64.
        Self(unsafe { std::arch::x86_64::_mm_unpacklo_pd(self.0, o.0) })
    }
    #[inline(always)]
    fn highs(self, o: Self) -> Self {
        // SAFETY: SSE2 is baseline on x86-64.
        Self(unsafe { std::arch::x86_64::_mm_unpackhi_pd(self.0, o.0) })
    }
    #[inline(always)]
    fn to_array(self) -> [f64; 2] {
        let mut out = [0.0; 2];
        // SAFETY: `out` is two f64s.
        unsafe { std::arch::x86_64::_mm_storeu_pd(out.as_mut_ptr(), self.0) };
        out
    }
    #[inline(always)]
    fn mask_bits(self) -> usize {
        // SAFETY: SSE2 is baseline on x86-64.
        (unsafe { std::arch::x86_64::_mm_movemask_pd(self.0) }) as usize
    }
}

/// Lanes as two plain f64s: what other architectures run, and what the
/// tests check [`Sse2`] against.
#[cfg(any(test, not(target_arch = "x86_64")))]
#[derive(Clone, Copy)]
struct Portable([f64; 2]);

#[cfg(any(test, not(target_arch = "x86_64")))]
impl Portable {
    #[inline(always)]
    fn map(self, o: Self, f: impl Fn(f64, f64) -> f64) -> Self {
        Self([f(self.0[0], o.0[0]), f(self.0[1], o.0[1])])
    }
}

#[cfg(any(test, not(target_arch = "x86_64")))]
impl Lanes for Portable {
    #[inline(always)]
    fn splat(v: f64) -> Self {
        Self([v, v])
    }
    #[inline(always)]
    unsafe fn load(p: *const [f64; 2]) -> Self {
        Self(*p)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut [f64; 2]) {
        *p = self.0
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self.map(o, |a, b| a + b)
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        self.map(o, |a, b| a - b)
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        self.map(o, |a, b| a * b)
    }
    #[inline(always)]
    fn div(self, o: Self) -> Self {
        self.map(o, |a, b| a / b)
    }
    #[inline(always)]
    fn and(self, mask: Self) -> Self {
        self.map(mask, |a, m| f64::from_bits(a.to_bits() & m.to_bits()))
    }
    #[inline(always)]
    fn lt(self, o: Self) -> Self {
        self.map(o, |a, b| f64::from_bits(if a < b { u64::MAX } else { 0 }))
    }
    #[inline(always)]
    fn lows(self, o: Self) -> Self {
        Self([self.0[0], o.0[0]])
    }
    #[inline(always)]
    fn highs(self, o: Self) -> Self {
        Self([self.0[1], o.0[1]])
    }
    #[inline(always)]
    fn to_array(self) -> [f64; 2] {
        self.0
    }
    #[inline(always)]
    fn mask_bits(self) -> usize {
        (self.0[0].to_bits() >> 63) as usize | ((self.0[1].to_bits() >> 63) as usize) << 1
    }
}

/// The constants of the pair loop, splatted once per strip.
struct PairConsts<V> {
    cutoff_sq: V,
    /// The energy shift over 4 (see [`pair_forces`] for the factors).
    quarter_shift: V,
    one: V,
    half: V,
    forty_eight: V,
    box_len: V,
    half_box: V,
    minus_half_box: V,
}

impl<V: Lanes> PairConsts<V> {
    fn new(lj: &LennardJones, box_len: f64) -> Self {
        Self {
            cutoff_sq: V::splat(lj.cutoff_sq),
            quarter_shift: V::splat(0.25 * lj.shift),
            one: V::splat(1.0),
            half: V::splat(0.5),
            forty_eight: V::splat(48.0),
            box_len: V::splat(box_len),
            half_box: V::splat(0.5 * box_len),
            minus_half_box: V::splat(-0.5 * box_len),
        }
    }

    /// Minimum image of a separation `[dx, dy]`, without branches: ± L
    /// where a component is past ± L / 2.
    #[inline(always)]
    fn min_image(&self, d: V) -> V {
        let above = self.half_box.lt(d);
        let below = d.lt(self.minus_half_box);
        d.sub(self.box_len.and(above)).add(self.box_len.and(below))
    }
}

/// A strip's potential energy over 4 and virial over 48 as they are
/// summed, pairs taken two at a time adding into two lanes each.
struct PotentialSums<V> {
    lanes: V,
    /// Σ s6·(s6 − 1/2) ([`pair_forces`]): the virial over 48.
    virial_lanes: V,
}

impl<V: Lanes> PotentialSums<V> {
    fn new() -> Self {
        Self {
            lanes: V::splat(0.0),
            virial_lanes: V::splat(0.0),
        }
    }

    /// The potential energy: the sums times 4, exact (a power of two).
    fn total(&self) -> f64 {
        let [a, b] = self.lanes.to_array();
        4.0 * (a + b)
    }

    /// The virial Σ rᵢⱼ·fᵢⱼ: the sums times 48.
    fn virial(&self) -> f64 {
        let [a, b] = self.virial_lanes.to_array();
        48.0 * (a + b)
    }
}

/// A pair loop: [`pair_forces`] at some width ([`wide`]).
type PairLoop<V> = unsafe fn(Raw, &PairConsts<V>, &[u32], &[u32], &mut PotentialSums<V>);

/// Forces of the pairs `(owner[k], list[2k])` and `(owner[k], list[2k +
/// 1])` for every k, accumulated into `r.force`; pair energies and virials
/// into `sums`.
///
/// The pairs go two at a time, one per lane, in one flat loop: each
/// particle's list was padded to an even length, so the loop has no branch
/// that depends on the data (a loop per particle, with its odd last
/// neighbour, mispredicted about once a particle). The separations
/// `d1 = [dx1, dy1]` and `d2` are formed in place, their squares transposed
/// so that one register holds both `r²`, and one division serves both
/// pairs. Beyond the cut-off a pair's `1/r²` is masked to zero, which zeroes
/// its force and energy: about one listed pair in five lies out there, too
/// many for a branch. With `MIN_IMAGE` false the plain separation is used
/// (module docs: valid for particles whose pairs never cross the boundary).
///
/// Factors are rearranged, exactly, to save operations: with s = 1/r² and
/// s6 = s³, the energy 4·s6·(s6 − 1) − shift is summed as s6·(s6 − 1) −
/// shift/4 and multiplied by 4 once per strip, and the force factor
/// 24·s·s6·(2·s6 − 1) is computed as 48·s·s6·(s6 − 1/2). Scaling by a power
/// of two is exact in binary floating point, so these give the same bits as
/// the textbook forms (outside overflow, where the run fails either way).
/// A pair's virial rᵢⱼ·fᵢⱼ = r²·factor = 48·s6·(s6 − 1/2) is summed as
/// s6·(s6 − 1/2), a product the force factor computes anyway, and
/// multiplied by 48 once per strip: one multiply and one add per two pairs
/// on a chain of its own beside the energy's, in the energy's order.
///
/// # Safety
/// Every entry of `owner` and `list` is [`offset_of`] a slot of the
/// particle arrays; the two pairs of a step are different particles; no
/// other thread touches the forces written here (module docs).
#[inline(always)]
unsafe fn pair_forces<V: Lanes, const MIN_IMAGE: bool>(
    r: Raw,
    c: &PairConsts<V>,
    owner: &[u32],
    list: &[u32],
    sums: &mut PotentialSums<V>,
) {
    let mut pot = sums.lanes;
    let mut vir = sums.virial_lanes;
    for (&i, jj) in owner.iter().zip(list.chunks_exact(2)) {
        let (j1, j2) = (jj[0], jj[1]);
        let pi = V::load(at(r.pos, i));
        let mut d1 = pi.sub(V::load(at(r.pos, j1)));
        let mut d2 = pi.sub(V::load(at(r.pos, j2)));
        if MIN_IMAGE {
            d1 = c.min_image(d1);
            d2 = c.min_image(d2);
        }
        let (s1, s2) = (d1.mul(d1), d2.mul(d2));
        // [dx1² + dy1², dx2² + dy2²]
        let r2 = s1.lows(s2).add(s1.highs(s2));
        let inside = r2.lt(c.cutoff_sq);
        let sr2 = c.one.div(r2).and(inside);
        let sr6 = sr2.mul(sr2).mul(sr2);
        let energy = sr6.mul(sr6.sub(c.one)).sub(c.quarter_shift.and(inside));
        pot = pot.add(energy);
        let attraction = sr6.sub(c.half);
        vir = vir.add(sr6.mul(attraction));
        let factor = c.forty_eight.mul(sr2).mul(sr6).mul(attraction);
        let f1 = d1.mul(factor.lows(factor));
        let f2 = d2.mul(factor.highs(factor));
        let fi = at(r.force, i);
        V::load(fi).add(f1.add(f2)).store(fi);
        V::load(at(r.force, j1)).sub(f1).store(at(r.force, j1));
        V::load(at(r.force, j2)).sub(f2).store(at(r.force, j2));
    }
    sums.lanes = pot;
    sums.virial_lanes = vir;
}

/// Offers the particles `run` as neighbours of the particle at `pi`, two
/// at a time: near when `|pi - (pj + shift)|² < cut_sq`. The same IEEE
/// operations for every lane implementation, so the same lists.
#[inline(always)]
fn offer_run<V: Lanes>(
    cand: &mut CandidateWriter<'_>,
    pos: &[[f64; 2]],
    pi: V,
    run: Range<usize>,
    shift: [f64; 2],
    cut_sq: V,
) {
    // SAFETY: `shift` is two f64s.
    let shift = unsafe { V::load(&shift) };
    let candidates = &pos[run.clone()];
    let mut pairs = candidates.chunks_exact(2);
    let mut j = run.start;
    for pj in &mut pairs {
        // SAFETY: both are elements of `pos`.
        let (p1, p2) = unsafe { (V::load(&pj[0]), V::load(&pj[1])) };
        let d1 = pi.sub(p1.add(shift));
        let d2 = pi.sub(p2.add(shift));
        let (s1, s2) = (d1.mul(d1), d2.mul(d2));
        let near = s1.lows(s2).add(s1.highs(s2)).lt(cut_sq).mask_bits();
        cand.offer(j, near & 1 != 0);
        cand.offer(j + 1, near & 2 != 0);
        j += 2;
    }
    if let [pj] = pairs.remainder() {
        // SAFETY: an element of `pos`.
        let d = pi.sub(unsafe { V::load(pj) }.add(shift));
        let [dx, dy] = d.to_array();
        cand.offer(j, dx * dx + dy * dy < cut_sq.to_array()[0]);
    }
}

/// Appends candidate neighbours without a branch per candidate: each is
/// written, and the length only moves past it when it is near.
struct CandidateWriter<'v> {
    list: &'v mut Vec<u32>,
    /// `list`'s buffer, held apart so that the compiler need not reload it
    /// after every write.
    ptr: *mut u32,
    len: usize,
}

impl<'v> CandidateWriter<'v> {
    /// Makes room for `max` more entries (the padding included).
    fn new(list: &'v mut Vec<u32>, max: usize) -> Self {
        list.reserve(max);
        let len = list.len();
        let ptr = list.as_mut_ptr();
        Self { list, ptr, len }
    }

    #[inline(always)]
    fn offer(&mut self, j: usize, near: bool) {
        debug_assert!(self.len < self.list.capacity());
        // SAFETY: `new` reserved room for every offer; only entries below
        // `len` are ever exposed (in `finish`).
        unsafe { *self.ptr.add(self.len) = offset_of(j) };
        self.len += near as usize;
    }

    /// Keeps the near candidates of particle `i`, padded to an even count
    /// with `sentinel` (`new` reserved room for that too), and records `i`
    /// as the owner of each pair of them.
    fn finish(mut self, i: usize, sentinel: usize, owner: &mut Vec<u32>) {
        let start = self.list.len();
        self.offer(sentinel, (self.len - start) % 2 == 1);
        // SAFETY: entries below `len` were all written by `offer`.
        unsafe { self.list.set_len(self.len) };
        let pairs = (self.len - start) / 2;
        // Most particles have 1 to 5 pairs: writing a fixed 8 owners and
        // keeping `pairs` of them saves a loop whose length the branch
        // predictor cannot guess.
        const FIXED: usize = 8;
        owner.reserve(pairs.max(FIXED));
        let len = owner.len();
        // SAFETY: room for `pairs.max(FIXED)` entries was reserved just now.
        unsafe {
            let free = owner.as_mut_ptr().add(len);
            for k in 0..FIXED {
                *free.add(k) = offset_of(i);
            }
            for k in FIXED..pairs {
                *free.add(k) = offset_of(i);
            }
            owner.set_len(len + pairs);
        }
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
        if self.sim.sort_by_cell() {
            self.phase(Phase::Permute);
            self.sim.sort_finish();
        }
        self.phase(Phase::BuildLists);
    }

    fn forces(&self) {
        self.phase(Phase::ForcesEven);
        self.phase(Phase::ForcesOdd);
    }

    fn integrate(&self, run: &mut Run<'_>) {
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
    fn restore(&self, pos: Vec<[f64; 2]>, force: Vec<[f64; 2]>) {
        self.rebuild();
        // SAFETY: no phase is open, so the driver is the only user.
        let p = unsafe { &mut *self.sim.particles.get() };
        let n = self.sim.n;
        p.pos[..n].copy_from_slice(&pos);
        p.force[..n].copy_from_slice(&force);
    }

    /// The state of the run now, for a checkpoint. No phase is open.
    fn snapshot(&self) -> KernelState {
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
    fn steps(&self, run: &mut Run<'_>) {
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::sim::rng::SplitMix64;

    #[test]
    fn dense_boxes_keep_every_cell_that_fits() {
        // the default density: cells of the list cut-off's width, as many
        // as fit, so the sort order and the bits are what they always were
        for n in [36usize, 100, 1000, 10_000, 100_000, 2_000_000] {
            let box_len = (n as f64 / 0.5).sqrt();
            let (cells, _) = Grid::shape(box_len, 2.8, n);
            assert_eq!(cells, (box_len / 2.8).floor() as usize, "N={n}");
        }
        // the seed's poison task: ρ = 1e-9, N = 100 asked for 1.3e10 cells
        let (cells, _) = Grid::shape((100.0f64 / 1e-9).sqrt(), 2.8, 100);
        assert_eq!(cells, 20);
        let big = Physics {
            num_particles: 100,
            density: 1e-9,
            temperature: 1.0,
            dt: 0.005,
            cutoff: 2.5,
        };
        assert!(Optimized.estimate(&big, 10).memory_bytes < 1e5);
    }

    #[test]
    fn the_estimate_counts_what_a_run_allocates() {
        // the grid's arrays and the particle arrays as `Sim::new` makes
        // them, against the estimate of the same physics
        for (n, density) in [(1000usize, 0.5), (5000, 0.05), (100, 1e-6), (20, 0.5)] {
            let physics = Physics {
                num_particles: n,
                density,
                temperature: 1.0,
                dt: 0.005,
                cutoff: 2.5,
            };
            let grid = Grid::new(physics.box_len(), 2.8, n);
            let cells = grid.cell_count();
            let slots = n + SENTINEL_SPACING * grid.strip_rows.len();
            let arrays = (2 * cells + 1) * 4 + 7 * 16 * slots + 4 * 4 * n;
            let estimate = Optimized.estimate(&physics, 1).memory_bytes;
            assert!(
                estimate >= arrays as f64,
                "N={n} ρ={density}: {estimate} < {arrays}"
            );
        }
    }

    proptest! {
        /// Any box, any float: the grid is all pairs or at least 3 × 3
        /// cells no narrower than the list cut-off, at most 4 per
        /// particle (or 9), and nothing overflows or panics.
        #[test]
        fn the_cell_grid_is_bounded_for_any_box(
            box_len in prop_oneof![
                Just(f64::INFINITY), Just(f64::NAN), Just(0.0), Just(f64::MAX), Just(1e151),
                1e-3f64..1e7, 0.0f64..f64::MAX,
            ],
            list_cut in 1.3f64..10.3,
            n in prop_oneof![0usize..100, 0usize..=MAX_PARTICLES, Just(usize::MAX)],
        ) {
            let (cells, strips) = Grid::shape(box_len, list_cut, n);
            prop_assert!(strips >= 1);
            if cells != 0 {
                prop_assert!(cells >= 3);
                let count = cells.checked_mul(cells).unwrap();
                prop_assert!(count <= n.saturating_mul(MAX_CELLS_PER_PARTICLE).max(9));
                prop_assert!(box_len / cells as f64 >= list_cut, "cells narrower than the cut-off");
                prop_assert!(strips >= 2 && strips <= cells && strips % 2 == 0);
            }
        }

        /// Every accepted density and cut-off gives a finite estimate, and
        /// the grid's part of it never passes 4 cells per particle.
        #[test]
        fn the_estimate_is_finite_inside_the_ranges(
            n in 2usize..2_000_000,
            density in 1e-6f64..=1.2,
            cutoff in 1.0f64..=10.0,
        ) {
            let physics = Physics { num_particles: n, density, temperature: 1.0, dt: 0.005, cutoff };
            let e = Optimized.estimate(&physics, 1000);
            prop_assert!(e.memory_bytes.is_finite() && e.memory_bytes > 0.0);
            let (cells, _) = Grid::shape(physics.box_len(), cutoff + SKIN, n);
            prop_assert!(cells * cells <= (4 * n).max(9));
        }
    }

    pub(super) const BOX: f64 = 12.0;

    /// A jittered 12 × 12 lattice (no two particles closer than 0.4) plus
    /// the sentinel slot, and every pair i < j within `reach` (minimum
    /// image) listed the way the kernel lists them: padded, with owners.
    pub(super) fn setup(reach: f64) -> (Vec<[f64; 2]>, Vec<u32>, Vec<u32>) {
        let mut rng = SplitMix64::new(7);
        let mut pos: Vec<[f64; 2]> = (0..144)
            .map(|s| {
                let jitter = |rng: &mut SplitMix64| 0.6 * (rng.next_unit() - 0.5);
                [
                    (s % 12) as f64 + 0.5 + jitter(&mut rng),
                    (s / 12) as f64 + 0.5 + jitter(&mut rng),
                ]
            })
            .collect();
        let n = pos.len();
        pos.push(Particles::SENTINEL);
        let image = |d: f64| d - BOX * (d / BOX).round();
        let (mut owner, mut list) = (Vec::new(), Vec::new());
        for i in 0..n {
            let mut cand = CandidateWriter::new(&mut list, n - i);
            for j in i + 1..n {
                let (dx, dy) = (image(pos[i][0] - pos[j][0]), image(pos[i][1] - pos[j][1]));
                cand.offer(j, dx * dx + dy * dy < reach * reach);
            }
            cand.finish(i, n, &mut owner);
        }
        (pos, owner, list)
    }

    /// Forces, potential energy and virial of the listed pairs with lanes
    /// `V`.
    fn forces<V: Lanes, const MIN_IMAGE: bool>(
        pos: &mut [[f64; 2]],
        owner: &[u32],
        list: &[u32],
    ) -> (Vec<[f64; 2]>, [f64; 2]) {
        let mut force = vec![[0.0; 2]; pos.len()];
        let r = Raw {
            pos: pos.as_mut_ptr(),
            vel: std::ptr::null_mut(),
            force: force.as_mut_ptr(),
            built_at: std::ptr::null_mut(),
        };
        let consts = PairConsts::<V>::new(&LennardJones::new(2.5), BOX);
        let mut sums = PotentialSums::<V>::new();
        // SAFETY: `setup` lists offsets of `pos`, distinct in each pair.
        unsafe { pair_forces::<V, MIN_IMAGE>(r, &consts, owner, list, &mut sums) };
        (force, [sums.total(), sums.virial()])
    }

    fn bits(force: &[[f64; 2]], sums: [f64; 2]) -> Vec<u64> {
        force
            .iter()
            .flat_map(|f| [f[0].to_bits(), f[1].to_bits()])
            .chain(sums.map(f64::to_bits))
            .collect()
    }

    #[test]
    fn portable_lanes_give_the_sse2_bits_in_the_pair_loop() {
        let (mut pos, owner, list) = setup(2.8);
        assert!(list.len() > 1000 && list.len() % 2 == 0);
        let (f, e) = forces::<Portable, true>(&mut pos, &owner, &list);
        assert!(e[0].is_finite() && e[0] != 0.0 && e[1].is_finite() && e[1] != 0.0);
        // Newton's third law: the forces sum to zero
        let total: f64 = f.iter().map(|f| f[0] + f[1]).sum();
        assert!(total.abs() < 1e-9, "{total}");
        #[cfg(target_arch = "x86_64")]
        {
            let (f2, e2) = forces::<Sse2, true>(&mut pos, &owner, &list);
            assert_eq!(bits(&f, e), bits(&f2, e2));
            let (f, e) = forces::<Portable, false>(&mut pos, &owner, &list);
            let (f2, e2) = forces::<Sse2, false>(&mut pos, &owner, &list);
            assert_eq!(bits(&f, e), bits(&f2, e2));
        }
    }

    #[test]
    fn the_factored_pair_terms_equal_the_textbook_ones() {
        // one pair at a time: the kernel's energy and force against
        // `LennardJones::pair`, bit for bit (the module docs' claim)
        let lj = LennardJones::new(2.5);
        for k in 0..2000 {
            let r = 0.8 + 1.8 * k as f64 / 2000.0;
            let mut pos = vec![[1.0, 1.0], [1.0 + r, 1.0], Particles::SENTINEL];
            let (owner, list) = (vec![0], vec![offset_of(1), offset_of(2)]);
            let (f, e) = forces::<Portable, true>(&mut pos, &owner, &list);
            let dx = pos[0][0] - pos[1][0];
            let r2 = dx * dx + 0.0 * 0.0;
            let (energy, factor) = if r2 < lj.cutoff_sq {
                lj.pair(r2)
            } else {
                (0.0, 0.0)
            };
            // equal as numbers, so equal bits but for the sign of a zero
            assert_eq!(e[0], energy, "r = {r}");
            // the virial r·f, summed in another but exact-in-theory form
            let virial = factor * r2;
            assert!(
                (e[1] - virial).abs() <= 1e-14 * virial.abs().max(1e-300),
                "r = {r}: {} vs {virial}",
                e[1]
            );
            assert_eq!(f[0][0], factor * dx, "r = {r}");
            assert_eq!(f[1][0], -(factor * dx), "r = {r}");
        }
    }

    #[test]
    fn portable_lanes_give_the_sse2_neighbour_lists() {
        let (pos, _, _) = setup(2.8);
        let cut_sq = 2.8 * 2.8;
        let lists = |lanes: &dyn Fn(&mut CandidateWriter<'_>, usize)| {
            let mut list = Vec::new();
            for i in 0..144 {
                let mut cand = CandidateWriter::new(&mut list, 144);
                lanes(&mut cand, i);
                cand.finish(i, 144, &mut Vec::new());
            }
            list
        };
        let portable = lists(&|cand, i| {
            // SAFETY: an element of `pos`.
            let pi = unsafe { Portable::load(&pos[i]) };
            offer_run(cand, &pos, pi, 0..144, [BOX, -BOX], Portable::splat(cut_sq));
            offer_run(cand, &pos, pi, i + 1..144, [0.0, 0.0], Portable::splat(cut_sq));
        });
        assert!(portable.len() > 1000);
        #[cfg(target_arch = "x86_64")]
        {
            let sse2 = lists(&|cand, i| {
                // SAFETY: an element of `pos`.
                let pi = unsafe { Sse2::load(&pos[i]) };
                offer_run(cand, &pos, pi, 0..144, [BOX, -BOX], Sse2::splat(cut_sq));
                offer_run(cand, &pos, pi, i + 1..144, [0.0, 0.0], Sse2::splat(cut_sq));
            });
            assert_eq!(portable, sse2);
        }
    }
}
