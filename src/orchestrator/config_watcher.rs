//! ConfigWatcher: `config_workers.json` while the orchestrator runs. A
//! `notify` watch on its folder (filtered by the file's name, so editors
//! that write by rename — vim, `sed -i` — and in-place writes both count),
//! a short debounce, and a slow re-read as a fallback (events can be
//! missed). A valid file goes to the Membership ([`ApplyConfig`]); an
//! invalid one is refused with one log line, the last good configuration
//! stays, and [`ConfigStatus`] (shown by `GET /workers`) says why.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use notify::{RecursiveMode, Watcher};
use serde::Serialize;

use crate::orchestrator::config::parse_workers;
use crate::orchestrator::membership::ApplyConfig;

/// Quiet time after the last event before the file is read: an editor's
/// write is complete by then.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// How often the debounce deadline is checked.
const TICK: Duration = Duration::from_millis(50);
/// The fallback: the file is read this often even without events.
const FALLBACK: Duration = Duration::from_secs(1);

/// Whether the workers file on disk is in force, for `GET /workers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct ConfigStatus {
    pub path: String,
    pub valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The status, shared with the API (read without a message).
pub type SharedConfigStatus = Arc<RwLock<ConfigStatus>>;

/// What a read of the file means: nothing new, a configuration to apply,
/// or a problem to report. Pure, so the rules are unit-tested.
#[derive(Debug, PartialEq)]
enum Verdict {
    Unchanged,
    Apply(Vec<crate::orchestrator::config::WorkerEntry>),
    Refuse(String),
}

fn judge(last: Option<&[u8]>, now: Result<&[u8], String>) -> Verdict {
    match now {
        Err(e) => Verdict::Refuse(e),
        Ok(bytes) if last == Some(bytes) => Verdict::Unchanged,
        Ok(bytes) => match parse_workers(bytes) {
            Ok(entries) => Verdict::Apply(entries),
            Err(problems) => Verdict::Refuse(problems.join("; ")),
        },
    }
}

pub struct ConfigWatcher {
    path: PathBuf,
    lb: Recipient<ApplyConfig>,
    status: SharedConfigStatus,
    /// The bytes last judged (valid or not): the same bytes are not judged
    /// (nor logged) twice.
    last: Option<Vec<u8>>,
    /// The error last reported, so a vanished file is said once.
    last_error: Option<String>,
    due: Option<Instant>,
    watcher: Option<notify::RecommendedWatcher>,
}

impl ConfigWatcher {
    /// `initial`: the bytes the orchestrator started with (already in force).
    pub fn new(
        path: PathBuf,
        initial: Option<Vec<u8>>,
        lb: Recipient<ApplyConfig>,
    ) -> (Self, SharedConfigStatus) {
        let status = Arc::new(RwLock::new(ConfigStatus {
            path: path.display().to_string(),
            valid: true,
            error: None,
        }));
        let me = Self {
            path,
            lb,
            status: Arc::clone(&status),
            last: initial,
            last_error: None,
            due: None,
            watcher: None,
        };
        (me, status)
    }

    fn set_status(&self, error: Option<String>) {
        let mut s = self.status.write().unwrap_or_else(|e| e.into_inner());
        s.valid = error.is_none();
        s.error = error;
    }

    /// Reads the file and applies or refuses it.
    fn check(&mut self) {
        self.due = None;
        let read = crate::orchestrator::config::read_workers_file(&self.path)
            .map_err(|e| format!("cannot read it: {e}"));
        match judge(self.last.as_deref(), read.as_deref().map_err(Clone::clone)) {
            Verdict::Unchanged => {}
            Verdict::Apply(entries) => {
                tracing::info!(file = %self.path.display(), workers = entries.len(), "workers file changed: applied");
                if entries.is_empty() {
                    tracing::warn!("{}", crate::orchestrator::config::NO_WORKERS_CONFIGURED);
                }
                self.last = read.ok();
                self.last_error = None;
                self.set_status(None);
                self.lb.do_send(ApplyConfig { entries });
            }
            Verdict::Refuse(error) => {
                if self.last_error.as_deref() != Some(error.as_str()) {
                    tracing::warn!(file = %self.path.display(), %error,
                        "workers file refused; the last good configuration stays in force: {error}");
                }
                // unreadable: whatever comes back is judged afresh
                self.last = read.ok();
                self.last_error = Some(error.clone());
                self.set_status(Some(error));
            }
        }
    }
}

impl Actor for ConfigWatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = self.path.file_name().map(|n| n.to_os_string());
        let me = ctx.address();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event {
                if event.paths.iter().any(|p| p.file_name() == name.as_deref()) {
                    me.do_send(FileTouched);
                }
            }
        });
        match watcher {
            Ok(mut w) => match w.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => self.watcher = Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the workers file's folder; reading it every second instead")
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "no file watching here; reading the workers file every second instead")
            }
        }
        ctx.run_interval(TICK, |act, _| {
            if act.due.is_some_and(|t| t <= Instant::now()) {
                act.check();
            }
        });
        ctx.run_interval(FALLBACK, |act, _| {
            if act.due.is_none() {
                act.due = Some(Instant::now() + DEBOUNCE);
            }
        });
    }
}

/// Sent from notify's thread: the workers file (or its name) was touched.
#[derive(Message)]
#[rtype(result = "()")]
struct FileTouched;

impl Handler<FileTouched> for ConfigWatcher {
    type Result = ();
    fn handle(&mut self, _: FileTouched, _: &mut Self::Context) {
        self.due = Some(Instant::now() + DEBOUNCE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &[u8] = br#"{"workers": [{"id": "w1", "host": "127.0.0.1", "port": 5001, "capacity": 2}]}"#;

    #[test]
    fn the_same_bytes_are_judged_once() {
        assert_eq!(judge(Some(ONE), Ok(ONE)), Verdict::Unchanged);
        assert!(matches!(judge(None, Ok(ONE)), Verdict::Apply(w) if w.len() == 1));
        assert_eq!(
            judge(Some(ONE), Ok(br#"{"workers": []}"#)),
            Verdict::Apply(vec![])
        );
    }

    #[test]
    fn an_invalid_file_is_refused_with_every_problem_on_one_line() {
        let two =
            br#"{"workers": [{"id": "a", "host": "h", "port": 1}, {"id": "a", "host": "h", "port": 0}]}"#;
        let Verdict::Refuse(why) = judge(Some(ONE), Ok(two)) else {
            panic!("accepted")
        };
        assert!(
            why.contains("workers[1].id") && why.contains("workers[1].port"),
            "{why}"
        );
        assert!(!why.contains('\n'));
        assert!(matches!(judge(Some(ONE), Ok(b"{")), Verdict::Refuse(w) if w.contains("malformed")));
        assert_eq!(
            judge(Some(ONE), Err("gone".into())),
            Verdict::Refuse("gone".into())
        );
    }
}
