//! Task files in the seed's format (`metadata` + `tasks`), read and
//! validated all-or-nothing: either every task is good, or the file is
//! refused with every problem listed (path in the JSON, what was expected,
//! what was found). Used by the FileWatcher, `POST /tasks` and
//! `orquesta validate`.
//!
//! # What one task may cost
//! A document is split at its outer level without parsing what lies below
//! ([`strict_json::split`]); each task is then checked for size before it
//! is parsed, alone. A task is at most [`MAX_TASK_BYTES`] (what a worker's
//! `/execute` accepts, so nothing is queued that could never be sent), and
//! the fields the validator does not know, which are kept and stored, at
//! most [`MAX_EXTRA_BYTES`]. A key named twice in one object is refused
//! ([`strict_json`]), where serde_json would keep the last silently.

use std::collections::HashMap;

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use problems::{
    check_metadata, duplicate_id, empty_list, peek_id, strict_problem, too_big, total_tasks_warning,
};

use super::strict_json::{self, Document, Duplicate, StrictError};
use crate::model::{describe, FieldError, Task, Validator};

/// Deepest nesting accepted before parsing (serde_json stops at 128 on its
/// own; this gives a clearer message, earlier).
const MAX_DEPTH: usize = 64;

/// Largest task, in bytes of JSON (as written, and as the orchestrator
/// stores and sends it): a worker's `/execute` body limit less room for
/// the attempt id the orchestrator adds. A task is normally a few hundred
/// bytes.
pub const MAX_TASK_BYTES: usize = (1 << 20) - EXECUTE_ENVELOPE_BYTES;

/// Room in an `/execute` body for what is not the task (`"attempt_id":N,`).
pub const EXECUTE_ENVELOPE_BYTES: usize = 1024;

/// Fields of a task other than `task_id`, `algorithm`, `parameters`,
/// `priority` and `description` are kept and stored with it: at most this
/// many bytes of them (keys and values as JSON).
pub const MAX_EXTRA_BYTES: usize = 8 << 10;

/// Largest `metadata` object of a file.
pub const MAX_METADATA_BYTES: usize = 64 << 10;

/// A validated batch of tasks and the file's metadata.
#[derive(Debug, Clone)]
pub struct TaskBatch {
    pub metadata: Option<Map<String, Value>>,
    pub tasks: Vec<Task>,
    /// Problems that do not refuse the file (e.g. a wrong `total_tasks`).
    pub warnings: Vec<String>,
}

/// Why a batch was refused: every problem found.
/// The most problems one `422` answer lists (`errors`); the rest are
/// counted (`errors_not_listed`).
pub const PROBLEMS_LISTED: usize = 100;

#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub problems: Vec<FieldError>,
    /// The JSON ends early: the file may still be being written.
    pub incomplete: bool,
    /// The text is not acceptable JSON (malformed, or a key named twice in
    /// one object), as opposed to JSON whose tasks break the rules.
    pub malformed: bool,
    /// What the report says after the problems, when the expected shape
    /// is not the help needed (ids that exist already: where their
    /// results are and how to run them again).
    pub advice: Option<String>,
}

impl Rejection {
    pub fn one(path: &str, message: impl Into<String>) -> Self {
        Self::many(vec![FieldError::new(path, message)])
    }

    pub fn many(problems: Vec<FieldError>) -> Self {
        Self {
            problems,
            incomplete: false,
            malformed: false,
            advice: None,
        }
    }

    fn malformed(mut self) -> Self {
        self.malformed = true;
        self
    }

    /// The problems an answer lists: each once, in order, at most
    /// [`PROBLEMS_LISTED`]; with how many more there are. A body of a
    /// hundred thousand bad tasks gets a short answer, not one as large
    /// as the body.
    pub fn listed(&self) -> (Vec<&FieldError>, usize) {
        let mut seen = std::collections::HashSet::new();
        let mut unique = self
            .problems
            .iter()
            .filter(|p| seen.insert((&p.path, &p.message)));
        let listed: Vec<&FieldError> = unique.by_ref().take(PROBLEMS_LISTED).collect();
        (listed, unique.count())
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
        if let Some(advice) = &self.advice {
            out.push('\n');
            out.push_str(advice);
            return out;
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
    match read_document(bytes, "the file")?.1 {
        Document::Object(fields) => batch_from_fields(fields, validator),
        Document::Array(_) => Err(Rejection::one(
            "",
            "expected a JSON object with a \"tasks\" array, found an array",
        )),
        Document::Scalar(v) => Err(Rejection::one(
            "",
            format!(
                "expected a JSON object with a \"tasks\" array, found {}",
                describe(&v)
            ),
        )),
    }
}

/// Parses and validates a `POST /tasks` body: one task object, an array of
/// tasks, or a whole task file. `malformed` is set on the rejection when
/// the body is not acceptable JSON (the API answers 400 then, 422 else).
pub fn parse_request(bytes: &[u8], validator: &Validator) -> Result<TaskBatch, Rejection> {
    let (text, document) = read_document(bytes, "the body")?;
    match document {
        Document::Object(fields) if fields.iter().any(|(k, _)| k == "tasks") => {
            batch_from_fields(fields, validator)
        }
        Document::Object(_) => {
            // one task: the whole body is its text (read already, so valid)
            let raw = serde_json::from_str::<&RawValue>(text)
                .map_err(|e| Rejection::one("", format!("malformed JSON: {e}")).malformed())?;
            batch_from_tasks(vec![raw], None, Vec::new(), validator, "")
        }
        Document::Array(list) => batch_from_tasks(list, None, Vec::new(), validator, "tasks"),
        Document::Scalar(v) => Err(Rejection::one(
            "",
            format!(
                "expected a task object, an array of tasks, or a task file, found {}",
                describe(&v)
            ),
        )),
    }
}

/// The checks before parsing (empty, UTF-8, depth), then the outer level;
/// the text (without a byte order mark) and its document.
fn read_document<'a>(bytes: &'a [u8], what: &str) -> Result<(&'a str, Document<'a>), Rejection> {
    // editors on Windows start UTF-8 files with a byte order mark
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Rejection::one(
            "",
            format!("{what} is empty: expected a JSON object with a \"tasks\" array"),
        )
        .malformed());
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Rejection::one(
            "",
            format!(
                "{what} is not valid UTF-8 (bad byte at offset {}): save it as UTF-8",
                e.valid_up_to()
            ),
        )
        .malformed()
    })?;
    if nesting_depth(bytes) > MAX_DEPTH {
        return Err(Rejection::one(
            "",
            format!("the JSON is nested more than {MAX_DEPTH} levels deep; a task file needs 4"),
        )
        .malformed());
    }
    let document = strict_json::split(text).map_err(|e| match e {
        StrictError::Duplicate(d) => Rejection::many(vec![duplicate_key(&d)]).malformed(),
        StrictError::Json(e) => {
            let hint = if e.is_eof() {
                format!(" ({what} ends too early: is it still being written, or truncated?)")
            } else {
                String::new()
            };
            let mut r = Rejection::one(
                "",
                format!(
                    "malformed JSON at line {}, column {}: {e}{hint}",
                    e.line(),
                    e.column()
                ),
            )
            .malformed();
            r.incomplete = e.is_eof();
            r
        }
    })?;
    Ok((text, document))
}

fn duplicate_key(d: &Duplicate) -> FieldError {
    FieldError::new(
        &d.path,
        format!(
            "duplicate key {:?}: a key may appear once in an object (JSON readers disagree on which \
             one counts); remove one of them",
            d.key
        ),
    )
}

/// A file's `metadata` object, if it has one.
type Metadata = Option<Map<String, Value>>;

/// A task file's outer object: `metadata` and `tasks`.
fn batch_from_fields(
    fields: Vec<(String, &RawValue)>,
    validator: &Validator,
) -> Result<TaskBatch, Rejection> {
    let mut problems = Vec::new();
    let Some((metadata, list)) = split_fields(fields, &mut problems) else {
        return Err(Rejection::many(problems));
    };
    batch_from_tasks(list, metadata, problems, validator, "tasks")
}

/// The `metadata` and the `tasks` list of a file's outer object, the
/// problems of `metadata` noted; `None` (with the problem noted) when
/// there is no `tasks` array.
fn split_fields<'a>(
    fields: Vec<(String, &'a RawValue)>,
    problems: &mut Vec<FieldError>,
) -> Option<(Metadata, Vec<&'a RawValue>)> {
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
    let metadata = match field("metadata") {
        None => None,
        Some(raw) if raw.get().len() > MAX_METADATA_BYTES => {
            problems.push(FieldError::new(
                "metadata",
                format!(
                    "{} bytes, more than the limit of {MAX_METADATA_BYTES}: metadata describes the file \
                     (description, total_tasks, created_by); keep data elsewhere",
                    raw.get().len()
                ),
            ));
            None
        }
        Some(raw) => match strict_json::parse(raw.get(), "metadata") {
            Ok(Value::Null) => None,
            Ok(Value::Object(m)) => {
                check_metadata(&m, problems);
                Some(m)
            }
            Ok(other) => {
                problems.push(FieldError::new(
                    "metadata",
                    format!("expected an object, found {}", describe(&other)),
                ));
                None
            }
            Err(e) => {
                problems.push(strict_problem(e, "metadata"));
                None
            }
        },
    };
    let Some(tasks_raw) = field("tasks") else {
        problems.push(FieldError::new(
            "tasks",
            "required: an array of task objects (task_id, algorithm, parameters)",
        ));
        return None;
    };
    let list = match tasks_raw.get().starts_with('[') {
        true => serde_json::from_str::<Vec<&RawValue>>(tasks_raw.get()).ok(),
        false => None,
    };
    let Some(list) = list else {
        problems.push(FieldError::new(
            "tasks",
            format!(
                "expected an array of task objects, found {}",
                strict_json::describe_raw(tasks_raw)
            ),
        ));
        return None;
    };
    Some((metadata, list))
}

/// Validates tasks given as raw text, one at a time; `array` names the list
/// in paths (`tasks` gives `tasks[3]`; "" for a body that is one task,
/// whose problems have paths of its own fields).
fn batch_from_tasks(
    list: Vec<&RawValue>,
    metadata: Option<Map<String, Value>>,
    mut problems: Vec<FieldError>,
    validator: &Validator,
    array: &str,
) -> Result<TaskBatch, Rejection> {
    if list.is_empty() {
        problems.push(empty_list());
        return Err(Rejection::many(problems));
    }
    let single = array.is_empty();
    let mut malformed = false;
    let mut tasks = Vec::with_capacity(list.len());
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(list.len());
    for (i, raw) in list.iter().enumerate() {
        let path = if single {
            String::new()
        } else {
            format!("{array}[{i}]")
        };
        let Some(value) = parse_one(raw.get(), &path, &mut problems, &mut malformed) else {
            continue;
        };
        if let Some(id) = value.get("task_id").and_then(Value::as_str) {
            if let Some(first) = seen.insert(id.to_string(), i) {
                problems.push(duplicate_id(&path, id, array, first));
            }
        }
        if let Some(task) = checked_task(&value, &path, validator, &mut problems) {
            tasks.push(task);
        }
    }
    finish(tasks, metadata, problems, malformed)
}

/// One task's raw text as a JSON value, or its problem noted (too big,
/// not JSON, a key given twice: `malformed`).
pub(super) fn parse_one(
    text: &str,
    path: &str,
    problems: &mut Vec<FieldError>,
    malformed: &mut bool,
) -> Option<Value> {
    if text.len() > MAX_TASK_BYTES {
        problems.push(too_big(path, peek_id(text).as_deref(), text.len()));
        return None;
    }
    match strict_json::parse(text, path) {
        Ok(v) => Some(v),
        Err(e) => {
            *malformed |= matches!(e, StrictError::Duplicate(_));
            problems.push(strict_problem(e, path));
            None
        }
    }
}

/// Validates one task and checks what it would cost to keep and to send.
fn checked_task(
    value: &Value,
    path: &str,
    validator: &Validator,
    problems: &mut Vec<FieldError>,
) -> Option<Task> {
    let task = match validator.task(value, path) {
        Ok(task) => task,
        Err(errors) => {
            problems.extend(errors);
            return None;
        }
    };
    let extra: usize = task
        .extra
        .iter()
        .map(|(k, v)| k.len() + v.to_string().len() + 4)
        .sum();
    if extra > MAX_EXTRA_BYTES {
        let names: Vec<&str> = task.extra.keys().take(5).map(String::as_str).collect();
        problems.push(FieldError::new(
            path,
            format!(
                "task {:?} has {extra} bytes of fields the validator does not know ({}{}), more than the \
                 limit of {MAX_EXTRA_BYTES} kept per task; remove them or shorten them",
                task.task_id.as_str(),
                names.join(", "),
                if task.extra.len() > names.len() {
                    ", …"
                } else {
                    ""
                }
            ),
        ));
        return None;
    }
    // as stored and sent: numbers may be written longer than they were
    let sent = task.to_json().to_string().len();
    if sent > MAX_TASK_BYTES {
        problems.push(too_big(path, Some(task.task_id.as_str()), sent));
        return None;
    }
    Some(task)
}

/// The batch, or every problem; the `total_tasks` warning.
fn finish(
    tasks: Vec<Task>,
    metadata: Option<Map<String, Value>>,
    problems: Vec<FieldError>,
    malformed: bool,
) -> Result<TaskBatch, Rejection> {
    if !problems.is_empty() {
        let mut r = Rejection::many(problems);
        r.malformed = malformed;
        return Err(r);
    }
    let warnings = total_tasks_warning(metadata.as_ref(), tasks.len())
        .into_iter()
        .collect();
    Ok(TaskBatch {
        metadata,
        tasks,
        warnings,
    })
}

/// Validates a task file already parsed (`orquesta gen` checks what it
/// built): the same rules as [`parse_bytes`] but duplicate keys, which a
/// `Value` can no longer hold.
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
        problems.push(empty_list());
        return Err(Rejection::many(problems));
    }
    let mut tasks = Vec::with_capacity(list.len());
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let path = format!("tasks[{i}]");
        if let Some(id) = t.get("task_id").and_then(Value::as_str) {
            if let Some(first) = seen.insert(id, i) {
                problems.push(duplicate_id(&path, id, "tasks", first));
            }
        }
        if let Some(task) = checked_task(t, &path, validator, &mut problems) {
            tasks.push(task);
        }
    }
    finish(tasks, metadata, problems, false)
}

pub mod format;
mod problems;
mod stream;
#[cfg(test)]
mod tests;

pub use stream::{stream_bytes, StreamError, Streamed};
