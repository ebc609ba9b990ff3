//! The JSON Schema of a task file (draft-07, what editors validate with),
//! derived by `schemars` from [`TaskFile`] and the types below it: the
//! fields, which are required, their types, and [`Priority`] itself; the
//! numbers come from the validator's constants (algorithm names from the
//! kernel registry, defaults and limits from [`crate::sim`]). A test reads
//! every file the validator accepts into these types, so the two cannot
//! drift. `orquesta schema` prints it; the copy in
//! `schema/task_file.schema.json` is checked against it by a test.

use schemars::generate::SchemaSettings;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::model::study::{MAX_STUDY_LEN, STUDY_PATTERN, STUDY_RULE};
use crate::model::{Priority, Validator, MAX_TASK_ID_LEN};
use crate::sim::{system, Limits};

/// Where the checked-in copy lives, relative to the repository.
pub const SCHEMA_PATH: &str = "schema/task_file.schema.json";

/// A task file: what the schema describes. Read by serde only in tests
/// (the validator reads the real files, listing every problem).
#[derive(Deserialize, JsonSchema)]
#[schemars(title = "Orquesta task file", description = file_description())]
#[allow(dead_code, reason = "the schema is their use; serde reads them in tests only")]
struct TaskFile {
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
struct Metadata {
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
struct TaskEntry {
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
}

/// A task's `parameters`: the simulation's, with the validator's limits.
#[derive(Deserialize, JsonSchema)]
#[schemars(rename = "parameters", transform = small_box_needs_more_particles)]
#[allow(dead_code, reason = "the schema is their use; serde reads them in tests only")]
struct Parameters {
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
    super::gen::min_particles(&Validator::standard())
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

/// The schema as the text of the checked-in file.
pub fn task_file_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&task_file_schema()).expect("a JSON value always serialises");
    text.push('\n');
    text
}

/// `orquesta schema`.
pub fn run() -> std::process::ExitCode {
    super::table::print_text(&task_file_schema_text());
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::gen;
    use crate::model::task::TASK_FIELDS;
    use crate::model::taskfile::parse_bytes;

    #[test]
    fn the_checked_in_schema_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/task_file.schema.json");
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == task_file_schema_text(),
            "{SCHEMA_PATH} is out of date: run `cargo run --release -- schema > {SCHEMA_PATH}` and commit it"
        );
    }

    #[test]
    fn the_schema_says_what_the_validator_says() {
        let s = task_file_schema();
        assert_eq!(
            s["definitions"]["parameters"]["then"]["properties"]["num_particles"]["minimum"],
            13
        );
        assert_eq!(
            s["definitions"]["task"]["properties"]["algorithm"]["enum"],
            json!(["reference", "optimized", "python", "cython"])
        );
        assert_eq!(s["required"], json!(["tasks"]));
        let dt = &s["definitions"]["parameters"]["properties"]["dt"];
        assert_eq!((&dt["minimum"], &dt["maximum"]), (&json!(1e-6), &json!(0.1)));
        // the task's fields are the ones the validator reads, the required
        // ones the ones it requires
        let task = &s["definitions"]["task"];
        let fields: Vec<&str> = task["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(fields, TASK_FIELDS);
        assert_eq!(task["required"], json!(["task_id", "algorithm", "parameters"]));
        assert_eq!(
            s["definitions"]["parameters"]["required"],
            json!(["num_particles", "num_steps", "seed"])
        );
        assert_eq!(
            task["properties"]["priority"]["enum"],
            json!(["high", "medium", "low"])
        );
        assert_eq!(task["properties"]["priority"]["default"], "medium");
    }

    /// Reads a file as the schema's types do (serde: types, required
    /// fields, priority names; not the numeric limits).
    fn fits_the_schema(bytes: &[u8]) -> Result<(), String> {
        serde_json::from_slice::<TaskFile>(bytes)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn every_file_the_validator_accepts_fits_the_schema() {
        let validator = Validator::standard();
        let example = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tareas_manuales_ejemplo.json"
        ))
        .unwrap();
        let plan = gen::Plan {
            count: 50,
            algorithms: gen::parse_algorithms("mix").unwrap(),
            particles: gen::parse_range("13..40").unwrap(),
            steps: gen::parse_range("0..5").unwrap(),
            priorities: gen::parse_priorities("mix").unwrap(),
            seed: 7,
            description: "d".into(),
            prefix: "t".into(),
            study: Some("rho-sweep".into()),
            sets: vec![("dt".into(), json!(0.002))],
            grid: None,
        };
        let generated = serde_json::to_vec(&gen::build(&plan, "2024-01-15")).unwrap();
        let minimal = br#"{"tasks": [{"task_id": "a", "algorithm": "python",
            "parameters": {"num_particles": 100, "num_steps": 1, "seed": 1},
            "description": null, "note": "kept"}], "metadata": null}"#;
        for file in [&example[..], &generated, minimal] {
            assert!(parse_bytes(file, &validator).is_ok());
            fits_the_schema(file).unwrap();
        }
        // and what it refuses for its shape, the schema refuses too
        for bad in [
            r#"{"tasks": [{"task_id": "a", "algorithm": "python", "parameters": {"num_particles": 100, "num_steps": 1}}]}"#,
            r#"{"tasks": [{"task_id": "a", "algorithm": "python", "priority": "urgent",
                "parameters": {"num_particles": 100, "num_steps": 1, "seed": 1}}]}"#,
            r#"{"tasks": [{"algorithm": "python", "parameters": {"num_particles": 100, "num_steps": 1, "seed": 1}}]}"#,
            r#"{"tasks": [{"task_id": "a", "algorithm": "python", "parameters": {"num_particles": -1, "num_steps": 1, "seed": 1}}]}"#,
            r#"{"metadata": {"total_tasks": "one"}, "tasks": []}"#,
            r#"{"metadata": {}}"#,
        ] {
            assert!(parse_bytes(bad.as_bytes(), &validator).is_err(), "{bad}");
            assert!(fits_the_schema(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
