//! Validated ids: a task's and a worker's. Ids go into URLs and logs,
//! never into file names.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::validate::short;

/// Longest task id accepted.
pub const MAX_TASK_ID_LEN: usize = 128;

/// A task's id: 1 to 128 letters, digits, `.`, `_`, `-` or `:`. Ids go
/// into URLs and logs, never into file names, and cannot look like paths.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(Arc<str>);

impl Serialize for TaskId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl TaskId {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("expected a non-empty id, found \"\"".into());
        }
        if s.len() > MAX_TASK_ID_LEN {
            return Err(format!(
                "expected at most {MAX_TASK_ID_LEN} characters, found {}",
                s.len()
            ));
        }
        if let Some(bad) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':')))
        {
            return Err(format!(
                "expected only letters, digits, '.', '_', '-' or ':', found {bad:?} in {}",
                short(s)
            ));
        }
        if s == "." || s == ".." {
            return Err(format!("{s:?} is not a usable id"));
        }
        Ok(Self(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TaskId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TaskId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A worker's id, as `config_workers.json`, `WORKER_ID` or `--worker-id`
/// gives it. Cheap to clone (shared), compared by value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(Arc<str>);

impl Serialize for WorkerId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for WorkerId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Self::new(&s))
    }
}

impl WorkerId {
    pub fn new(id: &str) -> Self {
        Self(Arc::from(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for WorkerId {
    fn from(id: &str) -> Self {
        Self::new(id)
    }
}

impl std::borrow::Borrow<str> for WorkerId {
    fn borrow(&self) -> &str {
        &self.0
    }
}
