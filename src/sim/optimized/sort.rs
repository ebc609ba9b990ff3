//! The counting sort by cell that precedes every list build: planned
//! on the driver, its moves one array per unit of [`Phase::Permute`].

use super::*;

impl Sim<'_> {
    /// Wraps positions back into the box and plans the counting sort by
    /// cell (stable): where each particle goes. The moves themselves are
    /// the Permute phase, then [`Self::sort_finish`]. Returns false when
    /// there is nothing to sort (a box too small for cells). Driver only,
    /// with no phase open.
    pub(super) fn sort_by_cell(&self) -> bool {
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
    /// positions, velocities or original indices (the forces are all zero
    /// when the lists are rebuilt: [`PERMUTED_ARRAYS`]). Pure data
    /// movement, so who does it never changes a bit.
    ///
    /// # Safety
    /// Only inside the Permute phase, each unit on one thread: units touch
    /// disjoint fields, reached through raw field pointers so that no
    /// thread holds a reference to the whole `Particles`.
    pub(super) unsafe fn permute(&self, unit: usize) {
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
                // the build positions are the sorted positions: written in
                // the same pass, not copied after it
                let pos = &mut *std::ptr::addr_of_mut!((*p).pos);
                let sorted = &mut *std::ptr::addr_of_mut!((*p).scratch_vec);
                let built_at = &mut *std::ptr::addr_of_mut!((*p).built_at);
                for (&t, &value) in to.iter().zip(pos.iter()) {
                    sorted[t as usize] = value;
                    built_at[t as usize] = value;
                }
                std::mem::swap(pos, sorted);
                pos[n..].fill(Particles::SENTINEL);
            }
            1 => move_vec(
                std::ptr::addr_of_mut!((*p).vel),
                std::ptr::addr_of_mut!((*p).scratch_vel),
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
    pub(super) fn sort_finish(&self) {
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
}
