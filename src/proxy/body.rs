//! The response body the proxy sends: a short fixed text, or the upstream's
//! body streamed frame by frame (never buffered whole).
//!
//! When an upstream body has been read to its end, its connection goes back
//! to the endpoint's idle queue; when it is dropped early, the connection is
//! closed. Either way the in-flight counts are released exactly once.
//!
//! The body also settles the exchange for passive health ([`Passive`]): read
//! whole, it is the endpoint's success; broken by the upstream (a reset, a
//! connection closed early, bad chunking), it is a failure and an upstream
//! error of its kind, like one before the head. Dropped early by the client,
//! it is neither. Both are recorded through [`crate::proxy::outcome`].

use crate::proxy::mirror::tap::LiveTap;
use crate::proxy::outcome::{self, Outcome};
use crate::routing::hold::WriteToken;
use crate::routing::PoolRuntime;
use crate::telemetry::metrics::InflightGauge;
use crate::telemetry::metrics::UpstreamErrorKind;
use crate::upstream::request_body::BodyFate;
use crate::upstream::{Endpoint, UpstreamBody, UpstreamConn, UpstreamError};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// Releases a request's in-flight slot, and returns its connection for reuse
/// when the exchange completed cleanly.
pub struct InflightGuard {
    pub endpoint: Arc<Endpoint>,
    pub runtime: Arc<PoolRuntime>,
    pub write: bool,
    pub conn: Option<UpstreamConn>,
    /// For writes: counted in flight until the response ends.
    pub write_token: Option<WriteToken>,
    /// Set once the response head came: how the body's end counts.
    pub passive: Option<Passive>,
    _gauge: InflightGauge,
}

/// How the end of a response body counts for its endpoint's passive health.
pub struct Passive {
    /// `outlier_detection`.
    pub outlier: crate::routing::table::Outlier,
    /// The head was not already counted as a failure (a 5xx).
    pub head_ok: bool,
    /// The client's request body: when it failed, so did the exchange, and
    /// the upstream is not to blame.
    pub client_body: Option<Arc<BodyFate>>,
}

impl InflightGuard {
    pub fn new(endpoint: Arc<Endpoint>, runtime: Arc<PoolRuntime>, write: bool) -> Self {
        endpoint.inflight_inc();
        let gauge = runtime.begin(write);
        InflightGuard {
            endpoint,
            runtime,
            write,
            conn: None,
            write_token: None,
            passive: None,
            _gauge: gauge,
        }
    }

    /// The exchange is over and the connection may carry another request.
    fn release_conn(&mut self) {
        if let Some(passive) = &self.passive {
            let ended = Outcome::BodyEnded {
                endpoint: &self.endpoint,
                head_ok: passive.head_ok,
            };
            outcome::record(&self.runtime, passive.outlier, ended);
        }
        if let Some(conn) = self.conn.take() {
            self.endpoint.put_idle(conn, crate::clock::now_ms());
        }
    }

    /// The upstream broke the response body: count it like a failure before
    /// the head, unless the client's own request body broke the exchange.
    #[cold]
    fn body_failed(&self, err: &UpstreamError) {
        let Some(passive) = &self.passive else {
            return;
        };
        if passive.client_body.as_deref().is_some_and(BodyFate::failed) {
            return;
        }
        let kind = if err.is_protocol() {
            UpstreamErrorKind::Protocol
        } else {
            UpstreamErrorKind::Reset
        };
        tracing::warn!(error = %err, "upstream response body failed");
        let broken = Outcome::BodyBroken {
            endpoint: &self.endpoint,
            kind,
            head_ok: passive.head_ok,
        };
        outcome::record(&self.runtime, passive.outlier, broken);
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.endpoint.inflight_dec();
        if self.write {
            self.runtime.end_write();
        }
    }
}

pub struct UpstreamResponseBody {
    inner: UpstreamBody,
    guard: Option<InflightGuard>,
    /// Resolves at the drain deadline of the response's pool or endpoint.
    /// Made the first time the body waits on its upstream: a response read
    /// in one go (most) never needs it, a streaming one pays one allocation.
    drained: Option<Pin<Box<dyn Future<Output = ()> + Send + Sync>>>,
    /// The request was copied to the candidate: the body is noted as it
    /// streams and handed to the copy when it ends (never changed).
    tap: Option<Box<LiveTap>>,
}

impl UpstreamResponseBody {
    /// The body waits on its upstream: has the drain deadline come?
    #[cold]
    fn poll_drained(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(g) = &self.guard else { return false };
        let drained = self.drained.get_or_insert_with(|| {
            let pool = (**g.runtime.drain.tunnels_token()).clone();
            let endpoint = g.endpoint.drain_deadline().clone();
            Box::pin(async move {
                tokio::select! {
                    () = pool.cancelled() => {}
                    () = endpoint.cancelled() => {}
                }
            })
        });
        drained.as_mut().poll(cx).is_ready()
    }

    /// Note a frame for the copy's comparison; at the end, hand it over.
    #[cold]
    fn tap_frame(&mut self, res: &Poll<Option<Result<Frame<Bytes>, UpstreamError>>>) {
        match res {
            Poll::Ready(Some(Ok(f))) => {
                if let (Some(t), Some(data)) = (&mut self.tap, f.data_ref()) {
                    t.feed(data);
                }
                if self.inner.is_end_stream() {
                    if let Some(t) = self.tap.take() {
                        t.end();
                    }
                }
            }
            Poll::Ready(None) => {
                if let Some(t) = self.tap.take() {
                    t.end();
                }
            }
            Poll::Ready(Some(Err(_))) => self.tap = None,
            Poll::Pending => {}
        }
    }

    fn finish(&mut self) {
        if let Some(mut g) = self.guard.take() {
            if let Some(conn) = self.inner.take_conn() {
                g.conn = Some(conn);
            }
            g.release_conn();
        }
    }
}

impl Drop for UpstreamResponseBody {
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.finish();
        }
        // Otherwise the guard drops with its connection: closed, not reused.
    }
}

pub enum ProxyBody {
    Text(Option<Bytes>),
    Upstream(UpstreamResponseBody),
}

impl ProxyBody {
    pub fn text(s: &'static str) -> Self {
        ProxyBody::Text(Some(Bytes::from_static(s.as_bytes())))
    }

    pub fn empty() -> Self {
        ProxyBody::Text(None)
    }

    pub fn upstream(
        inner: UpstreamBody,
        guard: InflightGuard,
        mut tap: Option<Box<LiveTap>>,
    ) -> Self {
        if inner.is_end_stream() {
            // No frame will come (an empty body): the answer is whole now.
            if let Some(t) = tap.take() {
                t.end();
            }
        }
        ProxyBody::Upstream(UpstreamResponseBody {
            inner,
            guard: Some(guard),
            drained: None,
            tap,
        })
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = UpstreamError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        match self.get_mut() {
            ProxyBody::Text(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Upstream(u) => {
                let res = Pin::new(&mut u.inner).poll_frame(cx);
                if u.tap.is_some() {
                    u.tap_frame(&res);
                }
                match &res {
                    Poll::Ready(None) => u.finish(),
                    Poll::Ready(Some(Ok(_))) if u.inner.is_end_stream() => u.finish(),
                    Poll::Ready(Some(Err(e))) => {
                        if let Some(g) = u.guard.take() {
                            g.body_failed(e);
                        }
                    }
                    Poll::Pending if u.poll_drained(cx) => {
                        // SPEC.md section 5: in-flight work gets drain.timeout.
                        // The connection closes with the guard, and the
                        // upstream is not blamed.
                        tracing::info!(
                            endpoint = %u.guard.as_ref().map_or("", |g| g.endpoint.address.as_str()),
                            "response still streaming at the drain deadline: cut"
                        );
                        u.guard = None;
                        return Poll::Ready(Some(Err(UpstreamError::Drained)));
                    }
                    _ => {}
                }
                res
            }
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Text(b) => b.is_none(),
            ProxyBody::Upstream(u) => u.inner.is_end_stream(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Text(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ProxyBody::Text(None) => SizeHint::with_exact(0),
            ProxyBody::Upstream(u) => u.inner.size_hint(),
        }
    }
}
