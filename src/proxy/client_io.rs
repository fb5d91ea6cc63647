//! The client connection's byte stream, as hyper's HTTP/1 server writes it:
//! hyper's own answer to a request head it cannot parse gets the proxy's
//! short plain-text body (SPEC.md section 8).
//!
//! hyper answers an unparseable head itself, before any service sees it
//! (`role.rs` `on_error`: 400 for a bad method, field, target or version,
//! 431 for a head too large, 414 for a target too long), with a head and no
//! body. The first lines of that head are always the status line, at most
//! one `connection` field hyper adds, and `content-length: 0` (hyper writes
//! its own fields in that order, then `date`). [`ClientIo`] recognises those bytes at the start of a write and
//! writes instead the same status line, the proxy's error fields, the right
//! `content-length`, the rest of hyper's head and the text of
//! [`crate::proxy::error::status_of`]. hyper closes the connection after
//! that answer; the replacement says `connection: close`.
//!
//! A response the proxy forwards could carry the same bytes (an upstream's
//! bodiless 400 with no other field), and so could a body chunk. So the
//! check is armed only while the connection is quiet: every response the
//! service started has been handed to hyper whole, hyper has flushed it
//! (hyper flushes only once its own buffer has been written to us), and no
//! request has reached the service since ([`ConnWatch`]). hyper's automatic
//! answer is written exactly then, since it is only ever written when no
//! response is in progress. After an upgrade (101) the check is off for
//! good: the bytes are the tunnel's.
//!
//! Cost on the hot path: a prefix comparison per write (`HTTP/1.` and a `4`
//! in the status), two relaxed atomic loads only for a 4xx head, and per
//! request two atomic increments and one decrement.
//!
//! [`ConnWatch`] also carries what parking an idle connection needs to know
//! ([`crate::proxy::park`]): whether everything hyper wrote has been flushed
//! (a relaxed store per write and per flush), whether the wait for the next
//! request head has lasted long enough to park, and that wait's deadline.

use crate::proxy::error::{status_of, ProxyError};
use bytes::{Buf, Bytes};
use http::StatusCode;
use http_body::{Body, Frame, SizeHint};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the service of one client connection is doing, as far as the
/// connection's writer needs to know.
#[derive(Debug)]
pub struct ConnWatch {
    /// Requests the service has been given.
    started: AtomicU64,
    /// Responses whose body hyper has not yet taken whole.
    open: AtomicU64,
    /// A 101 went out: the stream is a tunnel now.
    upgraded: AtomicBool,
    /// hyper's last write was followed by a flush that completed: nothing
    /// it wrote is waiting in its buffer or in the stream's (TLS).
    pub(crate) flushed: AtomicBool,
    /// hyper has been waiting for the next request head for the park delay
    /// (set by the head's timer, cleared when that timer goes: the head came).
    pub(crate) park_due: AtomicBool,
    /// The deadline of the request head hyper is waiting for, in the park
    /// module's clock (0: none); kept across a park so parking never
    /// extends `timeouts.client_header`.
    head_deadline: AtomicU64,
    /// The origin of `head_deadline`'s clock: before any deadline.
    born: std::time::Instant,
}

impl Default for ConnWatch {
    fn default() -> Self {
        ConnWatch {
            started: AtomicU64::new(0),
            open: AtomicU64::new(0),
            upgraded: AtomicBool::new(false),
            flushed: AtomicBool::new(false),
            park_due: AtomicBool::new(false),
            head_deadline: AtomicU64::new(0),
            born: tokio::time::Instant::now().into_std(),
        }
    }
}

impl ConnWatch {
    /// The service has been given a request: its response is open until the
    /// returned mark (moved into the response body) is dropped.
    #[inline]
    pub fn request_started(self: &Arc<Self>) -> OpenResponse {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenResponse(self.clone())
    }
}

impl ConnWatch {
    /// hyper starts waiting for a request head with this deadline: the
    /// deadline carried over a park instead, if there is one (then true).
    pub(crate) fn start_head(&self, deadline: std::time::Instant) -> (std::time::Instant, bool) {
        if let Some(carried) = self.head_deadline() {
            return (carried, true);
        }
        self.carry_deadline(deadline);
        (deadline, false)
    }

    /// The head came (or the connection went): no deadline, no parking.
    pub(crate) fn end_head(&self) {
        self.park_due.store(false, Ordering::Relaxed);
        self.head_deadline.store(0, Ordering::Relaxed);
    }

    /// The deadline of the head being waited for.
    pub(crate) fn head_deadline(&self) -> Option<std::time::Instant> {
        match self.head_deadline.load(Ordering::Relaxed) {
            0 => None,
            n => Some(self.born + std::time::Duration::from_nanos(n - 1)),
        }
    }

    /// Set the deadline of the head being (or about to be) waited for.
    pub(crate) fn carry_deadline(&self, deadline: std::time::Instant) {
        let nanos = deadline.saturating_duration_since(self.born).as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX - 1) + 1;
        self.head_deadline.store(nanos, Ordering::Relaxed);
    }

    /// hyper waits for a head past the park delay, with nothing unflushed.
    pub(crate) fn park_ready(&self) -> bool {
        self.park_due.load(Ordering::Relaxed) && self.flushed.load(Ordering::Relaxed)
    }
}

/// One response of the service, open until dropped.
#[derive(Debug)]
pub struct OpenResponse(Arc<ConnWatch>);

impl OpenResponse {
    /// Tie the mark to `resp`'s body, so it is dropped when hyper has the
    /// body whole (or gives up on it).
    #[inline]
    pub fn attach<B>(self, resp: http::Response<B>) -> http::Response<Marked<B>> {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            self.0.upgraded.store(true, Ordering::Relaxed);
        }
        resp.map(|inner| Marked { inner, _open: self })
    }
}

impl Drop for OpenResponse {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body carrying its [`OpenResponse`] mark.
pub struct Marked<B> {
    inner: B,
    _open: OpenResponse,
}

impl<B: Body + Unpin> Body for Marked<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A client connection's stream; see the module documentation.
pub struct ClientIo<S> {
    inner: S,
    watch: Arc<ConnWatch>,
    /// `started` when the connection was last seen quiet.
    quiet_at: u64,
    /// The replacement answer has been made: nothing more to look for.
    done: bool,
    /// Bytes read before the connection was parked (a part of the next
    /// request head), given to hyper before anything new.
    replay: Bytes,
    /// Replacement bytes not yet written, from `pending_at`.
    pending: Vec<u8>,
    pending_at: usize,
    /// Where a small vectored write is gathered ([`gather_write`]); its
    /// capacity is kept, at most [`GATHER_MAX`].
    flat: Vec<u8>,
}

impl<S> ClientIo<S> {
    pub fn new(inner: S, watch: Arc<ConnWatch>) -> Self {
        Self::resume(inner, watch, Bytes::new())
    }

    /// The stream of a parked connection, served again: no response is in
    /// progress, and `replay` (hyper's unread bytes when it was parked) is
    /// read first.
    pub fn resume(inner: S, watch: Arc<ConnWatch>, replay: Bytes) -> Self {
        ClientIo {
            inner,
            quiet_at: watch.started.load(Ordering::Relaxed),
            watch,
            done: false,
            replay,
            pending: Vec::new(),
            pending_at: 0,
            flat: Vec::new(),
        }
    }

    /// The stream, for parking; what is buffered here goes.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// No response of the service can be in what hyper writes next.
    #[inline]
    fn quiet(&self) -> bool {
        !self.done
            && self.watch.started.load(Ordering::Relaxed) == self.quiet_at
            && self.watch.open.load(Ordering::Relaxed) == 0
            && !self.watch.upgraded.load(Ordering::Relaxed)
    }
}

impl<S: AsyncWrite + Unpin> ClientIo<S> {
    /// Write out what is left of the replacement answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pending_at < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.pending_at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending_at += n;
        }
        if !self.pending.is_empty() {
            self.pending = Vec::new();
            self.pending_at = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// If `buf` starts with hyper's automatic answer on a quiet connection,
    /// take it (the replacement goes out instead) and say how many bytes of
    /// `buf` were taken.
    #[inline]
    fn take_automatic(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Option<io::Result<usize>> {
        if !maybe_automatic(buf) || !self.quiet() {
            return None;
        }
        let (taken, replacement) = replace_automatic(buf)?;
        self.done = true;
        self.pending = replacement;
        self.pending_at = 0;
        match self.poll_pending(cx) {
            Poll::Ready(Err(e)) => Some(Err(e)),
            // What is left goes out on the next write, flush or shutdown.
            Poll::Ready(Ok(())) | Poll::Pending => Some(Ok(taken)),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ClientIo<S> {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.replay.is_empty() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay[..n]);
            this.replay.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ClientIo<S> {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.watch.flushed.store(false, Ordering::Relaxed);
        ready!(this.poll_pending(cx))?;
        if let Some(r) = this.take_automatic(cx, buf) {
            return Poll::Ready(r);
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.watch.flushed.store(false, Ordering::Relaxed);
        ready!(this.poll_pending(cx))?;
        // The slices before the first non-empty one hold nothing: a head
        // at its start is at the start of the write.
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            if let Some(r) = this.take_automatic(cx, first) {
                return Poll::Ready(r);
            }
        }
        gather_write(Pin::new(&mut this.inner), cx, bufs, &mut this.flat)
    }

    #[inline]
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        // hyper flushes only when everything it buffered has been written to
        // us: if no response is open, none of the service's bytes can follow.
        let started = this.watch.started.load(Ordering::Relaxed);
        if this.watch.open.load(Ordering::Relaxed) == 0 {
            this.quiet_at = started;
        }
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        this.watch.flushed.store(true, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// Vectored writes up to this size go out as one plain write.
const GATHER_MAX: usize = 4096;

/// Write `bufs` to `io`: a small write of several slices (hyper's head and
/// a small body) is copied into `flat` and sent with one `send`, a
/// cheaper system call than `writev` (which goes through the file layer:
/// position lock, iovec import, fsnotify). Measured under load: about 2 %
/// of the proxy's CPU. A large write keeps `writev`, where copying would
/// cost more than it saves.
#[inline]
fn gather_write<S: AsyncWrite + Unpin>(
    io: Pin<&mut S>,
    cx: &mut Context<'_>,
    bufs: &[io::IoSlice<'_>],
    flat: &mut Vec<u8>,
) -> Poll<io::Result<usize>> {
    let mut total = 0;
    let mut slices = 0;
    for b in bufs {
        total += b.len();
        slices += usize::from(!b.is_empty());
    }
    if slices < 2 || total > GATHER_MAX {
        return io.poll_write_vectored(cx, bufs);
    }
    flat.clear();
    for b in bufs {
        flat.extend_from_slice(b);
    }
    io.poll_write(cx, flat)
}

/// The cheap first test: an HTTP/1 status line with a 4xx status.
#[inline]
fn maybe_automatic(buf: &[u8]) -> bool {
    buf.len() > 16 && buf[9] == b'4' && buf.starts_with(b"HTTP/1.")
}

const CONTENT_LENGTH_0: &[u8] = b"content-length: 0\r\n";

/// If `buf` starts with a head exactly as hyper writes its automatic answer
/// (status line of 400, 414 or 431 with its canonical reason, then
/// `content-length: 0` first, or second after hyper's own `connection`
/// field), the length of that head and the answer to write instead, which
/// keeps the fields after `content-length` (`date`).
fn replace_automatic(buf: &[u8]) -> Option<(usize, Vec<u8>)> {
    if !buf.starts_with(b"HTTP/1.") || !matches!(buf.get(7..9)?, b"0 " | b"1 ") {
        return None;
    }
    let (status, err) = match buf.get(9..13)? {
        b"400 " => (StatusCode::BAD_REQUEST, ProxyError::BadRequest("")),
        b"414 " => (StatusCode::URI_TOO_LONG, ProxyError::UriTooLong),
        b"431 " => (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::HeaderTooLarge,
        ),
        _ => return None,
    };
    let reason = status.canonical_reason()?.as_bytes();
    let line_end = 13 + reason.len() + 2;
    if buf.get(13..line_end - 2)? != reason || buf.get(line_end - 2..line_end)? != b"\r\n" {
        return None;
    }
    // hyper puts the `connection` field it adds itself first.
    let rest = &buf[line_end..];
    let length_at = line_end
        + [&b"connection: close\r\n"[..], b"connection: keep-alive\r\n"]
            .iter()
            .find(|c| rest.starts_with(c))
            .map_or(0, |c| c.len());
    let fields_at = length_at + CONTENT_LENGTH_0.len();
    if buf.get(length_at..fields_at)? != CONTENT_LENGTH_0 {
        return None;
    }
    // The head ends at the first empty line; `content-length` may be its
    // last field.
    let head_end = fields_at
        + buf[fields_at - 2..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")?
        + 2;
    let (_, text, _) = status_of(&err);
    let mut out = Vec::with_capacity(head_end + 128 + text.len());
    out.extend_from_slice(&buf[..line_end]);
    out.extend_from_slice(
        b"content-type: text/plain; charset=utf-8\r\ncache-control: no-store\r\nconnection: close\r\ncontent-length: ",
    );
    out.extend_from_slice(text.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&buf[fields_at..head_end]);
    out.extend_from_slice(text.as_bytes());
    Some((head_end, out))
}

#[cfg(test)]
mod tests;
