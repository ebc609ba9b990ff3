//! The reads of `GET /results/export`: tasks in arrival order, one page at
//! a time from a given `seq` on (keyset paging through the primary key, so
//! every page costs the same however deep the export is and nothing holds
//! the whole table), as [`StoredTask`]s for [`crate::protocol::export`].

use rusqlite::params_from_iter;

use super::{ReadPool, StoreError};
use crate::model::TaskStatus;
use crate::protocol::export::StoredTask;

/// Which tasks an export holds.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    pub study: Option<String>,
    /// The source: a dropped file's name, or `api`.
    pub file: Option<String>,
    pub status: Option<TaskStatus>,
}

/// One page of an export, and the `seq` to go on after (`None`: the end).
pub struct ExportPage {
    pub tasks: Vec<StoredTask>,
    pub next: Option<i64>,
}

impl ReadPool {
    /// Up to `limit` tasks of `filter` after `after` (a `seq`), in arrival
    /// order.
    pub fn export_page(
        &self,
        filter: &ExportFilter,
        after: i64,
        limit: usize,
    ) -> Result<ExportPage, StoreError> {
        let mut sql = String::from(
            "SELECT seq, task_id, status, kernel, source, body, result, worker_id FROM tasks WHERE seq > ?",
        );
        let mut args: Vec<rusqlite::types::Value> = vec![after.into()];
        if let Some(s) = filter.status {
            sql.push_str(" AND status = ?");
            args.push(s.as_str().to_string().into());
        }
        if let Some(f) = &filter.file {
            sql.push_str(" AND source = ?");
            args.push(f.clone().into());
        }
        if let Some(s) = &filter.study {
            // no index: an export reads the table in order anyway, and a
            // page stops at `limit` matches
            sql.push_str(" AND json_extract(body, '$.study') = ?");
            args.push(s.clone().into());
        }
        sql.push_str(" ORDER BY seq LIMIT ?");
        args.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
        self.with(|db| {
            let mut last = None;
            let tasks = db
                .prepare_cached(&sql)?
                .query_map(params_from_iter(args.iter()), |r| {
                    let body: String = r.get(5)?;
                    let result: Option<String> = r.get(6)?;
                    Ok((
                        r.get::<_, i64>(0)?,
                        StoredTask {
                            task_id: r.get(1)?,
                            status: r.get(2)?,
                            kernel: r.get(3)?,
                            source: r.get(4)?,
                            body: serde_json::from_str(&body).unwrap_or_default(),
                            result: result.and_then(|s| serde_json::from_str(&s).ok()),
                            worker_id: r.get(7)?,
                        },
                    ))
                })?
                .map(|row| {
                    row.map(|(seq, task)| {
                        last = Some(seq);
                        task
                    })
                })
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let next = if tasks.len() < limit { None } else { last };
            Ok(ExportPage { tasks, next })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Priority;
    use crate::orchestrator::store::{open, NewTask, Store};

    #[test]
    fn pages_follow_arrival_order_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let store = Store::start(open(&path, false).unwrap());
        let tasks =
            [("a", ",\"study\":\"s1\""), ("b", ""), ("c", ",\"study\":\"s1\"")].map(|(id, study)| NewTask {
                task_id: id.into(),
                priority: Priority::Medium,
                algorithm: "python".into(),
                kernel: "reference".into(),
                body: format!(r#"{{"task_id":"{id}","parameters":{{}}{study}}}"#),
                reuse_key: None,
            });
        actix_rt::System::new()
            .block_on(store.insert_batch(tasks.to_vec(), None, "api".into()))
            .unwrap();
        let pool = ReadPool::new(&path);
        let all = ExportFilter::default();
        let first = pool.export_page(&all, 0, 2).unwrap();
        let ids: Vec<&str> = first.tasks.iter().map(|t| t.task_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        let rest = pool.export_page(&all, first.next.unwrap(), 2).unwrap();
        assert_eq!(rest.tasks.len(), 1);
        assert_eq!(rest.next, None);
        let s1 = ExportFilter {
            study: Some("s1".into()),
            ..Default::default()
        };
        let page = pool.export_page(&s1, 0, 10).unwrap();
        let ids: Vec<&str> = page.tasks.iter().map(|t| t.task_id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        let queued = ExportFilter {
            status: Some(TaskStatus::Completed),
            ..Default::default()
        };
        assert!(pool.export_page(&queued, 0, 10).unwrap().tasks.is_empty());
        drop(store);
    }
}
