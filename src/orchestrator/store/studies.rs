//! The reads of `GET /studies`: every study's task counts by status and
//! its swept parameters, each one GROUP BY over the tasks (the database
//! counts; nothing but one row per study and status reaches Rust).

use std::collections::BTreeMap;

use rusqlite::params;

use super::{ReadPool, StoreError};
use crate::model::TASK_PARAMETERS;
use crate::protocol::studies::StudySummary;

/// `COUNT(DISTINCT <effective value>)` of every task parameter but the
/// seed, in [`TASK_PARAMETERS`] order: the value given, else the default.
fn distinct_counts_sql() -> (Vec<&'static str>, String) {
    let names: Vec<&'static str> = TASK_PARAMETERS
        .iter()
        .filter(|p| p.name != "seed")
        .map(|p| p.name)
        .collect();
    let counts: Vec<String> = TASK_PARAMETERS
        .iter()
        .filter(|p| p.name != "seed")
        .map(|p| {
            // names are the fixed identifiers of TASK_PARAMETERS, never input
            let given = format!("json_extract(body, '$.parameters.{}')", p.name);
            match p.default {
                Some(d) => format!("COUNT(DISTINCT IFNULL({given}, {d:?}))"),
                None => format!("COUNT(DISTINCT {given})"),
            }
        })
        .collect();
    let sql = format!(
        "SELECT json_extract(body, '$.study') AS study, {} FROM tasks \
         WHERE study IS NOT NULL GROUP BY study",
        counts.join(", ")
    );
    (names, sql)
}

impl ReadPool {
    /// Every study, by name.
    pub fn studies(&self) -> Result<Vec<StudySummary>, StoreError> {
        self.with(|db| {
            let mut studies: BTreeMap<String, StudySummary> = BTreeMap::new();
            let mut counts = db.prepare_cached(
                "SELECT json_extract(body, '$.study') AS study, status, COUNT(*) FROM tasks \
                 WHERE study IS NOT NULL GROUP BY study, status",
            )?;
            let rows = counts.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            for row in rows {
                let (name, status, n) = row?;
                let n = u64::try_from(n).unwrap_or(0);
                let s = studies.entry(name.clone()).or_insert_with(|| StudySummary {
                    report: format!("/studies/{name}/report"),
                    name,
                    tasks: 0,
                    by_status: BTreeMap::new(),
                    swept: Vec::new(),
                });
                s.tasks += n;
                s.by_status.insert(status, n);
            }
            let (names, sql) = distinct_counts_sql();
            let mut distinct = db.prepare_cached(&sql)?;
            let rows = distinct.query_map([], |r| {
                let name: String = r.get(0)?;
                let swept: Vec<&'static str> = names
                    .iter()
                    .enumerate()
                    .filter_map(|(i, n)| match r.get::<_, i64>(i + 1) {
                        Ok(c) if c > 1 => Some(Ok(*n)),
                        Ok(_) => None,
                        Err(e) => Some(Err(e)),
                    })
                    .collect::<rusqlite::Result<_>>()?;
                Ok((name, swept))
            })?;
            for row in rows {
                let (name, swept) = row?;
                if let Some(s) = studies.get_mut(&name) {
                    s.swept = swept.into_iter().map(String::from).collect();
                }
            }
            Ok(studies.into_values().collect())
        })
    }

    /// How many tasks the study has (0: no such study).
    pub fn study_tasks(&self, study: &str) -> Result<u64, StoreError> {
        self.with(|db| {
            db.prepare_cached("SELECT COUNT(*) FROM tasks WHERE json_extract(body, '$.study') = ?1")?
                .query_row(params![study], |r| r.get::<_, i64>(0))
                .map(|n| u64::try_from(n).unwrap_or(0))
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::model::Priority;
    use crate::orchestrator::store::{open, NewTask, ReadPool, Store};

    #[test]
    fn studies_count_by_status_and_name_what_varies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let store = Store::start(open(&path, false).unwrap());
        // a default spelled out (density 0.5) and left out are one value
        let tasks = [
            (
                "a",
                r#""study":"s1","parameters":{"num_particles":16,"num_steps":1,"seed":1,"density":0.5}"#,
            ),
            (
                "b",
                r#""study":"s1","parameters":{"num_particles":25,"num_steps":1,"seed":2}"#,
            ),
            (
                "c",
                r#""study":"s2","parameters":{"num_particles":16,"num_steps":1,"seed":3,"temperature":2}"#,
            ),
            ("d", r#""parameters":{"num_particles":16,"num_steps":1,"seed":4}"#),
        ]
        .map(|(id, rest)| NewTask {
            task_id: id.into(),
            priority: Priority::Medium,
            algorithm: "python".into(),
            kernel: "reference".into(),
            body: format!(r#"{{"task_id":"{id}",{rest}}}"#),
            reuse_key: None,
        });
        actix_rt::System::new()
            .block_on(store.insert_batch(tasks.to_vec(), None, "api".into()))
            .unwrap();
        let pool = ReadPool::new(&path);
        let studies = pool.studies().unwrap();
        assert_eq!(studies.len(), 2);
        assert_eq!(studies[0].name, "s1");
        assert_eq!(studies[0].tasks, 2);
        assert_eq!(studies[0].by_status["queued"], 2);
        assert_eq!(studies[0].swept, ["num_particles"]);
        assert_eq!(studies[0].report, "/studies/s1/report");
        assert!(studies[1].swept.is_empty());
        assert_eq!(pool.study_tasks("s1").unwrap(), 2);
        assert_eq!(pool.study_tasks("nope").unwrap(), 0);
        drop(store);
    }
}
