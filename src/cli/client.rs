//! How the tools reach an orchestrator or a worker: the address from a URL
//! the user typed (or the orchestrator's own `ORCHESTRATOR_HOST` /
//! `ORCHESTRATOR_PORT`, else 127.0.0.1:5000), and JSON over the blocking
//! HTTP client of [`crate::cli::probe`], trying every address a name resolves to.

use std::net::ToSocketAddrs;
use std::time::Duration;

use serde_json::Value;

use crate::cli::probe::{self, Answer, ProbeError};

/// The port an orchestrator listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 5000;

/// An HTTP server as `host:port` (brackets around an IPv6 host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: String,
}

impl Endpoint {
    /// Reads `http://host:port`, `host:port` or `host` (port 5000); a
    /// trailing `/` is fine, any other path is not.
    pub fn parse(url: &str) -> Result<Self, String> {
        let typed = url.trim();
        let rest = match typed.split_once("://") {
            None => typed,
            Some(("http", rest)) => rest,
            Some(("https", _)) => {
                return Err(format!(
                    "expected an http:// URL, found {typed:?}: orquesta serves plain HTTP; \
                     reach a remote orchestrator through an SSH tunnel or a TLS proxy"
                ))
            }
            Some((scheme, _)) => {
                return Err(format!(
                    "expected an http:// URL such as http://127.0.0.1:5000, found the scheme {scheme:?}"
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
        Self::parse(&format!("{host}:{port}")).unwrap_or(Self {
            addr: format!("127.0.0.1:{DEFAULT_PORT}"),
        })
    }

    /// `--url` if given, else [`Endpoint::local_orchestrator`].
    pub fn from_flag(url: Option<&str>) -> Result<Self, String> {
        url.map_or_else(|| Ok(Self::local_orchestrator()), Self::parse)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Why a call did not give the JSON expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Unreachable(ProbeError),
    #[error("HTTP {status}: {message}")]
    Status {
        status: u16,
        message: String,
        body: Value,
    },
    #[error("expected a JSON answer, found {0}")]
    NotJson(String),
}

/// One request to `endpoint`; every address its name resolves to is tried
/// until one accepts the connection.
pub fn request(
    endpoint: &Endpoint,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Answer, ProbeError> {
    let addrs: Vec<std::net::SocketAddr> = endpoint
        .addr
        .to_socket_addrs()
        .map_err(|_| ProbeError::Resolve(endpoint.addr.clone()))?
        .collect();
    if addrs.is_empty() {
        return Err(ProbeError::Resolve(endpoint.addr.clone()));
    }
    let mut last = ProbeError::Refused(endpoint.addr.clone());
    for sock in addrs {
        match probe::request(method, &sock.to_string(), path, body, timeout) {
            Err(ProbeError::Refused(_)) => last = ProbeError::Refused(endpoint.addr.clone()),
            other => return other,
        }
    }
    Err(last)
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
    let json: Result<Value, _> = serde_json::from_str(&answer.body);
    if !(200..300).contains(&answer.status) {
        let body = json.unwrap_or(Value::Null);
        let message = body
            .get("error")
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or_else(|| short_text(&answer.body));
        return Err(CallError::Status {
            status: answer.status,
            message,
            body,
        });
    }
    json.map(|v| (v, answer.elapsed))
        .map_err(|_| CallError::NotJson(short_text(&answer.body)))
}

/// `GET path` as JSON.
pub fn get_json(endpoint: &Endpoint, path: &str, timeout: Duration) -> Result<Value, CallError> {
    call_json(endpoint, "GET", path, None, timeout).map(|(v, _)| v)
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
        for (bad, why) in [
            ("https://host:5000", "plain HTTP"),
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
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ep = Endpoint::parse(&format!("127.0.0.1:{port}")).unwrap();
        let e = get_json(&ep, "/health", Duration::from_secs(2)).unwrap_err();
        assert!(
            matches!(e, CallError::Unreachable(ProbeError::Refused(_))),
            "{e:?}"
        );
        assert!(unreachable_hint(&ep, &e).contains("orquesta orchestrator"));
    }
}
