//! A full disk, on a real small filesystem (a tmpfs this test mounts as
//! root): the failure is named as such in answers, `/health` and the log;
//! intake pauses with the files left in the drop folder; once space
//! returns, work goes on by itself and nothing accepted is lost.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{sim_task, wait_until, Cluster, WorkerSpec, SCANS};
use crate::probes::missing_tool;

const LONG: Duration = Duration::from_secs(60);

/// A tmpfs of `megabytes` mounted on a fresh folder; unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the disk says it is full; returns its path.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![7u8; 64 << 10];
        while f.write_all(&block).is_ok() {}
        // the last partial block too
        while f.write_all(&[7u8]).is_ok() {}
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn tasks(prefix: &str, n: usize) -> Value {
    let list: Vec<Value> = (0..n)
        .map(|i| serde_json::from_str(&sim_task(&format!("{prefix}{i}"), "cython", 40, 5, i as u64)).unwrap())
        .collect();
    json!({ "tasks": list })
}

#[test]
fn a_full_disk_is_named_intake_pauses_and_work_resumes_when_space_returns() {
    let Some(disk) = SmallDisk::mount(8) else {
        missing_tool(
            "a_full_disk_is_named_intake_pauses_and_work_resumes_when_space_returns",
            "permission to mount a tmpfs (run as root)",
        );
        return;
    };
    let db = disk.path().join("orquesta.db");
    let db_shown = db.display().to_string();
    let c = Cluster::start(
        &[WorkerSpec::new("w1", 2)],
        &[("DATABASE_PATH", db_shown.as_str())],
    );
    c.wait_workers_up();
    let r = c.orch().post("/tasks", &tasks("before", 5).to_string());
    assert_eq!(r.status, 201, "{}", r.text());
    c.wait_count("completed", 5, LONG);

    let filler = disk.fill();
    // answers say it plainly, with the path; the batch is refused whole
    let mut refused = None;
    for round in 0..200 {
        let r = c
            .orch()
            .post("/tasks", &tasks(&format!("full{round}_"), 200).to_string());
        if r.status != 201 {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("a full disk refuses a batch");
    assert_eq!(r.status, 503, "{}", r.text());
    let said = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        said.contains("no space left on device") && said.contains(&db_shown),
        "{said}"
    );
    assert!(!said.contains("savepoint"), "{said}");
    let health = c.orch().get("/health");
    assert_ne!(health.json()["status"], "healthy", "{}", health.text());
    assert!(
        health.json()["database"]
            .as_str()
            .unwrap()
            .contains("no space left on device"),
        "{}",
        health.text()
    );
    let logged = || {
        c.orch().log() + &std::fs::read_to_string(c.path("logs/elastic_orchestrator.log")).unwrap_or_default()
    };
    // log lines are written by a thread of their own, a few ms later
    wait_until(LONG, "the log naming the full disk", || {
        logged().contains("no space left on device")
    });
    // a file dropped now stays where it is
    let accepted_before = c.orch().get("/stats").json()["tasks"]["total"]
        .as_u64()
        .unwrap_or(0);
    let file = c.path("task_queues/later.json");
    std::fs::write(&file, tasks("later", 10).to_string()).unwrap();
    c.orch().wait_for_passes(SCANS, 3);
    assert!(
        file.exists(),
        "the file waits in the drop folder while the disk is full"
    );

    // space returns: the file is taken, every task runs, health is back
    std::fs::remove_file(filler).unwrap();
    wait_until(LONG, "the waiting file taken", || !file.exists());
    let total = |c: &Cluster| {
        c.orch().get("/stats").json()["tasks"]["total"]
            .as_u64()
            .unwrap_or(0)
    };
    wait_until(LONG, "every accepted task completed", || {
        let s = c.orch().get("/stats").json();
        s["tasks"]["by_status"]["completed"] == json!(total(&c))
    });
    assert!(total(&c) >= accepted_before + 10);
    for i in 0..10 {
        assert_eq!(c.status_of(&format!("later{i}")), "completed");
    }
    wait_until(LONG, "healthy again", || {
        c.orch().get("/health").json()["status"] == "healthy"
    });
    let r = c.orch().post("/tasks", &tasks("after", 3).to_string());
    assert_eq!(r.status, 201, "{}", r.text());
}
