//! The store's tests: inserts, ingest records, the state machine,
//! members, damage; staged files, kept counts and query plans.

use super::*;

fn task(id: &str, priority: u8) -> NewTask {
    NewTask {
        task_id: id.into(),
        priority: Priority::from_rank(priority),
        algorithm: "python".into(),
        kernel: "reference".into(),
        body: format!(r#"{{"task_id": "{id}", "parameters": {{"num_particles": 100}}}}"#),
        reuse_key: None,
    }
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    actix_rt::System::new().block_on(f)
}

#[test]
fn inserts_are_all_or_nothing_and_duplicates_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let store = Store::start(open(&path, false).unwrap());
    let r = block(store.insert_batch(vec![task("a", 1), task("b", 0)], None, "api".into())).unwrap();
    assert!(matches!(&r, InsertOutcome::Inserted { seqs, .. } if seqs.len() == 2));
    let r = block(store.insert_batch(vec![task("c", 1), task("b", 0)], None, "api".into())).unwrap();
    assert!(matches!(&r, InsertOutcome::Duplicates(d) if d.ids == ["b"]));
    let pool = ReadPool::new(&path);
    let (rows, total) = pool.tasks(&TaskFilter::default(), 10, 0).unwrap();
    assert_eq!(total, 2, "c must not be inserted");
    assert_eq!(rows[0].task_id, "a");
    // queue order: priority, then arrival
    let rows = block(store.page("reference".into(), None, 10)).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.task_id.as_str()).collect::<Vec<_>>(),
        ["b", "a"]
    );
}

#[test]
fn a_file_ingested_but_not_moved_is_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::start(open(&dir.path().join("q.db"), false).unwrap());
    let ingest = Ingest {
        name: "f.json".into(),
        size: 10,
        sha256: "abc".into(),
    };
    let insert = |ids: &[&str]| {
        block(store.insert_batch(
            ids.iter().map(|id| task(id, 1)).collect(),
            Some(ingest.clone()),
            "f.json".into(),
        ))
        .unwrap()
    };
    insert(&["x"]);
    assert_eq!(insert(&["x"]), InsertOutcome::AlreadyIngested);
    store.ingest_moved("abc", "f.json", "processed/f.json");
    // dropped again after it was moved: a real duplicate
    assert!(matches!(&insert(&["x"]), InsertOutcome::Duplicates(d) if d.ids.len() == 1));
}

#[test]
fn cancel_and_retry_follow_the_state_machine() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::start(open(&dir.path().join("q.db"), false).unwrap());
    block(store.insert_batch(vec![task("t", 1)], None, "api".into())).unwrap();
    let cancel = |id: &str| block(store.cancel(&id.into())).unwrap();
    assert!(matches!(cancel("t"), CancelOutcome::Cancelled { .. }));
    assert_eq!(
        cancel("t"),
        CancelOutcome::AlreadyEnded {
            status: TaskStatus::Cancelled
        }
    );
    assert_eq!(cancel("nope"), CancelOutcome::NotFound);
    let r = block(store.retry(&"t".into())).unwrap();
    assert!(matches!(&r, RetryOutcome::Queued { .. }));
    let r = block(store.retry(&"t".into())).unwrap();
    assert!(matches!(&r, RetryOutcome::NotRetryable { .. }));
}

#[test]
fn a_cancelled_running_task_has_its_attempt_closed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let store = Store::start(open(&path, false).unwrap());
    block(store.insert_batch(vec![task("t", 1)], None, "api".into())).unwrap();
    store.attempt_started(&"t".into(), 7.into(), &WorkerId::new("w"), 1.0);
    assert!(matches!(
        block(store.cancel(&"t".into())).unwrap(),
        CancelOutcome::Cancelled { .. }
    ));
    let (view, attempts) = ReadPool::new(&path).task("t").unwrap().unwrap();
    assert_eq!(view.status, TaskStatus::Cancelled);
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, Some(AttemptEnd::Cancelled));
    assert!(attempts[0].ended_at.is_some());
}

#[test]
fn a_requeued_task_has_no_error_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let store = Store::start(open(&path, false).unwrap());
    block(store.insert_batch(vec![task("t", 1)], None, "api".into())).unwrap();
    let w = WorkerId::new("w");
    store.attempt_started(&"t".into(), 1.into(), &w, 1.0);
    store.attempt_ended(1.into(), AttemptEnd::Failed, Some("boom".into()), 2.0);
    store.requeue(&"t".into(), 1, Some(5.0));
    block(store.persist_now(vec![])).unwrap();
    let read = ReadPool::new(&path);
    let (view, attempts) = read.task("t").unwrap().unwrap();
    assert_eq!(view.status, TaskStatus::Queued);
    assert_eq!(view.error, None);
    assert_eq!(
        attempts[0].error.as_deref(),
        Some("boom"),
        "the attempt keeps its error"
    );
    store.attempt_started(&"t".into(), 2.into(), &w, 6.0);
    store.ended(&"t".into(), TaskStatus::Failed, Some("boom again".into()), 7.0);
    block(store.persist_now(vec![])).unwrap();
    let (view, _) = read.task("t").unwrap().unwrap();
    assert_eq!(view.error.as_deref(), Some("boom again"));
}

#[test]
fn boots_count_up() {
    let dir = tempfile::tempdir().unwrap();
    let conn = open(&dir.path().join("q.db"), false).unwrap();
    assert_eq!(next_boot(&conn).unwrap(), 1);
    assert_eq!(next_boot(&conn).unwrap(), 2);
}

#[test]
fn joined_members_survive_a_restart_until_they_leave() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let joined = |id: &str, url: &str, instance: &str| Change::MemberJoined {
        id: WorkerId::new(id),
        url: url.into(),
        capacity: 2,
        algorithms: vec!["python".into(), "__sleep".into()],
        instance: instance.into(),
        secret_sha256: format!("digest of {instance}"),
        at: 1.0,
    };
    let store = Store::start(open(&path, false).unwrap());
    block(store.persist_now(vec![
        joined("a", "http://h:1", "i1"),
        joined("b", "http://h:2", "i2"),
        // joining again updates, never duplicates
        joined("a", "http://h:3", "i3"),
        Change::MemberLeft {
            id: WorkerId::new("b"),
        },
    ]))
    .unwrap();
    store.sync();
    let members = recover(&open(&path, false).unwrap()).unwrap().members;
    assert_eq!(
        members,
        [StoredMember {
            id: "a".into(),
            url: "http://h:3".into(),
            capacity: 2,
            algorithms: vec!["python".into(), "__sleep".into()],
            instance: "i3".into(),
            joined_at: 1.0,
            secret_sha256: "digest of i3".into(),
        }]
    );
}

#[test]
fn health_reports_a_database_damaged_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let conn = open(&path, false).unwrap();
    conn.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) \
         INSERT INTO tasks(task_id, priority, algorithm, kernel, status, body, source, created_at) \
         SELECT printf('t%05d', i), 1, 'python', 'reference', 'queued', printf('%0300d', i), 'test', 0 FROM n;",
    )
    .unwrap();
    conn.pragma_update(None, "wal_checkpoint", "TRUNCATE").unwrap();
    let store = Store::start(conn);
    let read = ReadPool::new(&path).sharing_faults(store.fault());
    assert_eq!(read.health(), Ok(()));
    schema::tests::damage_middle(&path);
    // a query that reads the damaged pages fails, and /health says so
    // from then on, without scanning anything itself
    assert!(read.tasks(&TaskFilter::default(), 5000, 0).is_err());
    let health = read.health().unwrap_err();
    assert!(health.contains("malformed"), "{health}");
    assert!(store.fault().get().is_some(), "the writer's view is the same");
}

/// Tasks staged but not committed, straight from the file.
fn staged_rows(path: &std::path::Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM ingest_staging", [], |r| r.get(0))
        .unwrap()
}

fn ids(n: std::ops::Range<usize>, prefix: &str, priority: u8) -> Vec<NewTask> {
    n.map(|i| task(&format!("{prefix}{i:03}"), priority)).collect()
}

#[test]
fn a_staged_file_is_invisible_until_committed_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let store = Store::start(open(&path, false).unwrap());
    let read = ReadPool::new(&path);
    store.stage_blocking("f1", ids(0..6, "low", 2)).unwrap();
    store.stage_blocking("f1", ids(0..4, "high", 0)).unwrap();
    assert_eq!(read.tasks(&TaskFilter::default(), 100, 0).unwrap().1, 0);
    assert!(
        read.counts().unwrap().0.is_empty(),
        "staged tasks are not counted"
    );
    let ingest = Ingest {
        name: "f.json".into(),
        size: 1,
        sha256: "s1".into(),
    };
    let out = block(store.commit_staged(
        "f1",
        10,
        Some(ingest.clone()),
        "f.json".into(),
        vec!["reference".into()],
        5,
    ))
    .unwrap();
    let StagedOutcome::Queued {
        count, first, more, ..
    } = out
    else {
        panic!("{out:?}")
    };
    assert_eq!(count, 10);
    // the first five in queue order: high before low, then file order
    let first: Vec<&str> = first.iter().map(|r| r.task_id.as_str()).collect();
    assert_eq!(first, ["high000", "high001", "high002", "high003", "low000"]);
    assert_eq!(more, ["reference"]);
    let (rows, total) = read.tasks(&TaskFilter::default(), 100, 0).unwrap();
    assert_eq!(total, 10);
    assert_eq!(rows[0].task_id, "low000", "stored in file order");
    assert_eq!(staged_rows(&path), 0);
    // the same file again before it was moved: recognised, nothing staged left
    store.stage_blocking("f2", ids(0..6, "low", 2)).unwrap();
    let again = block(store.commit_staged("f2", 6, Some(ingest), "f.json".into(), vec![], 5)).unwrap();
    assert_eq!(again, StagedOutcome::AlreadyIngested);
    assert_eq!(staged_rows(&path), 0);
}

#[test]
fn a_staged_file_with_a_stored_id_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let store = Store::start(open(&path, false).unwrap());
    block(store.insert_batch(vec![task("t002", 1)], None, "api".into())).unwrap();
    store.stage_blocking("f", ids(0..3, "t", 1)).unwrap();
    store.stage_blocking("f", ids(3..5, "t", 1)).unwrap();
    let out =
        block(store.commit_staged("f", 5, None, "f.json".into(), vec!["reference".into()], 100)).unwrap();
    let StagedOutcome::Duplicates(d) = out else {
        panic!("{out:?}")
    };
    assert_eq!(d.ids, ["t002"]);
    let (rows, total) = ReadPool::new(&path)
        .tasks(&TaskFilter::default(), 100, 0)
        .unwrap();
    assert_eq!((rows.len(), total), (1, 1), "nothing of the file is stored");
    assert_eq!(staged_rows(&path), 0);
}

#[test]
fn chunks_staged_before_a_crash_are_dropped_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let store = Store::start(open(&path, false).unwrap());
    store.stage_blocking("f", ids(0..3, "t", 1)).unwrap();
    store.sync();
    assert_eq!(staged_rows(&path), 3);
    drop(store);
    let _again = open(&path, false).unwrap();
    assert_eq!(staged_rows(&path), 0);
    assert_eq!(
        ReadPool::new(&path)
            .tasks(&TaskFilter::default(), 10, 0)
            .unwrap()
            .1,
        0
    );
}

/// Rows of three columns (a key, a status, a count), as a query over the
/// database at `path` gives them: kept counts and full counts compared.
pub(super) type Grouped = Vec<(i64, String, i64)>;

pub(super) fn grouped_rows(path: &std::path::Path, sql: &str) -> Grouped {
    let db = rusqlite::Connection::open(path).unwrap();
    let rows = db
        .prepare(sql)
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<Vec<_>>>()
        .unwrap();
    rows
}

/// The kept counts and a full count of `tasks`, by (priority, status).
fn kept_and_counted(path: &std::path::Path) -> (Grouped, Grouped) {
    let rows = |sql: &str| grouped_rows(path, sql);
    (
        rows("SELECT priority, status, n FROM task_counts WHERE n != 0 ORDER BY 1, 2"),
        rows("SELECT priority, status, COUNT(*) FROM tasks GROUP BY 1, 2 ORDER BY 1, 2"),
    )
}

#[test]
fn kept_counts_equal_a_full_count_after_a_mixed_workload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let store = Store::start(open(&path, false).unwrap());
    let check = |step: &str| {
        store.sync();
        let (kept, counted) = kept_and_counted(&path);
        assert_eq!(kept, counted, "after {step}");
    };
    block(store.insert_batch(ids(0..10, "api", 1), None, "api".into())).unwrap();
    store.stage_blocking("f", ids(0..20, "file", 0)).unwrap();
    block(store.commit_staged("f", 20, None, "f.json".into(), vec!["reference".into()], 5)).unwrap();
    check("ingest");
    let w = WorkerId::new("w1");
    for (i, id) in ["api000", "api001", "api002", "file000"].iter().enumerate() {
        store.attempt_started(&(*id).into(), (i as u64 + 1).into(), &w, 1.0);
    }
    check("starts");
    block(store.record_result(&"api000".into(), 1.into(), "{}".into(), &w, 2.0, false)).unwrap();
    store.ended(&"api001".into(), TaskStatus::Failed, Some("boom".into()), 2.0);
    store.requeue(&"api002".into(), 1, Some(5.0));
    check("complete, fail, requeue");
    block(store.cancel(&"file000".into())).unwrap();
    block(store.cancel(&"api003".into())).unwrap();
    check("cancel");
    block(store.retry(&"api001".into())).unwrap();
    block(store.retry(&"file000".into())).unwrap();
    check("retry");
    // a refused file changes nothing
    store.stage_blocking("g", ids(0..3, "api", 1)).unwrap();
    block(store.commit_staged("g", 3, None, "g.json".into(), vec![], 5)).unwrap();
    check("a refused file");
    store.sync();
    drop(store);
    // counts wrong on disk (a database from before them, or edited):
    // rebuilt at start
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("UPDATE task_counts SET n = n + 7; INSERT INTO task_counts VALUES (9, 'queued', 3);")
        .unwrap();
    let store = Store::start(open(&path, false).unwrap());
    store.sync();
    let (kept, counted) = kept_and_counted(&path);
    assert_eq!(kept, counted, "after a restart");
    let read = ReadPool::new(&path);
    let (by_status, _) = read.counts().unwrap();
    let queued = by_status
        .iter()
        .find(|(s, _)| *s == TaskStatus::Queued)
        .unwrap()
        .1;
    let filter = TaskFilter {
        status: Some(TaskStatus::Queued),
        ..Default::default()
    };
    assert_eq!(read.tasks(&filter, 1, 0).unwrap().1, queued);
}

#[test]
fn every_filter_of_get_tasks_reads_an_index() {
    use crate::model::Priority;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let db = open(&path, false).unwrap();
    let filters = [
        TaskFilter {
            status: Some(TaskStatus::Queued),
            ..Default::default()
        },
        TaskFilter {
            priority: Some(Priority::High),
            ..Default::default()
        },
        TaskFilter {
            worker: Some("w1".into()),
            ..Default::default()
        },
        TaskFilter {
            algorithm: Some("python".into()),
            ..Default::default()
        },
        TaskFilter {
            algorithm: Some("reference".into()),
            ..Default::default()
        },
        TaskFilter {
            source: Some("tareas.json".into()),
            ..Default::default()
        },
        TaskFilter {
            status: Some(TaskStatus::Failed),
            priority: Some(Priority::Low),
            worker: Some("w1".into()),
            algorithm: Some("reference".into()),
            source: Some("api".into()),
            order: TaskOrder::Arrival,
        },
    ];
    let plan = |sql: &str, args: &[rusqlite::types::Value]| -> String {
        db.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(rusqlite::params_from_iter(args.iter()), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap()
            .join("; ")
    };
    for filter in &filters {
        let q = views::ListQuery::of(filter);
        let mut args = q.args.clone();
        args.extend([100i64.into(), 0i64.into()]);
        for (sql, args) in [(&q.page_sql, &args), (&q.count_sql, &q.count_args)] {
            let plan = plan(sql, args);
            assert!(!plan.contains("SCAN tasks"), "{filter:?}: {sql}: {plan}");
            // a sort would read every match before the first page
            assert!(!plan.contains("TEMP B-TREE"), "{filter:?}: {sql}: {plan}");
            assert!(
                plan.contains("INDEX") || plan.contains("task_counts"),
                "{filter:?}: {plan}"
            );
        }
        // each sort: with many matches, the sort's index walked in order
        // (no sort of every match); with few (at most SORT_MATCHES_MAX),
        // the filter's index, then a sort of those few
        for order in [TaskOrder::Created, TaskOrder::CreatedDesc, TaskOrder::Priority] {
            let sorted = TaskFilter {
                order,
                ..filter.clone()
            };
            let q = views::ListQuery::of(&sorted);
            let full_scan = |p: &str| p.split("; ").any(|step| step == "SCAN tasks");
            let many = plan(q.page_for(SORT_MATCHES_MAX + 1), &args);
            assert!(!many.contains("TEMP B-TREE"), "{sorted:?}: {many}");
            assert!(many.contains("INDEX") && !full_scan(&many), "{sorted:?}: {many}");
            let few = plan(q.page_for(SORT_MATCHES_MAX), &args);
            assert!(few.contains("INDEX") && !full_scan(&few), "{sorted:?}: {few}");
        }
    }
    // a sort and no filter: the sort's index, in order
    for order in [TaskOrder::Created, TaskOrder::CreatedDesc, TaskOrder::Priority] {
        let q = views::ListQuery::of(&TaskFilter {
            order,
            ..Default::default()
        });
        let p = plan(q.page_for(1_000_000), &[100i64.into(), 0i64.into()]);
        assert!(
            p.contains("USING INDEX") && !p.contains("TEMP B-TREE"),
            "{order:?}: {p}"
        );
    }
    // the file filter's count reads kept counts, never the file's tasks
    for status in [None, Some(TaskStatus::Queued)] {
        let q = views::ListQuery::of(&TaskFilter {
            status,
            ..filters[5].clone()
        });
        let count = plan(&q.count_sql, &q.count_args);
        assert!(
            count.contains("ingests_name")
                && count.contains("SEARCH c USING PRIMARY KEY (ingest_id=?")
                && count.contains("tasks_unfiled"),
            "{count}"
        );
        assert!(
            !count.replace("SCAN CONSTANT ROW", "").contains("SCAN"),
            "{count}"
        );
    }
    let one = plan(
        "SELECT * FROM tasks WHERE task_id = ?1",
        &[rusqlite::types::Value::from("x".to_string())],
    );
    assert!(one.contains("USING INDEX"), "GET /tasks/{{id}}: {one}");
    let attempts = plan(
        "SELECT * FROM attempts WHERE task_id = ?1 ORDER BY started_at, attempt_id",
        &[rusqlite::types::Value::from("x".to_string())],
    );
    assert!(attempts.contains("attempts_task"), "{attempts}");
}

/// A large file's move into the queue wrote its pages to the log in one
/// transaction; once the writer is idle the log is emptied, not kept at
/// that size for ever.
#[test]
fn the_write_ahead_log_is_emptied_after_a_large_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let store = Store::start(open(&path, false).unwrap());
    let n = 30_000;
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        let tasks = chunk.iter().map(|i| task(&format!("t{i:06}"), 1)).collect();
        store.stage_blocking("big", tasks).unwrap();
    }
    let out =
        block(store.commit_staged("big", n, None, "big.json".into(), vec!["reference".into()], 5)).unwrap();
    assert!(matches!(out, StagedOutcome::Queued { count, .. } if count == n));
    let wal = || std::fs::metadata(dir.path().join("q.db-wal")).map_or(0, |m| m.len());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while wal() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the log still holds {} bytes",
            wal()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // the tasks are all in the database file itself
    let read = ReadPool::new(&path);
    assert_eq!(read.tasks(&TaskFilter::default(), 1, 0).unwrap().1, n as u64);
}
