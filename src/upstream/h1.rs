//! The proxy's own HTTP/1.1 client for upstream connections.
//!
//! hyper's client runs each connection as a task of its own and hands
//! requests, responses and every body chunk across channels to it: about
//! four task wake-ups and a dozen channel operations per proxied request,
//! more than a third of the proxy's user-space instructions. Here the
//! request's own task writes the request and reads the response on the
//! connection it owns, and the response body reads the socket directly; the
//! connection goes back to its endpoint's idle queue when the body has been
//! read to its end.
//!
//! Framing follows RFC 9112: a response to `HEAD`, a 204 or a 304 has no
//! body; `Transfer-Encoding` ending in `chunked` is decoded (trailers kept);
//! any other transfer coding, or no length at all, is read until the
//! upstream closes; otherwise `Content-Length`, which must be one valid
//! number (repeated values must agree). Interim 1xx responses are skipped.
//! Upgrades (WebSocket) are not handled here: the connector hands such
//! requests to hyper, on a connection of their own.

use crate::upstream::connector::UpstreamIo;
use crate::upstream::request_body::ClientBody;
use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

/// Header fields in one response head (as for requests): more is invalid.
const MAX_HEADERS: usize = 100;
/// A response head (or a chunk-size line, or trailers) larger than this is invalid.
const MAX_HEAD_BYTES: usize = 256 * 1024;
const MAX_CHUNK_LINE: usize = 4096;
/// Read size: small responses in one read, large bodies in few.
const READ_CHUNK: usize = 16 * 1024;
/// How long an upstream that stopped reading the request body is given to
/// have its answer read (an early 413 sent before it closed).
const EARLY_ANSWER_WAIT: std::time::Duration = std::time::Duration::from_millis(200);
/// Request body bytes gathered before a write.
const WRITE_BATCH: usize = 64 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why an exchange on an [`H1Conn`] failed.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    /// Reset, refused mid-way, or any other socket error.
    #[error("{0}")]
    Io(#[source] std::io::Error),
    #[error("connection closed before the response was complete")]
    Closed,
    #[error("{0}")]
    Invalid(&'static str),
    /// The client's request body failed: the client's fault.
    #[error("{0}")]
    ClientBody(#[source] BoxError),
}

impl H1Error {
    /// The upstream broke the protocol (as opposed to the connection).
    pub fn is_protocol(&self) -> bool {
        matches!(self, H1Error::Invalid(_))
    }
}

/// An HTTP/1.1 connection to an upstream endpoint.
pub struct H1Conn {
    io: Box<dyn UpstreamIo>,
    /// Bytes read and not yet consumed.
    buf: BytesMut,
    /// The request head being written (kept for its capacity).
    wbuf: Vec<u8>,
    /// Exchanges begun on it.
    served: u32,
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
            buf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: Vec::with_capacity(1024),
            served: 0,
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
        self.encode_head(&req);
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

    fn encode_head(&mut self, req: &Request<ClientBody>) {
        let w = &mut self.wbuf;
        w.clear();
        w.extend_from_slice(req.method().as_str().as_bytes());
        w.push(b' ');
        match req.uri().path_and_query() {
            Some(pq) if !pq.as_str().is_empty() => w.extend_from_slice(pq.as_str().as_bytes()),
            _ => w.push(b'/'),
        }
        w.extend_from_slice(b" HTTP/1.1\r\n");
        let headers = req.headers();
        for (name, value) in headers {
            w.extend_from_slice(name.as_str().as_bytes());
            w.extend_from_slice(b": ");
            w.extend_from_slice(value.as_bytes());
            w.extend_from_slice(b"\r\n");
        }
        let body = req.body();
        let end = body.is_end_stream();
        // Servers may answer 411 to a POST without a length. (A GET without
        // a body needs no lookup at all.)
        let wants_length =
            !end || matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH);
        if wants_length
            && !headers.contains_key(header::CONTENT_LENGTH)
            && !headers.contains_key(header::TRANSFER_ENCODING)
        {
            if end {
                w.extend_from_slice(b"content-length: 0\r\n");
            } else if let Some(n) = body.size_hint().exact() {
                w.extend_from_slice(b"content-length: ");
                w.extend_from_slice(itoa_u64(n, &mut [0u8; 20]));
                w.extend_from_slice(b"\r\n");
            }
        }
        w.extend_from_slice(b"\r\n");
    }

    /// The head (already in `wbuf`) and the body, chunked when the head says
    /// so, batched while the client's body has more ready.
    async fn write_body(&mut self, body: &mut ClientBody) -> Result<(), H1Error> {
        let chunked = self.wbuf_says_chunked();
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
                        if self.wbuf.len() + data.len() > WRITE_BATCH {
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
                            return self.flush_wbuf().await;
                        }
                    }
                },
            }
        }
        if chunked {
            self.wbuf.extend_from_slice(b"0\r\n\r\n");
        }
        self.flush_wbuf().await
    }

    fn wbuf_says_chunked(&self) -> bool {
        // The handler sets `transfer-encoding: chunked` (and nothing else)
        // for a body of unknown length; the head is in `wbuf`.
        self.wbuf
            .windows(b"\r\ntransfer-encoding: chunked\r\n".len())
            .any(|w| w.eq_ignore_ascii_case(b"\r\ntransfer-encoding: chunked\r\n"))
    }

    async fn flush_wbuf(&mut self) -> Result<(), H1Error> {
        if !self.wbuf.is_empty() {
            self.io.write_all(&self.wbuf).await.map_err(H1Error::Io)?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Read into `buf`; Ok(0) at end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        // Read from the start of the buffer again once everything before
        // was consumed (and nothing still holds it): the same few cache
        // lines serve every response, where walking the whole buffer
        // would take a cold line per read on each pooled connection.
        if self.buf.is_empty() {
            let _ = self.buf.try_reclaim(READ_CHUNK);
        }
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
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
                if let Some(head) = self.parse_head(is_head)? {
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
                if self.buf.len() > MAX_HEAD_BYTES {
                    return Err(H1Error::Invalid("response head too large"));
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

    /// A whole response head from `buf`, None if more is needed. Interim
    /// (1xx) heads are consumed and skipped.
    fn parse_head(&mut self, is_head: bool) -> Result<Option<Head>, H1Error> {
        loop {
            let mut slots: [MaybeUninit<httparse::Header<'_>>; MAX_HEADERS] =
                [const { MaybeUninit::uninit() }; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut []);
            let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut parsed,
                &self.buf,
                &mut slots,
            ) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(H1Error::Invalid("too many response header fields"))
                }
                Err(_) => return Err(H1Error::Invalid("malformed response head")),
            };
            let code = parsed.code.unwrap_or(0);
            let status =
                StatusCode::from_u16(code).map_err(|_| H1Error::Invalid("invalid status code"))?;
            if status.is_informational() {
                if status == StatusCode::SWITCHING_PROTOCOLS {
                    return Err(H1Error::Invalid("101 to a request that asked no upgrade"));
                }
                self.buf.advance(len);
                if self.buf.is_empty() {
                    return Ok(None);
                }
                continue;
            }
            let http11 = parsed.version == Some(1);
            // Where each field stands in the head, as plain offsets (no
            // allocation); what framing needs is noted on the way.
            let base = self.buf.as_ptr() as usize;
            let count = parsed.headers.len();
            let mut spans = [[0u32; 4]; MAX_HEADERS];
            let mut seen = Seen::default();
            for (span, h) in spans.iter_mut().zip(parsed.headers.iter()) {
                seen.note(h.name.as_bytes(), h.value)?;
                let name = h.name.as_ptr() as usize - base;
                let value = h.value.as_ptr() as usize - base;
                // A head is at most MAX_HEAD_BYTES long: offsets fit in u32.
                *span = [name, h.name.len(), value, h.value.len()].map(|n| n as u32);
            }
            let head = self.buf.split_to(len).freeze();
            let mut headers = HeaderMap::with_capacity(count);
            for [name, name_len, value, value_len] in
                spans[..count].iter().map(|s| s.map(|n| n as usize))
            {
                let name = HeaderName::from_bytes(&head[name..name + name_len])
                    .map_err(|_| H1Error::Invalid("invalid header name"))?;
                let value = HeaderValue::from_maybe_shared(head.slice(value..value + value_len))
                    .map_err(|_| H1Error::Invalid("invalid header value"))?;
                headers.append(name, value);
            }
            let mut keep_alive = http11 && !seen.close;
            let framing = if is_head
                || status == StatusCode::NO_CONTENT
                || status == StatusCode::NOT_MODIFIED
            {
                Framing::Length(0)
            } else if seen.transfer_encoding {
                if last_coding_is_chunked(&headers) {
                    Framing::Chunked(ChunkState::Size)
                } else {
                    keep_alive = false;
                    Framing::Close
                }
            } else if let Some(n) = seen.length {
                Framing::Length(n)
            } else {
                keep_alive = false;
                Framing::Close
            };
            return Ok(Some(Head {
                status,
                headers,
                framing,
                keep_alive,
            }));
        }
    }
}

/// A parsed response head.
struct Head {
    status: StatusCode,
    headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
}

async fn body_frame(body: &mut ClientBody) -> Option<Result<Frame<Bytes>, BoxError>> {
    std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx))
        .await
        .map(|r| r.map_err(Into::into))
}

/// How the response body ends.
#[derive(Debug, Clone, Copy)]
enum Framing {
    /// This many bytes are left.
    Length(u64),
    Chunked(ChunkState),
    /// At the end of the stream.
    Close,
}

#[derive(Debug, Clone, Copy)]
enum ChunkState {
    /// A chunk-size line is next.
    Size,
    /// This many bytes of chunk data are left.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer fields (or the final CRLF) after the last chunk.
    Trailers,
}

/// A response body read straight from its connection.
pub struct H1Body {
    conn: Option<Box<H1Conn>>,
    framing: Framing,
    keep_alive: bool,
    done: bool,
    /// An error held back for one poll (see `poll_frame`).
    broken: Option<H1Error>,
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

/// One step of chunked decoding over the buffered bytes.
enum Step {
    /// A frame to hand on, and the state after it.
    Frame(ChunkState, Frame<Bytes>),
    /// Consumed framing; go on from this state.
    Next(ChunkState),
    /// The body ended, with these trailers if any.
    End(Option<HeaderMap>),
    /// More bytes are needed.
    More,
}

fn step_chunked(buf: &mut BytesMut, state: ChunkState) -> Result<Step, H1Error> {
    match state {
        ChunkState::Size => {
            let Some(eol) = find_crlf(buf) else {
                return if buf.len() > MAX_CHUNK_LINE {
                    Err(H1Error::Invalid("chunk-size line too long"))
                } else {
                    Ok(Step::More)
                };
            };
            let line = &buf[..eol];
            // chunk-size [ chunk-ext ]: the extension is ignored.
            let digits_end = line
                .iter()
                .position(|&b| !b.is_ascii_hexdigit())
                .unwrap_or(line.len());
            // BWS, then nothing or a chunk extension.
            let rest = line[digits_end..].trim_ascii_start();
            if digits_end == 0 || digits_end > 15 || !(rest.is_empty() || rest[0] == b';') {
                return Err(H1Error::Invalid("invalid chunk size"));
            }
            let mut size = 0u64;
            for &b in &line[..digits_end] {
                size = size * 16 + u64::from((b as char).to_digit(16).unwrap_or(0));
            }
            buf.advance(eol + 2);
            Ok(Step::Next(if size == 0 {
                ChunkState::Trailers
            } else {
                ChunkState::Data(size)
            }))
        }
        ChunkState::Data(left) => {
            if buf.is_empty() {
                return Ok(Step::More);
            }
            let take = (buf.len() as u64).min(left);
            let data = buf.split_to(take as usize).freeze();
            let next = if take == left {
                ChunkState::DataEnd
            } else {
                ChunkState::Data(left - take)
            };
            Ok(Step::Frame(next, Frame::data(data)))
        }
        ChunkState::DataEnd => {
            if buf.len() < 2 {
                return Ok(Step::More);
            }
            if &buf[..2] != b"\r\n" {
                return Err(H1Error::Invalid("chunk data not followed by CRLF"));
            }
            buf.advance(2);
            Ok(Step::Next(ChunkState::Size))
        }
        ChunkState::Trailers => {
            if buf.starts_with(b"\r\n") {
                buf.advance(2);
                return Ok(Step::End(None));
            }
            let Some(end) = find(buf, b"\r\n\r\n") else {
                return if buf.len() > MAX_HEAD_BYTES {
                    Err(H1Error::Invalid("trailer section too large"))
                } else {
                    Ok(Step::More)
                };
            };
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let fields = match httparse::parse_headers(&buf[..end + 4], &mut slots) {
                Ok(httparse::Status::Complete((_, fields))) => fields,
                _ => return Err(H1Error::Invalid("malformed trailer section")),
            };
            let mut trailers = HeaderMap::with_capacity(fields.len());
            for f in fields.iter() {
                let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(f.name.as_bytes()),
                    HeaderValue::from_bytes(f.value),
                ) else {
                    return Err(H1Error::Invalid("invalid trailer field"));
                };
                trailers.append(name, value);
            }
            buf.advance(end + 4);
            Ok(Step::End(Some(trailers)))
        }
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    find(b, b"\r\n")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// RFC 9112 section 6.3: chunked must be the final coding.
fn last_coding_is_chunked(h: &HeaderMap) -> bool {
    let last = h
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .rfind(|t| !t.is_empty());
    last.is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
}

/// What the framing of a response depends on, noted field by field.
#[derive(Default)]
struct Seen {
    transfer_encoding: bool,
    /// One valid length; repeated values (or a list) must agree.
    length: Option<u64>,
    /// `Connection: close`.
    close: bool,
}

impl Seen {
    fn note(&mut self, name: &[u8], value: &[u8]) -> Result<(), H1Error> {
        if name.eq_ignore_ascii_case(b"content-length") {
            for part in value.split(|&b| b == b',') {
                let n = parse_length(part.trim_ascii())
                    .ok_or(H1Error::Invalid("invalid Content-Length"))?;
                if self.length.is_some_and(|f| f != n) {
                    return Err(H1Error::Invalid("conflicting Content-Length values"));
                }
                self.length = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encoding = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            self.close |= value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
        Ok(())
    }
}

fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')),
    )
}

fn itoa_u64(mut n: u64, out: &mut [u8; 20]) -> &[u8] {
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &out[i..]
}

fn hex_len(mut n: usize, out: &mut [u8; 16]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    &out[i..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn reads_start_at_the_front_of_the_buffer_once_it_is_consumed() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let mut conn = H1Conn::new(Box::new(ours));
        let front = conn.buf.as_ptr();
        theirs.write_all(b"first").await.unwrap();
        assert_eq!(conn.fill().await.unwrap(), 5);
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

    fn decode(input: &[u8]) -> Result<(Vec<u8>, Option<HeaderMap>), H1Error> {
        let mut buf = BytesMut::from(input);
        let mut state = ChunkState::Size;
        let mut out = Vec::new();
        loop {
            match step_chunked(&mut buf, state)? {
                Step::Frame(next, f) => {
                    out.extend_from_slice(&f.into_data().unwrap());
                    state = next;
                }
                Step::Next(next) => state = next,
                Step::End(t) => return Ok((out, t)),
                Step::More => return Err(H1Error::Closed),
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_with_extensions_and_trailers() {
        let (body, t) = decode(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n").unwrap();
        assert_eq!(body, b"hello world");
        assert!(t.is_none());
        let (body, t) = decode(b"3\r\nabc\r\n0\r\nx-sum: 1\r\ny: 2\r\n\r\n").unwrap();
        assert_eq!(body, b"abc");
        let t = t.unwrap();
        assert_eq!(t["x-sum"], "1");
        assert_eq!(t["y"], "2");
        assert_eq!(
            decode(b"A\r\n0123456789\r\n0\r\n\r\n").unwrap().0,
            b"0123456789"
        );
    }

    #[test]
    fn bad_chunking_is_invalid_and_short_input_asks_for_more() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXX",
            b"-1\r\n",
            b"1111111111111111\r\n",
            b"5 garbage\r\n",
        ] {
            assert!(
                matches!(decode(bad), Err(H1Error::Invalid(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(decode(b"5\r\nhel"), Err(H1Error::Closed)));
        assert!(matches!(decode(b"5"), Err(H1Error::Closed)));
    }

    #[test]
    fn content_length_must_be_one_number() {
        let length = |values: &[&str]| {
            let mut seen = Seen::default();
            for v in values {
                seen.note(b"Content-Length", v.as_bytes())?;
            }
            Ok::<_, H1Error>(seen.length)
        };
        assert_eq!(length(&["42"]).unwrap(), Some(42));
        assert_eq!(length(&["42", "42"]).unwrap(), Some(42));
        assert_eq!(length(&["42, 42"]).unwrap(), Some(42));
        assert!(length(&["42", "43"]).is_err());
        for bad in ["", "-1", "1e3", "4 2", "99999999999999999999", "+5", "42,"] {
            assert!(length(&[bad]).is_err(), "{bad:?}");
        }
        let mut seen = Seen::default();
        seen.note(b"connection", b"keep-alive, Close").unwrap();
        seen.note(b"TRANSFER-ENCODING", b"chunked").unwrap();
        assert!(seen.close && seen.transfer_encoding && seen.length.is_none());
    }

    #[test]
    fn chunked_must_be_the_last_coding() {
        let te = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static(v));
            last_coding_is_chunked(&h)
        };
        assert!(te("chunked"));
        assert!(te("gzip, Chunked"));
        assert!(!te("chunked, gzip"));
        assert!(!te("gzip"));
    }

    /// Whatever an upstream sends, the head parser and the chunked decoder
    /// answer with a response, "more", or an error: never a panic, and never
    /// a body longer than what was sent.
    #[test]
    fn any_upstream_bytes_parse_without_panicking() {
        use proptest::prelude::*;
        let heads = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..600),
            "HTTP/1\\.[01] [0-9]{3} [a-zA-Z ]{0,8}\r\n([a-zA-Z-]{1,12}: [ -~]{0,20}\r\n){0,6}\r\n[ -~]{0,40}"
                .prop_map(String::into_bytes),
        ];
        proptest!(ProptestConfig::with_cases(2000), |(bytes in heads, is_head in any::<bool>())| {
            let (io, _peer) = tokio::io::duplex(64);
            let mut conn = H1Conn::new(Box::new(io));
            conn.buf.extend_from_slice(&bytes);
            if let Ok(Some(head)) = conn.parse_head(is_head) {
                prop_assert!(head.status.as_u16() >= 200);
            }
        });
        let chunked = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            "([0-9a-fA-F]{1,3}(;[a-z=]{0,6})?\r\n[ -~]{0,20}\r\n){0,5}0\r\n(x: [a-z]{0,5}\r\n)?\r\n"
                .prop_map(String::into_bytes),
        ];
        proptest!(ProptestConfig::with_cases(2000), |(bytes in chunked)| {
            let total = bytes.len();
            let mut buf = BytesMut::from(&bytes[..]);
            let mut state = ChunkState::Size;
            let mut out = 0usize;
            while let Ok(step) = step_chunked(&mut buf, state) {
                match step {
                    Step::Frame(next, f) => {
                        out += f.data_ref().map_or(0, |d| d.len());
                        state = next;
                    }
                    Step::Next(next) => state = next,
                    Step::End(_) | Step::More => break,
                }
            }
            prop_assert!(out <= total);
        });
    }

    #[test]
    fn numbers_format_like_std() {
        for n in [0u64, 7, 10, 255, 65_536, u64::MAX] {
            assert_eq!(itoa_u64(n, &mut [0; 20]), n.to_string().as_bytes());
        }
        for n in [0usize, 9, 10, 255, 4096, 1 << 40] {
            assert_eq!(hex_len(n, &mut [0; 16]), format!("{n:x}").as_bytes());
        }
    }
}
