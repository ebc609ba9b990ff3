//! JSON read strictly and in pieces, for task files and `POST /tasks`.
//!
//! serde_json keeps the last of two equal keys in an object without a
//! word, so `{"seed": 1, "seed": 2}` ran with seed 2; [`parse`] refuses
//! such an object and says where it is ([`Duplicate`]). [`split`] reads
//! only the outer level of a document and keeps every value below it as
//! the raw text it borrows ([`RawValue`]), so that a large document is
//! never one `Value` tree (about ten times its text in memory): each task
//! is parsed on its own, after its size is checked.

use std::cell::RefCell;
use std::fmt;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

/// An object that names a key twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// Path of the object, e.g. `tasks[3]` or `tasks[3].parameters` ("" for the top level).
    pub path: String,
    pub key: String,
}

/// Why text could not be read strictly.
#[derive(Debug)]
pub enum StrictError {
    Duplicate(Duplicate),
    /// Not JSON at all (the error says where).
    Json(serde_json::Error),
}

/// The outer level of a document, its values left as borrowed text.
#[derive(Debug)]
pub enum Document<'a> {
    /// Keys in order, each once.
    Object(Vec<(String, &'a RawValue)>),
    Array(Vec<&'a RawValue>),
    /// A string, number, boolean or null.
    Scalar(Value),
}

/// Parses `text` into a [`Value`], refusing duplicate keys at any depth.
/// `root` names the value in the error (`tasks[3]`, or "").
pub fn parse(text: &str, root: &str) -> Result<Value, StrictError> {
    let found = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let seed = Strict {
        at: At::Root(root),
        found: &found,
    };
    let value = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match (value, found.into_inner()) {
        (_, Some(dup)) => Err(StrictError::Duplicate(dup)),
        (Ok(v), None) => Ok(v),
        (Err(e), None) => Err(StrictError::Json(e)),
    }
}

/// Reads the outer level of `text` (an object's keys are checked for
/// duplicates; what lies below is not parsed).
pub fn split(text: &str) -> Result<Document<'_>, StrictError> {
    let found = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let doc = Outer { found: &found }
        .deserialize(&mut de)
        .and_then(|d| de.end().map(|()| d));
    match (doc, found.into_inner()) {
        (_, Some(dup)) => Err(StrictError::Duplicate(dup)),
        (Ok(d), None) => Ok(d),
        (Err(e), None) => Err(StrictError::Json(e)),
    }
}

/// Where a value sits, rendered only when an error needs it (a path
/// string per value would cost more than the value).
#[derive(Clone, Copy)]
enum At<'p> {
    Root(&'p str),
    Key(&'p At<'p>, &'p str),
    Index(&'p At<'p>, usize),
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Root(root) => f.write_str(root),
            At::Key(parent, key) => {
                let before = parent.to_string();
                if before.is_empty() {
                    f.write_str(key)
                } else {
                    write!(f, "{before}.{key}")
                }
            }
            At::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// Builds a [`Value`] as serde_json does, but stops at a duplicate key
/// (recorded in `found`, since a serde error carries only text).
struct Strict<'p> {
    at: At<'p>,
    found: &'p RefCell<Option<Duplicate>>,
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON text cannot spell a non-finite number
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict {
            at: At::Index(&self.at, out.len()),
            found: self.found,
        })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(duplicate::<A::Error>(self.found, self.at.to_string(), key));
            }
            let value = map.next_value_seed(Strict {
                at: At::Key(&self.at, &key),
                found: self.found,
            })?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

fn duplicate<E: serde::de::Error>(found: &RefCell<Option<Duplicate>>, path: String, key: String) -> E {
    let e = E::custom(format!("duplicate key {key:?}"));
    *found.borrow_mut() = Some(Duplicate { path, key });
    e
}

/// The outer level of a document: see [`split`].
struct Outer<'p> {
    found: &'p RefCell<Option<Duplicate>>,
}

impl<'de> DeserializeSeed<'de> for Outer<'_> {
    type Value = Document<'de>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Document<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Outer<'_> {
    type Value = Document<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON document")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Document<'de>, E> {
        Ok(Document::Scalar(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Document<'de>, E> {
        Ok(Document::Scalar(Value::Number(v.into())))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Document<'de>, E> {
        Ok(Document::Scalar(Value::Number(v.into())))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Document<'de>, E> {
        Ok(Document::Scalar(
            Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }

    fn visit_str<E>(self, v: &str) -> Result<Document<'de>, E> {
        Ok(Document::Scalar(Value::String(v.to_string())))
    }

    fn visit_unit<E>(self) -> Result<Document<'de>, E> {
        Ok(Document::Scalar(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Document<'de>, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element::<&'de RawValue>()? {
            out.push(v);
        }
        Ok(Document::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Document<'de>, A::Error> {
        let mut out: Vec<(String, &'de RawValue)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.iter().any(|(k, _)| *k == key) {
                return Err(duplicate::<A::Error>(self.found, String::new(), key));
            }
            let value = map.next_value::<&'de RawValue>()?;
            out.push((key, value));
        }
        Ok(Document::Object(out))
    }
}

/// A raw value described for an error message without parsing a large one.
pub fn describe_raw(raw: &RawValue) -> String {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'{') => "an object".into(),
        Some(b'[') => "an array".into(),
        _ if text.len() > 200 => "a long string".into(),
        _ => serde_json::from_str::<Value>(text).map_or_else(|_| text.to_string(), |v| super::describe(&v)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn dup(text: &str, root: &str) -> Duplicate {
        match parse(text, root) {
            Err(StrictError::Duplicate(d)) => d,
            other => panic!("expected a duplicate, got {other:?}"),
        }
    }

    #[test]
    fn values_read_as_serde_json_reads_them() {
        let text = r#"{"a": [1, -2, 2.5, "x", null, true, {"b": {}}], "c": 18446744073709551615}"#;
        assert_eq!(
            parse(text, "").unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
    }

    #[test]
    fn a_duplicate_key_is_named_with_its_object() {
        assert_eq!(
            dup(
                r#"{"task_id": "a", "parameters": {}, "parameters": {}}"#,
                "tasks[3]"
            ),
            Duplicate {
                path: "tasks[3]".into(),
                key: "parameters".into()
            }
        );
        assert_eq!(
            dup(r#"{"parameters": {"seed": 1, "seed": 2}}"#, "tasks[0]").path,
            "tasks[0].parameters"
        );
        assert_eq!(dup(r#"[{}, {"x": [{"k": 1, "k": 1}]}]"#, "").path, "[1].x[0]");
        // the same key in two objects is fine
        assert!(parse(r#"[{"k": 1}, {"k": 2}]"#, "").is_ok());
    }

    #[test]
    fn split_keeps_the_outer_level_only() {
        let Document::Object(fields) = split(r#"{"metadata": {"a": 1, "a": 2}, "tasks": [1, 2]}"#).unwrap()
        else {
            panic!("an object")
        };
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[1].1.get(), "[1, 2]");
        assert!(matches!(split(r#"[{"a":1}]"#).unwrap(), Document::Array(v) if v.len() == 1));
        assert!(matches!(split("7").unwrap(), Document::Scalar(v) if v == json!(7)));
        match split(r#"{"tasks": [], "tasks": []}"#) {
            Err(StrictError::Duplicate(d)) => assert_eq!((d.path.as_str(), d.key.as_str()), ("", "tasks")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(split(r#"{"tasks": ["#), Err(StrictError::Json(e)) if e.is_eof()));
    }
}
