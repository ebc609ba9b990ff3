//! Process hygiene (issue 10): one worker per id per folder, `up`
//! adopting a running worker and refusing a port held by something else,
//! `up`'s children dying with it, double Ctrl-C; `ping` and `config check`
//! on membership. The worker's side of joining is in `join_worker`.

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{config_port, orquesta, sleep_task, wait_until, DeadPort, Proc, FAST};
use crate::join_worker::{joined, FakeOrchestrator};

pub(crate) const LONG: Duration = Duration::from_secs(30);

/// Runs `orquesta ARGS…` in `dir`, failing the test if it has not exited
/// within `limit`; its exit code and all its output.
pub(crate) fn run_within(
    dir: &std::path::Path,
    args: &[&str],
    envs: &[(&str, &str)],
    limit: Duration,
) -> (Option<i32>, String) {
    let mut child = orquesta()
        .args(args)
        .current_dir(dir)
        .envs(envs.iter().copied())
        .env_remove("WORKER_ID")
        .env_remove("WORKER_PORT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("orquesta {args:?} did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut text = String::new();
    child.stdout.take().unwrap().read_to_string(&mut text).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut text).unwrap();
    (status.code(), text)
}

pub(crate) fn write_workers(dir: &std::path::Path, workers: Value) {
    std::fs::write(
        dir.join("config_workers.json"),
        json!({ "workers": workers }).to_string(),
    )
    .unwrap();
}

/// Gone, or a zombie nobody has reaped yet (it runs nothing either way).
fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// The pids whose parent is `parent` (from /proc).
fn children_of(parent: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
                    == Some(parent)
            })
        })
        .collect()
}

#[test]
fn the_same_worker_id_twice_in_one_folder_is_refused_until_the_first_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["worker", "--worker-id", "twin", "--port", "0", "--capacity", "1"];
    let mut first = Proc::start(dir.path(), &args, &[]);
    let (code, said) = run_within(dir.path(), &args, &[], LONG);
    assert_eq!(code, Some(2), "{said}");
    assert!(said.contains("worker twin already runs"), "{said}");
    assert!(
        said.contains(&format!("pid {}, http://{}", first.pid(), first.addr)),
        "the message names the holder: {said}"
    );
    // a SIGKILL leaves no stale lock behind
    first.signal(libc::SIGKILL);
    first.wait_exit(LONG).unwrap();
    let second = Proc::start(dir.path(), &args, &[]);
    assert_eq!(second.get("/status").json()["worker_id"], "twin");
}

#[test]
fn up_adopts_a_worker_already_running_on_its_port_and_leaves_it_running() {
    let dir = tempfile::tempdir().unwrap();
    // started first on a port of its own, named in the file after
    let worker = Proc::start(
        dir.path(),
        &["worker", "--worker-id", "early", "--port", "0", "--capacity", "1"],
        &[],
    );
    let port = worker.addr.rsplit(':').next().unwrap().to_string();
    write_workers(
        dir.path(),
        json!([{"id": "early", "host": "127.0.0.1", "port": port.parse::<u16>().unwrap(),
                "capacity": 1, "algorithms": ["python"]}]),
    );
    let mut up = Proc::start(dir.path(), &["up", "--port", "0"], FAST);
    wait_until(LONG, "the adopted worker up", || {
        up.get("/workers").json()["up"] == 1
    });
    assert!(up.log().contains("early | already running"), "{}", up.log());
    let r = up.post(
        "/tasks",
        &json!({"tasks": [{"task_id": "a1", "algorithm": "python",
            "parameters": {"num_particles": 20, "num_steps": 5, "seed": 1}}]})
        .to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    wait_until(LONG, "a1 completed", || {
        up.get("/tasks/a1").json()["status"] == "completed"
    });
    assert_eq!(up.get("/tasks/a1").json()["result"]["worker_id"], "early");
    assert_eq!(
        worker.get("/metrics").json()["tasks_completed"],
        1,
        "{}",
        worker.get("/metrics").text()
    );
    up.signal(libc::SIGINT);
    assert_eq!(up.wait_exit(LONG), Some(0), "{}", up.log());
    // up did not start it, so up did not stop it
    assert_eq!(worker.get("/health").status, 200);
}

#[test]
fn up_refuses_a_port_held_by_something_else_and_says_what() {
    let dir = tempfile::tempdir().unwrap();
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    write_workers(
        dir.path(),
        json!([{"id": "w1", "host": "127.0.0.1", "port": port, "capacity": 1, "algorithms": ["python"]}]),
    );
    let (code, said) = run_within(dir.path(), &["up", "--port", "0"], FAST, LONG);
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains(&format!(
            "its port 127.0.0.1:{port} is held by a process that is not an Orquesta worker"
        )),
        "{said}"
    );
    drop(squatter);

    // another worker on that port: named
    let other = Proc::start(
        dir.path(),
        &["worker", "--worker-id", "other", "--port", "0", "--capacity", "1"],
        &[],
    );
    let port: u16 = other.addr.rsplit(':').next().unwrap().parse().unwrap();
    write_workers(
        dir.path(),
        json!([{"id": "w1", "host": "127.0.0.1", "port": port, "capacity": 1, "algorithms": ["python"]}]),
    );
    let (code, said) = run_within(dir.path(), &["up", "--port", "0"], FAST, LONG);
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("is held by another Orquesta worker, \"other\""),
        "{said}"
    );
}

#[test]
fn up_sigkilled_leaves_no_orphans() {
    let dir = tempfile::tempdir().unwrap();
    // up starts its workers at the ports the file names (see config_port)
    let (p1, p2) = (config_port(), config_port());
    write_workers(
        dir.path(),
        json!([
            {"id": "k1", "host": "127.0.0.1", "port": p1, "capacity": 1, "algorithms": ["python"]},
            {"id": "k2", "host": "127.0.0.1", "port": p2, "capacity": 1, "algorithms": ["python"]},
        ]),
    );
    let mut up = Proc::start(dir.path(), &["up", "--port", "0"], FAST);
    wait_until(LONG, "both workers up", || up.get("/workers").json()["up"] == 2);
    let children = children_of(up.pid());
    assert_eq!(children.len(), 2, "up's children: {children:?}");
    up.signal(libc::SIGKILL);
    up.wait_exit(LONG).unwrap();
    wait_until(Duration::from_secs(5), "up's workers gone", || {
        children.iter().all(|&p| is_gone(p))
    });
    for p in [p1, p2] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", p)).is_err(),
            "port {p} still served"
        );
    }
}

/// `orquesta up` in `dir` with one local worker `id` (capacity 1, on a
/// free port), once that worker is up; and the worker's port.
fn up_with_one_worker(dir: &std::path::Path, id: &str) -> (Proc, u16) {
    // up starts the worker at the port the file names (see config_port)
    let port = config_port();
    write_workers(
        dir,
        json!([{"id": id, "host": "127.0.0.1", "port": port, "capacity": 1, "algorithms": ["python"]}]),
    );
    let up = Proc::start(dir, &["up", "--port", "0"], FAST);
    wait_until(LONG, "the worker up", || up.get("/workers").json()["up"] == 1);
    (up, port)
}

#[test]
fn a_second_ctrl_c_stops_up_at_once_and_the_running_task_is_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (mut up, _) = up_with_one_worker(dir.path(), "c1");
    let r = up.post(
        "/tasks",
        &format!(r#"{{"tasks": [{}]}}"#, sleep_task("long", 60.0)),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    wait_until(LONG, "long running", || {
        up.get("/tasks/long").json()["status"] == "running"
    });
    let worker = children_of(up.pid());
    up.signal(libc::SIGINT);
    wait_until(LONG, "the waiting message", || {
        up.log()
            .contains("waiting for 1 running task, up to 30 s; Ctrl-C again to stop now")
    });
    let second = Instant::now();
    up.signal(libc::SIGINT);
    assert_eq!(up.wait_exit(Duration::from_secs(10)), Some(0), "{}", up.log());
    assert!(
        second.elapsed() < Duration::from_secs(5),
        "{:?}",
        second.elapsed()
    );
    assert!(worker.iter().all(|&p| is_gone(p)), "the worker outlived up");
    // the next start finds the task again: queued or running, not ended
    let orch = Proc::start(dir.path(), &["orchestrator", "--port", "0"], FAST);
    let status = orch.get("/tasks/long").json()["status"].clone();
    assert!(status == "queued" || status == "running", "{status}");
}

#[test]
fn a_worker_whose_starting_parent_is_gone_does_not_start() {
    // what a child of up sees when up died between fork and PR_SET_PDEATHSIG
    let dir = tempfile::tempdir().unwrap();
    let args = ["worker", "--worker-id", "orphan", "--port", "0"];
    let (code, said) = run_within(dir.path(), &args, &[("ORQUESTA_PARENT_PID", "999999999")], LONG);
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("the process that started this worker (pid 999999999) is gone"),
        "{said}"
    );
    // with the right parent (this test process) it starts
    let me = std::process::id().to_string();
    let w = Proc::start(dir.path(), &args, &[("ORQUESTA_PARENT_PID", &me)]);
    assert_eq!(w.get("/health").status, 200);
}

#[test]
fn no_worker_is_restarted_once_up_is_stopping() {
    // a terminal's Ctrl-C reaches up and its children at once; a child that
    // exits while up shuts its orchestrator down must not be taken for a
    // crash and started again
    let dir = tempfile::tempdir().unwrap();
    let (mut up, port) = up_with_one_worker(dir.path(), "t1");
    let worker = children_of(up.pid());
    assert_eq!(worker.len(), 1, "{worker:?}");
    // a request still arriving keeps the orchestrator's graceful stop busy
    // for a few seconds: the window in which the worker exits
    let mut slow = std::net::TcpStream::connect(&up.addr).unwrap();
    slow.write_all(b"POST /tasks HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        .unwrap();
    // served on a later connection: the slow one was accepted before it
    assert_eq!(up.get("/health").status, 200);
    up.signal(libc::SIGINT);
    // its graceful stop has begun once it takes no new connection
    wait_until(LONG, "the orchestrator stopping", || {
        std::net::TcpStream::connect(&up.addr).is_err()
    });
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(worker[0], libc::SIGINT);
    }
    assert_eq!(up.wait_exit(LONG), Some(0), "{}", up.log());
    drop(slow);
    assert!(!up.log().contains("restarting"), "{}", up.log());
    wait_until(Duration::from_secs(5), "the port free", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    });
}

// ---- worker --join against a fake orchestrator ----

#[test]
fn ping_reports_a_configured_worker_the_running_orchestrator_does_not_know() {
    let dir = tempfile::tempdir().unwrap();
    let worker = Proc::start(
        dir.path(),
        &["worker", "--worker-id", "known", "--port", "0", "--capacity", "1"],
        &[],
    );
    let port: u16 = worker.addr.rsplit(':').next().unwrap().parse().unwrap();
    let known =
        json!({"id": "known", "host": "127.0.0.1", "port": port, "capacity": 1, "algorithms": ["python"]});
    write_workers(dir.path(), json!([known]));
    let orch = Proc::start(dir.path(), &["orchestrator", "--port", "0"], FAST);
    wait_until(LONG, "the worker up", || orch.get("/workers").json()["up"] == 1);
    let url = orch.url("");
    let (code, said) = run_within(dir.path(), &["ping", "--url", &url, "--timeout", "2"], &[], LONG);
    assert_eq!(code, Some(0), "the same file: all is well\n{said}");
    // another file that also lists a worker this orchestrator never heard of
    let nobody = DeadPort::new();
    let ghost = json!({"id": "ghost", "host": "127.0.0.1", "port": nobody.port, "capacity": 1, "algorithms": ["python"]});
    std::fs::write(
        dir.path().join("other.json"),
        json!({"workers": [known, ghost]}).to_string(),
    )
    .unwrap();
    let (code, said) = run_within(
        dir.path(),
        &["ping", "--url", &url, "--config", "other.json", "--timeout", "2"],
        &[],
        LONG,
    );
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.lines()
            .any(|l| l.contains("ghost (config)") && l.contains("unknown to the running orchestrator")),
        "{said}"
    );
}

#[test]
fn config_check_accepts_no_workers_and_lists_the_joined_ones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config_workers.json"), r#"{"workers": []}"#).unwrap();
    let fake = FakeOrchestrator::start(200, joined("x", 1.0));
    *fake.other_answer.lock().unwrap() = json!({"workers": [
        {"id": "node7", "address": "10.0.0.7:5001", "capacity": 4, "state": "up", "source": "joined"},
        {"id": "cfg1", "address": "127.0.0.1:5001", "capacity": 2, "state": "up", "source": "config"},
    ]})
    .to_string();
    let port = fake.addr.rsplit(':').next().unwrap().to_string();
    let (code, said) = run_within(
        dir.path(),
        &["config", "check"],
        &[("ORCHESTRATOR_HOST", "127.0.0.1"), ("ORCHESTRATOR_PORT", &port)],
        LONG,
    );
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("no workers configured; workers may join with `orquesta worker --join"),
        "{said}"
    );
    assert!(
        said.contains("Joined workers (orchestrator at http://127.0.0.1:"),
        "{said}"
    );
    assert!(
        said.lines()
            .any(|l| l.contains("node7") && l.contains("10.0.0.7:5001")),
        "{said}"
    );
    assert!(
        !said.contains("cfg1"),
        "only joined workers are listed there: {said}"
    );
}
