//! The proxy's own HTTP/2 client (`protocol: h2` pools, e.g. gRPC), on the
//! `h2` crate directly.
//!
//! hyper's HTTP/2 client puts a dispatch task between a request and its
//! connection: each request goes through a channel to that task, which
//! spawns one more task per request to wait for the answer (and another to
//! send its body), and hands the answer back through a oneshot. Profiled in
//! the matrix's `grpc` cell, that layer cost about a sixth of the proxy's
//! CPU. Here the request's own task opens the stream, sends the body and
//! waits for the answer; only the connection has a task of its own (reading,
//! writing, and a keep-alive ping).
//!
//! The first piece of a request body goes out with its head, before the
//! stream has flow-control capacity (h2 holds it until the window allows):
//! a small unary call is one write. Later pieces wait for capacity, so a
//! large upload is held to the upstream's pace.
//!
//! It must not know about routing or the proxy's answers.

use crate::upstream::request_body::ClientBody;
use bytes::Bytes;
use futures_util::future::poll_fn;
use h2::client::{ResponseFuture, SendRequest};
use h2::{Ping, PingPong, Reason, RecvStream, SendStream};
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

/// Settings of one upstream HTTP/2 connection.
#[derive(Debug, Clone, Copy)]
pub struct H2Settings {
    pub conn_window: u32,
    pub stream_window: u32,
    /// A ping goes out this often; one that is not answered within
    /// `ping_timeout` closes the connection.
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
}

/// Headers that name a connection's own business: never sent on HTTP/2
/// (RFC 9113 section 8.2.2); h2 refuses a request that carries one.
const CONNECTION_HEADERS: [http::HeaderName; 5] = [
    http::header::CONNECTION,
    http::HeaderName::from_static("keep-alive"),
    http::HeaderName::from_static("proxy-connection"),
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

/// A handle on one HTTP/2 connection, shared (`Arc`) by the requests on
/// it: each takes its own `SendRequest` only while it opens its stream.
pub struct H2Sender {
    tx: SendRequest<Bytes>,
    /// Set when the connection's task has ended, or a request found the
    /// connection unusable (GOAWAY, an error): it is replaced, not reused.
    closed: Arc<AtomicBool>,
}

/// Open HTTP/2 on `io` (prior knowledge, or ALPN `h2` under TLS) and spawn
/// the connection's task.
pub async fn handshake<I>(io: I, s: H2Settings) -> Result<Arc<H2Sender>, h2::Error>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut conn) = h2::client::Builder::new()
        .initial_window_size(s.stream_window)
        .initial_connection_window_size(s.conn_window)
        // hyper's defaults, kept.
        .initial_max_send_streams(100)
        .max_header_list_size(16 * 1024)
        .max_send_buffer_size(1024 * 1024)
        .enable_push(false)
        .handshake::<_, Bytes>(io)
        .await?;
    let closed = Arc::new(AtomicBool::new(false));
    let pings = conn.ping_pong();
    let done = closed.clone();
    tokio::spawn(async move {
        let result = match pings {
            Some(p) => drive(&mut conn, p, s).await,
            None => (&mut conn).await,
        };
        done.store(true, Ordering::Relaxed);
        if let Err(e) = result {
            tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
        }
    });
    Ok(Arc::new(H2Sender { tx, closed }))
}

/// Run the connection, pinging it every `ping_interval`; an unanswered ping
/// ends it (a host gone without a FIN), which fails its streams at once
/// instead of at the request timeout.
async fn drive<T>(
    conn: &mut h2::client::Connection<T, Bytes>,
    mut pings: PingPong,
    s: H2Settings,
) -> Result<(), h2::Error>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let timer = tokio::time::sleep(s.ping_interval);
    tokio::pin!(timer);
    let mut awaiting = false;
    loop {
        tokio::select! {
            biased;
            r = &mut *conn => return r,
            pong = poll_fn(|cx| pings.poll_pong(cx)), if awaiting => {
                pong?;
                awaiting = false;
                timer.as_mut().reset(tokio::time::Instant::now() + s.ping_interval);
            }
            () = &mut timer => {
                if awaiting {
                    tracing::debug!(timeout = ?s.ping_timeout, "upstream HTTP/2 connection did not answer a ping: closed");
                    return Ok(());
                }
                pings.send_ping(Ping::opaque())?;
                awaiting = true;
                timer.as_mut().reset(tokio::time::Instant::now() + s.ping_timeout);
            }
        }
    }
}

impl H2Sender {
    /// Known to be closed or closing: not to be given new requests.
    #[inline]
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Send `req` on a new stream. The returned future first waits for the
    /// connection to take a stream; a failure then gives the request back
    /// unsent.
    #[inline]
    pub fn send(self: Arc<Self>, req: Request<ClientBody>) -> H2Exchange {
        let tx = self.tx.clone();
        H2Exchange {
            state: State::Ready(self, tx, Some(req)),
        }
    }
}

/// Why an exchange on an upstream HTTP/2 connection failed.
pub type H2Error = h2::Error;

/// A failed send: the error, and the request when no part of it was sent.
pub struct H2Failure {
    pub error: H2Error,
    pub unsent: Option<Request<ClientBody>>,
}

/// One request's exchange on an HTTP/2 connection: its answer's head.
pub struct H2Exchange {
    state: State,
}

enum State {
    /// Waiting for the connection to take a new stream.
    Ready(
        Arc<H2Sender>,
        SendRequest<Bytes>,
        Option<Request<ClientBody>>,
    ),
    /// Sent: the body goes out (if any is left) while the answer is awaited.
    Sent {
        response: ResponseFuture,
        pump: Option<Pump>,
    },
    Done,
}

impl Future for H2Exchange {
    type Output = Result<Response<H2Body>, H2Failure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Ready(sender, tx, req) => {
                    if let Err(error) = ready!(tx.poll_ready(cx)) {
                        sender.closed.store(true, Ordering::Relaxed);
                        let unsent = req.take();
                        this.state = State::Done;
                        return Poll::Ready(Err(H2Failure { error, unsent }));
                    }
                    let Some(req) = req.take() else {
                        return Poll::Pending;
                    };
                    let (mut parts, body) = req.into_parts();
                    strip_connection_headers(&mut parts.headers);
                    let eos = body.is_end_stream();
                    let head = Request::from_parts(parts, ());
                    let sent = tx.send_request(head, eos);
                    let (response, stream) = match sent {
                        Ok(x) => x,
                        Err(error) => {
                            if error.is_go_away() || error.is_io() {
                                sender.closed.store(true, Ordering::Relaxed);
                            }
                            this.state = State::Done;
                            return Poll::Ready(Err(H2Failure {
                                error,
                                unsent: None,
                            }));
                        }
                    };
                    let pump = (!eos).then(|| Pump::new(body, stream));
                    this.state = State::Sent { response, pump };
                }
                State::Sent { response, pump } => {
                    if let Some(p) = pump {
                        if p.poll_pump(cx).is_ready() {
                            *pump = None;
                        }
                    }
                    let answer = ready!(Pin::new(response).poll(cx));
                    let pump = match std::mem::replace(&mut this.state, State::Done) {
                        State::Sent { pump, .. } => pump,
                        _ => None,
                    };
                    let resp = answer.map_err(|error| H2Failure {
                        error,
                        unsent: None,
                    })?;
                    // The answer came before the whole request went (a
                    // streaming call): the rest goes on in a task of its own.
                    if let Some(p) = pump {
                        tokio::spawn(p);
                    }
                    let left = content_length(resp.headers());
                    return Poll::Ready(Ok(resp.map(|recv| H2Body::new(recv, left))));
                }
                State::Done => return Poll::Pending,
            }
        }
    }
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn strip_connection_headers(h: &mut HeaderMap) {
    for name in &CONNECTION_HEADERS {
        h.remove(name);
    }
    if h.get(http::header::TE).is_some_and(|v| v != "trailers") {
        h.remove(http::header::TE);
    }
}

/// A request body on its way to a stream.
struct Pump {
    body: ClientBody,
    stream: SendStream<Bytes>,
    /// A piece waiting for the stream's capacity, and whether it is the last.
    waiting: Option<(Bytes, bool)>,
    /// A piece has been sent: later ones wait for capacity first.
    sent_any: bool,
}

impl Pump {
    fn new(body: ClientBody, stream: SendStream<Bytes>) -> Self {
        Pump {
            body,
            stream,
            waiting: None,
            sent_any: false,
        }
    }

    /// Ready when the body has gone whole, or failed (the stream then reset).
    fn poll_pump(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.pump(cx) {
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = %e, "request body to an HTTP/2 upstream ended early");
                Poll::Ready(())
            }
            Poll::Ready(Ok(())) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    }

    fn pump(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), h2::Error>> {
        loop {
            // A reset from the upstream ends the upload (and wakes us).
            if let Poll::Ready(r) = self.stream.poll_reset(cx) {
                return Poll::Ready(r.map(|_| ()));
            }
            if let Some((data, eos)) = self.waiting.take() {
                while self.stream.capacity() == 0 {
                    match self.stream.poll_capacity(cx) {
                        Poll::Ready(Some(Ok(_))) => {}
                        Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                        Poll::Ready(None) => return Poll::Ready(Ok(())),
                        Poll::Pending => {
                            self.waiting = Some((data, eos));
                            return Poll::Pending;
                        }
                    }
                }
                self.stream.send_data(data, eos)?;
                if eos {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let eos = self.body.is_end_stream();
                        if data.is_empty() || !self.sent_any {
                            // The first piece goes with the head; h2 holds
                            // it until the window allows.
                            self.sent_any = !data.is_empty();
                            self.stream.send_data(data, eos)?;
                            if eos {
                                return Poll::Ready(Ok(()));
                            }
                        } else {
                            self.stream.reserve_capacity(1);
                            self.waiting = Some((data, eos));
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            self.stream.reserve_capacity(0);
                            self.stream.send_trailers(trailers)?;
                            return Poll::Ready(Ok(()));
                        }
                    }
                },
                Some(Err(e)) => {
                    // The body's fate is kept by `ClientBody`; the upstream
                    // is told the request will not be finished.
                    self.stream.send_reset(Reason::CANCEL);
                    tracing::debug!(error = %e, "request body failed; upstream stream reset");
                    return Poll::Ready(Ok(()));
                }
                None => {
                    self.stream.send_data(Bytes::new(), true)?;
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

impl Future for Pump {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().poll_pump(cx)
    }
}

/// An answer's body from an HTTP/2 upstream: its data (flow-control
/// capacity given back as it is read), then its trailers.
pub struct H2Body {
    recv: RecvStream,
    data_done: bool,
    /// What `content-length` says is left, if it says.
    left: Option<u64>,
}

impl H2Body {
    fn new(recv: RecvStream, left: Option<u64>) -> Self {
        H2Body {
            recv,
            data_done: false,
            left,
        }
    }
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = H2Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, H2Error>>> {
        let this = self.get_mut();
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    if let Some(left) = &mut this.left {
                        *left = left.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                // RFC 9113 section 8.1: a reset with NO_ERROR after the
                // answer means the upstream has all it needs: not a failure.
                Some(Err(e)) if e.reason() == Some(Reason::NO_ERROR) => return Poll::Ready(None),
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => this.data_done = true,
            }
        }
        match ready!(this.recv.poll_trailers(cx)) {
            Ok(t) => Poll::Ready(t.map(|t| Ok(Frame::trailers(t)))),
            Err(e) if e.reason() == Some(Reason::NO_ERROR) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.left {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests;
