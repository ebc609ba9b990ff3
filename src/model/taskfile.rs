//! Task files in the seed's format (`metadata` + `tasks`), read and
//! validated all-or-nothing: either every task is good, or the file is
//! refused with every problem listed (path in the JSON, what was expected,
//! what was found). Used by the FileWatcher, `POST /tasks` and
//! `orquesta validate`.

use std::collections::HashMap;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::model::{describe, FieldError, Task, Validator};

/// Deepest nesting accepted before parsing (serde_json stops at 128 on its
/// own; this gives a clearer message, earlier).
const MAX_DEPTH: usize = 64;

/// A validated batch of tasks and the file's metadata.
#[derive(Debug, Clone)]
pub struct TaskBatch {
    pub metadata: Option<Map<String, Value>>,
    pub tasks: Vec<Task>,
    /// Problems that do not refuse the file (e.g. a wrong `total_tasks`).
    pub warnings: Vec<String>,
}

/// Why a batch was refused: every problem found.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub problems: Vec<FieldError>,
    /// The JSON ends early: the file may still be being written.
    pub incomplete: bool,
}

impl Rejection {
    pub fn one(path: &str, message: impl Into<String>) -> Self {
        Self {
            problems: vec![FieldError::new(path, message)],
            incomplete: false,
        }
    }

    pub fn many(problems: Vec<FieldError>) -> Self {
        Self {
            problems,
            incomplete: false,
        }
    }

    /// The report written beside a rejected file.
    pub fn report(&self, name: &str) -> String {
        let mut out = format!(
            "{name} was rejected: {} problem{} found. Nothing in it was queued.\n\
             Fix every problem below and drop the file into task_queues/ again.\n\n",
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        );
        for p in &self.problems {
            out.push_str(&format!("- {p}\n"));
        }
        out.push_str(
            "\nThe expected shape:\n{\n  \"metadata\": {\"description\": \"...\", \"total_tasks\": 1},\n  \"tasks\": [\n    \
             {\"task_id\": \"task_001\", \"algorithm\": \"python\",\n     \"parameters\": {\"num_particles\": 100, \
             \"num_steps\": 500, \"seed\": 123},\n     \"priority\": \"high\"}\n  ]\n}\n",
        );
        out
    }

    pub fn summary(&self) -> String {
        let shown: Vec<String> = self.problems.iter().take(5).map(|p| p.to_string()).collect();
        let more = self.problems.len().saturating_sub(5);
        if more > 0 {
            format!("{} (and {more} more)", shown.join("; "))
        } else {
            shown.join("; ")
        }
    }
}

/// Hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Nesting depth of JSON text, counted on brackets outside strings.
fn nesting_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Parses and validates the bytes of a task file.
pub fn parse_bytes(bytes: &[u8], validator: &Validator) -> Result<TaskBatch, Rejection> {
    // editors on Windows start UTF-8 files with a byte order mark
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Rejection::one(
            "",
            "the file is empty: expected a JSON object with a \"tasks\" array",
        ));
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(Rejection::one(
            "",
            format!(
                "the file is not valid UTF-8 (bad byte at offset {}): save it as UTF-8",
                e.valid_up_to()
            ),
        ));
    }
    if nesting_depth(bytes) > MAX_DEPTH {
        return Err(Rejection::one(
            "",
            format!("the JSON is nested more than {MAX_DEPTH} levels deep; a task file needs 4"),
        ));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        let hint = if e.is_eof() {
            " (the file ends too early: is it still being written, or truncated?)"
        } else {
            ""
        };
        let mut r = Rejection::one(
            "",
            format!(
                "malformed JSON at line {}, column {}: {e}{hint}",
                e.line(),
                e.column()
            ),
        );
        r.incomplete = e.is_eof();
        r
    })?;
    parse_value(&value, validator)
}

/// Validates a parsed task file (or a `POST /tasks` body).
pub fn parse_value(value: &Value, validator: &Validator) -> Result<TaskBatch, Rejection> {
    let Some(obj) = value.as_object() else {
        return Err(Rejection::one(
            "",
            format!(
                "expected a JSON object with a \"tasks\" array, found {}",
                describe(value)
            ),
        ));
    };
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let metadata = match obj.get("metadata") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => {
            check_metadata(m, &mut problems);
            Some(m.clone())
        }
        Some(other) => {
            problems.push(FieldError::new(
                "metadata",
                format!("expected an object, found {}", describe(other)),
            ));
            None
        }
    };
    let Some(tasks_value) = obj.get("tasks") else {
        problems.push(FieldError::new(
            "tasks",
            "required: an array of task objects (task_id, algorithm, parameters)",
        ));
        return Err(Rejection::many(problems));
    };
    let Some(list) = tasks_value.as_array() else {
        problems.push(FieldError::new(
            "tasks",
            format!(
                "expected an array of task objects, found {}",
                describe(tasks_value)
            ),
        ));
        return Err(Rejection::many(problems));
    };
    if list.is_empty() {
        problems.push(FieldError::new(
            "tasks",
            "the array is empty: a task file needs at least one task",
        ));
        return Err(Rejection::many(problems));
    }
    let mut tasks = Vec::with_capacity(list.len());
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let path = format!("tasks[{i}]");
        if let Some(id) = t.get("task_id").and_then(Value::as_str) {
            if let Some(first) = seen.insert(id, i) {
                problems.push(FieldError::new(
                    format!("{path}.task_id"),
                    format!("duplicate id {id:?}, also used by tasks[{first}]: every task_id must be unique"),
                ));
            }
        }
        match validator.task(t, &path) {
            Ok(task) => tasks.push(task),
            Err(errors) => problems.extend(errors),
        }
    }
    if !problems.is_empty() {
        return Err(Rejection::many(problems));
    }
    if let Some(total) = metadata
        .as_ref()
        .and_then(|m| m.get("total_tasks"))
        .and_then(Value::as_u64)
    {
        if total as usize != tasks.len() {
            warnings.push(format!(
                "metadata.total_tasks says {total} but the file holds {} tasks; all {} are queued",
                tasks.len(),
                tasks.len()
            ));
        }
    }
    Ok(TaskBatch {
        metadata,
        tasks,
        warnings,
    })
}

fn check_metadata(m: &Map<String, Value>, problems: &mut Vec<FieldError>) {
    for field in ["creation_date", "description", "created_by"] {
        if let Some(v) = m.get(field) {
            if !v.is_string() && !v.is_null() {
                problems.push(FieldError::new(
                    format!("metadata.{field}"),
                    format!("expected a string, found {}", describe(v)),
                ));
            }
        }
    }
    if let Some(v) = m.get("total_tasks") {
        if !v.is_u64() && !v.is_null() {
            problems.push(FieldError::new(
                "metadata.total_tasks",
                format!("expected a whole number, found {}", describe(v)),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn validator() -> Validator {
        Validator::standard()
    }

    fn task(id: &str) -> Value {
        json!({"task_id": id, "algorithm": "python",
               "parameters": {"num_particles": 100, "num_steps": 10, "seed": 1}})
    }

    fn problems(bytes: &[u8]) -> Vec<String> {
        parse_bytes(bytes, &validator())
            .unwrap_err()
            .problems
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn a_good_file_with_a_wrong_total_is_a_warning() {
        let file =
            json!({"metadata": {"total_tasks": 5, "created_by": "me"}, "tasks": [task("a"), task("b")]});
        let batch = parse_bytes(file.to_string().as_bytes(), &validator()).unwrap();
        assert_eq!(batch.tasks.len(), 2);
        assert_eq!(batch.warnings.len(), 1);
        assert_eq!(batch.metadata.unwrap()["created_by"], "me");
    }

    #[test]
    fn every_problem_is_listed_with_its_path() {
        let file = json!({"metadata": {"total_tasks": "two"},
            "tasks": [task("a"), task("a"), {"task_id": "c", "algorithm": "java"}]});
        let p = problems(file.to_string().as_bytes());
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p[0].starts_with("metadata.total_tasks: expected a whole number"));
        assert!(p[1].starts_with("tasks[1].task_id: duplicate id \"a\", also used by tasks[0]"));
        assert!(p[2].starts_with("tasks[2].algorithm: expected one of"));
        // the parameters are checked too, whatever the algorithm
        assert!(p[3].starts_with("tasks[2].parameters: required"));
    }

    #[test]
    fn shapes_that_are_not_task_files() {
        assert!(problems(b"")[0].contains("empty"));
        assert!(problems(b"{\"tasks\": [")[0].contains("ends too early"));
        assert!(problems(b"[]")[0].contains("expected a JSON object"));
        assert!(problems(b"{}")[0].starts_with("tasks: required"));
        assert!(problems(b"{\"tasks\": {}}")[0].starts_with("tasks: expected an array"));
        assert!(problems(b"{\"tasks\": []}")[0].contains("empty"));
        assert!(problems(&[b'{', 0xff, b'}'])[0].contains("UTF-8"));
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(problems(deep.as_bytes())[0].contains("nested"));
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        let mut bytes = b"\xef\xbb\xbf".to_vec();
        bytes.extend_from_slice(json!({"tasks": [task("a")]}).to_string().as_bytes());
        assert_eq!(parse_bytes(&bytes, &validator()).unwrap().tasks.len(), 1);
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config { cases: 2000, ..Default::default() })]

        /// No input, however broken, makes the parser panic.
        #[test]
        fn any_bytes_are_answered_without_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse_bytes(&bytes, &validator());
        }

        /// Text that is nearly a task file: a valid file with one byte
        /// changed, cut, or spliced.
        #[test]
        fn mangled_task_files_are_answered_without_panic(
            at in 0usize..400,
            byte in proptest::num::u8::ANY,
            cut in 0usize..400,
        ) {
            let good = json!({"metadata": {"total_tasks": 2}, "tasks": [task("a"),
                {"task_id": "b", "algorithm": "cython", "priority": "low",
                 "parameters": {"num_particles": 400, "num_steps": 10, "seed": 18446744073709551615u64, "dt": 0.001}}]})
                .to_string()
                .into_bytes();
            let mut changed = good.clone();
            let i = at % changed.len();
            changed[i] = byte;
            let _ = parse_bytes(&changed, &validator());
            let _ = parse_bytes(&good[..cut.min(good.len())], &validator());
            let mut spliced = good[..i].to_vec();
            spliced.extend_from_slice(&good[cut.min(good.len())..]);
            let _ = parse_bytes(&spliced, &validator());
        }

        /// Any JSON value where a task file, a task or its parameters go.
        #[test]
        fn any_json_is_answered_without_panic(v in json_value()) {
            let _ = parse_value(&v, &validator());
            let _ = parse_value(&json!({"tasks": [v.clone()]}), &validator());
            let _ = parse_value(&json!({"tasks": [{"task_id": "t", "algorithm": "python", "parameters": v.clone()}]}), &validator());
            let _ = parse_value(&json!({"metadata": v, "tasks": [task("t")]}), &validator());
        }
    }

    /// Arbitrary JSON, nested a few levels, with the values that matter to
    /// a validator (negative, huge, fractional, non-ASCII, empty).
    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            any::<u64>().prop_map(|u| json!(u)),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            ".{0,12}".prop_map(Value::String),
            prop_oneof![
                Just("python"),
                Just("cython"),
                Just("high"),
                Just("task_1"),
                Just("__sleep")
            ]
            .prop_map(|s| Value::String(s.into())),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("task_id".to_string()),
                        Just("algorithm".to_string()),
                        Just("parameters".to_string()),
                        Just("num_particles".to_string()),
                        Just("num_steps".to_string()),
                        Just("seed".to_string()),
                        Just("priority".to_string()),
                        Just("tasks".to_string()),
                        "[a-z]{1,6}",
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn sha256_of_known_text() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
