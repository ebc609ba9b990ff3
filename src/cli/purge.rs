//! `orquesta purge --before DATE [--dry-run] [--vacuum]`: forgets ended
//! tasks whose end is before DATE, through the running orchestrator's
//! `POST /admin/purge` (it owns the database: one writer, an OS lock, and
//! the queue it holds in memory must agree with the file; a purge behind
//! its back could not be told apart from damage). Only tasks whose records
//! are already in `results/` go. Prints what was removed (or, with
//! `--dry-run`, what would be) and what that means for duplicate ids.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::client::{self, Endpoint};
use super::table::{print_text, thousands};
use crate::orchestrator::store::PurgeReport;
use crate::protocol::admin::PurgeAnswer;
use crate::util::time::parse_date_or_rfc3339;

#[derive(Args, Debug)]
pub struct PurgeArgs {
    /// Forget tasks that ended before this: YYYY-MM-DD (midnight UTC) or
    /// RFC 3339 (2024-01-15T10:30:00Z, 2024-01-15T10:30:00+02:00).
    #[arg(long, value_name = "DATE")]
    pub before: String,
    /// Count what would go; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Then rebuild the database file so that it shrinks (SQLite VACUUM:
    /// needs free disk about the file's size; the orchestrator records
    /// nothing while it runs).
    #[arg(long)]
    pub vacuum: bool,
    /// The orchestrator [default: http://ORCHESTRATOR_HOST:ORCHESTRATOR_PORT,
    /// else http://127.0.0.1:5000].
    #[arg(long)]
    pub url: Option<String>,
    /// Print the orchestrator's answer as JSON, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// A purge of a large history (or a vacuum of a large file) takes a while.
const TIMEOUT: Duration = Duration::from_secs(3600);

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// `POST /admin/purge`'s answer read as its types.
pub type Purged = PurgeAnswer<PurgeReport>;

/// The answer of `POST /admin/purge` for people.
pub fn render(answer: &Purged) -> String {
    let a = &answer.report;
    let plural = |k: u64, one: &str, many: &str| {
        format!("{} {}", thousands(k.into()), if k == 1 { one } else { many })
    };
    let what = format!(
        "{} before {} ({} completed, {} failed, {} cancelled), with {} and {}",
        plural(a.tasks, "ended task", "ended tasks"),
        a.before,
        thousands(a.completed.into()),
        thousands(a.failed.into()),
        thousands(a.cancelled.into()),
        plural(a.attempts, "attempt", "attempts"),
        plural(a.failure_records, "failure record", "failure records"),
    );
    let mut out = if a.dry_run {
        format!(
            "dry run: {what} would be removed; {} would be forgotten.\n",
            plural(a.files, "file record", "file records")
        )
    } else {
        format!(
            "removed {what}; {} forgotten.\n",
            plural(a.files, "file record", "file records")
        )
    };
    if a.kept_unwritten > 0 {
        out.push_str(&format!(
            "kept {}: ended before then but not yet in a results or failures file (a later purge takes them).\n",
            plural(a.kept_unwritten, "task", "tasks")
        ));
    }
    if a.dry_run {
        out.push_str("nothing was removed: run again without --dry-run to purge.\n");
    } else if a.vacuumed {
        out.push_str(&format!(
            "database rebuilt (vacuum): now {}.\n",
            megabytes(a.space.file_bytes)
        ));
    } else {
        out.push_str(&format!(
            "database: {}, of which {} free, reused by new tasks (--vacuum shrinks the file).\n",
            megabytes(a.space.file_bytes),
            megabytes(a.space.free_bytes)
        ));
    }
    if !answer.note.is_empty() {
        out.push_str(&format!("note: {}.\n", answer.note));
    }
    out
}

pub fn run(args: &PurgeArgs) -> ExitCode {
    if let Err(e) = parse_date_or_rfc3339(&args.before) {
        eprintln!("error: --before: {e}");
        return ExitCode::from(2);
    }
    let endpoint = match Endpoint::from_url_flag(args.url.as_deref()) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let body = json!({"before": args.before, "dry_run": args.dry_run, "vacuum": args.vacuum}).to_string();
    match client::call_json(&endpoint, "POST", "/admin/purge", Some(body.as_bytes()), TIMEOUT) {
        Ok((answer, _)) if args.json => {
            println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok((answer, _)) => match client::answer::<Purged>(answer) {
            Ok(typed) => {
                print_text(&render(&typed));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot purge: {}", client::unreachable_hint(&endpoint, &e));
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("error: cannot purge: {}", client::unreachable_hint(&endpoint, &e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(dry_run: bool, vacuumed: bool, kept: u64) -> Purged {
        client::answer(
            json!({"dry_run": dry_run, "before": "2024-01-01T00:00:00.000Z", "tasks": 1204, "completed": 1200,
               "failed": 3, "cancelled": 1, "attempts": 1210, "failure_records": 4, "files": 1,
               "kept_unwritten": kept, "space": {"file_bytes": 12_500_000u64, "free_bytes": 3_000_000u64},
               "vacuumed": vacuumed, "note": "the ids of purged tasks are no longer known"}),
        )
        .unwrap()
    }

    #[test]
    fn a_dry_run_says_what_would_go_and_that_nothing_went() {
        assert_eq!(
            render(&answer(true, false, 5)),
            "dry run: 1,204 ended tasks before 2024-01-01T00:00:00.000Z (1,200 completed, 3 failed, 1 cancelled), \
             with 1,210 attempts and 4 failure records would be removed; 1 file record would be forgotten.\n\
             kept 5 tasks: ended before then but not yet in a results or failures file (a later purge takes them).\n\
             nothing was removed: run again without --dry-run to purge.\n\
             note: the ids of purged tasks are no longer known.\n"
        );
    }

    #[test]
    fn a_purge_says_what_went_and_the_space() {
        let text = render(&answer(false, false, 0));
        assert!(
            text.starts_with("removed 1,204 ended tasks before 2024-01-01T00:00:00.000Z"),
            "{text}"
        );
        assert!(text.contains("database: 12.5 MB, of which 3.0 MB free"), "{text}");
        assert!(!text.contains("kept"), "{text}");
        assert!(render(&answer(false, true, 0)).contains("database rebuilt (vacuum): now 12.5 MB."));
    }
}
