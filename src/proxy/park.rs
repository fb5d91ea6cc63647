//! Parking idle HTTP/1 keep-alive connections.
//!
//! A kept-alive HTTP/1 connection that waits for its next request holds all
//! of hyper's connection state: read and write buffers (8 KiB or more each),
//! the dispatcher, the header timer. Once it has waited [`PARK_AFTER`], the
//! connection is *parked*: hyper's connection is taken apart
//! (`into_parts`) and dropped, and only the stream, the service and the
//! bytes hyper had already read of the next head (usually none) stay, in a
//! task that waits for the stream to become readable. Then a new hyper
//! connection serves the stream as if nothing had happened. A busy
//! connection never waits that long, so the hot path pays nothing but the
//! timer below.
//!
//! **When it is safe.** hyper's HTTP/1 server starts its header timer
//! (`timeouts.client_header`) exactly when it starts reading a request head
//! with no request in progress (reading and writing both idle), and drops
//! it when the head has come. [`ParkTimer`] is that timer for one
//! connection: its sleep first ends at the park delay, which raises
//! [`ConnWatch::park_due`], and then goes on to the real deadline. The
//! connection is parked when hyper's poll is pending with `park_due` up and
//! all it wrote flushed ([`ConnWatch::flushed`]: hyper's buffer, and a TLS
//! stream's, are empty), never once the listener's shutdown has begun
//! (hyper then closes an idle connection itself).
//!
//! **What still holds.** `timeouts.client_header` counts from the end of
//! the previous response, as hyper counts it: its deadline is carried
//! across the park, a parked connection is closed at it, and a head that
//! was half sent when the connection was parked keeps it too. The
//! listener's shutdown closes parked connections at once. Pipelined bytes
//! read but not yet parsed are given to the next connection first.
//! HTTP/2 connections and those served by hyper-util's `auto` (a first read
//! too short to tell the protocol) are not parked.

use crate::proxy::client_io::{ClientIo, ConnWatch};
use crate::proxy::limits::ConnectionLimit;
use crate::proxy::stop::{Shutdown, StopWatch};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::rt::{Sleep, Timer};
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long a kept-alive HTTP/1 connection waits for its next request with
/// hyper's state before it is parked. Parking and waking cost a few
/// allocations, so the delay keeps them off connections that are merely
/// between two requests of a busy client.
pub const PARK_AFTER: Duration = Duration::from_secs(1);

/// A client stream that can be parked: its TCP socket says when the client
/// sends again.
pub trait ParkIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    fn tcp(&self) -> &TcpStream;
}

impl ParkIo for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl ParkIo for Box<tokio_rustls::server::TlsStream<TcpStream>> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// hyper's timer for one HTTP/1 connection (see the module documentation).
/// hyper's HTTP/1 server asks a timer for nothing but the header timeout.
struct ParkTimer {
    watch: Arc<ConnWatch>,
    park_after: Duration,
    /// hyper's header timeout: a fresh deadline is this after now.
    header_timeout: Duration,
}

impl Timer for ParkTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        TokioTimer::new().sleep(duration)
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn Sleep>> {
        let (deadline, carried) = self.watch.start_head(deadline);
        let deadline = Instant::from_std(deadline);
        // hyper's deadline is now plus the timeout: no second clock read.
        let park_at = match carried {
            false => {
                deadline
                    .checked_sub(self.header_timeout)
                    .unwrap_or(deadline)
                    + self.park_after
            }
            true => Instant::now() + self.park_after,
        };
        Box::pin(HeadSleep {
            inner: tokio::time::sleep_until(park_at.min(deadline)),
            deadline,
            parking: park_at < deadline,
            watch: self.watch.clone(),
        })
    }

    fn now(&self) -> std::time::Instant {
        Instant::now().into_std()
    }
}

pin_project_lite::pin_project! {
    /// The wait for one request head: ends at its deadline, and on the way
    /// raises `park_due` at the park delay.
    struct HeadSleep {
        #[pin]
        inner: tokio::time::Sleep,
        deadline: Instant,
        parking: bool,
        watch: Arc<ConnWatch>,
    }

    impl PinnedDrop for HeadSleep {
        fn drop(this: Pin<&mut Self>) {
            this.watch.end_head();
        }
    }
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        if *this.parking {
            ready!(this.inner.as_mut().poll(cx));
            *this.parking = false;
            this.watch.park_due.store(true, Ordering::Relaxed);
            this.inner.as_mut().reset(*this.deadline);
        }
        this.inner.poll(cx)
    }
}

impl Sleep for HeadSleep {}

/// How HTTP/1 connections are served: hyper's builder, the header timeout
/// it was given, and the park delay (`None`: never park).
#[derive(Clone)]
pub struct H1Server {
    pub builder: http1::Builder,
    pub header_timeout: Duration,
    pub park_after: Option<Duration>,
}

/// How one hyper connection on the stream ended.
enum Turn<I, S> {
    Done(Result<(), hyper::Error>),
    /// Idle long enough: what is left of the connection, and the deadline
    /// of the head it was waiting for.
    Parked(http1::Parts<I, S>, Instant),
}

/// Why a parked connection stopped waiting.
enum Wake {
    Readable,
    Closed,
}

/// Serve HTTP/1 on `io` until the client or the listener's shutdown ends
/// it, parking it whenever it idles (see the module documentation).
pub(crate) async fn serve_h1<I, S, B>(
    mut io: I,
    mut svc: S,
    watch: Arc<ConnWatch>,
    h1: &H1Server,
    shutdown: &Arc<Shutdown>,
    limit: &ConnectionLimit,
) -> Result<(), hyper::Error>
where
    I: ParkIo,
    S: HttpService<Incoming, ResBody = B> + Unpin,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut replay = Bytes::new();
    loop {
        let mut b = h1.builder.clone();
        if let Some(park_after) = h1.park_after {
            b.timer(ParkTimer {
                watch: watch.clone(),
                park_after,
                header_timeout: h1.header_timeout,
            });
        }
        let io_now = TokioIo::new(ClientIo::resume(io, watch.clone(), replay));
        let conn = Box::new(b.serve_connection(io_now, svc).with_upgrades());
        let (parts, deadline) = match serve_turn(conn, &watch, shutdown).await {
            Turn::Done(r) => return r,
            Turn::Parked(parts, deadline) => (parts, deadline),
        };
        io = parts.io.into_inner().into_inner();
        svc = parts.service;
        // A copy: the frozen buffer holds all of hyper's read buffer.
        replay = Bytes::copy_from_slice(&parts.read_buf);
        drop(parts.read_buf);
        let _parked = limit.parked();
        match wait_parked(io.tcp(), deadline, shutdown).await {
            Wake::Readable => watch.carry_deadline(deadline.into_std()),
            Wake::Closed => {
                close(&mut io);
                return Ok(());
            }
        }
    }
}

/// Poll one hyper connection until it ends or parks.
async fn serve_turn<I, S, B>(
    conn: Box<http1::UpgradeableConnection<TokioIo<ClientIo<I>>, S>>,
    watch: &ConnWatch,
    shutdown: &Arc<Shutdown>,
) -> Turn<TokioIo<ClientIo<I>>, S>
where
    I: ParkIo,
    S: HttpService<Incoming, ResBody = B> + Unpin,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut conn = Some(conn);
    let mut stop = pin!(StopWatch::new(shutdown));
    poll_fn(|cx| {
        let Some(c) = conn.as_mut() else {
            return Poll::Ready(Turn::Done(Ok(())));
        };
        if stop.as_mut().poll_started(cx) {
            Pin::new(&mut **c).graceful_shutdown();
        }
        match Pin::new(&mut **c).poll(cx) {
            Poll::Ready(r) => Poll::Ready(Turn::Done(r)),
            Poll::Pending if !stop.shutting_down() && watch.park_ready() => {
                let Some(deadline) = watch.head_deadline() else {
                    return Poll::Pending;
                };
                match conn.take().and_then(|c| c.into_parts()) {
                    Some(parts) => Poll::Ready(Turn::Parked(parts, Instant::from_std(deadline))),
                    // Upgraded: cannot be, the connection was pending.
                    None => Poll::Ready(Turn::Done(Ok(()))),
                }
            }
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Wait until the parked stream is readable (data, or the client closed),
/// its head deadline passes, or the listener shuts down.
async fn wait_parked(tcp: &TcpStream, deadline: Instant, shutdown: &Shutdown) -> Wake {
    tokio::select! {
        biased;
        _ = shutdown.token.cancelled() => Wake::Closed,
        // The waker is kept by the socket's registration: nothing here.
        _ = poll_fn(|cx| tcp.poll_read_ready(cx)) => Wake::Readable,
        _ = tokio::time::sleep_until(deadline) => Wake::Closed,
    }
}

/// Close a parked stream as hyper closes an idle one: shut down writing
/// (TLS: `close_notify`) if that can be done without waiting, then drop.
fn close<I: ParkIo>(io: &mut I) {
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    let _ = Pin::new(io).poll_shutdown(&mut cx);
}

#[cfg(test)]
mod tests;
