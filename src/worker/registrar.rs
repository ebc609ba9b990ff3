//! Registrar (worker side): keeps a worker started with `--join` registered
//! with its orchestrator. It `POST`s a [`JoinRequest`] to `/workers/join`
//! at start and again every `rejoin_interval_seconds` the answer names (so
//! a restarted orchestrator learns of it again), retries with backoff while
//! the orchestrator is unreachable, and on [`Leave`] (sent by
//! `worker::shutdown` after draining) sends `DELETE /workers/{id}`.
//!
//! The first join of an id is answered with a secret, kept in the worker's
//! folder (`worker_<id>_join_secret`, readable by its owner only) and
//! shown in every later join: after a restart it proves this is the same
//! worker, so no other process can take its id while it is away.
//!
//! It never stops the worker: whatever the orchestrator answers, the worker
//! keeps serving. Problems are logged when they change and then at most
//! once a minute ([`Reporter`]), so a long outage is not a log flood.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::protocol::{ErrorBody, JoinAnswer, JoinRequest};
use crate::util::token::Token;

/// First retry delay after a failed join; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between two joins that failed: an orchestrator coming back
/// learns of the worker within this time.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Bounds on the orchestrator's `rejoin_interval_seconds`, so a zero or a
/// huge value cannot make the worker spin or vanish for hours.
const MIN_REJOIN: Duration = Duration::from_millis(100);
const MAX_REJOIN: Duration = Duration::from_secs(300);
/// A join waits this long for its answer.
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Leaving is best effort: the worker is stopping and must not hang on it.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);
/// The same problem is logged again at most this often.
const REPEAT_LOG: Duration = Duration::from_secs(60);

/// What one join attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum JoinOutcome {
    Joined(JoinAnswer),
    /// 409 `worker_id_taken`: another live worker has this id.
    IdTaken {
        address: String,
        message: String,
    },
    /// Any other answer than 200 (the error body's message when there is one).
    Refused {
        status: u16,
        message: String,
    },
    /// No answer: connection refused, timeout, name not resolved.
    Unreachable(String),
}

impl JoinOutcome {
    /// The kind of outcome, to tell a change from a repeat in the log.
    fn kind(&self) -> &'static str {
        match self {
            JoinOutcome::Joined(_) => "joined",
            JoinOutcome::IdTaken { .. } => "id_taken",
            JoinOutcome::Refused { .. } => "refused",
            JoinOutcome::Unreachable(_) => "unreachable",
        }
    }
}

/// The wait before the next join: the orchestrator's interval after a
/// success, else a doubling backoff (`failures` in a row, the first is 1).
pub fn next_join_in(outcome: &JoinOutcome, failures: u32) -> Duration {
    match outcome {
        JoinOutcome::Joined(a) => {
            let secs = a.rejoin_interval_seconds;
            let d = if secs.is_finite() && secs > 0.0 {
                Duration::from_secs_f64(secs.min(MAX_REJOIN.as_secs_f64()))
            } else {
                MAX_REJOIN
            };
            d.clamp(MIN_REJOIN, MAX_REJOIN)
        }
        _ => {
            let doubled = FIRST_BACKOFF.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
            doubled.min(MAX_BACKOFF)
        }
    }
}

/// Decides which outcomes are worth a log line: a change of kind always,
/// the same problem again only after [`REPEAT_LOG`], a repeated success never.
#[derive(Debug, Default)]
pub struct Reporter {
    last: Option<(&'static str, Instant)>,
}

impl Reporter {
    pub fn should_log(&mut self, outcome: &JoinOutcome, now: Instant) -> bool {
        let kind = outcome.kind();
        let log = match self.last {
            Some((k, at)) if k == kind => kind != "joined" && now.duration_since(at) >= REPEAT_LOG,
            _ => true,
        };
        if log {
            self.last = Some((kind, now));
        }
        log
    }
}

/// Reads the orchestrator's answer to a join.
pub fn read_answer(status: u16, body: &[u8]) -> JoinOutcome {
    if status == 200 {
        return match serde_json::from_slice::<JoinAnswer>(body) {
            Ok(a) => JoinOutcome::Joined(a),
            Err(e) => JoinOutcome::Refused {
                status,
                message: format!(
                    "expected a join answer, found {}: {e}",
                    String::from_utf8_lossy(body)
                ),
            },
        };
    }
    let error: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let message = if error.error.is_empty() {
        String::from_utf8_lossy(body).chars().take(200).collect()
    } else {
        error.error.clone()
    };
    if status == 409 && error.code == crate::protocol::ErrorCode::WorkerIdTaken {
        let address = error
            .details
            .get("address")
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_string();
        return JoinOutcome::IdTaken { address, message };
    }
    JoinOutcome::Refused { status, message }
}

/// Sent by `worker::shutdown` after draining: no more joins, and the
/// orchestrator is told the worker leaves (`DELETE /workers/{id}`, best
/// effort). Answers once that request has ended or timed out.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave;

/// Timer: time to join (again).
#[derive(Message)]
#[rtype(result = "()")]
struct JoinTick;

pub struct Registrar {
    /// The orchestrator's base URL, `http://HOST:PORT`.
    orchestrator: String,
    request: JoinRequest,
    client: awc::Client,
    failures: u32,
    reporter: Reporter,
    /// The join in flight, cancelled by [`Leave`].
    in_flight: Option<SpawnHandle>,
    leaving: bool,
    /// Where a secret the orchestrator issues is kept (none: in memory only).
    secret_file: Option<PathBuf>,
}

/// The join secret kept in `path` (empty when there is none yet).
pub fn read_secret(path: &Path) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

impl Registrar {
    /// `token`: sent with the join and the leave (`ORQUESTA_TOKEN`);
    /// `tls`: what an `https://` orchestrator is trusted with (`ORQUESTA_TLS_CA`).
    pub fn new(
        orchestrator: String,
        request: JoinRequest,
        token: Option<&Token>,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    ) -> Self {
        let mut connector = awc::Connector::new();
        if let Some(tls) = tls {
            connector = connector.rustls_0_23(tls);
        }
        let mut client = awc::Client::builder().connector(connector);
        if let Some(token) = token {
            client = client.add_default_header((awc::http::header::AUTHORIZATION, token.bearer()));
        }
        Registrar {
            orchestrator,
            request,
            client: client.finish(),
            failures: 0,
            reporter: Reporter::default(),
            in_flight: None,
            leaving: false,
            secret_file: None,
        }
    }

    /// Keeps a secret the orchestrator issues in `path`, for the next start.
    pub fn keeping_secret_in(mut self, path: PathBuf) -> Self {
        self.secret_file = Some(path);
        self
    }

    /// A join answered with a new secret: shown from now on, and kept.
    fn keep_secret(&mut self, secret: &str) {
        if secret.is_empty() || secret == self.request.secret {
            return;
        }
        self.request.secret = secret.to_string();
        if let Some(path) = &self.secret_file {
            if let Err(e) = crate::util::fs::write_private(path, secret.as_bytes()) {
                tracing::warn!(worker = %self.request.id, path = %path.display(), error = %e,
                    "cannot keep the join secret on disk: after a restart this worker waits until its old \
                     entry is removed or expires before it joins again");
            }
        }
    }

    fn log(&mut self, outcome: &JoinOutcome) {
        if !self.reporter.should_log(outcome, Instant::now()) {
            return;
        }
        let (id, orchestrator) = (&self.request.id, &self.orchestrator);
        match outcome {
            JoinOutcome::Joined(a) => tracing::info!(worker = %id, %orchestrator, source = ?a.source,
                rejoin_interval_seconds = a.rejoin_interval_seconds, "joined the orchestrator"),
            JoinOutcome::IdTaken { address, message } => tracing::error!(worker = %id, %orchestrator,
                other = %address, %message,
                "the orchestrator refused this worker: another live worker has the id {id} (at {address}); \
                 this worker keeps serving but gets no tasks until that one is removed or expires; \
                 or give it another --worker-id"),
            JoinOutcome::Refused { status, message } => tracing::warn!(worker = %id, %orchestrator,
                status, %message, "the orchestrator refused the join; trying again"),
            JoinOutcome::Unreachable(e) => tracing::warn!(worker = %id, %orchestrator, error = %e,
                "cannot reach the orchestrator to join; trying again"),
        }
    }
}

impl Actor for Registrar {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.notify(JoinTick);
    }
}

impl Handler<JoinTick> for Registrar {
    type Result = ();

    /// One join, then the next one scheduled from its outcome.
    fn handle(&mut self, _: JoinTick, ctx: &mut Context<Self>) {
        if self.leaving {
            return;
        }
        let request = self
            .client
            .post(format!("{}/workers/join", self.orchestrator))
            .timeout(JOIN_TIMEOUT)
            .send_json(&self.request);
        let attempt = async move {
            match request.await {
                Err(e) => JoinOutcome::Unreachable(e.to_string()),
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    match response.body().limit(64 * 1024).await {
                        Ok(body) => read_answer(status, &body),
                        Err(e) => JoinOutcome::Unreachable(format!("the answer was cut: {e}")),
                    }
                }
            }
        };
        let handle = ctx.spawn(attempt.into_actor(self).map(|outcome, act, ctx| {
            act.in_flight = None;
            if act.leaving {
                return;
            }
            act.failures = match &outcome {
                JoinOutcome::Joined(answer) => {
                    act.keep_secret(&answer.secret);
                    0
                }
                _ => act.failures.saturating_add(1),
            };
            act.log(&outcome);
            ctx.notify_later(JoinTick, next_join_in(&outcome, act.failures));
        }));
        self.in_flight = Some(handle);
    }
}

impl Handler<Leave> for Registrar {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Leave, ctx: &mut Context<Self>) -> Self::Result {
        self.leaving = true;
        if let Some(h) = self.in_flight.take() {
            ctx.cancel_future(h);
        }
        let (id, orchestrator) = (self.request.id.clone(), self.orchestrator.clone());
        let request = self
            .client
            .delete(format!("{orchestrator}/workers/{id}"))
            .timeout(LEAVE_TIMEOUT)
            .send();
        Box::pin(async move {
            match request.await {
                Ok(r) if r.status().is_success() || r.status().as_u16() == 404 => {
                    tracing::info!(worker = %id, %orchestrator, "left the orchestrator")
                }
                Ok(r) => tracing::warn!(worker = %id, %orchestrator, status = r.status().as_u16(),
                    "the orchestrator did not accept the leave; it will mark this worker down"),
                Err(e) => tracing::warn!(worker = %id, %orchestrator, error = %e,
                    "cannot tell the orchestrator this worker leaves; it will mark it down"),
            }
        })
    }
}

/// A value unlikely to repeat between two starts of a worker (the join's
/// `instance`): the clock's nanoseconds and the pid through SplitMix64.
pub fn new_instance() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut rng = crate::sim::rng::SplitMix64::new(nanos ^ (u64::from(std::process::id()) << 32));
    format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::MemberSource;

    fn joined(secs: f64) -> JoinOutcome {
        JoinOutcome::Joined(JoinAnswer {
            id: "w".into(),
            source: MemberSource::Joined,
            rejoin_interval_seconds: secs,
            secret: String::new(),
        })
    }

    #[test]
    fn rejoins_at_the_orchestrators_interval_and_backs_off_on_failure() {
        assert_eq!(next_join_in(&joined(2.5), 0), Duration::from_millis(2500));
        assert_eq!(next_join_in(&joined(0.0), 0), MAX_REJOIN);
        assert_eq!(next_join_in(&joined(f64::NAN), 0), MAX_REJOIN);
        assert_eq!(next_join_in(&joined(0.001), 0), MIN_REJOIN);
        assert_eq!(next_join_in(&joined(1e9), 0), MAX_REJOIN);
        let down = JoinOutcome::Unreachable("refused".into());
        assert_eq!(next_join_in(&down, 1), FIRST_BACKOFF);
        assert_eq!(next_join_in(&down, 2), FIRST_BACKOFF * 2);
        assert_eq!(next_join_in(&down, 3), FIRST_BACKOFF * 4);
        assert_eq!(next_join_in(&down, 1000), MAX_BACKOFF);
    }

    #[test]
    fn a_problem_is_logged_when_it_changes_and_then_once_a_minute() {
        let mut r = Reporter::default();
        let t = Instant::now();
        let down = JoinOutcome::Unreachable("refused".into());
        assert!(r.should_log(&down, t));
        assert!(!r.should_log(&down, t + Duration::from_secs(5)));
        assert!(r.should_log(&down, t + Duration::from_secs(61)));
        assert!(r.should_log(&joined(1.0), t + Duration::from_secs(62)));
        assert!(!r.should_log(&joined(1.0), t + Duration::from_secs(600)));
        let taken = JoinOutcome::IdTaken {
            address: "x".into(),
            message: "m".into(),
        };
        assert!(r.should_log(&taken, t + Duration::from_secs(601)));
        assert!(!r.should_log(&taken, t + Duration::from_secs(602)));
    }

    #[test]
    fn answers_are_read_into_outcomes() {
        let ok = br#"{"id":"w","source":"joined","rejoin_interval_seconds":3}"#;
        assert_eq!(read_answer(200, ok), joined(3.0));
        let taken = br#"{"error":"id in use","code":"worker_id_taken","address":"http://10.0.0.2:5001"}"#;
        assert_eq!(
            read_answer(409, taken),
            JoinOutcome::IdTaken {
                address: "http://10.0.0.2:5001".into(),
                message: "id in use".into()
            }
        );
        assert_eq!(
            read_answer(503, b"busy"),
            JoinOutcome::Refused {
                status: 503,
                message: "busy".into()
            }
        );
        assert!(matches!(
            read_answer(200, b"{"),
            JoinOutcome::Refused { status: 200, .. }
        ));
        assert_ne!(new_instance(), new_instance());
    }
}
