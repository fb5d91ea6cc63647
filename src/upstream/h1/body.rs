//! A response body read straight from its connection, framed by length,
//! by `chunked` coding or by the end of the stream; it hands the connection
//! back once read whole.
//!
//! It owns [`Framing`] and the body's end-of-stream and error rules. It
//! must not parse the head (that chose the framing: [`super::head`]) nor
//! decode chunks itself ([`super::chunked`]).

use super::chunked::{step_chunked, ChunkState, Step};
use super::conn::H1Conn;
use super::H1Error;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

/// How the response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// This many bytes are left.
    Length(u64),
    Chunked(ChunkState),
    /// At the end of the stream.
    Close,
}

/// A response body read straight from its connection.
pub struct H1Body {
    pub(super) conn: Option<Box<H1Conn>>,
    pub(super) framing: Framing,
    pub(super) keep_alive: bool,
    pub(super) done: bool,
    /// An error held back for one poll (see `poll_frame`).
    pub(super) broken: Option<H1Error>,
}

impl H1Body {
    /// The connection, when the body has been read whole and it may carry
    /// another request.
    pub fn take_conn(&mut self) -> Option<Box<H1Conn>> {
        if self.done && self.keep_alive {
            self.conn.take().filter(|c| c.buf.is_empty())
        } else {
            None
        }
    }
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = H1Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        let this = self.get_mut();
        if let Some(e) = this.broken.take() {
            return Poll::Ready(Some(Err(e)));
        }
        if this.done {
            return Poll::Ready(None);
        }
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        let r = poll_body(conn, &mut this.framing, cx);
        match &r {
            Poll::Ready(None) => this.done = true,
            Poll::Ready(Some(Ok(f))) => {
                if f.is_trailers() || matches!(this.framing, Framing::Length(0)) {
                    this.done = true;
                }
            }
            Poll::Ready(Some(Err(_))) => {
                this.conn = None;
                // hyper gathers what comes without a pause (the head, frames)
                // and may drop it unwritten on an error: pause once so what
                // the client was already promised goes out first.
                if let Poll::Ready(Some(Err(e))) = r {
                    this.broken = Some(e);
                }
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

/// Poll for more of the buffer, mapping the end of the stream to `eof`.
macro_rules! fill_or {
    ($conn:expr, $cx:expr, $eof:expr) => {
        match $conn.poll_fill($cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(0)) => return $eof,
            Poll::Ready(Ok(_)) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(H1Error::Io(e)))),
        }
    };
}

fn poll_body(
    conn: &mut H1Conn,
    framing: &mut Framing,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
    loop {
        match *framing {
            Framing::Length(0) => return Poll::Ready(None),
            Framing::Length(left) => {
                if conn.buf.is_empty() {
                    fill_or!(conn, cx, Poll::Ready(Some(Err(H1Error::Closed))));
                }
                let take = (conn.buf.len() as u64).min(left);
                let data = conn.buf.split_to(take as usize).freeze();
                *framing = Framing::Length(left - take);
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            Framing::Close => {
                if conn.buf.is_empty() {
                    fill_or!(conn, cx, Poll::Ready(None));
                }
                let data = conn.buf.split().freeze();
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            Framing::Chunked(state) => {
                match step_chunked(&mut conn.buf, state)? {
                    Step::Frame(next, frame) => {
                        *framing = Framing::Chunked(next);
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    Step::Next(next) => {
                        *framing = Framing::Chunked(next);
                        continue;
                    }
                    Step::End(trailers) => {
                        *framing = Framing::Length(0);
                        return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
                    }
                    Step::More => {}
                }
                fill_or!(conn, cx, Poll::Ready(Some(Err(H1Error::Closed))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::h1::chunked::ChunkState;
    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;

    fn body_over(framing: Framing, keep_alive: bool) -> (H1Body, tokio::io::DuplexStream) {
        let (ours, theirs) = tokio::io::duplex(1024);
        let body = H1Body {
            conn: Some(Box::new(H1Conn::new(Box::new(ours)))),
            framing,
            keep_alive,
            done: false,
            broken: None,
        };
        (body, theirs)
    }

    #[tokio::test]
    async fn a_length_body_ends_at_its_length_and_gives_its_connection_back() {
        let (mut body, mut up) = body_over(Framing::Length(11), true);
        assert_eq!(body.size_hint().exact(), Some(11));
        up.write_all(b"hello ").await.unwrap();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"hello ");
        assert!(body.take_conn().is_none(), "offered before the end");
        up.write_all(b"world").await.unwrap();
        let rest = BodyExt::collect(&mut body).await.unwrap().to_bytes();
        assert_eq!(&rest[..], b"world");
        assert!(body.is_end_stream());
        assert!(body.take_conn().is_some());
    }

    #[tokio::test]
    async fn a_chunked_body_keeps_its_trailers() {
        let (mut body, mut up) = body_over(Framing::Chunked(ChunkState::Size), true);
        up.write_all(b"5\r\nhello\r\n0\r\nx-sum: 5\r\n\r\n")
            .await
            .unwrap();
        let all = BodyExt::collect(&mut body).await.unwrap();
        assert_eq!(all.trailers().unwrap()["x-sum"], "5");
        assert_eq!(&all.to_bytes()[..], b"hello");
        assert!(body.take_conn().is_some());
    }

    #[tokio::test]
    async fn a_close_delimited_body_ends_when_the_upstream_closes() {
        let (mut body, mut up) = body_over(Framing::Close, false);
        up.write_all(b"until the end").await.unwrap();
        drop(up);
        let all = BodyExt::collect(&mut body).await.unwrap().to_bytes();
        assert_eq!(&all[..], b"until the end");
        assert!(body.take_conn().is_none());
    }

    #[tokio::test]
    async fn a_short_or_overlong_body_does_not_give_its_connection_back() {
        let (mut body, mut up) = body_over(Framing::Length(10), true);
        up.write_all(b"short").await.unwrap();
        drop(up);
        let err = BodyExt::collect(&mut body).await.unwrap_err();
        assert!(matches!(err, H1Error::Closed), "{err}");
        assert!(body.take_conn().is_none());

        // Bytes after the body: the connection's next response is unknown.
        let (mut body, mut up) = body_over(Framing::Length(2), true);
        up.write_all(b"okEXTRA").await.unwrap();
        let all = BodyExt::collect(&mut body).await.unwrap().to_bytes();
        assert_eq!(&all[..], b"ok");
        assert!(body.take_conn().is_none());
    }

    #[tokio::test]
    async fn broken_chunking_is_a_protocol_error() {
        let (mut body, mut up) = body_over(Framing::Chunked(ChunkState::Size), true);
        up.write_all(b"zz\r\n").await.unwrap();
        let err = BodyExt::collect(&mut body).await.unwrap_err();
        assert!(err.is_protocol(), "{err}");
        assert!(body.take_conn().is_none());
    }
}
