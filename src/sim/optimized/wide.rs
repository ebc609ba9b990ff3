//! The pair loop on 256-bit (AVX2) registers, four pairs at a time,
//! giving the bits of [`pair_forces`] on [`Sse2`] exactly. x86-64 only;
//! chosen at run time ([`crate::sim::simd`]).
//!
//! Why the bits cannot change: every per-pair quantity (separation, r²,
//! 1/r², r⁻⁶, force factor, energy) is one IEEE operation after another,
//! lane by lane: the same operations on the same operands in the same
//! order as the 128-bit loop, and none contracted into an FMA (Rust never
//! fuses a multiply and an add unless asked to, and nothing here asks). A
//! 256-bit register holds the 128-bit registers of two consecutive steps
//! of the 128-bit loop side by side; the unpack instructions work within
//! each 128-bit half, so each half sees exactly what the 128-bit loop saw.
//! Only the sums could change bits. Forces are added into memory in list
//! order, one 128-bit half at a time, as the 128-bit loop does. Pair
//! energies and virials go into [`PotentialSums`], whose lanes are laid
//! out for this loop: even list steps in one pair of lanes, odd ones in
//! another, so a 256-bit register (step k low, step k + 1 high) adds into
//! both at once, and the 128-bit loop adds the same values into the same
//! lanes in the same order. A last odd list step (an even-numbered one
//! left alone) goes through the 128-bit loop itself, so no list needs more
//! padding than it has.

use std::arch::x86_64::*;

use std::ops::Range;

use super::{
    at, offer_run, offset_of, pair_forces, CandidateWriter, Lanes, PairConsts, PotentialSums, Raw, Sse2,
};

/// Two particles' `[f64; 2]` side by side: `a` low, `b` high.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load2(base: *mut [f64; 2], a: u32, b: u32) -> __m256d {
    let lo = _mm_loadu_pd(at(base, a).cast());
    let hi = _mm_loadu_pd(at(base, b).cast());
    _mm256_insertf128_pd::<1>(_mm256_castpd128_pd256(lo), hi)
}

/// `force[i] += sum; force[j1] -= f1; force[j2] -= f2`: one step of the
/// 128-bit loop's stores, operands in its order.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn scatter(force: *mut [f64; 2], ijj: [u32; 3], sum: __m128d, f1: __m128d, f2: __m128d) {
    let [i, j1, j2] = ijj;
    let fi = at(force, i).cast::<f64>();
    _mm_storeu_pd(fi, _mm_add_pd(_mm_loadu_pd(fi), sum));
    let fj1 = at(force, j1).cast::<f64>();
    _mm_storeu_pd(fj1, _mm_sub_pd(_mm_loadu_pd(fj1), f1));
    let fj2 = at(force, j2).cast::<f64>();
    _mm_storeu_pd(fj2, _mm_sub_pd(_mm_loadu_pd(fj2), f2));
}

/// [`pair_forces`] two list steps at a time in AVX2 registers; the same
/// contract, the same bits.
///
/// # Safety
/// That of [`pair_forces`], and the CPU has AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn pair_forces_avx2<const MIN_IMAGE: bool>(
    r: Raw,
    c: &PairConsts<Sse2>,
    owner: &[u32],
    list: &[u32],
    sums: &mut PotentialSums<Sse2>,
) {
    let wide = |v: Sse2| _mm256_broadcastsd_pd(v.0);
    let (cutoff_sq, quarter_shift, one) = (wide(c.cutoff_sq), wide(c.quarter_shift), wide(c.one));
    let (half, forty_eight) = (wide(c.half), wide(c.forty_eight));
    let (box_len, half_box, minus_half_box) = (wide(c.box_len), wide(c.half_box), wide(c.minus_half_box));
    let min_image = |d: __m256d| {
        let above = _mm256_cmp_pd::<_CMP_LT_OS>(half_box, d);
        let below = _mm256_cmp_pd::<_CMP_LT_OS>(d, minus_half_box);
        _mm256_add_pd(
            _mm256_sub_pd(d, _mm256_and_pd(box_len, above)),
            _mm256_and_pd(box_len, below),
        )
    };
    let steps = owner.len() / 2 * 2;
    // [even steps' lanes | odd steps' lanes] ([`PotentialSums`])
    let join = |v: [Sse2; 2]| _mm256_insertf128_pd::<1>(_mm256_castpd128_pd256(v[0].0), v[1].0);
    let mut pot = join(sums.lanes);
    let mut vir = join(sums.virial_lanes);
    for (i, jj) in owner.chunks_exact(2).zip(list.chunks_exact(4)) {
        let (i1, i2) = (i[0], i[1]);
        let pi = load2(r.pos, i1, i2);
        // [pair 1 | pair 3] and [pair 2 | pair 4]: the 128-bit loop's d1
        // and d2 of step k in the low half, of step k + 1 in the high half
        let mut d1 = _mm256_sub_pd(pi, load2(r.pos, jj[0], jj[2]));
        let mut d2 = _mm256_sub_pd(pi, load2(r.pos, jj[1], jj[3]));
        if MIN_IMAGE {
            d1 = min_image(d1);
            d2 = min_image(d2);
        }
        let (s1, s2) = (_mm256_mul_pd(d1, d1), _mm256_mul_pd(d2, d2));
        let r2 = _mm256_add_pd(_mm256_unpacklo_pd(s1, s2), _mm256_unpackhi_pd(s1, s2));
        let inside = _mm256_cmp_pd::<_CMP_LT_OS>(r2, cutoff_sq);
        let sr2 = _mm256_and_pd(_mm256_div_pd(one, r2), inside);
        let sr6 = _mm256_mul_pd(_mm256_mul_pd(sr2, sr2), sr2);
        let energy = _mm256_sub_pd(
            _mm256_mul_pd(sr6, _mm256_sub_pd(sr6, one)),
            _mm256_and_pd(quarter_shift, inside),
        );
        // step k's energies into the even steps' lanes, step k + 1's into
        // the odd steps': one add for both
        pot = _mm256_add_pd(pot, energy);
        let attraction = _mm256_sub_pd(sr6, half);
        vir = _mm256_add_pd(vir, _mm256_mul_pd(sr6, attraction));
        let factor = _mm256_mul_pd(_mm256_mul_pd(_mm256_mul_pd(forty_eight, sr2), sr6), attraction);
        let f1 = _mm256_mul_pd(d1, _mm256_unpacklo_pd(factor, factor));
        let f2 = _mm256_mul_pd(d2, _mm256_unpackhi_pd(factor, factor));
        let sum = _mm256_add_pd(f1, f2);
        let low = _mm256_castpd256_pd128;
        scatter(r.force, [i1, jj[0], jj[1]], low(sum), low(f1), low(f2));
        let high = _mm256_extractf128_pd::<1>;
        scatter(r.force, [i2, jj[2], jj[3]], high(sum), high(f1), high(f2));
    }
    let split = |v: __m256d| {
        [
            Sse2(_mm256_castpd256_pd128(v)),
            Sse2(_mm256_extractf128_pd::<1>(v)),
        ]
    };
    sums.lanes = split(pot);
    sums.virial_lanes = split(vir);
    // a last even step: the 128-bit loop adds it into the even steps' lanes
    pair_forces::<Sse2, MIN_IMAGE>(r, c, &owner[steps..], &list[2 * steps..], sums);
}

/// [`offer_run`] four candidates at a time in AVX2 registers: the same
/// operations lane by lane on each candidate (`|pi − (pj + shift)|²`,
/// x² + y² in that order, `<` the cut), so the same lists. The last one
/// to three candidates of a run go in a register of their own too (the
/// lanes after them read the particles that follow, and are not offered),
/// or through [`offer_run`] at the very end of the array.
///
/// # Safety
/// The CPU has AVX2.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn offer_run_avx2(
    cand: &mut CandidateWriter<'_>,
    pos: &[[f64; 2]],
    pi: [f64; 2],
    run: Range<usize>,
    shift: [f64; 2],
    cut_sq: f64,
) {
    let twice = |v: [f64; 2]| _mm256_setr_pd(v[0], v[1], v[0], v[1]);
    let (pi4, shift4, cut4) = (twice(pi), twice(shift), _mm256_set1_pd(cut_sq));
    let mut j = run.start;
    while j + 4 <= run.end {
        offer_quad(cand, &pos[j..j + 4], j, [pi4, shift4, cut4], ALL_FOUR);
        j += 4;
    }
    let rest = run.end - j;
    if rest > 0 && j + 4 <= pos.len() {
        // the last one to three candidates in a full register too: the
        // lanes past the run are computed but never offered
        offer_quad(cand, &pos[j..j + 4], j, [pi4, shift4, cut4], FIRST[rest]);
    } else {
        offer_run(cand, pos, Sse2::load(&pi), j..run.end, shift, Sse2::splat(cut_sq));
    }
}

/// Comparison-mask bits of all four candidates of a quad, and of its first
/// one, two and three ([`PACK`] says which bit is which candidate).
const ALL_FOUR: usize = 0b1111;
const FIRST: [usize; 4] = [0, 0b0001, 0b0101, 0b0111];

/// Offers the candidates of `quad` (at `j`) that `valid` keeps, near
/// when `|pi − (pj + shift)|² < cut_sq`, lanes `[pi, shift, cut_sq]`
/// twice over: writes four entries, keeps the near ones.
///
/// # Safety
/// The CPU has AVX2; `cand` has room for four entries more than it has
/// been offered ([`CandidateWriter::new`] reserves them).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn offer_quad(
    cand: &mut CandidateWriter<'_>,
    quad: &[[f64; 2]],
    j: usize,
    lanes: [__m256d; 3],
    valid: usize,
) {
    let [pi4, shift4, cut4] = lanes;
    // candidates 0 and 1, 2 and 3
    let d01 = _mm256_sub_pd(pi4, _mm256_add_pd(_mm256_loadu_pd(quad[0].as_ptr()), shift4));
    let d23 = _mm256_sub_pd(pi4, _mm256_add_pd(_mm256_loadu_pd(quad[2].as_ptr()), shift4));
    let (s01, s23) = (_mm256_mul_pd(d01, d01), _mm256_mul_pd(d23, d23));
    // [x² + y²] of candidates 0, 2, 1, 3
    let r2 = _mm256_add_pd(_mm256_unpacklo_pd(s01, s23), _mm256_unpackhi_pd(s01, s23));
    let near = _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_LT_OS>(r2, cut4)) as usize & valid;
    // the four candidates' offsets, the near ones packed to the front in
    // candidate order by one shuffle, stored at once: the list's length
    // moves once per four candidates instead of once each
    let offsets = _mm_add_epi32(_mm_set1_epi32(offset_of(j) as i32), _mm_setr_epi32(0, 16, 32, 48));
    let (shuffle, count) = &PACK[near];
    let packed = _mm_shuffle_epi8(offsets, _mm_loadu_si128(shuffle.as_ptr().cast()));
    _mm_storeu_si128(cand.tail().cast(), packed);
    cand.advance(*count as usize);
}

/// For each comparison mask of four candidates (bit 0: candidate 0, bit
/// 2: candidate 1, bit 1: candidate 2, bit 3: candidate 3, the order the
/// unpacks leave them in), the byte shuffle that moves the near
/// candidates' u32 offsets to the front in candidate order, and how many
/// are near.
static PACK: [([u8; 16], u8); 16] = pack_table();

const fn pack_table() -> [([u8; 16], u8); 16] {
    const BIT_OF_CANDIDATE: [usize; 4] = [0, 2, 1, 3];
    let mut table = [([0x80u8; 16], 0u8); 16];
    let mut mask = 0;
    while mask < 16 {
        let mut near = 0;
        let mut c = 0;
        while c < 4 {
            if (mask >> BIT_OF_CANDIDATE[c]) & 1 != 0 {
                let mut b = 0;
                while b < 4 {
                    table[mask].0[4 * near + b] = (4 * c + b) as u8;
                    b += 1;
                }
                near += 1;
            }
            c += 1;
        }
        table[mask].1 = near as u8;
        mask += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::super::forces::PairLoop;
    use super::super::tests::{setup, BOX};
    use super::super::{LennardJones, Portable};
    use super::*;
    use crate::sim::simd::Width;

    /// Forces and energy of `setup`'s list through `pair_loop`, the list
    /// cut into runs of `cuts` list steps (as strips cut theirs into
    /// segments): each run has its own tail for the 128-bit loop, and the
    /// energy lanes carry over from run to run, each run's steps adding
    /// into them by their parity in the run.
    fn forces(pair_loop: PairLoop<Sse2>, cuts: &[usize]) -> Vec<u64> {
        let (mut pos, owner, list) = setup(2.8);
        let mut force = vec![[0.0; 2]; pos.len()];
        let r = Raw {
            pos: pos.as_mut_ptr(),
            vel: std::ptr::null_mut(),
            force: force.as_mut_ptr(),
            built_at: std::ptr::null_mut(),
        };
        let consts = PairConsts::<Sse2>::new(&LennardJones::new(2.5), BOX);
        let mut sums = PotentialSums::<Sse2>::new();
        let mut start = 0usize;
        for &len in cuts.iter().chain([&usize::MAX]) {
            let end = start.saturating_add(len).min(owner.len());
            // SAFETY: `setup` lists offsets of `pos`, distinct in each pair.
            unsafe {
                pair_loop(
                    r,
                    &consts,
                    &owner[start..end],
                    &list[2 * start..2 * end],
                    &mut sums,
                )
            };
            start = end;
        }
        assert_eq!(start, owner.len());
        force
            .iter()
            .flatten()
            .map(|f| f.to_bits())
            .chain([sums.total().to_bits(), sums.virial().to_bits()])
            .collect()
    }

    #[test]
    fn wide_pair_loops_give_the_sse2_bits_for_any_run_length() {
        let widths: [(Width, [PairLoop<Sse2>; 2]); 1] =
            [(Width::Avx2, [pair_forces_avx2::<false>, pair_forces_avx2::<true>])];
        let base: [PairLoop<Sse2>; 2] = [pair_forces::<Sse2, false>, pair_forces::<Sse2, true>];
        // runs of every length from 0 to 9 list steps (with and without a
        // tail for the 128-bit loop), then the rest in one run
        let cuts: Vec<usize> = (0..10).chain((0..10).rev()).collect();
        let mut exercised = Vec::new();
        for (width, loops) in widths {
            if !width.is_supported() {
                continue;
            }
            exercised.push(width.name());
            for image in [false, true] {
                let want = forces(base[image as usize], &[]);
                assert_eq!(want, forces(loops[image as usize], &[]), "{width}");
                // the energy lanes take a run's steps by their parity in
                // the run, so the base loop is cut the same way
                let want = forces(base[image as usize], &cuts);
                assert_eq!(want, forces(loops[image as usize], &cuts), "{width}");
            }
        }
        eprintln!("wide pair loops exercised: {exercised:?}");
    }

    /// Offers a run of candidates to a writer: position, shift.
    type Offer<'a> = dyn Fn(&mut CandidateWriter<'_>, Range<usize>, [f64; 2], [f64; 2]) + 'a;

    #[test]
    fn wide_candidates_give_the_portable_neighbour_lists() {
        if !Width::Avx2.is_supported() {
            eprintln!("this CPU lacks AVX2: nothing to compare");
            return;
        }
        let (pos, _, _) = setup(2.8);
        let n = pos.len() - 1;
        let cut_sq = 2.8 * 2.8;
        // runs of every length from 0 to 9 (4 candidates at a time and
        // every tail), with and without a periodic shift
        let lists = |offer: &Offer<'_>| {
            let mut list = Vec::new();
            for (i, &pi) in pos[..n].iter().enumerate() {
                let mut cand = CandidateWriter::new(&mut list, 2 * n);
                for len in 0..10 {
                    // around `i`: near and far candidates alike
                    let start = (i + n - 5) % n;
                    let run = start..(start + len).min(n);
                    offer(&mut cand, run.clone(), pi, [BOX, -BOX]);
                    offer(&mut cand, run, pi, [0.0, 0.0]);
                }
                cand.finish(i, n, &mut Vec::new());
            }
            list
        };
        let portable = lists(&|cand, run, pi, shift| {
            // SAFETY: `pi` is two f64s.
            let pi = unsafe { Portable::load(&pi) };
            offer_run(cand, &pos, pi, run, shift, Portable::splat(cut_sq));
        });
        // SAFETY: the CPU has AVX2 (checked above).
        let avx2 =
            lists(&|cand, run, pi, shift| unsafe { offer_run_avx2(cand, &pos, pi, run, shift, cut_sq) });
        assert!(portable.len() > 1000);
        assert_eq!(portable, avx2);
    }
}
