//! Serving the admin API on its listener: HTTP/1.1 with a bound on reading
//! a request head, and a graceful stop.
//!
//! `axum::serve` has no header-read timeout: a client that connects and
//! never finishes its headers held a socket (and a file descriptor) for
//! ever, before authentication could refuse it. Here hyper's
//! `header_read_timeout` closes such a connection after
//! `timeouts.client_header`, as on the proxy listeners.

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Serve `router` on `listener` until `stop`, then let the requests in
/// flight finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    stop: CancellationToken,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            (stream, _) = crate::proxy::listener::accept(&listener, "admin") => stream,
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            router.clone().oneshot(req.map(axum::body::Body::new))
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // A client that went away or was too slow: nothing to act on.
                tracing::debug!(error = %e, "admin API connection ended");
            }
        });
    }
    graceful.shutdown().await;
}
