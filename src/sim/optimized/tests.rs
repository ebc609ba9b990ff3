//! Unit tests of the optimized kernel's pieces: the grid, the estimate,
//! the lanes against each other, the factored pair terms.

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
        let arrays = (2 * cells + 1) * 4 + 6 * 16 * slots + 4 * 4 * n;
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
