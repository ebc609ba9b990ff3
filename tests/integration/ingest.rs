//! Large dropped files (issue 12): a file of more tasks than one staged
//! chunk is queued whole and each task recorded exactly once; a file
//! with one bad task at its end is refused whole, with nothing of it
//! stored, after chunks of it were already staged; `/stats` and
//! `GET /tasks` agree with the tasks stored. A file renamed into the
//! folder is taken at once (issue 21); one still open for writing in place
//! waits for its writer to close it or for the quiet period.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{wait_until, Cluster, WorkerSpec, FLUSH_TICKS, SCANS};

const LONG: Duration = Duration::from_secs(180);

/// More than one staged chunk (10,000 tasks).
const MANY: u64 = 12_345;

fn tiny(i: u64) -> Value {
    let priority = ["high", "medium", "low"][(i % 3) as usize];
    json!({"task_id": format!("t{i:05}"), "algorithm": "python", "priority": priority,
           "parameters": {"num_particles": 20, "num_steps": 1, "seed": i}})
}

fn drop_file(c: &Cluster, name: &str, tasks: Vec<Value>) {
    let dir = c.path("task_queues");
    std::fs::create_dir_all(&dir).unwrap();
    // written aside and renamed in, as a user's copy would finish
    let part = dir.join(format!("{name}.part"));
    std::fs::write(&part, json!({ "tasks": tasks }).to_string()).unwrap();
    std::fs::rename(part, dir.join(name)).unwrap();
}

fn names_in(c: &Cluster, sub: &str) -> Vec<String> {
    std::fs::read_dir(c.path(sub))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_file_of_several_chunks_is_queued_whole_and_each_task_recorded_once() {
    let c = Cluster::start(&[WorkerSpec::new("w1", 4), WorkerSpec::new("w2", 4)], &[]);
    drop_file(&c, "many.json", (0..MANY).map(tiny).collect());
    wait_until(LONG, "the file moved to processed/", || {
        names_in(&c, "task_queues/processed").len() == 1
    });
    // moved only once every task of it is stored
    let total = c.orch().get("/tasks?limit=1").json()["total"].as_u64();
    assert!(total == Some(MANY), "{total:?}");
    c.wait_count("completed", MANY, LONG);
    let stats = c.orch().get("/stats").json();
    assert_eq!(stats["tasks"]["total"], MANY, "{stats}");
    let by_priority: u64 = ["high", "medium", "low"]
        .iter()
        .map(|p| {
            stats["tasks"]["by_priority"][p]["completed"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(by_priority, MANY, "{stats}");
    let done = c.orch().get("/tasks?status=completed&limit=5").json();
    assert_eq!(done["total"], MANY, "{done}");
    assert_eq!(done["tasks"][0]["task_id"], "t00000", "in file order: {done}");
    let by_worker: u64 = ["w1", "w2"]
        .iter()
        .map(|w| {
            c.orch().get(&format!("/tasks?worker={w}&limit=1")).json()["total"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(by_worker, MANY);
    wait_until(LONG, "every result on disk", || c.results().len() as u64 >= MANY);
    // a result recorded twice would be written by a later flush
    c.orch().wait_for_passes(FLUSH_TICKS, 2);
    let results = c.results();
    let mut ids: Vec<&str> = results.iter().map(|r| r["task_id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        (results.len(), ids.len()),
        (MANY as usize, MANY as usize),
        "each exactly once"
    );
}

#[test]
fn a_bad_task_after_the_first_chunks_refuses_the_whole_file() {
    let c = Cluster::start(&[], &[]);
    let mut tasks: Vec<Value> = (0..MANY).map(tiny).collect();
    tasks.push(json!({"task_id": "last", "algorithm": "java", "parameters": {}}));
    tasks.push(tiny(7));
    drop_file(&c, "bad.json", tasks);
    wait_until(LONG, "the report in rejected/", || {
        names_in(&c, "task_queues/rejected").contains(&"bad.json.error.txt".to_string())
    });
    let report = std::fs::read_to_string(c.path("task_queues/rejected/bad.json.error.txt")).unwrap();
    let last = format!("tasks[{MANY}]");
    let again = format!("tasks[{}].task_id", MANY + 1);
    assert!(report.contains(&last), "{report}");
    assert!(
        report.contains(&again) && report.contains("also used by tasks[7]"),
        "{report}"
    );
    assert!(report.contains("Nothing in it was queued"), "{report}");
    let stats = c.orch().get("/stats").json();
    assert_eq!(stats["tasks"]["total"], 0, "nothing of it stored: {stats}");
    assert_eq!(c.orch().get("/tasks?limit=1").json()["total"], 0);
    // its ids are free: the good part alone is queued whole
    drop_file(&c, "good.json", (0..MANY).map(tiny).collect());
    wait_until(LONG, "the good file moved to processed/", || {
        names_in(&c, "task_queues/processed").len() == 1
    });
    let stats = c.orch().get("/stats").json();
    assert_eq!(stats["tasks"]["by_status"]["queued"], MANY, "{stats}");
    let queued = c.orch().get("/tasks?status=queued&priority=high&limit=2").json();
    assert_eq!(queued["total"], MANY.div_ceil(3), "{queued}");
    assert_eq!(queued["tasks"][1]["task_id"], "t00003", "{queued}");
}

#[test]
fn a_renamed_file_is_taken_at_once_and_one_still_being_written_waits() {
    // an hour's quiet period: within the test, only an event saying that a
    // file is complete (a rename into the folder, a close after writing)
    // gets a file read
    let c = Cluster::start(&[WorkerSpec::new("w1", 1)], &[("FILE_QUIET_PERIOD", "3600")]);
    let dir = c.path("task_queues");
    wait_until(LONG, "the drop folder made", || dir.join("processed").is_dir());
    // written in place, whole JSON, and still open: its writer may go on
    let mut open = std::fs::File::create(dir.join("open.json")).unwrap();
    std::io::Write::write_all(&mut open, json!({ "tasks": [tiny(1)] }).to_string().as_bytes()).unwrap();
    // seen by a whole scan
    c.orch().wait_for_passes(SCANS, 2);
    drop_file(&c, "renamed.json", vec![tiny(0)]);
    c.wait_count("completed", 1, LONG);
    assert_eq!(c.orch().get("/tasks/t00000").json()["status"], "completed");
    // scans since have seen the open file; it waits, unread
    c.orch().wait_for_passes(SCANS, 2);
    assert_eq!(c.orch().get("/tasks/t00001").status, 404);
    assert!(dir.join("open.json").is_file());
    assert_eq!(names_in(&c, "task_queues/processed").len(), 1);
    // closed by its writer: complete, taken at once
    drop(open);
    c.wait_count("completed", 2, LONG);
    assert_eq!(names_in(&c, "task_queues/processed").len(), 2);
}
