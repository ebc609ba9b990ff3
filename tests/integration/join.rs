//! Workers that join a real orchestrator by themselves (`--join`): they
//! take tasks, come back after an orchestrator restart, and leave after
//! draining on SIGTERM; the Slurm script's workers do the same.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::common::{joined_worker, wait_until, worker_row, Proc, FAST};

const LONG: Duration = Duration::from_secs(60);

/// An orchestrator with an empty workers file, on `port` (0: any).
fn orchestrator(dir: &Path, port: u16) -> Proc {
    std::fs::write(dir.join("config_workers.json"), r#"{"workers": []}"#).unwrap();
    Proc::start(dir, &["orchestrator", "--port", &port.to_string()], FAST)
}

fn port_of(p: &Proc) -> u16 {
    p.addr.rsplit(':').next().unwrap().parse().unwrap()
}

fn post_sleep(orch: &Proc, id: &str, seconds: f64) {
    let task = json!({"task_id": id, "algorithm": "__sleep", "parameters": {"seconds": seconds}});
    let r = orch.post("/tasks", &task.to_string());
    assert_eq!(r.status, 201, "{}", r.text());
}

fn status(orch: &Proc, id: &str) -> String {
    orch.get(&format!("/tasks/{id}")).json()["status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn a_joined_worker_takes_tasks_comes_back_after_a_restart_and_leaves_after_draining() {
    let home = tempfile::tempdir().unwrap();
    let mut orch = orchestrator(home.path(), 0);
    let port = port_of(&orch);
    let own = tempfile::tempdir().unwrap();
    let join = format!("http://127.0.0.1:{port}");
    let mut worker = joined_worker(own.path(), "j1", 1, &join);
    wait_until(Duration::from_secs(10), "j1 joined and up", || {
        worker_row(&orch, "j1")["state"] == "up"
    });
    let r = worker_row(&orch, "j1");
    assert_eq!(r["source"], "joined", "{r}");
    assert_eq!(r["address"], worker.addr.as_str(), "{r}");
    post_sleep(&orch, "first", 0.2);
    wait_until(LONG, "first completed", || status(&orch, "first") == "completed");

    // the orchestrator dies; on its way back the joined worker is still a
    // member (kept in its database) and answers again
    orch.signal(libc::SIGKILL);
    orch.wait_exit(Duration::from_secs(10));
    let orch = orchestrator(home.path(), port);
    wait_until(Duration::from_secs(15), "j1 up after the restart", || {
        worker_row(&orch, "j1")["state"] == "up"
    });

    // SIGTERM: the running task finishes there, then the worker leaves
    post_sleep(&orch, "last", 1.0);
    wait_until(LONG, "last running", || status(&orch, "last") == "running");
    worker.signal(libc::SIGTERM);
    assert_eq!(worker.wait_exit(LONG), Some(0), "{}", worker.log());
    wait_until(LONG, "last completed", || status(&orch, "last") == "completed");
    let t = orch.get("/tasks/last").json();
    assert_eq!(
        t["attempt_count"], 1,
        "finished where it ran, not started again: {t}"
    );
    wait_until(Duration::from_secs(10), "j1 gone", || {
        worker_row(&orch, "j1").is_null()
    });
}

/// Found killing the orchestrator of an allocation job: tasks sent ahead
/// to a joined worker, waiting in its backlog behind busy slots when the
/// orchestrator is SIGKILLed, are sent again by the restarted one under
/// new attempts. The worker used to refuse those (`already_running`, for
/// the old attempts still waiting there), the orchestrator found them
/// neither running nor held, and each such task failed after its four
/// attempts in under a second. Now the newer attempt replaces the older
/// one waiting unstarted: every task completes, none fails, none runs twice.
#[test]
fn tasks_waiting_in_a_joined_workers_backlog_survive_a_kill_of_the_orchestrator() {
    let home = tempfile::tempdir().unwrap();
    let mut orch = orchestrator(home.path(), 0);
    let port = port_of(&orch);
    let own = tempfile::tempdir().unwrap();
    let _worker = joined_worker(own.path(), "b1", 2, &format!("http://127.0.0.1:{port}"));
    wait_until(Duration::from_secs(10), "b1 joined and up", || {
        worker_row(&orch, "b1")["state"] == "up"
    });
    for i in 0..4 {
        post_sleep(&orch, &format!("b{i}"), 2.0);
    }
    // two run, two wait in b1's backlog
    wait_until(LONG, "two running", || {
        (0..4)
            .filter(|i| status(&orch, &format!("b{i}")) == "running")
            .count()
            == 2
    });
    orch.signal(libc::SIGKILL);
    orch.wait_exit(Duration::from_secs(10));
    let orch = orchestrator(home.path(), port);
    wait_until(LONG, "every task ended", || {
        (0..4).all(|i| matches!(status(&orch, &format!("b{i}")).as_str(), "completed" | "failed"))
    });
    for i in 0..4 {
        let t = orch.get(&format!("/tasks/b{i}")).json();
        assert_eq!(t["status"], "completed", "{t}");
    }
    let stats = orch.get("/stats").json();
    assert_eq!(stats["tasks"]["by_status"]["failed"], 0, "{stats}");
}

#[test]
fn the_slurm_scripts_worker_joins_a_local_orchestrator_and_drains_on_sigterm() {
    let home = tempfile::tempdir().unwrap();
    let orch = orchestrator(home.path(), 0);
    let node_dir = tempfile::tempdir().unwrap();
    // srun stand-in: drop srun's own options, run the worker here
    let srun = node_dir.path().join("srun");
    std::fs::write(
        &srun,
        "#!/usr/bin/env bash\nwhile [[ ${1:-} == --* ]]; do shift; done\nexec \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&srun, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/slurm/orquesta-workers.sbatch");
    let bin = env!("CARGO_BIN_EXE_orquesta");
    let mut job = Command::new("bash")
        .arg(&script)
        .arg(format!("http://{}", orch.addr))
        .current_dir(node_dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SLURM_JOB_NODELIST", "127.0.0.1")
        .env("SLURM_JOB_CPUS_PER_NODE", "2")
        .env("ORQUESTA_SRUN", &srun)
        .env("ORQUESTA_BIN", bin)
        .env("WORKER_HOST", "127.0.0.1")
        .env("WORKER_PORT", free.to_string())
        .env("WORKER_DRAIN_TIMEOUT", "20")
        .env("ORQUESTA_TEST_KERNELS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let id = "slurm-127.0.0.1";
    wait_until(Duration::from_secs(20), "the Slurm worker joined", || {
        worker_row(&orch, id)["state"] == "up"
    });
    let r = worker_row(&orch, id);
    assert_eq!(
        (r["source"].clone(), r["address"].clone(), r["capacity"].clone()),
        (json!("joined"), json!(format!("127.0.0.1:{free}")), json!(2)),
        "{r}"
    );
    post_sleep(&orch, "on_slurm", 1.0);
    wait_until(LONG, "on_slurm running", || {
        status(&orch, "on_slurm") == "running"
    });
    // scancel / the time limit: SIGTERM to the batch script
    unsafe { libc::kill(job.id() as i32, libc::SIGTERM) };
    let exit = job.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "the job ends cleanly after the drain");
    wait_until(LONG, "on_slurm completed", || {
        status(&orch, "on_slurm") == "completed"
    });
    assert_eq!(orch.get("/tasks/on_slurm").json()["attempt_count"], 1);
    wait_until(Duration::from_secs(10), "the Slurm worker left", || {
        worker_row(&orch, id).is_null()
    });
}
