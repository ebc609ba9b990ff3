//! The step-by-step guide of `orquesta gen` in a terminal: one question per
//! setting, each showing its default (Enter takes it), every answer checked
//! on the spot and asked again with a clear message, a preview, and a
//! confirmation that defaults to yes. Nothing touches the disk before the
//! confirmation, so Ctrl-C (or Ctrl-D) at any question leaves nothing.
//! Answering `grid` to the first question builds a parameter study
//! instead ([`study_guide`]): the choices of `gen --grid/--set/--replicas
//! /--study`, each checked as it is typed.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use super::gen::{self, GenArgs, Output, Plan, Range};
use super::gen_study::{self, Grid};
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
    let min_n = validator.min_particles();
    p.say(
        "orquesta gen: a new task file, step by step. Press Enter to take the default shown in [brackets].",
    );
    p.say("For a parameter study (swept values, replicas, a study name), answer grid to the first question.");
    let count = p.ask("How many tasks?", gen::DEFAULT_COUNT, |s| match s.trim() {
        "grid" => Ok(None),
        s => gen::parse_count(s).map(Some),
    })?;
    let Some(count) = count else {
        return study_guide(p, validator, default_path, queue_dir);
    };
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
    let path = ask_path(p, default_path, queue_dir)?;
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
    confirm(p, plan, path)
}

/// The file name question.
fn ask_path<R: BufRead, W: Write>(
    p: &mut Prompter<R, W>,
    default_path: &std::path::Path,
    queue_dir: &std::path::Path,
) -> Result<PathBuf, InputEnded> {
    let default_name = if default_path.parent() == Some(queue_dir) {
        default_path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    } else {
        default_path.display().to_string()
    };
    p.ask(
        &format!("File name (a bare name goes into {}/)?", queue_dir.display()),
        &default_name,
        |s| parse_file_name(s, queue_dir),
    )
}

/// The preview and the last question.
fn confirm<R: BufRead, W: Write>(
    p: &mut Prompter<R, W>,
    plan: Plan,
    path: PathBuf,
) -> Result<Answers, InputEnded> {
    preview(p, &plan, &path);
    let confirmed = p.ask(
        &format!("Write {} to {}? (y/n)", plural(plan.count), path.display()),
        "Y",
        parse_yes_no,
    )?;
    Ok(Answers {
        plan,
        path,
        confirmed,
    })
}

/// Asks `PARAM=...` answers until `done`, each parsed by `parse` and
/// checked by `check` on the spot.
fn ask_until_done<R: BufRead, W: Write, T>(
    p: &mut Prompter<R, W>,
    question: &str,
    mut parse: impl FnMut(&str) -> Result<T, String>,
) -> Result<Vec<T>, InputEnded> {
    let mut out = Vec::new();
    loop {
        let answer = p.ask(question, "done", |s| match s.trim() {
            "done" => Ok(None),
            s => parse(s).map(Some),
        })?;
        match answer {
            Some(v) => out.push(v),
            None => return Ok(out),
        }
    }
}

/// The parameter-study guide: algorithm, swept parameters, fixed values,
/// the size of each run if neither gave it, replicas, the study's name,
/// seed, description, file; the whole grid is checked before the preview
/// (a refused combination sends the user back to the swept values).
pub fn study_guide<R: BufRead, W: Write>(
    p: &mut Prompter<R, W>,
    validator: &Validator,
    default_path: &std::path::Path,
    queue_dir: &std::path::Path,
) -> Result<Answers, InputEnded> {
    let names = crate::sim::algorithm_names().join(", ");
    let algorithm = p.ask(&format!("Algorithm ({names})?"), gen::STUDY_ALGORITHM, |s| {
        gen_study::parse_value("algorithm", s)
    })?;
    let algorithm = algorithm.as_str().unwrap_or(gen::STUDY_ALGORITHM).to_string();
    let settable = gen_study::settable_names();
    loop {
        let mut base = serde_json::Map::new();
        base.insert("algorithm".into(), algorithm.clone().into());
        base.insert("parameters".into(), serde_json::json!({}));
        let mut axes: Vec<gen_study::Axis> = Vec::new();
        let mut sets: Vec<(String, serde_json::Value)> = Vec::new();
        let question = format!("Swept parameter, PARAM=v1,v2,... or PARAM=start:stop:step ({settable})?");
        for axis in ask_until_done(p, &question, |s| {
            let axis = gen_study::parse_axis(s)?;
            for v in &axis.values {
                if let Some(e) = gen_study::own_problems(validator, &base, &axis.name, v) {
                    return Err(format!("the value {v}: {e}"));
                }
            }
            Ok(axis)
        })? {
            axes.retain(|a| a.name != axis.name);
            axes.push(axis);
        }
        for (name, value) in ask_until_done(p, "Fixed value, PARAM=VALUE?", |s| {
            let (name, value) = gen_study::parse_set(s)?;
            if axes.iter().any(|a| a.name == name) {
                return Err(format!("{name} is swept already"));
            }
            match gen_study::own_problems(validator, &base, &name, &value) {
                Some(e) => Err(e),
                None => Ok((name, value)),
            }
        })? {
            sets.retain(|(n, _)| *n != name);
            sets.push((name, value));
        }
        for (name, question, default) in [
            ("num_particles", "Particles per task?", "256"),
            ("num_steps", "Time steps per task?", "1000"),
        ] {
            if axes.iter().any(|a| a.name == name) || sets.iter().any(|(n, _)| n == name) {
                continue;
            }
            let value = p.ask(question, default, |s| {
                let v = gen_study::parse_value(name, s)?;
                match gen_study::own_problems(validator, &base, name, &v) {
                    Some(e) => Err(e),
                    None => Ok(v),
                }
            })?;
            sets.push((name.to_string(), value));
        }
        let replicas = p.ask("Replicas per grid point (each its own seed)?", "1", |s| {
            match s.trim().parse::<u64>() {
                Ok(r) if (1..=gen_study::MAX_REPLICAS).contains(&r) => Ok(r),
                _ => Err(format!(
                    "expected a whole number from 1 to {}, found {s:?}",
                    gen_study::MAX_REPLICAS
                )),
            }
        })?;
        let study = p.ask(
            "Study name (letters, digits, '.', '_', '-')?",
            &format!("study_{}", Utc::now().compact()),
            |s| crate::model::check_study(s.trim()).map(|()| s.trim().to_string()),
        )?;
        let grid = Grid { axes, replicas };
        let Some(count) = grid.task_count().filter(|n| *n <= gen::MAX_COUNT) else {
            p.say(&format!(
                "  ! the grid has more than {} tasks; sweep fewer values",
                gen::MAX_COUNT
            ));
            continue;
        };
        let seed = p.ask(
            "Generator seed (the same seed gives the same tasks)?",
            &gen::random_seed().to_string(),
            gen::parse_seed,
        )?;
        let plan = Plan {
            count,
            algorithms: vec![algorithm.clone()],
            particles: Range { min: 0, max: 0 },
            steps: Range { min: 0, max: 0 },
            priorities: vec![crate::model::Priority::Medium],
            seed,
            description: format!("Study {study}"),
            prefix: gen::batch_prefix(&Utc::now()),
            study: Some(study),
            sets,
            grid: Some(grid),
        };
        let tasks = gen::build_tasks(&plan);
        let grid = plan.grid.clone().unwrap_or_default();
        if let Err(e) = gen_study::check(validator, &grid, &plan.sets, &gen::study_base(&plan), &tasks) {
            p.say(&format!(
                "  ! {e}\n  please choose the swept and fixed values again"
            ));
            continue;
        }
        let path = ask_path(p, default_path, queue_dir)?;
        return confirm(p, plan, path);
    }
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
    let shape = match &plan.grid {
        Some(grid) => {
            let mut swept: Vec<String> = grid
                .axes
                .iter()
                .map(|a| format!("{} ({} values)", a.name, a.values.len()))
                .collect();
            if swept.is_empty() {
                swept.push("nothing swept".into());
            }
            format!("{}, {} replicas", swept.join(" × "), grid.replicas)
        }
        None => format!(
            "particles {}, steps {}",
            describe_range(plan.particles),
            describe_range(plan.steps)
        ),
    };
    p.say(&format!(
        "Preview of {}: {}, {shape}, {} particle-steps in all",
        path.display(),
        plural(plan.count),
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
    fn grid_builds_a_study_with_the_same_choices_as_the_flags() {
        let (answers, text) = session(
            "grid\nreference\ndensity=0.5,9\ndensity=0.5,0.6\ntemperature=0.5:1.0:0.25\n\ndt=0.002\n\n\n\n3\nmy study\nrho\n7\n\n\n",
        );
        let a = answers.unwrap();
        assert!(a.confirmed);
        let grid = a.plan.grid.as_ref().unwrap();
        assert_eq!(grid.axes.len(), 2);
        assert_eq!(grid.replicas, 3);
        assert_eq!(a.plan.count, 2 * 3 * 3);
        assert_eq!(a.plan.study.as_deref(), Some("rho"));
        assert_eq!(a.plan.seed, 7);
        let tasks = gen::build_tasks(&a.plan);
        assert_eq!(tasks.len(), 18);
        assert_eq!(tasks[0]["parameters"]["dt"], 0.002);
        assert_eq!(tasks[0]["parameters"]["num_particles"], 256);
        assert_eq!(tasks[17]["parameters"]["temperature"], 1.0);
        for message in [
            "  ! the value 9.0: expected a number from 1e-6 to 1.2",
            "  ! expected a study name of",
            "density (2 values) × temperature (3 values), 3 replicas",
        ] {
            assert!(text.contains(message), "{message}\n---\n{text}");
        }
    }

    #[test]
    fn input_that_ends_stops_the_guide() {
        assert_eq!(session("5\n").0.unwrap_err(), InputEnded);
    }
}
