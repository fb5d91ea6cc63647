//! Accepting client connections and serving HTTP/1.1 and HTTP/2 on them
//! (by TLS ALPN or the connection's first bytes, else hyper-util `auto`),
//! in cleartext or over TLS, with graceful shutdown.
//!
//! A TLS handshake runs in the connection's own task, bounded by the
//! handshake timeout, so a slow client never holds up the accept loop.
//!
//! HTTP/1 connections (cleartext, or TLS with ALPN `http/1.1`) are served by
//! [`crate::proxy::park`], which parks them while they idle between requests.
//!
//! On shutdown the listener stops accepting (new connections are refused),
//! HTTP/1 connections close after their current response (parked ones at
//! once), HTTP/2 ones get GOAWAY ([`crate::proxy::stop`]), and in-flight
//! work gets up to `drain.timeout` (SPEC.md section 6;
//! here that is the listener's *shutdown*: "drain" in the code is what a
//! pool that lost its traffic does, `routing::drain`). [`accept`], the
//! accept loop with its backoff, serves the admin listener too.
//!
//! Every HTTP/1 client stream goes through [`ClientIo`], which gives hyper's own
//! answers to unparseable requests the proxy's plain-text body.

use crate::config::PoolSelector;
use crate::proxy::body::ProxyBody;
use crate::proxy::client_io::{ClientIo, ConnWatch, Marked};
use crate::proxy::handler::handle;
use crate::proxy::headers::ClientAddr;
use crate::proxy::limits::{ConnectionLimit, RequestLimits};
use crate::proxy::listener_tls::TlsListener;
use crate::proxy::park::{spawn_h1, H1Conn, H1Server, Idle, Parker, PARK_AFTER};
use crate::proxy::stop::{stoppable, Shutdown};
use crate::routing::RoutingTable;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::{service_fn, Service};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// After a failed accept, the pause before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The next connection on `listener` (`what` names it in the log). A
/// failed accept (out of file descriptors, mostly) is logged and retried
/// after [`ACCEPT_BACKOFF`]: the pending connection keeps the listener
/// readable, so retrying at once would spin, and the pause is the time
/// for connections to close and free descriptors. Cancel-safe, for
/// `select!` against a shutdown.
pub async fn accept(listener: &TcpListener, what: &str) -> (tokio::net::TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) => {
                tracing::warn!(error = %e, listener = what, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// What every connection of one listener shares.
pub struct ListenerCtx {
    pub table: Arc<ArcSwap<RoutingTable>>,
    /// Writes being routed or in flight, shared with the controller.
    pub writes: Arc<crate::routing::WritesInFlight>,
    pub tls: bool,
    /// A preview listener's pinned pool.
    pub preview: Option<PoolSelector>,
    /// Upgraded (WebSocket) tunnels, which outlive their HTTP connection.
    pub tunnels: TaskTracker,
    pub tunnels_cancel: CancellationToken,
    /// Client connections over all listeners, against `limits.max_connections`.
    pub connections: Arc<ConnectionLimit>,
    pub limits: RequestLimits,
}

/// Header fields in one HTTP/1 request head (hyper's default, made explicit): 431 beyond.
pub const MAX_HEADERS: usize = 100;

/// The HTTP/2 connection preface (RFC 9113 section 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The HTTP server settings shared by all listeners: one builder per
/// protocol, so a connection whose protocol is known (TLS ALPN, or the first
/// bytes of a cleartext one) is served without hyper-util's `auto` layer,
/// which re-checks a rewind buffer on every read; `auto` serves the rest.
pub struct HttpBuilders {
    auto: auto::Builder<TokioExecutor>,
    h1: Arc<H1Server>,
    h2: hyper::server::conn::http2::Builder<TokioExecutor>,
    client_header: Duration,
}

/// A request head larger than hyper's read buffer ([`h1_buf_size`]) or with
/// more than [`MAX_HEADERS`] fields gets 431 from hyper itself, a target
/// over 64 KB 414; the smaller `limits` are checked per request
/// ([`crate::proxy::limits`]).
pub fn http_builder(client_header_timeout: Duration, limits: &RequestLimits) -> HttpBuilders {
    let max_header_list = u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX);
    let buf_size = h1_buf_size(limits);
    let mut auto = auto::Builder::new(TokioExecutor::new());
    auto.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(client_header_timeout)
        .max_headers(MAX_HEADERS)
        .max_buf_size(buf_size)
        .keep_alive(true);
    auto.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(max_header_list)
        .max_concurrent_streams(256);
    let mut h1 = hyper::server::conn::http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(client_header_timeout)
        .max_headers(MAX_HEADERS)
        .max_buf_size(buf_size)
        .keep_alive(true);
    let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_header_list_size(max_header_list)
        .max_concurrent_streams(256);
    HttpBuilders {
        auto,
        h1: Arc::new(H1Server {
            builder: h1,
            header_timeout: client_header_timeout,
            park_after: Some(PARK_AFTER),
        }),
        h2,
        client_header: client_header_timeout,
    }
}

/// Room in hyper's HTTP/1 read buffer beyond `limits.max_header_bytes`:
/// the final CRLF, and whitespace around field values that the limit does
/// not count.
const HEAD_SLACK: usize = 8 * 1024;
/// The least hyper's HTTP/1 read buffer may grow to, whatever the head
/// limit: a streamed request body is read in pieces up to this size.
const MIN_H1_BUF: usize = 128 * 1024;

/// The most hyper's HTTP/1 server buffers of one connection (hyper's
/// `max_buf_size`): `limits.max_header_bytes` and [`HEAD_SLACK`], at least
/// [`MIN_H1_BUF`].
///
/// The same buffer holds a request head while it is parsed and the request
/// body as it streams in. hyper grows it while reads fill it (8 KiB at
/// first, doubling) up to this cap, and each body piece is split off it
/// and held until written upstream, so an upload holds two or three
/// buffers of up to the cap per connection. At hyper's default cap (about
/// 400 KB) 16 connections uploading 1 MiB bodies peaked at ~29 MiB RSS,
/// nginx at ~12; at 128 KiB ~16.5, at 72 KiB ~15 but with ~10 % fewer
/// requests per CPU-second (more, smaller pieces), at 128 KiB no fewer
/// (`benches/compare/matrix.py --cells upload-1m`). A head up to the limit
/// still fits whole, so a larger one still gets the proxy's own 431.
pub fn h1_buf_size(limits: &RequestLimits) -> usize {
    limits
        .max_header_bytes
        .saturating_add(HEAD_SLACK)
        .max(MIN_H1_BUF)
}

/// What a connection's first bytes say it speaks.
enum Sniffed {
    Http1,
    Http2,
    /// A prefix of the HTTP/2 preface: too short to tell, `auto` reads on.
    Unsure,
    /// Closed, or nothing within the header timeout.
    Gone,
}

/// Peek (without consuming) at a cleartext connection's first bytes.
async fn sniff(stream: &TcpStream, within: Duration) -> Sniffed {
    let mut buf = [0u8; 24];
    match tokio::time::timeout(within, stream.peek(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) | Err(_) => Sniffed::Gone,
        Ok(Ok(n)) if buf[..n] != H2_PREFACE[..n] => Sniffed::Http1,
        Ok(Ok(24)) => Sniffed::Http2,
        Ok(Ok(_)) => Sniffed::Unsure,
    }
}

fn log_end<E: std::fmt::Display>(r: Result<(), E>) {
    if let Err(e) = r {
        tracing::debug!(error = %e, "client connection ended with an error");
    }
}

/// What the proxy answers a client's request with.
type Answer = Response<Marked<ProxyBody>>;

/// The service of one client connection (from `ip`), reporting to `watch`.
fn client_service(
    ctx: Arc<ListenerCtx>,
    ip: IpAddr,
    watch: &Arc<ConnWatch>,
) -> impl Service<
    Request<Incoming>,
    Response = Answer,
    Error = Infallible,
    Future = impl Future<Output = Result<Answer, Infallible>> + Send + 'static,
> + Clone
       + Send
       + Unpin
       + 'static {
    let client = ClientAddr::new(ip);
    let conn_watch = watch.clone();
    service_fn(move |req| {
        let (ctx, client) = (ctx.clone(), client.clone());
        let open = conn_watch.request_started();
        async move { Ok::<_, Infallible>(open.attach(handle(req, &ctx, &client).await)) }
    })
}

/// Serve a parked connection its parker woke, as it was served before.
fn resume(
    idle: Idle<TcpStream>,
    parker: Option<Parker>,
    ctx: &Arc<ListenerCtx>,
    h1: &Arc<H1Server>,
    shutdown: &Arc<Shutdown>,
) {
    let watch = Arc::new(ConnWatch::default());
    let svc = client_service(ctx.clone(), idle.ip, &watch);
    watch.carry_deadline(idle.deadline.into_std());
    spawn_h1(H1Conn {
        io: idle.io,
        svc,
        watch,
        ip: idle.ip,
        replay: idle.replay,
        h1: h1.clone(),
        shutdown: shutdown.clone(),
        slot: idle.slot,
        parker,
    });
}

/// Accept and serve (over TLS when `tls` is given) until `stop`, then
/// finish for at most `grace()`: `drain.timeout` of the config in force
/// then, reloads included.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<ListenerCtx>,
    builders: Arc<HttpBuilders>,
    tls: Option<TlsListener>,
    stop: CancellationToken,
    grace: impl Fn() -> Duration,
) {
    let connections = Arc::new(Shutdown {
        started: AtomicBool::new(false),
        token: CancellationToken::new(),
        connections: TaskTracker::new(),
    });
    // Cleartext HTTP/1 connections idle past the park delay wait here;
    // without it (out of file descriptors) each in a task of its own.
    let parker = match (&tls, builders.h1.park_after) {
        (None, Some(_)) => {
            let (ctx, h1, shutdown) = (ctx.clone(), builders.h1.clone(), connections.clone());
            let started = Parker::start(
                &connections.connections,
                connections.token.clone(),
                move |idle, parker| resume(idle, parker, &ctx, &h1, &shutdown),
            );
            started
                .map_err(|e| tracing::warn!(error = %e, "parked connections get a task each"))
                .ok()
        }
        _ => None,
    };
    loop {
        let (stream, peer) = tokio::select! {
            accepted = accept(&listener, "proxy") => accepted,
            _ = stop.cancelled() => break,
        };
        let Some(slot) = ctx.connections.try_open() else {
            tracing::debug!(%peer, "limits.max_connections reached: connection refused");
            ctx.connections.refuse(stream, !ctx.tls);
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "set_nodelay failed");
        }
        let ctx = ctx.clone();
        let builders = builders.clone();
        let shutdown = connections.clone();
        let parker = parker.clone();
        let tls = tls.clone();
        connections.connections.spawn(async move {
            let b = &*builders;
            let watch = Arc::new(ConnWatch::default());
            let svc = client_service(ctx, peer.ip(), &watch);
            // An HTTP/1 connection, but for its stream.
            let conn = H1Conn {
                io: (),
                svc,
                watch,
                ip: peer.ip(),
                replay: Bytes::new(),
                h1: b.h1.clone(),
                shutdown: shutdown.clone(),
                slot,
                parker,
            };
            // HTTP/1 goes on in tasks of its own (`park`): this one ends.
            // What is big here is boxed, so that this task stays small too.
            match tls {
                None => match sniff(&stream, b.client_header).await {
                    Sniffed::Http1 => spawn_h1(conn.with_io(stream)),
                    Sniffed::Http2 => {
                        let conn = b.h2.serve_connection(TokioIo::new(stream), conn.svc);
                        log_end(Box::pin(stoppable(conn, &shutdown)).await)
                    }
                    Sniffed::Unsure => {
                        let io = TokioIo::new(ClientIo::new(stream, conn.watch));
                        let conn = b.auto.serve_connection_with_upgrades(io, conn.svc);
                        log_end(Box::pin(stoppable(conn, &shutdown)).await)
                    }
                    Sniffed::Gone => {}
                },
                Some(tls) => {
                    let handshake = tls.acceptor.accept(stream);
                    let handshake =
                        Box::pin(tokio::time::timeout(tls.handshake_timeout, handshake));
                    let stream = match handshake.await {
                        Ok(Ok(s)) => Box::new(s),
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                    match alpn.as_deref() {
                        Some(b"h2") => {
                            let conn = b.h2.serve_connection(TokioIo::new(stream), conn.svc);
                            log_end(Box::pin(stoppable(conn, &shutdown)).await)
                        }
                        Some(b"http/1.1") => spawn_h1(conn.with_io(stream)),
                        _ => {
                            let io = TokioIo::new(ClientIo::new(stream, conn.watch));
                            let conn = b.auto.serve_connection_with_upgrades(io, conn.svc);
                            log_end(Box::pin(stoppable(conn, &shutdown)).await)
                        }
                    }
                }
            }
            // The connection's place (`slot`) is freed here, or by the
            // last task (or the parker) of an HTTP/1 connection.
        });
    }
    drop(listener);
    drop(parker);
    connections.started.store(true, Ordering::Release);
    connections.token.cancel();
    connections.connections.close();
    let grace = grace();
    if tokio::time::timeout(grace, connections.connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(?grace, "drain timeout reached with connections still open");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_buffer_holds_a_head_at_the_limit_and_no_more_than_it_needs() {
        let default = RequestLimits::default();
        assert_eq!(h1_buf_size(&default), MIN_H1_BUF);
        assert!(h1_buf_size(&default) > default.max_header_bytes + 2);
        let largest = RequestLimits {
            max_header_bytes: 256 * 1024,
            max_uri_bytes: 8 * 1024,
        };
        assert_eq!(h1_buf_size(&largest), 256 * 1024 + HEAD_SLACK);
    }
}
