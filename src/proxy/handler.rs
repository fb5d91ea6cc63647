//! The per-request path: load the routing table once, choose a pool and an
//! endpoint, forward through a pooled connection, stream the answer back.
//!
//! No lock and one `ArcSwap` load per request (two for an HTTP/2 pool: its
//! endpoint's shared connection). Retries happen only for idempotent
//! methods and only when the request never reached an upstream (connect
//! failure), plus the one case hyper proves unsent: a pooled connection that
//! closed just as it was reused.

use crate::config::{PoolName, PoolSelector, UpstreamProtocol};
use crate::proxy::body::{InflightGuard, Passive, ProxyBody};
use crate::proxy::error::{error_response, ProxyError};
use crate::proxy::headers::{self, ClientAddr};
use crate::proxy::ListenerCtx;
use crate::routing::drain::TunnelDrain;
use crate::routing::hold::WriteToken;
use crate::routing::{sticky, Pool, RoutingTable, Settings};
use crate::upstream::connector::UpstreamBody;
use crate::upstream::request_body::{BodyFate, ClientBody};
use crate::upstream::Endpoint;
use futures_util::future::{ready, Either, Ready};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

pub const X_SWITCHYARD_POOL: HeaderName = HeaderName::from_static("x-switchyard-pool");

/// Safe methods (RFC 9110 section 9.2.1): everything else is a write.
#[inline]
pub fn is_safe(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Idempotent methods (RFC 9110 section 9.2.2): the only ones ever retried.
#[inline]
pub fn is_idempotent(m: &Method) -> bool {
    is_safe(m) || matches!(*m, Method::PUT | Method::DELETE)
}

/// Where a request went, noted for the access log only.
#[derive(Default)]
pub struct Served {
    pub pool: Option<PoolName>,
    pub endpoint: Option<std::sync::Arc<crate::upstream::Endpoint>>,
}

/// Serve one request; never fails (errors become responses). With
/// `log.access_log`, one line per request once its response head is ready
/// (target `switchyard::access`); without, nothing of it is done.
///
/// The future is kept small, because it is moved (copied) as it is built
/// and handed to hyper: what can be decided before the first wait (the
/// checks, the pool and endpoint, the upstream request) is done here,
/// synchronously, and only [`exchange`] is a state machine. The rare paths
/// (the access log, a write arriving during a hold) are boxed.
pub fn handle<'a>(
    req: Request<Incoming>,
    l: &'a ListenerCtx,
    client: &'a ClientAddr,
) -> impl std::future::Future<Output = Response<ProxyBody>> + Send + 'a {
    let table = l.table.load_full();
    if table.settings.access_log {
        Either::Left(Box::pin(logged(req, l, client, table)))
    } else {
        Either::Right(serve(req, l, client, table, None))
    }
}

async fn logged(
    req: Request<Incoming>,
    l: &ListenerCtx,
    client: &ClientAddr,
    table: std::sync::Arc<RoutingTable>,
) -> Response<ProxyBody> {
    let started = std::time::Instant::now();
    let (method, target, version) = (req.method().clone(), req.uri().clone(), req.version());
    let mut served = Served::default();
    let resp = serve(req, l, client, table, Some(&mut served)).await;
    tracing::info!(
        target: "switchyard::access",
        client = %client.ip,
        method = %method,
        target = %target,
        version = ?version,
        status = resp.status().as_u16(),
        pool = served.pool.map_or("-", |p| p.as_str()),
        endpoint = served.endpoint.as_ref().map_or("-", |e| e.address.as_str()),
        ms = started.elapsed().as_secs_f64() * 1000.0,
    );
    resp
}

/// A request's answer: ready at once (refused, or no endpoint), the
/// exchange with an upstream, or (boxed) a write waiting out a hold.
type Serving<'a, X> = Either<
    Ready<Response<ProxyBody>>,
    Either<X, Pin<Box<dyn Future<Output = Response<ProxyBody>> + Send + 'a>>>,
>;

fn serve<'a>(
    mut req: Request<Incoming>,
    l: &'a ListenerCtx,
    client: &'a ClientAddr,
    table: Arc<RoutingTable>,
    served: Option<&'a mut Served>,
) -> Serving<'a, impl Future<Output = Response<ProxyBody>> + Send + 'a> {
    if let Err(e) = crate::proxy::limits::check_request(&req, &l.limits) {
        tracing::debug!(error = %e, "request refused");
        return Either::Left(ready(error_response(&e)));
    }
    if matches!(*req.method(), Method::OPTIONS | Method::TRACE) {
        if let Some(answer) = crate::proxy::max_forwards::apply(&mut req) {
            return Either::Left(ready(answer));
        }
    }
    let mut write_token = None;
    let mut table = table;
    if !is_safe(req.method()) {
        match enter_write(l, table) {
            Ok((token, now)) => {
                write_token = Some(token);
                table = now;
            }
            Err(held) => {
                return Either::Right(Either::Right(Box::pin(serve_held(
                    req, l, client, held, served,
                ))))
            }
        }
    }
    match prepare(req, l, client, table, write_token, served) {
        Ok(p) => Either::Right(Either::Left(exchange(p, l))),
        Err(e) => Either::Left(ready(failed(&e))),
    }
}

/// Counts a write on the table in force, unless a write hold is published:
/// then `Err` with the table that holds it.
fn enter_write(
    l: &ListenerCtx,
    table: Arc<RoutingTable>,
) -> Result<(WriteToken, Arc<RoutingTable>), Arc<RoutingTable>> {
    if table.hold.is_some() {
        return Err(table);
    }
    // Count the write, then look again: a hold published meanwhile is seen.
    let token = l.writes.enter();
    let again = l.table.load_full();
    if again.hold.is_some() {
        drop(token);
        return Err(again);
    }
    if again.generation != table.generation {
        return Ok((token, again));
    }
    Ok((token, table))
}

/// A write that met a hold: it waits (once) for the switch to end, then
/// goes to whichever pool the table then names.
async fn serve_held(
    req: Request<Incoming>,
    l: &ListenerCtx,
    client: &ClientAddr,
    mut table: Arc<RoutingTable>,
    served: Option<&mut Served>,
) -> Response<ProxyBody> {
    let mut waited = false;
    let token = loop {
        if let (Some(hold), false) = (table.hold.clone(), waited) {
            let Some(ticket) = hold.enter() else {
                // Counted where held writes wait: the live pool.
                table.pool(table.live).runtime.metrics.record_refused();
                return error_response(&ProxyError::HoldQueueFull);
            };
            ticket.wait().await;
            waited = true;
            table = l.table.load_full();
            continue;
        }
        let token = l.writes.enter();
        let again = l.table.load_full();
        if !waited && again.hold.is_some() {
            drop(token);
            table = again;
            continue;
        }
        if again.generation != table.generation {
            table = again;
        }
        break token;
    };
    match prepare(req, l, client, table, Some(token), served) {
        Ok(p) => exchange(p, l).await,
        Err(e) => failed(&e),
    }
}

/// The answer to a request that could not be served, logged by kind.
fn failed(e: &ProxyError) -> Response<ProxyBody> {
    match e {
        ProxyError::NoHealthyEndpoint | ProxyError::HoldQueueFull => {
            tracing::debug!(error = %e, "request refused")
        }
        _ => tracing::warn!(error = %e, "request failed"),
    }
    error_response(e)
}

/// The pool a request goes to, and how it was chosen.
struct Choice {
    pool: PoolName,
    /// A preview listener or a trusted override: no failover.
    pinned: bool,
    /// A sticky bucket given to a client that had none: set its cookie.
    new_bucket: Option<u16>,
}

/// SPEC.md section 4: a preview listener's pool, else a trusted override
/// header, else the sticky bucket, else a weighted random pick.
fn choose_pool(
    headers: &HeaderMap,
    l: &ListenerCtx,
    table: &RoutingTable,
    client_ip: IpAddr,
) -> Choice {
    let pinned = |pool| Choice {
        pool,
        pinned: true,
        new_bucket: None,
    };
    if let Some(sel) = l.preview {
        return pinned(match sel {
            PoolSelector::Blue => PoolName::Blue,
            PoolSelector::Green => PoolName::Green,
            PoolSelector::Candidate => table.candidate(),
        });
    }
    let settings = &*table.settings;
    if let Some(name) = &settings.override_header {
        if let Some(v) = headers.get(name) {
            if settings.override_trusted(client_ip) {
                // Any case, as header names: `GREEN` is not silently blue.
                let v = v.as_bytes();
                if v.eq_ignore_ascii_case(b"blue") {
                    return pinned(PoolName::Blue);
                }
                if v.eq_ignore_ascii_case(b"green") {
                    return pinned(PoolName::Green);
                }
            }
        }
    }
    if let Some(st) = &settings.sticky {
        let (bucket, new_bucket) =
            match sticky::bucket_from_cookies(headers.get_all(header::COOKIE), st.cookie_name()) {
                Some(b) => (b, None),
                None => {
                    let b = st.buckets.next();
                    (b, Some(b))
                }
            };
        return Choice {
            pool: sticky::pool_for(bucket, table.weights, table.live),
            pinned: false,
            new_bucket,
        };
    }
    Choice {
        pool: table.choose_pool(),
        pinned: false,
        new_bucket: None,
    }
}

/// A request ready to go upstream: its pool and endpoint are chosen and
/// its head rewritten. Everything [`exchange`] needs, in one place.
struct Prepared<'a> {
    req: Request<ClientBody>,
    table: Arc<RoutingTable>,
    pool: PoolName,
    idx: usize,
    new_bucket: Option<u16>,
    body_fate: Option<Arc<BodyFate>>,
    write: bool,
    idempotent: bool,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    /// When the request was taken up: the clock as a millisecond count
    /// ([`crate::clock::ms_at`]) and as an instant.
    now: u64,
    started: tokio::time::Instant,
    write_token: Option<WriteToken>,
    served: Option<&'a mut Served>,
}

/// Choose the pool and the endpoint, and make the upstream request.
fn prepare<'a>(
    req: Request<Incoming>,
    l: &ListenerCtx,
    client: &ClientAddr,
    table: Arc<RoutingTable>,
    write_token: Option<WriteToken>,
    served: Option<&'a mut Served>,
) -> Result<Prepared<'a>, ProxyError> {
    let settings = &*table.settings;
    // The clock is read here and once more when the answer is in; the
    // rest of the first attempt goes by these two.
    let started = tokio::time::Instant::now();
    let now = crate::clock::ms_at(started.into_std());
    let choice = choose_pool(req.headers(), l, &table, client.ip);
    let chosen = choice.pool;
    let mut pool = table.pool(chosen);
    let idx = match pool.pick_endpoint(now, 0) {
        Some(i) => {
            pool.runtime.note_served();
            i
        }
        None if !choice.pinned && settings.failover => {
            let other = table.pool(chosen.other());
            pool.runtime.note_failover();
            let Some(i) = other.pick_endpoint(now, 0) else {
                pool.runtime.metrics.record_refused();
                return Err(ProxyError::NoHealthyEndpoint);
            };
            pool = other;
            i
        }
        None => {
            pool.runtime.note_unserved();
            pool.runtime.metrics.record_refused();
            return Err(ProxyError::NoHealthyEndpoint);
        }
    };

    let (mut parts, body) = req.into_parts();
    let body = ClientBody::new(body, settings.client_body_idle);
    let body_fate = body.fate();
    let write = !is_safe(&parts.method);
    let idempotent = is_idempotent(&parts.method);
    if let Some(name) = &settings.override_header {
        parts.headers.remove(name);
    }
    let mut is_upgrade = headers::prepare_request(&mut parts, client, l.tls);
    if pool.protocol != UpstreamProtocol::H2
        && !http_body::Body::is_end_stream(&body)
        && http_body::Body::size_hint(&body).exact().is_none()
    {
        // A body of unknown length is sent chunked whatever the method: hyper
        // would send a GET's as empty, and the upstream would not read what
        // the proxy read.
        parts.headers.insert(
            http::header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
    if pool.protocol == UpstreamProtocol::H2 {
        headers::to_http2(
            &mut parts,
            pool.connector.scheme(),
            &pool.endpoints[idx].authority,
        );
        is_upgrade = false;
    }
    let mut req = Request::from_parts(parts, body);
    let client_upgrade = is_upgrade.then(|| hyper::upgrade::on(&mut req));
    let pool = pool.name;
    Ok(Prepared {
        req,
        table,
        pool,
        idx,
        new_bucket: choice.new_bucket,
        body_fate,
        write,
        idempotent,
        client_upgrade,
        now,
        started,
        write_token,
        served,
    })
}

/// Forward a prepared request (retrying where that is safe) and turn the
/// upstream's answer, or the failure, into the client's response.
///
/// Not an `async fn`: an async fn keeps its arguments and a moved copy of
/// them in its state, so `p` would be there twice. The block below uses
/// the captured `p` in place.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would store its argument twice"
)]
fn exchange<'a>(
    mut p: Prepared<'a>,
    l: &'a ListenerCtx,
) -> impl Future<Output = Response<ProxyBody>> + Send + 'a {
    async move {
        let table = &*p.table;
        let settings = &*table.settings;
        let pool = table.pool(p.pool);
        let mut attempt_at = Some((p.now, p.started));
        let mut tried = 0u64;
        let mut retries_left = settings.retry_attempts;
        let mut stale_left = 2u32;
        loop {
            let idx = p.idx;
            let ep = &pool.endpoints[idx];
            if idx < 64 {
                tried |= 1 << idx;
            }
            if let Some(s) = p.served.as_deref_mut() {
                s.pool = Some(pool.name);
                s.endpoint = Some(ep.clone());
            }
            // A retry (rare) reads the clock again: its timeout starts now.
            let (at_ms, at) = attempt_at.take().unwrap_or_else(|| {
                let at = tokio::time::Instant::now();
                (crate::clock::ms_at(at.into_std()), at)
            });
            let conn = match pool
                .connector
                .acquire(
                    ep,
                    at_ms,
                    settings.upstream_idle_ms,
                    p.client_upgrade.is_some(),
                )
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(pool = %pool.name, error = %e, "upstream connect failed");
                    pool.runtime
                        .record_failure(ep, crate::clock::now_ms(), settings.outlier);
                    pool.runtime
                        .record_error(crate::proxy::error::UpstreamErrorKind::Connect);
                    if p.idempotent && retries_left > 0 {
                        if let Some(next) = pool.pick_endpoint(crate::clock::now_ms(), tried) {
                            retries_left -= 1;
                            p.idx = next;
                            continue;
                        }
                    }
                    pool.runtime.record_response(None, p.started.elapsed());
                    return failed(&e.into());
                }
            };

            let mut guard = InflightGuard::new(ep.clone(), pool.runtime.clone(), p.write);
            guard.write_token = p.write_token.take();
            let (keep, sent) = conn.send(p.req);
            guard.conn = keep;
            let result = answer_in_time(
                sent,
                (at, at_ms),
                settings.request_timeout,
                p.body_fate.as_deref(),
            )
            .await;
            let resp = match result {
                Some(Ok(resp)) => resp,
                Some(Err(mut e)) => {
                    guard.conn = None;
                    if let Some(unsent) = e.unsent.take() {
                        if stale_left > 0 {
                            // The pooled connection closed before the request was written.
                            stale_left -= 1;
                            p.req = unsent;
                            p.write_token = guard.write_token.take();
                            continue;
                        }
                    }
                    let err = match p.body_fate.as_deref() {
                        // An HTTP/2 upstream reports the body's failure as a reset.
                        Some(f) if f.stalled() => {
                            ProxyError::ClientBodyStalled(settings.client_body_idle)
                        }
                        Some(f) if f.broken() => ProxyError::ClientBody(e.error.into()),
                        _ => ProxyError::from_send(e.error),
                    };
                    if let Some(kind) = err.upstream_kind() {
                        pool.runtime
                            .record_failure(ep, crate::clock::now_ms(), settings.outlier);
                        pool.runtime.record_error(kind);
                        pool.runtime.record_response(None, p.started.elapsed());
                    } else {
                        // A broken or stalled client body says nothing about the
                        // upstream: no ejection, no rollback verdict from it.
                        let status = crate::proxy::error::status_of(&err).0;
                        pool.runtime
                            .record_response(Some(status.as_u16()), p.started.elapsed());
                    }
                    return failed(&err);
                }
                None => {
                    // Dropping the connection cancels the exchange and closes it.
                    guard.conn = None;
                    pool.runtime
                        .record_failure(ep, crate::clock::now_ms(), settings.outlier);
                    pool.runtime
                        .record_error(crate::proxy::error::UpstreamErrorKind::Timeout);
                    pool.runtime.record_response(None, p.started.elapsed());
                    return failed(&ProxyError::Timeout(settings.request_timeout));
                }
            };
            let answer = Answer {
                new_bucket: p.new_bucket,
                body_fate: p.body_fate.take(),
                client_upgrade: p.client_upgrade.take(),
                started: p.started,
            };
            return respond(answer, settings, l, pool, ep, guard, resp);
        }
    }
}

pin_project_lite::pin_project! {
    /// The upstream's answer to a request sent at `at` (an instant and its
    /// [`crate::clock::ms_at`]), or `None` once it is late: `limit`
    /// (`timeouts.request`) after the request's end, which for a request
    /// with a body is when the body was read whole
    /// ([`BodyFate::upstream_deadline`]). A slow upload is the client's
    /// time, not the upstream's. Without a body, this is a plain timeout.
    struct InTime<'f, F> {
        #[pin]
        sent: F,
        #[pin]
        timer: tokio::time::Sleep,
        at: (tokio::time::Instant, u64),
        limit: std::time::Duration,
        fate: Option<&'f BodyFate>,
    }
}

fn answer_in_time<F: Future>(
    sent: F,
    at: (tokio::time::Instant, u64),
    limit: std::time::Duration,
    fate: Option<&BodyFate>,
) -> InTime<'_, F> {
    InTime {
        sent,
        timer: tokio::time::sleep_until(at.0 + limit),
        at,
        limit,
        fate,
    }
}

impl<F: Future> Future for InTime<'_, F> {
    type Output = Option<F::Output>;

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        let mut this = self.project();
        if let Poll::Ready(out) = this.sent.poll(cx) {
            return Poll::Ready(Some(out));
        }
        loop {
            std::task::ready!(this.timer.as_mut().poll(cx));
            let now = crate::clock::ms_at(tokio::time::Instant::now().into_std());
            let limit = this.limit.as_millis() as u64;
            let Some(due) = this.fate.and_then(|f| f.upstream_deadline(now, limit)) else {
                return Poll::Ready(None);
            };
            let (at, at_ms) = *this.at;
            let later = at + std::time::Duration::from_millis(due.saturating_sub(at_ms));
            this.timer.as_mut().reset(later);
        }
    }
}

/// What [`respond`] takes of a [`Prepared`] request.
struct Answer {
    new_bucket: Option<u16>,
    body_fate: Option<Arc<BodyFate>>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    started: tokio::time::Instant,
}

/// The client's response from the upstream's: outcome recorded, head
/// rewritten, the body streamed (or the connection tunnelled on an upgrade).
fn respond(
    p: Answer,
    settings: &Settings,
    l: &ListenerCtx,
    pool: &Pool,
    ep: &Arc<Endpoint>,
    mut guard: InflightGuard,
    mut resp: Response<UpstreamBody>,
) -> Response<ProxyBody> {
    let status = resp.status();
    pool.runtime
        .record_response(Some(status.as_u16()), p.started.elapsed());
    if status.is_server_error() {
        pool.runtime
            .record_failure(ep, crate::clock::now_ms(), settings.outlier);
    }
    // Success is recorded when the body has been read whole: a reset
    // mid-body is a failure like one before the head.
    guard.passive = Some(Passive {
        outlier: settings.outlier,
        head_ok: !status.is_server_error(),
        client_body: p.body_fate,
    });
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    let upstream_upgrade = switching.then(|| hyper::upgrade::on(&mut resp));
    let (mut rparts, rbody) = resp.into_parts();
    headers::prepare_response(&mut rparts.headers, switching);
    // RFC 9110 section 7.6.3: a proxy adds Via to what it forwards, in
    // both directions; here, the protocol the response came in.
    rparts.headers.append(
        header::VIA,
        HeaderValue::from_static(match pool.protocol {
            UpstreamProtocol::H2 => "2 switchyard",
            UpstreamProtocol::Http1 => "1.1 switchyard",
        }),
    );
    if settings.expose_pool_header {
        rparts.headers.insert(
            X_SWITCHYARD_POOL,
            HeaderValue::from_static(pool.name.as_str()),
        );
    }
    if let (Some(bucket), Some(st)) = (p.new_bucket, &settings.sticky) {
        if let Some(v) = st.set_cookie(bucket, l.tls) {
            rparts.headers.append(header::SET_COOKIE, v);
        }
    }
    let body = match (p.client_upgrade, upstream_upgrade) {
        (Some(client), Some(upstream)) => {
            guard.conn = None;
            ep.record_success();
            let drain = TunnelDrain::open(&pool.runtime, ep);
            l.tunnels.spawn(tunnel(
                client,
                upstream,
                guard,
                drain,
                l.tunnels_cancel.clone(),
            ));
            ProxyBody::empty()
        }
        _ => ProxyBody::upstream(rbody, guard),
    };
    Response::from_parts(rparts, body)
}

/// Copy bytes both ways between an upgraded client and upstream connection.
/// The request stays counted in flight on its pool until the tunnel closes:
/// at either end, at its pool's or endpoint's drain deadline, or at shutdown.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    guard: InflightGuard,
    drain: TunnelDrain,
    cancel: tokio_util::sync::CancellationToken,
) {
    let (c, u) = tokio::join!(client, upstream);
    let (c, u) = match (c, u) {
        (Ok(c), Ok(u)) => (c, u),
        (Err(e), _) | (_, Err(e)) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut c = TokioIo::new(c);
    let mut u = TokioIo::new(u);
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut c, &mut u) => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "upgraded connection ended with an error");
            }
        }
        _ = cancel.cancelled() => {
            tracing::debug!("upgraded connection closed by shutdown");
        }
        _ = drain.closed() => {
            tracing::debug!("upgraded connection closed by drain");
        }
    }
    drop(drain);
    drop(guard);
}
