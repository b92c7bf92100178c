//! HTTPS and `wss://` (SPEC §14): rustls with the ring provider, through actix-web's own
//! support (`listen_rustls_0_23`, which offers HTTP/2 and HTTP/1.1 by ALPN). The certificate
//! and key come from `[gateway.tls]` and are held by a [`Certificates`] resolver that every
//! handshake asks, so a reload replaces them for new connections without rebinding the
//! listener; a pair that does not load (missing file, no key, key not matching the
//! certificate) leaves the current one in use.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::TlsConfig;
use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a certificate could not be used.
#[derive(Debug, thiserror::Error)]
#[error("TLS certificate {cert} / key {key}: {reason}")]
pub struct TlsError {
    cert: PathBuf,
    key: PathBuf,
    reason: String,
}

/// The certificate every handshake gets, replaceable while the server runs.
#[derive(Debug)]
pub struct Certificates {
    files: RwLock<TlsConfig>,
    current: RwLock<Arc<CertifiedKey>>,
    provider: Arc<CryptoProvider>,
}

impl Certificates {
    /// Loads the pair named by the configuration.
    pub fn load(config: &TlsConfig) -> Result<Certificates, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let current = load_pair(&config.cert, &config.key, &provider)?;
        Ok(Certificates { files: RwLock::new(config.clone()), current: RwLock::new(Arc::new(current)), provider })
    }

    /// Re-reads the files (those of `config`, which may name new ones); on success new
    /// handshakes use them, on failure the current pair stays. `Ok(true)` when the certificate
    /// changed.
    pub fn reload(&self, config: &TlsConfig) -> Result<bool, TlsError> {
        let fresh = load_pair(&config.cert, &config.key, &self.provider)?;
        *self.files.write() = config.clone();
        let changed = self.current.read().cert != fresh.cert;
        if changed {
            *self.current.write() = Arc::new(fresh);
        }
        Ok(changed)
    }

    /// The server configuration for actix-web: this resolver, no client certificates, the
    /// provider's safe protocol versions (TLS 1.2 and 1.3).
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, TlsError> {
        let files = self.files.read().clone();
        let config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| error(&files.cert, &files.key, e))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        Ok(config)
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

fn error(cert: &Path, key: &Path, reason: impl ToString) -> TlsError {
    TlsError { cert: cert.to_path_buf(), key: key.to_path_buf(), reason: reason.to_string() }
}

fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let fail = |reason: String| error(cert, key, reason);
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| fail(format!("cannot read the certificate: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("bad certificate PEM: {e}")))?;
    if chain.is_empty() {
        return Err(fail("no certificate in the file".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| fail(format!("cannot read the private key: {e}")))?;
    let unusable = |e: rustls::Error| fail(format!("the key does not match the certificate or cannot be used: {e}"));
    let certified = CertifiedKey::from_der(chain, private, provider).map_err(unusable)?;
    certified.keys_match().map_err(unusable)?;
    Ok(certified)
}

/// The error as an `io::Error` (for the listener's setup).
impl From<TlsError> for io::Error {
    fn from(e: TlsError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn pair(dir: &Path, name: &str) -> TlsConfig {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
        TlsConfig { cert, key }
    }

    #[test]
    fn a_pair_loads_reloads_and_a_bad_one_keeps_the_current() {
        let dir = tempfile::tempdir().unwrap();
        let first = pair(dir.path(), "a");
        let certs = Arc::new(Certificates::load(&first).unwrap());
        certs.server_config().unwrap();
        let before = certs.current.read().cert.clone();
        assert!(!certs.reload(&first).unwrap(), "the same files: no change");
        let second = pair(dir.path(), "b");
        assert!(certs.reload(&second).unwrap(), "a new certificate");
        let after = certs.current.read().cert.clone();
        assert_ne!(before, after);
        // A key of another certificate, a missing file, a file without a key: refused, kept.
        let mismatched = TlsConfig { cert: first.cert.clone(), key: second.key.clone() };
        let err = certs.reload(&mismatched).unwrap_err().to_string();
        assert!(err.contains("does not match"), "{err}");
        let missing = TlsConfig { cert: dir.path().join("nope.crt"), key: second.key.clone() };
        assert!(certs.reload(&missing).unwrap_err().to_string().contains("cannot read the certificate"));
        let no_key = TlsConfig { cert: second.cert.clone(), key: second.cert.clone() };
        assert!(certs.reload(&no_key).is_err());
        assert_eq!(certs.current.read().cert, after, "the current pair stays");
        assert!(Certificates::load(&missing).is_err());
    }
}
