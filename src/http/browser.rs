//! What keeps a web page the user happens to open from driving or reading
//! a server of this machine. Both servers wrap their whole `App` in
//! [`check`], just inside the token check (so a request without the token
//! still learns nothing but 401); it holds with and without a token:
//!
//! - **DNS rebinding.** A page on `evil.example` can make its own name
//!   resolve to 127.0.0.1 and then read our answers as same-origin. A
//!   browser still sends `Host: evil.example`, so a server without a token
//!   (which the bind rule keeps on loopback) answers only requests addressed
//!   to a loopback name or address. Names are never resolved here: that
//!   resolution is exactly what the attacker controls. `GET /health` stays
//!   open to any `Host`, for probes.
//! - **Cross-origin writes.** A page may send simple requests (`POST` with
//!   `text/plain`, no preflight) anywhere. Browsers name the page's origin in
//!   `Origin` on every such request, so a request that changes state is
//!   refused when `Origin` is present and is not this server's own (the
//!   dashboard's buttons are same-origin and pass). No CORS header is ever
//!   answered, so no preflighted request from another origin gets through
//!   either.
//! - **Bodies are typed.** A request that changes state and carries a body
//!   must say `Content-Type: application/json` (or, for the bytes of a
//!   checkpoint, `application/octet-stream`): types a page cannot send to
//!   another origin without a preflight, unlike the `text/plain`, form and
//!   multipart bodies a simple request may carry.
//!
//! Command-line clients (curl, the `orquesta` tools, workers) send no
//! `Origin` and a loopback `Host` (or a token), so they pass unchanged.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap};
use actix_web::http::Method;
use actix_web::middleware::Next;

use super::error::{ApiError, ErrorCode};
use crate::util::token::is_loopback_literal;

/// What a server checks; made once from its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrowserGuard {
    /// `Host` must be a loopback name or address: true when no token
    /// protects the server (the bind rule then keeps it on loopback, unless
    /// `--insecure` opened it to a network on purpose).
    pub loopback_host_only: bool,
}

impl BrowserGuard {
    /// The guard of a server: `token_set`, and whether `--insecure` let it
    /// listen beyond loopback without a token (then any `Host` is expected).
    pub fn new(token_set: bool, insecure_bind: bool) -> Self {
        BrowserGuard {
            loopback_host_only: !token_set && !insecure_bind,
        }
    }
}

/// The middleware: `App::new().wrap(from_fn(move |req, next| browser::check(guard, req, next)))`.
pub async fn check(
    guard: BrowserGuard,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    verdict(guard, req.method(), req.path(), req.headers())?;
    next.call(req).await
}

/// Why a request is refused, if it is.
fn verdict(guard: BrowserGuard, method: &Method, path: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    if *method == Method::GET && path == "/health" {
        return Ok(());
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if guard.loopback_host_only {
        // HTTP/1.0 may omit Host; no browser does
        if let Some(host) = host.filter(|h| !is_loopback_authority(h)) {
            return Err(ApiError::new(
                ErrorCode::ForeignHost,
                format!(
                    "this server has no token, so it answers only requests addressed to localhost, \
                     127.0.0.1 or [::1]; this one was addressed to {host:?}. Use one of those names, \
                     or set ORQUESTA_TOKEN (or ORQUESTA_TOKEN_FILE) to reach it under another name"
                ),
            ));
        }
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("(not text)");
        if !host.is_some_and(|h| same_origin(origin, h)) {
            return Err(ApiError::new(
                ErrorCode::CrossOrigin,
                format!(
                    "a page of another origin ({origin}) may not change this server's state; \
                     use the dashboard this server serves, curl or the orquesta command line"
                ),
            ));
        }
    }
    if has_body(headers) && !needs_preflight(headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()))
    {
        let sent = headers
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!(
                "expected a JSON body with the header Content-Type: application/json, found {}; \
                 with curl add -H 'Content-Type: application/json'",
                sent.map_or("no Content-Type".to_string(), |s| format!("Content-Type: {s}"))
            ),
        ));
    }
    Ok(())
}

/// Whether an authority (`host[:port]`, IPv6 in brackets) names this
/// machine's loopback as written ([`is_loopback_literal`], never resolved).
fn is_loopback_authority(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    is_loopback_literal(host)
}

/// Whether `Origin` (`scheme://authority`) is the server's own `Host`.
fn same_origin(origin: &str, host: &str) -> bool {
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

/// Whether the request carries a body (a length above zero, or chunks).
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|n| n.trim() != "0")
}

/// `application/json`, `application/<something>+json` or
/// `application/octet-stream` (checkpoints), parameters allowed: none is
/// a type a cross-origin page may send without a preflight.
fn needs_preflight(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        essence == "application/json"
            || essence == "application/octet-stream"
            || (essence.starts_with("application/") && essence.ends_with("+json"))
    })
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    const OPEN: BrowserGuard = BrowserGuard {
        loopback_host_only: true,
    };
    const TOKEN: BrowserGuard = BrowserGuard {
        loopback_host_only: false,
    };

    fn code(guard: BrowserGuard, method: Method, path: &str, pairs: &[(&str, &str)]) -> Option<&'static str> {
        verdict(guard, &method, path, &headers(pairs))
            .err()
            .map(|e| e.code.as_str())
    }

    #[test]
    fn a_rebinding_name_is_refused_without_a_token_but_health_stays_open() {
        for host in [
            "evil.example:5000",
            "127.0.0.1.nip.io:5000",
            "localhost.evil.example",
        ] {
            assert_eq!(
                code(OPEN, Method::GET, "/tasks", &[("host", host)]),
                Some("foreign_host"),
                "{host}"
            );
            assert_eq!(
                code(OPEN, Method::GET, "/health", &[("host", host)]),
                None,
                "{host}"
            );
            assert_eq!(
                code(TOKEN, Method::GET, "/tasks", &[("host", host)]),
                None,
                "{host}"
            );
        }
        for host in [
            "127.0.0.1:5000",
            "localhost:1",
            "LOCALHOST",
            "[::1]:5000",
            "127.8.9.10",
            "a.localhost:5",
        ] {
            assert_eq!(
                code(OPEN, Method::GET, "/tasks", &[("host", host)]),
                None,
                "{host}"
            );
        }
    }

    #[test]
    fn a_write_from_another_origin_is_refused_with_or_without_a_token() {
        let from = |origin| [("host", "127.0.0.1:5000"), ("origin", origin)];
        for guard in [OPEN, TOKEN] {
            assert_eq!(
                code(
                    guard,
                    Method::POST,
                    "/workers/w1/drain",
                    &from("http://evil.example")
                ),
                Some("cross_origin")
            );
            assert_eq!(
                code(guard, Method::DELETE, "/tasks/t1", &from("null")),
                Some("cross_origin")
            );
            assert_eq!(
                code(
                    guard,
                    Method::POST,
                    "/workers/w1/drain",
                    &from("http://127.0.0.1:5000")
                ),
                None
            );
            // reading is the browser's business (no CORS header is sent)
            assert_eq!(
                code(guard, Method::GET, "/stats", &from("http://evil.example")),
                None
            );
        }
    }

    #[test]
    fn a_body_must_say_it_is_json() {
        let with = |ct: &'static str| {
            vec![
                ("host", "localhost:5000"),
                ("content-length", "12"),
                ("content-type", ct),
            ]
        };
        assert_eq!(
            code(OPEN, Method::POST, "/tasks", &with("text/plain")),
            Some("unsupported_media_type")
        );
        assert_eq!(
            code(
                OPEN,
                Method::POST,
                "/tasks",
                &with("application/x-www-form-urlencoded")
            ),
            Some("unsupported_media_type")
        );
        assert_eq!(
            code(
                OPEN,
                Method::POST,
                "/tasks",
                &[("host", "localhost"), ("transfer-encoding", "chunked")]
            ),
            Some("unsupported_media_type")
        );
        assert_eq!(
            code(
                OPEN,
                Method::POST,
                "/tasks",
                &with("application/json; charset=utf-8")
            ),
            None
        );
        assert_eq!(
            code(OPEN, Method::POST, "/tasks", &with("application/problem+json")),
            None
        );
        // a worker's checkpoint: bytes, which no page sends without a preflight
        assert_eq!(
            code(
                OPEN,
                Method::POST,
                "/tasks/t1/checkpoint",
                &with("application/octet-stream")
            ),
            None
        );
        assert_eq!(
            code(
                OPEN,
                Method::POST,
                "/tasks/t1/checkpoint",
                &with("multipart/form-data")
            ),
            Some("unsupported_media_type")
        );
        // no body: nothing to describe (POST /workers/{id}/drain, /tasks/{id}/retry)
        assert_eq!(
            code(
                OPEN,
                Method::POST,
                "/workers/w1/drain",
                &[("host", "localhost"), ("content-length", "0")]
            ),
            None
        );
    }

    #[test]
    fn an_insecure_bind_answers_any_host_but_still_refuses_other_origins() {
        let guard = BrowserGuard::new(false, true);
        assert_eq!(
            code(guard, Method::GET, "/tasks", &[("host", "node7.cluster:5000")]),
            None
        );
        assert_eq!(
            code(
                guard,
                Method::POST,
                "/tasks",
                &[("host", "node7.cluster:5000"), ("origin", "http://evil.example")]
            ),
            Some("cross_origin")
        );
        assert_eq!(BrowserGuard::new(false, false), OPEN);
        assert_eq!(BrowserGuard::new(true, false), TOKEN);
    }
}
