//! Group commits: a folded group commits exactly what its changes applied
//! one by one commit, folds stop at what could tell the difference, and a
//! failing job is undone alone while the rest of its group commits.

use rusqlite::types::Value;
use rusqlite::Connection;

use super::writer::{Job, Op};
use super::*;

fn conn(dir: &tempfile::TempDir, name: &str) -> Connection {
    let conn = open(&dir.path().join(name), false).unwrap();
    conn.execute_batch(
        "INSERT INTO ingests(id, name, size, sha256, tasks, ingested_at) VALUES (7, 'f.json', 1, 'abc', 0, 0);",
    )
    .unwrap();
    for (id, priority) in [("a", 0), ("b", 1), ("c", 2), ("d", 1)] {
        conn.execute(
            "INSERT INTO tasks(task_id, priority, algorithm, kernel, status, body, source, created_at, ingest_id)
             VALUES (?1, ?2, 'python', 'reference', 'queued', '{}', 'f.json', 0, 7)",
            rusqlite::params![id, priority],
        )
        .unwrap();
    }
    super::files::file_queued(&conn, 7, 4).unwrap();
    conn
}

fn job(changes: Vec<Change>) -> Job {
    Job {
        ops: changes.into_iter().map(Op::Change).collect(),
        reply: None,
    }
}

fn started(task: &str, attempt: u64, at: f64) -> Change {
    Change::AttemptStarted {
        task_id: task.into(),
        attempt_id: AttemptId::new(attempt),
        worker_id: WorkerId::new("w1"),
        at,
    }
}

fn attempt_ended(attempt: u64, end: AttemptEnd, at: f64) -> Change {
    Change::AttemptEnded {
        attempt_id: AttemptId::new(attempt),
        end,
        error: (end != AttemptEnd::Completed).then(|| "it broke".to_string()),
        at,
    }
}

fn ended(task: &str, status: TaskStatus, at: f64) -> Change {
    Change::Ended {
        task_id: task.into(),
        status,
        result: (status == TaskStatus::Completed).then(|| r#"{"energy": 1}"#.to_string()),
        error: (status != TaskStatus::Completed).then(|| "it broke".to_string()),
        worker_id: (status == TaskStatus::Completed).then(|| WorkerId::new("w2")),
        at,
    }
}

/// Every row of the tables a task's changes touch, in a fixed order.
fn snapshot(conn: &Connection) -> Vec<Vec<Value>> {
    let mut rows = Vec::new();
    for sql in [
        "SELECT * FROM tasks ORDER BY seq",
        "SELECT * FROM attempts ORDER BY attempt_id",
        "SELECT * FROM task_counts WHERE n > 0 ORDER BY priority, status",
        "SELECT * FROM file_counts WHERE n > 0 ORDER BY ingest_id, status",
        "SELECT task_id, file, written FROM failure_records ORDER BY id",
    ] {
        let mut st = conn.prepare(sql).unwrap();
        let n = st.column_count();
        let mut q = st.query([]).unwrap();
        while let Some(r) = q.next().unwrap() {
            rows.push((0..n).map(|i| r.get::<_, Value>(i).unwrap()).collect());
        }
    }
    rows
}

/// A group of every kind of start and end, and what stands between them.
fn workload() -> Vec<Vec<Change>> {
    use AttemptEnd as E;
    use TaskStatus as S;
    vec![
        // a: started and completed, with b's start and c's changes between
        vec![started("a", 1, 10.0)],
        vec![started("b", 2, 11.0)],
        vec![started("c", 3, 11.5), attempt_ended(3, E::Failed, 11.6)],
        vec![Change::Requeue {
            task_id: "c".into(),
            attempts: 1,
            next_at: Some(20.0),
        }],
        vec![
            attempt_ended(1, E::Completed, 12.0),
            ended("a", S::Completed, 12.0),
        ],
        // b fails for good
        vec![attempt_ended(2, E::Failed, 13.0), ended("b", S::Failed, 13.0)],
        // c again, completed
        vec![started("c", 4, 21.0)],
        vec![
            attempt_ended(4, E::Completed, 22.0),
            ended("c", S::Completed, 22.0),
        ],
        // d: started, then a results file named between its start and end
        vec![started("d", 5, 23.0)],
        vec![Change::AssignResultsFile {
            task_ids: vec!["a".into()],
            file: "results_1.json".into(),
        }],
        vec![
            attempt_ended(5, E::Completed, 24.0),
            ended("d", S::Completed, 24.0),
        ],
    ]
}

#[test]
fn a_folded_group_commits_what_its_changes_one_by_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = || workload().into_iter().map(job).collect::<Vec<_>>();
    // folded, in one group
    let mut folded = conn(&dir, "folded.db");
    let jobs_folded = jobs();
    assert_eq!(
        super::fold::plan(&jobs_folded).tasks(),
        3,
        "a, b and the second attempt of c fold; d does not (a results file came between)"
    );
    let (outcome, replies) =
        super::group::commit(&mut folded, &jobs_folded, &DbFault::default(), "folded.db");
    assert!(outcome.is_ok() && replies.iter().all(Result::is_ok));
    // each job in a group of its own: nothing folds
    let mut plain = conn(&dir, "plain.db");
    for j in jobs() {
        let (outcome, _) = super::group::commit(&mut plain, &[j], &DbFault::default(), "plain.db");
        assert!(outcome.is_ok());
    }
    let (a, b) = (snapshot(&folded), snapshot(&plain));
    assert!(a.len() > 10, "the snapshot reads the rows");
    assert_eq!(a, b);
}

#[test]
fn a_page_read_or_a_cancel_between_start_and_end_stops_the_fold() {
    let kernel: KernelName = "reference".into();
    for barrier in [
        Op::Page {
            kernel,
            after: None,
            limit: 10,
        },
        Op::Cancel { task_id: "b".into() },
    ] {
        let jobs = vec![
            job(vec![started("a", 1, 1.0)]),
            Job {
                ops: vec![barrier],
                reply: None,
            },
            job(vec![
                attempt_ended(1, AttemptEnd::Completed, 2.0),
                ended("a", TaskStatus::Completed, 2.0),
            ]),
        ];
        assert_eq!(super::fold::plan(&jobs).tasks(), 0);
    }
}

#[test]
fn a_failing_job_is_undone_alone_and_the_rest_of_its_group_commits() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = conn(&dir, "q.db");
    // a job that cannot apply: its table is gone
    db.execute_batch("DROP TABLE members").unwrap();
    let jobs = vec![
        job(vec![started("a", 1, 1.0)]),
        Job {
            ops: vec![Op::Change(Change::MemberLeft {
                id: WorkerId::new("w1"),
            })],
            reply: None,
        },
        job(vec![
            attempt_ended(1, AttemptEnd::Completed, 2.0),
            ended("a", TaskStatus::Completed, 2.0),
        ]),
    ];
    let (outcome, replies) = super::group::commit(&mut db, &jobs, &DbFault::default(), "q.db");
    assert!(outcome.is_ok(), "the group commits");
    assert!(replies[0].is_ok() && replies[2].is_ok());
    assert!(replies[1].is_err(), "the failing job is said");
    let (status, attempts): (String, i64) = db
        .query_row(
            "SELECT status, attempts FROM tasks WHERE task_id = 'a'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((status.as_str(), attempts), ("completed", 1));
    let outcome: String = db
        .query_row("SELECT outcome FROM attempts WHERE attempt_id = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(outcome, "completed");
}
