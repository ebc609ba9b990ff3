//! The step-by-step guide of `orquesta gen` in a terminal: one question per
//! setting, each showing its default (Enter takes it), every answer checked
//! on the spot and asked again with a clear message, a preview, and a
//! confirmation that defaults to yes. Nothing touches the disk before the
//! confirmation, so Ctrl-C (or Ctrl-D) at any question leaves nothing.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use super::gen::{self, GenArgs, Output, Plan, Range};
use super::table::{thousands, Table};
use crate::model::Validator;
use crate::util::time::Utc;

/// Standard input ended (Ctrl-D) before the guide was done.
#[derive(Debug, PartialEq)]
pub struct InputEnded;

/// Asks questions on `out` and reads answers from `input`.
pub struct Prompter<R, W> {
    pub input: R,
    pub out: W,
}

impl<R: BufRead, W: Write> Prompter<R, W> {
    /// Asks until `parse` accepts the answer (an empty answer means
    /// `default`).
    pub fn ask<T>(
        &mut self,
        question: &str,
        default: &str,
        mut parse: impl FnMut(&str) -> Result<T, String>,
    ) -> Result<T, InputEnded> {
        loop {
            let _ = write!(self.out, "{question} [{default}]: ");
            let _ = self.out.flush();
            let mut line = String::new();
            match self.input.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = writeln!(self.out);
                    return Err(InputEnded);
                }
                Ok(_) => {}
            }
            let answer = line.trim();
            let answer = if answer.is_empty() { default } else { answer };
            match parse(answer) {
                Ok(v) => return Ok(v),
                Err(message) => {
                    let _ = writeln!(self.out, "  ! {message}; please try again");
                }
            }
        }
    }

    pub fn say(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
    }
}

/// `y`/`yes`/`n`/`no`, any case.
pub fn parse_yes_no(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(true),
        "n" | "no" => Ok(false),
        other => Err(format!("expected y or n, found {other:?}")),
    }
}

/// The answers of one session of the guide.
#[derive(Debug, PartialEq)]
pub struct Answers {
    pub plan: Plan,
    pub path: PathBuf,
    pub confirmed: bool,
}

/// A file name answer: a bare name goes into the drop folder; it must end
/// in `.json` (the orchestrator picks up nothing else) and not exist yet.
fn parse_file_name(answer: &str, queue_dir: &std::path::Path) -> Result<PathBuf, String> {
    let answer = answer.trim();
    if !answer.ends_with(".json") {
        return Err(format!(
            "expected a file name ending in .json (the orchestrator only picks up .json files), found {answer:?}"
        ));
    }
    let path = if answer.contains('/') {
        PathBuf::from(answer)
    } else {
        queue_dir.join(answer)
    };
    if path.exists() {
        return Err(format!("{} already exists; choose another name", path.display()));
    }
    Ok(path)
}

/// Runs the guide; `defaults` come from the flags that do not shape tasks
/// (`--output`).
pub fn guide<R: BufRead, W: Write>(
    p: &mut Prompter<R, W>,
    validator: &Validator,
    default_path: &std::path::Path,
    queue_dir: &std::path::Path,
) -> Result<Answers, InputEnded> {
    let min_n = gen::min_particles(validator);
    p.say(
        "orquesta gen: a new task file, step by step. Press Enter to take the default shown in [brackets].",
    );
    let count = p.ask("How many tasks?", gen::DEFAULT_COUNT, gen::parse_count)?;
    let names = crate::sim::algorithm_names().join(", ");
    let algorithms = p.ask(
        &format!("Algorithm ({names}, or mix of python and cython)?"),
        gen::DEFAULT_ALGORITHM,
        gen::parse_algorithms,
    )?;
    let particles = p.ask(
        &format!("Particles per task, N or MIN..MAX (at least {min_n})?"),
        gen::DEFAULT_PARTICLES,
        |s| {
            let r = gen::parse_range(s)?;
            gen::check_particles(validator, &algorithms, r)?;
            Ok(r)
        },
    )?;
    let steps = p.ask("Time steps per task, N or MIN..MAX?", gen::DEFAULT_STEPS, |s| {
        let r = gen::parse_range(s)?;
        gen::check_steps(validator, &algorithms, particles, r)?;
        Ok(r)
    })?;
    let priorities = p.ask(
        "Priority (high, medium, low, or mix)?",
        gen::DEFAULT_PRIORITY,
        gen::parse_priorities,
    )?;
    let seed = p.ask(
        "Generator seed (the same seed gives the same tasks)?",
        &gen::random_seed().to_string(),
        gen::parse_seed,
    )?;
    let description = p.ask("Description of the batch?", gen::DEFAULT_DESCRIPTION, |s| {
        Ok(s.trim().to_string())
    })?;
    let default_name = if default_path.parent() == Some(queue_dir) {
        default_path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    } else {
        default_path.display().to_string()
    };
    let path = p.ask(
        &format!("File name (a bare name goes into {}/)?", queue_dir.display()),
        &default_name,
        |s| parse_file_name(s, queue_dir),
    )?;
    let plan = Plan {
        count,
        algorithms,
        particles,
        steps,
        priorities,
        seed,
        description,
        prefix: gen::batch_prefix(&Utc::now()),
        study: None,
        sets: Vec::new(),
        grid: None,
    };
    preview(p, &plan, &path);
    let confirmed = p.ask(
        &format!("Write {} to {}? (y/n)", plural(count), path.display()),
        "Y",
        parse_yes_no,
    )?;
    Ok(Answers {
        plan,
        path,
        confirmed,
    })
}

fn plural(count: u64) -> String {
    format!("{count} task{}", if count == 1 { "" } else { "s" })
}

/// The first tasks of the plan as they will be written, and the totals.
fn preview<R: BufRead, W: Write>(p: &mut Prompter<R, W>, plan: &Plan, path: &std::path::Path) {
    let file = gen::build(plan, &Utc::now().date());
    let tasks = file["tasks"].as_array().cloned().unwrap_or_default();
    let work: u128 = tasks
        .iter()
        .map(|t| {
            let n = t["parameters"]["num_particles"].as_u64().unwrap_or(0);
            let s = t["parameters"]["num_steps"].as_u64().unwrap_or(0);
            u128::from(n) * u128::from(s)
        })
        .sum();
    let mut table =
        Table::new(&["task_id", "algorithm", "particles", "steps", "seed", "priority"]).right(&[2, 3, 4]);
    for t in tasks.iter().take(5) {
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        table.row(vec![
            text(&t["task_id"]),
            text(&t["algorithm"]),
            text(&t["parameters"]["num_particles"]),
            text(&t["parameters"]["num_steps"]),
            text(&t["parameters"]["seed"]),
            text(&t["priority"]),
        ]);
    }
    p.say("");
    p.say(&format!(
        "Preview of {}: {}, particles {}, steps {}, {} particle-steps in all",
        path.display(),
        plural(plan.count),
        describe_range(plan.particles),
        describe_range(plan.steps),
        thousands(work)
    ));
    p.say(&table.render("  "));
    if tasks.len() > 5 {
        p.say(&format!("  … and {} more", tasks.len() - 5));
    }
}

fn describe_range(r: Range) -> String {
    r.to_string()
}

/// `orquesta gen` in a terminal.
pub fn run(args: &GenArgs, validator: &Validator) -> ExitCode {
    let queue_dir = gen::queue_dir();
    let default_path = match gen::output_from_flags(args) {
        Output::Path { path, .. } => path,
        _ => queue_dir.join(format!("{}.json", gen::default_stem(&Utc::now()))),
    };
    let stdin = std::io::stdin();
    let mut prompter = Prompter {
        input: stdin.lock(),
        out: std::io::stdout(),
    };
    let answers = match guide(&mut prompter, validator, &default_path, &queue_dir) {
        Ok(a) => a,
        Err(InputEnded) => {
            eprintln!("input ended: nothing was written");
            return ExitCode::FAILURE;
        }
    };
    if !answers.confirmed {
        println!("nothing was written");
        return ExitCode::FAILURE;
    }
    let output = Output::Path {
        path: answers.path,
        replace: false,
    };
    match gen::write(&answers.plan, &output, validator) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn session(input: &str) -> (Result<Answers, InputEnded>, String) {
        let dir = tempfile::tempdir().unwrap();
        let queue = dir.path().join("task_queues");
        let mut p = Prompter {
            input: Cursor::new(input.as_bytes().to_vec()),
            out: Vec::new(),
        };
        let r = guide(&mut p, &Validator::default(), &queue.join("tasks_x.json"), &queue);
        (r, String::from_utf8(p.out).unwrap())
    }

    #[test]
    fn enter_everywhere_takes_every_default() {
        let (answers, text) = session("\n\n\n\n\n\n\n\n\n");
        let a = answers.unwrap();
        assert!(a.confirmed);
        assert_eq!(a.plan.count, 10);
        assert_eq!(a.plan.algorithms, ["python", "cython"]);
        assert_eq!(a.plan.particles, Range { min: 100, max: 1000 });
        assert!(a.path.ends_with("task_queues/tasks_x.json"));
        assert!(text.contains("How many tasks? [10]: "), "{text}");
        assert!(text.contains("(at least 13)? [100..1000]: "), "{text}");
        assert!(text.contains("Preview of "), "{text}");
    }

    #[test]
    fn bad_answers_are_asked_again() {
        let (answers, text) = session(
            "zero\n3\nfortran\nreference\n5..50\n20..50\n10\nhigh\n42\nmine\nbatch\nb.json\nmaybe\nn\n",
        );
        let a = answers.unwrap();
        assert!(!a.confirmed);
        assert_eq!(a.plan.count, 3);
        assert_eq!(a.plan.algorithms, ["reference"]);
        assert_eq!(a.plan.particles, Range { min: 20, max: 50 });
        assert_eq!(a.plan.seed, 42);
        assert_eq!(a.plan.description, "mine");
        assert!(a.path.ends_with("b.json"));
        for message in [
            "  ! expected a whole number of tasks from 1 to 1000000, found \"zero\"; please try again",
            "  ! expected reference, optimized, python, cython, mix, or a comma-separated list of them, found \"fortran\"",
            "  ! 5 particles: expected a whole number ≥ 13, found 5",
            "  ! expected a file name ending in .json",
            "  ! expected y or n, found \"maybe\"",
        ] {
            assert!(text.contains(message), "{message}\n---\n{text}");
        }
    }

    #[test]
    fn input_that_ends_stops_the_guide() {
        assert_eq!(session("5\n").0.unwrap_err(), InputEnded);
    }
}
