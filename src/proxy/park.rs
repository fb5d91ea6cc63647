//! Parking idle HTTP/1 keep-alive connections.
//!
//! A kept-alive HTTP/1 connection that waits for its next request holds all
//! of hyper's connection state: read and write buffers (8 KiB or more each),
//! the dispatcher, the header timer. Once it has waited [`PARK_AFTER`], the
//! connection is *parked*: hyper's connection is taken apart
//! (`into_parts`) and dropped. A cleartext connection then leaves tokio:
//! its bare socket, client address, head deadline, connection slot and the
//! bytes hyper had already read of the next head (usually none) wait in the
//! listener's [`Parker`] (one task and one epoll set per listener, about a
//! hundred bytes per connection; see `park/parker.rs`). A TLS connection
//! keeps its stream and service in a small task of its own that waits for
//! the stream to become readable. When the client sends again, a new task,
//! service and hyper connection serve the stream as if nothing had
//! happened. A busy
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
use crate::proxy::limits::ConnectionSlot;
use crate::proxy::stop::{Shutdown, StopWatch};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::rt::{Sleep, Timer};
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::{poll_fn, Future};
use std::net::IpAddr;
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

    /// The bare socket, out of tokio's reactor, for the listener's
    /// [`Parker`]; `Err(self)` if the stream holds more than a socket (TLS:
    /// it then waits in a task of its own).
    fn detach(self) -> Result<std::io::Result<std::net::TcpStream>, Self>
    where
        Self: Sized,
    {
        Err(self)
    }
}

impl ParkIo for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }

    fn detach(self) -> Result<std::io::Result<std::net::TcpStream>, Self> {
        Ok(self.into_std())
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

/// An HTTP/1 client connection between requests: what a serving task
/// hands to the task that waits while it is parked, and back.
pub(crate) struct H1Conn<I, S> {
    pub io: I,
    pub svc: S,
    pub watch: Arc<ConnWatch>,
    /// The client's address, to build the service again after a park.
    pub ip: IpAddr,
    /// Bytes hyper had read of the next head when the connection was parked.
    pub replay: Bytes,
    pub h1: Arc<H1Server>,
    pub shutdown: Arc<Shutdown>,
    /// The connection's place under `limits.max_connections`.
    pub slot: ConnectionSlot,
    /// Where a cleartext connection is parked (`None`: in a task of its own).
    pub parker: Option<Parker>,
}

impl<S> H1Conn<(), S> {
    /// The connection with its stream, once the protocol is known.
    pub fn with_io<I>(self, io: I) -> H1Conn<I, S> {
        H1Conn {
            io,
            svc: self.svc,
            watch: self.watch,
            ip: self.ip,
            replay: self.replay,
            h1: self.h1,
            shutdown: self.shutdown,
            slot: self.slot,
            parker: self.parker,
        }
    }
}

/// Serve HTTP/1 on `conn` in a task of the listener's, until the client or
/// the listener's shutdown ends it. Each time the connection idles past
/// the park delay its task ends and a small one waits for the client
/// ([`spawn_parked`]): a task's memory is that of its largest state, so
/// the parked wait gets a task of its own rather than sharing one with
/// hyper's connection, the TLS handshake and the protocol sniffing.
pub(crate) fn spawn_h1<I, S, B>(conn: H1Conn<I, S>)
where
    I: ParkIo,
    S: HttpService<Incoming, ResBody = B> + Unpin + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tracker = conn.shutdown.connections.clone();
    tracker.spawn(async move {
        match serve_until_parked(conn).await {
            Ok(Some((conn, deadline))) => park(conn, deadline),
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "client connection ended with an error"),
        }
    });
}

/// Park an idle connection: a cleartext one with the listener's
/// [`Parker`], which keeps only its socket, address, deadline and slot;
/// any other in a task of its own ([`spawn_parked`]).
fn park<I, S, B>(conn: H1Conn<I, S>, deadline: Instant)
where
    I: ParkIo,
    S: HttpService<Incoming, ResBody = B> + Unpin + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let H1Conn {
        io,
        svc,
        watch,
        ip,
        replay,
        h1,
        shutdown,
        slot,
        parker,
    } = conn;
    let io = match parker.as_ref().filter(|p| !p.is_closed()) {
        Some(p) => match io.detach() {
            Ok(Ok(io)) => {
                return p.park(Idle {
                    io,
                    ip,
                    replay,
                    deadline,
                    slot,
                })
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "an idle connection could not be parked: closed");
                return;
            }
            Err(io) => io,
        },
        None => io,
    };
    let conn = H1Conn {
        io,
        svc,
        watch,
        ip,
        replay,
        h1,
        shutdown,
        slot,
        parker,
    };
    spawn_parked(conn, deadline);
}

/// Wait, in a small task, for the parked connection's next request; then
/// serve it again ([`spawn_h1`]).
fn spawn_parked<I, S, B>(mut conn: H1Conn<I, S>, deadline: Instant)
where
    I: ParkIo,
    S: HttpService<Incoming, ResBody = B> + Unpin + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tracker = conn.shutdown.connections.clone();
    tracker.spawn(async move {
        let parked = conn.slot.limit().parked();
        let wake = wait_parked(conn.io.tcp(), deadline, &conn.shutdown).await;
        drop(parked);
        match wake {
            Wake::Readable => {
                conn.watch.carry_deadline(deadline.into_std());
                spawn_h1(conn);
            }
            Wake::Closed => close(&mut conn.io),
        }
    });
}

/// Serve `conn` until it ends (`None`) or parks: then what is left of it
/// and the deadline of the head it waits for.
async fn serve_until_parked<I, S, B>(
    conn: H1Conn<I, S>,
) -> Result<Option<(H1Conn<I, S>, Instant)>, hyper::Error>
where
    I: ParkIo,
    S: HttpService<Incoming, ResBody = B> + Unpin,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let H1Conn {
        io,
        svc,
        watch,
        ip,
        replay,
        h1,
        shutdown,
        slot,
        parker,
    } = conn;
    let hyper_conn = {
        let mut b = h1.builder.clone();
        if let Some(park_after) = h1.park_after {
            b.timer(ParkTimer {
                watch: watch.clone(),
                park_after,
                header_timeout: h1.header_timeout,
            });
        }
        let io = TokioIo::new(ClientIo::resume(io, watch.clone(), replay));
        Box::new(b.serve_connection(io, svc).with_upgrades())
    };
    let (parts, deadline) = match serve_turn(hyper_conn, &watch, &shutdown).await {
        Turn::Done(r) => return r.map(|()| None),
        Turn::Parked(parts, deadline) => (parts, deadline),
    };
    let conn = H1Conn {
        io: parts.io.into_inner().into_inner(),
        svc: parts.service,
        watch,
        // A copy: the frozen buffer holds all of hyper's read buffer.
        replay: Bytes::copy_from_slice(&parts.read_buf),
        ip,
        h1,
        shutdown,
        slot,
        parker,
    };
    Ok(Some((conn, deadline)))
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

mod parker;
pub(crate) use parker::{Idle, Parker};

#[cfg(test)]
mod tests;
