//! Issue 22's "records that tell the truth" and "one folder, one
//! orchestrator": each test here failed before its fix.

use crate::common::{orquesta, stderr, Cluster, WorkerSpec};

#[test]
fn a_second_orchestrator_on_the_same_drop_folder_is_refused_whatever_its_database() {
    let c = Cluster::start(&[WorkerSpec::new("w1", 1)], &[]);
    let first = c.orch().addr.clone();
    for db in ["data/other.db", "elsewhere/orquesta.db"] {
        let out = orquesta()
            .args(["orchestrator", "--port", "0"])
            .env("DATABASE_PATH", db)
            .current_dir(c.dir.path())
            .output()
            .unwrap();
        let said = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{said}");
        assert!(
            said.contains("another orchestrator already uses task_queues")
                && said.contains(&format!("pid {}, http://{first}", c.orch().pid())),
            "{said}"
        );
        // no way around it is suggested
        assert!(!said.contains("DATABASE_PATH"), "{said}");
        assert!(!c.path(db).exists(), "the refused one made no database: {db}");
    }
    // another drop folder but the same results folder: refused too
    let out = orquesta()
        .args(["orchestrator", "--port", "0"])
        .env("DATABASE_PATH", "data/third.db")
        .env("TASK_QUEUE_DIR", "queue_b")
        .current_dir(c.dir.path())
        .output()
        .unwrap();
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(said.contains("another orchestrator already uses results"), "{said}");
    // the first one was not disturbed
    assert_eq!(c.orch().get("/health").status, 200);
}
