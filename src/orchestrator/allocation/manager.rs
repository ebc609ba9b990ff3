//! The cluster managers behind the allocation queues, one enum: `slurm`
//! (`sbatch`, `squeue`, `scontrol`, `scancel`) and `command` (the user's
//! own submit/status/cancel commands, run through `sh -c` with the script
//! path or the job id as their argument). Every call blocks: the
//! allocator runs them on the blocking pool, never on an actor's thread,
//! each under a timeout (`ALLOCATION_COMMAND_TIMEOUT`): past it, the
//! command and everything it started (its process group) are killed.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::protocol::allocations::{AllocationKind, AllocationSpec};

/// The variable `orquesta up` sets in the workers it starts (`cli::worker`
/// checks it); a job inheriting it would see a parent that is not its own.
const PARENT_PID_VAR: &str = "ORQUESTA_PARENT_PID";

/// After a command ended or was killed, how long what it printed may
/// take to arrive: a process it left behind (a daemon of its own
/// session) may hold its pipes open for ever.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);
/// What is kept of a failed command's output for `GET /allocations`.
const OUTPUT_KEPT: usize = 2000;

/// A command that did not do its job.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    pub message: String,
    /// stdout then stderr, shortened.
    pub output: String,
}

/// What the cluster manager says of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManagerState {
    Pending,
    Running,
    Ended,
    Failed,
}

/// A job's state and the manager's reason (Slurm's `%r`, its final state).
#[derive(Debug, Clone, PartialEq)]
pub struct JobStatus {
    pub state: ManagerState,
    pub reason: Option<String>,
}

/// How one queue talks to its cluster manager.
#[derive(Debug, Clone, PartialEq)]
pub enum Manager {
    Slurm {
        /// `--time` for sbatch, `[D-]HH:MM:SS`.
        time: String,
        job_name: String,
        extra_args: Vec<String>,
    },
    Command {
        submit: String,
        status: String,
        cancel: String,
    },
}

impl Manager {
    /// The manager a spec names (the spec is already checked).
    pub fn of(spec: &AllocationSpec, time_limit: Duration) -> Manager {
        match spec.kind {
            AllocationKind::Slurm => Manager::Slurm {
                time: crate::util::duration::slurm_time(time_limit),
                job_name: format!("orquesta-{}", spec.name),
                extra_args: spec.extra_args.clone(),
            },
            AllocationKind::Command => Manager::Command {
                submit: spec.submit.clone().unwrap_or_default(),
                status: spec.status.clone().unwrap_or_default(),
                cancel: spec.cancel.clone().unwrap_or_default(),
            },
        }
    }

    /// Submits `script` (run in its folder, `env` added to the command's
    /// environment: the job inherits it); answers the job's id.
    pub fn submit(
        &self,
        script: &Path,
        env: &[(String, String)],
        timeout: Duration,
    ) -> Result<String, CommandError> {
        let dir = script.parent().unwrap_or(Path::new("."));
        let mut cmd = match self {
            Manager::Slurm {
                time,
                job_name,
                extra_args,
            } => {
                let mut c = Command::new("sbatch");
                c.arg("--parsable")
                    .arg(format!("--job-name={job_name}"))
                    .arg(format!("--time={time}"))
                    .arg(format!("--output={}", dir.join("job-%j.out").display()))
                    .arg("--export=ALL")
                    .args(extra_args)
                    .arg(script);
                c
            }
            Manager::Command { submit, .. } => shell(submit, &script.display().to_string()),
        };
        cmd.current_dir(dir);
        // the job inherits the token through this environment; a token file
        // beside it would make the worker refuse both
        cmd.env_remove("ORQUESTA_TOKEN_FILE");
        // and not a child of `orquesta up`: its workers would exit at birth
        cmd.env_remove(PARENT_PID_VAR);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = run(cmd, "submit", timeout)?;
        // sbatch --parsable prints `id` or `id;cluster`; a user command its id
        let id = out
            .stdout
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .map(|l| l.split(';').next().unwrap_or(l).to_string())
            .unwrap_or_default();
        let usable = !id.is_empty()
            && id.len() <= 128
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-:@[]".contains(c));
        if !usable {
            return Err(CommandError {
                message: format!("the submit command printed no job id (expected one word, found {id:?})"),
                output: out.both(),
            });
        }
        Ok(id)
    }

    /// The job's state.
    pub fn status(&self, id: &str, timeout: Duration) -> Result<JobStatus, CommandError> {
        match self {
            Manager::Slurm { .. } => slurm_status(id, timeout),
            Manager::Command { status, .. } => {
                let out = run(shell(status, id), "status", timeout)?;
                let word = out
                    .stdout
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                let state = match word.as_str() {
                    "pending" => ManagerState::Pending,
                    "running" => ManagerState::Running,
                    "ended" => ManagerState::Ended,
                    "failed" => ManagerState::Failed,
                    _ => {
                        return Err(CommandError {
                            message: format!(
                            "the status command printed {word:?}; expected pending, running, ended or failed"
                        ),
                            output: out.both(),
                        })
                    }
                };
                let reason = out
                    .stdout
                    .split_once(char::is_whitespace)
                    .map(|(_, r)| r.trim().to_string());
                Ok(JobStatus {
                    state,
                    reason: reason.filter(|r| !r.is_empty()),
                })
            }
        }
    }

    /// Cancels the job (one that has ended already is not an error for Slurm).
    pub fn cancel(&self, id: &str, timeout: Duration) -> Result<(), CommandError> {
        let cmd = match self {
            Manager::Slurm { .. } => {
                let mut c = Command::new("scancel");
                c.arg(id);
                c
            }
            Manager::Command { cancel, .. } => shell(cancel, id),
        };
        run(cmd, "cancel", timeout).map(|_| ())
    }
}

/// `sh -c 'COMMAND "$1"' orquesta-alloc ARG`: the user's command line as
/// written (words, quotes, pipes), with one argument appended safely.
fn shell(command: &str, arg: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("{command} \"$1\""))
        .arg("orquesta-alloc")
        .arg(arg);
    c
}

/// `squeue` while Slurm lists the job; `scontrol show job` for its final
/// state afterwards (kept for `MinJobAge`); a job neither knows has ended.
fn slurm_status(id: &str, timeout: Duration) -> Result<JobStatus, CommandError> {
    let mut q = Command::new("squeue");
    q.args(["--noheader", "--format=%T|%r", "--jobs", id]);
    let listed = run(q, "status", timeout).ok().and_then(|o| {
        o.stdout
            .lines()
            .find(|l| !l.trim().is_empty())
            .map(str::to_string)
    });
    let (state, reason) = match listed {
        Some(line) => {
            let (s, r) = line.split_once('|').unwrap_or((line.as_str(), ""));
            (s.trim().to_string(), r.trim().to_string())
        }
        None => {
            let mut c = Command::new("scontrol");
            c.args(["show", "job", "--oneliner", id]);
            match run(c, "status", timeout) {
                Ok(o) => (field(&o.stdout, "JobState"), field(&o.stdout, "Reason")),
                // an id Slurm no longer knows: ended long enough ago
                Err(e) if e.output.contains("Invalid job id") => ("COMPLETED".into(), String::new()),
                Err(e) => return Err(e),
            }
        }
    };
    Ok(JobStatus {
        state: slurm_state(&state),
        reason: Some(match reason.as_str() {
            "" | "None" => state.to_ascii_lowercase(),
            r => format!("{} ({r})", state.to_ascii_lowercase()),
        }),
    })
}

/// `KEY=value` out of `scontrol --oneliner`'s line.
fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or("")
        .to_string()
}

/// Slurm's job state words, as the allocator counts them.
pub fn slurm_state(word: &str) -> ManagerState {
    match word {
        "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD"
        | "SUSPENDED" => ManagerState::Pending,
        "RUNNING" | "COMPLETING" | "STAGE_OUT" | "SIGNALING" | "RESIZING" => ManagerState::Running,
        "COMPLETED" | "CANCELLED" => ManagerState::Ended,
        _ => ManagerState::Failed,
    }
}

/// A finished command's output.
struct Output {
    stdout: String,
    stderr: String,
}

impl Output {
    fn both(&self) -> String {
        shorten(&format!("{}{}", self.stdout, self.stderr))
    }
}

fn shorten(text: &str) -> String {
    let text = text.trim();
    if text.len() <= OUTPUT_KEPT {
        return text.to_string();
    }
    let mut cut = OUTPUT_KEPT;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

/// Runs `cmd` under `timeout`; a non-zero exit, a signal or a timeout is
/// an error carrying what it printed. The command leads a process group
/// of its own: on timeout the whole group is killed (a `sh -c` whose
/// `sleep` or `sbatch` hangs leaves nothing behind), and what it printed
/// is waited for at most [`OUTPUT_GRACE`] more, so that a process that
/// left the group and holds the pipes cannot hold the caller.
fn run(mut cmd: Command, what: &str, timeout: Duration) -> Result<Output, CommandError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    crate::util::platform::own_group(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| CommandError {
        message: format!("cannot run the {what} command {program}: {e}"),
        output: String::new(),
    })?;
    // each pipe read on a thread of its own into a shared buffer, and an
    // end-of-file told through a channel
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (into, done) = (std::sync::Arc::clone(&buffer), done_tx.clone());
        std::thread::spawn(move || {
            if let Some(mut p) = pipe {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = p.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    let mut b = into.lock().unwrap_or_else(|e| e.into_inner());
                    // what is kept is shortened anyway: a flood is not held
                    if b.len() < 4 * OUTPUT_KEPT {
                        b.extend_from_slice(&chunk[..n]);
                    }
                }
            }
            let _ = done.send(());
        });
        buffer
    };
    let out = reader(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = reader(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    drop(done_tx);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                crate::util::platform::kill_group(&mut child);
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    let grace = Instant::now() + OUTPUT_GRACE;
    for _ in 0..2 {
        if done_rx
            .recv_timeout(grace.saturating_duration_since(Instant::now()))
            .is_err()
        {
            break;
        }
    }
    let text = |b: &std::sync::Arc<std::sync::Mutex<Vec<u8>>>| {
        String::from_utf8_lossy(&b.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    };
    let output = Output {
        stdout: text(&out),
        stderr: text(&err),
    };
    match status {
        Some(s) if s.success() => Ok(output),
        Some(s) => Err(CommandError {
            message: format!("the {what} command {program} failed ({s})"),
            output: output.both(),
        }),
        None => Err(CommandError {
            message: format!(
                "the {what} command {program} did not finish within {}s; it and what it started were killed \
                 (ALLOCATION_COMMAND_TIMEOUT)",
                timeout.as_secs_f64()
            ),
            output: output.both(),
        }),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(30);

    fn commands(submit: &str, status: &str) -> Manager {
        Manager::Command {
            submit: submit.into(),
            status: status.into(),
            cancel: "true".into(),
        }
    }

    #[test]
    fn a_user_command_gets_its_argument_and_its_answer_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("job 1.sh");
        std::fs::write(&script, "hello").unwrap();
        // the script's path arrives whole (a space in it) as the last argument
        let m = commands("echo queued; wc -c <", "true");
        assert_eq!(m.submit(&script, &[], T).unwrap(), "5");
        let env = [("ORQUESTA_TOKEN".to_string(), "s3cret".to_string())];
        let m = commands("echo \"$ORQUESTA_TOKEN\"; true", "true");
        assert_eq!(m.submit(&script, &env, T).unwrap(), "s3cret");
        let silent = commands("true", "true");
        let e = silent.submit(&script, &[], T).unwrap_err();
        assert!(e.message.contains("printed no job id"), "{e:?}");
    }

    #[test]
    fn status_words_and_failures_are_told_apart() {
        let m = commands("true", "echo running on node7; true");
        let s = m.status("42", T).unwrap();
        assert_eq!(s.state, ManagerState::Running);
        assert_eq!(s.reason.as_deref(), Some("on node7"));
        let bad = commands("true", "echo maybe");
        let e = bad.status("42", T).unwrap_err();
        assert!(
            e.message.contains("expected pending, running, ended or failed"),
            "{e:?}"
        );
        let failing = commands("echo no queue named batch >&2; exit 3", "true");
        let e = failing.submit(Path::new("/tmp/x.sh"), &[], T).unwrap_err();
        assert!(e.message.contains("failed"), "{e:?}");
        assert_eq!(e.output, "no queue named batch");
    }

    /// A submit that hangs is killed at the timeout with what it started
    /// (the shell's `sleep`, which holds the pipes), and the call returns
    /// at once after, saying why; one that left a process of its own
    /// session holding the pipes returns too, within the grace.
    #[test]
    fn a_hanging_command_is_killed_with_its_children_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("sleep.pid");
        let m = commands(
            &format!(
                "echo starting; sleep 300 & echo $! > {}; wait; true",
                pid_file.display()
            ),
            "true",
        );
        let t0 = Instant::now();
        let e = m
            .submit(&dir.path().join("job.sh"), &[], Duration::from_millis(500))
            .unwrap_err();
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(2), "took {took:?}");
        assert!(
            e.message
                .contains("did not finish within 0.5s; it and what it started were killed"),
            "{e:?}"
        );
        assert_eq!(e.output, "starting");
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = (0..100).any(|_| {
            // SAFETY: signal 0 only checks that the process exists
            let alive = unsafe { libc::kill(pid, 0) } == 0
                && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "));
            if alive {
                std::thread::sleep(Duration::from_millis(20));
            }
            !alive
        });
        assert!(gone, "the command's sleep {pid} outlived it");
        // a process that left the group keeps the pipes: the call does not wait for it
        let escaped = commands("setsid sleep 5 & echo 7; true", "true");
        let t0 = Instant::now();
        let id = escaped
            .submit(&dir.path().join("job.sh"), &[], Duration::from_secs(10))
            .unwrap();
        assert!(t0.elapsed() < Duration::from_secs(4), "took {:?}", t0.elapsed());
        assert_eq!(id, "7");
    }

    #[test]
    fn slurm_words_map_to_states() {
        assert_eq!(slurm_state("PENDING"), ManagerState::Pending);
        assert_eq!(slurm_state("COMPLETING"), ManagerState::Running);
        assert_eq!(slurm_state("CANCELLED"), ManagerState::Ended);
        assert_eq!(slurm_state("TIMEOUT"), ManagerState::Failed);
        assert_eq!(
            field("JobId=5 JobState=FAILED Reason=NonZeroExitCode Dep", "Reason"),
            "NonZeroExitCode"
        );
    }
}
