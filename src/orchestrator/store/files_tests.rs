//! Tests of file records: ingested and rejected files listed with their
//! counts, the counts kept equal to a full count through a mixed
//! workload, a database from before file records migrated, known ids.

use super::tests::{grouped_rows, Grouped};
use super::*;

fn task(id: &str) -> NewTask {
    NewTask::python(
        id,
        format!(r#"{{"task_id": "{id}", "parameters": {{"num_particles": 100}}}}"#),
    )
}

fn ids(prefix: &str, n: usize) -> Vec<NewTask> {
    (0..n).map(|i| task(&format!("{prefix}{i:03}"))).collect()
}

fn ingest(name: &str, sha: &str) -> Ingest {
    Ingest {
        name: name.into(),
        size: 10,
        sha256: sha.into(),
    }
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    actix_rt::System::new().block_on(f)
}

/// Drops `n` tasks as file `name` through the staged path.
fn drop_staged(store: &Store, name: &str, sha: &str, prefix: &str, n: usize) -> StagedOutcome {
    store.stage_blocking(sha, ids(prefix, n)).unwrap();
    block(store.commit_staged(
        sha,
        n,
        Some(ingest(name, sha)),
        name.into(),
        vec!["reference".into()],
        100,
    ))
    .unwrap()
}

/// `file_counts` and a full count of `tasks`, by (file, status).
fn kept_and_counted(path: &std::path::Path) -> (Grouped, Grouped) {
    let rows = |sql: &str| grouped_rows(path, sql);
    (
        rows("SELECT ingest_id, status, n FROM file_counts WHERE n != 0 ORDER BY 1, 2"),
        rows(
            "SELECT ingest_id, status, COUNT(*) FROM tasks WHERE ingest_id IS NOT NULL
             GROUP BY 1, 2 ORDER BY 1, 2",
        ),
    )
}

#[test]
fn ingested_and_rejected_files_are_listed_newest_first_with_their_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let store = Store::start(open(&path, false).unwrap());
    assert!(matches!(
        drop_staged(&store, "a.json", "sa", "a", 5),
        StagedOutcome::Queued { count: 5, .. }
    ));
    // the same name dropped again with other tasks: a record of its own
    let small =
        block(store.insert_batch(ids("b", 3), Some(ingest("a.json", "sb")), "a.json".into())).unwrap();
    assert!(matches!(small, InsertOutcome::Inserted { .. }));
    block(store.insert_batch(ids("api", 2), None, "api".into())).unwrap();
    let report = dir.path().join("bad.json.error.txt");
    std::fs::write(&report, "bad.json was rejected: 2 problems found.\n").unwrap();
    store.file_rejected(Rejected {
        name: "bad.json".into(),
        size: 7,
        stored_as: "task_queues/rejected/bad.json".into(),
        problems: 2,
        summary: "tasks[0].seed: expected a number".into(),
        report: report.to_string_lossy().into_owned(),
        at: 5.0,
    });
    store.ingest_moved("sa", "a.json", "task_queues/processed/x_a.json");
    let w = WorkerId::new("w");
    store.attempt_started(&"a000".into(), 1.into(), &w, 1.0);
    block(store.record_result(&"a000".into(), 1.into(), "{}".into(), &w, 2.0, false)).unwrap();
    store.attempt_started(&"a001".into(), 2.into(), &w, 1.0);
    block(store.cancel(&"a002".into())).unwrap();
    store.sync();

    let read = ReadPool::new(&path);
    let (files, total) = read.files(None, 10, 0).unwrap();
    assert_eq!(total, 3);
    let names: Vec<(&str, FileState)> = files.iter().map(|f| (f.name.as_str(), f.state)).collect();
    assert_eq!(
        names,
        [
            ("bad.json", FileState::Rejected),
            ("a.json", FileState::Ingested),
            ("a.json", FileState::Ingested)
        ]
    );
    let (bad, second, first) = (&files[0], &files[1], &files[2]);
    assert_eq!(
        (bad.tasks, bad.problems, bad.counts.clone()),
        (0, 2, StatusCounts::default())
    );
    assert_eq!(bad.summary.as_deref(), Some("tasks[0].seed: expected a number"));
    assert_eq!(bad.stored_as.as_deref(), Some("task_queues/rejected/bad.json"));
    assert_eq!((second.tasks, second.counts.queued), (3, 3));
    assert_eq!(second.stored_as, None, "not moved yet");
    assert_eq!(first.tasks, 5);
    assert_eq!(
        first.counts,
        StatusCounts {
            queued: 2,
            running: 1,
            completed: 1,
            failed: 0,
            cancelled: 1
        }
    );
    assert_eq!(first.stored_as.as_deref(), Some("task_queues/processed/x_a.json"));
    assert_eq!((first.problems, first.summary.clone()), (0, None));
    // GET /tasks?file= counts the file's tasks from the kept counts
    let of = |source: &str, status: Option<TaskStatus>| {
        let filter = TaskFilter {
            source: Some(source.into()),
            status,
            ..Default::default()
        };
        read.tasks(&filter, 1, 0).unwrap().1
    };
    assert_eq!(of("a.json", None), 8, "both drops of a.json");
    assert_eq!(of("a.json", Some(TaskStatus::Queued)), 5);
    assert_eq!(of("a.json", Some(TaskStatus::Cancelled)), 1);
    assert_eq!((of("api", None), of("api", Some(TaskStatus::Queued))), (2, 2));
    assert_eq!(of("bad.json", None), 0);
    // by state, and paged
    let (rejected, n) = read.files(Some(FileState::Rejected), 10, 0).unwrap();
    assert_eq!((rejected.len(), n), (1, 1));
    let (page, n) = read.files(Some(FileState::Ingested), 1, 1).unwrap();
    assert_eq!((page[0].id, n), (first.id, 2));
    // one file, its report read from disk
    let one = read.file(bad.id).unwrap().unwrap();
    let text = read_report(one.report_path.as_deref().unwrap()).unwrap();
    assert!(text.starts_with("bad.json was rejected"), "{text}");
    assert!(read.file(999).unwrap().is_none());
    std::fs::remove_file(&report).unwrap();
    assert_eq!(
        read_report(&report.to_string_lossy()),
        None,
        "deleted since: null"
    );
}

#[test]
fn a_report_that_is_a_link_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "do not show").unwrap();
    let link = dir.path().join("x.json.error.txt");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    assert_eq!(read_report(&link.to_string_lossy()), None);
}

#[test]
fn a_refused_file_leaves_no_record_and_no_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let store = Store::start(open(&path, false).unwrap());
    block(store.insert_batch(ids("t", 1), None, "api".into())).unwrap();
    let out = drop_staged(&store, "dup.json", "sd", "t", 3);
    let StagedOutcome::Duplicates(d) = out else {
        panic!("{out:?}")
    };
    assert_eq!(d.ids, ["t000"]);
    assert_eq!(d.first[0].status, TaskStatus::Queued);
    assert_eq!(d.by_status.queued, 1);
    let dup =
        block(store.insert_batch(ids("t", 2), Some(ingest("d2.json", "s2")), "d2.json".into())).unwrap();
    assert!(matches!(dup, InsertOutcome::Duplicates(d) if d.ids == ["t000"]));
    store.sync();
    assert_eq!(ReadPool::new(&path).files(None, 10, 0).unwrap().1, 0);
    assert_eq!(kept_and_counted(&path), (vec![], vec![]));
}

#[test]
fn duplicates_say_where_the_results_are() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let store = Store::start(open(&path, false).unwrap());
    block(store.insert_batch(ids("t", 3), None, "api".into())).unwrap();
    let w = WorkerId::new("w");
    store.attempt_started(&"t000".into(), 1.into(), &w, 1.0);
    block(store.record_result(&"t000".into(), 1.into(), "{}".into(), &w, 2.0, false)).unwrap();
    block(store.assign_results_file(vec!["t000".into()], "results/task_results_1.json")).unwrap();
    store.ended(&"t001".into(), TaskStatus::Failed, Some("boom".into()), 2.0);
    let out = drop_staged(&store, "copy.json", "sc", "t", 3);
    let StagedOutcome::Duplicates(d) = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        d.first,
        [
            KnownTask {
                task_id: "t000".into(),
                status: TaskStatus::Completed,
                results_file: Some("results/task_results_1.json".into())
            },
            KnownTask {
                task_id: "t001".into(),
                status: TaskStatus::Failed,
                results_file: None
            },
            KnownTask {
                task_id: "t002".into(),
                status: TaskStatus::Queued,
                results_file: None
            },
        ]
    );
    // the same answer for any list of ids, as POST /tasks/known gives it
    let read = ReadPool::new(&path);
    let known = read
        .known(&["nope".into(), "t001".into(), "t000".into()])
        .unwrap();
    assert_eq!(known, [d.first[1].clone(), d.first[0].clone()]);
}

#[test]
fn kept_file_counts_equal_a_full_count_after_a_mixed_workload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let store = Store::start(open(&path, false).unwrap());
    let check = |step: &str| {
        store.sync();
        let (kept, counted) = kept_and_counted(&path);
        assert_eq!(kept, counted, "after {step}");
        assert!(!counted.is_empty());
    };
    drop_staged(&store, "f.json", "s1", "f", 20);
    block(store.insert_batch(ids("g", 10), Some(ingest("g.json", "s2")), "g.json".into())).unwrap();
    block(store.insert_batch(ids("api", 5), None, "api".into())).unwrap();
    check("ingest");
    let w = WorkerId::new("w1");
    for (i, id) in ["f000", "f001", "f002", "g000", "g001", "api000"]
        .iter()
        .enumerate()
    {
        store.attempt_started(&(*id).into(), (i as u64 + 1).into(), &w, 1.0);
    }
    check("starts");
    block(store.record_result(&"f000".into(), 1.into(), "{}".into(), &w, 2.0, false)).unwrap();
    store.ended(&"f001".into(), TaskStatus::Failed, Some("boom".into()), 2.0);
    store.requeue(&"f002".into(), 1, Some(5.0));
    store.requeue(&"g000".into(), 1, None);
    check("complete, fail, requeue");
    block(store.cancel(&"g001".into())).unwrap();
    block(store.cancel(&"f010".into())).unwrap();
    block(store.cancel(&"api000".into())).unwrap();
    check("cancel");
    block(store.retry(&"f001".into())).unwrap();
    block(store.retry(&"g001".into())).unwrap();
    check("retry");
    store.attempt_started(&"f001".into(), 9.into(), &w, 3.0);
    block(store.record_result(&"f001".into(), 9.into(), "{}".into(), &w, 4.0, false)).unwrap();
    // a refused file changes nothing
    drop_staged(&store, "h.json", "s3", "g", 3);
    check("a refused file");
    // deleted tasks (history purged) leave the count
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("DELETE FROM tasks WHERE task_id IN ('f000', 'g005')")
        .unwrap();
    check("a delete");
}

#[test]
fn a_database_from_before_file_records_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let store = Store::start(open(&path, false).unwrap());
    drop_staged(&store, "a.json", "s1", "a", 4);
    block(store.insert_batch(ids("x", 2), None, "api".into())).unwrap();
    drop_staged(&store, "a.json", "s2", "b", 3);
    drop_staged(&store, "c.json", "s3", "c", 2);
    block(store.cancel(&"b001".into())).unwrap();
    store.sync();
    drop(store);
    // as an earlier version left it: no file columns, no counts
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch(
        "DROP TRIGGER file_counts_update; DROP TRIGGER file_counts_delete;
         DROP TABLE file_counts; DROP INDEX ingests_state; DROP INDEX ingests_name; DROP INDEX tasks_source;
         DROP INDEX tasks_unfiled; DROP INDEX tasks_created;
         ALTER TABLE tasks DROP COLUMN ingest_id;
         ALTER TABLE ingests DROP COLUMN state; ALTER TABLE ingests DROP COLUMN problems;
         ALTER TABLE ingests DROP COLUMN summary; ALTER TABLE ingests DROP COLUMN report;",
    )
    .unwrap();
    drop(db);
    let store = Store::start(open(&path, false).unwrap());
    store.sync();
    let (kept, counted) = kept_and_counted(&path);
    assert_eq!(kept, counted);
    let (files, _) = ReadPool::new(&path).files(None, 10, 0).unwrap();
    let summary: Vec<(&str, u64, u64, u64)> = files
        .iter()
        .map(|f| (f.name.as_str(), f.tasks, f.counts.queued, f.counts.cancelled))
        .collect();
    // each drop of a.json has its own tasks: the second had b000..b002
    assert_eq!(
        summary,
        [("c.json", 2, 2, 0), ("a.json", 3, 2, 1), ("a.json", 4, 4, 0)]
    );
    let db = rusqlite::Connection::open(&path).unwrap();
    let of = |id: &str| -> Option<i64> {
        db.query_row("SELECT ingest_id FROM tasks WHERE task_id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap()
    };
    assert_eq!(of("x000"), None, "tasks of the API belong to no file");
    assert_eq!(of("b002"), Some(files[1].id));
    assert_eq!(of("a000"), Some(files[2].id));
}
