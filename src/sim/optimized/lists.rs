//! The half neighbour lists built from the cell sort, and the writer that
//! appends candidates without a branch per candidate.

use super::*;

impl Sim<'_> {
    /// Builds strip `k`'s half neighbour list from the cell sort. Positions
    /// are inside the box here (the sort wrapped them).
    // out of line so that profiles show each phase apart; costs nothing
    #[inline(never)]
    pub(super) unsafe fn build_list(&self, k: usize) {
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
    pub(super) unsafe fn build_list_avx2(&self, k: usize) {
        self.build_list_with::<Sse2, true>(k);
    }

    /// [`Self::build_list`] with the lane implementation `V`, and with
    /// AVX2 registers for the candidates when `AVX2` (only from
    /// [`Self::build_list_avx2`]).
    #[inline(always)]
    pub(super) unsafe fn build_list_with<V: Lanes, const AVX2: bool>(&self, k: usize) {
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
}

/// Offers the particles `run` as neighbours of the particle at `pi`, two
/// at a time: near when `|pi - (pj + shift)|² < cut_sq`. The same IEEE
/// operations for every lane implementation, so the same lists.
#[inline(always)]
pub(super) fn offer_run<V: Lanes>(
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
pub(super) struct CandidateWriter<'v> {
    list: &'v mut Vec<u32>,
    /// `list`'s buffer, held apart so that the compiler need not reload it
    /// after every write.
    ptr: *mut u32,
    len: usize,
}

/// Entries a writer may write past its last offered candidate: four at a
/// time, at least one of them offered.
const SPARE: usize = 3;

impl<'v> CandidateWriter<'v> {
    /// Makes room for `max` more entries (the padding included), and for
    /// [`SPARE`] more that a writer of four at a time may write past its
    /// last candidate (never kept).
    pub(super) fn new(list: &'v mut Vec<u32>, max: usize) -> Self {
        list.reserve(max + SPARE);
        let len = list.len();
        let ptr = list.as_mut_ptr();
        Self { list, ptr, len }
    }

    #[inline(always)]
    pub(super) fn offer(&mut self, j: usize, near: bool) {
        debug_assert!(self.len < self.list.capacity());
        // SAFETY: `new` reserved room for every offer; only entries below
        // `len` are ever exposed (in `finish`).
        unsafe { *self.ptr.add(self.len) = offset_of(j) };
        self.len += near as usize;
    }

    /// Where the next near candidate goes, for writers that store several
    /// candidates at once ([`wide`]); [`Self::advance`] then keeps the near
    /// ones.
    ///
    /// # Safety
    /// At most as many entries are written from here as candidates are
    /// offered with them, plus [`SPARE`] (what `new` reserved room for).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(super) unsafe fn tail(&mut self) -> *mut u32 {
        self.ptr.add(self.len)
    }

    /// Keeps `near` entries written at [`Self::tail`].
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(super) fn advance(&mut self, near: usize) {
        self.len += near;
        debug_assert!(self.len <= self.list.capacity());
    }

    /// Keeps the near candidates of particle `i`, padded to an even count
    /// with `sentinel` (`new` reserved room for that too), and records `i`
    /// as the owner of each pair of them.
    pub(super) fn finish(mut self, i: usize, sentinel: usize, owner: &mut Vec<u32>) {
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
