//! Opening connections to upstream endpoints, and reusing them.
//!
//! A connection is opened with a connect timeout (covering TCP and, for a
//! pool with `tls`, the TLS handshake) and `TCP_NODELAY`. HTTP/1.1 is spoken
//! by the proxy's own client ([`crate::upstream::h1`]) in the request's task;
//! a request that asks for an upgrade (WebSocket) gets its connection handed
//! to hyper, whose connection task delivers the upgraded stream; HTTP/2
//! (`protocol: h2`, e.g. gRPC) by the proxy's own client on the h2 crate
//! ([`crate::upstream::h2_client`]), its connection task spawned.
//!
//! HTTP/1.1 connections carry one request at a time: the response body owns
//! its connection and gives it back to the endpoint's idle queue when it has
//! been read whole. An HTTP/2 connection is multiplexed: each endpoint keeps one, shared
//! by every request in flight (each takes a cheap clone of its sender).

use crate::config::UpstreamProtocol;
use crate::upstream::h1::{H1Body, H1Conn, H1Error};
use crate::upstream::h2_client::{H2Body, H2Sender, H2Settings};
use crate::upstream::pool_tls::UpstreamTls;
use crate::upstream::request_body::ClientBody;
use crate::upstream::Endpoint;
use futures_util::future::Either;
use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper::client::conn::{http1, TrySendError};
use hyper::rt::{Read, Write};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// An upstream HTTP/2 connection: fixed flow-control windows (hyper's
/// defaults when its adaptive window is off) and a keep-alive ping.
///
/// Fixed windows, not an adaptive one: that starts the connection at
/// 64 KiB, and h2 budgets unread small DATA frames at half the connection
/// window, so a burst of gRPC answers (a small message each, then trailers)
/// read a moment late was taken for a flood (GOAWAY too_many_data_frames)
/// and failed every call on the connection.
///
/// The ping: a shared HTTP/2 connection whose peer stops answering (a host
/// gone without a FIN) is closed and replaced instead of taking every
/// request down with it until the request timeout.
const H2: H2Settings = H2Settings {
    conn_window: 5 * 1024 * 1024,
    stream_window: 2 * 1024 * 1024,
    ping_interval: Duration::from_secs(20),
    ping_timeout: Duration::from_secs(10),
};

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
    #[error("HTTP/2 handshake with {address} failed: {source}")]
    H2Handshake {
        address: String,
        #[source]
        source: h2::Error,
    },
}

enum Sender {
    /// HTTP/1.1 on the proxy's own client: one request at a time, pooled.
    Raw(Box<H1Conn>),
    /// HTTP/1.1 through hyper, for an upgrade (WebSocket): never pooled.
    Upgrade(http1::SendRequest<ClientBody>),
    /// HTTP/2 on the proxy's own client: a handle on a shared connection
    /// (an `Arc`, so that this enum, kept in every idle slot, stays small).
    H2(Arc<H2Sender>),
}

/// A connection to an upstream endpoint: HTTP/1.1 (one request at a time)
/// or a handle on a shared HTTP/2 connection.
pub struct UpstreamConn {
    sender: Sender,
}

/// A response body from an upstream: read by the proxy's HTTP/1.1 or
/// HTTP/2 client, or by hyper (upgrades).
pub enum UpstreamBody {
    Raw(H1Body),
    H2(H2Body),
    Hyper(Incoming),
}

/// Why an exchange with an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error(transparent)]
    Raw(#[from] H1Error),
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
    #[error("upstream HTTP/2: {0}")]
    H2(#[from] h2::Error),
    /// The response was still streaming at its pool's (or its endpoint's)
    /// drain deadline and was cut there: not the upstream's fault.
    #[error("response cut at the drain deadline")]
    Drained,
}

impl UpstreamError {
    /// The upstream broke the protocol (a bad head, bad chunking).
    pub fn is_protocol(&self) -> bool {
        match self {
            UpstreamError::Raw(e) => e.is_protocol(),
            UpstreamError::Hyper(e) => {
                e.is_parse() || e.is_parse_status() || e.is_parse_too_large()
            }
            UpstreamError::H2(_) | UpstreamError::Drained => false,
        }
    }
}

/// A failed send, with the request when none of it was written (so it may
/// be sent again on another connection).
pub struct SendFailure {
    pub error: UpstreamError,
    pub unsent: Option<http::Request<ClientBody>>,
}

/// What sending a request on an [`UpstreamConn`] yields.
pub type SendResult = Result<http::Response<UpstreamBody>, SendFailure>;

impl UpstreamConn {
    fn raw(conn: Box<H1Conn>) -> Self {
        UpstreamConn {
            sender: Sender::Raw(conn),
        }
    }

    /// Still open (checked without blocking), so worth keeping or reusing.
    #[inline]
    pub fn still_open(&mut self) -> bool {
        match &mut self.sender {
            Sender::Raw(c) => c.is_idle_usable(),
            Sender::Upgrade(s) => !s.is_closed(),
            Sender::H2(s) => !s.is_closed(),
        }
    }

    /// A shared HTTP/2 handle that is still open.
    #[inline]
    pub fn is_reusable(&self) -> bool {
        match &self.sender {
            Sender::Raw(_) => true,
            Sender::Upgrade(s) => !s.is_closed(),
            Sender::H2(s) => !s.is_closed(),
        }
    }

    /// An HTTP/1.1 connection that may wait in the endpoint's idle queue.
    #[inline]
    pub fn is_poolable(&self) -> bool {
        matches!(self.sender, Sender::Raw(_))
    }

    /// A handle on a shared HTTP/2 connection (never queued as idle).
    #[inline]
    pub fn is_multiplexed(&self) -> bool {
        matches!(self.sender, Sender::H2(_))
    }

    /// Send `req`. Returns what to keep while the exchange runs (hyper's
    /// senders; the proxy's own connection travels with the exchange and
    /// then the response body), and the exchange. On an error before
    /// anything was written, the request comes back with it.
    #[inline]
    #[expect(
        clippy::result_large_err,
        reason = "the failure carries an unsent request back, for a retry"
    )]
    pub fn send(
        self,
        req: http::Request<ClientBody>,
    ) -> (
        Option<UpstreamConn>,
        impl Future<Output = SendResult> + Send + 'static,
    ) {
        match self.sender {
            // Mapped, not wrapped in an async block: a block would be a
            // state machine of its own around the exchange's.
            Sender::Raw(c) => (
                None,
                Either::Left(c.send(req).map(|r| match r {
                    Ok(resp) => Ok(resp.map(UpstreamBody::Raw)),
                    Err(e) => Err(SendFailure {
                        error: e.error.into(),
                        unsent: e.unsent,
                    }),
                })),
            ),
            Sender::Upgrade(mut s) => {
                let fut = s.try_send_request(req);
                let keep = UpstreamConn {
                    sender: Sender::Upgrade(s),
                };
                (Some(keep), Either::Right(Either::Left(hyper_result(fut))))
            }
            // Nothing to keep: the stream holds its connection open.
            Sender::H2(s) => (
                None,
                Either::Right(Either::Right(s.send(req).map(|r| match r {
                    Ok(resp) => Ok(resp.map(UpstreamBody::H2)),
                    Err(e) => Err(SendFailure {
                        error: e.error.into(),
                        unsent: e.unsent,
                    }),
                }))),
            ),
        }
    }

    /// Another handle on the same HTTP/2 connection; None for HTTP/1.1.
    #[inline]
    pub fn share(&self) -> Option<UpstreamConn> {
        match &self.sender {
            Sender::H2(s) => Some(UpstreamConn {
                sender: Sender::H2(s.clone()),
            }),
            _ => None,
        }
    }

    /// Hand an HTTP/1.1 connection to hyper, for an upgrade.
    async fn into_upgrade(self, address: &str) -> Result<UpstreamConn, ConnectError> {
        match self.sender {
            Sender::Raw(c) => {
                let Some(io) = c.into_io() else {
                    return Err(ConnectError::Io {
                        address: address.to_string(),
                        source: std::io::Error::other("connection has unread bytes"),
                    });
                };
                upgrade_handshake(TokioIo::new(io)).await.map_err(|source| {
                    ConnectError::Handshake {
                        address: address.to_string(),
                        source,
                    }
                })
            }
            _ => Ok(self),
        }
    }
}

#[expect(
    clippy::result_large_err,
    reason = "the failure carries an unsent request back, for a retry"
)]
fn hyper_result<F>(fut: F) -> impl Future<Output = SendResult>
where
    F: Future<Output = Result<http::Response<Incoming>, TrySendError<http::Request<ClientBody>>>>,
{
    fut.map(|r| match r {
        Ok(resp) => Ok(resp.map(UpstreamBody::Hyper)),
        Err(mut e) => {
            let unsent = e.take_message();
            Err(SendFailure {
                error: e.into_error().into(),
                unsent,
            })
        }
    })
}

impl http_body::Body for UpstreamBody {
    type Data = bytes::Bytes;
    type Error = UpstreamError;

    #[inline]
    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, UpstreamError>>> {
        match self.get_mut() {
            UpstreamBody::Raw(b) => std::pin::Pin::new(b).poll_frame(cx).map_err(Into::into),
            UpstreamBody::H2(b) => std::pin::Pin::new(b).poll_frame(cx).map_err(Into::into),
            UpstreamBody::Hyper(b) => std::pin::Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Raw(b) => b.is_end_stream(),
            UpstreamBody::H2(b) => b.is_end_stream(),
            UpstreamBody::Hyper(b) => b.is_end_stream(),
        }
    }

    #[inline]
    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            UpstreamBody::Raw(b) => b.size_hint(),
            UpstreamBody::H2(b) => b.size_hint(),
            UpstreamBody::Hyper(b) => b.size_hint(),
        }
    }
}

impl UpstreamBody {
    /// The proxy's own connection back, when the body was read whole and
    /// the connection may carry another request.
    pub fn take_conn(&mut self) -> Option<UpstreamConn> {
        match self {
            UpstreamBody::Raw(b) => b.take_conn().map(UpstreamConn::raw),
            UpstreamBody::H2(_) | UpstreamBody::Hyper(_) => None,
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
    /// `idle_ms` at `now_ms` ([`crate::clock::now_ms`]), else a new one; for
    /// an upgrade, handed to hyper.
    pub async fn acquire(
        &self,
        ep: &Endpoint,
        now_ms: u64,
        idle_ms: u64,
        upgrade: bool,
    ) -> Result<UpstreamConn, ConnectError> {
        if self.protocol == UpstreamProtocol::H2 {
            if let Some(c) = ep.shared_conn(now_ms) {
                return Ok(c);
            }
            let c = Box::pin(self.connect(ep)).await?;
            ep.set_shared_conn(&c, now_ms);
            return Ok(c);
        }
        let conn = match ep.take_idle(now_ms, idle_ms) {
            Some(c) => c,
            // Boxed: opening a connection (TCP, TLS, handshake) is a large future
            // and the rare path; inline, it would make every request's future
            // kilobytes larger, and those bytes are copied as the future moves.
            None => Box::pin(self.connect(ep)).await?,
        };
        if upgrade {
            return Box::pin(conn.into_upgrade(&ep.address)).await;
        }
        Ok(conn)
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
        if self.protocol == UpstreamProtocol::Http1 {
            return Ok(UpstreamConn::raw(Box::new(H1Conn::new(stream))));
        }
        match crate::upstream::h2_client::handshake(stream, H2).await {
            Ok(s) => Ok(UpstreamConn {
                sender: Sender::H2(s),
            }),
            Err(source) => Err(ConnectError::H2Handshake {
                address: ep.address.clone(),
                source,
            }),
        }
    }
}

/// A byte stream to an upstream: TCP, or TLS over TCP.
pub trait UpstreamIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + Sync {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + Sync> UpstreamIo for T {}

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

/// hyper's HTTP/1.1 handshake on an open stream, for an upgrade; spawns
/// the connection task.
async fn upgrade_handshake<I>(io: I) -> Result<UpstreamConn, hyper::Error>
where
    I: Read + Write + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new().handshake(io).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(UpstreamConn {
        sender: Sender::Upgrade(sender),
    })
}
