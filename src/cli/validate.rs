//! `orquesta validate FILE… [--url URL]`: the orchestrator's own validator
//! ([`crate::model::taskfile::parse_bytes`]) run locally. Every problem is printed
//! with its path in the JSON; a good file gets a one-line summary (tasks
//! per algorithm and priority, total work in particle-steps). With
//! `--url`, a good file's ids are also checked against the running
//! orchestrator (`POST /tasks/known`, in batches): ids it knows would have
//! the file rejected whole, so they are named with where their results
//! are. The exit status tells the cases apart ([`EXIT_INVALID`],
//! [`EXIT_KNOWN`], [`EXIT_NOT_ASKED`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::time::Duration;

use clap::Args;

use super::client::{self, CallError, Endpoint};
use super::table::thousands;
use crate::model::taskfile::{self, Rejection, TaskBatch};
use crate::model::{Priority, Task, Validator};
use crate::orchestrator::api::files::KNOWN_MAX_IDS;
use crate::orchestrator::file_watcher::duplicates;
use crate::orchestrator::store::{Duplicates, KnownTask};
use crate::protocol::tasks::{KnownAnswer, KnownRequest};

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Task files to check (`-` reads standard input).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Also ask the orchestrator at this URL which of the files' task ids
    /// it already knows (they would have the file rejected), and where
    /// their results are. Sends the cluster's token (--token-file,
    /// ORQUESTA_TOKEN) like the other client commands.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

/// A file is invalid or cannot be read.
pub const EXIT_INVALID: u8 = 1;
/// Every file is valid, but the orchestrator already knows some of the
/// ids: dropped, the file would be rejected whole.
pub const EXIT_KNOWN: u8 = 3;
/// `--url` was given, but the orchestrator could not be asked.
pub const EXIT_NOT_ASKED: u8 = 4;

/// How long one `POST /tasks/known` may take.
const KNOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Asks the orchestrator which of `ids` it knows, in batches of
/// [`KNOWN_MAX_IDS`]; the known ones, the first few with where they stand.
pub fn known_ids(endpoint: &Endpoint, ids: &[String]) -> Result<Duplicates, CallError> {
    let mut known = Duplicates::default();
    for batch in ids.chunks(KNOWN_MAX_IDS) {
        let request = KnownRequest {
            task_ids: batch.to_vec(),
        };
        let body = serde_json::to_vec(&request).unwrap_or_default();
        let answer: KnownAnswer<KnownTask> =
            client::call(endpoint, "POST", "/tasks/known", Some(&body), KNOWN_TIMEOUT)?;
        for t in answer.known {
            known.push(t.task_id, t.status, t.results_file);
        }
    }
    Ok(known)
}

/// The warning for a valid file whose ids the orchestrator knows.
pub fn known_warning(name: &str, url: &str, known: &Duplicates, total: usize) -> String {
    format!(
        "{name}: warning: {} of its {total} task ids are already known to the orchestrator at {url}; \
         dropped as it is, the file would be rejected whole (nothing of it would run):\n{}\
         To run them again:\n{}",
        known.ids.len(),
        duplicates::listing(known),
        duplicates::how_to_run_again(known)
    )
}

/// The validator the orchestrator would use here: limits and test kernels
/// from the environment and `.env` (`MAX_PARTICLES`, …), the defaults when
/// those cannot be read (with a warning).
pub fn local_validator() -> Validator {
    match crate::orchestrator::config::settings_from_env(&crate::util::settings::process_env()) {
        Ok(settings) => Validator {
            limits: settings.limits,
            test_kernels: settings.test_kernels,
            algorithms: None,
        },
        Err(problems) => {
            eprintln!(
                "warning: the orchestrator settings cannot be read ({}); checking with the default limits",
                problems.join("; ")
            );
            Validator::default()
        }
    }
}

/// `10 tasks (cython 5, python 5; high 4, medium 3, low 3), 5,150,000 particle-steps`
pub fn summary(tasks: &[Task]) -> String {
    let mut algorithms: BTreeMap<&str, usize> = BTreeMap::new();
    let mut priorities: BTreeMap<Priority, usize> = BTreeMap::new();
    let mut work: u128 = 0;
    for t in tasks {
        *algorithms.entry(t.algorithm.as_str()).or_default() += 1;
        *priorities.entry(t.priority).or_default() += 1;
        let (n, s) = t.work.size();
        work += u128::from(n) * u128::from(s);
    }
    let join = |parts: Vec<String>| parts.join(", ");
    format!(
        "{} task{} ({}; {}), {} particle-steps",
        tasks.len(),
        if tasks.len() == 1 { "" } else { "s" },
        join(algorithms.iter().map(|(a, n)| format!("{a} {n}")).collect()),
        join(
            priorities
                .iter()
                .map(|(p, n)| format!("{} {n}", p.as_str()))
                .collect()
        ),
        thousands(work)
    )
}

/// Reads a file, or standard input for `-`.
pub fn read_input(path: &Path) -> Result<Vec<u8>, String> {
    if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        return Ok(bytes);
    }
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Parses and validates one file's bytes.
pub fn check(bytes: &[u8], validator: &Validator) -> Result<TaskBatch, Rejection> {
    taskfile::parse_bytes(bytes, validator)
}

/// Prints a rejection: a count, then one problem per line.
pub fn print_rejection(name: &str, rejection: &Rejection) {
    let n = rejection.problems.len();
    println!("{name}: {n} problem{} found", if n == 1 { "" } else { "s" });
    for p in &rejection.problems {
        println!("  {p}");
    }
}

/// `orquesta validate`.
pub fn run(args: &ValidateArgs) -> ExitCode {
    let endpoint = match args.url.as_deref().map(Endpoint::parse).transpose() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: --url: {e}");
            return ExitCode::from(2);
        }
    };
    let (mut any_known, mut not_asked) = (false, false);
    let validator = local_validator();
    let several = args.files.len() > 1;
    // task id -> (file, index in it), to find ids that two files share
    let mut seen: HashMap<String, (String, usize)> = HashMap::new();
    let mut all_good = true;
    for path in &args.files {
        let name = path.display().to_string();
        let bytes = match read_input(path) {
            Ok(b) => b,
            Err(e) => {
                println!("{name}: {e}");
                all_good = false;
                continue;
            }
        };
        let batch = match check(&bytes, &validator) {
            Ok(b) => b,
            Err(rejection) => {
                print_rejection(&name, &rejection);
                all_good = false;
                continue;
            }
        };
        let mut shared = Vec::new();
        for (i, t) in batch.tasks.iter().enumerate() {
            let id = t.task_id.to_string();
            match seen.get(&id) {
                Some((other, j)) if several => shared.push(crate::model::FieldError::new(
                    format!("tasks[{i}].task_id"),
                    format!(
                        "duplicate id {id:?}, also used by tasks[{j}] of {other}: dropped together, \
                         the second file would be rejected"
                    ),
                )),
                Some(_) => {}
                None => {
                    seen.insert(id, (name.clone(), i));
                }
            }
        }
        if !shared.is_empty() {
            print_rejection(&name, &Rejection::many(shared));
            all_good = false;
            continue;
        }
        println!("{name}: ok, {}", summary(&batch.tasks));
        for w in &batch.warnings {
            println!("{name}: warning: {w}");
        }
        let Some(endpoint) = &endpoint else { continue };
        let ids: Vec<String> = batch.tasks.iter().map(|t| t.task_id.to_string()).collect();
        match known_ids(endpoint, &ids) {
            Ok(known) if known.is_empty() => {
                println!(
                    "{name}: none of its task ids is known to the orchestrator at {}",
                    endpoint.url()
                )
            }
            Ok(known) => {
                any_known = true;
                print!("{}", known_warning(&name, &endpoint.url(), &known, ids.len()));
            }
            Err(e) => {
                not_asked = true;
                eprintln!("{name}: error: {}", client::unreachable_hint(endpoint, &e));
            }
        }
    }
    if !all_good {
        ExitCode::from(EXIT_INVALID)
    } else if not_asked {
        ExitCode::from(EXIT_NOT_ASKED)
    } else if any_known {
        ExitCode::from(EXIT_KNOWN)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_summary_counts_algorithms_priorities_and_work() {
        let file = json!({"tasks": [
            {"task_id": "a", "algorithm": "python", "parameters": {"num_particles": 100, "num_steps": 500, "seed": 1}, "priority": "high"},
            {"task_id": "b", "algorithm": "cython", "parameters": {"num_particles": 200, "num_steps": 800, "seed": 2}},
            {"task_id": "c", "algorithm": "python", "parameters": {"num_particles": 20, "num_steps": 0, "seed": 3}, "priority": "low"},
        ]});
        let batch = check(file.to_string().as_bytes(), &Validator::default()).unwrap();
        assert_eq!(
            summary(&batch.tasks),
            "3 tasks (cython 1, python 2; high 1, medium 1, low 1), 210,000 particle-steps"
        );
    }
}
