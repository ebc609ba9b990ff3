//! `orquesta report --url URL --study NAME [--task ID] [-o FILE]`: the
//! study's report, the page the orchestrator serves at
//! `GET /studies/{name}/report` (one self-contained HTML file: plots as
//! inline SVG, its data as JSON inside), written to FILE (`NAME.html` by
//! default, `-` for standard output) through `FILE.part`, so a cut-short
//! download never looks complete.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::client::{self, Endpoint};
use super::results::{encode, part_of};
use crate::model::check_study;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The orchestrator [default: http://ORCHESTRATOR_HOST:ORCHESTRATOR_PORT,
    /// else http://127.0.0.1:5000].
    #[arg(long)]
    pub url: Option<String>,
    /// The study (the `study` field of its tasks; `orquesta gen --study`).
    #[arg(long, value_name = "NAME")]
    pub study: String,
    /// The task whose thermo series is drawn [default: the first completed
    /// task that has one].
    #[arg(long, value_name = "ID")]
    pub task: Option<String>,
    /// Where to write the page [default: NAME.html; `-`: standard output].
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// A report folds every completed task of the study: minutes for millions.
const TIMEOUT: Duration = Duration::from_secs(3600);

/// The request path of the flags, or what is wrong with them.
fn request_path(args: &ReportArgs) -> Result<String, String> {
    check_study(&args.study).map_err(|e| format!("--study: {e}"))?;
    let mut path = format!("/studies/{}/report", encode(&args.study));
    if let Some(t) = &args.task {
        path.push_str(&format!("?task={}", encode(t)));
    }
    Ok(path)
}

/// Writes `page` into `path` through `path.part`.
fn write_page(path: &Path, page: &[u8]) -> Result<(), String> {
    let part = part_of(path);
    let written = std::fs::File::create(&part)
        .and_then(|mut f| f.write_all(page).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&part, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&part);
        format!("cannot write {}: {e}", path.display())
    })
}

pub fn run(args: &ReportArgs) -> ExitCode {
    let path = match request_path(args) {
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
    let mut body = match client::get_stream_ok(&endpoint, &path, TIMEOUT, "report") {
        Ok(body) => body,
        Err(code) => return code,
    };
    let mut page = Vec::new();
    if let Err(e) = body.read_to_end(&mut page) {
        eprintln!("error: the report was cut short ({e}); nothing was written, run it again");
        return ExitCode::FAILURE;
    }
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.html", args.study)));
    if output.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        if let Err(e) = out.write_all(&page).and_then(|()| out.flush()) {
            eprintln!("error: cannot write: {e}");
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    match write_page(&output, &page) {
        Ok(()) => {
            eprintln!(
                "wrote the report of study {} to {} ({} kB); open it in a browser",
                args.study,
                output.display(),
                page.len().div_ceil(1000)
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

    #[test]
    fn flags_make_the_request_or_are_explained() {
        let mut args = ReportArgs {
            url: None,
            study: "rho-sweep".into(),
            task: Some("t 1".into()),
            output: None,
        };
        assert_eq!(
            request_path(&args).unwrap(),
            "/studies/rho-sweep/report?task=t%201"
        );
        args.study = "a/b".into();
        assert!(request_path(&args)
            .unwrap_err()
            .starts_with("--study: expected a study name"));
    }
}
