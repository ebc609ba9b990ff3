//! Typed ids: a task's (validated), an attempt's (the fencing token) and a
//! worker's. Ids go into URLs and logs, never into file names; the wire
//! and the database see them as the plain string or number they wrap.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::validate::short;

/// Longest task id accepted.
pub const MAX_TASK_ID_LEN: usize = 128;

/// A task's id: 1 to 128 letters, digits, `.`, `_`, `-` or `:`. Ids go
/// into URLs and logs, never into file names, and cannot look like paths.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(Arc<str>);

/// Shown as the text it is (`"t1"`), as when ids were strings.
impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for TaskId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Why a text is not a usable id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("expected a non-empty id, found \"\"")]
    Empty,
    #[error("expected at most {MAX_TASK_ID_LEN} characters, found {0}")]
    TooLong(usize),
    #[error("expected only letters, digits, '.', '_', '-' or ':', found {bad:?} in {shown}")]
    BadCharacter { bad: char, shown: String },
    #[error("{0:?} is not a usable id")]
    PathLike(String),
}

impl TaskId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        if s.len() > MAX_TASK_ID_LEN {
            return Err(IdError::TooLong(s.len()));
        }
        if let Some(bad) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':')))
        {
            return Err(IdError::BadCharacter { bad, shown: short(s) });
        }
        if s == "." || s == ".." {
            return Err(IdError::PathLike(s.to_string()));
        }
        Ok(Self(Arc::from(s)))
    }

    /// An id this process validated before it stored it (a database row,
    /// a message between its own parts): not checked again, so a row
    /// written by an older build is still read.
    pub fn trusted(s: &str) -> Self {
        Self(Arc::from(s))
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

impl PartialEq<str> for TaskId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for TaskId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl std::borrow::Borrow<str> for TaskId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Read as text where text is asked for (a lookup by `&str`, a log
/// line): the id is still made only by [`TaskId::parse`].
impl std::ops::Deref for TaskId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for TaskId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// One attempt at running a task: unique per attempt, the fencing token a
/// worker echoes in its result. A number on the wire and in the database.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AttemptId(u64);

/// Shown as the number it is, as when attempt ids were numbers.
impl fmt::Debug for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AttemptId {
    pub const fn new(n: u64) -> Self {
        Self(n)
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// The id after this one.
    pub const fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<u64> for AttemptId {
    fn from(n: u64) -> Self {
        Self(n)
    }
}

/// A worker's id, as `config_workers.json`, `WORKER_ID` or `--worker-id`
/// gives it. Cheap to clone (shared), compared by value. The default is
/// the empty id a lenient answer reads when a worker gives none.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
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

impl PartialEq<str> for WorkerId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for WorkerId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl AsRef<str> for WorkerId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Tests build ids from literals; a literal that is not a valid id fails
/// the test at once.
#[cfg(test)]
mod test_literals {
    use super::*;

    impl From<&str> for TaskId {
        fn from(s: &str) -> Self {
            TaskId::parse(s).unwrap_or_else(|e| panic!("test id {s:?}: {e}"))
        }
    }

    impl From<String> for TaskId {
        fn from(s: String) -> Self {
            TaskId::from(s.as_str())
        }
    }

    impl From<&String> for TaskId {
        fn from(s: &String) -> Self {
            TaskId::from(s.as_str())
        }
    }

    impl From<String> for WorkerId {
        fn from(s: String) -> Self {
            WorkerId::new(&s)
        }
    }

    impl PartialEq<u64> for AttemptId {
        fn eq(&self, other: &u64) -> bool {
            self.0 == *other
        }
    }

    impl PartialEq<String> for TaskId {
        fn eq(&self, other: &String) -> bool {
            *self.0 == **other
        }
    }
}
