//! The study part of `orquesta gen`: `--grid PARAM=v1,v2,...` and
//! `--grid PARAM=start:stop:step` (axes of a cartesian product), `--set
//! PARAM=VALUE` (fixed values), `--replicas R` and `--study NAME`. The
//! names a grid or a set may use are the model's one list
//! ([`crate::model::TASK_PARAMETERS`]) plus the task's `algorithm` and
//! `priority`; every value is checked against the validator's ranges, and
//! every task of the grid against the whole validator, before anything is
//! written.
//!
//! # Ranges and the float tolerance
//! `start:stop:step` gives `start + k·step` for k = 0, 1, … up to `stop`.
//! Each value is computed from `start` directly (never by adding steps up,
//! which drifts), then rounded to as many decimals as `start` and `step`
//! were written with, so `0.1:0.3:0.1` gives 0.1, 0.2, 0.3 and not
//! 0.30000000000000004. `stop` is included when the steps land on it within
//! [`STEP_TOLERANCE`] of a step (1e-9 · step): `0.5:2.0:0.25` ends at 2.0,
//! `0:1:0.3` ends at 0.9.

use serde_json::{Map, Value};

use super::gen::{
    batch_prefix, parse_algorithms, parse_prefix, parse_priorities, parse_range, random_seed, study_base,
    GenArgs, Plan, Range, MAX_COUNT, STUDY_ALGORITHM,
};
use crate::model::{task_parameter, ParamKind, Priority, Validator, TASK_PARAMETERS};
use crate::sim::rng::SplitMix64;
use crate::util::time::Utc;

/// How close (as a fraction of the step) the last step must come to
/// `stop` for `stop` to be included.
pub const STEP_TOLERANCE: f64 = 1e-9;

/// Most replicas of one grid point.
pub const MAX_REPLICAS: u64 = 10_000;

/// Names a grid or a set may use besides the simulation's parameters.
const TASK_LEVEL: [&str; 2] = ["algorithm", "priority"];

/// One swept parameter and its values, in the order they were given.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub name: String,
    pub values: Vec<Value>,
}

/// A study: its axes (first one varies slowest), fixed values, replicas.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Grid {
    pub axes: Vec<Axis>,
    pub replicas: u64,
}

impl Grid {
    /// Grid points times replicas; `None` past u64.
    pub fn task_count(&self) -> Option<u64> {
        self.axes
            .iter()
            .try_fold(self.replicas, |n, a| n.checked_mul(a.values.len() as u64))
    }
}

/// Every name `--grid` and `--set` accept, for messages.
pub fn settable_names() -> String {
    TASK_PARAMETERS
        .iter()
        .map(|p| p.name)
        .filter(|n| *n != "seed")
        .chain(TASK_LEVEL)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `PARAM=...` split, the name checked.
fn name_and_rest(s: &str) -> Result<(&str, &str), String> {
    let Some((name, rest)) = s.split_once('=') else {
        return Err(format!(
            "expected PARAM=VALUE with PARAM one of {}, found {s:?}",
            settable_names()
        ));
    };
    let name = name.trim();
    if name == "seed" {
        return Err(
            "seed cannot be set or swept: every task gets its own seed, derived from --seed \
             (use --replicas for several seeds per grid point)"
                .into(),
        );
    }
    if task_parameter(name).is_none() && !TASK_LEVEL.contains(&name) {
        return Err(format!(
            "unknown parameter {name:?}: expected one of {}",
            settable_names()
        ));
    }
    Ok((name, rest.trim()))
}

/// One value of parameter `name` as written.
pub fn parse_value(name: &str, text: &str) -> Result<Value, String> {
    let text = text.trim();
    match name {
        "algorithm" => {
            let names = crate::sim::algorithm_names();
            if names.contains(&text) {
                Ok(Value::String(text.into()))
            } else {
                Err(format!(
                    "algorithm: expected one of {}, found {text:?}",
                    names.join(", ")
                ))
            }
        }
        "priority" => Priority::parse(text)
            .map(|p| Value::String(p.as_str().into()))
            .ok_or_else(|| format!("priority: expected high, medium or low, found {text:?}")),
        _ => match task_parameter(name).map(|p| p.kind) {
            Some(ParamKind::Whole) => text
                .parse::<u64>()
                .map(Value::from)
                .map_err(|_| format!("{name}: expected a whole number ≥ 0, found {text:?}")),
            Some(ParamKind::Real) => match text.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(Value::from(v)),
                _ => Err(format!("{name}: expected a number such as 0.5, found {text:?}")),
            },
            None => Err(format!(
                "unknown parameter {name:?}: expected one of {}",
                settable_names()
            )),
        },
    }
}

/// `--set PARAM=VALUE`.
pub fn parse_set(s: &str) -> Result<(String, Value), String> {
    let (name, rest) = name_and_rest(s)?;
    Ok((name.to_string(), parse_value(name, rest)?))
}

/// `--grid PARAM=v1,v2,...` or `--grid PARAM=start:stop:step`.
pub fn parse_axis(s: &str) -> Result<Axis, String> {
    let (name, rest) = name_and_rest(s)?;
    let values = if rest.contains(':') {
        let parts: Vec<&str> = rest.split(':').map(str::trim).collect();
        let [start, stop, step] = parts[..] else {
            return Err(format!(
                "{name}: expected start:stop:step such as 0.5:2.0:0.25, found {rest:?}"
            ));
        };
        range_values(name, start, stop, step)?
    } else {
        rest.split(',')
            .map(|v| parse_value(name, v))
            .collect::<Result<Vec<_>, _>>()?
    };
    if values.is_empty() || rest.is_empty() {
        return Err(format!("{name}: expected at least one value, found {rest:?}"));
    }
    // by their JSON text: a range can hold a million values, and rounding
    // to the decimals written can make two of them equal
    let mut seen = std::collections::HashSet::with_capacity(values.len());
    if let Some(v) = values.iter().find(|v| !seen.insert(v.to_string())) {
        return Err(format!("{name}: the value {v} is given twice"));
    }
    Ok(Axis {
        name: name.to_string(),
        values,
    })
}

/// Decimals a number was written with (`0.25` → 2, `2` → 0, `1e-3` → none:
/// no rounding for exponent notation).
fn decimals(text: &str) -> Option<usize> {
    if text.contains(['e', 'E']) {
        return None;
    }
    Some(text.split_once('.').map_or(0, |(_, f)| f.len()))
}

/// The values of `start:stop:step` (module doc: "Ranges and the float
/// tolerance").
fn range_values(name: &str, start: &str, stop: &str, step: &str) -> Result<Vec<Value>, String> {
    let kind = match task_parameter(name) {
        Some(p) => p.kind,
        None => {
            return Err(format!(
                "{name}: a range needs a numeric parameter; list the values: {name}=a,b"
            ))
        }
    };
    let limit = crate::cli::gen::MAX_COUNT;
    if kind == ParamKind::Whole {
        let whole = |t: &str| {
            t.parse::<u64>()
                .map_err(|_| format!("{name}: expected whole numbers in start:stop:step, found {t:?}"))
        };
        let (a, b, d) = (whole(start)?, whole(stop)?, whole(step)?);
        if d == 0 || a > b {
            return Err(format!(
                "{name}: expected start ≤ stop and a step > 0, found {start}:{stop}:{step}"
            ));
        }
        if (b - a) / d >= limit {
            return Err(format!(
                "{name}: {start}:{stop}:{step} has more than {limit} values"
            ));
        }
        return Ok((0..=(b - a) / d).map(|k| Value::from(a + k * d)).collect());
    }
    let real = |t: &str| match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!(
            "{name}: expected numbers in start:stop:step, found {t:?}"
        )),
    };
    let (a, b, d) = (real(start)?, real(stop)?, real(step)?);
    if d <= 0.0 || a > b {
        return Err(format!(
            "{name}: expected start ≤ stop and a step > 0, found {start}:{stop}:{step}"
        ));
    }
    let spans = (b - a) / d;
    if spans >= limit as f64 {
        return Err(format!(
            "{name}: {start}:{stop}:{step} has more than {limit} values"
        ));
    }
    let last = (spans + STEP_TOLERANCE).floor() as u64;
    let places = decimals(start).zip(decimals(step)).map(|(x, y)| x.max(y));
    Ok((0..=last)
        .map(|k| {
            let v = a + k as f64 * d;
            let v = if (v - b).abs() <= STEP_TOLERANCE * d {
                b
            } else {
                match places {
                    Some(p) if p <= 15 => format!("{v:.p$}").parse().unwrap_or(v),
                    _ => v,
                }
            };
            Value::from(v)
        })
        .collect())
}

/// Every grid point: one value per axis, the first axis varying slowest.
pub fn points(axes: &[Axis]) -> Vec<Vec<(&str, &Value)>> {
    let mut out: Vec<Vec<(&str, &Value)>> = vec![Vec::new()];
    for axis in axes {
        out = out
            .into_iter()
            .flat_map(|point| {
                axis.values.iter().map(move |v| {
                    let mut p = point.clone();
                    p.push((axis.name.as_str(), v));
                    p
                })
            })
            .collect();
    }
    out
}

/// Puts `value` of parameter `name` into a task under construction.
pub fn apply(task: &mut Map<String, Value>, name: &str, value: &Value) {
    if TASK_LEVEL.contains(&name) {
        task.insert(name.to_string(), value.clone());
    } else if let Some(Value::Object(params)) = task.get_mut("parameters") {
        params.insert(name.to_string(), value.clone());
    }
}

/// Seeds for `count` tasks: drawn from `--seed`'s generator, 53 bits (exact
/// in every JSON reader), all distinct.
pub fn task_seeds(seed: u64, count: u64) -> Vec<u64> {
    let mut rng = SplitMix64::new(seed);
    let mut seen = std::collections::HashSet::with_capacity(count as usize);
    let mut out = Vec::with_capacity(count as usize);
    while (out.len() as u64) < count {
        let s = rng.next_u64() >> 11;
        if seen.insert(s) {
            out.push(s);
        }
    }
    out
}

/// `density=0.6, temperature=1.5`
fn point_text(point: &[(&str, &Value)]) -> String {
    point
        .iter()
        .map(|(n, v)| match v {
            Value::String(s) => format!("{n}={s}"),
            other => format!("{n}={other}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The tasks of a grid: `base` (a task with its parameters, sets applied)
/// at every point, `grid.replicas` times each, ids `PREFIX_0001`, ….
pub fn grid_tasks(grid: &Grid, base: &Map<String, Value>, seed: u64, prefix: &str) -> Vec<Value> {
    let points = points(&grid.axes);
    let count = points.len() as u64 * grid.replicas;
    let seeds = task_seeds(seed, count);
    let width = count.to_string().len().max(3);
    let mut tasks = Vec::with_capacity(count as usize);
    for point in &points {
        for replica in 1..=grid.replicas {
            let i = tasks.len();
            let mut task = Map::new();
            task.insert(
                "task_id".into(),
                Value::from(format!("{prefix}_{:0width$}", i + 1)),
            );
            for (k, v) in base {
                task.insert(k.clone(), v.clone());
            }
            for (name, value) in point {
                apply(&mut task, name, value);
            }
            apply(&mut task, "seed", &Value::from(seeds[i]));
            let mut description = point_text(point);
            if grid.replicas > 1 {
                if !description.is_empty() {
                    description.push_str(", ");
                }
                description.push_str(&format!("replica {replica}/{}", grid.replicas));
            }
            if description.is_empty() {
                description = "study task".into();
            }
            task.insert("description".into(), Value::from(description));
            if let Some(study) = base.get("study") {
                // after the description, as `Task::to_json` orders it
                task.shift_remove("study");
                task.insert("study".into(), study.clone());
            }
            tasks.push(Value::Object(task));
        }
    }
    tasks
}

/// What the validator says about `name` = `value` itself (not about the
/// other parameters, nor the combination), put into `base`.
pub fn own_problems(
    validator: &Validator,
    base: &Map<String, Value>,
    name: &str,
    value: &Value,
) -> Option<String> {
    let mut task = base.clone();
    task.insert("task_id".into(), Value::from("probe"));
    // required sizes not chosen yet: a size every accepted density and
    // cut-off fits, so that the value's own range is what is checked
    for (required, probe) in [("num_particles", 10_000u64), ("num_steps", 0)] {
        if let Some(Value::Object(params)) = task.get_mut("parameters") {
            params.entry(required).or_insert(Value::from(probe));
        }
    }
    apply(&mut task, name, value);
    apply(&mut task, "seed", &Value::from(0u64));
    let errors = validator.task(&Value::Object(task), "").err()?;
    let own: Vec<String> = errors
        .iter()
        .filter(|e| e.path == name || e.path == format!("parameters.{name}"))
        .map(|e| e.message.clone())
        .collect();
    (!own.is_empty()).then(|| own.join("; "))
}

/// Every value of every axis and set, each on its own against the
/// validator's ranges (problems of that parameter only), then every task of
/// the grid as a whole: `Err` names the flag and the value, or the grid
/// points refused (the first five).
pub fn check(
    validator: &Validator,
    grid: &Grid,
    sets: &[(String, Value)],
    base: &Map<String, Value>,
    tasks: &[Value],
) -> Result<(), String> {
    let own_problems = |name: &str, value: &Value| own_problems(validator, base, name, value);
    for (name, value) in sets {
        if let Some(e) = own_problems(name, value) {
            return Err(format!("--set {name}={value}: {e}"));
        }
    }
    for axis in &grid.axes {
        for value in &axis.values {
            if let Some(e) = own_problems(&axis.name, value) {
                return Err(format!("--grid {}: the value {value}: {e}", axis.name));
            }
        }
    }
    let mut refused = Vec::new();
    let mut count = 0usize;
    for (i, task) in tasks.iter().enumerate() {
        if let Err(errors) = validator.task(task, &format!("tasks[{i}]")) {
            count += 1;
            if refused.len() < 5 {
                let what = task
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let why = errors
                    .iter()
                    .map(|e| e.message.clone())
                    .collect::<Vec<_>>()
                    .join("; ");
                refused.push(format!("  {what}: {why}"));
            }
        }
    }
    if count > 0 {
        return Err(format!(
            "{count} of {} tasks of the grid would be refused by the orchestrator; nothing was written:\n{}",
            tasks.len(),
            refused.join("\n")
        ));
    }
    Ok(())
}

/// What a study plan needs that the flags left out: `num_particles` and
/// `num_steps` come from `--set`, `--grid`, or `--particles N` / `--steps N`.
pub fn missing(base: &Map<String, Value>, grid: &Grid) -> Option<String> {
    let params = base.get("parameters").and_then(Value::as_object);
    ["num_particles", "num_steps"]
        .into_iter()
        .find(|name| {
            params.is_none_or(|p| !p.contains_key(*name)) && !grid.axes.iter().any(|a| a.name == *name)
        })
        .map(|name| {
            format!(
                "{name} is not given: add --set {name}=N, --grid {name}=a,b,..., or --{} N",
                flag_of(name)
            )
        })
}

fn flag_of(name: &str) -> &'static str {
    if name == "num_particles" {
        "particles"
    } else {
        "steps"
    }
}
/// The plan of `--grid`/`--replicas`: `--particles`, `--steps`,
/// `--algorithm` and `--priority` give one value each (or are swept).
pub fn plan_from_flags(
    args: &GenArgs,
    study: Option<String>,
    mut sets: Vec<(String, Value)>,
) -> Result<Plan, String> {
    let flag = if args.grid.is_empty() {
        "--replicas"
    } else {
        "--grid"
    };
    if args.count.is_some() {
        return Err(format!(
            "--count cannot be used with {flag}: the file holds exactly one task per grid point and \
             replica; leave --count out"
        ));
    }
    let mut axes: Vec<Axis> = Vec::new();
    for g in &args.grid {
        let axis = parse_axis(g).map_err(|e| format!("--grid: {e}"))?;
        if axes.iter().any(|a| a.name == axis.name) {
            return Err(format!(
                "--grid: {} is swept twice; give all its values in one --grid",
                axis.name
            ));
        }
        if sets.iter().any(|(n, _)| *n == axis.name) {
            return Err(format!(
                "{} is both swept (--grid) and fixed (--set); keep one",
                axis.name
            ));
        }
        axes.push(axis);
    }
    let replicas = args.replicas.unwrap_or(1);
    if !(1..=MAX_REPLICAS).contains(&replicas) {
        return Err(format!(
            "--replicas: expected a whole number from 1 to {}, found {replicas}",
            MAX_REPLICAS
        ));
    }
    // -n N and -s N are fixed values, like --set
    for (flag, name, given) in [
        ("--particles", "num_particles", &args.particles),
        ("--steps", "num_steps", &args.steps),
    ] {
        let Some(text) = given else { continue };
        let r = parse_range(text).map_err(|e| format!("{flag}: {e}"))?;
        if r.min != r.max {
            return Err(format!(
                "{flag}: with {flag_kind} it takes one value, found {r}; to sweep it use --grid {name}=a,b,...",
                flag_kind = flag_of_study(args)
            ));
        }
        let taken = sets.iter().any(|(n, _)| n == name) || axes.iter().any(|a| a.name == name);
        if !taken {
            sets.push((name.to_string(), Value::from(r.min)));
        }
    }
    let single = |flag: &str, given: &Option<String>, default: &str| -> Result<String, String> {
        let text = given.clone().unwrap_or_else(|| default.to_string());
        if text.contains(',') || text.trim() == "mix" {
            return Err(format!(
                "{flag}: with {} it takes one value, found {text:?}; to sweep it use --grid",
                flag_of_study(args)
            ));
        }
        Ok(text.trim().to_string())
    };
    let algorithms = parse_algorithms(&single("--algorithm", &args.algorithm, STUDY_ALGORITHM)?)
        .map_err(|e| format!("--algorithm: {e}"))?;
    let priorities = parse_priorities(&single("--priority", &args.priority, Priority::Medium.as_str())?)
        .map_err(|e| format!("--priority: {e}"))?;
    let grid = Grid { axes, replicas };
    let count = grid
        .task_count()
        .filter(|n| *n <= MAX_COUNT)
        .ok_or_else(|| format!("{flag}: the grid has more than {MAX_COUNT} tasks; sweep fewer values"))?;
    let prefix = match &args.prefix {
        Some(p) => parse_prefix(p).map_err(|e| format!("--prefix: {e}"))?,
        None => batch_prefix(&Utc::now()),
    };
    let plan = Plan {
        count,
        algorithms,
        particles: Range { min: 0, max: 0 },
        steps: Range { min: 0, max: 0 },
        priorities,
        seed: args.seed.unwrap_or_else(random_seed),
        description: args.description.clone().unwrap_or_else(|| match &study {
            Some(s) => format!("Study {s}"),
            None => super::gen::DEFAULT_DESCRIPTION.to_string(),
        }),
        prefix,
        study,
        sets,
        grid: Some(grid),
    };
    if let Some(e) = missing(&study_base(&plan), plan.grid.as_ref().expect("set above")) {
        return Err(e);
    }
    Ok(plan)
}

/// The flag that made a plan a study, for messages.
fn flag_of_study(args: &GenArgs) -> &'static str {
    if args.grid.is_empty() {
        "--replicas"
    } else {
        "--grid"
    }
}

#[cfg(test)]
#[path = "gen_study_tests.rs"]
mod tests;
