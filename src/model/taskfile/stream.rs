//! A task file read as a stream of checked chunks, for the drop folder:
//! the same rules and the same report as [`super::parse_bytes`], but the
//! tasks are handed on in chunks as they are checked and never held
//! all at once. A file of a million tasks is a million small parses, one
//! chunk of [`Task`]s, and one 64-bit hash per task id (to find ids used
//! twice) in memory; its text is read whole (at most
//! `TASK_FILE_MAX_BYTES`), never turned into one `Value`.
//!
//! A chunk is handed on only while every task so far is good: once a
//! problem is found, the rest of the file is still checked (every problem
//! is reported) but nothing more is handed on, and the caller must drop
//! what it was given (the file is refused whole).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{
    checked_task, duplicate_id, empty_list, parse_one, read_document, split_fields, total_tasks_warning,
    Rejection,
};
use crate::model::strict_json::{self, Document};
use crate::model::{describe, Task, Validator};

/// A file whose every task was good and handed on.
#[derive(Debug, Clone)]
pub struct Streamed {
    pub metadata: Option<Map<String, Value>>,
    /// Tasks handed on, in all.
    pub count: usize,
    /// Problems that do not refuse the file (e.g. a wrong `total_tasks`).
    pub warnings: Vec<String>,
}

/// Why a file was not read through.
#[derive(Debug)]
pub enum StreamError<E> {
    /// The file is refused: every problem found.
    Rejected(Rejection),
    /// The sink refused a chunk (the read stops there).
    Sink(E),
}

/// Reads and validates a task file, handing its good tasks to `sink` in
/// chunks of at most `chunk` tasks, in file order. See the module doc.
pub fn stream_bytes<E>(
    bytes: &[u8],
    validator: &Validator,
    chunk: usize,
    mut sink: impl FnMut(Vec<Task>) -> Result<(), E>,
) -> Result<Streamed, StreamError<E>> {
    let chunk = chunk.max(1);
    let fields = match read_document(bytes, "the file").map_err(StreamError::Rejected)?.1 {
        Document::Object(fields) => fields,
        Document::Array(_) => {
            return Err(StreamError::Rejected(Rejection::one(
                "",
                "expected a JSON object with a \"tasks\" array, found an array",
            )))
        }
        Document::Scalar(v) => {
            return Err(StreamError::Rejected(Rejection::one(
                "",
                format!(
                    "expected a JSON object with a \"tasks\" array, found {}",
                    describe(&v)
                ),
            )))
        }
    };
    let mut problems = Vec::new();
    let Some((metadata, list)) = split_fields(fields, &mut problems) else {
        return Err(StreamError::Rejected(Rejection::many(problems)));
    };
    if list.is_empty() {
        problems.push(empty_list());
        return Err(StreamError::Rejected(Rejection::many(problems)));
    }
    let mut ids = SeenIds::new(list.len());
    let mut malformed = false;
    let mut pending: Vec<Task> = Vec::with_capacity(chunk.min(list.len()));
    let mut count = 0;
    for (i, raw) in list.iter().enumerate() {
        let path = format!("tasks[{i}]");
        let Some(value) = parse_one(raw.get(), &path, &mut problems, &mut malformed) else {
            continue;
        };
        if let Some(id) = value.get("task_id").and_then(Value::as_str) {
            if let Some(first) = ids.insert(id, i, &list) {
                problems.push(duplicate_id(&path, id, "tasks", first));
            }
        }
        let task = checked_task(&value, &path, validator, &mut problems);
        if !problems.is_empty() {
            // refused whole: nothing more is handed on
            pending = Vec::new();
            continue;
        }
        pending.extend(task);
        if pending.len() >= chunk {
            count += pending.len();
            sink(std::mem::replace(&mut pending, Vec::with_capacity(chunk))).map_err(StreamError::Sink)?;
        }
    }
    if !problems.is_empty() {
        let mut r = Rejection::many(problems);
        r.malformed = malformed;
        return Err(StreamError::Rejected(r));
    }
    if !pending.is_empty() {
        count += pending.len();
        sink(pending).map_err(StreamError::Sink)?;
    }
    let warnings = total_tasks_warning(metadata.as_ref(), count)
        .into_iter()
        .collect();
    Ok(Streamed {
        metadata,
        count,
        warnings,
    })
}

/// Task ids seen so far, as 64-bit hashes with the index of the task that
/// used each (a tenth of the memory of the ids themselves). Two different
/// ids with one hash are told apart by reading the earlier id again from
/// the file's text; the later one is then kept by name.
struct SeenIds {
    hasher: RandomState,
    by_hash: HashMap<u64, u32>,
    /// Ids whose hash an earlier, different id has.
    collided: HashMap<String, usize>,
}

impl SeenIds {
    fn new(capacity: usize) -> Self {
        Self {
            hasher: RandomState::new(),
            by_hash: HashMap::with_capacity(capacity),
            collided: HashMap::new(),
        }
    }

    /// Notes that task `i` uses `id`; the index of an earlier task that
    /// used it too, if any.
    fn insert(&mut self, id: &str, i: usize, list: &[&RawValue]) -> Option<usize> {
        let hash = self.hasher.hash_one(id);
        let Some(&earlier) = self.by_hash.get(&hash) else {
            self.by_hash.insert(hash, i as u32);
            return None;
        };
        let earlier = earlier as usize;
        if id_of(list[earlier]).as_deref() == Some(id) {
            return Some(earlier);
        }
        match self.collided.get(id) {
            Some(&first) => Some(first),
            None => {
                self.collided.insert(id.to_string(), i);
                None
            }
        }
    }
}

/// A task's id read again from its text.
fn id_of(raw: &RawValue) -> Option<String> {
    strict_json::parse(raw.get(), "")
        .ok()?
        .get("task_id")?
        .as_str()
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::parse_bytes;
    use super::*;

    fn task(id: &str) -> Value {
        json!({"task_id": id, "algorithm": "python",
               "parameters": {"num_particles": 100, "num_steps": 10, "seed": 1}})
    }

    /// Streams `bytes` in chunks of `chunk`; the chunks' ids, and the outcome.
    fn streamed(bytes: &[u8], chunk: usize) -> (Vec<Vec<String>>, Result<Streamed, Rejection>) {
        let mut chunks = Vec::new();
        let out = stream_bytes(bytes, &Validator::standard(), chunk, |tasks: Vec<Task>| {
            chunks.push(tasks.iter().map(|t| t.task_id.to_string()).collect());
            Ok::<(), ()>(())
        });
        let out = out.map_err(|e| match e {
            StreamError::Rejected(r) => r,
            StreamError::Sink(()) => unreachable!("the sink never refuses here"),
        });
        (chunks, out)
    }

    #[test]
    fn good_tasks_come_in_bounded_chunks_in_file_order() {
        let ids: Vec<String> = (0..25).map(|i| format!("t{i:02}")).collect();
        let tasks: Vec<Value> = ids.iter().map(|id| task(id)).collect();
        let file = json!({"metadata": {"total_tasks": 24}, "tasks": tasks}).to_string();
        let (chunks, out) = streamed(file.as_bytes(), 10);
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
        assert_eq!(chunks.concat(), ids);
        let out = out.unwrap();
        assert_eq!(out.count, 25);
        // the same warning as a file read whole
        let whole = parse_bytes(file.as_bytes(), &Validator::standard()).unwrap();
        assert_eq!(out.warnings, whole.warnings);
    }

    #[test]
    fn a_bad_file_gets_the_same_report_as_when_read_whole() {
        let mut many: Vec<Value> = (0..30).map(|i| task(&format!("t{i}"))).collect();
        many[3]["parameters"]["num_particles"] = json!(-1);
        many.push(task("t7"));
        many.push(json!({"task_id": "x", "algorithm": "java"}));
        let bad = [
            json!({"metadata": {"total_tasks": "two"}, "tasks": many}).to_string(),
            json!({"tasks": []}).to_string(),
            json!({"tasks": {}}).to_string(),
            json!({"metadata": 3}).to_string(),
            json!([task("a")]).to_string(),
            r#"{"tasks": [{"task_id": "a", "task_id": "b"}]}"#.to_string(),
            r#"{"tasks": [{"task_id": "a""#.to_string(),
            "7".to_string(),
        ];
        for file in bad {
            let whole = parse_bytes(file.as_bytes(), &Validator::standard()).unwrap_err();
            let (_, out) = streamed(file.as_bytes(), 4);
            assert_eq!(out.unwrap_err(), whole, "{file}");
        }
    }

    #[test]
    fn nothing_is_handed_on_after_the_first_problem() {
        let mut tasks: Vec<Value> = (0..20).map(|i| task(&format!("t{i}"))).collect();
        // the id of task 1 again at 9: chunks of 4 stop before it
        tasks[9]["task_id"] = json!("t1");
        let file = json!({"tasks": tasks}).to_string();
        let (chunks, out) = streamed(file.as_bytes(), 4);
        assert_eq!(chunks.len(), 2, "only the chunks checked before the problem");
        let report = out.unwrap_err().problems[0].to_string();
        assert!(
            report.contains("tasks[9].task_id") && report.contains("tasks[1]"),
            "{report}"
        );
    }

    #[test]
    fn ids_with_one_hash_are_told_apart() {
        let tasks = [task("a"), task("b"), task("b"), task("c")];
        let texts: Vec<String> = tasks.iter().map(Value::to_string).collect();
        let raws: Vec<&RawValue> = texts.iter().map(|t| serde_json::from_str(t).unwrap()).collect();
        // "b" forced onto the hash "a" has (task 0): found different by its text
        let hasher = RandomState::new();
        let mut forced = SeenIds {
            by_hash: HashMap::from([(hasher.hash_one("b"), 0)]),
            hasher,
            collided: HashMap::new(),
        };
        assert_eq!(forced.insert("b", 1, &raws), None, "a is not b");
        assert_eq!(
            forced.insert("b", 2, &raws),
            Some(1),
            "the second b is found by name"
        );
        assert_eq!(forced.insert("c", 3, &raws), None);
    }
}
