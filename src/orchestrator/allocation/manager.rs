//! The cluster managers behind the allocation queues, one enum: `slurm`
//! (`sbatch`, `squeue`, `scontrol`, `scancel`) and `command` (the user's
//! own submit/status/cancel commands, run through `sh -c` with the script
//! path or the job id as their argument). Every call blocks: the
//! allocator runs them on the blocking pool, never on an actor's thread,
//! each under [`COMMAND_TIMEOUT`].

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::protocol::allocations::{AllocationKind, AllocationSpec};

/// The variable `orquesta up` sets in the workers it starts (`cli::worker`
/// checks it); a job inheriting it would see a parent that is not its own.
const PARENT_PID_VAR: &str = "ORQUESTA_PARENT_PID";

/// The longest a submit, status or cancel command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
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
    pub fn submit(&self, script: &Path, env: &[(String, String)]) -> Result<String, CommandError> {
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
        let out = run(cmd, "submit")?;
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
    pub fn status(&self, id: &str) -> Result<JobStatus, CommandError> {
        match self {
            Manager::Slurm { .. } => slurm_status(id),
            Manager::Command { status, .. } => {
                let out = run(shell(status, id), "status")?;
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
    pub fn cancel(&self, id: &str) -> Result<(), CommandError> {
        let cmd = match self {
            Manager::Slurm { .. } => {
                let mut c = Command::new("scancel");
                c.arg(id);
                c
            }
            Manager::Command { cancel, .. } => shell(cancel, id),
        };
        run(cmd, "cancel").map(|_| ())
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
fn slurm_status(id: &str) -> Result<JobStatus, CommandError> {
    let mut q = Command::new("squeue");
    q.args(["--noheader", "--format=%T|%r", "--jobs", id]);
    let listed = run(q, "status").ok().and_then(|o| {
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
            match run(c, "status") {
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

/// Runs `cmd` under [`COMMAND_TIMEOUT`]; a non-zero exit, a signal or a
/// timeout is an error carrying what it printed.
fn run(mut cmd: Command, what: &str) -> Result<Output, CommandError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| CommandError {
        message: format!("cannot run the {what} command {program}: {e}"),
        output: String::new(),
    })?;
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let mut bytes = Vec::new();
                let _ = p.read_to_end(&mut bytes);
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
            text
        })
    };
    let out = reader(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = reader(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    let output = Output {
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    match status {
        Some(s) if s.success() => Ok(output),
        Some(s) => Err(CommandError {
            message: format!("the {what} command {program} failed ({s})"),
            output: output.both(),
        }),
        None => Err(CommandError {
            message: format!(
                "the {what} command {program} did not finish within {}s; killed",
                COMMAND_TIMEOUT.as_secs()
            ),
            output: output.both(),
        }),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

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
        assert_eq!(m.submit(&script, &[]).unwrap(), "5");
        let env = [("ORQUESTA_TOKEN".to_string(), "s3cret".to_string())];
        let m = commands("echo \"$ORQUESTA_TOKEN\"; true", "true");
        assert_eq!(m.submit(&script, &env).unwrap(), "s3cret");
        let silent = commands("true", "true");
        let e = silent.submit(&script, &[]).unwrap_err();
        assert!(e.message.contains("printed no job id"), "{e:?}");
    }

    #[test]
    fn status_words_and_failures_are_told_apart() {
        let m = commands("true", "echo running on node7; true");
        let s = m.status("42").unwrap();
        assert_eq!(s.state, ManagerState::Running);
        assert_eq!(s.reason.as_deref(), Some("on node7"));
        let bad = commands("true", "echo maybe");
        let e = bad.status("42").unwrap_err();
        assert!(
            e.message.contains("expected pending, running, ended or failed"),
            "{e:?}"
        );
        let failing = commands("echo no queue named batch >&2; exit 3", "true");
        let e = failing.submit(Path::new("/tmp/x.sh"), &[]).unwrap_err();
        assert!(e.message.contains("failed"), "{e:?}");
        assert_eq!(e.output, "no queue named batch");
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
