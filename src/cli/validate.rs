//! `orquesta validate FILE…`: the orchestrator's own validator
//! ([`crate::model::taskfile::parse_bytes`]) run locally. Every problem is printed
//! with its path in the JSON; a good file gets a one-line summary (tasks
//! per algorithm and priority, total work in particle-steps).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::table::thousands;
use crate::model::taskfile::{self, Rejection, TaskBatch};
use crate::model::{Priority, Task, Validator};

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Task files to check (`-` reads standard input).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// The validator the orchestrator would use here: limits and test kernels
/// from the environment and `.env` (`MAX_PARTICLES`, …), the defaults when
/// those cannot be read (with a warning).
pub fn local_validator() -> Validator {
    match crate::config::settings_from_env(&crate::config::process_env()) {
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
    }
    if all_good {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
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
