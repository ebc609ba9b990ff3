//! Read views for the REST API and `orquesta run`: read-only connections
//! ([`ReadPool`]) on blocking threads, tasks and attempts as the API shows
//! them, counts by status (kept in `task_counts`, never counted by a
//! scan). Every filter and sort of `GET /tasks` has an index (`schema.rs`,
//! `files.rs`); the tests (`tests.rs`) check each query's plan.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, params_from_iter, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;

use super::{DbFault, StoreError};
use crate::model::{unknown_fields, AttemptEnd, AttemptId, Priority, TaskId, TaskStatus, WorkerId};
use crate::sim::resolve_kernel;
use crate::util::time::iso_at;

/// A task as the REST API shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TaskView {
    pub task_id: TaskId,
    pub status: TaskStatus,
    pub priority: Priority,
    pub algorithm: String,
    pub kernel: String,
    pub parameters: serde_json::Value,
    pub description: Option<String>,
    /// The study it belongs to, when it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub study: Option<String>,
    pub source: String,
    pub created_at: String,
    /// How many attempts counted so far (`attempts` in `GET /tasks/{id}`
    /// is their list).
    pub attempt_count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<WorkerId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_time: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results_file: Option<String>,
    /// The task's fields the validator does not know, as given. Under a
    /// name of their own, not at the top: a user's `status` or `error`
    /// must never be mistaken for (or clash with) the view's.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// One attempt as the REST API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptView {
    pub attempt_id: AttemptId,
    pub worker_id: WorkerId,
    pub started_at: String,
    pub ended_at: Option<String>,
    /// `None` while it runs.
    pub outcome: Option<AttemptEnd>,
    pub error: Option<String>,
    /// The step it started from: 0, or the step of the checkpoint it
    /// resumed (filled by `GET /tasks/{id}`; failure records leave it out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_step: Option<u64>,
}

/// Filters of `GET /tasks`, and the order of the page.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub priority: Option<Priority>,
    pub algorithm: Option<String>,
    pub worker: Option<String>,
    /// The source: a dropped file's name, or `api`.
    pub source: Option<String>,
    pub order: TaskOrder,
}

/// The order of `GET /tasks` (`sort=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TaskOrder {
    /// Arrival (`seq`): the default.
    #[default]
    Arrival,
    /// `created_at`, oldest first (a retried task was created again).
    Created,
    /// `-created_at`, newest first.
    CreatedDesc,
    /// `priority`: high first, then arrival.
    Priority,
}

impl TaskOrder {
    /// The values `sort=` takes.
    pub const NAMES: &'static str = "created_at, -created_at or priority";

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "created_at" => Some(TaskOrder::Created),
            "-created_at" => Some(TaskOrder::CreatedDesc),
            "priority" => Some(TaskOrder::Priority),
            _ => None,
        }
    }

    /// `sort=` as given (absent: arrival), or what to say about it.
    pub fn of_param(sort: Option<&str>) -> Result<Self, String> {
        match sort {
            None => Ok(TaskOrder::Arrival),
            Some(s) => Self::parse(s).ok_or_else(|| format!("sort: expected {}, found {s:?}", Self::NAMES)),
        }
    }

    /// `ORDER BY` and the index whose order it is.
    fn sql(self) -> (&'static str, Option<&'static str>) {
        match self {
            TaskOrder::Arrival => ("seq", None),
            TaskOrder::Created => ("created_at, seq", Some("tasks_created")),
            TaskOrder::CreatedDesc => ("created_at DESC, seq DESC", Some("tasks_created")),
            TaskOrder::Priority => ("priority, seq", Some("tasks_priority")),
        }
    }
}

/// A sorted, filtered list with at most this many matches is read through
/// the filter's index and sorted (bounded work); with more, the sort's
/// index is walked in order and the filter checked on the way, so a page
/// never sorts every match of a large filter.
pub const SORT_MATCHES_MAX: u64 = 10_000;

/// Task counts by status, and by (priority, status).
pub type Counts = (Vec<(TaskStatus, u64)>, Vec<(Priority, TaskStatus, u64)>);

/// Attempts per worker and how they ended (`None`: still running).
pub type ByWorker = Vec<(String, Option<AttemptEnd>, u64)>;

/// `attempt_count` is the number of attempts in the list `GET
/// /tasks/{id}` shows, but refusals (nothing ran there); not the
/// `attempts` column: that one counts against `MAX_TASK_RETRIES` and
/// starts again at 0 on a retry.
const VIEW_COLUMNS: &str = "task_id, status, priority, algorithm, kernel, body, source, created_at,
    (SELECT COUNT(*) FROM attempts WHERE attempts.task_id = tasks.task_id
        AND (outcome IS NULL OR outcome <> 'refused')),
    worker_id, started_at, finished_at, next_attempt_at, error, result, results_file";

fn task_view(r: &rusqlite::Row<'_>, with_result: bool) -> rusqlite::Result<TaskView> {
    let body: String = r.get(5)?;
    let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let result: Option<String> = r.get(14)?;
    let result: Option<serde_json::Value> = result.and_then(|s| serde_json::from_str(&s).ok());
    let execution_time = result
        .as_ref()
        .and_then(|v| v.get("execution_time"))
        .and_then(|v| v.as_f64());
    Ok(TaskView {
        task_id: r.get(0)?,
        status: r.get(1)?,
        priority: Priority::from_rank(r.get::<_, i64>(2)? as u8),
        algorithm: r.get(3)?,
        kernel: r.get(4)?,
        parameters: body.get("parameters").cloned().unwrap_or_default(),
        description: body.get("description").and_then(|d| d.as_str()).map(String::from),
        study: crate::model::study_of(&body).map(String::from),
        source: r.get(6)?,
        created_at: iso_at(r.get(7)?),
        attempt_count: r.get::<_, i64>(8)? as u32,
        worker_id: r.get(9)?,
        started_at: r.get::<_, Option<f64>>(10)?.map(iso_at),
        finished_at: r.get::<_, Option<f64>>(11)?.map(iso_at),
        next_attempt_at: r.get::<_, Option<f64>>(12)?.map(iso_at),
        error: r.get(13)?,
        execution_time,
        result: if with_result { result } else { None },
        results_file: r.get(15)?,
        extra: unknown_fields(&body),
    })
}

/// The statements of `GET /tasks` for one filter: how many match, and a
/// page (`LIMIT ? OFFSET ?` follow `args`).
pub(super) struct ListQuery {
    pub count_sql: String,
    pub count_args: Vec<rusqlite::types::Value>,
    /// Through the filter's index (sorted afterwards for a sort other
    /// than arrival: for at most [`SORT_MATCHES_MAX`] matches).
    pub page_sql: String,
    /// For a sort with a filter: the sort's index walked in order, the
    /// filter checked on the way (for more matches).
    pub walk_sql: Option<String>,
    pub args: Vec<rusqlite::types::Value>,
}

impl ListQuery {
    pub fn of(filter: &TaskFilter) -> Self {
        let mut clauses = Vec::new();
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(s) = filter.status {
            clauses.push("status = ?");
            args.push(s.as_str().to_string().into());
        }
        if let Some(p) = filter.priority {
            clauses.push("priority = ?");
            args.push(i64::from(p.rank()).into());
        }
        if let Some(a) = &filter.algorithm {
            // "tasks of this algorithm or kernel": a task's kernel is its
            // algorithm resolved, so a kernel's name matches by kernel
            // (its aliases included) and any other name by algorithm. One
            // column, one index, read in seq order: no sort of every match
            // (`algorithm = ? OR kernel = ?` sorted them all)
            if resolve_kernel(a).is_some_and(|k| k == a.as_str()) {
                clauses.push("kernel = ?");
            } else {
                clauses.push("algorithm = ?");
            }
            args.push(a.clone().into());
        }
        if let Some(w) = &filter.worker {
            clauses.push("worker_id = ?");
            args.push(w.clone().into());
        }
        if let Some(f) = &filter.source {
            clauses.push("source = ?");
            args.push(f.clone().into());
        }
        let where_ = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let (count_sql, count_args) = count_query(filter, &clauses, &args, &where_);
        let (order_by, index) = filter.order.sql();
        let page_sql = match index {
            // no filter: the sort's own index, in order
            Some(index) if clauses.is_empty() => {
                format!("SELECT {VIEW_COLUMNS} FROM tasks INDEXED BY {index} ORDER BY {order_by} LIMIT ? OFFSET ?")
            }
            _ => format!("SELECT {VIEW_COLUMNS} FROM tasks {where_} ORDER BY {order_by} LIMIT ? OFFSET ?"),
        };
        let walk_sql = index.filter(|_| !clauses.is_empty()).map(|index| {
            format!("SELECT {VIEW_COLUMNS} FROM tasks INDEXED BY {index} {where_} ORDER BY {order_by} LIMIT ? OFFSET ?")
        });
        Self {
            count_sql,
            count_args,
            page_sql,
            walk_sql,
            args,
        }
    }

    /// The page statement for `total` matches.
    pub fn page_for(&self, total: u64) -> &str {
        match &self.walk_sql {
            Some(walk) if total > SORT_MATCHES_MAX => walk,
            _ => &self.page_sql,
        }
    }
}

/// How many tasks match `filter` (its `clauses` and `args`, `where_`
/// joined): from kept counts where it can be, never a scan of `tasks`.
fn count_query(
    filter: &TaskFilter,
    clauses: &[&str],
    args: &[rusqlite::types::Value],
    where_: &str,
) -> (String, Vec<rusqlite::types::Value>) {
    if let (Some(source), None, None, None) =
        (&filter.source, filter.priority, &filter.algorithm, &filter.worker)
    {
        // by file (and status): the dropped files of that name, counted
        // by `file_counts`, plus the tasks of that source that belong to no
        // file record (`api`, `orquesta run`'s) through their partial index
        let status = filter
            .status
            .map(|s| rusqlite::types::Value::from(s.as_str().to_string()));
        let and_status = if status.is_some() { " AND status = ?" } else { "" };
        let mut count_args = vec![source.clone().into()];
        count_args.extend(status.clone());
        count_args.push(source.clone().into());
        count_args.extend(status);
        return (
            format!(
                "SELECT (SELECT COALESCE(SUM(c.n), 0) FROM ingests i JOIN file_counts c ON c.ingest_id = i.id
                         WHERE i.name = ?{and_status})
                      + (SELECT COUNT(*) FROM tasks WHERE source = ? AND ingest_id IS NULL{and_status})"
            ),
            count_args,
        );
    }
    if filter.algorithm.is_none() && filter.worker.is_none() && filter.source.is_none() {
        // by status and priority only: the kept counts, no scan
        let kept: Vec<&str> = ["n > 0"].into_iter().chain(clauses.iter().copied()).collect();
        return (
            format!(
                "SELECT COALESCE(SUM(n), 0) FROM task_counts WHERE {}",
                kept.join(" AND ")
            ),
            args.to_vec(),
        );
    }
    (format!("SELECT COUNT(*) FROM tasks {where_}"), args.to_vec())
}

/// Read-only connections for the REST API, reused across requests.
pub struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// Damage met by any read (or by the writer, when shared).
    fault: DbFault,
}

impl ReadPool {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
            fault: DbFault::default(),
        }
    }

    /// Reads that note damage where the writer does ([`super::Store::fault`]).
    pub fn sharing_faults(mut self, fault: DbFault) -> Self {
        self.fault = fault;
        self
    }

    /// For `/health`: the damage met so far, else a one-row read of the
    /// marker (no scan). `Err` says what is wrong.
    pub fn health(&self) -> Result<(), String> {
        if let Some(fault) = self.fault.get() {
            return Err(fault);
        }
        if let Some(full) = self.fault.full() {
            return Err(full);
        }
        self.with(|db| {
            db.prepare_cached("SELECT value FROM meta WHERE key = 'orquesta'")?
                .query_row([], |r| r.get::<_, i64>(0))
        })
        .map(drop)
        .map_err(|e| e.to_string())
    }

    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.with_unnoted(f)
            .map_err(|e| StoreError::Sql(self.fault.note(e)))
    }

    fn with_unnoted<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        let conn = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                c.pragma_update(None, "busy_timeout", 5000)?;
                c
            }
        };
        let out = f(&conn)?;
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < 8 {
            idle.push(conn);
        }
        Ok(out)
    }

    /// One task with its attempts.
    pub fn task(&self, task_id: &str) -> Result<Option<(TaskView, Vec<AttemptView>)>, StoreError> {
        self.with(|db| {
            let view = db
                .prepare_cached(&format!("SELECT {VIEW_COLUMNS} FROM tasks WHERE task_id = ?1"))?
                .query_row(params![task_id], |r| task_view(r, true))
                .optional()?;
            let Some(view) = view else { return Ok(None) };
            let attempts = super::history::attempts_of(db, task_id)?;
            Ok(Some((view, attempts)))
        })
    }

    /// A page of tasks in queue order, and how many match in all.
    pub fn tasks(
        &self,
        filter: &TaskFilter,
        limit: usize,
        offset: usize,
    ) -> Result<(Vec<TaskView>, u64), StoreError> {
        let q = ListQuery::of(filter);
        self.with(|db| {
            let total: i64 = db
                .prepare_cached(&q.count_sql)?
                .query_row(params_from_iter(q.count_args.iter()), |r| r.get(0))?;
            let mut page_args = q.args.clone();
            page_args.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
            // past i64::MAX `as` would wrap to a negative OFFSET, which
            // SQLite reads as none: the first page for an absurd offset
            page_args.push(i64::try_from(offset).unwrap_or(i64::MAX).into());
            let rows = db
                .prepare_cached(q.page_for(total.max(0) as u64))?
                .query_map(params_from_iter(page_args.iter()), |r| task_view(r, false))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((rows, total as u64))
        })
    }

    /// Attempts per worker and outcome (`None`: not ended yet).
    pub fn by_worker(&self) -> Result<ByWorker, StoreError> {
        self.with(|db| {
            db.prepare_cached(
                "SELECT worker_id, outcome, COUNT(*) FROM attempts
                 GROUP BY worker_id, outcome ORDER BY worker_id",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64)))?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
    }

    /// Results and failures files written so far (`task_results_*` and
    /// `task_failures_*`), by name: what a summary points a person to.
    pub fn results_files(&self) -> Result<Vec<String>, StoreError> {
        self.with(|db| {
            db.prepare_cached(
                "SELECT results_file FROM tasks WHERE results_file IS NOT NULL AND written = 1
                   AND results_file NOT IN (SELECT file FROM pending_results_files)
                 UNION SELECT file FROM failure_records WHERE file IS NOT NULL AND written = 1
                 ORDER BY 1",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
    }

    /// Task counts by status and by priority: read from `task_counts`,
    /// which triggers keep in the same transaction as every change of a
    /// task's status (a few rows, never a scan of `tasks`).
    pub fn counts(&self) -> Result<Counts, StoreError> {
        self.with(|db| {
            let by_status = db
                .prepare_cached("SELECT status, SUM(n) FROM task_counts GROUP BY status HAVING SUM(n) > 0")?
                .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let by_priority = db
                .prepare_cached("SELECT priority, status, n FROM task_counts WHERE n > 0")?
                .query_map([], |r| {
                    Ok((
                        Priority::from_rank(r.get::<_, i64>(0)? as u8),
                        r.get(1)?,
                        r.get::<_, i64>(2)? as u64,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((by_status, by_priority))
        })
    }

    /// The newest file record's id (0: none): it changes whenever a file
    /// is taken or rejected, so the dashboard knows to read the list again.
    pub fn last_file_id(&self) -> Result<i64, StoreError> {
        self.with(|db| {
            db.prepare_cached("SELECT coalesce(max(id), 0) FROM ingests")?
                .query_row([], |r| r.get(0))
        })
    }
}
