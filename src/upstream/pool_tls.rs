//! TLS to upstream endpoints (`pools.*.tls`). (TLS of the proxy's own
//! listeners is `proxy::listener_tls`.)
//!
//! One [`UpstreamTls`] per pool, built when the routing table is built (never
//! per connection): the trusted roots (the pool's `ca` bundle, or the
//! operating system's store), the SNI name, and ALPN matching the pool's
//! protocol. A certificate that does not verify fails the connection with the
//! reason; there is no fallback to plaintext and no "insecure" switch.
//!
//! System roots come from `rustls-native-certs` (the OS store, honouring
//! `SSL_CERT_FILE`/`SSL_CERT_DIR`) rather than a compiled-in Mozilla list:
//! upstreams are usually internal services whose CA an operator installs in
//! the system store, which a baked-in list would never see.

use crate::config::tls_files::{self, TlsFileError};
use crate::config::{self, UpstreamProtocol};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Why a pool's TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamTlsError {
    /// The pool's `ca` bundle (read by [`crate::config::tls_files`]).
    #[error(transparent)]
    Ca(#[from] TlsFileError),
    #[error("no system root certificates found (set pools.*.tls.ca)")]
    NoSystemRoots,
    #[error("server_name {name:?} is not a DNS name or IP address")]
    ServerName { name: String },
    #[error("TLS settings refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// TLS client settings of one pool.
#[derive(Clone)]
pub struct UpstreamTls {
    connector: TlsConnector,
    /// The configured `server_name`; else each endpoint's host is used.
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl UpstreamTls {
    pub fn from_config(
        cfg: &config::UpstreamTls,
        protocol: UpstreamProtocol,
    ) -> Result<Self, UpstreamTlsError> {
        let roots = match &cfg.ca {
            Some(path) => tls_files::ca_roots(path)?,
            None => system_roots()?,
        };
        let server_name = match &cfg.server_name {
            Some(name) => Some(
                ServerName::try_from(name.clone())
                    .map_err(|_| UpstreamTlsError::ServerName { name: name.clone() })?,
            ),
            None => None,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = match protocol {
            UpstreamProtocol::H2 => vec![b"h2".to_vec()],
            UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
        };
        Ok(UpstreamTls {
            connector: TlsConnector::from(Arc::new(client)),
            server_name,
        })
    }

    /// The handshake over `tcp`; `host` is the endpoint's host, the name
    /// checked when no `server_name` is configured.
    pub async fn handshake(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?
                .to_owned(),
        };
        self.connector.connect(name, tcp).await
    }
}

/// The operating system's trusted roots (also what outbound calls trust).
pub fn system_roots() -> Result<RootCertStore, UpstreamTlsError> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "could not load some system root certificates");
    }
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(UpstreamTlsError::NoSystemRoots);
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn cfg(ca: Option<PathBuf>, server_name: Option<&str>) -> config::UpstreamTls {
        config::UpstreamTls {
            ca,
            server_name: server_name.map(str::to_string),
        }
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err =
            UpstreamTls::from_config(&cfg(Some(path), None), UpstreamProtocol::Http1).unwrap_err();
        assert!(
            matches!(err, UpstreamTlsError::Ca(TlsFileError::NoCa { .. })),
            "{err}"
        );
        let missing = dir.path().join("missing.pem");
        let err = UpstreamTls::from_config(&cfg(Some(missing), None), UpstreamProtocol::Http1)
            .unwrap_err();
        assert!(
            matches!(err, UpstreamTlsError::Ca(TlsFileError::ReadCa { .. })),
            "{err}"
        );
    }

    #[test]
    fn a_ca_file_and_server_name_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        std::fs::write(&path, params.self_signed(&key).unwrap().pem()).unwrap();
        let tls = UpstreamTls::from_config(
            &cfg(Some(path.clone()), Some("app.internal")),
            UpstreamProtocol::H2,
        )
        .unwrap();
        assert!(tls.server_name.is_some());
        let err =
            UpstreamTls::from_config(&cfg(Some(path), Some("not a name")), UpstreamProtocol::H2)
                .unwrap_err();
        assert!(matches!(err, UpstreamTlsError::ServerName { .. }), "{err}");
    }
}
