//! TLS for the end-to-end tests: certificate files made at run time, a
//! client speaking HTTP/1.1 or HTTP/2 (by ALPN) that trusts a test CA, and
//! the server settings of a TLS test upstream. No key is ever committed.

use super::{read, Answer};
use bytes::Bytes;
use http::{Request, Version};
use http_body_util::Full;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use switchyard::proxy::listener_tls::selfsigned::Issued;
use tokio::net::TcpStream;

pub use switchyard::proxy::listener_tls::selfsigned::Ca;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate and key on disk, replaced the way operators do it.
pub struct CertFiles {
    _dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    pub fn new(first: &Issued) -> CertFiles {
        let dir = tempfile::tempdir().unwrap();
        let files = CertFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
            _dir: dir,
        };
        files.replace(first);
        files
    }

    /// Write each file beside its target and rename it into place.
    pub fn replace(&self, new: &Issued) {
        self.replace_pair(&new.cert_pem, &new.key_pem);
    }

    pub fn replace_pair(&self, cert_pem: &str, key_pem: &str) {
        for (path, text) in [(&self.cert, cert_pem), (&self.key, key_pem)] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
    }

    /// The listener config lines for these files.
    pub fn yaml(&self) -> String {
        format!(
            "tls: {{ cert: \"{}\", key: \"{}\" }}",
            self.cert.display(),
            self.key.display()
        )
    }
}

/// Server settings of a TLS test upstream: `issued` with ALPN h2, http/1.1.
pub fn acceptor(issued: &Issued) -> tokio_rustls::TlsAcceptor {
    let chain = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// One TLS connection to the proxy, kept open across requests.
pub struct TlsClient {
    sender: Sender,
    /// The leaf certificate the server presented in this handshake.
    pub peer_cert: CertificateDer<'static>,
    pub version: Version,
}

impl TlsClient {
    /// Connect to `addr` as `localhost`, trusting only `ca_pem`; offer only
    /// `h2` or only `http/1.1`.
    pub async fn connect(addr: SocketAddr, ca_pem: &str, h2: bool) -> std::io::Result<TlsClient> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(
            CertificateDer::pem_slice_iter(ca_pem.as_bytes()).map(|c| c.unwrap()),
        );
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![if h2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        }];
        let tcp = TcpStream::connect(addr).await?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await?;
        let (_, session) = tls.get_ref();
        let peer_cert = session.peer_certificates().unwrap()[0].clone();
        assert_eq!(
            session.alpn_protocol(),
            Some(if h2 { &b"h2"[..] } else { &b"http/1.1"[..] }),
            "the server did not agree on ALPN"
        );
        let io = TokioIo::new(tls);
        let (sender, version) = if h2 {
            let (s, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(conn);
            (Sender::H2(s), Version::HTTP_2)
        } else {
            let (s, conn) = http1::handshake(io).await.map_err(std::io::Error::other)?;
            tokio::spawn(conn);
            (Sender::H1(s), Version::HTTP_11)
        };
        Ok(TlsClient {
            sender,
            peer_cert,
            version,
        })
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        let req = Request::get(format!("https://localhost{path}"));
        let resp = match &mut self.sender {
            Sender::H1(s) => {
                let req = req
                    .uri(path)
                    .header("host", "localhost")
                    .body(Full::default())
                    .unwrap();
                s.ready().await.unwrap();
                s.send_request(req).await
            }
            Sender::H2(s) => {
                let req = req.version(Version::HTTP_2).body(Full::default()).unwrap();
                s.ready().await.unwrap();
                s.send_request(req).await
            }
        };
        let resp = resp.expect("request over TLS completes");
        assert_eq!(resp.version(), self.version);
        read(resp).await
    }
}
