//! The states a task and an attempt can be in. Strings only at the edges:
//! each enum has one `as_str` (for SQL columns and JSON) and one `FromStr`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a task is in DESIGN.md "Task states".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 5] = [
        TaskStatus::Queued,
        TaskStatus::Running,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    /// Completed, failed or cancelled: nothing changes it any more (but a
    /// retry, which starts it again).
    pub fn has_ended(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }

    /// Failed or cancelled: `POST /tasks/{id}/retry` may queue it again.
    pub fn is_retryable(self) -> bool {
        matches!(self, TaskStatus::Failed | TaskStatus::Cancelled)
    }
}

/// How one attempt of a task ended, as recorded in its attempt row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttemptEnd {
    /// The worker returned a valid completed result.
    Completed,
    /// The run failed, timed out, or the worker answered something unusable.
    Failed,
    /// The worker was lost (or cancelled the run itself) while it ran.
    Lost,
    /// Nothing ran (the worker was full, draining or unreachable): not
    /// counted as an attempt of the task.
    Refused,
    /// The task was cancelled while this attempt ran.
    Cancelled,
    /// Nothing ran: the task was answered from the stored result of an
    /// equal completed task (its `reused_from`).
    Reused,
}

impl AttemptEnd {
    pub const ALL: [AttemptEnd; 6] = [
        AttemptEnd::Completed,
        AttemptEnd::Failed,
        AttemptEnd::Lost,
        AttemptEnd::Refused,
        AttemptEnd::Cancelled,
        AttemptEnd::Reused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AttemptEnd::Completed => "completed",
            AttemptEnd::Failed => "failed",
            AttemptEnd::Lost => "lost",
            AttemptEnd::Refused => "refused",
            AttemptEnd::Cancelled => "cancelled",
            AttemptEnd::Reused => "reused",
        }
    }
}

/// How a run on a worker ended: `result.status` in the seed's result shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Completed,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 3] = [RunStatus::Completed, RunStatus::Failed, RunStatus::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

/// An unknown status name: says which names exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected one of {expected}, found {found:?}")]
pub struct UnknownStatus {
    pub expected: String,
    pub found: String,
}

macro_rules! string_edges {
    ($($t:ty),*) => {$(
        impl FromStr for $t {
            type Err = UnknownStatus;
            fn from_str(s: &str) -> Result<Self, UnknownStatus> {
                Self::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| UnknownStatus {
                    expected: Self::ALL.map(|v| v.as_str()).join(", "),
                    found: s.to_string(),
                })
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl rusqlite::types::ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }

        impl rusqlite::types::FromSql for $t {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                v.as_str()?.parse().map_err(|e| rusqlite::types::FromSqlError::Other(Box::new(e)))
            }
        }
    )*};
}

string_edges!(TaskStatus, AttemptEnd, RunStatus);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips_through_its_string_json_and_sql_forms() {
        for s in TaskStatus::ALL {
            assert_eq!(s.as_str().parse::<TaskStatus>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for s in AttemptEnd::ALL {
            assert_eq!(s.as_str().parse::<AttemptEnd>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>(), Ok(s));
            assert_eq!(serde_json::from_value::<RunStatus>(s.as_str().into()).unwrap(), s);
        }
        let err = "done".parse::<TaskStatus>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected one of queued, running, completed, failed, cancelled, found \"done\""
        );
        let db = rusqlite::Connection::open_in_memory().unwrap();
        let back: AttemptEnd = db
            .query_row("SELECT ?1", [AttemptEnd::Lost], |r| r.get(0))
            .unwrap();
        assert_eq!(back, AttemptEnd::Lost);
    }

    #[test]
    fn only_failed_and_cancelled_tasks_can_be_retried() {
        let retryable: Vec<_> = TaskStatus::ALL.into_iter().filter(|s| s.is_retryable()).collect();
        assert_eq!(retryable, [TaskStatus::Failed, TaskStatus::Cancelled]);
        assert!(!TaskStatus::Running.has_ended() && TaskStatus::Cancelled.has_ended());
    }
}
