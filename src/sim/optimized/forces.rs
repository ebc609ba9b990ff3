//! The pair loop: forces, potential energy and virial of a strip's list.

use super::*;

impl Sim<'_> {
    /// Pair forces of strip `k`'s list; potential energy and virial of the
    /// strip.
    pub(super) unsafe fn forces(&self, k: usize) {
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
    pub(super) unsafe fn forces_with<V: Lanes>(&self, k: usize, loops: [PairLoop<V>; 2]) {
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
}

/// The constants of the pair loop, splatted once per strip.
pub(super) struct PairConsts<V> {
    pub(super) cutoff_sq: V,
    /// The energy shift over 4 (see [`pair_forces`] for the factors).
    pub(super) quarter_shift: V,
    pub(super) one: V,
    pub(super) half: V,
    pub(super) forty_eight: V,
    pub(super) box_len: V,
    pub(super) half_box: V,
    pub(super) minus_half_box: V,
}

impl<V: Lanes> PairConsts<V> {
    pub(super) fn new(lj: &LennardJones, box_len: f64) -> Self {
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
    pub(super) fn min_image(&self, d: V) -> V {
        let above = self.half_box.lt(d);
        let below = d.lt(self.minus_half_box);
        d.sub(self.box_len.and(above)).add(self.box_len.and(below))
    }
}

/// A strip's potential energy over 4 and virial over 48 as they are
/// summed: each in two lane pairs, `[0]` taking the even list steps of a
/// segment and `[1]` the odd ones, each step's two pairs adding into the
/// two lanes of its pair. So the 256-bit loop ([`wide`]), which holds two
/// list steps side by side, adds a whole register at once, and the 128-bit
/// loop adds the same values into the same lanes in the same order.
pub(super) struct PotentialSums<V> {
    pub(super) lanes: [V; 2],
    /// Σ s6·(s6 − 1/2) ([`pair_forces`]): the virial over 48.
    pub(super) virial_lanes: [V; 2],
}

impl<V: Lanes> PotentialSums<V> {
    pub(super) fn new() -> Self {
        Self {
            lanes: [V::splat(0.0); 2],
            virial_lanes: [V::splat(0.0); 2],
        }
    }

    /// The potential energy: the sums times 4, exact (a power of two).
    pub(super) fn total(&self) -> f64 {
        4.0 * Self::fold(&self.lanes)
    }

    /// The virial Σ rᵢⱼ·fᵢⱼ: the sums times 48.
    pub(super) fn virial(&self) -> f64 {
        48.0 * Self::fold(&self.virial_lanes)
    }

    /// The four lanes in one fixed order: even steps' lanes, then odd
    /// steps' lanes.
    fn fold(lanes: &[V; 2]) -> f64 {
        let ([a, b], [c, d]) = (lanes[0].to_array(), lanes[1].to_array());
        (a + b) + (c + d)
    }
}

/// A pair loop: [`pair_forces`] at some width ([`wide`]).
pub(super) type PairLoop<V> = unsafe fn(Raw, &PairConsts<V>, &[u32], &[u32], &mut PotentialSums<V>);

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
pub(super) unsafe fn pair_forces<V: Lanes, const MIN_IMAGE: bool>(
    r: Raw,
    c: &PairConsts<V>,
    owner: &[u32],
    list: &[u32],
    sums: &mut PotentialSums<V>,
) {
    let mut pot = sums.lanes;
    let mut vir = sums.virial_lanes;
    // steps two at a time: the even one's sums into `[0]`, the odd one's
    // into `[1]` ([`PotentialSums`]); a last even step alone
    let pairs = owner.chunks_exact(2).zip(list.chunks_exact(4));
    let last = owner.len() / 2 * 2;
    for (i, jj) in pairs {
        let (e, v) = pair_step::<V, MIN_IMAGE>(r, c, i[0], [jj[0], jj[1]]);
        pot[0] = pot[0].add(e);
        vir[0] = vir[0].add(v);
        let (e, v) = pair_step::<V, MIN_IMAGE>(r, c, i[1], [jj[2], jj[3]]);
        pot[1] = pot[1].add(e);
        vir[1] = vir[1].add(v);
    }
    if let (Some(&i), Some(jj)) = (owner.get(last), list.get(2 * last..2 * last + 2)) {
        let (e, v) = pair_step::<V, MIN_IMAGE>(r, c, i, [jj[0], jj[1]]);
        pot[0] = pot[0].add(e);
        vir[0] = vir[0].add(v);
    }
    sums.lanes = pot;
    sums.virial_lanes = vir;
}

/// One list step of [`pair_forces`]: the pairs `(i, j1)` and `(i, j2)`,
/// forces added into `r.force`; returns their energies (over 4, shift
/// included) and virials (over 48), one pair per lane.
///
/// # Safety
/// That of [`pair_forces`].
#[inline(always)]
unsafe fn pair_step<V: Lanes, const MIN_IMAGE: bool>(
    r: Raw,
    c: &PairConsts<V>,
    i: u32,
    jj: [u32; 2],
) -> (V, V) {
    let [j1, j2] = jj;
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
    let attraction = sr6.sub(c.half);
    let virial = sr6.mul(attraction);
    let factor = c.forty_eight.mul(sr2).mul(sr6).mul(attraction);
    let f1 = d1.mul(factor.lows(factor));
    let f2 = d2.mul(factor.highs(factor));
    let fi = at(r.force, i);
    V::load(fi).add(f1.add(f2)).store(fi);
    V::load(at(r.force, j1)).sub(f1).store(at(r.force, j1));
    V::load(at(r.force, j2)).sub(f2).store(at(r.force, j2));
    (energy, virial)
}
