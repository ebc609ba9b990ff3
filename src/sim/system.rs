//! The physical system every kernel simulates: parameters, the box, the
//! initial lattice and velocities, and the Lennard-Jones pair potential.
//!
//! Everything here is shared by all kernels so that they start from the same
//! bits; kernels only differ in how they find pairs and order their sums.

use super::rng::SplitMix64;

/// Default reduced density ρ (DESIGN.md "The simulation").
pub const DEFAULT_DENSITY: f64 = 0.5;
/// Default initial temperature T0.
pub const DEFAULT_TEMPERATURE: f64 = 1.0;
/// Default time step.
pub const DEFAULT_DT: f64 = 0.005;
/// Default cut-off radius rc.
pub const DEFAULT_CUTOFF: f64 = 2.5;

/// The values a task may give an optional physical parameter, in reduced
/// Lennard-Jones units (ε = σ = m = 1), both ends included. Outside them a
/// run is either meaningless or dangerous to the worker, so the validator
/// refuses it with the range in the message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamRange {
    pub field: &'static str,
    pub min: f64,
    pub max: f64,
}

impl ParamRange {
    pub fn contains(&self, v: f64) -> bool {
        (self.min..=self.max).contains(&v)
    }

    /// "a number from 1e-6 to 2", for messages and the schema.
    pub fn describe(&self) -> String {
        format!("a number from {} to {}", number(self.min), number(self.max))
    }
}

/// ρ: from a dilute gas (particles ~1000 σ apart) to just past close
/// packing (2/√3 ≈ 1.155 in 2-D); a denser start puts every particle
/// inside its neighbours' repulsive cores (at ρ = 2 it blows up within
/// three steps at the default dt). Below the floor the box, and a cell
/// list over it, grows without bound.
pub const DENSITY_RANGE: ParamRange = ParamRange {
    field: "density",
    min: 1e-6,
    max: 1.2,
};
/// dt: velocity Verlet needs dt well below the time two particles take to
/// cross the repulsive wall; at the default density and T = 1, 0.02 still
/// conserves energy and 0.05 already blows up. The ceiling leaves room for
/// cold or dilute systems; anything longer cannot be integrated.
pub const DT_RANGE: ParamRange = ParamRange {
    field: "dt",
    min: 1e-6,
    max: 0.1,
};
/// T0: from a lattice at rest to 100 ε/k, 200 times the 2-D critical
/// temperature (~0.5): a hot gas, far past anything a Lennard-Jones model
/// describes.
pub const TEMPERATURE_RANGE: ParamRange = ParamRange {
    field: "temperature",
    min: 0.0,
    max: 100.0,
};
/// rc: at least σ (a shorter cut removes part of the repulsive core), at
/// most 10 σ, where the potential is below 1e-6 ε and a longer reach only
/// multiplies the neighbour lists.
pub const CUTOFF_RANGE: ParamRange = ParamRange {
    field: "cutoff",
    min: 1.0,
    max: 10.0,
};

/// A number as a person writes it: `1e-6`, `0.005`, `2`, `1e300`.
pub fn number(v: f64) -> String {
    if v != 0.0 && v.is_finite() && (v.abs() < 1e-3 || v.abs() >= 1e6) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// The resolved physical parameters of one run (defaults filled in).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Physics {
    pub num_particles: usize,
    pub density: f64,
    pub temperature: f64,
    pub dt: f64,
    pub cutoff: f64,
}

impl Physics {
    /// Side of the square periodic box, L = sqrt(N / ρ).
    pub fn box_len(&self) -> f64 {
        (self.num_particles as f64 / self.density).sqrt()
    }
}

/// The Lennard-Jones 12-6 pair potential cut at `rc` and shifted so that
/// U(rc) = 0, in reduced units (ε = σ = 1).
#[derive(Debug, Clone, Copy)]
pub struct LennardJones {
    pub cutoff_sq: f64,
    /// 4 (rc⁻¹² − rc⁻⁶), subtracted from every pair energy.
    pub shift: f64,
}

impl LennardJones {
    pub fn new(cutoff: f64) -> Self {
        let sr2 = 1.0 / (cutoff * cutoff);
        let sr6 = sr2 * sr2 * sr2;
        Self {
            cutoff_sq: cutoff * cutoff,
            shift: 4.0 * sr6 * (sr6 - 1.0),
        }
    }

    /// Energy and force factor for a pair at squared distance `r2 < rc²`.
    /// The force on the first particle is `factor · (dx, dy)`.
    #[inline(always)]
    pub fn pair(&self, r2: f64) -> (f64, f64) {
        let sr2 = 1.0 / r2;
        let sr6 = sr2 * sr2 * sr2;
        let energy = 4.0 * sr6 * (sr6 - 1.0) - self.shift;
        let factor = 24.0 * sr2 * sr6 * (2.0 * sr6 - 1.0);
        (energy, factor)
    }

    /// Energy of a pair at distance `r`, for tests and checks.
    pub fn energy_at(&self, r: f64) -> f64 {
        if r * r < self.cutoff_sq {
            self.pair(r * r).0
        } else {
            0.0
        }
    }
}

/// Positions and velocities of every particle, in the original particle
/// order, the form in which kernels receive and return the system.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub box_len: f64,
    pub pos: Vec<[f64; 2]>,
    pub vel: Vec<[f64; 2]>,
}

impl State {
    /// The DESIGN.md start: particles on a kx × ky lattice, SplitMix64
    /// velocities with the mean removed and scaled to T0.
    pub fn initial(physics: &Physics, seed: u64) -> Self {
        let n = physics.num_particles;
        let box_len = physics.box_len();
        let kx = ceil_sqrt(n);
        let ky = n.div_ceil(kx);
        let ax = box_len / kx as f64;
        let ay = box_len / ky as f64;
        let pos = (0..n)
            .map(|s| [(s % kx) as f64 * ax, (s / kx) as f64 * ay])
            .collect();

        let mut rng = SplitMix64::new(seed);
        let mut vel: Vec<[f64; 2]> = (0..n)
            .map(|_| {
                let vx = rng.next_unit() - 0.5;
                let vy = rng.next_unit() - 0.5;
                [vx, vy]
            })
            .collect();

        let (mut sum_x, mut sum_y) = (0.0, 0.0);
        for v in &vel {
            sum_x += v[0];
            sum_y += v[1];
        }
        let (mean_x, mean_y) = (sum_x / n as f64, sum_y / n as f64);
        for v in &mut vel {
            v[0] -= mean_x;
            v[1] -= mean_y;
        }
        let current = temperature(&vel);
        let scale = if current > 0.0 {
            (physics.temperature / current).sqrt()
        } else {
            0.0
        };
        for v in &mut vel {
            v[0] *= scale;
            v[1] *= scale;
        }
        Self { box_len, pos, vel }
    }
}

/// The smallest k with k² ≥ n, computed exactly in integers.
pub fn ceil_sqrt(n: usize) -> usize {
    let mut k = (n as f64).sqrt() as usize;
    while k * k < n {
        k += 1;
    }
    while k > 0 && (k - 1) * (k - 1) >= n {
        k -= 1;
    }
    k
}

/// Σ v², summed in particle order.
pub fn sum_v2(vel: &[[f64; 2]]) -> f64 {
    vel.iter().map(|v| v[0] * v[0] + v[1] * v[1]).sum()
}

/// T = Σ v² / (2N − 2), the definition used everywhere (two dimensions,
/// total momentum removed).
pub fn temperature(vel: &[[f64; 2]]) -> f64 {
    let n = vel.len();
    if n < 2 {
        return 0.0;
    }
    sum_v2(vel) / (2.0 * n as f64 - 2.0)
}

/// T = 2K / (2N − 2) from the total kinetic energy K: [`temperature`]'s
/// definition, for kernels that report K (every reported temperature is
/// this expression, so they agree to the bit).
pub fn temperature_of(kinetic: f64, num_particles: usize) -> f64 {
    let n = num_particles as f64;
    2.0 * kinetic / (2.0 * n - 2.0)
}

/// LAMMPS's `press` in two dimensions, reduced units: P = (N_f·T + W) /
/// (2A), with N_f = 2N − 2 degrees of freedom, T = [`temperature_of`],
/// W = Σ_{i<j} rᵢⱼ·fᵢⱼ the pair virial and A = L² the box's area.
pub fn pressure(physics: &Physics, kinetic: f64, virial: f64) -> f64 {
    let n = physics.num_particles as f64;
    let freedom = 2.0 * n - 2.0;
    let box_len = physics.box_len();
    let area = box_len * box_len;
    (freedom * temperature_of(kinetic, physics.num_particles) + virial) / (2.0 * area)
}

/// Wraps a coordinate back into [0, L). Both kernels use this one function
/// so that they agree exactly. The common case (moved by less than a box)
/// costs two compares; a particle flung further, which only happens in a
/// run that is blowing up, is still brought back.
#[inline(always)]
pub fn wrap(x: f64, box_len: f64) -> f64 {
    let mut x = x;
    if x >= box_len {
        x -= box_len;
    } else if x < 0.0 {
        x += box_len;
    }
    if !(0.0..box_len).contains(&x) {
        x = wrap_far(x, box_len);
    }
    x
}

#[cold]
fn wrap_far(x: f64, box_len: f64) -> f64 {
    if !x.is_finite() {
        return x; // the energy check stops the run
    }
    let x = x.rem_euclid(box_len);
    // rem_euclid may round up to L itself, the image of 0
    if x >= box_len {
        0.0
    } else {
        x
    }
}

/// Σ (i + 1)·(xᵢ + yᵢ) over particles in original order.
pub fn position_checksum(pos: &[[f64; 2]]) -> f64 {
    pos.iter()
        .enumerate()
        .map(|(i, p)| (i as f64 + 1.0) * (p[0] + p[1]))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn physics(n: usize) -> Physics {
        Physics {
            num_particles: n,
            density: DEFAULT_DENSITY,
            temperature: DEFAULT_TEMPERATURE,
            dt: DEFAULT_DT,
            cutoff: DEFAULT_CUTOFF,
        }
    }

    #[test]
    fn ceil_sqrt_is_exact() {
        for n in 1..5000usize {
            let k = ceil_sqrt(n);
            assert!(k * k >= n && (k - 1) * (k - 1) < n, "n = {n}, k = {k}");
        }
    }

    #[test]
    fn lattice_follows_the_spec_for_non_square_n() {
        let state = State::initial(&physics(30), 1);
        // kx = 6, ky = 5
        let l = (30.0f64 / 0.5).sqrt();
        assert_eq!(state.pos[7], [l / 6.0, l / 5.0]);
        assert_eq!(state.pos[29], [5.0 * (l / 6.0), 4.0 * (l / 5.0)]);
    }

    #[test]
    fn kinetic_energy_and_momentum_at_step_zero() {
        for n in [13usize, 100, 401, 10_000] {
            let state = State::initial(&physics(n), 42);
            let ke = 0.5 * sum_v2(&state.vel) / n as f64;
            let expected = (n as f64 - 1.0) / n as f64;
            assert!((ke - expected).abs() < 1e-14, "n={n}: {ke} vs {expected}");
            let px: f64 = state.vel.iter().map(|v| v[0]).sum();
            let py: f64 = state.vel.iter().map(|v| v[1]).sum();
            assert!(px.abs() < 1e-12 && py.abs() < 1e-12, "momentum {px} {py}");
        }
    }

    #[test]
    fn zero_temperature_gives_a_cold_start() {
        let mut p = physics(100);
        p.temperature = 0.0;
        let state = State::initial(&p, 7);
        assert!(state.vel.iter().all(|v| v[0] == 0.0 && v[1] == 0.0));
    }

    #[test]
    fn shifted_potential_vanishes_at_the_cutoff() {
        let lj = LennardJones::new(2.5);
        assert!(lj.pair(2.5 * 2.5).0.abs() < 1e-15);
        // minimum of the unshifted potential at 2^(1/6) is -1
        let rmin = 2f64.powf(1.0 / 6.0);
        assert!((lj.energy_at(rmin) + lj.shift + 1.0).abs() < 1e-12);
        assert!(lj.pair(rmin * rmin).1.abs() < 1e-12);
    }

    #[test]
    fn wrap_stays_in_the_box() {
        let l = 10.0;
        assert_eq!(wrap(10.0, l), 0.0);
        assert_eq!(wrap(-1e-17, l), 0.0);
        assert_eq!(wrap(10.5, l), 0.5);
        assert_eq!(wrap(-0.5, l), 9.5);
        assert_eq!(wrap(3.0, l), 3.0);
        assert_eq!(wrap(35.5, l), 5.5);
        assert_eq!(wrap(-25.5, l), 4.5);
        assert!(wrap(f64::NAN, l).is_nan());
    }
}
