//! How the tools reach an orchestrator or a worker: the address from a URL
//! the user typed (or the orchestrator's own `ORCHESTRATOR_HOST` /
//! `ORCHESTRATOR_PORT`, else 127.0.0.1:5000), and JSON over `ureq`'s
//! blocking HTTP client, trying every address a name resolves to (for
//! `https://`, the name itself, which the certificate must carry), with the
//! cluster's token and the CA of `ORQUESTA_TLS_CA`. Used by
//! `submit`, `status`, `ping`, `config check` and the benches.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::protocol::ErrorBody;
use crate::util::tls::{Tls, NEEDS_CA};
use crate::util::token::Token;

/// The cluster's token, sent on every request (set once by `cli::main`
/// from `--token`, `--token-file` or the environment).
static TOKEN: OnceLock<Option<Token>> = OnceLock::new();

/// Sets the token every later request sends; the first call wins.
pub fn use_token(token: Option<Token>) {
    let _ = TOKEN.set(token);
}

/// The certificates `https://` requests trust (`ORQUESTA_TLS_CA`), set
/// once by `cli::main`.
static TRUST: OnceLock<Option<Arc<Vec<ureq::tls::Certificate<'static>>>>> = OnceLock::new();

/// Sets what every later `https://` request trusts; the first call wins.
pub fn use_tls(tls: &Tls) {
    let certs = (!tls.ca.is_empty()).then(|| {
        Arc::new(
            tls.ca
                .iter()
                .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
                .collect(),
        )
    });
    let _ = TRUST.set(certs);
}

/// The token requests send, if any (for the benches' own clients).
pub fn token() -> Option<&'static Token> {
    TOKEN.get().and_then(Option::as_ref)
}

/// The port an orchestrator listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 5000;

/// An HTTP server as `host:port` (brackets around an IPv6 host), over
/// TLS (`https://`) or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: String,
    pub tls: bool,
}

impl Endpoint {
    /// A plain-HTTP endpoint at `host:port`.
    pub fn plain(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            tls: false,
        }
    }

    /// Reads `http://host:port`, `https://host:port`, `host:port` or
    /// `host` (port 5000); a trailing `/` is fine, any other path is not.
    pub fn parse(url: &str) -> Result<Self, String> {
        let typed = url.trim();
        let (rest, tls) = match typed.split_once("://") {
            None => (typed, false),
            Some(("http", rest)) => (rest, false),
            Some(("https", rest)) => (rest, true),
            Some((scheme, _)) => {
                return Err(format!(
                    "expected an http:// or https:// URL such as http://127.0.0.1:5000, found the scheme {scheme:?}"
                ))
            }
        };
        let (host_port, path) = rest.split_once('/').unwrap_or((rest, ""));
        if !path.is_empty() {
            return Err(format!(
                "expected a URL without a path such as http://127.0.0.1:5000, found {typed:?}"
            ));
        }
        let bad = || format!("expected a URL such as http://127.0.0.1:5000, found {typed:?}");
        if host_port.is_empty() {
            return Err(bad());
        }
        let (host, port) = if let Some(inner) = host_port.strip_prefix('[') {
            let (host, after) = inner.split_once(']').ok_or_else(bad)?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(bad)?),
            };
            (format!("[{host}]"), port)
        } else if host_port.matches(':').count() > 1 {
            (format!("[{host_port}]"), None)
        } else {
            match host_port.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (host_port.to_string(), None),
            }
        };
        if host.is_empty() || host == "[]" {
            return Err(bad());
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("expected a port from 1 to 65535 in {typed:?}, found {p:?}"))?,
        };
        Ok(Self {
            addr: format!("{host}:{port}"),
            tls,
        })
    }

    /// The orchestrator this machine would run: `ORCHESTRATOR_HOST` and
    /// `ORCHESTRATOR_PORT` (environment or `.env`) when set, with a
    /// wildcard host read as loopback; else 127.0.0.1:5000.
    pub fn local_orchestrator() -> Self {
        let host = std::env::var("ORCHESTRATOR_HOST")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty() && h != "0.0.0.0" && h != "::" && h != "[::]")
            .unwrap_or_else(|| "127.0.0.1".into());
        let port = std::env::var("ORCHESTRATOR_PORT")
            .ok()
            .and_then(|p| p.trim().parse::<u16>().ok())
            .filter(|p| *p > 0)
            .unwrap_or(DEFAULT_PORT);
        let scheme = if std::env::var_os(crate::util::tls::CERT_VAR).is_some() {
            "https" // this machine's orchestrator serves TLS
        } else {
            "http"
        };
        Self::parse(&format!("{scheme}://{host}:{port}"))
            .unwrap_or_else(|_| Self::plain(format!("127.0.0.1:{DEFAULT_PORT}")))
    }

    /// `--url` if given, else [`Endpoint::local_orchestrator`].
    pub fn from_flag(url: Option<&str>) -> Result<Self, String> {
        url.map_or_else(|| Ok(Self::local_orchestrator()), Self::parse)
    }

    /// [`Endpoint::from_flag`] for a command: a bad `--url` is said on
    /// stderr and ends the command with exit status 2.
    pub fn from_url_flag(url: Option<&str>) -> Result<Self, std::process::ExitCode> {
        Self::from_flag(url).map_err(|e| {
            eprintln!("error: --url: {e}");
            std::process::ExitCode::from(2)
        })
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
}

/// Why a request got no answer, in words a user can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NoAnswer {
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("connection refused (nothing listens on {0})")]
    Refused(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Other(String),
}

/// An answer: status, body, round-trip time.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub elapsed: Duration,
}

/// Why a call did not give the JSON expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Unreachable(NoAnswer),
    #[error("HTTP {status}: {message}")]
    Status {
        status: u16,
        message: String,
        /// The error body (empty when the server sent none); boxed, as
        /// the rarer and larger case.
        body: Box<ErrorBody>,
    },
    #[error("expected a JSON answer, found {0}")]
    NotJson(String),
    #[error("the answer is not the one expected ({0}); is this an Orquesta server of the same version?")]
    Unexpected(String),
}

/// One request to `endpoint`; every address its name resolves to is tried
/// until one accepts the connection, each with the whole `timeout`.
pub fn request(
    endpoint: &Endpoint,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Answer, NoAnswer> {
    each_address(endpoint, |base, sock| {
        request_to(base, sock, method, path, body.unwrap_or_default(), timeout)
    })
}

/// A `GET` whose answer is read as it arrives (`results export`): the
/// status and the body's reader, with no size limit.
pub fn get_stream(
    endpoint: &Endpoint,
    path: &str,
    timeout: Duration,
) -> Result<(u16, ureq::BodyReader<'static>), NoAnswer> {
    each_address(endpoint, |base, sock| {
        let response = send(base, sock, "GET", path, &[], timeout)?;
        let status = response.status().as_u16();
        let reader = response.into_body().into_with_config().limit(u64::MAX).reader();
        Ok((status, reader))
    })
}

/// [`get_stream`] for a command that needs a 200 (`results export`,
/// `report`): an unreachable orchestrator or a refusal is said on stderr,
/// with the `error` of the answer's body, as `cannot get the {what}` or
/// `the orchestrator refused the {what}`.
pub fn get_stream_ok(
    endpoint: &Endpoint,
    path: &str,
    timeout: Duration,
    what: &str,
) -> Result<ureq::BodyReader<'static>, std::process::ExitCode> {
    use std::io::Read;
    let (status, mut body) = get_stream(endpoint, path, timeout).map_err(|e| {
        let e = CallError::Unreachable(e);
        eprintln!("error: cannot get the {what}: {}", unreachable_hint(endpoint, &e));
        std::process::ExitCode::FAILURE
    })?;
    if status != 200 {
        let mut text = String::new();
        let _ = body.by_ref().take(64 << 10).read_to_string(&mut text);
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
            .unwrap_or(text);
        eprintln!("error: the orchestrator refused the {what} (HTTP {status}): {message}");
        return Err(std::process::ExitCode::FAILURE);
    }
    Ok(body)
}

/// Calls `f` with the base URL of each address of `endpoint` until one
/// accepts the connection.
fn each_address<T>(
    endpoint: &Endpoint,
    mut f: impl FnMut(&str, Option<SocketAddr>) -> Result<T, NoAnswer>,
) -> Result<T, NoAnswer> {
    if endpoint.tls {
        // by name: the certificate is checked against the host typed
        return f(&endpoint.url(), None);
    }
    let addrs: Vec<SocketAddr> = endpoint
        .addr
        .to_socket_addrs()
        .map_err(|_| NoAnswer::Resolve(endpoint.addr.clone()))?
        .collect();
    if addrs.is_empty() {
        return Err(NoAnswer::Resolve(endpoint.addr.clone()));
    }
    let mut last = NoAnswer::Refused(endpoint.addr.clone());
    for sock in addrs {
        let base = format!("http://{sock}");
        match f(&base, Some(sock)) {
            Err(NoAnswer::Refused(_)) => last = NoAnswer::Refused(endpoint.addr.clone()),
            other => return other,
        }
    }
    Err(last)
}

/// One request to `base` (`http://ADDR` or `https://HOST:PORT`), with one
/// overall timeout; a JSON content type, no keep-alive (a fresh agent per
/// call), no proxy, no redirects. `sock` names the address in messages.
fn request_to(
    base: &str,
    sock: Option<SocketAddr>,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<Answer, NoAnswer> {
    let started = Instant::now();
    let mut response = send(base, sock, method, path, body, timeout)?;
    let status = response.status().as_u16();
    // no size limit: a page of /tasks may be large, and the server bounds it
    let bytes = response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec()
        .map_err(|e| no_answer(e, sock, base, timeout))?;
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        elapsed: started.elapsed(),
    })
}

/// What a failed request means, `sock` (else `base`) named in it.
fn no_answer(e: ureq::Error, sock: Option<SocketAddr>, base: &str, timeout: Duration) -> NoAnswer {
    let shown = sock.map_or_else(|| base.to_string(), |s| s.to_string());
    match e {
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => NoAnswer::Refused(shown),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => NoAnswer::Timeout(timeout),
            _ => NoAnswer::Other(io.to_string()),
        },
        ureq::Error::Timeout(_) => NoAnswer::Timeout(timeout),
        ureq::Error::HostNotFound => NoAnswer::Resolve(shown),
        other => NoAnswer::Other(other.to_string()),
    }
}

/// Sends one request and returns the answer's head (its body unread).
fn send(
    base: &str,
    sock: Option<SocketAddr>,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<ureq::http::Response<ureq::Body>, NoAnswer> {
    let tls = if base.starts_with("https://") {
        let Some(certs) = TRUST.get().cloned().flatten() else {
            return Err(NoAnswer::Other(NEEDS_CA.into()));
        };
        ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(ureq::tls::RootCerts::Specific(certs))
            .unversioned_rustls_crypto_provider(crate::util::tls::provider())
            .build()
    } else {
        ureq::tls::TlsConfig::default()
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls)
        // callers judge the status themselves and read the error body
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .proxy(None)
        .accept(ureq::config::AutoHeaderValue::None)
        .user_agent(concat!("orquesta/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("content-type", "application/json");
    if let Some(token) = token() {
        request = request.header("authorization", token.bearer());
    }
    let request = request.body(body).map_err(|e| NoAnswer::Other(e.to_string()))?;
    agent.run(request).map_err(|e| no_answer(e, sock, base, timeout))
}

/// A request whose answer must be JSON; a status outside 2xx is an error
/// carrying the server's `error` message and body.
pub fn call_json(
    endpoint: &Endpoint,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<(Value, Duration), CallError> {
    let answer = request(endpoint, method, path, body, timeout).map_err(CallError::Unreachable)?;
    if !(200..300).contains(&answer.status) {
        let body: ErrorBody = serde_json::from_str(&answer.body).unwrap_or_default();
        let message = if body.error.is_empty() {
            short_text(&answer.body)
        } else {
            body.error.clone()
        };
        return Err(CallError::Status {
            status: answer.status,
            message,
            body: Box::new(body),
        });
    }
    serde_json::from_str(&answer.body)
        .map(|v| (v, answer.elapsed))
        .map_err(|_| CallError::NotJson(short_text(&answer.body)))
}

/// `GET path` as JSON.
pub fn get_json(endpoint: &Endpoint, path: &str, timeout: Duration) -> Result<Value, CallError> {
    call_json(endpoint, "GET", path, None, timeout).map(|(v, _)| v)
}

/// A JSON answer read as its type: one of the answer structs of
/// [`crate::protocol`].
pub fn answer<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, CallError> {
    serde_json::from_value(value).map_err(|e| CallError::Unexpected(e.to_string()))
}

/// A request whose answer is read as `T` ([`answer`]).
pub fn call<T: serde::de::DeserializeOwned>(
    endpoint: &Endpoint,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<T, CallError> {
    call_json(endpoint, method, path, body, timeout).and_then(|(v, _)| answer(v))
}

/// `GET path` read as `T` ([`answer`]).
pub fn get<T: serde::de::DeserializeOwned>(
    endpoint: &Endpoint,
    path: &str,
    timeout: Duration,
) -> Result<T, CallError> {
    call(endpoint, "GET", path, None, timeout)
}

/// The first 80 characters of a body, for messages.
fn short_text(text: &str) -> String {
    let t = text.trim();
    if t.is_empty() {
        return "an empty body".into();
    }
    let cut: String = t.chars().take(80).collect();
    if cut.len() < t.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// What to tell a user who cannot reach the orchestrator.
pub fn unreachable_hint(endpoint: &Endpoint, e: &CallError) -> String {
    match e {
        CallError::Unreachable(p) => format!(
            "cannot reach the orchestrator at {}: {p}; start one with `orquesta orchestrator` \
             (or `orquesta up`), or point --url at it",
            endpoint.url()
        ),
        other => format!("the orchestrator at {} answered: {other}", endpoint.url()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(url: &str) -> String {
        Endpoint::parse(url).unwrap().addr
    }

    #[test]
    fn urls_users_type() {
        assert_eq!(addr("http://127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(addr("http://10.0.0.5:5050/"), "10.0.0.5:5050");
        assert_eq!(addr("orq.example:6000"), "orq.example:6000");
        assert_eq!(addr("localhost"), "localhost:5000");
        assert_eq!(addr("http://[::1]:5001"), "[::1]:5001");
        assert_eq!(addr("::1"), "[::1]:5000");
        let tls = Endpoint::parse("https://orq.lab:5443/").unwrap();
        assert_eq!(
            (tls.addr.as_str(), tls.tls, tls.url()),
            ("orq.lab:5443", true, "https://orq.lab:5443".into())
        );
        assert!(!Endpoint::parse("http://orq.lab").unwrap().tls);
        for (bad, why) in [
            ("ftp://host", "scheme \"ftp\""),
            ("http://host:5000/tasks", "without a path"),
            ("http://host:99999", "port from 1 to 65535"),
            ("http://host:0", "port from 1 to 65535"),
            ("", "such as http://127.0.0.1:5000"),
            ("http://", "such as http://127.0.0.1:5000"),
        ] {
            let e = Endpoint::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_refused_port_is_reported_as_refused() {
        let ep = refused_endpoint();
        let e = get_json(&ep, "/health", Duration::from_secs(2)).unwrap_err();
        assert!(matches!(e, CallError::Unreachable(NoAnswer::Refused(_))), "{e:?}");
        assert!(unreachable_hint(&ep, &e).contains("orquesta orchestrator"));
    }

    /// A port that was free a moment ago: nothing listens there.
    fn refused_endpoint() -> Endpoint {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        Endpoint::parse(&format!("127.0.0.1:{port}")).unwrap()
    }

    /// A server on a free port that answers one connection with `raw`.
    fn answer_once(raw: &'static [u8]) -> Endpoint {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(raw);
        });
        Endpoint::plain(addr)
    }

    #[test]
    fn refused_and_unresolvable_are_told_apart() {
        let ep = refused_endpoint();
        let e = request(&ep, "GET", "/", None, Duration::from_secs(2)).unwrap_err();
        assert!(matches!(e, NoAnswer::Refused(_)), "{e:?}");
        let ep = Endpoint::parse("no-such-host.invalid:80").unwrap();
        let e = request(&ep, "GET", "/", None, Duration::from_secs(2)).unwrap_err();
        assert!(matches!(e, NoAnswer::Resolve(_)), "{e:?}");
    }

    #[test]
    fn chunked_bodies_are_joined() {
        let ep = answer_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
              3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        );
        let a = request(&ep, "GET", "/", None, Duration::from_secs(5)).unwrap();
        assert_eq!((a.status, a.body.as_str()), (200, "abcde"));
    }

    #[test]
    fn an_error_status_comes_back_with_its_body() {
        let ep = answer_once(
            b"HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\nContent-Length: 37\r\n\
              Connection: close\r\n\r\n{\"error\": \"only failed or cancelled\"}",
        );
        let e = call_json(&ep, "POST", "/tasks/x/retry", None, Duration::from_secs(5)).unwrap_err();
        match e {
            CallError::Status { status, message, .. } => {
                assert_eq!((status, message.as_str()), (409, "only failed or cancelled"))
            }
            other => panic!("{other:?}"),
        }
    }
}
