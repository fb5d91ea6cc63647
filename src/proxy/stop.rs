//! A listener's graceful shutdown as its connections see it: HTTP/1
//! connections close after their current response, HTTP/2 ones get GOAWAY.

use hyper::body::Incoming;
use hyper_util::server::conn::auto;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Shutdown shared by a listener's connections. Unlike hyper-util's
/// `GracefulShutdown`, whose watch future each connection polls (a lock and
/// a version check) on every wake-up, a connection here checks one atomic
/// flag and polls the cancellation only when its task's waker changes.
pub(crate) struct Shutdown {
    pub(crate) started: AtomicBool,
    pub(crate) token: CancellationToken,
    pub(crate) connections: TaskTracker,
}

/// A served connection that hyper can ask to finish gracefully.
pub(crate) trait GracefulConn: Future<Output = Result<(), Self::Error>> {
    type Error: std::fmt::Display;
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, B> GracefulConn for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Error = hyper::Error;
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http1::UpgradeableConnection::graceful_shutdown(self)
    }
}

impl<I, S, B, E> GracefulConn for hyper::server::conn::http2::Connection<I, S, E>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    type Error = hyper::Error;
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http2::Connection::graceful_shutdown(self)
    }
}

impl<I, S, B, E> GracefulConn for auto::UpgradeableConnection<'_, I, S, E>
where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: 'static,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper_util::server::conn::auto::HttpServerConnExec<S::Future, B>,
{
    type Error = Box<dyn std::error::Error + Send + Sync>;
    fn graceful_shutdown(self: Pin<&mut Self>) {
        auto::UpgradeableConnection::graceful_shutdown(self)
    }
}

pin_project_lite::pin_project! {
    /// One connection's view of the listener's shutdown: notices its start
    /// with one atomic load per poll, polling the cancellation only when the
    /// task's waker changes.
    pub(crate) struct StopWatch {
        #[pin]
        cancelled: tokio_util::sync::WaitForCancellationFutureOwned,
        shutdown: Arc<Shutdown>,
        registered: Option<Waker>,
        shutting_down: bool,
    }
}

impl StopWatch {
    pub(crate) fn new(shutdown: &Arc<Shutdown>) -> Self {
        StopWatch {
            cancelled: shutdown.token.clone().cancelled_owned(),
            shutdown: shutdown.clone(),
            registered: None,
            shutting_down: false,
        }
    }

    /// True once, at the first poll after the shutdown started.
    pub(crate) fn poll_started(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        let this = self.project();
        if *this.shutting_down {
            return false;
        }
        let registered = this
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()));
        if registered && !this.shutdown.started.load(Ordering::Acquire) {
            return false;
        }
        match this.cancelled.poll(cx) {
            Poll::Ready(()) => {
                *this.shutting_down = true;
                true
            }
            Poll::Pending => {
                *this.registered = Some(cx.waker().clone());
                false
            }
        }
    }

    /// The shutdown has been seen.
    pub(crate) fn shutting_down(&self) -> bool {
        self.shutting_down
    }
}

pin_project_lite::pin_project! {
    /// A connection that starts its graceful shutdown when the listener's
    /// shutdown does.
    pub(crate) struct Stoppable<C> {
        #[pin]
        conn: C,
        #[pin]
        stop: StopWatch,
    }
}

impl<C: GracefulConn> Future for Stoppable<C> {
    type Output = Result<(), C::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if this.stop.poll_started(cx) {
            this.conn.as_mut().graceful_shutdown();
        }
        this.conn.poll(cx)
    }
}

pub(crate) fn stoppable<C: GracefulConn>(conn: C, shutdown: &Arc<Shutdown>) -> Stoppable<C> {
    Stoppable {
        conn,
        stop: StopWatch::new(shutdown),
    }
}
