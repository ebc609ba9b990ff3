//! `orquesta schema`: the JSON Schema of a task file, derived from the
//! format's types in [`crate::model::taskfile::format`]; the copy in
//! `schema/task_file.schema.json` is checked against it by a test, and
//! the tests here hold the schema to the validator.

pub use crate::model::taskfile::format::{task_file_schema, SCHEMA_PATH};

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
    use serde_json::json;

    use super::*;
    use crate::cli::gen;
    use crate::model::task::TASK_FIELDS;
    use crate::model::taskfile::format::TaskFile;
    use crate::model::taskfile::parse_bytes;
    use crate::model::Validator;

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
        // and `reuse`, checked by it but kept with the unknown fields (the
        // store reads it from the task's body)
        let mut expected = TASK_FIELDS.to_vec();
        expected.push("reuse");
        assert_eq!(fields, expected);
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
