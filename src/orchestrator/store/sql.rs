//! The SQL edge of the typed ids: how a `TaskId`, `AttemptId`, `WorkerId`,
//! `KernelName` and `Priority` go into a statement and come out of a row.
//! The database keeps them as the plain text or integer they wrap (a
//! priority as its rank, 0 for high); nothing above the store sees those.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

use crate::model::{AttemptId, KernelName, Priority, TaskId, WorkerId};

impl ToSql for TaskId {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

/// Ids in the database were validated before they were stored.
impl FromSql for TaskId {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value.as_str().map(TaskId::trusted)
    }
}

impl ToSql for WorkerId {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for WorkerId {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value.as_str().map(WorkerId::new)
    }
}

/// SQLite's integers are signed: attempt ids stay far below 2^63.
impl ToSql for AttemptId {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.get() as i64))
    }
}

impl FromSql for AttemptId {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value.as_i64().map(|n| AttemptId::new(n as u64))
    }
}

impl ToSql for KernelName {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

/// A kernel this build does not know (a row written by another build)
/// reads as an error; [`kernel_of`] reads it as `None` instead.
impl FromSql for KernelName {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let name = value.as_str()?;
        KernelName::resolve(name)
            .ok_or_else(|| FromSqlError::Other(format!("expected a kernel name, found {name:?}").into()))
    }
}

/// A kernel column, `None` for a name this build does not know.
pub(super) fn kernel_of(r: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<Option<KernelName>> {
    Ok(KernelName::resolve(&r.get::<_, String>(column)?))
}

/// Stored as its rank: the queue's index orders by it.
impl ToSql for Priority {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(i64::from(self.rank())))
    }
}

impl FromSql for Priority {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_i64()
            .map(|rank| Priority::from_rank(rank.clamp(0, 255) as u8))
    }
}
