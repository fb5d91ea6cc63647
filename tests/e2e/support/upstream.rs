//! A test upstream with behaviours chosen by path, on 127.0.0.1:0. It stops
//! when dropped.
//!
//! - `/health`: 200 (or the status set with `set_health`)
//! - `/headers`: the request's headers as JSON
//! - `/delay/MS`: answers after MS milliseconds
//! - `/bytes/N`: streams N bytes in 64 KiB chunks (never buffered whole)
//! - `/drip/N`: streams N chunks of `tick\n`, 100 ms apart
//! - `/upload`: reads the body as it streams in, answers its length
//! - `/status/CODE`: answers CODE
//! - `/ws`: a WebSocket echo session (closed when the upstream stops)
//! - `/metrics`: Prometheus text: `served_total` (requests on the default
//!   paths) and `orders_total`, a business counter that counts the same
//!   requests until `stop_orders` (answers stay 200)
//! - anything else: 200 with the instance name
//!
//! Every answer carries `x-upstream: NAME` and `x-upstream-http: HTTP/1.1`
//! (or `HTTP/2.0`, the version it was asked in). Every request's
//! `x-request-id` header is recorded, so tests can count deliveries.

use bytes::Bytes;
use futures_util::stream;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub type TestBody = BoxBody<Bytes, Infallible>;

pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    pub state: Arc<State>,
    stop: CancellationToken,
}

#[derive(Default)]
pub struct State {
    pub requests: AtomicU64,
    /// The business counter of `/metrics`; frozen by `stop_orders`.
    pub orders: AtomicU64,
    pub orders_stopped: std::sync::atomic::AtomicBool,
    pub health_status: AtomicU16,
    /// Status answered on every non-health path when non-zero.
    pub force_status: AtomicU16,
    /// Share (in 1/10000) of default-path requests answered with 500.
    pub failure_bp: AtomicU32,
    /// Every n-th default-path request is answered with 500 (0: none).
    pub failure_every: AtomicU64,
    /// Default-path requests so far (what `failure_every` counts).
    pub default_path: AtomicU64,
    /// Delay added to every default-path answer, in milliseconds.
    pub delay_ms: AtomicU64,
    pub request_ids: Mutex<Vec<String>>,
    /// Every `x-request-id` with its method and arrival time.
    pub arrivals: Mutex<Vec<(String, http::Method, tokio::time::Instant)>>,
    /// `/gate` answers 503 until this many ms after its first request (0: always 200).
    pub gate_open_after_ms: AtomicU64,
    pub gate_first_hit: Mutex<Option<tokio::time::Instant>>,
    /// WebSocket sessions open now.
    pub ws_open: AtomicI64,
    /// Cancelled by `stop`: ends the accept loop and every connection.
    pub stopped: CancellationToken,
}

impl Upstream {
    pub async fn start(name: &str) -> Upstream {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(name: &str, addr: SocketAddr) -> Upstream {
        Self::start_with(name, addr, None).await
    }

    /// An upstream serving over TLS (HTTP/1.1 or HTTP/2 by ALPN).
    pub async fn start_tls(name: &str, tls: tokio_rustls::TlsAcceptor) -> Upstream {
        Self::start_with(name, "127.0.0.1:0".parse().unwrap(), Some(tls)).await
    }

    async fn start_with(
        name: &str,
        addr: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Upstream {
        let listener = TcpListener::bind(addr).await.expect("bind test upstream");
        Self::serve(name, listener, tls)
    }

    /// Start again on the address of one that was stopped, once the old
    /// listener has let go of it (at most 5 s).
    pub async fn restart_on(name: &str, addr: SocketAddr) -> Upstream {
        let end = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        loop {
            tick.tick().await;
            match TcpListener::bind(addr).await {
                Ok(l) => return Self::serve(name, l, None),
                Err(e) => assert!(
                    tokio::time::Instant::now() < end,
                    "cannot bind {addr} again: {e}"
                ),
            }
        }
    }

    fn serve(
        name: &str,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Upstream {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        state.health_status.store(200, Ordering::Relaxed);
        let stop = state.stopped.clone();
        let (st, token, nm) = (state.clone(), stop.clone(), name.to_string());
        tokio::spawn(async move {
            let graceful = hyper_util::server::graceful::GracefulShutdown::new();
            loop {
                let (stream, _) = tokio::select! {
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                    _ = token.cancelled() => break,
                };
                let (st, nm) = (st.clone(), nm.clone());
                let conn_token = token.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (st, nm) = (st.clone(), nm.clone());
                        let version = format!("{:?}", req.version());
                        async move {
                            let mut r = answer(req, &st, &nm).await;
                            r.headers_mut()
                                .insert("x-upstream-http", version.parse().unwrap());
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let conn =
                                builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                            tokio::select! {
                                _ = conn => {}
                                _ = conn_token.cancelled() => {}
                            }
                        }
                        Some(tls) => {
                            let Ok(stream) = tls.accept(stream).await else {
                                return; // e.g. the proxy refused our certificate
                            };
                            let conn =
                                builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                            tokio::select! {
                                _ = conn => {}
                                _ = conn_token.cancelled() => {}
                            }
                        }
                    }
                });
            }
            drop(graceful);
        });
        Upstream {
            name: name.to_string(),
            addr,
            state,
            stop,
        }
    }

    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    pub fn set_health(&self, status: u16) {
        self.state.health_status.store(status, Ordering::Relaxed);
    }

    pub fn force_status(&self, status: u16) {
        self.state.force_status.store(status, Ordering::Relaxed);
    }

    /// Answer 500 to `rate` (0.0..=1.0) of default-path requests.
    pub fn set_failure_rate(&self, rate: f64) {
        let bp = (rate.clamp(0.0, 1.0) * 10_000.0).round() as u32;
        self.state.failure_bp.store(bp, Ordering::Relaxed);
    }

    /// Answer 500 to exactly every `n`-th default-path request from now on
    /// (0: none): a failure rate with no chance in it.
    pub fn set_failure_every(&self, n: u64) {
        self.state.failure_every.store(n, Ordering::Relaxed);
    }

    /// Delay every default-path answer by `ms`.
    pub fn set_delay_ms(&self, ms: u64) {
        self.state.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// `orders_total` stops increasing; every answer stays as it was.
    pub fn stop_orders(&self) {
        self.state.orders_stopped.store(true, Ordering::Relaxed);
    }

    /// `/gate` opens `ms` after its first poll; `u64::MAX`: never.
    pub fn set_gate_open_after(&self, ms: u64) {
        self.state.gate_open_after_ms.store(ms, Ordering::Relaxed);
    }

    pub fn arrivals(&self) -> Vec<(String, http::Method, tokio::time::Instant)> {
        self.state.arrivals.lock().unwrap().clone()
    }

    pub fn ws_open(&self) -> i64 {
        self.state.ws_open.load(Ordering::Relaxed)
    }

    pub fn request_ids(&self) -> Vec<String> {
        self.state.request_ids.lock().unwrap().clone()
    }

    /// Stop listening and close every connection.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn full(status: StatusCode, name: &str, body: impl Into<Bytes>) -> Response<TestBody> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert("x-upstream", name.parse().unwrap());
    r
}

async fn answer(req: Request<Incoming>, st: &Arc<State>, name: &str) -> Response<TestBody> {
    let path = req.uri().path().to_string();
    if path == "/gate" {
        let after = st.gate_open_after_ms.load(Ordering::Relaxed);
        let first = *st
            .gate_first_hit
            .lock()
            .unwrap()
            .get_or_insert_with(tokio::time::Instant::now);
        let open = after != u64::MAX && first.elapsed() >= Duration::from_millis(after);
        let code = if open {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return full(code, name, "gate\n");
    }
    if path == "/health" {
        let code = st.health_status.load(Ordering::Relaxed);
        return full(StatusCode::from_u16(code).unwrap(), name, "health\n");
    }
    if path == "/ws" {
        return websocket(req, st.clone(), name);
    }
    if path == "/metrics" {
        let (served, orders) = (
            st.requests.load(Ordering::Relaxed),
            st.orders.load(Ordering::Relaxed),
        );
        let text = format!("# TYPE served_total counter\nserved_total {served}\n# TYPE orders_total counter\norders_total {orders}\n");
        return full(StatusCode::OK, name, text);
    }
    st.requests.fetch_add(1, Ordering::Relaxed);
    if !st.orders_stopped.load(Ordering::Relaxed) {
        st.orders.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(id) = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
    {
        st.request_ids.lock().unwrap().push(id.to_string());
        st.arrivals.lock().unwrap().push((
            id.to_string(),
            req.method().clone(),
            tokio::time::Instant::now(),
        ));
    }
    let forced = st.force_status.load(Ordering::Relaxed);
    if forced != 0 {
        return full(StatusCode::from_u16(forced).unwrap(), name, "forced\n");
    }
    let mut segs = path.trim_start_matches('/').splitn(2, '/');
    match (segs.next().unwrap_or(""), segs.next()) {
        ("headers", _) => {
            let map: serde_json::Map<String, serde_json::Value> = req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        serde_json::Value::String(v.to_str().unwrap_or("").into()),
                    )
                })
                .collect();
            let mut r = full(StatusCode::OK, name, serde_json::to_vec(&map).unwrap());
            r.headers_mut()
                .insert("connection", "x-hop-secret".parse().unwrap());
            r.headers_mut().insert("x-hop-secret", "1".parse().unwrap());
            r
        }
        ("delay", Some(ms)) => {
            let ms: u64 = ms.parse().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            full(StatusCode::OK, name, format!("{name} after {ms}ms\n"))
        }
        ("bytes", Some(n)) => {
            let total: usize = n.parse().unwrap_or(0);
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let chunks = stream::iter((0..total.div_ceil(chunk.len())).map(move |i| {
                let len = chunk.len().min(total - i * chunk.len());
                Ok::<_, Infallible>(Frame::data(chunk.slice(0..len)))
            }));
            let mut r = Response::new(BodyExt::boxed(StreamBody::new(chunks)));
            r.headers_mut().insert("x-upstream", name.parse().unwrap());
            r
        }
        ("drip", Some(n)) => {
            // N small chunks, 100 ms apart: a long-lived stream (SSE-like).
            let total: u64 = n.parse().unwrap_or(0);
            // Paced by an interval (its first tick is at once), not slept.
            let pace = tokio::time::interval(Duration::from_millis(100));
            let chunks = stream::unfold((0u64, pace), move |(i, mut pace)| async move {
                if i == total {
                    return None;
                }
                pace.tick().await;
                let chunk = Ok::<_, Infallible>(Frame::data(Bytes::from("tick\n")));
                Some((chunk, (i + 1, pace)))
            });
            let mut r = Response::new(BodyExt::boxed(StreamBody::new(chunks)));
            r.headers_mut().insert("x-upstream", name.parse().unwrap());
            r
        }
        ("upload", _) => {
            let mut body = req.into_body();
            let mut n = 0usize;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => n += f.data_ref().map(|d| d.len()).unwrap_or(0),
                    Err(_) => return full(StatusCode::BAD_REQUEST, name, "broken body\n"),
                }
            }
            full(StatusCode::OK, name, n.to_string())
        }
        ("status", Some(code)) => {
            let code = code.parse().ok().and_then(|c| StatusCode::from_u16(c).ok());
            full(code.unwrap_or(StatusCode::BAD_REQUEST), name, "status\n")
        }
        _ => {
            let delay = st.delay_ms.load(Ordering::Relaxed);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            let nth = st.default_path.fetch_add(1, Ordering::Relaxed) + 1;
            let every = st.failure_every.load(Ordering::Relaxed);
            if (every > 0 && nth % every == 0)
                || fastrand::u32(0..10_000) < st.failure_bp.load(Ordering::Relaxed)
            {
                return full(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    name,
                    "injected failure\n",
                );
            }
            full(StatusCode::OK, name, format!("{name}\n"))
        }
    }
}

/// Accept a WebSocket handshake and echo every text and binary message.
fn websocket(mut req: Request<Incoming>, st: Arc<State>, name: &str) -> Response<TestBody> {
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::Role;
    let Some(key) = req.headers().get("sec-websocket-key") else {
        return full(StatusCode::BAD_REQUEST, name, "not a websocket handshake\n");
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        st.ws_open.fetch_add(1, Ordering::Relaxed);
        loop {
            let msg = tokio::select! {
                m = ws.next() => m,
                _ = st.stopped.cancelled() => None,
            };
            match msg {
                Some(Ok(m)) if m.is_text() || m.is_binary() => {
                    if ws.send(m).await.is_err() {
                        break;
                    }
                }
                Some(Ok(m)) if m.is_close() => break,
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
        st.ws_open.fetch_sub(1, Ordering::Relaxed);
    });
    let mut r = full(StatusCode::SWITCHING_PROTOCOLS, name, "");
    let h = r.headers_mut();
    h.insert("connection", "upgrade".parse().unwrap());
    h.insert("upgrade", "websocket".parse().unwrap());
    h.insert("sec-websocket-accept", accept.parse().unwrap());
    r
}

/// An address where nothing listens: connections are refused.
pub async fn refusing_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}
