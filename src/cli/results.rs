//! `orquesta results export --url URL [--study NAME] [--file NAME]
//! [--status S] --format csv|jsonl|parquet [-o FILE]`: one flat row per
//! task through the running orchestrator's `GET /results/export`, read as
//! it streams. CSV and JSON lines are copied as they come; Parquet is
//! written here from the JSON lines ([`super::parquet_out`]): the
//! orchestrator keeps to text formats, whose rows can leave one page at a
//! time, while a Parquet file is laid out by column with its index at the
//! end. A file is written beside its name and renamed into place only when
//! the whole export arrived, so a cut-short export never looks complete.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use super::client::{self, Endpoint};
use super::parquet_out::ParquetRows;
use crate::model::{check_study, TaskStatus};
use crate::protocol::export::{columns, Cell, ExportFormat};

#[derive(Subcommand, Debug)]
pub enum ResultsCommand {
    /// One flat row per task (ids, study, file, status, every effective
    /// parameter, every scalar metric, worker, kernel, timings) as CSV,
    /// JSON lines or Parquet.
    #[command(
        after_help = "Examples:\n  orquesta results export --study rho-sweep --format csv -o rho-sweep.csv\n  \
                      orquesta results export --url http://10.0.0.5:5000 --status completed --format parquet -o all.parquet\n  \
                      orquesta results export --file tasks_20240115_103000.json --format jsonl\n\n\
                      Exit status: 0 when every row arrived, 1 otherwise, 2 for a bad flag."
    )]
    Export(ExportArgs),
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The orchestrator [default: http://ORCHESTRATOR_HOST:ORCHESTRATOR_PORT,
    /// else http://127.0.0.1:5000].
    #[arg(long)]
    pub url: Option<String>,
    /// Only the tasks of this study.
    #[arg(long, value_name = "NAME")]
    pub study: Option<String>,
    /// Only the tasks of this dropped file (its name), `api` for POST /tasks.
    #[arg(long, value_name = "NAME")]
    pub file: Option<String>,
    /// Only tasks of this status: queued, running, completed, failed, cancelled.
    #[arg(long, value_name = "S")]
    pub status: Option<String>,
    /// csv, jsonl or parquet.
    #[arg(long, value_name = "FORMAT")]
    pub format: String,
    /// Where to write [default: standard output; parquet needs a file].
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// An export may take minutes for millions of rows.
const TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// `%XX` for every byte but the unreserved ones (RFC 3986).
pub(crate) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The request path of the flags, or what is wrong with them.
fn request_path(args: &ExportArgs) -> Result<(ExportFormat, String), String> {
    let format = ExportFormat::parse(args.format.trim()).ok_or_else(|| {
        format!(
            "--format: expected {}, found {:?}",
            ExportFormat::NAMES,
            args.format
        )
    })?;
    if format == ExportFormat::Parquet && args.output.as_ref().is_none_or(|p| p.as_os_str() == "-") {
        return Err("--format parquet writes a binary file: give it with -o FILE".into());
    }
    // parquet is written here from the JSON lines
    let wire = if format == ExportFormat::Csv {
        "csv"
    } else {
        "jsonl"
    };
    let mut path = format!("/results/export?format={wire}");
    if let Some(s) = &args.study {
        check_study(s).map_err(|e| format!("--study: {e}"))?;
        path.push_str(&format!("&study={}", encode(s)));
    }
    if let Some(f) = &args.file {
        path.push_str(&format!("&file={}", encode(f)));
    }
    if let Some(s) = &args.status {
        let s: TaskStatus = s.parse().map_err(|e| format!("--status: {e}"))?;
        path.push_str(&format!("&status={}", s.as_str()));
    }
    Ok((format, path))
}

/// Copies the rows to `out`; the number of rows.
fn copy_text(body: impl Read, out: &mut impl Write, header: bool) -> Result<u64, String> {
    let mut reader = BufReader::with_capacity(1 << 16, body);
    let mut lines = 0u64;
    loop {
        let chunk = reader.fill_buf().map_err(cut_short)?;
        if chunk.is_empty() {
            break;
        }
        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        out.write_all(chunk).map_err(|e| format!("cannot write: {e}"))?;
        let n = chunk.len();
        reader.consume(n);
    }
    Ok(lines.saturating_sub(u64::from(header)))
}

fn cut_short(e: std::io::Error) -> String {
    format!("the export was cut short ({e}); nothing complete was written, run it again")
}

/// Reads the JSON lines into a Parquet file; the number of rows.
fn write_parquet(body: impl Read, out: impl Write + Send) -> Result<u64, String> {
    let cols = columns();
    let mut rows = ParquetRows::new(out, cols.clone())?;
    let mut n = 0u64;
    for line in BufReader::with_capacity(1 << 16, body).lines() {
        let line = line.map_err(cut_short)?;
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&line)
            .map_err(|e| format!("the orchestrator sent a row that is not JSON: {e}"))?;
        if n == 0 && !object.keys().map(String::as_str).eq(cols.iter().map(|c| c.name)) {
            return Err(format!(
                "the orchestrator's export has the columns {:?}, this orquesta expects {:?}: use the same \
                 version of orquesta on both sides",
                object.keys().collect::<Vec<_>>(),
                cols.iter().map(|c| c.name).collect::<Vec<_>>()
            ));
        }
        let row: Vec<Cell> = cols
            .iter()
            .map(|c| Cell::of_json(object.get(c.name), c.kind))
            .collect();
        rows.push(row)?;
        n += 1;
    }
    rows.finish()?;
    Ok(n)
}

/// `FILE.part` beside `FILE`.
pub(crate) fn part_of(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".part");
    path.with_file_name(name)
}

/// Writes the whole export into `file`, flushed to disk; the number of rows.
fn write_file(format: ExportFormat, body: impl Read, file: File) -> Result<u64, String> {
    let mut out = BufWriter::new(file);
    let n = match format {
        ExportFormat::Parquet => write_parquet(body, &mut out)?,
        _ => copy_text(body, &mut out, format == ExportFormat::Csv)?,
    };
    let file = out.into_inner().map_err(|e| format!("cannot write: {e}"))?;
    file.sync_all().map_err(|e| format!("cannot write: {e}"))?;
    Ok(n)
}

/// Writes the export into `path` (through `path.part`), or to standard output.
fn export_to(format: ExportFormat, body: impl Read, output: Option<&Path>) -> Result<u64, String> {
    let Some(path) = output.filter(|p| p.as_os_str() != "-") else {
        let stdout = std::io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        let n = copy_text(body, &mut out, format == ExportFormat::Csv)?;
        out.flush().map_err(|e| format!("cannot write: {e}"))?;
        return Ok(n);
    };
    let part = part_of(path);
    let file = File::create(&part).map_err(|e| format!("cannot create {}: {e}", part.display()))?;
    match write_file(format, body, file) {
        Ok(n) => {
            std::fs::rename(&part, path)
                .map_err(|e| format!("cannot rename into {}: {e}", path.display()))?;
            Ok(n)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            Err(e)
        }
    }
}

pub fn run(command: &ResultsCommand) -> ExitCode {
    let ResultsCommand::Export(args) = command;
    let (format, path) = match request_path(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let endpoint = match Endpoint::from_url_flag(args.url.as_deref()) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let started = Instant::now();
    let body = match client::get_stream_ok(&endpoint, &path, TIMEOUT, "export") {
        Ok(body) => body,
        Err(code) => return code,
    };
    match export_to(format, body, args.output.as_deref()) {
        Ok(rows) => {
            let to = args
                .output
                .as_ref()
                .filter(|p| p.as_os_str() != "-")
                .map_or_else(|| "standard output".to_string(), |p| p.display().to_string());
            eprintln!(
                "exported {rows} row{} as {} to {to} in {:.1} s",
                if rows == 1 { "" } else { "s" },
                format.as_str(),
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(format: &str, output: Option<&str>) -> ExportArgs {
        ExportArgs {
            url: None,
            study: Some("rho-sweep".into()),
            file: Some("my file.json".into()),
            status: Some("completed".into()),
            format: format.into(),
            output: output.map(PathBuf::from),
        }
    }

    #[test]
    fn flags_make_the_request_or_are_explained() {
        let (format, path) = request_path(&args("csv", None)).unwrap();
        assert_eq!(format, ExportFormat::Csv);
        assert_eq!(
            path,
            "/results/export?format=csv&study=rho-sweep&file=my%20file.json&status=completed"
        );
        let (_, path) = request_path(&args("parquet", Some("x.parquet"))).unwrap();
        assert!(path.starts_with("/results/export?format=jsonl&"), "{path}");
        assert!(request_path(&args("parquet", None))
            .unwrap_err()
            .contains("-o FILE"));
        assert!(request_path(&args("xlsx", None))
            .unwrap_err()
            .contains("expected csv, jsonl or parquet"));
        let mut bad = args("csv", None);
        bad.status = Some("done".into());
        assert!(request_path(&bad)
            .unwrap_err()
            .starts_with("--status: expected one of"));
        bad.study = Some("a b".into());
        assert!(request_path(&bad).unwrap_err().starts_with("--study:"));
    }

    #[test]
    fn a_cut_short_body_leaves_no_file() {
        struct Cut(bool);
        impl Read for Cut {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if std::mem::replace(&mut self.0, true) {
                    Err(std::io::Error::other("connection reset"))
                } else {
                    buf[..4].copy_from_slice(b"a,b\n");
                    Ok(4)
                }
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let e = export_to(ExportFormat::Csv, Cut(false), Some(&path)).unwrap_err();
        assert!(e.contains("cut short"), "{e}");
        assert!(!path.exists() && !part_of(&path).exists());
        let n = export_to(ExportFormat::Csv, &b"h\n1\n2\n"[..], Some(&path)).unwrap();
        assert_eq!(n, 2);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "h\n1\n2\n");
    }
}
