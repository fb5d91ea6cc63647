//! The bodies an upstream request may carry: the client's own, the
//! client's recorded for a copy as it streams ([`Tee`]), or a copy's
//! ([`CopiedBody`]), sent from what was recorded.
//!
//! A recorded body is held once: the copy keeps the same [`Bytes`] the
//! client's request was read into (reference counted), never a second
//! buffer, and a body that grows past its limit is let go of at once.
//!
//! It lives in `upstream` because the upstream clients send these bodies;
//! deciding what is copied is `routing::mirror`, sending the copy
//! `proxy::mirror`.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::oneshot;

/// A recorded request body: its pieces, in order.
pub type Recorded = Arc<[Bytes]>;

/// What an upstream request carries.
pub enum RequestBody {
    /// The client's body, streamed.
    Client(Incoming),
    /// The client's body, streamed and recorded for a copy.
    Teed(Incoming, Box<Tee>),
    /// A copy's body.
    Copy(CopiedBody),
}

impl From<Incoming> for RequestBody {
    fn from(b: Incoming) -> Self {
        RequestBody::Client(b)
    }
}

/// Records the pieces of a body passing through, up to `limit` bytes; the
/// whole body goes to the receiver when it ends. Past the limit, or when
/// the body fails or is dropped before its end, the receiver gets nothing.
pub struct Tee {
    pieces: Vec<Bytes>,
    len: u64,
    limit: u64,
    done: Option<oneshot::Sender<Recorded>>,
}

impl Tee {
    pub fn new(limit: u64) -> (Box<Tee>, oneshot::Receiver<Recorded>) {
        let (tx, rx) = oneshot::channel();
        let tee = Tee {
            pieces: Vec::new(),
            len: 0,
            limit,
            done: Some(tx),
        };
        (Box::new(tee), rx)
    }

    fn piece(&mut self, data: &Bytes) {
        if self.done.is_none() {
            return;
        }
        self.len += data.len() as u64;
        if self.len > self.limit {
            self.done = None;
            self.pieces = Vec::new();
        } else if !data.is_empty() {
            self.pieces.push(data.clone());
        }
    }

    fn end(&mut self) {
        if let Some(tx) = self.done.take() {
            let pieces: Recorded = std::mem::take(&mut self.pieces).into();
            // The copy may have been given up already: nothing to do then.
            let _ignored = tx.send(pieces);
        }
    }

    fn fail(&mut self) {
        self.done = None;
        self.pieces = Vec::new();
    }
}

/// A copy's body: the recorded pieces, shared with every other copy of
/// the same request.
pub struct CopiedBody {
    pieces: Recorded,
    next: usize,
    left: u64,
}

impl CopiedBody {
    pub fn new(pieces: Recorded) -> Self {
        let left = pieces.iter().map(|b| b.len() as u64).sum();
        CopiedBody {
            pieces,
            next: 0,
            left,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Client(b) => Pin::new(b).poll_frame(cx),
            RequestBody::Teed(b, tee) => {
                let r = Pin::new(&mut *b).poll_frame(cx);
                match &r {
                    Poll::Ready(Some(Ok(f))) => {
                        if let Some(data) = f.data_ref() {
                            tee.piece(data);
                        }
                        if b.is_end_stream() {
                            tee.end();
                        }
                    }
                    Poll::Ready(None) => tee.end(),
                    Poll::Ready(Some(Err(_))) => tee.fail(),
                    Poll::Pending => {}
                }
                r
            }
            RequestBody::Copy(c) => {
                let Some(piece) = c.pieces.get(c.next) else {
                    return Poll::Ready(None);
                };
                c.next += 1;
                c.left -= piece.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(piece.clone()))))
            }
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Client(b) | RequestBody::Teed(b, _) => b.is_end_stream(),
            RequestBody::Copy(c) => c.next >= c.pieces.len(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Client(b) | RequestBody::Teed(b, _) => b.size_hint(),
            RequestBody::Copy(c) => SizeHint::with_exact(c.left),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn a_tee_hands_over_the_same_bytes_once_the_body_ends() {
        let (mut tee, mut rx) = Tee::new(10);
        let first = b("hello");
        tee.piece(&first);
        tee.piece(&b(" you"));
        assert!(rx.try_recv().is_err());
        tee.end();
        let got = rx.try_recv().unwrap();
        assert_eq!(got.len(), 2);
        // Held once: the copy points at the client's buffer.
        assert_eq!(got[0].as_ptr(), first.as_ptr());
        let mut body = RequestBody::Copy(CopiedBody::new(got));
        assert_eq!(body.size_hint().exact(), Some(9));
        let mut out = Vec::new();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        while let Poll::Ready(Some(Ok(f))) = Pin::new(&mut body).poll_frame(&mut cx) {
            out.extend_from_slice(&f.into_data().unwrap());
        }
        assert_eq!(out, b"hello you");
        assert!(body.is_end_stream());
        let empty = RequestBody::Copy(CopiedBody::new(Arc::from(Vec::<Bytes>::new())));
        assert!(empty.is_end_stream());
    }

    #[test]
    fn a_body_past_the_limit_or_broken_is_let_go() {
        let (mut tee, mut rx) = Tee::new(4);
        tee.piece(&b("abc"));
        tee.piece(&b("de"));
        assert!(tee.pieces.is_empty());
        tee.end();
        assert!(rx.try_recv().is_err());
        let (mut tee, mut rx) = Tee::new(4);
        tee.piece(&b("ab"));
        tee.fail();
        tee.end();
        assert!(rx.try_recv().is_err());
        let (tee, mut rx) = Tee::new(4);
        drop(tee);
        assert!(rx.try_recv().is_err());
    }
}
