//! The Parquet file of `orquesta results export --format parquet`, written
//! from the export's rows as they arrive: [`ROW_GROUP_ROWS`] rows are held
//! column by column, then written as one row group, so memory is bounded
//! by a row group whatever the number of rows. Uncompressed (the `parquet`
//! crate is built without codecs: see Cargo.toml); whole numbers are
//! INT64 marked unsigned (UINT_64: a seed may pass i64::MAX), floats
//! DOUBLE with every bit kept, text BYTE_ARRAY marked UTF8; every column
//! may be null.

use std::io::Write;
use std::sync::Arc;

use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use crate::protocol::export::{Cell, Column, ColumnKind};

/// Rows per row group: ~60 columns × 64 Ki rows ≈ 30 MB held at most.
pub const ROW_GROUP_ROWS: usize = 65_536;

/// One column's values of the row group being filled.
#[derive(Default)]
struct Buffer {
    /// 1 where the row has a value, 0 where it is null.
    defs: Vec<i16>,
    text: Vec<ByteArray>,
    whole: Vec<i64>,
    real: Vec<f64>,
}

/// Writes rows into a Parquet file.
pub struct ParquetRows<W: Write + Send> {
    writer: SerializedFileWriter<W>,
    columns: Vec<Column>,
    buffers: Vec<Buffer>,
    held: usize,
}

/// The schema of the export's columns, in Parquet's message syntax.
pub fn schema_text(columns: &[Column]) -> String {
    let mut s = String::from("message orquesta_export {\n");
    for c in columns {
        let field = match c.kind {
            ColumnKind::Text => format!("  OPTIONAL BYTE_ARRAY {} (UTF8);\n", c.name),
            ColumnKind::Whole => format!("  OPTIONAL INT64 {} (INTEGER(64,false));\n", c.name),
            ColumnKind::Real => format!("  OPTIONAL DOUBLE {};\n", c.name),
        };
        s.push_str(&field);
    }
    s.push('}');
    s
}

impl<W: Write + Send> ParquetRows<W> {
    pub fn new(out: W, columns: Vec<Column>) -> Result<Self, String> {
        let schema = parse_message_type(&schema_text(&columns)).map_err(|e| e.to_string())?;
        let props = WriterProperties::builder()
            .set_created_by(concat!("orquesta ", env!("CARGO_PKG_VERSION")).into())
            .build();
        let writer =
            SerializedFileWriter::new(out, Arc::new(schema), Arc::new(props)).map_err(|e| e.to_string())?;
        let buffers = columns.iter().map(|_| Buffer::default()).collect();
        Ok(Self {
            writer,
            columns,
            buffers,
            held: 0,
        })
    }

    /// Adds one row (a cell per column, in order).
    pub fn push(&mut self, row: Vec<Cell>) -> Result<(), String> {
        for ((cell, buffer), column) in row.into_iter().zip(&mut self.buffers).zip(&self.columns) {
            match (cell, column.kind) {
                (Cell::Text(s), ColumnKind::Text) => {
                    buffer.defs.push(1);
                    buffer.text.push(ByteArray::from(s.into_bytes()));
                }
                (Cell::Whole(u), ColumnKind::Whole) => {
                    buffer.defs.push(1);
                    // the bits of the u64: the column is marked unsigned
                    buffer.whole.push(u as i64);
                }
                (Cell::Real(f), ColumnKind::Real) => {
                    buffer.defs.push(1);
                    buffer.real.push(f);
                }
                _ => buffer.defs.push(0),
            }
        }
        self.held += 1;
        if self.held >= ROW_GROUP_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the rows held as one row group.
    fn flush(&mut self) -> Result<(), String> {
        if self.held == 0 {
            return Ok(());
        }
        let e = |e: parquet::errors::ParquetError| e.to_string();
        let mut group = self.writer.next_row_group().map_err(e)?;
        for (buffer, kind) in self.buffers.iter_mut().zip(self.columns.iter().map(|c| c.kind)) {
            let Some(mut column) = group.next_column().map_err(e)? else {
                return Err("the Parquet schema has fewer columns than the rows".into());
            };
            let defs = Some(&buffer.defs[..]);
            match kind {
                ColumnKind::Text => column
                    .typed::<ByteArrayType>()
                    .write_batch(&buffer.text, defs, None),
                ColumnKind::Whole => column.typed::<Int64Type>().write_batch(&buffer.whole, defs, None),
                ColumnKind::Real => column.typed::<DoubleType>().write_batch(&buffer.real, defs, None),
            }
            .map_err(e)?;
            column.close().map_err(e)?;
            *buffer = Buffer::default();
        }
        group.close().map_err(e)?;
        self.held = 0;
        Ok(())
    }

    /// Writes what is held and the file's footer.
    pub fn finish(mut self) -> Result<(), String> {
        self.flush()?;
        self.writer.close().map(drop).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::export::columns;

    #[test]
    fn the_schema_parses_and_a_file_is_written() {
        let cols = columns();
        assert!(parse_message_type(&schema_text(&cols)).is_ok());
        let mut out = Vec::new();
        let mut rows = ParquetRows::new(&mut out, cols.clone()).unwrap();
        let row: Vec<Cell> = cols
            .iter()
            .map(|c| match c.kind {
                ColumnKind::Text => Cell::Text("x".into()),
                ColumnKind::Whole => Cell::Whole(u64::MAX),
                ColumnKind::Real => Cell::Empty,
            })
            .collect();
        rows.push(row).unwrap();
        rows.finish().unwrap();
        assert_eq!(&out[..4], b"PAR1");
        assert_eq!(&out[out.len() - 4..], b"PAR1");
    }
}
