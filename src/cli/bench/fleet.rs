//! A bench-side fleet of worker ids served by one process (`bench cluster
//! workers` at thousands of workers, more than this machine could start
//! as processes): each id has its own loopback port, joins the
//! orchestrator as a worker does (`POST /workers/join`), and answers the
//! heartbeat (`GET /health`) and `GET /status` as a one-slot worker that
//! runs nothing. It takes no task: it measures membership alone (joins,
//! heartbeats, the lists), never dispatch. Not a worker users run.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

use crate::model::WorkerId;
use crate::protocol::{HealthAnswer, JoinRequest, StatusAnswer};

/// Joins in flight at once during a storm (the orchestrator's
/// `MAX_CONNECTIONS` is 1024 by default).
const JOINS_AT_ONCE: usize = 256;

/// The ids this process serves, by the port each listens on.
struct Ids(HashMap<u16, String>);

/// The fleet's server runs on its own thread until dropped.
pub struct Fleet {
    /// (id, base URL) of each id, in order.
    pub members: Vec<(String, String)>,
    server: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Fleet {
    /// Binds `count` free loopback ports, one per id `{prefix}{i}`, and
    /// serves them from two HTTP threads.
    pub fn start(prefix: &str, count: usize) -> Result<Fleet, String> {
        let mut listeners = Vec::with_capacity(count);
        let mut ids = HashMap::with_capacity(count);
        let mut members = Vec::with_capacity(count);
        for i in 0..count {
            let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding id {i}: {e}"))?;
            let port = l.local_addr().map_err(|e| e.to_string())?.port();
            let id = format!("{prefix}{i}");
            members.push((id.clone(), format!("http://127.0.0.1:{port}")));
            ids.insert(port, id);
            listeners.push(l);
        }
        let ids = web::Data::new(Ids(ids));
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let system = actix_rt::System::new();
            system.block_on(async move {
                let mut server = HttpServer::new(move || {
                    App::new().app_data(ids.clone()).default_service(web::to(answer))
                })
                .workers(2)
                .backlog(4096)
                .max_connections(count * 2 + 64);
                for l in listeners {
                    server = match server.listen(l) {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                }
                let server = server.disable_signals().shutdown_timeout(1).run();
                let _ = tx.send(Ok(server.handle()));
                let _ = server.await;
            });
        });
        let server = rx
            .recv()
            .map_err(|_| "the fleet's server thread ended".to_string())??;
        Ok(Fleet {
            members,
            server,
            thread: Some(thread),
        })
    }

    /// Joins every id to the orchestrator at `base` at once
    /// ([`JOINS_AT_ONCE`] requests in flight): the time the joins took to
    /// be answered, and how many were refused.
    pub fn join_all(&self, base: &str) -> Result<(Duration, usize), String> {
        let members = self.members.clone();
        let url = format!("{base}/workers/join");
        actix_rt::System::new().block_on(async move {
            let mut client = awc::Client::builder().timeout(Duration::from_secs(60));
            if let Some(token) = crate::cli::client::token() {
                client = client.add_default_header((awc::http::header::AUTHORIZATION, token.bearer()));
            }
            let client = client.finish();
            let t0 = Instant::now();
            let queue = Arc::new(std::sync::Mutex::new(members.into_iter()));
            let mut lanes = Vec::new();
            for _ in 0..JOINS_AT_ONCE {
                let (client, url, queue) = (client.clone(), url.clone(), Arc::clone(&queue));
                lanes.push(actix_rt::spawn(async move {
                    let mut refused = 0usize;
                    loop {
                        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                        let Some((id, member_url)) = next else { break };
                        let join = JoinRequest {
                            id: id.clone(),
                            url: member_url,
                            capacity: 1,
                            algorithms: vec!["optimized".into(), "reference".into()],
                            instance: format!("fleet-{}-{id}", std::process::id()),
                            version: env!("CARGO_PKG_VERSION").into(),
                            secret: String::new(),
                        };
                        let mut resp = client
                            .post(&url)
                            .send_json(&join)
                            .await
                            .map_err(|e| format!("joining {id}: {e}"))?;
                        let _ = resp.body().await;
                        if !resp.status().is_success() {
                            refused += 1;
                        }
                    }
                    Ok::<_, String>(refused)
                }));
            }
            let mut refused = 0;
            for lane in lanes {
                refused += lane.await.map_err(|e| format!("a join lane died: {e}"))??;
            }
            Ok((t0.elapsed(), refused))
        })
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // the command is sent at once; the thread ends with the server
        drop(self.server.stop(false));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `GET /health` and `GET /status` as a one-slot worker that runs
/// nothing; anything else 404.
async fn answer(req: HttpRequest, ids: web::Data<Ids>) -> HttpResponse {
    let port = req.app_config().local_addr().port();
    let Some(id) = ids.0.get(&port) else {
        return HttpResponse::NotFound().finish();
    };
    match (req.method().as_str(), req.path()) {
        ("GET", "/health") => HttpResponse::Ok().json(HealthAnswer {
            worker_id: WorkerId::new(id),
            capacity: 1,
            version: env!("CARGO_PKG_VERSION").into(),
            ..HealthAnswer::default()
        }),
        ("GET", "/status") => HttpResponse::Ok().json(StatusAnswer {
            worker_id: WorkerId::new(id),
            capacity: 1,
            algorithms: vec!["optimized".into(), "reference".into()],
            threads_per_task: 1,
            version: env!("CARGO_PKG_VERSION").into(),
            ..StatusAnswer::default()
        }),
        _ => HttpResponse::NotFound().finish(),
    }
}
