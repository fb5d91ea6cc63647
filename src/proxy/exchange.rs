//! One exchange with an upstream: send the prepared request on a pooled
//! connection (retrying where that is safe), wait for the answer within
//! `timeouts.request`, and turn it into the client's response: head
//! rewritten, body streamed, or the connection tunnelled on an upgrade.
//!
//! Retries happen only for idempotent methods and only when the request
//! never reached an upstream (connect failure), plus the one case hyper
//! proves unsent: a pooled connection that closed just as it was reused.
//! Every outcome is recorded through [`outcome::record`]; nothing here
//! chooses a pool (the route decision did).

use crate::config::{PoolName, UpstreamProtocol};
use crate::proxy::body::{InflightGuard, Passive, ProxyBody};
use crate::proxy::error::{ProxyError, UpstreamErrorKind};
use crate::proxy::handler::{failed, Served, X_SWITCHYARD_POOL};
use crate::proxy::headers;
use crate::proxy::mirror::tap::LiveTap;
use crate::proxy::outcome::{self, Outcome};
use crate::proxy::ListenerCtx;
use crate::routing::drain::TunnelDrain;
use crate::routing::hold::WriteToken;
use crate::routing::{Pool, RoutingTable, Settings};
use crate::upstream::connector::UpstreamBody;
use crate::upstream::request_body::{BodyFate, ClientBody};
use crate::upstream::Endpoint;
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A request ready to go upstream: its pool and endpoint are chosen and
/// its head rewritten. Everything [`exchange`] needs, in one place.
pub(super) struct Prepared<'a> {
    pub(super) req: Request<ClientBody>,
    pub(super) table: Arc<RoutingTable>,
    pub(super) pool: PoolName,
    pub(super) idx: usize,
    pub(super) new_bucket: Option<u16>,
    pub(super) body_fate: Option<Arc<BodyFate>>,
    pub(super) write: bool,
    pub(super) idempotent: bool,
    pub(super) client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    /// When the request was taken up: the clock as a millisecond count
    /// ([`crate::clock::ms_at`]) and as an instant.
    pub(super) now: u64,
    pub(super) started: tokio::time::Instant,
    pub(super) write_token: Option<WriteToken>,
    pub(super) served: Option<&'a mut Served>,
    /// The request was copied to the candidate: the live answer is noted
    /// for the comparison (SPEC.md section 12).
    pub(super) mirror_tap: Option<Box<LiveTap>>,
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
pub(super) fn exchange<'a>(
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
                    if p.idempotent && retries_left > 0 {
                        if let Some(next) = pool.pick_endpoint(crate::clock::now_ms(), tried) {
                            let kind = UpstreamErrorKind::Connect;
                            let retried = Outcome::Retried { endpoint: ep, kind };
                            outcome::record(&pool.runtime, settings.outlier, retried);
                            retries_left -= 1;
                            p.idx = next;
                            continue;
                        }
                    }
                    return fail(pool, settings, ep, p.started, e.into());
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
                    let error = match p.body_fate.as_deref() {
                        // An HTTP/2 upstream reports the body's failure as a reset.
                        Some(f) if f.stalled() => {
                            ProxyError::ClientBodyStalled(settings.client_body_idle)
                        }
                        Some(f) if f.broken() => ProxyError::ClientBody(e.error.into()),
                        _ => ProxyError::from_send(e.error),
                    };
                    return fail(pool, settings, ep, p.started, error);
                }
                None => {
                    // Dropping the connection cancels the exchange and closes it.
                    guard.conn = None;
                    let timeout = ProxyError::Timeout(settings.request_timeout);
                    return fail(pool, settings, ep, p.started, timeout);
                }
            };
            // The head is here: over TLS, let the other connections whose
            // answers came in the same wake-up read theirs first (see
            // `YieldOnce`).
            if l.tls {
                YieldOnce(false).await;
            }
            let answer = Answer {
                new_bucket: p.new_bucket,
                body_fate: p.body_fate.take(),
                client_upgrade: p.client_upgrade.take(),
                started: p.started,
                mirror_tap: p.mirror_tap.take(),
            };
            return respond(answer, settings, l, pool, ep, guard, resp);
        }
    }
}

/// The request failed on `ep`: recorded, logged and answered.
#[cold]
fn fail(
    pool: &Pool,
    settings: &Settings,
    ep: &Endpoint,
    started: tokio::time::Instant,
    error: ProxyError,
) -> Response<ProxyBody> {
    let failed_at = Outcome::Failed {
        endpoint: ep,
        error: &error,
        latency: started.elapsed(),
    };
    outcome::record(&pool.runtime, settings.outlier, failed_at);
    failed(&error)
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

/// Pending once (the task woken at once, so it goes to the back of the
/// runtime's queue), then ready: the exchanges whose upstream answers came
/// in together read them all before any client is written to, as HAProxy
/// does (all its reads of a wake-up, then all its writes).
///
/// Why: writing one client's answer, then reading the next upstream answer,
/// then writing again gives the client time to go idle between answers, so
/// each write wakes it anew. Waking a task on another CPU that has gone
/// idle is the costly part of a send (the scheduler's inter-processor
/// interrupt; in a virtual machine a hypercall, `kvm_kick_cpu`): in a
/// profile of the `tls` cell at a fixed rate it was about a third of the
/// proxy's CPU. Answers written back to back keep the client busy, woken
/// once per burst. The cost is one more poll of the connection's task per
/// request, ~1 100 instructions (`callgrind.sh`: 22 966 -> 24 047 per
/// request when it was on for cleartext too). Only TLS listeners take it:
/// there the proxy's work per answer (encryption) is long enough for the
/// client to go idle between answers, and at a fixed rate the proxy's CPU
/// for the same requests fell (median 1.29 -> 1.11 s over 6 rounds); on
/// cleartext HTTP/1 nothing was gained (`benches/compare/README.md`,
/// "Where the latency goes").
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// What [`respond`] takes of a [`Prepared`] request.
struct Answer {
    new_bucket: Option<u16>,
    body_fate: Option<Arc<BodyFate>>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    started: tokio::time::Instant,
    mirror_tap: Option<Box<LiveTap>>,
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
    let latency = p.started.elapsed();
    let outlier = settings.outlier;
    outcome::record(
        &pool.runtime,
        outlier,
        Outcome::Answered {
            endpoint: ep,
            status,
            latency,
        },
    );
    // Success is recorded when the body has been read whole: a reset
    // mid-body is a failure like one before the head.
    guard.passive = Some(Passive {
        outlier,
        head_ok: !status.is_server_error(),
        client_body: p.body_fate,
    });
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    let upstream_upgrade = switching.then(|| hyper::upgrade::on(&mut resp));
    let (mut rparts, rbody) = resp.into_parts();
    let mut tap = p.mirror_tap;
    if let Some(t) = &mut tap {
        t.head(status.as_u16(), &rparts.headers);
    }
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
            outcome::record(&pool.runtime, outlier, Outcome::Upgraded { endpoint: ep });
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
        _ => ProxyBody::upstream(rbody, guard, tap),
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

#[cfg(test)]
mod tests {
    use super::YieldOnce;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn yield_once_is_pending_once_and_wakes_its_task_then_ready() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut y = YieldOnce(false);
        assert!(Pin::new(&mut y).poll(&mut cx).is_pending());
        assert_eq!(
            count.0.load(Ordering::Relaxed),
            1,
            "not woken: it would hang"
        );
        assert_eq!(Pin::new(&mut y).poll(&mut cx), Poll::Ready(()));
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
    }
}
