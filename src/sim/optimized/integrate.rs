//! Velocity Verlet's passes over the particles: the first half kick and
//! drift, the second half kick, and the kinetic energy.

use super::*;

impl Sim<'_> {
    /// First half kick and drift (no wrap: see the module docs); clears
    /// forces; measures the displacement since the last build.
    // out of line so that profiles show each phase apart; costs nothing
    #[inline(never)]
    pub(super) unsafe fn kick_drift(&self, k: usize) {
        let strip = &mut *self.strips[k].get();
        let r = *self.raw.get();
        let (half_dt, dt) = (0.5 * self.dt, self.dt);
        let step = |i: usize| {
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
            dx * dx + dy * dy
        };
        // one `maxsd` per particle; `f64::max` adds a NaN test to the
        // loop's chain (a NaN position shows up in the energy and stops
        // the run). Four running maxima, not one: a single one is a chain
        // of `maxsd` latencies that bounded this loop. A maximum is exact
        // in any order, so the result is the one-chain result.
        let keep = |max: &mut f64, d: f64| {
            if d > *max {
                *max = d;
            }
        };
        let mut max = [0.0f64; 4];
        let range = strip.range.clone();
        let mut i = range.start;
        while i + 4 <= range.end {
            keep(&mut max[0], step(i));
            keep(&mut max[1], step(i + 1));
            keep(&mut max[2], step(i + 2));
            keep(&mut max[3], step(i + 3));
            i += 4;
        }
        while i < range.end {
            keep(&mut max[0], step(i));
            i += 1;
        }
        let mut max_disp_sq = max[0];
        for m in &max[1..] {
            keep(&mut max_disp_sq, *m);
        }
        strip.max_disp_sq = max_disp_sq;
    }

    /// Kinetic energy of the strip, without moving anything (step 0).
    pub(super) unsafe fn kinetic(&self, k: usize) {
        let strip = &mut *self.strips[k].get();
        let r = *self.raw.get();
        strip.kinetic = kinetic_sum(strip.range.clone(), |i| {
            let v = *r.vel.add(i);
            v[0] * v[0] + v[1] * v[1]
        });
    }

    /// Second half kick; kinetic energy of the strip.
    // out of line so that profiles show each phase apart; costs nothing
    #[inline(never)]
    pub(super) unsafe fn kick(&self, k: usize, half_dt: f64) {
        let strip = &mut *self.strips[k].get();
        let r = *self.raw.get();
        strip.kinetic = kinetic_sum(strip.range.clone(), |i| {
            let f = *r.force.add(i);
            let v = &mut *r.vel.add(i);
            v[0] += half_dt * f[0];
            v[1] += half_dt * f[1];
            v[0] * v[0] + v[1] * v[1]
        });
    }
}

/// Half the sum of `v2(i)` (a particle's |v|², after whatever it does to
/// the particle) over `range`, in four running sums: particle `start + m`
/// adds into sum `m mod 4`, and the sums are added pairwise at the end. One
/// running sum was a chain of additions, one per particle, that bounded
/// the kick; four are independent. The order is fixed by the strip alone,
/// so the bits are the same on any thread and at any width.
#[inline(always)]
fn kinetic_sum(range: std::ops::Range<usize>, mut v2: impl FnMut(usize) -> f64) -> f64 {
    let mut sums = [0.0f64; 4];
    let mut i = range.start;
    while i + 4 <= range.end {
        for (m, sum) in sums.iter_mut().enumerate() {
            *sum += v2(i + m);
        }
        i += 4;
    }
    for (m, sum) in sums.iter_mut().enumerate().take(range.end - i) {
        *sum += v2(i + m);
    }
    0.5 * ((sums[0] + sums[1]) + (sums[2] + sums[3]))
}
