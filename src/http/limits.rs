//! What one client may cost a server, for both HTTP servers: request
//! bodies read with a size limit, a deadline and a cap on how many large
//! ones are held at once ([`read_body`], and [`read_typed`] /
//! [`read_json`] on top of it); connection caps and timeouts on
//! the server itself ([`apply`]); query strings whose errors name the
//! parameter ([`query_config`], [`whole_param`]).
//!
//! # Why each limit
//! - A body is held in memory whole before it is parsed, so each endpoint
//!   has its own size limit (413 past it, refused from `Content-Length`
//!   before anything is read).
//! - actix drops a request whose *headers* trickle in (after
//!   [`REQUEST_HEAD_TIMEOUT`]) but waits for a body as long as the handler
//!   does: [`read_body`] gives up after `REQUEST_BODY_TIMEOUT` with 408, so
//!   a client that sends a few bytes and stalls holds its connection for a
//!   bounded time.
//! - A few large bodies at once would add up: at most
//!   [`LARGE_BODIES_AT_ONCE`] bodies over [`LARGE_BODY_BYTES`] are held at
//!   a time; another waits up to [`LARGE_BODY_WAIT`], then gets 503 with
//!   `Retry-After`.
//! - Each connection is a file descriptor: `MAX_CONNECTIONS` caps them
//!   (more wait in the listen queue) below the process's open-files
//!   limit, which [`apply`] first raises to the hard limit.

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, Service, ServiceFactory};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpServer};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::{ApiError, ErrorCode};
use crate::model::strict_json::{self, StrictError};
use crate::util::settings::HttpLimits;

/// A body at least this large is "large": see [`LARGE_BODIES_AT_ONCE`].
pub const LARGE_BODY_BYTES: usize = 1 << 20;

/// Large bodies held in memory at once, per server.
pub const LARGE_BODIES_AT_ONCE: usize = 2;

/// How long a large body waits for its turn before the answer is 503.
pub const LARGE_BODY_WAIT: Duration = Duration::from_secs(2);

/// How long a client may take to send a request's headers (actix's own
/// deadline, stated here so that it is documented with the others).
pub const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a closing connection may take to shut down cleanly.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Descriptors kept free of HTTP connections for the database, task files,
/// logs and outgoing connections, when the open-files limit is low.
const FD_RESERVE: u64 = 256;

/// One endpoint's body limit and what to say when it is passed.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit {
    pub bytes: usize,
    /// Names the limit (a setting, or what the limit is for).
    pub name: &'static str,
    /// What to do instead.
    pub hint: &'static str,
}

/// The rules every body of one server is read with: the deadline and the
/// turns for large bodies. Cheap to clone (one per server, shared).
#[derive(Debug, Clone)]
pub struct BodyRules {
    deadline: Duration,
    large: Arc<Semaphore>,
}

impl BodyRules {
    pub fn new(deadline: Duration) -> Self {
        Self {
            deadline,
            large: Arc::new(Semaphore::new(LARGE_BODIES_AT_ONCE)),
        }
    }
}

/// A request body read whole; holds its large-body turn until dropped, so
/// keep it until the body is parsed.
pub struct Body {
    pub bytes: web::BytesMut,
    _turn: Option<OwnedSemaphorePermit>,
}

impl std::ops::Deref for Body {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// The length the client declared, if any.
fn declared_length(req: &HttpRequest) -> Option<usize> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn too_large(limit: &BodyLimit, declared: Option<usize>) -> ApiError {
    let size = declared.map_or("request body is".to_string(), |n| {
        format!("request body of {n} bytes is")
    });
    ApiError::new(
        ErrorCode::BodyTooLarge,
        format!(
            "{size} larger than the limit of {} bytes ({}); {}",
            limit.bytes, limit.name, limit.hint
        ),
    )
    .with("limit_bytes", json!(limit.bytes))
}

/// Waits (at most [`LARGE_BODY_WAIT`]) for a turn to hold a large body.
async fn large_turn(rules: &BodyRules) -> Result<OwnedSemaphorePermit, ApiError> {
    let turn = actix_rt::time::timeout(LARGE_BODY_WAIT, Arc::clone(&rules.large).acquire_owned()).await;
    match turn {
        Ok(Ok(permit)) => Ok(permit),
        // a closed semaphore cannot happen (it is never closed): busy all the same
        _ => Err(ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "busy: {LARGE_BODIES_AT_ONCE} request bodies over {LARGE_BODY_BYTES} bytes are being read \
                 already; try again shortly"
            ),
        )
        .retry_after(1)),
    }
}

/// Reads a request body of at most `limit` bytes within the server's body
/// deadline. Past the limit: 413 (from `Content-Length` before reading);
/// past the deadline: 408; no large-body turn: 503 with `Retry-After`.
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: BodyLimit,
    rules: &BodyRules,
) -> Result<Body, ApiError> {
    let declared = declared_length(req);
    if declared.is_some_and(|n| n > limit.bytes) {
        return Err(too_large(&limit, declared));
    }
    let mut turn = match declared {
        Some(n) if n >= LARGE_BODY_BYTES => Some(large_turn(rules).await?),
        _ => None,
    };
    let mut bytes = web::BytesMut::with_capacity(declared.unwrap_or(0).min(limit.bytes));
    let read = async {
        while let Some(chunk) = payload.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
            if bytes.len() + chunk.len() > limit.bytes {
                return Err(too_large(&limit, declared));
            }
            if turn.is_none() && bytes.len() + chunk.len() >= LARGE_BODY_BYTES {
                // a body without Content-Length that grows large
                turn = Some(large_turn(rules).await?);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match actix_rt::time::timeout(rules.deadline, read).await {
        Ok(Ok(())) => Ok(Body { bytes, _turn: turn }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ApiError::new(
            ErrorCode::BodyTimeout,
            format!(
                "the request body did not arrive within REQUEST_BODY_TIMEOUT = {} s{}; send the body \
                 without pauses (or raise REQUEST_BODY_TIMEOUT on a slow link)",
                rules.deadline.as_secs_f64(),
                declared.map_or(String::new(), |n| format!(" (Content-Length {n})")),
            ),
        )),
    }
}

/// Reads a JSON body straight into `T` (no `Value` tree in between): the
/// body's problems are [`read_body`]'s, then 400 with `expected` and where
/// the JSON breaks.
pub async fn read_typed<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    limit: BodyLimit,
    rules: &BodyRules,
    expected: &str,
) -> Result<T, ApiError> {
    let body = read_body(req, payload, limit, rules).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            ErrorCode::EmptyBody,
            format!("request body is empty: expected {expected}"),
        ));
    }
    serde_json::from_slice(&body).map_err(|e| {
        let code = if e.is_syntax() || e.is_eof() {
            ErrorCode::MalformedJson
        } else {
            ErrorCode::BadRequest
        };
        ApiError::new(code, format!("expected {expected}: {e}"))
            .with("line", json!(e.line()))
            .with("column", json!(e.column()))
    })
}

/// Reads a JSON body into a [`Value`], refusing a key given twice
/// (`strict_json`): 400 `empty_body`, or `malformed_json` with where it
/// breaks.
pub async fn read_json(
    req: &HttpRequest,
    payload: web::Payload,
    limit: BodyLimit,
    rules: &BodyRules,
) -> Result<Value, ApiError> {
    let body = read_body(req, payload, limit, rules).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            ErrorCode::EmptyBody,
            "request body is empty: expected a JSON object",
        ));
    }
    let text = std::str::from_utf8(&body).map_err(|e| {
        ApiError::new(
            ErrorCode::MalformedJson,
            format!(
                "malformed JSON: not valid UTF-8 (bad byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    strict_json::parse(text, "").map_err(|e| match e {
        StrictError::Duplicate(d) => ApiError::new(
            ErrorCode::MalformedJson,
            format!(
                "malformed JSON: duplicate key {:?}{}; a key may appear once in an object",
                d.key,
                if d.path.is_empty() {
                    String::new()
                } else {
                    format!(" in {}", d.path)
                }
            ),
        ),
        StrictError::Json(e) => ApiError::new(ErrorCode::MalformedJson, format!("malformed JSON: {e}"))
            .with("line", json!(e.line()))
            .with("column", json!(e.column())),
    })
}

/// The query-string extractor's errors as JSON that names what is wrong
/// (serde_urlencoded's text without actix's "Query deserialize error"),
/// for both servers. Values are typed by [`whole_param`] in the handlers,
/// so what reaches here is the shape of the string (a parameter given
/// twice, a bad escape).
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|e, _| {
        let why = match &e {
            actix_web::error::QueryPayloadError::Deserialize(inner) => inner.to_string(),
            other => other.to_string(),
        };
        ApiError::bad_request(format!(
            "invalid query string: {why}; give each parameter once, as ?name=value&other=value"
        ))
        .into()
    })
}

/// A query parameter that must be a whole number, with an error that names
/// it: `limit: expected a whole number, found "abc"`.
pub fn whole_param(name: &str, raw: Option<&str>) -> Result<Option<usize>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    raw.trim().parse::<usize>().map(Some).map_err(|e| {
        let what = match e.kind() {
            std::num::IntErrorKind::PosOverflow => {
                format!("a whole number from 0 to {}", usize::MAX)
            }
            _ => "a whole number".to_string(),
        };
        ApiError::bad_request(format!("{name}: expected {what}, found {raw:?}"))
    })
}

/// Applies the connection limits of `limits` to a server with `threads`
/// HTTP threads, after raising the open-files limit (once per process is
/// enough; again is harmless): `MAX_CONNECTIONS` shared among the threads
/// and kept [`FD_RESERVE`] below the open-files limit, and the header and
/// disconnect deadlines.
pub fn apply<F, I, S, B>(
    server: HttpServer<F, I, S, B>,
    limits: &HttpLimits,
    threads: usize,
) -> HttpServer<F, I, S, B>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: actix_service::IntoServiceFactory<S, actix_http::Request>,
    S: ServiceFactory<actix_http::Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<actix_web::dev::Response<B>> + 'static,
    <S::Service as Service<actix_http::Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let open_files = crate::util::platform::raise_open_files();
    let total = connection_cap(limits.max_connections, open_files);
    if total < limits.max_connections {
        tracing::warn!(
            max_connections = limits.max_connections,
            open_files_limit = open_files,
            used = total,
            "MAX_CONNECTIONS is above what the open-files limit allows; fewer are used (raise `ulimit -n`)"
        );
    }
    let threads = threads.max(1);
    server
        .workers(threads)
        .max_connections(total.div_ceil(threads).max(1))
        .client_request_timeout(REQUEST_HEAD_TIMEOUT)
        .client_disconnect_timeout(DISCONNECT_TIMEOUT)
}

/// `MAX_CONNECTIONS`, kept [`FD_RESERVE`] below the open-files limit.
fn connection_cap(max_connections: usize, open_files: Option<u64>) -> usize {
    match open_files {
        Some(n) => max_connections.min(n.saturating_sub(FD_RESERVE).max(16) as usize),
        None => max_connections,
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;
    use actix_web::FromRequest;

    use super::*;

    /// The handler's view of a request's body stream.
    async fn payload(req: &HttpRequest, mut raw: actix_web::dev::Payload) -> web::Payload {
        web::Payload::from_request(req, &mut raw).await.unwrap()
    }

    const LIMIT: BodyLimit = BodyLimit {
        bytes: 16,
        name: "TEST_LIMIT",
        hint: "send less",
    };

    #[test]
    fn query_numbers_name_the_parameter() {
        assert_eq!(whole_param("limit", Some("25")).unwrap(), Some(25));
        assert_eq!(whole_param("limit", None).unwrap(), None);
        let e = whole_param("limit", Some("abc")).unwrap_err();
        assert_eq!(e.body.error, "limit: expected a whole number, found \"abc\"");
        let e = whole_param("offset", Some("99999999999999999999999")).unwrap_err();
        assert!(
            e.body
                .error
                .starts_with("offset: expected a whole number from 0 to "),
            "{}",
            e.body.error
        );
    }

    #[test]
    fn the_connection_cap_stays_under_the_open_files_limit() {
        assert_eq!(connection_cap(1024, None), 1024);
        assert_eq!(connection_cap(1024, Some(1_000_000)), 1024);
        assert_eq!(connection_cap(1024, Some(1024)), 768);
        assert_eq!(connection_cap(1024, Some(100)), 16);
    }

    #[actix_rt::test]
    async fn a_declared_length_over_the_limit_is_refused_before_reading() {
        let (req, raw) = TestRequest::post()
            .insert_header((header::CONTENT_LENGTH, "17"))
            .to_http_parts();
        let rules = BodyRules::new(Duration::from_secs(5));
        let e = read_body(&req, payload(&req, raw).await, LIMIT, &rules)
            .await
            .err()
            .unwrap();
        assert_eq!(e.code, ErrorCode::BodyTooLarge);
        assert!(
            e.body
                .error
                .contains("17 bytes is larger than the limit of 16 bytes (TEST_LIMIT); send less"),
            "{}",
            e.body.error
        );
    }

    #[actix_rt::test]
    async fn a_body_within_the_limit_is_read() {
        let (req, raw) = TestRequest::post().set_payload("{\"a\": 1}").to_http_parts();
        let rules = BodyRules::new(Duration::from_secs(5));
        let body = read_body(&req, payload(&req, raw).await, LIMIT, &rules)
            .await
            .ok()
            .unwrap();
        assert_eq!(&*body, b"{\"a\": 1}");
    }

    #[actix_rt::test]
    async fn a_json_body_with_a_key_given_twice_is_malformed() {
        let limit = BodyLimit { bytes: 1000, ..LIMIT };
        let rules = BodyRules::new(Duration::from_secs(5));
        let (req, raw) = TestRequest::post()
            .set_payload(r#"{"task_id": "a", "parameters": {"seed": 1, "seed": 2}}"#)
            .to_http_parts();
        let e = read_json(&req, payload(&req, raw).await, limit, &rules)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::MalformedJson);
        assert!(
            e.body.error.contains("duplicate key \"seed\" in parameters"),
            "{}",
            e.body.error
        );
        let (req, raw) = TestRequest::post().set_payload(r#"{"a": 1}"#).to_http_parts();
        let v = read_json(&req, payload(&req, raw).await, limit, &rules)
            .await
            .unwrap();
        assert_eq!(v, json!({"a": 1}));
    }

    #[actix_rt::test]
    async fn a_body_that_stalls_is_a_408() {
        // a stream that never ends: the client stopped sending
        let (mut sender, stalled) = actix_http::h1::Payload::create(false);
        sender.feed_data(web::Bytes::from_static(b"{\"a\""));
        let (req, _) = TestRequest::post()
            .insert_header((header::CONTENT_LENGTH, "10"))
            .to_http_parts();
        let rules = BodyRules::new(Duration::from_millis(100));
        let e = read_body(&req, payload(&req, stalled.into()).await, LIMIT, &rules)
            .await
            .err()
            .unwrap();
        assert_eq!(e.code, ErrorCode::BodyTimeout);
        assert!(
            e.body.error.contains("REQUEST_BODY_TIMEOUT = 0.1 s"),
            "{}",
            e.body.error
        );
        drop(sender);
    }

    #[actix_rt::test]
    async fn large_bodies_wait_for_a_turn_then_get_503() {
        let rules = BodyRules::new(Duration::from_secs(5));
        let held: Vec<_> =
            futures_util::future::join_all((0..LARGE_BODIES_AT_ONCE).map(|_| large_turn(&rules)))
                .await
                .into_iter()
                .map(|t| t.ok().unwrap())
                .collect();
        let e = large_turn(&rules).await.err().unwrap();
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert_eq!(e.retry_after, Some(1));
        drop(held);
        assert!(large_turn(&rules).await.is_ok());
    }
}
