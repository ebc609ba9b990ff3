//! Purge: only ended tasks whose end is old and whose record is on disk
//! go; the kept counts stay right; files none of whose tasks are left are
//! forgotten; a dry run removes nothing and counts the same.

use super::*;
use crate::model::{AttemptEnd, TaskId, WorkerId};
use crate::orchestrator::store::{self, Change, CheckChange, Ingest, InsertOutcome, NewTask, ReadPool};

fn task(id: &str) -> NewTask {
    NewTask::python(id, "{}")
}

fn ended(id: &str, status: TaskStatus, at: f64) -> Change {
    Change::Ended {
        task_id: id.into(),
        status,
        result: (status == TaskStatus::Completed).then(|| "{}".to_string()),
        error: (status != TaskStatus::Completed).then(|| "boom".to_string()),
        worker_id: Some(WorkerId::new("w1")),
        at,
    }
}

fn ingest(name: &str) -> Ingest {
    Ingest {
        name: name.into(),
        size: 10,
        sha256: format!("sha-{name}"),
    }
}

fn counts(read: &ReadPool) -> Vec<(TaskStatus, u64)> {
    read.counts().unwrap().0
}

#[test]
fn only_old_ended_written_tasks_go_and_counts_stay_right() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("q.db");
    actix_rt::System::new().block_on(async {
        let s = Store::start(store::open(&db, false).unwrap());
        let old = ["c1", "c2", "f1", "f2", "q1", "r1"].map(task).to_vec();
        s.insert_batch(old, Some(ingest("old.json")), "old.json".into())
            .await
            .unwrap();
        s.insert_batch(vec![task("g1")], Some(ingest("gone.json")), "gone.json".into())
            .await
            .unwrap();
        s.insert_batch(vec![task("n1")], Some(ingest("new.json")), "new.json".into())
            .await
            .unwrap();
        for name in ["old.json", "gone.json", "new.json"] {
            s.ingest_moved(&format!("sha-{name}"), name, &format!("processed/{name}"));
        }
        let w = WorkerId::new("w1");
        s.persist_now(vec![
            Change::AttemptStarted {
                task_id: "f1".into(),
                attempt_id: 7.into(),
                worker_id: w.clone(),
                at: 900.0,
            },
            // f1's attempt resumed from a checkpoint: its start step is
            // a row that must go with it
            Change::AttemptResumes {
                task_id: "f1".into(),
                attempt_id: 7.into(),
                step: 40,
            },
            // and a verification waited for it (as if it had completed)
            Change::Check(CheckChange::Waiting {
                task_id: "f1".into(),
                votes: vec![(WorkerId::new("w1"), 7)],
                tries: 0,
            }),
            Change::AttemptEnded {
                attempt_id: 7.into(),
                end: AttemptEnd::Failed,
                error: Some("boom".into()),
                at: 1000.0,
            },
            ended("f1", TaskStatus::Failed, 1000.0),
            ended("c1", TaskStatus::Completed, 1000.0),
            ended("c2", TaskStatus::Completed, 1000.0),
            ended("g1", TaskStatus::Completed, 1000.0),
            ended("n1", TaskStatus::Completed, 5000.0),
        ])
        .await
        .unwrap();
        // c1, g1, n1 and f1's record reach their files; c2 does not
        s.assign_results_file(vec!["c1".into(), "g1".into(), "n1".into()], "r.json")
            .await
            .unwrap();
        s.mark_written("r.json").await.unwrap();
        assert_eq!(s.claim_failures("x.json", 10).await.unwrap().len(), 1);
        s.failures_written("x.json").await.unwrap();
        // f2 fails too, its record not yet in a file; r1 runs; q1 waits
        s.persist_now(vec![
            ended("f2", TaskStatus::Failed, 1000.0),
            Change::AttemptStarted {
                task_id: "r1".into(),
                attempt_id: 8.into(),
                worker_id: w,
                at: 900.0,
            },
            Change::AttemptResumes {
                task_id: "r1".into(),
                attempt_id: 8.into(),
                step: 10,
            },
        ])
        .await
        .unwrap();

        let dry = s.purge(2000.0, true, false).await.unwrap();
        let expected = PurgeReport {
            dry_run: true,
            before: iso_at(2000.0),
            tasks: 3,
            completed: 2,
            failed: 1,
            cancelled: 0,
            attempts: 1,
            failure_records: 1,
            files: 1,
            kept_unwritten: 2,
            space: dry.space,
            vacuumed: false,
        };
        assert_eq!(dry, expected);
        let read = ReadPool::new(&db);
        let s2 = s.clone();
        actix_rt::task::spawn_blocking(move || s2.sync()).await.unwrap();
        let before = counts(&read);
        assert_eq!(
            read.tasks(&Default::default(), 100, 0).unwrap().1,
            8,
            "a dry run removes nothing"
        );

        let done = s.purge(2000.0, false, true).await.unwrap();
        assert_eq!(
            done,
            PurgeReport {
                dry_run: false,
                vacuumed: true,
                space: done.space,
                ..expected
            }
        );
        assert!(done.space.file_bytes > 0);
        let s2 = s.clone();
        actix_rt::task::spawn_blocking(move || s2.sync()).await.unwrap();
        for gone in ["c1", "f1", "g1"] {
            assert!(read.task(gone).unwrap().is_none(), "{gone} was purged");
        }
        for kept in ["c2", "f2", "q1", "r1", "n1"] {
            assert!(read.task(kept).unwrap().is_some(), "{kept} is kept");
        }
        let by = |v: &[(TaskStatus, u64)], st| v.iter().find(|(k, _)| *k == st).map_or(0, |(_, n)| *n);
        let after = counts(&read);
        assert_eq!(
            by(&after, TaskStatus::Completed),
            by(&before, TaskStatus::Completed) - 2
        );
        assert_eq!(
            by(&after, TaskStatus::Failed),
            by(&before, TaskStatus::Failed) - 1
        );
        assert_eq!(by(&after, TaskStatus::Queued), 1);
        assert_eq!(by(&after, TaskStatus::Running), 1);
        assert_eq!(read.tasks(&Default::default(), 100, 0).unwrap().1, 5);
        // a second purge finds nothing more
        assert_eq!(s.purge(2000.0, false, false).await.unwrap().tasks, 0);
        // the ids are unknown now: the same ids are accepted again
        let again = s
            .insert_batch(vec![task("c1"), task("g1")], None, "api".into())
            .await
            .unwrap();
        assert!(matches!(again, InsertOutcome::Inserted { .. }), "{again:?}");
        let conn = rusqlite::Connection::open(&db).unwrap();
        let names: Vec<String> = conn
            .prepare("SELECT name FROM ingests ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(names, ["new.json", "old.json"], "gone.json has no task left");
        // a forgotten file leaves no kept counts behind: a later file given
        // its id (ids are reused) must not inherit them
        let orphans: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM file_counts WHERE ingest_id NOT IN (SELECT id FROM ingests)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(orphans, 0);
        let attempts: i64 = conn
            .query_row("SELECT COUNT(*) FROM attempts WHERE task_id = 'f1'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(attempts, 0);
        // the start steps of purged attempts go with them; a kept task's stay
        let steps: Vec<String> = conn
            .prepare("SELECT task_id FROM attempt_start_steps ORDER BY task_id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(steps, ["r1"], "no orphan start step is left");
        let checks: i64 = conn
            .query_row("SELECT COUNT(*) FROM verify_checks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(checks, 0, "a purged task's waiting check goes with it");
    });
}

/// Windows: a purge of more tasks than one window looks at goes through
/// all of them.
#[test]
fn a_purge_goes_through_every_window() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("q.db");
    actix_rt::System::new().block_on(async {
        let s = Store::start(store::open(&db, false).unwrap());
        let n = WINDOW * 2 + 3;
        let ids: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
        s.insert_batch(ids.iter().map(|i| task(i)).collect(), None, "api".into())
            .await
            .unwrap();
        // every other task ends, and is written
        let ended_ids: Vec<String> = ids.iter().step_by(2).cloned().collect();
        s.persist_now(
            ended_ids
                .iter()
                .map(|i| ended(i, TaskStatus::Completed, 10.0))
                .collect(),
        )
        .await
        .unwrap();
        s.assign_results_file(ended_ids.iter().map(TaskId::from).collect(), "r.json")
            .await
            .unwrap();
        s.mark_written("r.json").await.unwrap();
        let report = s.purge(20.0, false, false).await.unwrap();
        assert_eq!(report.tasks, ended_ids.len() as u64);
        assert!(report.space.free_bytes > 0, "{report:?}");
        // a vacuum shrinks the file on disk, not only the count of pages
        let s2 = s.clone();
        actix_rt::task::spawn_blocking(move || s2.sync_and_checkpoint())
            .await
            .unwrap();
        let before = std::fs::metadata(&db).unwrap().len();
        let vacuumed = s.purge(20.0, false, true).await.unwrap();
        let after = std::fs::metadata(&db).unwrap().len();
        assert!(after < before, "{before} → {after}");
        assert_eq!(after, vacuumed.space.file_bytes);
        assert_eq!(vacuumed.space.free_bytes, 0);
    });
}
