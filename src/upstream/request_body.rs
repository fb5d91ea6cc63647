//! The client's request body on its way to the upstream, streamed frame by
//! frame, with `timeouts.client_body`: the longest pause allowed between
//! two pieces of it (the first counts from when the upstream connection
//! starts to read it).
//!
//! `timeouts.request` is the upstream's time to answer once it has the
//! whole request; while the client is still uploading, the clock is the
//! client's ([`BodyFate::upstream_deadline`]). A client that stalls
//! mid-body would otherwise hold the upstream's request open and have it
//! blamed on the upstream (504).
//! Here the body fails with [`ClientBodyError::Stalled`] instead: hyper
//! aborts the upstream request, and the handler answers 408 and blames
//! nobody. What happened to the body is also kept in a [`BodyFate`] the
//! handler holds, because an HTTP/2 upstream connection reports a failed
//! request body as a reset of its stream, not as the body's own error.
//!
//! A request without a body costs nothing here: no timer, no allocation.
//!
//! It lives in `upstream` because the upstream clients (`connector`, `h1`)
//! send it; the proxy's handler wraps the client's body in it. It must not
//! know about routing or the proxy's answers.

use crate::upstream::copied::RequestBody;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a client's request body ended before its end.
#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    /// Bad framing, or the client went away mid-upload.
    #[error("reading the request body failed: {0}")]
    Read(#[source] BoxError),
    #[error("the client sent nothing of its request body for {0:?}")]
    Stalled(Duration),
}

const FATE_WHOLE: u8 = 0;
const FATE_BROKEN: u8 = 1;
const FATE_STALLED: u8 = 2;

/// What happened to one request body, for the handler to read after the
/// upstream exchange failed, and when it was read whole: the upstream's
/// time to answer (`timeouts.request`) counts from then.
///
/// Times are [`crate::clock::ms_at`] milliseconds, plus one so that 0 can
/// mean "not yet".
#[derive(Debug, Default)]
pub struct BodyFate {
    fate: AtomicU8,
    /// When the body was read whole.
    ended: AtomicU64,
    /// When the last piece of it was handed on.
    last_frame: AtomicU64,
    /// The sender asked for more and the client has not sent it yet.
    waiting_on_client: AtomicBool,
}

fn clock_ms() -> u64 {
    crate::clock::ms_at(Instant::now().into_std()) + 1
}

impl BodyFate {
    fn set(&self, fate: u8) {
        self.fate.store(fate, Ordering::Release);
    }

    fn framed(&self, last: bool) {
        let now = clock_ms();
        self.waiting_on_client.store(false, Ordering::Relaxed);
        self.last_frame.store(now, Ordering::Relaxed);
        if last {
            self.end_at(now);
        }
    }

    fn end_at(&self, now: u64) {
        if self.ended.load(Ordering::Relaxed) == 0 {
            self.ended.store(now, Ordering::Release);
        }
    }

    /// When the body was read whole, if it was.
    pub fn ended_at_ms(&self) -> Option<u64> {
        self.ended.load(Ordering::Acquire).checked_sub(1)
    }

    /// `timeouts.request` (`limit` ms) is the upstream's time to answer once
    /// it has the whole request, not the client's time to upload it. At
    /// `now`, past the deadline counted from the request's start: `None` if
    /// the upstream is late, else the later deadline to wait for.
    ///
    /// - Read whole: the limit counts from then.
    /// - The client owes the next piece: not the upstream's fault; the
    ///   client's own limit (`timeouts.client_body`) ends it if it stalls.
    /// - The upstream has not taken a piece for the whole limit (it stopped
    ///   reading): late.
    pub fn upstream_deadline(&self, now: u64, limit: u64) -> Option<u64> {
        if let Some(ended) = self.ended_at_ms() {
            let due = ended.saturating_add(limit);
            return (due > now).then_some(due);
        }
        if self.waiting_on_client.load(Ordering::Relaxed) {
            return Some(now.saturating_add(limit));
        }
        let last = self.last_frame.load(Ordering::Relaxed).checked_sub(1)?;
        let due = last.saturating_add(limit);
        (due > now).then_some(due)
    }

    /// The body broke on the client's side (bad framing, a client gone).
    pub fn broken(&self) -> bool {
        self.fate.load(Ordering::Acquire) == FATE_BROKEN
    }

    /// The client paused longer than `timeouts.client_body`.
    pub fn stalled(&self) -> bool {
        self.fate.load(Ordering::Acquire) == FATE_STALLED
    }

    /// Either: the client's fault, not the upstream's.
    pub fn failed(&self) -> bool {
        self.fate.load(Ordering::Acquire) != FATE_WHOLE
    }
}

/// A client's request body with an idle timeout; see the module docs.
pub struct ClientBody<B = RequestBody> {
    inner: B,
    idle: Duration,
    /// Made at the first wait, pushed back after each frame.
    timer: Option<Pin<Box<Sleep>>>,
    /// A frame came since the timer was last set.
    progressed: bool,
    /// Known to be at its end: asking the client's body again (for an
    /// HTTP/2 client, a lock on its connection) is spared.
    ended: bool,
    fate: Option<Arc<BodyFate>>,
}

impl<B: Body> ClientBody<B> {
    /// `inner` with at most `idle` between frames.
    pub fn new(inner: B, idle: Duration) -> Self {
        let fate = (!inner.is_end_stream()).then(Arc::default);
        ClientBody {
            inner,
            idle,
            timer: None,
            progressed: false,
            ended: fate.is_none(),
            fate,
        }
    }

    /// What happened to the body; `None` for a request without one.
    pub fn fate(&self) -> Option<Arc<BodyFate>> {
        self.fate.clone()
    }

    fn fail(&self, fate: u8) {
        if let Some(f) = &self.fate {
            f.set(fate);
        }
    }

    fn framed(&self, last: bool) {
        if let Some(f) = &self.fate {
            f.framed(last);
        }
    }
}

impl<B> Body for ClientBody<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, ClientBodyError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.progressed = true;
                // A sender (hyper's HTTP/2 client) may stop at the last
                // frame without asking for the end.
                this.ended = this.inner.is_end_stream();
                this.framed(this.ended);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.fail(FATE_BROKEN);
                Poll::Ready(Some(Err(ClientBodyError::Read(e.into()))))
            }
            Poll::Ready(None) => {
                this.ended = true;
                if let Some(f) = &this.fate {
                    f.end_at(clock_ms());
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                if let Some(f) = &this.fate {
                    f.waiting_on_client.store(true, Ordering::Relaxed);
                }
                let timer = match &mut this.timer {
                    Some(t) => {
                        if this.progressed {
                            t.as_mut().reset(Instant::now() + this.idle);
                        }
                        t
                    }
                    None => this.timer.insert(Box::pin(tokio::time::sleep(this.idle))),
                };
                this.progressed = false;
                if timer.as_mut().poll(cx).is_ready() {
                    this.fail(FATE_STALLED);
                    return Poll::Ready(Some(Err(ClientBodyError::Stalled(this.idle))));
                }
                Poll::Pending
            }
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use std::convert::Infallible;
    use tokio::sync::mpsc;

    /// A body fed by hand, frame by frame.
    struct Fed(mpsc::Receiver<Bytes>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    fn fed(idle: Duration) -> (mpsc::Sender<Bytes>, ClientBody<Fed>) {
        let (tx, rx) = mpsc::channel(4);
        (tx, ClientBody::new(Fed(rx), idle))
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_shorter_than_the_limit_are_fine_however_long_the_body() {
        let (tx, mut body) = fed(Duration::from_secs(30));
        let fate = body.fate().expect("a body");
        let feeder = tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(29)).await;
                tx.send(Bytes::from_static(b"x")).await.unwrap();
            }
        });
        let mut got = 0;
        while let Some(frame) = body.frame().await {
            got += frame.expect("no timeout").into_data().unwrap().len();
        }
        feeder.await.unwrap();
        assert_eq!(got, 10);
        assert!(!fate.failed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_past_the_limit_fails_the_body_as_stalled() {
        let (tx, mut body) = fed(Duration::from_secs(30));
        let fate = body.fate().expect("a body");
        tx.send(Bytes::from_static(b"0123456789")).await.unwrap();
        let started = Instant::now();
        assert!(body.frame().await.unwrap().is_ok());
        match body.frame().await {
            Some(Err(ClientBodyError::Stalled(d))) => assert_eq!(d, Duration::from_secs(30)),
            other => panic!("expected a stall, got {:?}", other.map(|r| r.is_ok())),
        }
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert!(fate.stalled() && fate.failed() && !fate.broken());
        drop(tx);
    }

    fn ms() -> u64 {
        crate::clock::ms_at(Instant::now().into_std())
    }

    #[tokio::test(start_paused = true)]
    async fn the_upstreams_time_counts_from_the_end_of_the_body() {
        // The paused clock starts at the real time this test began; other
        // tests may have started the process's millisecond clock a little
        // later, and times before its start read as 0. An hour on, they
        // cannot have.
        tokio::time::advance(Duration::from_secs(3600)).await;
        let limit = 1_000;
        let (tx, mut body) = fed(Duration::from_secs(30));
        let fate = body.fate().expect("a body");
        // Nothing of the body was taken yet, and nobody waits on the
        // client: the upstream has not read it, so it is late.
        assert_eq!(fate.upstream_deadline(ms(), limit), None);
        // Waiting on the client: not the upstream's fault; look again a
        // whole limit later.
        let mut next = Box::pin(body.frame());
        assert!(futures_util::poll!(next.as_mut()).is_pending());
        let now = ms();
        assert_eq!(fate.upstream_deadline(now, limit), Some(now + limit));
        // A piece came and was taken: the upstream is reading.
        tx.send(Bytes::from_static(b"abc")).await.unwrap();
        assert!(next.await.unwrap().is_ok());
        let taken = ms();
        tokio::time::advance(Duration::from_millis(600)).await;
        assert_eq!(fate.upstream_deadline(ms(), limit), Some(taken + limit));
        // ... and then stopped taking them for the whole limit: late.
        tokio::time::advance(Duration::from_millis(600)).await;
        assert_eq!(fate.upstream_deadline(ms(), limit), None);
        assert_eq!(fate.ended_at_ms(), None);
        // The end: the limit counts from it.
        drop(tx);
        assert!(body.frame().await.is_none());
        let ended = fate.ended_at_ms().expect("read whole");
        assert_eq!(ended, ms());
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(fate.upstream_deadline(ms(), limit), Some(ended + limit));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(fate.upstream_deadline(ms(), limit), None);
    }

    #[tokio::test]
    async fn a_request_without_a_body_has_no_fate_to_keep() {
        let body = ClientBody::new(
            http_body_util::Empty::<Bytes>::new(),
            Duration::from_secs(1),
        );
        assert!(body.fate().is_none());
        assert!(body.is_end_stream());
    }

    /// One piece, then its end; counts how often it is asked whether it is
    /// at its end (for an HTTP/2 client, each ask takes a lock).
    struct OnePiece {
        piece: Option<Bytes>,
        asked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Body for OnePiece {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.piece.take().map(|b| Ok(Frame::data(b))))
        }
        fn is_end_stream(&self) -> bool {
            self.asked.fetch_add(1, Ordering::Relaxed);
            self.piece.is_none()
        }
    }

    #[tokio::test]
    async fn a_body_seen_at_its_end_is_not_asked_again() {
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let inner = OnePiece {
            piece: Some(Bytes::from_static(b"call")),
            asked: asked.clone(),
        };
        let mut body = ClientBody::new(inner, Duration::from_secs(1));
        assert!(!body.is_end_stream());
        let frame = body.frame().await.expect("a frame").expect("no error");
        assert_eq!(frame.into_data().ok(), Some(Bytes::from_static(b"call")));
        let before = asked.load(Ordering::Relaxed);
        assert!(body.is_end_stream());
        assert!(body.is_end_stream());
        assert_eq!(asked.load(Ordering::Relaxed), before, "asked again");
        assert!(body.fate().expect("a body").ended_at_ms().is_some());
    }
}
