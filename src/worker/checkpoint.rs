//! A worker's side of checkpointing (issue 19): every `CHECKPOINT_INTERVAL`
//! seconds of a task's run time, and at once on drain, the Executor asks
//! the simulation for a checkpoint; the simulation thread hands it here
//! and an uploader sends it to the `--join` orchestrator
//! (`POST /tasks/{id}/checkpoint`, with the token). A task dispatched with
//! `checkpoint_step` is fetched back first (`GET /tasks/{id}/checkpoint`)
//! and resumed from it. Without `--join` the worker knows no orchestrator
//! to send to, and saves none.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::model::{AttemptId, TaskId, WorkerId};
use crate::util::token::Token;

/// The longest a checkpoint upload or fetch may take.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(120);
/// The largest checkpoint fetched back (the orchestrator bounds what it
/// stores far below).
const FETCH_LIMIT: usize = 4 << 30;

/// One checkpoint on its way to the orchestrator.
#[derive(Debug)]
pub struct Upload {
    pub task_id: TaskId,
    pub attempt_id: AttemptId,
    pub step: u64,
    pub bytes: Vec<u8>,
}

/// Where simulation threads put checkpoints; sendable to any thread.
pub type UploadSender = mpsc::UnboundedSender<Upload>;

/// The orchestrator a worker sends checkpoints to, and how often.
pub struct Checkpointer {
    client: awc::Client,
    /// `http://HOST:PORT` of the orchestrator (`--join`).
    base: String,
    worker_id: WorkerId,
    /// `CHECKPOINT_INTERVAL` (not zero).
    pub interval: Duration,
    uploads: UploadSender,
}

impl Checkpointer {
    /// Starts the uploader on the current arbiter; `None` when checkpoints
    /// are off or there is no orchestrator to send them to.
    pub fn start(
        base: Option<&str>,
        worker_id: WorkerId,
        interval: Duration,
        token: Option<&Token>,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    ) -> Option<Rc<Self>> {
        let base = base?;
        if interval.is_zero() {
            return None;
        }
        let mut connector = awc::Connector::new();
        if let Some(tls) = tls {
            connector = connector.rustls_0_23(tls);
        }
        let mut client = awc::Client::builder().connector(connector);
        if let Some(token) = token {
            client = client.add_default_header((awc::http::header::AUTHORIZATION, token.bearer()));
        }
        let (uploads, queue) = mpsc::unbounded_channel();
        let me = Rc::new(Self {
            client: client.finish(),
            base: base.to_string(),
            worker_id,
            interval,
            uploads,
        });
        actix_rt::spawn(upload_loop(Rc::clone(&me), queue));
        Some(me)
    }

    /// Where a simulation sends its checkpoints.
    pub fn sender(&self) -> UploadSender {
        self.uploads.clone()
    }

    /// The checkpoint the orchestrator holds for `task_id`.
    pub async fn fetch(&self, task_id: &TaskId) -> Result<Vec<u8>, String> {
        let url = format!("{}/tasks/{task_id}/checkpoint", self.base);
        let mut answer = self
            .client
            .get(url)
            .timeout(TRANSFER_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("cannot reach the orchestrator: {e}"))?;
        let status = answer.status();
        let body = answer
            .body()
            .limit(FETCH_LIMIT)
            .await
            .map_err(|e| format!("the answer was cut: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "the orchestrator answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ));
        }
        Ok(body.to_vec())
    }

    async fn upload(&self, up: &Upload) -> Result<(), String> {
        let url = format!(
            "{}/tasks/{}/checkpoint?attempt_id={}&worker_id={}&step={}",
            self.base,
            up.task_id,
            up.attempt_id,
            encode_query(self.worker_id.as_str()),
            up.step
        );
        let mut answer = self
            .client
            .post(url)
            .timeout(TRANSFER_TIMEOUT)
            .insert_header(("content-type", "application/octet-stream"))
            .send_body(up.bytes.clone())
            .await
            .map_err(|e| format!("cannot reach the orchestrator: {e}"))?;
        if answer.status().is_success() {
            return Ok(());
        }
        let body = answer.body().limit(64 * 1024).await.unwrap_or_default();
        Err(format!(
            "the orchestrator answered {}: {}",
            answer.status(),
            String::from_utf8_lossy(&body)
        ))
    }
}

/// Sends checkpoints one at a time, oldest task first; of several waiting
/// for one task only the newest goes.
async fn upload_loop(me: Rc<Checkpointer>, mut queue: mpsc::UnboundedReceiver<Upload>) {
    while let Some(first) = queue.recv().await {
        let mut newest: HashMap<TaskId, Upload> = HashMap::new();
        let mut order = Vec::new();
        let mut keep = |up: Upload| {
            if !newest.contains_key(&up.task_id) {
                order.push(up.task_id.clone());
            }
            newest.insert(up.task_id.clone(), up);
        };
        keep(first);
        while let Ok(up) = queue.try_recv() {
            keep(up);
        }
        for id in order {
            let Some(up) = newest.remove(&id) else { continue };
            match me.upload(&up).await {
                Ok(()) => tracing::info!(task = %up.task_id, attempt = %up.attempt_id, step = up.step,
                    bytes = up.bytes.len(), "checkpoint sent"),
                Err(e) => tracing::warn!(task = %up.task_id, attempt = %up.attempt_id, step = up.step,
                    error = %e, "cannot send a checkpoint; the next one is sent at the next interval"),
            }
        }
    }
}

/// `s` safe in a query string: worker ids are plain, but any other byte is
/// percent-encoded.
fn encode_query(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
