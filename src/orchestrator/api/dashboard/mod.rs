//! The live dashboard: `GET /` for a browser (a request whose `Accept`
//! names `text/html`) answers one self-contained page built into the
//! binary (`page.html`, `page.css`, `page.js`: nothing fetched from
//! elsewhere, clusters are often offline); API clients keep the JSON list
//! of endpoints. `GET /events` is the page's live feed: Server-Sent
//! Events, one [`snapshot`] every [`TICK`] while the page is open (with
//! the allocation queues and their jobs, as `GET /allocations` has them).
//! `GET /activity/failures` lists the last failures on demand.
//!
//! # The token
//! The page itself holds no data, so it is open (`auth::is_open`); every
//! data route keeps the token. A browser cannot send a header when it
//! navigates and `EventSource` cannot set one, so the page reads the
//! stream with `fetch()` and sends `Authorization: Bearer` itself. It takes
//! the token from the address's fragment (`#token=…`, never sent to a
//! server, so never in a log), or asks for it once, and keeps it in
//! `sessionStorage`.
//!
//! # What it costs
//! A snapshot reads the kept counts (a few rows), the worker board (a
//! dashmap), the activity recorder (one short lock) and the progress cache
//! (a message; the workers are asked in the background, at most once a
//! second, and only while a stream is open) and the allocator's queues (a
//! message answered from memory: no cluster-manager command runs for it). No task is read. At most
//! [`MAX_STREAMS`] streams are open at once, [`MAX_STREAMS_PER_CLIENT`]
//! of them from one address, so one client cannot hold every stream.
//!
//! # A stream nobody reads
//! A client may open its streams and never read them. Each stream's socket
//! holds little unsent ([`STREAM_SEND_BUFFER`]); once it is full actix no
//! longer asks the stream for events, and a stream not asked for
//! [`UNREAD_LIMIT`] (while not itself busy reading a snapshot) is ended:
//! a watch beside it shuts its socket down ([`crate::http::socket`]), the
//! connection closes and its place is free again.

pub mod snapshot;

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix::Addr;
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{guard, web, HttpRequest, HttpResponse};
use futures_util::Stream;

use super::allocations::AllocationApi;
use super::OrchestratorApi;
use crate::http::auth::wants_html;
use crate::http::error::{ApiError, ErrorCode};
use crate::http::socket::ConnSocket;
use crate::orchestrator::activity::Activity;
use crate::orchestrator::allocation::ListAllocations;
use crate::orchestrator::board::WorkerInfo;
use crate::orchestrator::progress_poller::{ProgressPoller, RunningNow};
use crate::protocol::stats::RecentFailures;
use crate::protocol::ErrorBody;
use crate::util::time::unix_now;

/// Time between two snapshots of a stream: two a second at most.
pub const TICK: Duration = Duration::from_millis(500);

/// Worker rows a snapshot carries (the first ones in configuration
/// order; counts cover every worker): at thousands of workers a snapshot
/// stays a few tens of KB.
pub const WORKER_ROWS: usize = 200;

/// Streams open at once; one more is answered 503.
pub const MAX_STREAMS: usize = 32;

/// Streams open at once from one client address; one more is answered
/// 429 (a browser with a few tabs stays well under it).
pub const MAX_STREAMS_PER_CLIENT: usize = 4;

/// A stream actix has not asked for an event for this long (its socket
/// is full: the client does not read) is ended.
pub const UNREAD_LIMIT: Duration = Duration::from_secs(10);

/// What the kernel may hold unsent for one stream (about ten snapshots):
/// a client that stops reading fills it within seconds.
pub const STREAM_SEND_BUFFER: usize = 16 << 10;

/// One open stream as the limits see it.
struct OpenStream {
    id: u64,
    client: Option<IpAddr>,
}

/// The streams open now, shared by the handlers and each stream's slot.
#[derive(Default)]
struct Streams {
    open: Mutex<Vec<OpenStream>>,
    next_id: AtomicU64,
}

/// Why a stream was not opened.
enum NoRoom {
    Everyone,
    ThisClient,
}

impl Streams {
    /// A place for a stream from `client`; the slot gives it back when
    /// dropped.
    fn open(self: &Arc<Self>, client: Option<IpAddr>) -> Result<StreamSlot, NoRoom> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.len() >= MAX_STREAMS {
            return Err(NoRoom::Everyone);
        }
        if client.is_some() && open.iter().filter(|s| s.client == client).count() >= MAX_STREAMS_PER_CLIENT {
            return Err(NoRoom::ThisClient);
        }
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        open.push(OpenStream { id, client });
        Ok(StreamSlot {
            streams: Arc::clone(self),
            id,
        })
    }
}

/// What the dashboard's handlers share.
pub struct Dashboard {
    pub activity: Arc<Activity>,
    pub progress: Addr<ProgressPoller>,
    /// Streams open now.
    streams: Arc<Streams>,
    /// Set when the server stops: open streams end at their next tick, so
    /// a watching browser does not hold the shutdown.
    stopping: Arc<AtomicBool>,
    /// The last snapshot built and when: every stream that ticks within
    /// [`TICK`] of it sends it (with its own `seq`), so a snapshot is
    /// built about once per tick however many streams are open. The lock
    /// is held while one is built, so streams never build it twice.
    latest: tokio::sync::Mutex<Option<(Instant, Arc<str>)>>,
}

impl Dashboard {
    pub fn new(activity: Arc<Activity>, progress: Addr<ProgressPoller>) -> Self {
        Self {
            activity,
            progress,
            streams: Arc::default(),
            stopping: Arc::default(),
            latest: tokio::sync::Mutex::new(None),
        }
    }

    /// Ends every open stream at its next tick.
    pub fn stop_streams(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }
}

/// The part of the OpenAPI document these routes are (the page is the
/// `text/html` answer of `GET /`, in `health`'s part).
#[derive(utoipa::OpenApi)]
#[openapi(paths(events, failures))]
pub struct Doc;

/// Registers the page (before the JSON `GET /` of `api::orchestrator`,
/// which answers when the guard does not match), the stream and the
/// failures list.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/")
            .guard(guard::Get())
            .guard(guard::fn_guard(|ctx| {
                wants_html(ctx.head().headers.get(header::ACCEPT))
            }))
            .to(page),
    )
    .service(crate::http::error::resource("/events").route(web::get().to(events)))
    .service(crate::http::error::resource("/activity/failures").route(web::get().to(failures)));
}

/// The page, assembled once: the HTML with its style and script inlined.
static PAGE: LazyLock<String> = LazyLock::new(|| {
    include_str!("page.html")
        .replace("/*STYLE*/", include_str!("page.css"))
        .replace("/*SCRIPT*/", include_str!("page.js"))
});

/// `GET /` for a browser: the page. It may not be framed elsewhere and
/// may fetch only from this server.
async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-frame-options", "DENY"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; connect-src 'self'; img-src 'self' data:; \
             style-src 'unsafe-inline'; script-src 'unsafe-inline'; frame-ancestors 'none'",
        ))
        .body(PAGE.as_str())
}

/// `GET /activity/failures`: the last failed or lost attempts, newest
/// first, with their reasons (in memory since start).
#[utoipa::path(get, path = "/activity/failures", tag = "dashboard",
    responses((status = 200, description = "the last failures, newest first", body = RecentFailures)))]
async fn failures(dash: web::Data<Dashboard>) -> HttpResponse {
    let list = dash.activity.failures();
    HttpResponse::Ok().json(RecentFailures {
        returned: list.len(),
        failures: list,
    })
}

/// Counts a stream as open until dropped (the client went away, or the
/// server stops).
struct StreamSlot {
    streams: Arc<Streams>,
    id: u64,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let id = self.id;
        self.streams
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| s.id != id);
    }
}

/// The base URLs of the workers that run something now.
fn busy_workers(workers: &[WorkerInfo]) -> Vec<(String, String)> {
    workers
        .iter()
        .filter(|w| w.running > 0)
        .map(|w| {
            let scheme = if w.tls { "https" } else { "http" };
            (w.id.clone(), format!("{scheme}://{}", w.address))
        })
        .collect()
}

/// One snapshot as an SSE event: the shared one when it is younger than
/// a tick, else a new one (then shared).
async fn next_event(
    api: &web::Data<OrchestratorApi>,
    dash: &web::Data<Dashboard>,
    alloc: &web::Data<AllocationApi>,
    seq: u64,
) -> Bytes {
    let mut latest = dash.latest.lock().await;
    let body = match &*latest {
        Some((at, body)) if at.elapsed() < TICK => Ok(Arc::clone(body)),
        _ => match build_snapshot(api, dash, alloc).await {
            Ok(body) => {
                let body: Arc<str> = Arc::from(body);
                *latest = Some((Instant::now(), Arc::clone(&body)));
                Ok(body)
            }
            Err(e) => Err(e),
        },
    };
    drop(latest);
    let body = match body {
        Ok(json) => snapshot::with_seq(&json, seq),
        Err(error) => serde_json::to_string(&snapshot::Unavailable { seq, error }).unwrap_or_default(),
    };
    Bytes::from(format!("event: snapshot\ndata: {body}\n\n"))
}

/// A new snapshot's JSON (without `seq`), or why none can be made.
async fn build_snapshot(
    api: &web::Data<OrchestratorApi>,
    dash: &web::Data<Dashboard>,
    alloc: &web::Data<AllocationApi>,
) -> Result<String, String> {
    let workers = api.workers.page(0, WORKER_ROWS);
    // a queue list that cannot be had (the allocator stopping) shows none
    let allocations = alloc
        .allocator
        .send(ListAllocations)
        .await
        .map(|l| l.allocations)
        .unwrap_or_default();
    let running = dash
        .progress
        .send(RunningNow {
            workers: busy_workers(&api.workers.busy(WORKER_ROWS)),
        })
        .await
        .unwrap_or_default();
    let (read, activity) = (Arc::clone(&api.read), Arc::clone(&dash.activity));
    let uptime = api.started.elapsed().as_secs_f64();
    let parts = web::block(move || {
        snapshot::read_parts(
            &read,
            &activity,
            workers,
            running,
            allocations,
            unix_now(),
            uptime,
        )
    })
    .await;
    match parts {
        Ok(Ok(p)) => serde_json::to_string(&snapshot::render(&p)).map_err(|e| format!("snapshot: {e}")),
        Ok(Err(e)) => Err(format!("database unavailable: {e}")),
        Err(e) => Err(format!("busy: {e}")),
    }
}

/// `GET /events`: a snapshot at once, then one every [`TICK`], until the
/// client goes away.
#[utoipa::path(get, path = "/events", tag = "dashboard",
    responses(
        (status = 200, description = "Server-Sent Events: `event: snapshot` with the dashboard's JSON, twice a second, until the client goes away; a stream its client does not read for 10 s is closed",
            content_type = "text/event-stream", body = String),
        (status = 429, description = "this client has MAX_STREAMS_PER_CLIENT (4) streams open already (`too_many_streams`)", body = ErrorBody),
        (status = 503, description = "too many streams open (`unavailable`), or shutting down", body = ErrorBody),
    ))]
async fn events(
    api: web::Data<OrchestratorApi>,
    dash: web::Data<Dashboard>,
    alloc: web::Data<AllocationApi>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let client = req.peer_addr().map(|a| a.ip());
    let slot = match dash.streams.open(client) {
        Ok(slot) => slot,
        Err(NoRoom::Everyone) => {
            return Err(ApiError::unavailable(format!(
                "{MAX_STREAMS} dashboard streams are open already; close one (a browser tab) and reload"
            )))
        }
        Err(NoRoom::ThisClient) => {
            return Err(ApiError::new(
                ErrorCode::TooManyStreams,
                format!(
                    "this client has {MAX_STREAMS_PER_CLIENT} dashboard streams open already; close one \
                     (a browser tab) and reload"
                ),
            ))
        }
    };
    let watch = Arc::new(Reading::new());
    let state = (api, dash, alloc, slot, 0u64, Arc::clone(&watch));
    let stream = futures_util::stream::unfold(state, |(api, dash, alloc, slot, seq, watch)| async move {
        if seq > 0 {
            actix_rt::time::sleep(TICK).await;
        }
        if dash.stopping.load(Ordering::SeqCst) {
            return None;
        }
        watch.preparing.store(true, Ordering::SeqCst);
        let event = next_event(&api, &dash, &alloc, seq + 1).await;
        watch.preparing.store(false, Ordering::SeqCst);
        Some((
            Ok::<_, actix_web::Error>(event),
            (api, dash, alloc, slot, seq + 1, watch),
        ))
    });
    if let Some(socket) = req.conn_data::<ConnSocket>().copied() {
        socket.limit_send_buffer(STREAM_SEND_BUFFER);
        end_when_unread(Arc::downgrade(&watch), socket, client);
    }
    let stream = Watched {
        inner: Box::pin(stream),
        watch,
    };
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // a reverse proxy must pass each event on at once
        .insert_header(("x-accel-buffering", "no"))
        .streaming(stream))
}

/// When actix last asked a stream for an event, and whether the stream is
/// busy reading a snapshot (then the wait is the server's, not the client's).
struct Reading {
    since: Instant,
    /// Milliseconds after `since` of the last ask.
    asked_ms: AtomicU64,
    preparing: AtomicBool,
}

impl Reading {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            asked_ms: AtomicU64::new(0),
            preparing: AtomicBool::new(false),
        }
    }

    fn asked(&self) {
        let ms = self.since.elapsed().as_millis() as u64;
        self.asked_ms.store(ms, Ordering::SeqCst);
    }

    /// How long actix has not asked while the stream had an event ready.
    fn unread_for(&self) -> Duration {
        if self.preparing.load(Ordering::SeqCst) {
            return Duration::ZERO;
        }
        let asked = Duration::from_millis(self.asked_ms.load(Ordering::SeqCst));
        self.since.elapsed().saturating_sub(asked)
    }
}

/// A stream that notes every time actix asks it for an event.
struct Watched<S> {
    inner: Pin<Box<S>>,
    watch: Arc<Reading>,
}

impl<S: Stream> Stream for Watched<S> {
    type Item = S::Item;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.watch.asked();
        self.inner.as_mut().poll_next(cx)
    }
}

/// Watches a stream from beside it (on the same HTTP thread) and shuts its
/// socket down once it has gone [`UNREAD_LIMIT`] unread; stops when the
/// stream is gone (then actix may have given its descriptor to another
/// connection, so the socket is never touched after that).
fn end_when_unread(watch: Weak<Reading>, socket: ConnSocket, client: Option<IpAddr>) {
    actix_rt::spawn(async move {
        let mut every = actix_rt::time::interval(UNREAD_LIMIT / 10);
        loop {
            every.tick().await;
            let Some(reading) = watch.upgrade() else {
                return;
            };
            if reading.unread_for() >= UNREAD_LIMIT {
                tracing::info!(client = ?client, "a dashboard stream its client did not read for {} s was ended",
                    UNREAD_LIMIT.as_secs());
                socket.end();
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_whole_and_fetches_nothing_from_elsewhere() {
        let page = PAGE.as_str();
        assert!(
            !page.contains("/*STYLE*/") && !page.contains("/*SCRIPT*/"),
            "inlined"
        );
        assert!(page.contains("prefers-color-scheme: dark"));
        assert!(page.contains("/events"));
        for bad in ["http://", "https://", "//cdn", "@import", "src=\"//"] {
            assert!(!page.contains(bad), "the page names {bad:?}");
        }
    }
}
