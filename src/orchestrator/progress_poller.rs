//! ProgressPoller: how far the running tasks are (steps done of steps), asked
//! of the workers themselves with `GET /current`, and only while a
//! dashboard watches: the dashboard's stream sends [`RunningNow`] with the
//! workers that run something, and nothing else ever asks.
//!
//! Bounded: a worker is asked at most once per [`REFRESH`], one request
//! at a time, with a short [`ASK_TIMEOUT`]; the answer is the last one
//! known at once (never a wait on a worker), so a slow or dead worker
//! delays nothing. The list shown is cut to [`SHOWN`] tasks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::Serialize;

use crate::model::{TaskId, WorkerId};
use crate::protocol::{CurrentAnswer, CurrentTask};
use crate::util::token::Token;

/// How old a worker's answer may be before it is asked again.
pub const REFRESH: Duration = Duration::from_secs(1);

/// How long one `GET /current` may take.
pub const ASK_TIMEOUT: Duration = Duration::from_millis(800);

/// Running tasks shown: the ones running longest.
pub const SHOWN: usize = 20;

/// One running task with the worker that runs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunningTask {
    pub worker_id: WorkerId,
    pub task_id: TaskId,
    /// As the worker names it (see [`CurrentTask::kernel`]).
    pub kernel: String,
    pub num_particles: u64,
    pub num_steps: u64,
    pub steps_done: u64,
    pub progress: f64,
    pub elapsed_seconds: f64,
}

impl RunningTask {
    fn of(worker: &str, t: &CurrentTask) -> Self {
        Self {
            worker_id: WorkerId::new(worker),
            task_id: t.task_id.clone(),
            kernel: t.kernel.clone(),
            num_particles: t.num_particles,
            num_steps: t.num_steps,
            steps_done: t.steps_done,
            progress: t.progress,
            elapsed_seconds: t.elapsed_seconds,
        }
    }
}

/// A worker's last answer.
struct Known {
    asked: Instant,
    asking: bool,
    tasks: Vec<CurrentTask>,
}

pub struct ProgressPoller {
    client: awc::Client,
    known: HashMap<String, Known>,
}

impl ProgressPoller {
    /// The client carries the cluster token and trusts what the worker
    /// proxies trust (`ORQUESTA_TLS_CA`).
    pub fn new(token: Option<&Token>, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        let mut connector = awc::Connector::new();
        if let Some(tls) = tls {
            connector = connector.rustls_0_23(tls);
        }
        let mut client = awc::Client::builder()
            .connector(connector)
            .timeout(ASK_TIMEOUT)
            .disable_redirects();
        if let Some(token) = token {
            client = client.add_default_header((awc::http::header::AUTHORIZATION, token.bearer()));
        }
        Self {
            client: client.finish(),
            known: HashMap::new(),
        }
    }
}

impl Actor for ProgressPoller {
    type Context = Context<Self>;
}

/// Sent by the dashboard's stream on each tick: the workers that run
/// something now, as (id, base URL). Answers the running tasks last known
/// of them, longest running first, at most [`SHOWN`]; asks again the ones
/// whose answer is older than [`REFRESH`].
#[derive(Message)]
#[rtype(result = "Vec<RunningTask>")]
pub struct RunningNow {
    pub workers: Vec<(String, String)>,
}

impl Handler<RunningNow> for ProgressPoller {
    type Result = MessageResult<RunningNow>;

    fn handle(&mut self, msg: RunningNow, ctx: &mut Context<Self>) -> Self::Result {
        // a worker that runs nothing now is forgotten (and not asked)
        self.known
            .retain(|id, _| msg.workers.iter().any(|(w, _)| w == id));
        for (id, base) in &msg.workers {
            let due = self
                .known
                .get(id)
                .is_none_or(|k| !k.asking && k.asked.elapsed() >= REFRESH);
            if !due {
                continue;
            }
            let entry = self.known.entry(id.clone()).or_insert_with(|| Known {
                asked: Instant::now(),
                asking: false,
                tasks: Vec::new(),
            });
            entry.asking = true;
            entry.asked = Instant::now();
            let request = self.client.get(format!("{base}/current")).send();
            let id = id.clone();
            let ask = async move {
                let mut resp = request.await.ok()?;
                if !resp.status().is_success() {
                    return None;
                }
                let body = resp.body().limit(4 << 20).await.ok()?;
                serde_json::from_slice::<CurrentAnswer>(&body).ok()
            };
            ctx.spawn(ask.into_actor(self).map(move |answer, act, _| {
                if let Some(k) = act.known.get_mut(&id) {
                    k.asking = false;
                    if let Some(a) = answer {
                        k.tasks = a.tasks;
                    }
                }
            }));
        }
        MessageResult(shown(
            self.known
                .iter()
                .flat_map(|(w, k)| k.tasks.iter().map(move |t| (w.as_str(), t))),
        ))
    }
}

/// The tasks shown: longest running first, at most [`SHOWN`].
fn shown<'a>(all: impl Iterator<Item = (&'a str, &'a CurrentTask)>) -> Vec<RunningTask> {
    let mut out: Vec<RunningTask> = all.map(|(w, t)| RunningTask::of(w, t)).collect();
    out.sort_by(|a, b| {
        b.elapsed_seconds
            .total_cmp(&a.elapsed_seconds)
            .then_with(|| a.task_id.cmp(&b.task_id))
    });
    out.truncate(SHOWN);
    out
}

#[cfg(test)]
mod tests {
    use actix_web::{web, App, HttpResponse, HttpServer};

    use super::*;

    fn task(id: &str, elapsed: f64, done: u64) -> CurrentTask {
        CurrentTask {
            task_id: id.into(),
            kernel: "reference".into(),
            num_particles: 50,
            num_steps: 100,
            steps_done: done,
            progress: done as f64 / 100.0,
            elapsed_seconds: elapsed,
            attempt_id: None,
            algorithm: String::new(),
            started_at: String::new(),
            cancelling: false,
        }
    }

    #[test]
    fn the_longest_running_are_shown_first_and_the_list_is_cut() {
        let tasks: Vec<CurrentTask> = (0..30).map(|i| task(&format!("t{i:02}"), i as f64, i)).collect();
        let out = shown(tasks.iter().map(|t| ("w1", t)));
        assert_eq!(out.len(), SHOWN);
        assert_eq!(out[0].task_id, "t29");
        assert_eq!(out[0].worker_id, "w1");
        assert_eq!(out[0].steps_done, 29);
    }

    #[actix_rt::test]
    async fn a_worker_is_asked_in_the_background_and_forgotten_when_idle() {
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&asked);
        let server = HttpServer::new(move || {
            let counter = Arc::clone(&counter);
            App::new().route(
                "/current",
                web::get().to(move || {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    async { HttpResponse::Ok().json(CurrentAnswer::new(vec![task("t1", 2.0, 40)])) }
                }),
            )
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let addr = server.addrs()[0];
        actix_rt::spawn(server.run());
        let progress = ProgressPoller::new(None, None).start();
        let workers = vec![("w1".to_string(), format!("http://{addr}"))];
        // the first tick answers at once, with nothing known yet
        let first = progress
            .send(RunningNow {
                workers: workers.clone(),
            })
            .await
            .unwrap();
        assert!(first.is_empty());
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        while got.is_empty() && Instant::now() < deadline {
            actix_rt::time::sleep(Duration::from_millis(20)).await;
            got = progress
                .send(RunningNow {
                    workers: workers.clone(),
                })
                .await
                .unwrap();
        }
        assert_eq!(got.len(), 1, "the worker's answer arrives on a later tick");
        assert_eq!((got[0].worker_id.as_str(), got[0].steps_done), ("w1", 40));
        // ticks within REFRESH do not ask again
        assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1);
        // a worker that runs nothing is dropped at once
        let none = progress.send(RunningNow { workers: vec![] }).await.unwrap();
        assert!(none.is_empty());
    }
}
