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
//!   candidates at a time ([`wide`]): the same operations lane by lane, and
//!   sums laid out so that a 256-bit register adds into them at once and
//!   the 128-bit loop adds the same values in the same order
//!   ([`forces::PotentialSums`]), so the same bits again (tested). The build
//!   packs each four candidates' near ones with one shuffle and one store,
//!   so the list's length moves once per four, not once per candidate.
//! - The cell sort moves positions, velocities and original indices, not
//!   the forces: they are all zero whenever the lists are rebuilt.
//! - The code by concern: `grid` (cells and strips), `sort` (the counting
//!   sort), `lists` (neighbour lists), `forces` (the pair loop),
//!   `integrate` (the Verlet passes), `sim` (set-up, dispatch, sums),
//!   `driver` (phases and the thread pool), `lanes` and `wide` (SSE2 and
//!   portable lanes, AVX2).
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

mod driver;
mod forces;
mod grid;
mod integrate;
mod lanes;
mod lists;
mod sim;
mod sort;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod wide;

use driver::{Driver, Pool};
use forces::{pair_forces, PairConsts, PotentialSums};
use lanes::Lanes;
#[cfg(any(test, not(target_arch = "x86_64")))]
use lanes::Portable;
#[cfg(target_arch = "x86_64")]
use lanes::Sse2;
use lists::{offer_run, CandidateWriter};
use sim::{at, offset_of};

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
/// Arrays moved by the sort, one Permute unit each: positions (and the
/// build positions with them), velocities, original indices. Not the
/// forces: the lists are rebuilt only before the forces are summed, when
/// every force is zero, so there is nothing to move.
const PERMUTED_ARRAYS: usize = 3;
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
        // 2: the potential energy, virial and kinetic energy summed in
        // four running sums (issue 21): the same trajectories, other last
        // bits in the energies and pressure
        "optimized-2"
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
    // pos, vel, force, built_at and two sort scratch arrays; orig,
    // scratch_cell, scratch_orig, scratch_idx
    let particles = 6.0 * VEC2 * slots + 4.0 * INDEX * n;
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
