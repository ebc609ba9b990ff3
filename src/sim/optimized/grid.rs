//! How the box is cut into cells and strips: the grid's shape and the
//! cell of a position.

use super::*;

impl Grid {
    pub(super) fn new(box_len: f64, list_cut: f64, n: usize) -> Self {
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
    pub(super) fn shape(box_len: f64, list_cut: f64, n: usize) -> (usize, usize) {
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
    pub(super) fn cell_count(&self) -> usize {
        self.cells
            .checked_mul(self.cells)
            .expect("`shape` caps cells² at MAX_CELLS_PER_PARTICLE · n")
    }

    /// The cell of a position inside [0, L)².
    pub(super) fn cell_of(&self, p: [f64; 2]) -> usize {
        let cx = ((p[0] / self.cell_len) as usize).min(self.cells - 1);
        let cy = ((p[1] / self.cell_len) as usize).min(self.cells - 1);
        cy * self.cells + cx
    }
}
