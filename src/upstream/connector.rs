//! Opening connections to upstream endpoints.
//!
//! A connection is opened with a connect timeout, `TCP_NODELAY`, and an
//! HTTP/1.1 handshake whose connection task is spawned with upgrade support
//! (WebSocket). The caller owns the returned sender; it goes back to the
//! endpoint's idle queue when its response has been read to the end.

use crate::upstream::Endpoint;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;

/// Why a connection to an endpoint could not be opened. The request never
/// reached the upstream, so it may be retried elsewhere.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {address} timed out after {timeout:?}")]
    Timeout { address: String, timeout: Duration },
    #[error("connect to {address} failed: {source}")]
    Io {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP handshake with {address} failed: {source}")]
    Handshake {
        address: String,
        #[source]
        source: hyper::Error,
    },
}

/// A connection ready to carry one request at a time.
pub struct UpstreamConn {
    sender: http1::SendRequest<Incoming>,
}

impl UpstreamConn {
    /// Still open, so worth keeping or reusing.
    #[inline]
    pub fn is_reusable(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Wait until the connection can take a request (a pooled one may still
    /// be finishing its previous exchange). Err: it closed meanwhile.
    #[inline]
    pub async fn ready(&mut self) -> Result<(), hyper::Error> {
        self.sender.ready().await
    }

    #[inline]
    pub fn sender(&mut self) -> &mut http1::SendRequest<Incoming> {
        &mut self.sender
    }
}

/// Opens connections for one pool.
#[derive(Debug, Clone)]
pub struct Connector {
    pub connect_timeout: Duration,
}

impl Connector {
    pub fn new(connect_timeout: Duration) -> Self {
        Connector { connect_timeout }
    }

    pub async fn connect(&self, ep: &Endpoint) -> Result<UpstreamConn, ConnectError> {
        let address = ep.address.as_str();
        let stream =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(address)).await {
                Ok(Ok(s)) => s,
                Ok(Err(source)) => {
                    return Err(ConnectError::Io {
                        address: address.to_string(),
                        source,
                    })
                }
                Err(_) => {
                    return Err(ConnectError::Timeout {
                        address: address.to_string(),
                        timeout: self.connect_timeout,
                    })
                }
            };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| ConnectError::Handshake {
                address: address.to_string(),
                source,
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(UpstreamConn { sender })
    }
}
