//! Optional TLS for both servers and every client, with rustls and its
//! `ring` provider: `ORQUESTA_TLS_CERT` + `ORQUESTA_TLS_KEY` (PEM) make a
//! server speak HTTPS only; `ORQUESTA_TLS_CA` (PEM: the CA that signed the
//! servers' certificates, or for a self-signed lab certificate that
//! certificate itself) is what every client trusts for `https://` URLs.
//!
//! No built-in root list: a client trusts exactly the file it is given.
//! A lab with a certificate from a public CA points `ORQUESTA_TLS_CA` at
//! the system bundle (`/etc/ssl/certs/ca-certificates.crt`). An `https://`
//! URL without `ORQUESTA_TLS_CA` is refused with a message saying so.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub const CERT_VAR: &str = "ORQUESTA_TLS_CERT";
pub const KEY_VAR: &str = "ORQUESTA_TLS_KEY";
pub const CA_VAR: &str = "ORQUESTA_TLS_CA";

/// What a process was given: a server side, a client side, both or none.
#[derive(Clone, Default)]
pub struct Tls {
    /// HTTPS for this process's own server.
    pub server: Option<Arc<ServerConfig>>,
    /// Trust for `https://` URLs this process calls.
    pub client: Option<Arc<ClientConfig>>,
    /// The trusted certificates as read (for ureq, which takes its own list).
    pub ca: Arc<Vec<CertificateDer<'static>>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("server", &self.server.is_some())
            .field("ca_certificates", &self.ca.len())
            .finish()
    }
}

impl Tls {
    /// `https` when this process serves TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.server.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// The message for an `https://` URL with nothing to trust.
pub const NEEDS_CA: &str = "an https:// URL needs ORQUESTA_TLS_CA: the PEM file of the CA that signed the \
     server's certificate (for a self-signed lab certificate, that certificate itself; for a public CA, \
     /etc/ssl/certs/ca-certificates.crt)";

/// The ring provider, the only one built in.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the TLS settings of an env map; a problem for each file that
/// cannot be used (named, with what to do).
pub fn tls_from_env(env: &BTreeMap<String, String>) -> Result<Tls, Vec<String>> {
    let get = |k: &str| env.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let mut problems = Vec::new();
    let mut tls = Tls::default();
    match (get(CERT_VAR), get(KEY_VAR)) {
        (Some(cert), Some(key)) => match server_config(cert, key) {
            Ok(c) => tls.server = Some(Arc::new(c)),
            Err(e) => problems.push(e.to_string()),
        },
        (None, None) => {}
        (Some(_), None) => problems.push(format!(
            "{CERT_VAR} is set but {KEY_VAR} is not: give both (PEM files)"
        )),
        (None, Some(_)) => problems.push(format!(
            "{KEY_VAR} is set but {CERT_VAR} is not: give both (PEM files)"
        )),
    }
    if let Some(ca) = get(CA_VAR) {
        match client_config(ca) {
            Ok((config, certs)) => {
                tls.client = Some(Arc::new(config));
                tls.ca = Arc::new(certs);
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    if problems.is_empty() {
        Ok(tls)
    } else {
        Err(problems)
    }
}

/// Why a TLS file named by a setting cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("{var}: cannot read {what} from {path}: {source}")]
    Read {
        var: &'static str,
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{var}: cannot read {what} from {path}: {source}")]
    Pem {
        var: &'static str,
        what: &'static str,
        path: String,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{var}: {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate { var: &'static str, path: String },
    #[error("{CA_VAR}: a certificate of {path} cannot be trusted: {source}")]
    Untrusted { path: String, source: rustls::Error },
    #[error("{CERT_VAR}/{KEY_VAR}: the certificate and key cannot be used together: {0}")]
    Mismatch(rustls::Error),
    #[error("TLS: {0}")]
    Protocols(rustls::Error),
}

/// The bytes of a PEM file a setting names; a CA bundle of every public
/// root is about 200 kB, so 16 MiB leaves room without letting
/// `/dev/zero` in.
fn pem_file(var: &'static str, path: &str, what: &'static str) -> Result<Vec<u8>, TlsFileError> {
    crate::util::fs::read_setting_file(std::path::Path::new(path), 16 << 20).map_err(|source| {
        TlsFileError::Read {
            var,
            what,
            path: path.into(),
            source,
        }
    })
}

/// Every certificate of a PEM file; at least one.
fn certificates(var: &'static str, path: &str) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let what = "certificates";
    let pem = pem_file(var, path, what)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|source| TlsFileError::Pem {
            var,
            what,
            path: path.into(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsFileError::NoCertificate {
            var,
            path: path.into(),
        });
    }
    Ok(certs)
}

fn server_config(cert: &str, key: &str) -> Result<ServerConfig, TlsFileError> {
    let certs = certificates(CERT_VAR, cert)?;
    let what = "a private key";
    let pem = pem_file(KEY_VAR, key, what)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|source| TlsFileError::Pem {
        var: KEY_VAR,
        what,
        path: key.into(),
        source,
    })?;
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsFileError::Protocols)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsFileError::Mismatch)
}

fn client_config(ca: &str) -> Result<(ClientConfig, Vec<CertificateDer<'static>>), TlsFileError> {
    let certs = certificates(CA_VAR, ca)?;
    let mut roots = RootCertStore::empty();
    for c in &certs {
        roots.add(c.clone()).map_err(|source| TlsFileError::Untrusted {
            path: ca.into(),
            source,
        })?;
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsFileError::Protocols)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((config, certs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::env_map as env;

    #[test]
    fn nothing_set_is_plain_http() {
        let t = tls_from_env(&env(&[])).unwrap();
        assert!(t.server.is_none() && t.client.is_none());
        assert_eq!(t.scheme(), "http");
    }

    #[test]
    fn unusable_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a pem file\n").unwrap();
        let empty = empty.to_str().unwrap();
        let e = tls_from_env(&env(&[(CERT_VAR, "/no/such/cert.pem")])).unwrap_err();
        assert!(e[0].contains("KEY") && e[0].contains("give both"), "{e:?}");
        let e = tls_from_env(&env(&[
            (CERT_VAR, "/no/such/cert.pem"),
            (KEY_VAR, "/k"),
            (CA_VAR, empty),
        ]))
        .unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].contains("cannot read certificates from /no/such/cert.pem"),
            "{e:?}"
        );
        assert!(e[1].contains("holds no PEM certificate"), "{e:?}");
    }
}
