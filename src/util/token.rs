//! The shared secret of a cluster (`ORQUESTA_TOKEN` or
//! `ORQUESTA_TOKEN_FILE`) and the bind rule that goes with it. Both
//! servers check it on every request but `GET /health` (`api::auth`); the
//! orchestrator, `--join` workers and the command line send it as
//! `Authorization: Bearer <token>`.
//!
//! A [`Token`] never shows its secret: `Debug` and `Display` print
//! `Token(<redacted>)`, so a token inside settings, errors or logs stays
//! hidden. The ways to the secret are [`Token::bearer`], for the header
//! that carries it, and [`Token::expose`], for a child's environment.

use std::collections::BTreeMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// The environment variables that configure the token.
pub const TOKEN_VAR: &str = "ORQUESTA_TOKEN";
pub const TOKEN_FILE_VAR: &str = "ORQUESTA_TOKEN_FILE";
/// `true`: bind a non-loopback address without a token anyway.
pub const INSECURE_VAR: &str = "ORQUESTA_INSECURE";

/// What every message about a missing or wrong token tells the user to do.
pub const HOW_TO_SET: &str = "set ORQUESTA_TOKEN=<secret> (environment or .env) or \
     ORQUESTA_TOKEN_FILE=<path of a file holding it>, the same on the orchestrator, every worker and the \
     command line";

/// A non-empty shared secret; cheap to clone.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Arc<Secret>);

/// The secret and its SHA-256, hashed once rather than on every request.
#[derive(PartialEq, Eq)]
struct Secret {
    text: Box<str>,
    digest: [u8; 32],
}

impl Token {
    /// A token from its text, blanks around it dropped (a header value
    /// loses them too); `None` when nothing is left.
    pub fn new(secret: &str) -> Option<Self> {
        let secret = secret.trim();
        (!secret.is_empty()).then(|| {
            Self(Arc::new(Secret {
                text: secret.into(),
                digest: Sha256::digest(secret.as_bytes()).into(),
            }))
        })
    }

    /// The `Authorization` header value, where the secret goes on the wire.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.0.text)
    }

    /// The secret itself, for the one other place it goes: the
    /// environment of a child process (`ORQUESTA_TOKEN`), never argv.
    pub fn expose(&self) -> &str {
        &self.0.text
    }

    /// Whether an `Authorization` header value carries this token.
    /// Both sides are hashed first, so the comparison takes the same time
    /// wherever they differ and whatever their lengths.
    pub fn accepts(&self, header: &[u8]) -> bool {
        let offered = strip_bearer(header).unwrap_or(b"");
        let offered = Sha256::digest(offered);
        // no early exit: every byte is compared (a token is never empty, so
        // a missing header, read as "", never matches)
        self.0
            .digest
            .iter()
            .zip(offered.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
    }
}

/// `Bearer <token>` → the token bytes (the scheme is case-insensitive).
fn strip_bearer(header: &[u8]) -> Option<&[u8]> {
    let scheme = header.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| header[7..].trim_ascii())
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why the token settings cannot be used; no message holds the secret.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "{TOKEN_VAR} and {TOKEN_FILE_VAR} are both set: keep one (the file keeps the secret out of the \
         environment and of `ps`)"
    )]
    BothSet,
    #[error("{TOKEN_VAR} is set but empty: give it a secret (e.g. `openssl rand -hex 32`), or unset it")]
    EmptyVariable,
    #[error("{TOKEN_FILE_VAR}: cannot read {path}: {source}; check the path and its permissions")]
    Unreadable { path: String, source: std::io::Error },
    #[error("{TOKEN_FILE_VAR}: {path} is not UTF-8 text; write the secret as text")]
    NotText { path: String },
    #[error(
        "{TOKEN_FILE_VAR}: {path} is empty: write the secret into it (e.g. `openssl rand -hex 32 > {path}`)"
    )]
    EmptyFile { path: String },
}

/// The token an env map configures: `ORQUESTA_TOKEN`, or the content of
/// `ORQUESTA_TOKEN_FILE` (one trailing newline dropped); `None` when
/// neither is set. Both set, an empty token, or a file that cannot be read
/// is a problem whose message never contains the secret.
pub fn token_from_env(env: &BTreeMap<String, String>) -> Result<Option<Token>, TokenError> {
    let inline = env.get(TOKEN_VAR);
    let file = env.get(TOKEN_FILE_VAR).filter(|p| !p.trim().is_empty());
    match (inline, file) {
        (Some(_), Some(_)) => Err(TokenError::BothSet),
        (Some(secret), None) => Token::new(secret).map(Some).ok_or(TokenError::EmptyVariable),
        (None, Some(path)) => {
            let path = path.trim();
            // a token is a line; 64 KiB refuses a FIFO, a device or a wrong file at once
            let bytes = crate::util::fs::read_setting_file(std::path::Path::new(path), 64 << 10).map_err(
                |source| TokenError::Unreadable {
                    path: path.into(),
                    source,
                },
            )?;
            let text = String::from_utf8(bytes).map_err(|_| TokenError::NotText { path: path.into() })?;
            let secret = text.strip_suffix('\n').unwrap_or(&text);
            let secret = secret.strip_suffix('\r').unwrap_or(secret);
            Token::new(secret)
                .map(Some)
                .ok_or_else(|| TokenError::EmptyFile { path: path.into() })
        }
        (None, None) => Ok(None),
    }
}

/// Whether `host` names this machine's loopback as written, without
/// asking a resolver: a loopback IP (brackets allowed), `localhost`, or a
/// name under `.localhost` (RFC 6761). The browser guard uses only this:
/// a resolver is what a DNS-rebinding attacker controls.
pub fn is_loopback_literal(host: &str) -> bool {
    let h = host
        .trim()
        .trim_matches(|c| c == '[' || c == ']')
        .trim_end_matches('.');
    if let Ok(ip) = h.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    let h = h.to_ascii_lowercase();
    h == "localhost" || h.ends_with(".localhost")
}

/// Whether binding `host` listens only on this machine: a loopback
/// literal ([`is_loopback_literal`]), or a name that resolves to loopback
/// addresses only. `0.0.0.0`, `::` and every other address are reachable
/// from outside.
pub fn is_loopback_host(host: &str) -> bool {
    if is_loopback_literal(host) {
        return true;
    }
    let h = host.trim().trim_matches(|c| c == '[' || c == ']');
    if h.is_empty() || h.parse::<IpAddr>().is_ok() {
        return false;
    }
    match (h, 0u16).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// How a server may bind: the rule "no token, no open port".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindVerdict {
    /// Loopback, or a token protects the API.
    Safe,
    /// Reachable from the network without a token, allowed by `--insecure`:
    /// the server says so with one warning line at start.
    Insecure,
}

/// The bind rule: a non-loopback `host` needs a token, unless `insecure`.
/// `setting` names the host variable and flag for the message.
pub fn check_bind(
    host: &str,
    token: Option<&Token>,
    insecure: bool,
    setting: &str,
) -> Result<BindVerdict, String> {
    if token.is_some() || is_loopback_host(host) {
        return Ok(BindVerdict::Safe);
    }
    if insecure {
        return Ok(BindVerdict::Insecure);
    }
    Err(format!(
        "{setting}: {host} is reachable from other machines, and no token protects the API: \
         anyone who reaches the port could run, cancel or forge work. {HOW_TO_SET}; or bind 127.0.0.1; \
         or, on a network you trust, pass --insecure ({INSECURE_VAR}=true)"
    ))
}

/// The warning line of an insecure bind (printed once at start).
pub fn insecure_warning(what: &str, host: &str) -> String {
    format!(
        "warning: INSECURE: the {what} listens on {host} without a token (--insecure): anyone who reaches \
         this port can run, cancel or forge work; {HOW_TO_SET}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::env_map as env;

    #[test]
    fn the_secret_never_shows() {
        let t = Token::new("s3cr3t-value").unwrap();
        assert!(!format!("{t:?} {t} {:?}", Some(t.clone())).contains("s3cr3t"));
        assert_eq!(t.bearer(), "Bearer s3cr3t-value");
    }

    #[test]
    fn only_the_exact_bearer_token_is_accepted() {
        let t = Token::new("abc123").unwrap();
        assert!(t.accepts(b"Bearer abc123"));
        assert!(t.accepts(b"bearer abc123"));
        for bad in [
            &b""[..],
            b"abc123",
            b"Bearer ",
            b"Bearer abc12",
            b"Bearer abc1234",
            b"Basic abc123",
            b"Bearer ABC123",
        ] {
            assert!(!t.accepts(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_token_comes_from_the_variable_or_a_file() {
        assert_eq!(token_from_env(&env(&[])).unwrap(), None);
        let t = token_from_env(&env(&[(TOKEN_VAR, "xyz")])).unwrap().unwrap();
        assert!(t.accepts(b"Bearer xyz"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "from-file\n").unwrap();
        let p = path.to_str().unwrap();
        let t = token_from_env(&env(&[(TOKEN_FILE_VAR, p)])).unwrap().unwrap();
        assert!(t.accepts(b"Bearer from-file"), "the trailing newline is dropped");
    }

    #[test]
    fn bad_token_settings_are_refused_without_echoing_the_secret() {
        let e = token_from_env(&env(&[(TOKEN_VAR, "  ")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty"), "{e}");
        let e = token_from_env(&env(&[(TOKEN_VAR, "hunter2"), (TOKEN_FILE_VAR, "/x")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("both set") && !e.contains("hunter2"), "{e}");
        let e = token_from_env(&env(&[(TOKEN_FILE_VAR, "/no/such/orquesta-token")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read /no/such/orquesta-token"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty");
        std::fs::write(&path, "\n").unwrap();
        let e = token_from_env(&env(&[(TOKEN_FILE_VAR, path.to_str().unwrap())]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is empty"), "{e}");
    }

    #[test]
    fn loopback_hosts_are_told_from_open_ones() {
        for h in ["127.0.0.1", "127.3.4.5", "::1", "[::1]", "localhost"] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["0.0.0.0", "::", "[::]", "", "10.1.2.3", "192.168.0.1"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn an_open_bind_needs_a_token_or_insecure() {
        let t = Token::new("t").unwrap();
        assert_eq!(check_bind("0.0.0.0", Some(&t), false, "H"), Ok(BindVerdict::Safe));
        assert_eq!(check_bind("127.0.0.1", None, false, "H"), Ok(BindVerdict::Safe));
        assert_eq!(check_bind("::", None, true, "H"), Ok(BindVerdict::Insecure));
        let e = check_bind("0.0.0.0", None, false, "ORCHESTRATOR_HOST (--host)").unwrap_err();
        assert!(e.starts_with("ORCHESTRATOR_HOST (--host): 0.0.0.0"), "{e}");
        assert!(
            e.contains("ORQUESTA_TOKEN_FILE") && e.contains("--insecure"),
            "{e}"
        );
    }
}
