//! The routing table: one immutable value holding everything a request needs.
//!
//! It is replaced whole by the controller and never mutated, so a request
//! sees the old split or the new one, never half. Health and in-flight counts
//! that change every moment live in atomics on the shared [`Endpoint`]s and
//! [`PoolRuntime`]s, so they do not force a rebuild.

use crate::config::{Cidr, Config, PoolName, UpstreamProtocol};
use crate::routing::drain::PoolDrain;
use crate::routing::draw::{Draw, ThreadDraw};
use crate::routing::sticky::Sticky;
use crate::routing::Weights;
use crate::telemetry::metrics::{InflightGauge, PoolMetrics, UpstreamErrorKind};
use crate::telemetry::stats::{Outcome, PoolStats};
use crate::upstream::{Connector, Endpoint, EndpointState};
use arc_swap::ArcSwap;
use http::HeaderName;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Per-pool figures that outlive every table generation and every reload:
/// the statistics window automatic rollback reads, the metric handles,
/// requests (and writes) in flight, failover and drain state.
pub struct PoolRuntime {
    pub name: PoolName,
    pub stats: PoolStats,
    pub metrics: PoolMetrics,
    pub drain: PoolDrain,
    /// The copies sent to this pool while it is the candidate (SPEC.md
    /// section 12): results, mismatches, learned noise.
    pub mirror: Arc<crate::telemetry::mirror::MirrorRecord>,
    inflight_writes: AtomicI64,
    failovers: AtomicU64,
    /// The last request meant for this pool went to the other one.
    failing_over: AtomicBool,
    /// The pool's endpoints in the table in force, for the ejection cap;
    /// set by the controller with each table.
    members: ArcSwap<Vec<Arc<Endpoint>>>,
}

impl std::fmt::Debug for PoolRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolRuntime")
            .field("name", &self.name)
            .finish()
    }
}

impl PoolRuntime {
    pub fn new(name: PoolName, window: Duration, metrics: PoolMetrics) -> Self {
        PoolRuntime {
            name,
            stats: PoolStats::new(window),
            mirror: Arc::new(crate::telemetry::mirror::MirrorRecord::new(
                window,
                metrics.mirror.clone(),
            )),
            metrics,
            drain: PoolDrain::default(),
            inflight_writes: AtomicI64::new(0),
            failovers: AtomicU64::new(0),
            failing_over: AtomicBool::new(false),
            members: ArcSwap::from_pointee(Vec::new()),
        }
    }

    /// The pool's endpoints from now on (the controller, with each table).
    pub fn set_members(&self, endpoints: &[Arc<Endpoint>]) {
        self.members.store(Arc::new(endpoints.to_vec()));
    }

    /// A failure of `ep`, one of this pool's endpoints: outlier detection
    /// ejects it after `outlier.threshold` in a row, unless that would put
    /// more than `max_ejection_percent` of the pool out at once (one may
    /// always go). Returns whether it was ejected now.
    pub fn record_failure(&self, ep: &Endpoint, now_ms: u64, outlier: Outlier) -> bool {
        ep.record_failure(now_ms, outlier.threshold, outlier.ejection_ms, || {
            self.may_eject(ep, now_ms, outlier.max_ejection_percent)
        })
    }

    /// Whether the cap leaves room to eject `ep` at `now_ms`. Only asked
    /// when a threshold is reached: a scan of a few endpoints.
    #[cold]
    fn may_eject(&self, ep: &Endpoint, now_ms: u64, max_percent: u32) -> bool {
        if max_percent == 0 {
            return false;
        }
        let members = self.members.load();
        let cap = (members.len() * max_percent as usize / 100).max(1);
        let out = members
            .iter()
            .filter(|m| !std::ptr::eq(&***m, ep) && m.ejected_until_ms() > now_ms)
            .count();
        if out >= cap {
            tracing::debug!(
                pool = %self.name,
                endpoint = %ep.address,
                ejected = out,
                "not ejected: outlier_detection.max_ejection_percent reached"
            );
            return false;
        }
        true
    }

    /// Requests in flight on this pool (upgraded connections included).
    pub fn inflight(&self) -> i64 {
        self.metrics.inflight_now()
    }

    /// Requests with unsafe methods in flight (what a write hold waits for).
    pub fn inflight_writes(&self) -> i64 {
        self.inflight_writes.load(Ordering::Relaxed)
    }

    /// A request starts; in flight until the returned guard drops and
    /// [`PoolRuntime::end_write`] is called for writes.
    #[inline]
    pub fn begin(&self, write: bool) -> InflightGauge {
        if write {
            self.inflight_writes.fetch_add(1, Ordering::Relaxed);
        }
        self.metrics.inflight()
    }

    #[inline]
    pub fn end_write(&self) {
        self.inflight_writes.fetch_sub(1, Ordering::Relaxed);
    }

    /// A request meant for this pool went to the other (no healthy endpoint
    /// here). Counted every time, logged once per transition; and an error
    /// in this pool's window, so a candidate whose every endpoint was ejected
    /// for failing is still rolled back (its requests going elsewhere would
    /// otherwise hide its failure from the judge).
    pub fn note_failover(&self) {
        self.note_unserved();
        self.failovers.fetch_add(1, Ordering::Relaxed);
        if !self.failing_over.load(Ordering::Relaxed)
            && !self.failing_over.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                pool = %self.name,
                to = %self.name.other(),
                "no available endpoint: failing over to the other pool"
            );
        }
    }

    /// A request meant for this pool found an endpoint here: any failover is
    /// over (logged once). One relaxed load when there was none.
    #[inline]
    pub fn note_served(&self) {
        if self.failing_over.load(Ordering::Relaxed)
            && self.failing_over.swap(false, Ordering::Relaxed)
        {
            tracing::info!(pool = %self.name, "endpoint available again: failover over");
        }
    }

    /// A request meant for this pool that it could not take (no available
    /// endpoint): an error in the rollback window, not a metric sample.
    #[cold]
    pub fn note_unserved(&self) {
        self.stats.record_unserved(crate::clock::now_ms());
    }

    pub fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    /// Did the last request meant for this pool fail over?
    pub fn is_failing_over(&self) -> bool {
        self.failing_over.load(Ordering::Relaxed)
    }

    /// One request's outcome: its status (None for a transport failure) and
    /// the time to response headers.
    #[inline]
    pub fn record_response(&self, status: Option<u16>, latency: Duration) {
        let outcome = match status {
            Some(s) => Outcome::Status(s),
            None => Outcome::TransportError,
        };
        self.stats.record(crate::clock::now_ms(), outcome, latency);
        self.metrics.record(outcome, latency);
    }

    /// An upstream failure of `kind`, for `switchyard_upstream_errors_total`.
    #[inline]
    pub fn record_error(&self, kind: UpstreamErrorKind) {
        self.metrics.upstream_error(kind);
    }
}

/// Settings a request needs, derived from the config once per table build.
#[derive(Debug, Clone)]
pub struct Settings {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// `timeouts.client_body`: the longest pause inside a request body.
    pub client_body_idle: Duration,
    pub upstream_idle_ms: u64,
    pub retry_attempts: u32,
    pub failover: bool,
    pub expose_pool_header: bool,
    pub override_header: Option<HeaderName>,
    /// Clients whose override header is honoured.
    pub override_trusted: Vec<Cidr>,
    pub sticky: Option<Sticky>,
    pub outlier: Outlier,
    /// `log.access_log`: one line per request (target `switchyard::access`).
    pub access_log: bool,
    /// Fleet mode: set while this member is out of touch past
    /// `write_fence`; unsafe requests are refused. None for a single proxy.
    pub fence: Option<Arc<WriteFence>>,
    /// `mirror`: which requests are copied to the candidate; None when
    /// nothing is (`percent: 0`), which costs a request one branch.
    pub mirror: Option<Arc<crate::routing::mirror::MirrorPlan>>,
}

/// Whether unsafe requests are refused (fleet mode, SPEC.md section 9):
/// written by the fleet's contact ticker, read with one relaxed load per
/// write request.
#[derive(Debug, Default)]
pub struct WriteFence(std::sync::atomic::AtomicBool);

impl WriteFence {
    #[inline]
    pub fn is_up(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Raise (true) or lower the fence; whether it changed.
    pub fn set(&self, up: bool) -> bool {
        self.0.swap(up, std::sync::atomic::Ordering::Relaxed) != up
    }
}

impl Settings {
    /// May a request from `ip` choose its pool with the override header?
    #[inline]
    pub fn override_trusted(&self, ip: std::net::IpAddr) -> bool {
        self.override_trusted.iter().any(|c| c.contains(ip))
    }

    pub fn from_config(cfg: &Config) -> Self {
        Settings {
            connect_timeout: cfg.timeouts.connect,
            request_timeout: cfg.timeouts.request,
            client_body_idle: cfg.timeouts.client_body,
            upstream_idle_ms: cfg.timeouts.upstream_idle.as_millis() as u64,
            retry_attempts: cfg.retries.attempts,
            failover: cfg.traffic.failover,
            expose_pool_header: cfg.traffic.expose_pool_header,
            override_header: cfg
                .traffic
                .override_header
                .as_deref()
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
            override_trusted: cfg.traffic.override_trusted.clone(),
            sticky: cfg.traffic.sticky.as_ref().map(Sticky::from_config),
            outlier: Outlier {
                threshold: cfg.outlier_detection.consecutive_failures,
                ejection_ms: cfg.outlier_detection.ejection_time.as_millis() as u64,
                max_ejection_percent: cfg.outlier_detection.max_ejection_percent,
            },
            access_log: cfg.log.access_log,
            fence: None,
            mirror: crate::routing::mirror::MirrorPlan::from_config(&cfg.mirror),
        }
    }
}

/// `outlier_detection`, as the request path applies it.
#[derive(Debug, Clone, Copy)]
pub struct Outlier {
    /// Failures in a row that eject an endpoint.
    pub threshold: u32,
    pub ejection_ms: u64,
    pub max_ejection_percent: u32,
}

/// One pool as this table generation sees it.
#[derive(Debug)]
pub struct Pool {
    pub name: PoolName,
    pub endpoints: Vec<Arc<Endpoint>>,
    pub protocol: UpstreamProtocol,
    pub connector: Connector,
    pub runtime: Arc<PoolRuntime>,
}

impl Pool {
    /// Any endpoint that may take a request now?
    pub fn has_available(&self, now_ms: u64) -> bool {
        self.endpoints.iter().any(|e| e.is_available(now_ms))
    }

    /// Endpoints that passed their active checks and are neither ejected
    /// nor draining: what the cutover guard (`cutover.min_healthy`) and
    /// status count. An endpoint not yet checked (`unknown`) takes traffic
    /// but is not counted: a switch to a pool nobody has checked is refused.
    pub fn healthy_count(&self, now_ms: u64) -> usize {
        self.endpoints
            .iter()
            .filter(|e| e.state(now_ms) == EndpointState::Healthy)
            .count()
    }

    /// Power of two choices: of two random available endpoints not yet
    /// `tried` (bit i = endpoint i), the one with fewer requests in flight.
    #[inline]
    pub fn pick_endpoint(&self, now_ms: u64, tried: u64) -> Option<usize> {
        self.pick_endpoint_with(now_ms, tried, &mut ThreadDraw)
    }

    /// [`Pool::pick_endpoint`] with the two endpoints drawn from `draw`.
    #[inline]
    pub fn pick_endpoint_with(
        &self,
        now_ms: u64,
        tried: u64,
        draw: &mut impl Draw,
    ) -> Option<usize> {
        let n = self.endpoints.len();
        let ok = |i: usize| {
            (i >= 64 || tried & (1u64 << i) == 0) && self.endpoints[i].is_available(now_ms)
        };
        match n {
            0 => None,
            1 => ok(0).then_some(0),
            _ => {
                let a = draw.below(n);
                let mut b = draw.below(n - 1);
                if b >= a {
                    b += 1;
                }
                match (ok(a), ok(b)) {
                    (true, true) => {
                        if self.endpoints[b].inflight() < self.endpoints[a].inflight() {
                            Some(b)
                        } else {
                            Some(a)
                        }
                    }
                    (true, false) => Some(a),
                    (false, true) => Some(b),
                    (false, false) => (0..n).map(|k| (a + k) % n).find(|&i| ok(i)),
                }
            }
        }
    }
}

/// Everything a request needs, as one immutable snapshot.
#[derive(Debug)]
pub struct RoutingTable {
    /// Bumped by the controller on every published change.
    pub generation: u64,
    pub weights: Weights,
    /// The pool at 100 % before the current change.
    pub live: PoolName,
    pub pools: [Arc<Pool>; 2],
    pub settings: Arc<Settings>,
    /// Set while a switch holds writes: unsafe requests wait on it.
    pub hold: Option<Arc<crate::routing::Hold>>,
}

impl RoutingTable {
    #[inline]
    pub fn pool(&self, name: PoolName) -> &Arc<Pool> {
        &self.pools[name.index()]
    }

    pub fn candidate(&self) -> PoolName {
        self.live.other()
    }

    /// Every endpoint of both pools (what health checks reconcile against).
    pub fn endpoints(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        self.pools.iter().flat_map(|p| p.endpoints.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Pool {
        Pool {
            name: PoolName::Blue,
            endpoints: (0..n)
                .map(|i| {
                    Arc::new(
                        Endpoint::new(PoolName::Blue, &format!("127.0.0.1:{}", 1000 + i)).unwrap(),
                    )
                })
                .collect(),
            protocol: UpstreamProtocol::Http1,
            connector: Connector::new(Duration::from_secs(1)),
            runtime: Arc::new(PoolRuntime::new(
                PoolName::Blue,
                Duration::from_secs(10),
                crate::telemetry::metrics::Metrics::new()
                    .pool(PoolName::Blue)
                    .clone(),
            )),
        }
    }

    fn outlier(max_ejection_percent: u32) -> Outlier {
        Outlier {
            threshold: 2,
            ejection_ms: 1_000,
            max_ejection_percent,
        }
    }

    /// Fail `ep` `threshold` times in a row at `now`: ejected?
    fn fail(p: &Pool, ep: usize, now: u64, o: Outlier) -> bool {
        let mut ejected = false;
        for _ in 0..o.threshold {
            ejected |= p.runtime.record_failure(&p.endpoints[ep], now, o);
        }
        ejected
    }

    #[test]
    fn outlier_detection_never_ejects_past_its_share_of_the_pool() {
        // Two endpoints at 50 %: one may go, never both.
        let p = pool(2);
        p.runtime.set_members(&p.endpoints);
        let o = outlier(50);
        assert!(fail(&p, 0, 100, o));
        assert!(!fail(&p, 1, 100, o));
        assert_eq!(p.pick_endpoint(100, 0), Some(1));
        // The first one's ejection may still be extended...
        assert!(!fail(&p, 0, 200, o));
        assert!(p.endpoints[0].ejected_until_ms() > 1_100);
        // ... and once it is back, the other may go.
        assert!(fail(&p, 1, 1_300, o));
        assert!(!fail(&p, 0, 1_300, o));

        // Four at 50 %: two; one endpoint: it may always go (failover then
        // takes over); 0 %: none.
        let p = pool(4);
        p.runtime.set_members(&p.endpoints);
        let ejected: Vec<bool> = (0..4).map(|i| fail(&p, i, 100, o)).collect();
        assert_eq!(ejected, [true, true, false, false]);
        let p = pool(1);
        p.runtime.set_members(&p.endpoints);
        assert!(fail(&p, 0, 100, o));
        let p = pool(2);
        p.runtime.set_members(&p.endpoints);
        assert!(!fail(&p, 0, 100, outlier(0)));
        assert!(!fail(&p, 1, 100, outlier(0)));
    }

    #[test]
    fn picks_skip_unavailable_and_tried_endpoints() {
        let p = pool(3);
        p.endpoints[0].set_healthy(false);
        for _ in 0..200 {
            let i = p.pick_endpoint(0, 0).unwrap();
            assert_ne!(i, 0);
            let j = p.pick_endpoint(0, 1 << 1).unwrap();
            assert_eq!(j, 2);
        }
        assert_eq!(p.pick_endpoint(0, (1 << 1) | (1 << 2)), None);
        // Not yet checked: takes traffic, but is not counted healthy.
        assert_eq!(p.healthy_count(0), 0);
        p.endpoints[1].set_healthy(true);
        p.endpoints[2].set_healthy(true);
        assert_eq!(p.healthy_count(0), 2);
    }

    #[test]
    fn failover_is_counted_every_time_and_flagged_until_served() {
        let p = pool(1);
        assert!(!p.runtime.is_failing_over());
        p.runtime.note_failover();
        p.runtime.note_failover();
        assert_eq!(p.runtime.failovers(), 2);
        assert!(p.runtime.is_failing_over());
        p.runtime.note_served();
        assert!(!p.runtime.is_failing_over());
        assert_eq!(p.runtime.failovers(), 2);
        // Each one is an error in the pool's rollback window (no latency).
        let w = p
            .runtime
            .stats
            .window(crate::clock::now_ms(), std::time::Duration::from_secs(10));
        assert_eq!((w.requests, w.errors), (2, 2));
        p.runtime.note_unserved();
        let w = p
            .runtime
            .stats
            .window(crate::clock::now_ms(), std::time::Duration::from_secs(10));
        assert_eq!((w.requests, w.errors), (3, 3));
    }

    #[test]
    fn two_choices_prefer_fewer_in_flight() {
        let p = pool(2);
        for _ in 0..5 {
            p.endpoints[0].inflight_inc();
        }
        for _ in 0..100 {
            assert_eq!(p.pick_endpoint(0, 0), Some(1));
        }
    }
}
