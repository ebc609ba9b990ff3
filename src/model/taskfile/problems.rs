//! The problems a task file can have, each worded once: what was expected,
//! what was found, and how to fix it (the builders of [`FieldError`]s the
//! reader in `mod.rs` collects), and the checks of `metadata`.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::strict_json::StrictError;
use super::{duplicate_key, MAX_TASK_BYTES};
use crate::model::{describe, FieldError};

/// The problem of a file whose `tasks` array is empty.
pub(super) fn empty_list() -> FieldError {
    FieldError::new("tasks", "the array is empty: a task file needs at least one task")
}

/// The problem of a task whose id an earlier task has.
pub(super) fn duplicate_id(path: &str, id: &str, array: &str, first: usize) -> FieldError {
    FieldError::new(
        format!("{path}.task_id"),
        format!("duplicate id {id:?}, also used by {array}[{first}]: every task_id must be unique"),
    )
}

/// The problem of a value that could not be read strictly.
pub(super) fn strict_problem(e: StrictError, path: &str) -> FieldError {
    match e {
        StrictError::Duplicate(d) => duplicate_key(&d),
        StrictError::Json(e) => FieldError::new(path, format!("malformed JSON: {e}")),
    }
}

/// The task's id read without parsing the rest (for a task too large to
/// parse), if it has a usable one.
pub(super) fn peek_id(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Peek {
        task_id: Option<String>,
    }
    serde_json::from_str::<Peek>(text).ok()?.task_id
}

pub(super) fn too_big(path: &str, id: Option<&str>, bytes: usize) -> FieldError {
    let which = id.map_or("this task".to_string(), |id| format!("task {id:?}"));
    FieldError::new(
        path,
        format!(
            "{which} is {bytes} bytes of JSON, more than the limit of {MAX_TASK_BYTES} bytes for one task \
             (what a worker accepts); a task is normally a few hundred bytes: move large data out of the task"
        ),
    )
}

/// A wrong `metadata.total_tasks` (it does not refuse the file).
pub(super) fn total_tasks_warning(metadata: Option<&Map<String, Value>>, count: usize) -> Option<String> {
    let total = metadata?.get("total_tasks")?.as_u64()?;
    (total as usize != count).then(|| {
        format!("metadata.total_tasks says {total} but the file holds {count} tasks; all {count} are queued")
    })
}

pub(super) fn check_metadata(m: &Map<String, Value>, problems: &mut Vec<FieldError>) {
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
