//! `orquesta gen`: writes a task file in the seed's format (the seed's
//! `manual_task_generator.py`). With flags it is a script's tool; in a
//! terminal without task flags it hands over to [`super::interactive`].
//! Both build a [`Plan`], check it against the same validator the
//! orchestrator uses, and place the file atomically. A study (`--grid`,
//! `--set`, `--replicas`, `--study`) is built by [`super::gen_study`].

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde_json::{json, Map, Value};

use super::gen_study::{self, Grid};
use super::place;
use super::validate::{local_validator, summary};
use crate::model::{Priority, Validator};
use crate::sim::rng::SplitMix64;
use crate::util::time::Utc;

/// Tasks written when `--count` is not given.
pub const DEFAULT_COUNT: &str = "10";
/// The seed's two algorithm names, drawn at random per task.
pub const DEFAULT_ALGORITHM: &str = "mix";
pub const DEFAULT_PARTICLES: &str = "100..1000";
pub const DEFAULT_STEPS: &str = "100..1000";
pub const DEFAULT_PRIORITY: &str = "mix";
pub const DEFAULT_DESCRIPTION: &str = "Particle simulation tasks";
/// `metadata.created_by` of every generated file.
pub const CREATED_BY: &str = "orquesta gen";
/// Most tasks one file may hold (far below the orchestrator's file limit).
pub const MAX_COUNT: u64 = 1_000_000;
/// The algorithm of a study's tasks when `--algorithm` is not given.
pub const STUDY_ALGORITHM: &str = "optimized";
/// `mix` means the seed's algorithm names.
const MIX_ALGORITHMS: [&str; 2] = ["python", "cython"];

#[derive(Args, Debug, Default, Clone)]
pub struct GenArgs {
    /// Number of tasks [default: 10].
    #[arg(long, short = 'c', value_name = "N")]
    pub count: Option<String>,
    /// python, cython, reference, optimized, a comma-separated list to draw
    /// from, or mix (= python,cython) [default: mix].
    #[arg(long, short = 'a', value_name = "NAME")]
    pub algorithm: Option<String>,
    /// Particles per task: N or MIN..MAX, drawn uniformly; at least 13 at
    /// the default density [default: 100..1000].
    #[arg(long, short = 'n', value_name = "RANGE")]
    pub particles: Option<String>,
    /// Time steps per task: N or MIN..MAX [default: 100..1000].
    #[arg(long, short = 's', value_name = "RANGE")]
    pub steps: Option<String>,
    /// high, medium, low, a comma-separated list to draw from, or mix
    /// (= all three) [default: mix].
    #[arg(long, short = 'p', value_name = "PRIORITY")]
    pub priority: Option<String>,
    /// Seed of the generator: the same seed gives the same parameters
    /// (with --prefix, the same ids too) [default: random, printed].
    #[arg(long)]
    pub seed: Option<u64>,
    /// metadata.description of the file [default: "Particle simulation tasks"].
    #[arg(long, short = 'd', value_name = "TEXT")]
    pub description: Option<String>,
    /// Task ids are PREFIX_001, PREFIX_002, … [default: batch_<time>_<random>,
    /// so that ids never collide with another run's].
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// Where to write; `-` prints to standard output [default:
    /// task_queues/tasks_<YYYYMMDD_HHMMSS>.json, in TASK_QUEUE_DIR if set].
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace --output if it exists.
    #[arg(long)]
    pub force: bool,
    /// A swept parameter: PARAM=v1,v2,... or PARAM=start:stop:step (stop
    /// included when the steps land on it); repeatable. The file holds one
    /// task per grid point and replica. PARAM: num_particles, num_steps,
    /// density, temperature, dt, cutoff, algorithm, priority.
    #[arg(long, value_name = "PARAM=VALUES")]
    pub grid: Vec<String>,
    /// A fixed value of any task parameter, PARAM=VALUE; repeatable.
    #[arg(long, value_name = "PARAM=VALUE")]
    pub set: Vec<String>,
    /// Tasks per grid point, each with its own seed derived from --seed
    /// [default: 1].
    #[arg(long, value_name = "R")]
    pub replicas: Option<u64>,
    /// The study name written into every task (letters, digits, '.', '_',
    /// '-'); `results export --study NAME` selects them.
    #[arg(long, value_name = "NAME")]
    pub study: Option<String>,
}

impl GenArgs {
    /// True if any flag that shapes the tasks was given (then `gen` never
    /// asks questions).
    pub fn has_task_flags(&self) -> bool {
        self.count.is_some()
            || self.algorithm.is_some()
            || self.particles.is_some()
            || self.steps.is_some()
            || self.priority.is_some()
            || self.seed.is_some()
            || self.description.is_some()
            || self.prefix.is_some()
            || !self.grid.is_empty()
            || !self.set.is_empty()
            || self.replicas.is_some()
            || self.study.is_some()
    }
}

/// An inclusive range of whole numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub min: u64,
    pub max: u64,
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}..{}", self.min, self.max)
        }
    }
}

/// Everything that decides a generated file's tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub count: u64,
    pub algorithms: Vec<String>,
    pub particles: Range,
    pub steps: Range,
    pub priorities: Vec<Priority>,
    pub seed: u64,
    pub description: String,
    pub prefix: String,
    /// `--study`: written into every task.
    pub study: Option<String>,
    /// `--set`: fixed values, applied over whatever else gives them.
    pub sets: Vec<(String, Value)>,
    /// `--grid`/`--replicas`: one task per point and replica (then
    /// `count` is their number, and the first algorithm and priority are
    /// the base of every task).
    pub grid: Option<Grid>,
}

/// Where the file goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Stdout,
    Path {
        path: PathBuf,
        replace: bool,
    },
    /// `dir/stem.json`, or `stem_2.json`, … if taken.
    FreeName {
        dir: PathBuf,
        stem: String,
    },
}

pub fn parse_count(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if (1..=MAX_COUNT).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a whole number of tasks from 1 to {MAX_COUNT}, found {:?}",
            s.trim()
        )),
    }
}

/// `mix`, one name, or a comma-separated list of names.
pub fn parse_algorithms(s: &str) -> Result<Vec<String>, String> {
    let s = s.trim();
    if s == "mix" {
        return Ok(MIX_ALGORITHMS.iter().map(|a| a.to_string()).collect());
    }
    let names = crate::sim::algorithm_names();
    let mut out: Vec<String> = Vec::new();
    for part in s.split(',').map(str::trim) {
        if !names.contains(&part) {
            return Err(format!(
                "expected {}, mix, or a comma-separated list of them, found {part:?}",
                names.join(", ")
            ));
        }
        if !out.iter().any(|a| a == part) {
            out.push(part.to_string());
        }
    }
    Ok(out)
}

/// `N` or `MIN..MAX` (inclusive).
pub fn parse_range(s: &str) -> Result<Range, String> {
    let s = s.trim();
    let number = |t: &str| t.trim().parse::<u64>().ok();
    let range = match s.split_once("..") {
        None => number(s).map(|n| Range { min: n, max: n }),
        Some((a, b)) => number(a)
            .zip(number(b.trim_start_matches('=')))
            .map(|(min, max)| Range { min, max }),
    };
    let range =
        range.ok_or_else(|| format!("expected a whole number or MIN..MAX such as 100..1000, found {s:?}"))?;
    if range.min > range.max {
        return Err(format!("expected MIN ≤ MAX, found {}..{}", range.min, range.max));
    }
    Ok(range)
}

/// `mix`, one priority, or a comma-separated list.
pub fn parse_priorities(s: &str) -> Result<Vec<Priority>, String> {
    let s = s.trim();
    if s == "mix" {
        return Ok(Priority::ALL.to_vec());
    }
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let p = Priority::parse(part).ok_or_else(|| {
            format!("expected high, medium, low, mix, or a comma-separated list of them, found {part:?}")
        })?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

pub fn parse_seed(s: &str) -> Result<u64, String> {
    s.trim().parse::<u64>().map_err(|_| {
        format!(
            "expected a whole number from 0 to 18446744073709551615, found {:?}",
            s.trim()
        )
    })
}

/// A prefix that makes valid ids (`PREFIX_001`).
pub fn parse_prefix(s: &str) -> Result<String, String> {
    let s = s.trim();
    crate::model::TaskId::parse(&format!("{s}_0000001"))
        .map(|_| s.to_string())
        .map_err(|e| format!("the prefix makes ids like {s:?}_001, which are invalid: {e}"))
}

/// Checks one worst-case task against the validator.
fn probe(validator: &Validator, algorithm: &str, n: u64, steps: u64) -> Result<(), String> {
    let task = json!({"task_id": "probe", "algorithm": algorithm,
        "parameters": {"num_particles": n, "num_steps": steps, "seed": 0}});
    validator.task(&task, "").map(|_| ()).map_err(|errors| {
        errors
            .iter()
            .map(|e| e.message.clone())
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Both ends of a particle range must be simulations the workers accept.
pub fn check_particles(validator: &Validator, algorithms: &[String], particles: Range) -> Result<(), String> {
    for algorithm in algorithms {
        for n in [particles.min, particles.max] {
            probe(validator, algorithm, n, 0).map_err(|e| format!("{n} particles: {e}"))?;
        }
    }
    Ok(())
}

/// The largest task (most particles, most steps) must fit the limits.
pub fn check_steps(
    validator: &Validator,
    algorithms: &[String],
    particles: Range,
    steps: Range,
) -> Result<(), String> {
    for algorithm in algorithms {
        probe(validator, algorithm, particles.max, steps.max).map_err(|e| {
            format!(
                "the largest task ({algorithm}, {} particles, {} steps) is too big: {e}",
                particles.max, steps.max
            )
        })?;
    }
    Ok(())
}

/// A value of `r` drawn from `rng`.
fn within(rng: &mut SplitMix64, r: Range) -> u64 {
    match (r.max - r.min).checked_add(1) {
        Some(span) => r.min + rng.next_u64() % span,
        None => rng.next_u64(),
    }
}

/// One of `items` drawn from `rng`.
fn pick<'a, T>(rng: &mut SplitMix64, items: &'a [T]) -> &'a T {
    &items[(rng.next_u64() % items.len() as u64) as usize]
}

/// A random number from the operating system's randomness (std seeds
/// `RandomState` from it).
pub fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// A generator seed short enough to type back.
pub fn random_seed() -> u64 {
    random_u64() % 1_000_000
}

/// `batch_20240115_103000_3fa9c1`: time plus 24 random bits, so that two
/// runs never share ids.
pub fn batch_prefix(now: &Utc) -> String {
    format!("batch_{}_{:06x}", now.compact(), random_u64() & 0xff_ffff)
}

/// The drop folder: `TASK_QUEUE_DIR` if set, else `task_queues`.
pub fn queue_dir() -> PathBuf {
    std::env::var("TASK_QUEUE_DIR")
        .ok()
        .filter(|d| !d.trim().is_empty())
        .map_or_else(|| PathBuf::from("task_queues"), PathBuf::from)
}

/// `tasks_20240115_103000`
pub fn default_stem(now: &Utc) -> String {
    format!("tasks_{}", now.compact())
}

/// What every task of a study starts from: algorithm, parameters with the
/// sets applied, priority, study.
pub fn study_base(plan: &Plan) -> Map<String, Value> {
    let mut base = Map::new();
    let first = plan.algorithms.first().map_or(STUDY_ALGORITHM, String::as_str);
    base.insert("algorithm".into(), json!(first));
    base.insert("parameters".into(), json!({}));
    let priority = plan.priorities.first().copied().unwrap_or_default();
    base.insert("priority".into(), json!(priority.as_str()));
    for (name, value) in &plan.sets {
        gen_study::apply(&mut base, name, value);
    }
    if let Some(study) = &plan.study {
        base.insert("study".into(), json!(study));
    }
    base
}

/// The tasks of a plan.
pub fn build_tasks(plan: &Plan) -> Vec<Value> {
    if let Some(grid) = &plan.grid {
        return gen_study::grid_tasks(grid, &study_base(plan), plan.seed, &plan.prefix);
    }
    random_tasks(plan)
}

/// The task file of a plan, in the seed's format and key order.
pub fn build(plan: &Plan, creation_date: &str) -> Value {
    file_of(plan, build_tasks(plan), creation_date)
}

fn file_of(plan: &Plan, tasks: Vec<Value>, creation_date: &str) -> Value {
    json!({
        "metadata": {
            "creation_date": creation_date,
            "description": plan.description,
            "total_tasks": tasks.len(),
            "created_by": CREATED_BY,
        },
        "tasks": tasks,
    })
}

/// Tasks drawn at random within the plan's ranges, sets applied.
fn random_tasks(plan: &Plan) -> Vec<Value> {
    let mut rng = SplitMix64::new(plan.seed);
    let width = plan.count.to_string().len().max(3);
    (1..=plan.count)
        .map(|i| {
            let algorithm = pick(&mut rng, &plan.algorithms).clone();
            let n = within(&mut rng, plan.particles);
            let steps = within(&mut rng, plan.steps);
            let priority = *pick(&mut rng, &plan.priorities);
            let seed = rng.next_u64() % 1_000_000;
            let mut task = Map::new();
            task.insert("task_id".into(), json!(format!("{}_{i:0width$}", plan.prefix)));
            task.insert("algorithm".into(), json!(algorithm));
            task.insert(
                "parameters".into(),
                json!({"num_particles": n, "num_steps": steps, "seed": seed}),
            );
            task.insert("priority".into(), json!(priority.as_str()));
            for (name, value) in &plan.sets {
                gen_study::apply(&mut task, name, value);
            }
            let p = &task["parameters"];
            let described = format!(
                "{} simulation, {} particles, {} steps",
                task["algorithm"].as_str().unwrap_or_default(),
                p["num_particles"],
                p["num_steps"]
            );
            task.insert("description".into(), json!(described));
            if let Some(study) = &plan.study {
                task.insert("study".into(), json!(study));
            }
            Value::Object(task)
        })
        .collect()
}

/// Checks the built file with the orchestrator's validator, places it, and
/// prints where it went; the file's path on success.
pub fn write(plan: &Plan, output: &Output, validator: &Validator) -> Result<Option<PathBuf>, String> {
    let tasks = build_tasks(plan);
    if plan.grid.is_some() || !plan.sets.is_empty() {
        // what the user chose may be out of range: say so in their terms
        let grid = plan.grid.clone().unwrap_or_default();
        gen_study::check(validator, &grid, &plan.sets, &study_base(plan), &tasks)?;
    }
    let file = file_of(plan, tasks, &Utc::now().date());
    let batch = crate::model::taskfile::parse_value(&file, validator).map_err(|r| {
        format!(
            "the generated file does not pass validation, which is a bug in orquesta gen: {}",
            r.summary()
        )
    })?;
    let mut text = serde_json::to_string_pretty(&file).map_err(|e| e.to_string())?;
    text.push('\n');
    let written = match output {
        Output::Stdout => {
            super::table::print_text(&text);
            eprintln!("{} (generator seed {})", summary(&batch.tasks), plan.seed);
            return Ok(None);
        }
        Output::Path { path, replace } => place::write_new(path, text.as_bytes(), *replace)
            .map(|()| path.clone())
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => format!(
                    "{} already exists; pass --force to replace it, or choose another --output",
                    path.display()
                ),
                _ => format!("cannot write {}: {e}", path.display()),
            })?,
        Output::FreeName { dir, stem } => place::write_free_name(dir, stem, text.as_bytes())
            .map_err(|e| format!("cannot write into {}: {e}", dir.display()))?,
    };
    println!(
        "wrote {}: {} (generator seed {})",
        written.display(),
        summary(&batch.tasks),
        plan.seed
    );
    Ok(Some(written))
}

/// The plan from flags, every omitted one at its default.
pub fn plan_from_flags(args: &GenArgs, validator: &Validator) -> Result<Plan, String> {
    let study = match &args.study {
        Some(s) => Some(
            crate::model::check_study(s.trim())
                .map(|()| s.trim().to_string())
                .map_err(|e| format!("--study: {e}"))?,
        ),
        None => None,
    };
    let mut sets = Vec::new();
    for s in &args.set {
        let (name, value) = gen_study::parse_set(s).map_err(|e| format!("--set: {e}"))?;
        if sets.iter().any(|(n, _)| *n == name) {
            return Err(format!("--set: {name} is set twice"));
        }
        sets.push((name, value));
    }
    if !args.grid.is_empty() || args.replicas.is_some() {
        return gen_study::plan_from_flags(args, study, sets);
    }
    let or = |v: &Option<String>, d: &str| v.clone().unwrap_or_else(|| d.to_string());
    let count = parse_count(&or(&args.count, DEFAULT_COUNT)).map_err(|e| format!("--count: {e}"))?;
    let algorithms =
        parse_algorithms(&or(&args.algorithm, DEFAULT_ALGORITHM)).map_err(|e| format!("--algorithm: {e}"))?;
    let particles = parse_range(&or(&args.particles, DEFAULT_PARTICLES))
        .and_then(|r| check_particles(validator, &algorithms, r).map(|()| r))
        .map_err(|e| format!("--particles: {e}"))?;
    let steps = parse_range(&or(&args.steps, DEFAULT_STEPS))
        .and_then(|r| check_steps(validator, &algorithms, particles, r).map(|()| r))
        .map_err(|e| format!("--steps: {e}"))?;
    let priorities =
        parse_priorities(&or(&args.priority, DEFAULT_PRIORITY)).map_err(|e| format!("--priority: {e}"))?;
    let prefix = match &args.prefix {
        Some(p) => parse_prefix(p).map_err(|e| format!("--prefix: {e}"))?,
        None => batch_prefix(&Utc::now()),
    };
    Ok(Plan {
        count,
        algorithms,
        particles,
        steps,
        priorities,
        seed: args.seed.unwrap_or_else(random_seed),
        description: or(&args.description, DEFAULT_DESCRIPTION),
        prefix,
        study,
        sets,
        grid: None,
    })
}

/// Where `--output` sends the file.
pub fn output_from_flags(args: &GenArgs) -> Output {
    match &args.output {
        Some(p) if p.as_os_str() == "-" => Output::Stdout,
        Some(p) => Output::Path {
            path: p.clone(),
            replace: args.force,
        },
        None => Output::FreeName {
            dir: queue_dir(),
            stem: default_stem(&Utc::now()),
        },
    }
}

/// `orquesta gen`.
pub fn run(args: &GenArgs) -> ExitCode {
    let validator = local_validator();
    if !args.has_task_flags() && std::io::stdin().is_terminal() {
        return super::interactive::run(args, &validator);
    }
    let plan = match plan_from_flags(args, &validator) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match write(&plan, &output_from_flags(args), &validator) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// True if `path` names a file inside the drop folder `dir`.
pub fn is_in_dir(path: &Path, dir: &Path) -> bool {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match (parent.canonicalize(), dir.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
#[path = "gen_tests.rs"]
mod tests;
