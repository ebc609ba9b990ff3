//! The task file's format, defined once: [`TaskFile`] and the types below
//! it carry the fields, which are required, their types and [`Priority`]
//! itself; `schemars` derives the JSON Schema (draft-07, what editors
//! validate with) from them, with the numbers from the validator's
//! constants (algorithm names from the kernel registry, defaults and
//! limits from [`crate::sim`]). The validator reads files by hand (it
//! lists every problem at once); a test reads every file it accepts into
//! these types, and refuses with them what it refuses, so the two cannot
//! drift. `orquesta schema` prints the schema.

use schemars::generate::SchemaSettings;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::model::study::{MAX_STUDY_LEN, STUDY_PATTERN, STUDY_RULE};
use crate::model::{Priority, Validator, MAX_TASK_ID_LEN};
use crate::sim::{system, Limits};

/// Where the checked-in copy of the schema lives, relative to the repository.
pub const SCHEMA_PATH: &str = "schema/task_file.schema.json";

/// A task file: what the schema describes. Read by serde only in tests
/// (the validator reads the real files, listing every problem).
#[derive(Deserialize, JsonSchema)]
#[schemars(title = "Orquesta task file", description = file_description())]
#[allow(dead_code, reason = "the schema is their use; serde reads them in tests only")]
pub struct TaskFile {
    #[schemars(description = "Optional; every field is optional and kept as written.")]
    metadata: Option<Metadata>,
    #[schemars(
        description = "At least one task; every task_id unique (in the file and among every task the orchestrator knows).",
        length(min = 1)
    )]
    tasks: Vec<TaskEntry>,
}

/// A file's `metadata`.
#[derive(Deserialize, JsonSchema)]
#[schemars(inline)]
#[allow(dead_code, reason = "the schema is their use; serde reads them in tests only")]
pub struct Metadata {
    #[schemars(example = &"2024-01-15")]
    creation_date: Option<String>,
    description: Option<String>,
    #[schemars(description = "The number of tasks; a different count is a warning, not an error.")]
    total_tasks: Option<u64>,
    #[schemars(example = &"Manual Task Generator", example = &"orquesta gen")]
    created_by: Option<String>,
}

/// One task; fields other than these are kept and given back with it.
#[derive(Deserialize, JsonSchema)]
#[schemars(rename = "task")]
#[allow(dead_code, reason = "the schema is their use; serde reads them in tests only")]
pub struct TaskEntry {
    #[schemars(
        description = task_id_description(),
        length(min = 1, max = MAX_TASK_ID_LEN),
        regex(pattern = task_id_pattern()),
        extend("not" = {"enum": [".", ".."]}),
        example = &"task_001"
    )]
    task_id: String,
    #[schemars(schema_with = "algorithm_schema")]
    algorithm: String,
    parameters: Parameters,
    #[serde(default)]
    #[schemars(
        description = "Tasks leave the queue high first, then medium, then low; first in, first out within one."
    )]
    priority: Priority,
    description: Option<String>,
    #[schemars(
        description = study_description(),
        length(min = 1, max = MAX_STUDY_LEN),
        regex(pattern = STUDY_PATTERN),
        example = &"rho-sweep"
    )]
    study: Option<String>,
    #[schemars(
        description = "false: run this task even when a completed task of the same kernel (and kernel version), \
                       effective parameters and seed has its result stored; by default such a task is answered from \
                       that result at once, with `reused_from` naming it.",
        example = &false
    )]
    reuse: Option<bool>,
}

/// A task's `parameters`: the simulation's, with the validator's limits.
#[derive(Deserialize, JsonSchema)]
#[schemars(rename = "parameters", transform = small_box_needs_more_particles)]
#[allow(dead_code, reason = "the schema is their use; serde reads them in tests only")]
pub struct Parameters {
    #[schemars(
        description = num_particles_description(),
        range(min = 2, max = Limits::default().max_particles)
    )]
    num_particles: u64,
    #[schemars(description = num_steps_description())]
    num_steps: u64,
    #[schemars(
        description = "Seed of the initial velocities (SplitMix64).",
        range(max = u64::MAX)
    )]
    seed: u64,
    #[serde(default = "default_density")]
    #[schemars(
        description = ranged(system::DENSITY_RANGE, "Reduced density ρ."),
        range(min = system::DENSITY_RANGE.min, max = system::DENSITY_RANGE.max)
    )]
    density: f64,
    #[serde(default = "default_temperature")]
    #[schemars(
        description = ranged(system::TEMPERATURE_RANGE, "Initial temperature T0."),
        range(min = system::TEMPERATURE_RANGE.min, max = system::TEMPERATURE_RANGE.max)
    )]
    temperature: f64,
    #[serde(default = "default_dt")]
    #[schemars(
        description = ranged(system::DT_RANGE, "Time step."),
        range(min = system::DT_RANGE.min, max = system::DT_RANGE.max)
    )]
    dt: f64,
    #[serde(default = "default_cutoff")]
    #[schemars(
        description = ranged(system::CUTOFF_RANGE, "Cut-off radius rc."),
        range(min = system::CUTOFF_RANGE.min, max = system::CUTOFF_RANGE.max)
    )]
    cutoff: f64,
    #[schemars(description = thermo_every_description(), range(min = 1))]
    thermo_every: Option<u64>,
}

fn thermo_every_description() -> String {
    format!(
        "Optional: steps between two rows of metrics.thermo (temperature, energies per particle, \
         pressure) from step 0, and their means and standard errors over the second half of the run in \
         metrics.averages. At most {} rows: num_steps / thermo_every + 1 ≤ {}.",
        crate::sim::MAX_THERMO_ROWS,
        crate::sim::MAX_THERMO_ROWS
    )
}

fn default_density() -> f64 {
    system::DEFAULT_DENSITY
}

fn default_temperature() -> f64 {
    system::DEFAULT_TEMPERATURE
}

fn default_dt() -> f64 {
    system::DEFAULT_DT
}

fn default_cutoff() -> f64 {
    system::DEFAULT_CUTOFF
}

fn file_description() -> String {
    format!(
        "A batch of particle-simulation tasks, dropped into task_queues/ or sent with POST /tasks \
         (the seed's format). Generated by `orquesta schema` from the task file's types and the \
         validator's constants; do not edit {SCHEMA_PATH} by hand. `orquesta validate FILE` checks \
         everything this schema cannot (duplicate ids, the cost of each run)."
    )
}

fn task_id_description() -> String {
    format!("1 to {MAX_TASK_ID_LEN} letters, digits, '.', '_', '-' or ':'; not \".\" or \"..\".")
}

fn study_description() -> String {
    format!(
        "The study this task belongs to ({STUDY_RULE}): kept with the task, returned by GET /tasks/{{id}}, \
         written in its result, and the filter of `orquesta results export --study`."
    )
}

fn task_id_pattern() -> String {
    format!("^[A-Za-z0-9._:-]{{1,{MAX_TASK_ID_LEN}}}$")
}

/// The kernel names the registry holds (a list known only at run time).
fn algorithm_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "The kernel: reference (python) checks every pair, optimized (cython) uses cell and Verlet lists.",
        "type": "string",
        "enum": crate::sim::algorithm_names()
    })
}

/// The fewest particles whose box holds twice the cut-off at the default
/// density and cut-off (the validator's rule, probed).
fn min_particles() -> u64 {
    Validator::standard().min_particles()
}

fn num_particles_description() -> String {
    format!(
        "Particles N. The box side sqrt(N / density) must be at least 2 × cutoff: \
         N ≥ {} at the default density {} and cut-off {}.",
        min_particles(),
        system::DEFAULT_DENSITY,
        system::DEFAULT_CUTOFF
    )
}

fn num_steps_description() -> String {
    format!(
        "Time steps (0 gives the initial state); num_particles × num_steps at most {:e}.",
        Limits::default().max_particle_steps
    )
}

/// An optional physical parameter's description: what it is, its range.
fn ranged(range: system::ParamRange, what: &str) -> String {
    format!(
        "{what} {}, in reduced units.",
        range.describe().replacen('a', "A", 1)
    )
}

/// Without a density or cut-off given, the defaults set the least N.
fn small_box_needs_more_particles(schema: &mut Schema) {
    schema.insert(
        "if".into(),
        json!({"not": {"anyOf": [{"required": ["density"]}, {"required": ["cutoff"]}]}}),
    );
    schema.insert(
        "then".into(),
        json!({"properties": {"num_particles": {"minimum": min_particles()}}}),
    );
}

/// The schema as a JSON value, what it is and what it describes first.
pub fn task_file_schema() -> Value {
    let schema = SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<TaskFile>()
        .to_value();
    let Value::Object(mut fields) = schema else {
        unreachable!("a struct's schema is an object")
    };
    let mut ordered = serde_json::Map::new();
    for key in ["$schema", "title", "description"] {
        if let Some(v) = fields.shift_remove(key) {
            ordered.insert(key.into(), v);
        }
    }
    ordered.extend(fields);
    Value::Object(ordered)
}
