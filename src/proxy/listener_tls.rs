//! TLS listeners (`listeners[].tls`): rustls with its safe defaults (TLS 1.2 and 1.3), ALPN `h2`
//! and `http/1.1`, and a certificate reloaded without a restart.
//!
//! Each TLS listener has a [`CertStore`]: the certificate in use, behind an
//! `ArcSwap` that every new handshake reads (rustls asks the store through
//! [`ResolvesServerCert`]). A reload reads the PEM files, checks that the
//! chain parses, the key matches the certificate and the certificate is
//! within its validity period, and only then swaps; a bad new certificate is
//! refused with an error in the log and in status, and the old one keeps
//! serving. Connections already open keep the certificate they shook hands
//! with. The listener is never rebound. The files are read and checked by
//! [`crate::config::tls_files`], as validation checks them. (TLS to the
//! upstreams is `upstream::pool_tls`.)

pub mod cert_watch;
pub mod selfsigned;

use crate::config::tls_files::{check_cert_key, now_unix, read, TlsFileError};
use crate::config::TlsFiles;
use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_rustls::TlsAcceptor;

/// Why a listener's certificate cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    File(#[from] TlsFileError),
    #[error("TLS settings refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A certificate error as status shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CertErrorView {
    pub message: String,
    pub at: String,
}

/// One TLS listener's certificate, as status shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CertStatus {
    pub listener: SocketAddr,
    pub cert: PathBuf,
    pub not_after: String,
    pub loaded_at: String,
    pub last_error: Option<CertErrorView>,
}

/// What reloads and status share (never touched by a handshake).
struct Info {
    /// The file contents last looked at, good or bad: unchanged files are
    /// not checked (or complained about) again.
    seen: (Vec<u8>, Vec<u8>),
    not_after: i64,
    loaded_at_ms: u64,
    last_error: Option<CertErrorView>,
}

/// The certificate one TLS listener serves, reloadable.
pub struct CertStore {
    pub listener: SocketAddr,
    pub files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    info: Mutex<Info>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("listener", &self.listener)
            .field("cert", &self.files.cert)
            .finish()
    }
}

impl CertStore {
    /// Load the certificate for the first time; an error here stops start-up.
    pub fn load(listener: SocketAddr, files: &TlsFiles) -> Result<Arc<CertStore>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (cert, key) = (read(&files.cert)?, read(&files.key)?);
        let checked = check_cert_key(files, &cert, &key, &provider, now_unix())?;
        Ok(Arc::new(CertStore {
            listener,
            files: files.clone(),
            provider,
            current: ArcSwap::from_pointee(checked.key),
            info: Mutex::new(Info {
                seen: (cert, key),
                not_after: checked.not_after,
                loaded_at_ms: crate::clock::unix_ms(),
                last_error: None,
            }),
        }))
    }

    /// Read the files again and serve them if they changed and pass every
    /// check. Ok(true): a new certificate is in use; Ok(false): nothing
    /// changed; Err: refused, the previous certificate stays.
    pub fn reload(&self) -> Result<bool, TlsFileError> {
        let read_both = read(&self.files.cert).and_then(|c| Ok((c, read(&self.files.key)?)));
        let mut info = self.info.lock().unwrap_or_else(|p| p.into_inner());
        let result = read_both.and_then(|files| {
            if files == info.seen {
                return Ok(None);
            }
            let checked =
                check_cert_key(&self.files, &files.0, &files.1, &self.provider, now_unix());
            info.seen = files;
            checked.map(Some)
        });
        match result {
            Ok(None) => Ok(false),
            Ok(Some(checked)) => {
                self.current.store(Arc::new(checked.key));
                info.not_after = checked.not_after;
                info.loaded_at_ms = crate::clock::unix_ms();
                info.last_error = None;
                tracing::info!(
                    listener = %self.listener,
                    cert = %self.files.cert.display(),
                    not_after = %crate::clock::rfc3339(checked.not_after.max(0) as u64 * 1000),
                    "TLS certificate reloaded"
                );
                Ok(true)
            }
            Err(e) => {
                tracing::error!(
                    listener = %self.listener,
                    error = %e,
                    "TLS certificate refused; the previous one stays in use"
                );
                info.last_error = Some(CertErrorView {
                    message: e.to_string(),
                    at: crate::clock::rfc3339(crate::clock::unix_ms()),
                });
                Err(e)
            }
        }
    }

    /// The last reload error, None once a good certificate was loaded after it.
    pub fn last_error(&self) -> Option<CertErrorView> {
        self.info
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_error
            .clone()
    }

    pub fn status(&self) -> CertStatus {
        let info = self.info.lock().unwrap_or_else(|p| p.into_inner());
        CertStatus {
            listener: self.listener,
            cert: self.files.cert.clone(),
            not_after: crate::clock::rfc3339(info.not_after.max(0) as u64 * 1000),
            loaded_at: crate::clock::rfc3339(info.loaded_at_ms),
            last_error: info.last_error.clone(),
        }
    }

    /// The rustls settings of a listener serving this store's certificate.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut cfg = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// What the accept loop of a TLS listener needs.
#[derive(Clone)]
pub struct TlsListener {
    pub acceptor: TlsAcceptor,
    /// A client that has not finished its handshake by then is dropped.
    pub handshake_timeout: Duration,
}

impl TlsListener {
    pub fn new(store: &Arc<CertStore>, handshake_timeout: Duration) -> Result<Self, TlsError> {
        Ok(TlsListener {
            acceptor: TlsAcceptor::from(store.server_config()?),
            handshake_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfsigned::Ca;

    #[test]
    fn reload_swaps_only_good_new_files() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        };
        let write = |i: &selfsigned::Issued| {
            std::fs::write(&files.cert, &i.cert_pem).unwrap();
            std::fs::write(&files.key, &i.key_pem).unwrap();
        };
        let ca = Ca::new("test CA").unwrap();
        let first = ca.issue(&["localhost"]).unwrap();
        write(&first);
        let store = CertStore::load("127.0.0.1:0".parse().unwrap(), &files).unwrap();
        let serving = || store.current.load_full().cert[0].clone();
        let original = serving();
        assert!(!store.reload().unwrap(), "unchanged files reloaded");

        let second = ca.issue(&["localhost"]).unwrap();
        std::fs::write(&files.cert, &second.cert_pem).unwrap(); // key not yet replaced
        assert!(store.reload().is_err());
        assert_eq!(serving(), original);
        assert!(store
            .last_error()
            .unwrap()
            .message
            .contains("does not match"));

        write(&second);
        assert!(store.reload().unwrap());
        assert_ne!(serving(), original);
        assert!(store.last_error().is_none());
    }
}
