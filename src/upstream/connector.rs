//! Opening connections to upstream endpoints, and reusing them.
//!
//! A connection is opened with a connect timeout (covering TCP and, for a
//! pool with `tls`, the TLS handshake), `TCP_NODELAY`, and then either an
//! HTTP/1.1 handshake whose connection task is spawned with upgrade support
//! (WebSocket), or an HTTP/2 one (`protocol: h2`, e.g. gRPC).
//!
//! HTTP/1.1 connections carry one request at a time: the caller owns one and
//! gives it back to the endpoint's idle queue when its response has been
//! read. An HTTP/2 connection is multiplexed: each endpoint keeps one, shared
//! by every request in flight (each takes a cheap clone of its sender).

use crate::config::UpstreamProtocol;
use crate::proxy::request_body::ClientBody;
use crate::upstream::tls::UpstreamTls;
use crate::upstream::Endpoint;
use futures_util::future::Either;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2, TrySendError};
use hyper::rt::{Read, Write};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpStream;

/// A shared HTTP/2 connection is pinged this often; one whose peer stops
/// answering (a host gone without a FIN) is closed and replaced instead of
/// taking every request down with it until the request timeout.
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Includes a certificate that does not verify: never retried in plaintext.
    #[error("TLS handshake with {address} failed: {source}")]
    Tls {
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

enum Sender {
    H1(http1::SendRequest<ClientBody>),
    H2(http2::SendRequest<ClientBody>),
}

/// A connection to an upstream endpoint: HTTP/1.1 (one request at a time)
/// or a handle on a shared HTTP/2 connection.
pub struct UpstreamConn {
    sender: Sender,
}

/// What sending a request on an [`UpstreamConn`] yields.
pub type SendResult = Result<http::Response<Incoming>, TrySendError<http::Request<ClientBody>>>;

impl UpstreamConn {
    /// Still open, so worth keeping or reusing.
    #[inline]
    pub fn is_reusable(&self) -> bool {
        match &self.sender {
            Sender::H1(s) => !s.is_closed(),
            Sender::H2(s) => !s.is_closed(),
        }
    }

    /// A handle on a shared HTTP/2 connection (never queued as idle).
    #[inline]
    pub fn is_multiplexed(&self) -> bool {
        matches!(self.sender, Sender::H2(_))
    }

    /// Wait until the connection can take a request (a pooled one may still
    /// be finishing its previous exchange). Err: it closed meanwhile.
    #[inline]
    pub async fn ready(&mut self) -> Result<(), hyper::Error> {
        match &mut self.sender {
            Sender::H1(s) => s.ready().await,
            Sender::H2(s) => s.ready().await,
        }
    }

    /// Send `req`. The future does not borrow the connection, so the caller
    /// may park the connection (e.g. in a guard) while it runs. On an error
    /// before anything was written, the request comes back with it.
    #[inline]
    pub fn send(
        &mut self,
        req: http::Request<ClientBody>,
    ) -> impl Future<Output = SendResult> + Send + 'static {
        match &mut self.sender {
            Sender::H1(s) => Either::Left(s.try_send_request(req)),
            Sender::H2(s) => Either::Right(s.try_send_request(req)),
        }
    }

    /// Another handle on the same HTTP/2 connection; None for HTTP/1.1.
    #[inline]
    pub fn share(&self) -> Option<UpstreamConn> {
        match &self.sender {
            Sender::H1(_) => None,
            Sender::H2(s) => Some(UpstreamConn {
                sender: Sender::H2(s.clone()),
            }),
        }
    }
}

/// Opens connections for one pool.
#[derive(Debug, Clone)]
pub struct Connector {
    pub connect_timeout: Duration,
    pub protocol: UpstreamProtocol,
    pub tls: Option<UpstreamTls>,
}

impl Connector {
    /// Plain HTTP/1.1.
    pub fn new(connect_timeout: Duration) -> Self {
        Connector {
            connect_timeout,
            protocol: UpstreamProtocol::Http1,
            tls: None,
        }
    }

    pub fn with_protocol(mut self, protocol: UpstreamProtocol, tls: Option<UpstreamTls>) -> Self {
        self.protocol = protocol;
        self.tls = tls;
        self
    }

    /// The `:scheme` of requests to this pool.
    pub fn scheme(&self) -> http::uri::Scheme {
        if self.tls.is_some() {
            http::uri::Scheme::HTTPS
        } else {
            http::uri::Scheme::HTTP
        }
    }

    /// A connection to `ep`: for HTTP/2 the endpoint's shared one (opened and
    /// shared if there is none), for HTTP/1.1 an idle one no older than
    /// `idle_ms`, else a new one.
    pub async fn acquire(&self, ep: &Endpoint, idle_ms: u64) -> Result<UpstreamConn, ConnectError> {
        if self.protocol == UpstreamProtocol::H2 {
            if let Some(c) = ep.shared_conn() {
                return Ok(c);
            }
            let c = Box::pin(self.connect(ep)).await?;
            ep.set_shared_conn(&c);
            return Ok(c);
        }
        let now = crate::clock::now_ms();
        while let Some(mut c) = ep.take_idle(now, idle_ms) {
            if c.ready().await.is_ok() {
                return Ok(c);
            }
        }
        // Boxed: opening a connection (TCP, TLS, handshake) is a large future
        // and the rare path; inline, it would make every request's future
        // kilobytes larger, and those bytes are copied as the future moves.
        Box::pin(self.connect(ep)).await
    }

    /// Open a new connection to `ep`.
    pub async fn connect(&self, ep: &Endpoint) -> Result<UpstreamConn, ConnectError> {
        match tokio::time::timeout(self.connect_timeout, self.open(ep)).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::Timeout {
                address: ep.address.clone(),
                timeout: self.connect_timeout,
            }),
        }
    }

    async fn open(&self, ep: &Endpoint) -> Result<UpstreamConn, ConnectError> {
        let stream = self.open_stream(ep).await?;
        http_handshake(TokioIo::new(stream), self.protocol)
            .await
            .map_err(|source| ConnectError::Handshake {
                address: ep.address.clone(),
                source,
            })
    }
}

/// A byte stream to an upstream: TCP, or TLS over TCP.
pub trait UpstreamIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> UpstreamIo for T {}

impl Connector {
    /// A byte stream to `ep` as this pool reaches it (TCP, with TLS when the
    /// pool has it), within the connect timeout. Health checks speak HTTP
    /// on it the way requests do.
    pub async fn open_stream(&self, ep: &Endpoint) -> Result<Box<dyn UpstreamIo>, ConnectError> {
        let open = async {
            let address = ep.address.as_str();
            let stream = TcpStream::connect(address)
                .await
                .map_err(|source| ConnectError::Io {
                    address: address.to_string(),
                    source,
                })?;
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "set_nodelay failed");
            }
            match &self.tls {
                None => Ok(Box::new(stream) as Box<dyn UpstreamIo>),
                Some(tls) => {
                    let s = tls
                        .handshake(ep.authority.host(), stream)
                        .await
                        .map_err(|source| ConnectError::Tls {
                            address: address.to_string(),
                            source,
                        })?;
                    Ok(Box::new(s) as Box<dyn UpstreamIo>)
                }
            }
        };
        match tokio::time::timeout(self.connect_timeout, open).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::Timeout {
                address: ep.address.clone(),
                timeout: self.connect_timeout,
            }),
        }
    }
}

/// The HTTP handshake on an open stream; spawns the connection task.
async fn http_handshake<I>(io: I, protocol: UpstreamProtocol) -> Result<UpstreamConn, hyper::Error>
where
    I: Read + Write + Unpin + Send + 'static,
{
    let sender = match protocol {
        UpstreamProtocol::Http1 => {
            let (sender, conn) = http1::Builder::new().handshake(io).await?;
            tokio::spawn(async move {
                if let Err(e) = conn.with_upgrades().await {
                    tracing::debug!(error = %e, "upstream connection ended with an error");
                }
            });
            Sender::H1(sender)
        }
        UpstreamProtocol::H2 => {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .adaptive_window(true)
                .keep_alive_interval(H2_PING_INTERVAL)
                .keep_alive_timeout(H2_PING_TIMEOUT)
                .keep_alive_while_idle(true)
                .handshake(io)
                .await?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
                }
            });
            Sender::H2(sender)
        }
    };
    Ok(UpstreamConn { sender })
}
