//! The client's request body on its way to the upstream, streamed frame by
//! frame, with `timeouts.client_body`: the longest pause allowed between
//! two pieces of it (the first counts from when the upstream connection
//! starts to read it).
//!
//! A client that stalls mid-body would otherwise hold the upstream's request
//! open until `timeouts.request` and have it blamed on the upstream (504).
//! Here the body fails with [`ClientBodyError::Stalled`] instead: hyper
//! aborts the upstream request, and the handler answers 408 and blames
//! nobody. What happened to the body is also kept in a [`BodyFate`] the
//! handler holds, because an HTTP/2 upstream connection reports a failed
//! request body as a reset of its stream, not as the body's own error.
//!
//! A request without a body costs nothing here: no timer, no allocation.

use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
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
/// upstream exchange failed.
#[derive(Debug, Default)]
pub struct BodyFate(AtomicU8);

impl BodyFate {
    fn set(&self, fate: u8) {
        self.0.store(fate, Ordering::Release);
    }

    /// The body broke on the client's side (bad framing, a client gone).
    pub fn broken(&self) -> bool {
        self.0.load(Ordering::Acquire) == FATE_BROKEN
    }

    /// The client paused longer than `timeouts.client_body`.
    pub fn stalled(&self) -> bool {
        self.0.load(Ordering::Acquire) == FATE_STALLED
    }

    /// Either: the client's fault, not the upstream's.
    pub fn failed(&self) -> bool {
        self.0.load(Ordering::Acquire) != FATE_WHOLE
    }
}

/// A client's request body with an idle timeout; see the module docs.
pub struct ClientBody<B = Incoming> {
    inner: B,
    idle: Duration,
    /// Made at the first wait, pushed back after each frame.
    timer: Option<Pin<Box<Sleep>>>,
    /// A frame came since the timer was last set.
    progressed: bool,
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
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.fail(FATE_BROKEN);
                Poll::Ready(Some(Err(ClientBodyError::Read(e.into()))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
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
        self.inner.is_end_stream()
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

    #[tokio::test]
    async fn a_request_without_a_body_has_no_fate_to_keep() {
        let body = ClientBody::new(
            http_body_util::Empty::<Bytes>::new(),
            Duration::from_secs(1),
        );
        assert!(body.fate().is_none());
        assert!(body.is_end_stream());
    }
}
