use serde_json::json;

use super::*;
use crate::model::{TaskStatus, WorkerId};
use crate::orchestrator::store::{self, Change, NewTask, ReadPool};
use crate::util::time::unix_now;

fn result(id: &str) -> TaskResult {
    let mut r = TaskResult::for_test(
        &id.into(),
        json!({"num_particles": 100}),
        crate::model::RunStatus::Completed,
        json!({"steps_completed": 5}),
    );
    r.worker_id = Some("w1".into());
    r.completed_at = Some("2024-01-15T10:30:00.000Z".into());
    r.priority = Some(crate::model::Priority::High);
    r
}

/// A results store writing into `results_dir`, with a flush tick that
/// never comes during a test.
fn results_store(store: &Store, results_dir: &Path, logs_dir: &Path) -> Addr<ResultsStore> {
    ResultsStore::new(
        store.clone(),
        results_dir,
        logs_dir,
        Duration::from_secs(3600),
        "round_robin",
    )
    .start()
}

/// Queues tasks `ids` in the store, as a submission would.
async fn queue(store: &Store, ids: &[&str]) {
    let new = ids
        .iter()
        .map(|id| NewTask {
            task_id: (*id).into(),
            priority: crate::model::Priority::High,
            algorithm: "python".into(),
            kernel: "reference".into(),
            body: "{}".into(),
            reuse_key: None,
        })
        .collect();
    store.insert_batch(new, None, "test".into()).await.unwrap();
}

/// Records tasks `ids` completed on w1, each committed on its own.
async fn complete(store: &Store, ids: &[&str]) {
    for id in ids {
        store
            .persist_now(vec![Change::Ended {
                task_id: (*id).into(),
                status: TaskStatus::Completed,
                result: Some(serde_json::to_string(&result(id)).unwrap()),
                error: None,
                worker_id: Some(WorkerId::new("w1")),
                at: unix_now(),
            }])
            .await
            .unwrap();
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("task_results_")
        })
        .collect();
    v.sort();
    v
}

#[test]
fn results_are_written_once_and_recovered_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("q.db");
    let results_dir = dir.path().join("results");
    actix_rt::System::new().block_on(async {
        let store = Store::start(store::open(&db, false).unwrap());
        let ids = ["a", "b", "c"];
        queue(&store, &ids).await;
        complete(&store, &ids).await;
        let rs = results_store(&store, &results_dir, dir.path());
        rs.send(RecordResult {
            result: result("a"),
            drained: false,
        })
        .await
        .unwrap();
        rs.send(RecordResult {
            result: result("b"),
            drained: false,
        })
        .await
        .unwrap();
        rs.send(FlushNow).await.unwrap();
        let written = files(&results_dir);
        assert_eq!(written.len(), 1);
        let name = written[0].file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.len() == "task_results_20240115_103000.json".len(), "{name}");
        let content: Vec<TaskResult> = serde_json::from_slice(&std::fs::read(&written[0]).unwrap()).unwrap();
        assert_eq!(content, vec![result("a"), result("b")]);
        // nothing new: no empty file
        rs.send(FlushNow).await.unwrap();
        assert_eq!(files(&results_dir).len(), 1);
        let store2 = store.clone();
        actix_rt::task::spawn_blocking(move || store2.sync())
            .await
            .unwrap();

        // what a restart finds: a and b written, c not yet
        let conn = store::open(&db, false).unwrap();
        let rec = store::recover(&conn).unwrap();
        assert_eq!(
            rec.unwritten
                .iter()
                .map(|u| u.task_id.as_str())
                .collect::<Vec<_>>(),
            ["c"]
        );
        // a crash after the file was named but before it was marked:
        // the file exists, so the result is not written again
        let mut unwritten = rec.unwritten.clone();
        unwritten.push(Unwritten {
            task_id: "a".into(),
            result: serde_json::to_string(&result("a")).unwrap(),
            file: Some(written[0].to_string_lossy().into_owned()),
        });
        // and one named for a file that never reached the disk
        unwritten.push(Unwritten {
            task_id: "b".into(),
            result: serde_json::to_string(&result("b")).unwrap(),
            file: Some("/nowhere/lost.json".into()),
        });
        rs.send(RecoverResults { unwritten }).await.unwrap();
        rs.send(FlushNow).await.unwrap();
        let written = files(&results_dir);
        assert_eq!(written.len(), 2);
        let second: Vec<TaskResult> = serde_json::from_slice(&std::fs::read(&written[1]).unwrap()).unwrap();
        let ids: Vec<&str> = second.iter().map(|r| r.task_id.as_str()).collect();
        assert_eq!(ids, ["c", "b"]);
        let read = ReadPool::new(&db);
        let store3 = store.clone();
        actix_rt::task::spawn_blocking(move || store3.sync())
            .await
            .unwrap();
        assert_eq!(read.results_files().unwrap().len(), 2);
    });
}

#[test]
fn a_drain_during_a_write_is_written_right_after_it_not_at_the_next_tick() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("q.db");
    let results_dir = dir.path().join("results");
    actix_rt::System::new().block_on(async {
        let store = Store::start(store::open(&db, false).unwrap());
        std::fs::create_dir_all(&results_dir).unwrap();
        queue(&store, &["a", "b"]).await;
        // a tick that never comes in this test
        let rs = results_store(&store, &results_dir, dir.path());
        // the queue drains twice in a row: the first starts a write,
        // the second arrives while it runs
        rs.do_send(RecordResult {
            result: result("a"),
            drained: true,
        });
        rs.do_send(RecordResult {
            result: result("b"),
            drained: true,
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let written = loop {
            let ids: Vec<String> = files(&results_dir)
                .iter()
                .filter_map(|f| std::fs::read(f).ok())
                .filter_map(|b| serde_json::from_slice::<Vec<TaskResult>>(&b).ok())
                .flatten()
                .map(|r| r.task_id.to_string())
                .collect();
            if ids.len() == 2 || std::time::Instant::now() > deadline {
                break ids;
            }
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(written, ["a", "b"], "b waited for the next tick");
    });
}

/// A SIGKILL between the steps of a results file: named (the tasks'
/// rows say their file and written, the file pending), then on disk, then
/// no longer pending. A restart finds every result in exactly one file.
#[test]
fn a_crash_between_naming_a_results_file_and_its_end_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("q.db");
    let results_dir = dir.path().join("results");
    std::fs::create_dir_all(&results_dir).unwrap();
    let on_disk = results_dir.join("task_results_1.json");
    let never = results_dir.join("task_results_2.json");
    actix_rt::System::new().block_on(async {
        let store = Store::start(store::open(&db, false).unwrap());
        let ids = ["a", "b", "c", "d"];
        queue(&store, &ids).await;
        complete(&store, &ids).await;
        // a and b: named, renamed into place, killed before the mark;
        // c and d: named, killed before the rename
        let (on_disk_key, never_key) = (
            on_disk.to_string_lossy().into_owned(),
            never.to_string_lossy().into_owned(),
        );
        store
            .assign_results_file(vec!["a".into(), "b".into()], &on_disk_key)
            .await
            .unwrap();
        std::fs::write(
            &on_disk,
            serde_json::to_vec_pretty(&[result("a"), result("b")]).unwrap(),
        )
        .unwrap();
        store
            .assign_results_file(vec!["c".into(), "d".into()], &never_key)
            .await
            .unwrap();
        // meanwhile neither file is listed as written, and a purge keeps
        // all four
        let read = ReadPool::new(&db);
        assert!(read.results_files().unwrap().is_empty());
        let purged = store.purge(unix_now() + 3600.0, false, false).await.unwrap();
        assert_eq!(purged.kept_unwritten, 4, "{purged:?}");
    });
    // the restart: a and b are in their file, c and d are written again
    let conn = store::open(&db, false).unwrap();
    let rec = store::recover(&conn).unwrap();
    let again: Vec<(&str, Option<&str>)> = rec
        .unwritten
        .iter()
        .map(|u| (u.task_id.as_str(), u.file.as_deref()))
        .collect();
    let never_key = never.to_string_lossy().into_owned();
    assert_eq!(
        again,
        [("c", Some(never_key.as_str())), ("d", Some(never_key.as_str()))]
    );
    let pending: i64 = conn
        .query_row("SELECT COUNT(*) FROM pending_results_files", [], |r| r.get(0))
        .unwrap();
    assert_eq!(pending, 0, "settled at start-up");
    drop(conn);
    actix_rt::System::new().block_on(async {
        let store = Store::start(store::open(&db, false).unwrap());
        let rs = results_store(&store, &results_dir, dir.path());
        rs.send(RecoverResults {
            unwritten: rec.unwritten,
        })
        .await
        .unwrap();
        rs.send(FlushNow).await.unwrap();
        let store2 = store.clone();
        actix_rt::task::spawn_blocking(move || store2.sync())
            .await
            .unwrap();
        let mut seen: Vec<String> = Vec::new();
        for f in files(&results_dir) {
            let records: Vec<TaskResult> = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
            seen.extend(records.into_iter().map(|r| r.task_id.as_str().to_string()));
        }
        seen.sort();
        assert_eq!(seen, ["a", "b", "c", "d"], "each result in exactly one file");
        let read = ReadPool::new(&db);
        assert_eq!(read.results_files().unwrap().len(), 2);
        // and nothing is left to write after one more restart
        drop(rs);
    });
    let conn = store::open(&db, false).unwrap();
    assert!(store::recover(&conn).unwrap().unwritten.is_empty());
}
