//! Accepting client connections and serving HTTP/1.1 and HTTP/2 on them
//! (hyper-util `auto`), in cleartext or over TLS, with graceful shutdown.
//!
//! A TLS handshake runs in the connection's own task, bounded by the
//! handshake timeout, so a slow client never holds up the accept loop.
//!
//! On shutdown the listener stops accepting (new connections are refused),
//! HTTP/1 connections close after their current response, HTTP/2 ones get
//! GOAWAY, and in-flight work gets up to the drain timeout.
//!
//! Every client stream goes through [`ClientIo`], which gives hyper's own
//! answers to unparseable requests the proxy's plain-text body.

use crate::config::PoolSelector;
use crate::proxy::client_io::{ClientIo, ConnWatch};
use crate::proxy::guard::{ConnectionLimit, RequestLimits};
use crate::proxy::handler::handle;
use crate::proxy::headers::ClientAddr;
use crate::proxy::tls::TlsListener;
use crate::routing::RoutingTable;
use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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

/// The HTTP server settings shared by all listeners. A request head larger
/// than hyper's read buffer (about 400 KB) or with more than [`MAX_HEADERS`]
/// fields gets 431 from hyper itself, a target over 64 KB 414; the smaller
/// `limits` are checked per request ([`crate::proxy::guard`]).
pub fn http_builder(
    client_header_timeout: Duration,
    limits: &RequestLimits,
) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(client_header_timeout)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256);
    b
}

/// Accept and serve (over TLS when `tls` is given) until `shutdown`, then
/// drain for at most `drain`.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<ListenerCtx>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    tls: Option<TlsListener>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
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
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let client = ClientAddr::new(peer.ip());
            let watch = Arc::new(ConnWatch::default());
            let conn_watch = watch.clone();
            let svc = service_fn(move |req| {
                let (ctx, client) = (ctx.clone(), client.clone());
                let open = conn_watch.request_started();
                async move { Ok::<_, Infallible>(open.attach(handle(req, &ctx, &client).await)) }
            });
            let served = match tls {
                None => {
                    let io = TokioIo::new(ClientIo::new(stream, watch));
                    let conn = builder.serve_connection_with_upgrades(io, svc);
                    watcher.watch(conn).await
                }
                Some(tls) => {
                    let handshake = tls.acceptor.accept(stream);
                    let stream = match tokio::time::timeout(tls.handshake_timeout, handshake).await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let io = TokioIo::new(ClientIo::new(stream, watch));
                    let conn = builder.serve_connection_with_upgrades(io, svc);
                    watcher.watch(conn).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "client connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(?drain, "drain timeout reached with connections still open");
    }
}
