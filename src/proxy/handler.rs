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
use crate::proxy::request_body::ClientBody;
use crate::proxy::ListenerCtx;
use crate::routing::drain::TunnelDrain;
use crate::routing::hold::WriteToken;
use crate::routing::{sticky, RoutingTable};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::IpAddr;

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
pub fn handle<'a>(
    req: Request<Incoming>,
    l: &'a ListenerCtx,
    client: &'a ClientAddr,
) -> impl std::future::Future<Output = Response<ProxyBody>> + Send + 'a {
    use futures_util::future::Either;
    let table = l.table.load_full();
    // Without the access log, the request's future is `serve`'s own: no
    // layer around it.
    if table.settings.access_log {
        Either::Left(logged(req, l, client, table))
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

async fn serve(
    mut req: Request<Incoming>,
    l: &ListenerCtx,
    client: &ClientAddr,
    mut table: std::sync::Arc<RoutingTable>,
    served: Option<&mut Served>,
) -> Response<ProxyBody> {
    if let Err(e) = crate::proxy::guard::check_request(&req, &l.limits) {
        tracing::debug!(error = %e, "request refused");
        return error_response(&e);
    }
    if matches!(*req.method(), Method::OPTIONS | Method::TRACE) {
        if let Some(answer) = crate::proxy::max_forwards::apply(&mut req) {
            return answer;
        }
    }
    let mut write_token = None;
    if !is_safe(req.method()) {
        // Count the write, then look again: a hold published meanwhile is seen.
        let mut waited = false;
        loop {
            if let (Some(hold), false) = (table.hold.clone(), waited) {
                let Some(ticket) = hold.enter() else {
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
            write_token = Some(token);
            break;
        }
    }
    match forward(req, l, client, &table, write_token, served).await {
        Ok(resp) => resp,
        Err(e) => {
            match &e {
                ProxyError::NoHealthyEndpoint | ProxyError::HoldQueueFull => {
                    tracing::debug!(error = %e, "request refused")
                }
                _ => tracing::warn!(error = %e, "request failed"),
            }
            error_response(&e)
        }
    }
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
                match v.as_bytes() {
                    b"blue" => return pinned(PoolName::Blue),
                    b"green" => return pinned(PoolName::Green),
                    _ => {}
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

async fn forward(
    req: Request<Incoming>,
    l: &ListenerCtx,
    client: &ClientAddr,
    table: &RoutingTable,
    mut write_token: Option<WriteToken>,
    mut served: Option<&mut Served>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let settings = &*table.settings;
    // The clock is read here and once more when the answer is in; the
    // rest of the first attempt goes by these two.
    let started = tokio::time::Instant::now();
    let now = crate::clock::ms_at(started.into_std());
    let choice = choose_pool(req.headers(), l, table, client.ip);
    let chosen = choice.pool;
    let mut pool = table.pool(chosen);
    let mut idx = match pool.pick_endpoint(now, 0) {
        Some(i) => {
            pool.runtime.note_served();
            i
        }
        None if !choice.pinned && settings.failover => {
            let other = table.pool(chosen.other());
            pool.runtime.note_failover();
            let i = other
                .pick_endpoint(now, 0)
                .ok_or(ProxyError::NoHealthyEndpoint)?;
            pool = other;
            i
        }
        None => {
            pool.runtime.note_unserved();
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

    let mut attempt_at = Some((now, started));
    let mut tried = 0u64;
    let mut retries_left = settings.retry_attempts;
    let mut stale_left = 2u32;
    loop {
        let ep = &pool.endpoints[idx];
        if idx < 64 {
            tried |= 1 << idx;
        }
        if let Some(s) = served.as_deref_mut() {
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
                client_upgrade.is_some(),
            )
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(pool = %pool.name, error = %e, "upstream connect failed");
                ep.record_failure(
                    crate::clock::now_ms(),
                    settings.outlier_threshold,
                    settings.ejection_ms,
                );
                pool.runtime
                    .record_error(crate::proxy::error::UpstreamErrorKind::Connect);
                if idempotent && retries_left > 0 {
                    if let Some(next) = pool.pick_endpoint(crate::clock::now_ms(), tried) {
                        retries_left -= 1;
                        idx = next;
                        continue;
                    }
                }
                pool.runtime.record_response(None, started.elapsed());
                return Err(e.into());
            }
        };

        let mut guard = InflightGuard::new(ep.clone(), pool.runtime.clone(), write);
        guard.write_token = write_token.take();
        let (keep, sent) = conn.send(req);
        guard.conn = keep;
        let result = tokio::time::timeout_at(at + settings.request_timeout, sent).await;
        let mut resp = match result {
            Ok(Ok(resp)) => resp,
            Ok(Err(mut e)) => {
                guard.conn = None;
                if let Some(unsent) = e.unsent.take() {
                    if stale_left > 0 {
                        // The pooled connection closed before the request was written.
                        stale_left -= 1;
                        req = unsent;
                        write_token = guard.write_token.take();
                        continue;
                    }
                }
                let err = match body_fate.as_deref() {
                    // An HTTP/2 upstream reports the body's failure as a reset.
                    Some(f) if f.stalled() => {
                        ProxyError::ClientBodyStalled(settings.client_body_idle)
                    }
                    Some(f) if f.broken() => ProxyError::ClientBody(e.error.into()),
                    _ => ProxyError::from_send(e.error),
                };
                if let Some(kind) = err.upstream_kind() {
                    ep.record_failure(
                        crate::clock::now_ms(),
                        settings.outlier_threshold,
                        settings.ejection_ms,
                    );
                    pool.runtime.record_error(kind);
                    pool.runtime.record_response(None, started.elapsed());
                } else {
                    // A broken or stalled client body says nothing about the
                    // upstream: no ejection, no rollback verdict from it.
                    let status = crate::proxy::error::status_of(&err).0;
                    pool.runtime
                        .record_response(Some(status.as_u16()), started.elapsed());
                }
                return Err(err);
            }
            Err(_elapsed) => {
                // Dropping the connection cancels the exchange and closes it.
                guard.conn = None;
                ep.record_failure(
                    crate::clock::now_ms(),
                    settings.outlier_threshold,
                    settings.ejection_ms,
                );
                pool.runtime
                    .record_error(crate::proxy::error::UpstreamErrorKind::Timeout);
                pool.runtime.record_response(None, started.elapsed());
                return Err(ProxyError::Timeout(settings.request_timeout));
            }
        };

        let status = resp.status();
        pool.runtime
            .record_response(Some(status.as_u16()), started.elapsed());
        if status.is_server_error() {
            ep.record_failure(
                crate::clock::now_ms(),
                settings.outlier_threshold,
                settings.ejection_ms,
            );
        }
        // Success is recorded when the body has been read whole: a reset
        // mid-body is a failure like one before the head.
        guard.passive = Some(Passive {
            threshold: settings.outlier_threshold,
            ejection_ms: settings.ejection_ms,
            head_ok: !status.is_server_error(),
            client_body: body_fate.clone(),
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
        if let (Some(bucket), Some(st)) = (choice.new_bucket, &settings.sticky) {
            if let Some(v) = st.set_cookie(bucket, l.tls) {
                rparts.headers.append(header::SET_COOKIE, v);
            }
        }
        let body = match (client_upgrade, upstream_upgrade) {
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
        return Ok(Response::from_parts(rparts, body));
    }
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
