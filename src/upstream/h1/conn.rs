//! One HTTP/1.1 connection to an upstream: sending a request (head, then
//! body, batched), reading into its buffer, reading the response head, and
//! the rules for when it may carry another request.
//!
//! It owns the socket and its read buffer. It must not parse bytes itself
//! (that is [`super::head`] and [`super::chunked`]), nor encode the head
//! ([`super::encode`]), nor pool connections (the connector does).

use super::body::{Framing, H1Body};
use super::encode::{encode_head, hex_len, says_chunked};
use super::head::parse_head;
use super::{BoxError, H1Error};
use crate::upstream::connector::UpstreamIo;
use crate::upstream::request_body::ClientBody;
use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response, Version};
use http_body::{Body, Frame};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

/// A connection's first read buffer: room for a small answer's head and
/// body. A request waits for its answer with it allocated, so it is what
/// each request in flight costs here: with 1000 requests waiting on a 20 ms
/// upstream, a 16 KiB buffer apiece (the size before) peaked ~3 MiB higher
/// than this one (a fresh buffer is resident only as far as it is
/// written, but a page at least, and a 2 KiB one shares its page).
const READ_FIRST: usize = 2 * 1024;
/// Read size for large bodies, in few reads: a read that fills the buffer
/// doubles the next one's size, up to this.
const READ_CHUNK: usize = 16 * 1024;
/// How long an upstream that stopped reading the request body is given to
/// have its answer read (an early 413 sent before it closed).
const EARLY_ANSWER_WAIT: std::time::Duration = std::time::Duration::from_millis(200);
/// Request body bytes gathered before a write.
const WRITE_BATCH: usize = 64 * 1024;
/// A request body piece at least this large is written as it is, not
/// copied into the batch: a streamed upload arrives in pieces as large as
/// the client side read them (up to hyper's buffer, 72 KiB), and copying
/// each into `wbuf` cost a copy of the whole body and kept a 64 KiB `wbuf`
/// on every pooled connection that ever carried one.
const WRITE_DIRECT: usize = WRITE_BATCH / 2;
/// `wbuf`'s capacity kept between requests; more (after a body sent in
/// small pieces) is given back once the body is written.
const WBUF_KEEP: usize = 4 * 1024;

/// An HTTP/1.1 connection to an upstream endpoint.
pub struct H1Conn {
    io: Box<dyn UpstreamIo>,
    /// Bytes read and not yet consumed.
    pub(super) buf: BytesMut,
    /// The request head being written (kept for its capacity).
    wbuf: Vec<u8>,
    /// Exchanges begun on it.
    served: u32,
    /// What the next read reserves room for (from [`READ_FIRST`] up to
    /// [`READ_CHUNK`]).
    read_size: usize,
}

/// A failed send: the error, and the request when none of it was written
/// on a connection that had carried others (a stale keep-alive connection),
/// so it may be sent again elsewhere.
pub struct SendError {
    pub error: H1Error,
    pub unsent: Option<Request<ClientBody>>,
}

impl H1Conn {
    pub fn new(io: Box<dyn UpstreamIo>) -> Self {
        H1Conn {
            io,
            // Allocated at the first read, once the request is written.
            buf: BytesMut::new(),
            wbuf: Vec::with_capacity(1024),
            served: 0,
            read_size: READ_FIRST,
        }
    }

    /// Its byte stream, for hyper to take over (an upgrade). None when bytes
    /// are already buffered (never for an idle connection).
    pub fn into_io(self) -> Option<Box<dyn UpstreamIo>> {
        self.buf.is_empty().then_some(self.io)
    }

    /// An idle connection is fit to carry a request: the upstream has not
    /// closed it and sent nothing unasked. Costs no system call when the
    /// socket has nothing to read (tokio remembers it was drained).
    pub fn is_idle_usable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut byte = [0u8; 1];
        let mut rb = ReadBuf::new(&mut byte);
        matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut rb),
            Poll::Pending
        )
    }

    /// Send `req` and read the response head. The response's body owns the
    /// connection and offers it back ([`H1Body::take_conn`]) when read whole.
    ///
    /// The head is encoded before the future is made, and the future uses
    /// what it captured in place (an `async fn` would hold the request twice).
    pub fn send(
        mut self: Box<Self>,
        mut req: Request<ClientBody>,
    ) -> impl Future<Output = Result<Response<H1Body>, SendError>> + Send + 'static {
        let reused = self.served > 0;
        self.served += 1;
        let head_only = req.body().is_end_stream();
        let is_head = req.method() == Method::HEAD;
        encode_head(&mut self.wbuf, &req);
        let mut conn = self;
        async move {
            if head_only {
                if let Err(e) = conn.io.write_all(&conn.wbuf).await {
                    // Nothing of a request without a body reached a stale
                    // connection that refuses writes: it may go elsewhere.
                    let unsent = reused.then_some(req);
                    return Err(SendError {
                        error: H1Error::Io(e),
                        unsent,
                    });
                }
            } else if let Err(error) = conn.write_body(req.body_mut()).await {
                // An upstream may answer before reading the whole body (an early
                // 413) and stop reading: if that answer is already here, it is
                // the client's, not a 502.
                if matches!(error, H1Error::Io(_)) {
                    drop(req);
                    return match conn.early_answer(is_head).await {
                        Some(resp) => Ok(resp),
                        None => Err(SendError {
                            error,
                            unsent: None,
                        }),
                    };
                }
                return Err(SendError {
                    error,
                    unsent: None,
                });
            }
            drop(req);
            conn.read_head(is_head).await.map_err(|error| SendError {
                error,
                unsent: None,
            })
        }
    }

    /// The head (already in `wbuf`) and the body, chunked when the head says
    /// so, batched while the client's body has more ready.
    async fn write_body(&mut self, body: &mut ClientBody) -> Result<(), H1Error> {
        let chunked = says_chunked(&self.wbuf);
        loop {
            let frame = match futures_util::FutureExt::now_or_never(body_frame(body)) {
                Some(f) => f,
                None => {
                    // Nothing ready: what is gathered goes now.
                    self.flush_wbuf().await?;
                    body_frame(body).await
                }
            };
            match frame {
                None => break,
                Some(Err(e)) => return Err(H1Error::ClientBody(e)),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        if data.is_empty() {
                            continue;
                        }
                        if chunked {
                            let mut hex = [0u8; 16];
                            self.wbuf.extend_from_slice(hex_len(data.len(), &mut hex));
                            self.wbuf.extend_from_slice(b"\r\n");
                        }
                        if data.len() >= WRITE_DIRECT || self.wbuf.len() + data.len() > WRITE_BATCH
                        {
                            self.flush_wbuf().await?;
                            self.io.write_all(&data).await.map_err(H1Error::Io)?;
                        } else {
                            self.wbuf.extend_from_slice(&data);
                        }
                        if chunked {
                            self.wbuf.extend_from_slice(b"\r\n");
                        }
                    }
                    Err(frame) => {
                        if let (true, Ok(trailers)) = (chunked, frame.into_trailers()) {
                            self.wbuf.extend_from_slice(b"0\r\n");
                            for (name, value) in &trailers {
                                self.wbuf.extend_from_slice(name.as_str().as_bytes());
                                self.wbuf.extend_from_slice(b": ");
                                self.wbuf.extend_from_slice(value.as_bytes());
                                self.wbuf.extend_from_slice(b"\r\n");
                            }
                            self.wbuf.extend_from_slice(b"\r\n");
                            return self.finish_body().await;
                        }
                    }
                },
            }
        }
        if chunked {
            self.wbuf.extend_from_slice(b"0\r\n\r\n");
        }
        self.finish_body().await
    }

    /// The body's last bytes go; `wbuf` shrinks back to [`WBUF_KEEP`].
    async fn finish_body(&mut self) -> Result<(), H1Error> {
        self.flush_wbuf().await?;
        self.wbuf.shrink_to(WBUF_KEEP);
        Ok(())
    }

    async fn flush_wbuf(&mut self) -> Result<(), H1Error> {
        if !self.wbuf.is_empty() {
            self.io.write_all(&self.wbuf).await.map_err(H1Error::Io)?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Read into `buf`; Ok(0) at end of stream.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        // Read from the start of the buffer again once everything before
        // was consumed (and nothing still holds it): the same few cache
        // lines serve every response, where walking the whole buffer
        // would take a cold line per read on each pooled connection.
        if self.buf.is_empty() {
            let _ = self.buf.try_reclaim(self.read_size);
        }
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(self.read_size);
        }
        let room = self.buf.capacity() - self.buf.len();
        let read = tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf);
        if let Poll::Ready(Ok(n)) = read {
            if n == room && self.read_size < READ_CHUNK {
                self.read_size *= 2;
            }
        }
        read
    }

    async fn fill(&mut self) -> std::io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    /// After the request could not be written whole: an answer the
    /// upstream already sent (or sends within [`EARLY_ANSWER_WAIT`]). Its
    /// connection is not reused.
    async fn early_answer(self: Box<Self>, is_head: bool) -> Option<Response<H1Body>> {
        let read = tokio::time::timeout(EARLY_ANSWER_WAIT, self.read_head(is_head));
        let mut resp = read.await.ok()?.ok()?;
        resp.body_mut().keep_alive = false;
        Some(resp)
    }

    async fn read_head(mut self: Box<Self>, is_head: bool) -> Result<Response<H1Body>, H1Error> {
        loop {
            if !self.buf.is_empty() {
                if let Some(head) = parse_head(&mut self.buf, is_head)? {
                    let done = matches!(head.framing, Framing::Length(0));
                    let mut resp = Response::new(H1Body {
                        conn: Some(self),
                        framing: head.framing,
                        keep_alive: head.keep_alive,
                        done,
                        broken: None,
                    });
                    *resp.status_mut() = head.status;
                    *resp.version_mut() = Version::HTTP_11;
                    *resp.headers_mut() = head.headers;
                    return Ok(resp);
                }
            }
            match self.fill().await {
                Ok(0) if self.buf.is_empty() => return Err(H1Error::Closed),
                Ok(0) => return Err(H1Error::Invalid("connection closed mid-head")),
                Ok(_) => {}
                Err(e) => return Err(H1Error::Io(e)),
            }
        }
    }
}

async fn body_frame(body: &mut ClientBody) -> Option<Result<Frame<Bytes>, BoxError>> {
    std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx))
        .await
        .map(|r| r.map_err(Into::into))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;

    #[tokio::test]
    async fn reads_start_at_the_front_of_the_buffer_once_it_is_consumed() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let mut conn = H1Conn::new(Box::new(ours));
        theirs.write_all(b"first").await.unwrap();
        assert_eq!(conn.fill().await.unwrap(), 5);
        let front = conn.buf.as_ptr();
        let first = conn.buf.split_to(5).freeze();
        // Still held (a body frame not yet written): read on behind it.
        theirs.write_all(b"second").await.unwrap();
        conn.fill().await.unwrap();
        assert_eq!(&conn.buf[..], b"second");
        assert_ne!(conn.buf.as_ptr(), front);
        assert_eq!(&first[..], b"first");
        conn.buf.advance(6);
        drop(first);
        // Consumed and let go: the next read lands at the front again.
        theirs.write_all(b"third").await.unwrap();
        conn.fill().await.unwrap();
        assert_eq!(&conn.buf[..], b"third");
        assert_eq!(conn.buf.as_ptr(), front);
    }

    #[tokio::test]
    async fn the_read_buffer_starts_small_and_grows_while_reads_fill_it() {
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        let mut conn = H1Conn::new(Box::new(ours));
        // Nothing allocated before the first read.
        assert_eq!(conn.buf.capacity(), 0);
        theirs.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        conn.fill().await.unwrap();
        assert!(conn.buf.capacity() < READ_CHUNK, "{}", conn.buf.capacity());
        assert_eq!(conn.read_size, READ_FIRST, "a short read grows nothing");
        let n = conn.buf.len();
        conn.buf.advance(n);
        // A large body: every read fills the buffer, up to READ_CHUNK.
        theirs.write_all(&[b'x'; 60 * 1024]).await.unwrap();
        let mut got = 0;
        while got < 60 * 1024 {
            let n = conn.fill().await.unwrap();
            got += n;
            conn.buf.advance(n);
        }
        assert_eq!(conn.read_size, READ_CHUNK);
        assert!(
            conn.buf.capacity() <= 2 * READ_CHUNK,
            "{}",
            conn.buf.capacity()
        );
    }

    /// `pieces` sent as a request body after `head`: what the upstream reads.
    async fn sent(head: &[u8], pieces: Vec<Bytes>) -> (Vec<u8>, H1Conn) {
        let (ours, mut theirs) = tokio::io::duplex(16 * 1024);
        let mut conn = H1Conn::new(Box::new(ours));
        conn.wbuf.extend_from_slice(head);
        let copied = crate::upstream::copied::CopiedBody::new(pieces.into());
        let mut body = ClientBody::new(
            crate::upstream::copied::RequestBody::Copy(copied),
            std::time::Duration::from_secs(5),
        );
        let read = async {
            let mut all = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut theirs, &mut all)
                .await
                .unwrap();
            all
        };
        let write = async {
            conn.write_body(&mut body).await.unwrap();
            conn.io.shutdown().await.unwrap();
            conn
        };
        let (all, conn) = tokio::join!(read, write);
        (all, conn)
    }

    #[tokio::test]
    async fn body_pieces_large_and_small_reach_the_upstream_in_order() {
        let piece = |b: u8, n: usize| Bytes::from(vec![b; n]);
        let pieces = vec![
            piece(b'a', 10),
            piece(b'b', WRITE_DIRECT + 1),
            piece(b'c', 3000),
            piece(b'd', 3000),
            piece(b'e', 80 * 1024),
            piece(b'f', 7),
        ];
        let len: usize = pieces.iter().map(|p| p.len()).sum();
        let head = format!("POST / HTTP/1.1\r\ncontent-length: {len}\r\n\r\n");
        let (all, conn) = sent(head.as_bytes(), pieces.clone()).await;
        let mut want = head.into_bytes();
        for p in &pieces {
            want.extend_from_slice(p);
        }
        assert!(all == want, "{} bytes, wanted {}", all.len(), want.len());
        assert!(
            conn.wbuf.capacity() <= WBUF_KEEP,
            "{}",
            conn.wbuf.capacity()
        );

        // Chunked: each piece framed, whichever way it was written.
        let head = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n";
        let (all, _) = sent(head, pieces.clone()).await;
        let mut want = head.to_vec();
        for p in &pieces {
            want.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
            want.extend_from_slice(p);
            want.extend_from_slice(b"\r\n");
        }
        want.extend_from_slice(b"0\r\n\r\n");
        assert!(all == want, "{} bytes, wanted {}", all.len(), want.len());
    }

    #[tokio::test]
    async fn a_body_sent_in_small_pieces_leaves_a_small_write_buffer() {
        let pieces: Vec<Bytes> = (0..40).map(|_| Bytes::from(vec![b'p'; 2000])).collect();
        let head = b"POST / HTTP/1.1\r\ncontent-length: 80000\r\n\r\n";
        let (all, conn) = sent(head, pieces).await;
        assert_eq!(all.len(), head.len() + 80_000);
        assert!(
            conn.wbuf.capacity() <= WBUF_KEEP,
            "{}",
            conn.wbuf.capacity()
        );
    }

    #[tokio::test]
    async fn a_head_in_pieces_after_an_interim_one_is_read_whole() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let conn = Box::new(H1Conn::new(Box::new(ours)));
        let upstream = tokio::spawn(async move {
            let bytes =
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
            for b in bytes {
                theirs.write_all(&[*b]).await.unwrap();
            }
            theirs
        });
        let mut resp = conn.read_head(false).await.unwrap();
        assert_eq!(resp.status(), http::StatusCode::OK);
        let body = http_body_util::BodyExt::collect(resp.body_mut())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&body[..], b"hi");
        assert!(resp.body_mut().take_conn().is_some());
        drop(upstream.await.unwrap());
    }

    #[tokio::test]
    async fn a_close_before_or_within_the_head_is_told_apart() {
        let (ours, theirs) = tokio::io::duplex(64);
        drop(theirs);
        let err = Box::new(H1Conn::new(Box::new(ours))).read_head(false).await;
        assert!(matches!(err, Err(H1Error::Closed)));

        let (ours, mut theirs) = tokio::io::duplex(64);
        theirs.write_all(b"HTTP/1.1 200 O").await.unwrap();
        drop(theirs);
        let err = Box::new(H1Conn::new(Box::new(ours))).read_head(false).await;
        assert!(matches!(err, Err(H1Error::Invalid(_))));
    }
}
