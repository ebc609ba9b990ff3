//! Aligned plain-text tables, load bars and number formats for the tools'
//! terminal output, and printing that a closed pipe does not turn into a
//! panic (`orquesta schema | head`).

use std::io::Write;

/// Writes `text` to standard output; a reader that went away (broken
/// pipe) ends the output quietly.
pub fn print_text(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// A table: a header row and data rows, columns padded to the widest cell
/// and parted by two spaces, no lines drawn (comfy-table lays it out).
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    right_aligned: Vec<bool>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            right_aligned: vec![false; header.len()],
        }
    }

    /// Aligns these columns (numbers) to the right.
    pub fn right(mut self, columns: &[usize]) -> Self {
        for &c in columns {
            if let Some(r) = self.right_aligned.get_mut(c) {
                *r = true;
            }
        }
        self
    }

    /// A data row; cells past the header's are dropped, missing ones blank.
    pub fn row(&mut self, mut cells: Vec<String>) {
        cells.truncate(self.header.len());
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as lines joined by `\n`, each line indented by `indent`
    /// and without trailing spaces.
    pub fn render(&self, indent: &str) -> String {
        let mut table = comfy_table::Table::new();
        table.load_style(comfy_table::presets::NOTHING);
        table.set_header(self.header.clone());
        table.add_rows(self.rows.iter().cloned());
        for (c, column) in table.column_iter_mut().enumerate() {
            // one space each side of a column, none before the first: two
            // between columns and the table flush with the indent
            column.set_padding((u16::from(c > 0), 1));
            if self.right_aligned.get(c) == Some(&true) {
                column.set_cell_alignment(comfy_table::CellAlignment::Right);
            }
        }
        table
            .lines()
            .map(|line| format!("{indent}{line}").trim_end().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A bar of `width` cells filled to `fraction` (clamped to 0..=1), e.g.
/// `█████░░░░░`.
pub fn bar(fraction: f64, width: usize) -> String {
    let f = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let filled = (f * width as f64).round() as usize;
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

/// A whole number with thousands separators: `4,100,000`.
pub fn thousands(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Seconds for people: `850 ms`, `2.41 s`, `3 min 05 s`.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        "-".into()
    } else if seconds < 1.0 {
        format!("{:.0} ms", seconds * 1000.0)
    } else if seconds < 60.0 {
        format!("{seconds:.2} s")
    } else {
        let whole = seconds.round() as u64;
        format!("{} min {:02} s", whole / 60, whole % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_numbers_align_right() {
        let mut t = Table::new(&["name", "count"]).right(&[1]);
        t.row(vec!["worker1".into(), "7".into()]);
        t.row(vec!["w2".into(), "1234".into()]);
        assert_eq!(
            t.render("  "),
            "  name     count\n  worker1      7\n  w2        1234"
        );
    }

    #[test]
    fn bars_numbers_and_durations() {
        assert_eq!(bar(0.5, 4), "██░░");
        assert_eq!(bar(2.0, 3), "███");
        assert_eq!(bar(f64::NAN, 2), "░░");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(4_100_000), "4,100,000");
        assert_eq!(duration(0.25), "250 ms");
        assert_eq!(duration(2.414), "2.41 s");
        assert_eq!(duration(185.0), "3 min 05 s");
    }
}
