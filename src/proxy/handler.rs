//! The per-request path: load the routing table once, check the request,
//! ask [`crate::routing::decide()`] where it goes, act on the decision (hold,
//! refuse, or prepare the upstream request) and hand it to
//! [`exchange`](crate::proxy::exchange), which forwards it and streams the
//! answer back.
//!
//! No lock and one `ArcSwap` load per request (two for a write, which
//! counts itself against a hold being published; and for an HTTP/2 pool,
//! its endpoint's shared connection). This module chooses nothing itself:
//! the pool and endpoint come from the decision, and what became of the
//! request is recorded through [`crate::proxy::outcome`].

use crate::config::{PoolName, UpstreamProtocol};
use crate::proxy::body::ProxyBody;
use crate::proxy::error::{error_response, ProxyError};
use crate::proxy::exchange::{exchange, Prepared};
use crate::proxy::headers::{self, ClientAddr};
use crate::proxy::outcome;
use crate::proxy::ListenerCtx;
use crate::routing::draw::ThreadDraw;
use crate::routing::hold::{HeldTicket, WriteToken};
use crate::routing::{admit, decide, Access, Decision, Refusal, Route, RouteInput, RoutingTable};
use crate::upstream::request_body::ClientBody;
use futures_util::future::{ready, Either, Ready};
use http::{HeaderName, HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use std::future::Future;
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
/// synchronously, and only [`exchange`](crate::proxy::exchange) is a state machine. The rare paths
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
    let access = if is_safe(req.method()) {
        Access::Read
    } else {
        Access::Write
    };
    let (table, write_token) = admit(&l.table, &l.writes, table, access);
    let (decision, at) = decide_for(&req, l, client, &table, access);
    match decision {
        // Prepared straight into the exchange: one move of the request.
        Decision::Forward(route) => Either::Right(Either::Left(exchange(
            prepare(req, l, client, table, route, at, write_token, served),
            l,
        ))),
        Decision::Hold(ticket) => Either::Right(Either::Right(Box::pin(serve_held(
            req, l, client, ticket, served,
        )))),
        Decision::Refuse(refusal) => Either::Left(ready(refused(refusal))),
    }
}

/// Decide where the request goes under `table` and record the decision;
/// with it, the clock read once for the request: a millisecond count
/// ([`crate::clock::ms_at`]) and an instant. The rest of the first
/// attempt goes by these two, and one more read when the answer is in.
#[inline(always)]
fn decide_for(
    req: &Request<Incoming>,
    l: &ListenerCtx,
    client: &ClientAddr,
    table: &RoutingTable,
    access: Access,
) -> (Decision, (u64, tokio::time::Instant)) {
    let started = tokio::time::Instant::now();
    let now = crate::clock::ms_at(started.into_std());
    let input = RouteInput {
        access,
        preview: l.preview,
        headers: req.headers(),
        client_ip: client.ip,
        now_ms: now,
    };
    let decision = decide(table, &input, &mut ThreadDraw);
    outcome::record_decision(table, &decision);
    (decision, (now, started))
}

/// A write that met a hold: it waits for the switch to end, then goes to
/// whichever pool the table then names.
async fn serve_held(
    req: Request<Incoming>,
    l: &ListenerCtx,
    client: &ClientAddr,
    mut ticket: HeldTicket,
    served: Option<&mut Served>,
) -> Response<ProxyBody> {
    loop {
        ticket.wait().await;
        let table = l.table.load_full();
        let (table, token) = admit(&l.table, &l.writes, table, Access::Released);
        let (decision, at) = decide_for(&req, l, client, &table, Access::Released);
        match decision {
            Decision::Forward(route) => {
                let p = prepare(req, l, client, table, route, at, token, served);
                return exchange(p, l).await;
            }
            Decision::Refuse(refusal) => return refused(refusal),
            // Never decided for a released write; waiting again would do.
            Decision::Hold(again) => ticket = again,
        }
    }
}

/// The answer to a request the decision refused.
#[cold]
fn refused(refusal: Refusal) -> Response<ProxyBody> {
    failed(&match refusal {
        Refusal::NoEndpoint { .. } => ProxyError::NoHealthyEndpoint,
        Refusal::HoldQueueFull => ProxyError::HoldQueueFull,
        Refusal::Fenced => ProxyError::Fenced,
    })
}

/// The answer to a request that could not be served, logged by kind.
pub(super) fn failed(e: &ProxyError) -> Response<ProxyBody> {
    match e {
        ProxyError::NoHealthyEndpoint | ProxyError::HoldQueueFull | ProxyError::Fenced => {
            tracing::debug!(error = %e, "request refused")
        }
        _ => tracing::warn!(error = %e, "request failed"),
    }
    error_response(e)
}

/// Make the upstream request for a decided route: the head rewritten for
/// the pool's protocol, the body wrapped to be watched.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; a struct would be built only to be taken apart"
)]
fn prepare<'a>(
    req: Request<Incoming>,
    l: &ListenerCtx,
    client: &ClientAddr,
    table: Arc<RoutingTable>,
    route: Route,
    (now, started): (u64, tokio::time::Instant),
    write_token: Option<WriteToken>,
    served: Option<&'a mut Served>,
) -> Prepared<'a> {
    let settings = &*table.settings;
    let pool = table.pool(route.pool);
    let idx = route.endpoint;
    let (mut parts, body) = req.into_parts();
    let write = !is_safe(&parts.method);
    let idempotent = is_idempotent(&parts.method);
    if let Some(name) = &settings.override_header {
        parts.headers.remove(name);
    }
    let mut is_upgrade = headers::prepare_request(&mut parts, client, l.tls);
    let (body, mirror_tap) =
        crate::proxy::mirror::consider(&table, route.pool, &parts, body, is_upgrade, idx);
    let body = ClientBody::new(body, settings.client_body_idle);
    let body_fate = body.fate();
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
    Prepared {
        req,
        pool: route.pool,
        table,
        idx,
        new_bucket: route.new_bucket,
        body_fate,
        write,
        idempotent,
        client_upgrade,
        now,
        started,
        write_token,
        served,
        mirror_tap,
    }
}
