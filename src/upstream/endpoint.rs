//! One upstream endpoint: its address, health state, requests in flight, and
//! its idle keep-alive connections (or its one shared HTTP/2 connection).
//!
//! Everything that changes while traffic flows is an atomic, so a health flip
//! or an in-flight count never rebuilds the routing table and never takes a
//! lock. An `Endpoint` is shared by `Arc` between table generations.
//!
//! Passive outlier detection lives here too: `consecutive_failures` 5xx or
//! transport errors in a row eject the endpoint for `ejection_time`; it then
//! returns **on probation**: its first failure ejects it again at once, its
//! first success ends the probation. An ejection wakes the endpoint's health
//! checker ([`Endpoint::ejected`]), which reports it and its end.

use super::idle::IdlePool;
use crate::config::PoolName;
use crate::upstream::connector::UpstreamConn;
use arc_swap::ArcSwapOption;
use http::uri::Authority;
use std::sync::atomic::{
    AtomicBool, AtomicI64, AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering,
};
use std::sync::Arc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How many idle keep-alive connections one endpoint keeps at most. Above
/// the requests a busy endpoint has in flight: at 256, 512 HTTP/2 streams
/// from clients closed half their upstream connections when given back and
/// reopened them on the next burst (one request in ten on a new connection,
/// the matrix's h2 cell at 0.69x HAProxy's requests per CPU-second; 1.15x
/// at 1024). Surplus still goes by `IdlePool::trim` and the idle timeout.
///
/// A bound, not an allocation: the idle slots are allocated as they fill,
/// in blocks of 31 (`IdlePool::BLOCK_BYTES`, 1248 bytes: 40 per slot, an
/// HTTP/1.1 connection being boxed), and freed as they are read through.
/// An endpoint never given a connection back (an HTTP/2 pool's) holds none,
/// one at rest one or two blocks, a full one 34 or 35 (43 KiB at most). With all 1024
/// slots up front (`ArrayQueue`, 40 KiB per endpoint) a proxy at rest was
/// 23 MB resident with 200 endpoints and 113 MB with 2000; now 13 MB and
/// 24 MB (release build; issue 22's notes, `segpool`).
const IDLE_CAPACITY: usize = 1024;

/// The state an endpoint shows in status and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointState {
    /// Not checked yet; serves until proven unhealthy.
    Unknown,
    Healthy,
    Unhealthy,
    /// Ejected by passive outlier detection until its ejection time passes.
    Ejected,
    /// Removed by a reload, or drained by an operator for maintenance
    /// (`POST /api/v1/endpoints/{address}/drain`): finishing what is in
    /// flight, taking nothing new.
    Draining,
}

impl EndpointState {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointState::Unknown => "unknown",
            EndpointState::Healthy => "healthy",
            EndpointState::Unhealthy => "unhealthy",
            EndpointState::Ejected => "ejected",
            EndpointState::Draining => "draining",
        }
    }
}

const HEALTH_UNKNOWN: u8 = 0;
const HEALTH_UP: u8 = 1;
const HEALTH_DOWN: u8 = 2;

/// Bits of `Endpoint::draining`: why it takes no new request. Two reasons
/// in one atomic, so the hot path's availability test stays one load.
/// Removed from the config by a reload (for good: a re-added address is a
/// new endpoint).
const DRAIN_REMOVED: u8 = 1;
/// Drained by an operator; `enable` clears it. Survives reloads, since the
/// endpoint is carried over while its address stays in the config.
const DRAIN_MAINTENANCE: u8 = 2;

/// What the last active health check saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckResult {
    /// The upstream answered with this status.
    Status(u16),
    /// No TCP connection (refused, unreachable).
    ConnectFailed,
    /// No response headers within `health_check.timeout`.
    TimedOut,
    /// The connection broke or the answer was not HTTP.
    ProtocolError,
}

impl CheckResult {
    // Statuses are 100..=599; the other results use codes below 100.
    fn encode(self) -> u16 {
        match self {
            CheckResult::Status(s) => s,
            CheckResult::ConnectFailed => 1,
            CheckResult::TimedOut => 2,
            CheckResult::ProtocolError => 3,
        }
    }

    fn decode(code: u16) -> Self {
        match code {
            1 => CheckResult::ConnectFailed,
            2 => CheckResult::TimedOut,
            3 => CheckResult::ProtocolError,
            s => CheckResult::Status(s),
        }
    }
}

impl std::fmt::Display for CheckResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckResult::Status(s) => write!(f, "status {s}"),
            CheckResult::ConnectFailed => f.write_str("connect failed"),
            CheckResult::TimedOut => f.write_str("timed out"),
            CheckResult::ProtocolError => f.write_str("protocol error"),
        }
    }
}

pub struct Endpoint {
    pub pool: PoolName,
    /// The address as configured, e.g. `127.0.0.1:8001`.
    pub address: String,
    pub authority: Authority,
    /// Result of active health checks: unknown, up or down.
    health: AtomicU8,
    /// Passive outlier detection: failures in a row, and ejection deadline (0 = none).
    consecutive_failures: AtomicU32,
    ejected_until_ms: AtomicU64,
    /// Set by an ejection, cleared by the next success.
    probation: AtomicBool,
    /// Woken when passive detection ejects the endpoint.
    ejection: Notify,
    /// [`DRAIN_REMOVED`] | [`DRAIN_MAINTENANCE`]; 0 while it may serve.
    draining: AtomicU8,
    /// Cancelled when a removed endpoint's drain time is over: closes its
    /// upgraded connections.
    drain_deadline: CancellationToken,
    inflight: AtomicI64,
    /// The most requests in flight at once since the last idle sweep.
    peak_inflight: AtomicI64,
    /// The peaks of the last few sweeps (the sweeper's alone).
    recent_peaks: std::sync::Mutex<PeakWindow>,
    /// Unix milliseconds of the last active check (0 = never).
    last_check_unix_ms: AtomicU64,
    last_check_ok: AtomicBool,
    last_check_result: AtomicU16,
    idle: IdlePool<UpstreamConn>,
    /// The HTTP/2 connection every request of an `h2` pool shares.
    shared: ArcSwapOption<UpstreamConn>,
    /// When a request last took the shared connection ([`crate::clock::now_ms`]).
    shared_used_ms: AtomicU64,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("pool", &self.pool)
            .field("address", &self.address)
            .finish()
    }
}

impl Endpoint {
    /// `address` must already be validated as `host:port`.
    pub fn new(pool: PoolName, address: &str) -> Result<Self, http::uri::InvalidUri> {
        Ok(Endpoint {
            pool,
            address: address.to_string(),
            authority: address.parse()?,
            health: AtomicU8::new(HEALTH_UNKNOWN),
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            probation: AtomicBool::new(false),
            ejection: Notify::new(),
            draining: AtomicU8::new(0),
            drain_deadline: CancellationToken::new(),
            inflight: AtomicI64::new(0),
            peak_inflight: AtomicI64::new(0),
            recent_peaks: std::sync::Mutex::new(PeakWindow::default()),
            last_check_unix_ms: AtomicU64::new(0),
            last_check_ok: AtomicBool::new(false),
            last_check_result: AtomicU16::new(0),
            idle: IdlePool::new(IDLE_CAPACITY),
            shared: ArcSwapOption::const_empty(),
            shared_used_ms: AtomicU64::new(0),
        })
    }

    /// May a new request be sent here at `now_ms` (monotonic clock)?
    #[inline]
    pub fn is_available(&self, now_ms: u64) -> bool {
        self.health.load(Ordering::Relaxed) != HEALTH_DOWN
            && self.draining.load(Ordering::Relaxed) == 0
            && self.ejected_until_ms.load(Ordering::Relaxed) <= now_ms
    }

    pub fn state(&self, now_ms: u64) -> EndpointState {
        if self.draining.load(Ordering::Relaxed) != 0 {
            EndpointState::Draining
        } else {
            self.health_state(now_ms)
        }
    }

    /// The state from health alone (active verdict and ejection), whether
    /// or not the endpoint drains: what events and the gauge report.
    pub fn health_state(&self, now_ms: u64) -> EndpointState {
        if self.ejected_until_ms.load(Ordering::Relaxed) > now_ms {
            EndpointState::Ejected
        } else {
            self.active_state()
        }
    }

    /// The verdict of active checks alone: unknown, healthy or unhealthy.
    pub fn active_state(&self) -> EndpointState {
        match self.health.load(Ordering::Relaxed) {
            HEALTH_UP => EndpointState::Healthy,
            HEALTH_DOWN => EndpointState::Unhealthy,
            _ => EndpointState::Unknown,
        }
    }

    /// Monotonic ms until which passive detection ejects it (0 = never ejected).
    pub fn ejected_until_ms(&self) -> u64 {
        self.ejected_until_ms.load(Ordering::Relaxed)
    }

    /// Resolves after passive detection ejected the endpoint (a permit is
    /// kept when nobody waits, so an ejection is never missed).
    pub async fn ejected(&self) {
        self.ejection.notified().await
    }

    #[inline]
    pub fn inflight(&self) -> i64 {
        self.inflight.load(Ordering::Relaxed)
    }

    #[inline]
    pub fn inflight_inc(&self) {
        let now = self.inflight.fetch_add(1, Ordering::Relaxed) + 1;
        // Mostly a plain load: the peak moves only when a burst grows.
        if now > self.peak_inflight.load(Ordering::Relaxed) {
            self.peak_inflight.fetch_max(now, Ordering::Relaxed);
        }
    }

    #[inline]
    pub fn inflight_dec(&self) {
        self.inflight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Set the active health verdict; returns true when it changed.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        let new = if healthy { HEALTH_UP } else { HEALTH_DOWN };
        self.health.swap(new, Ordering::Relaxed) != new
    }

    pub fn record_check(&self, unix_ms: u64, ok: bool, result: CheckResult) {
        self.last_check_result
            .store(result.encode(), Ordering::Relaxed);
        self.last_check_ok.store(ok, Ordering::Relaxed);
        self.last_check_unix_ms.store(unix_ms, Ordering::Relaxed);
    }

    /// `(unix ms, passed)` of the last active check, if any.
    pub fn last_check(&self) -> Option<(u64, bool)> {
        match self.last_check_unix_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some((ms, self.last_check_ok.load(Ordering::Relaxed))),
        }
    }

    /// What the last active check saw, if there was one.
    pub fn last_check_result(&self) -> Option<CheckResult> {
        self.last_check()
            .map(|_| CheckResult::decode(self.last_check_result.load(Ordering::Relaxed)))
    }

    /// A request succeeded: the failure run, and any probation, is over.
    #[inline]
    pub fn record_success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        if self.probation.load(Ordering::Relaxed) {
            self.probation.store(false, Ordering::Relaxed);
        }
    }

    /// A 5xx or transport failure. Ejects the endpoint for `ejection_ms` when
    /// `threshold` failures came in a row, or at once when it is back on
    /// probation after an ejection; returns true when this call ejected it.
    pub fn record_failure(
        &self,
        now_ms: u64,
        threshold: u32,
        ejection_ms: u64,
        may_eject: impl FnOnce() -> bool,
    ) -> bool {
        if threshold == 0 {
            return false;
        }
        let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        let on_probation = self.probation.load(Ordering::Relaxed) && until <= now_ms;
        if n < threshold && !on_probation {
            return false;
        }
        self.consecutive_failures.store(0, Ordering::Relaxed);
        // Already out: the ejection is only extended. Otherwise the pool
        // may have no room for another ejection.
        if until <= now_ms && !may_eject() {
            return false;
        }
        self.probation.store(true, Ordering::Relaxed);
        let prev = self
            .ejected_until_ms
            .swap(now_ms + ejection_ms, Ordering::Relaxed);
        let ejected_now = prev <= now_ms;
        if ejected_now {
            self.ejection.notify_one();
        }
        ejected_now
    }

    /// Back from an ejection and not yet proven by a success.
    pub fn on_probation(&self, now_ms: u64) -> bool {
        self.probation.load(Ordering::Relaxed) && self.ejected_until_ms() <= now_ms
    }

    /// Removed from the config by a reload: it takes no new request and
    /// its idle connections close. For good.
    pub fn set_removed(&self) {
        self.draining.fetch_or(DRAIN_REMOVED, Ordering::Relaxed);
        self.close_idle();
    }

    /// Removed by a reload (see [`Endpoint::set_removed`]).
    pub fn is_removed(&self) -> bool {
        self.draining.load(Ordering::Relaxed) & DRAIN_REMOVED != 0
    }

    /// Drain for maintenance (`on`: it takes no new request, finishes those
    /// in flight, its idle connections close) or enable it again (`!on`).
    /// Returns true when this changed the flag.
    pub fn set_maintenance(&self, on: bool) -> bool {
        let prev = if on {
            self.draining.fetch_or(DRAIN_MAINTENANCE, Ordering::Relaxed)
        } else {
            self.draining
                .fetch_and(!DRAIN_MAINTENANCE, Ordering::Relaxed)
        };
        if on {
            self.close_idle();
        }
        (prev & DRAIN_MAINTENANCE != 0) != on
    }

    /// Drained by an operator (see [`Endpoint::set_maintenance`]).
    pub fn in_maintenance(&self) -> bool {
        self.draining.load(Ordering::Relaxed) & DRAIN_MAINTENANCE != 0
    }

    /// Cancelled when this (removed) endpoint's drain time is over; its
    /// upgraded connections close then.
    pub fn drain_deadline(&self) -> &CancellationToken {
        &self.drain_deadline
    }

    /// An idle connection that is still open and not older than `max_idle_ms`.
    #[inline]
    pub fn take_idle(&self, now_ms: u64, max_idle_ms: u64) -> Option<UpstreamConn> {
        self.idle.take(now_ms, max_idle_ms)
    }

    /// A handle on the shared HTTP/2 connection, if it is still open, for a
    /// request at `now_ms`.
    #[inline]
    pub fn shared_conn(&self, now_ms: u64) -> Option<UpstreamConn> {
        let c = match &*self.shared.load() {
            Some(c) if c.is_reusable() => c.share(),
            _ => None,
        };
        if c.is_some() {
            self.shared_used_ms.store(now_ms, Ordering::Relaxed);
        }
        c
    }

    /// Make `conn` (HTTP/2), opened for a request at `now_ms`, the connection
    /// new requests share. When two requests opened one at once, the last
    /// wins; the other closes when its request is done.
    pub fn set_shared_conn(&self, conn: &UpstreamConn, now_ms: u64) {
        if let Some(c) = conn.share() {
            if self.draining.load(Ordering::Relaxed) == 0 {
                self.shared_used_ms.store(now_ms, Ordering::Relaxed);
                self.shared.store(Some(Arc::new(c)));
            }
        }
    }

    /// Give a connection back for reuse (dropped, and so closed, when full or
    /// draining). A shared HTTP/2 handle is just dropped: the endpoint keeps its own.
    #[inline]
    pub fn put_idle(&self, conn: UpstreamConn, now_ms: u64) {
        if self.draining.load(Ordering::Relaxed) == 0 && conn.is_poolable() {
            self.idle.put(conn, now_ms);
        }
    }

    /// Close every idle connection (drain, or upstream_idle sweep). The shared
    /// HTTP/2 connection closes once its requests in flight are done.
    pub fn close_idle(&self) {
        self.idle.clear();
        self.shared.store(None);
    }

    /// Close idle connections older than `max_idle_ms` or closed by the
    /// upstream, and half of those beyond the most requests in flight at
    /// once since the last sweep (`IdlePool::trim`); keeps the others.
    /// The shared HTTP/2 connection counts as
    /// idle when no request is in flight here and none took it for
    /// `max_idle_ms`; a request that takes it just as it is let go keeps its
    /// own handle, and the connection closes after that request.
    pub fn sweep_idle(&self, now_ms: u64, max_idle_ms: u64) {
        self.idle.sweep(now_ms, max_idle_ms);
        // The most requests in flight at once since the last sweep is what
        // such a load needs; the next period's peak starts from now.
        let inflight = self.inflight().max(0);
        let peak = self
            .peak_inflight
            .swap(inflight, Ordering::Relaxed)
            .max(inflight);
        // Only the sweeper locks it, once a second.
        let needed = match self.recent_peaks.lock() {
            Ok(mut w) => w.push(peak),
            Err(poisoned) => poisoned.into_inner().push(peak),
        };
        self.idle.trim(needed);
        if self.inflight() == 0
            && now_ms.saturating_sub(self.shared_used_ms.load(Ordering::Relaxed)) >= max_idle_ms
            && self.shared.load().is_some()
        {
            self.shared.store(None);
        }
    }

    pub fn idle_count(&self) -> usize {
        self.idle.len()
    }
}

/// How many idle connections an endpoint keeps through a sweep: the most
/// requests it had in flight at once over the last [`PEAK_SWEEPS`] sweeps
/// (a burst's surplus stays that long before it is trimmed, like HAProxy's
/// `pool-purge-delay`), and always one: an endpoint that gets a request
/// every few seconds keeps its connection until `timeouts.upstream_idle`,
/// instead of opening one (a TLS handshake, maybe) per request.
#[derive(Debug, Default)]
struct PeakWindow {
    peaks: [i64; PEAK_SWEEPS],
    next: usize,
}

/// Sweeps (seconds) a peak of requests in flight is remembered.
const PEAK_SWEEPS: usize = 5;

impl PeakWindow {
    /// Record this sweep's peak; the connections to keep.
    fn push(&mut self, peak: i64) -> usize {
        self.peaks[self.next] = peak;
        self.next = (self.next + 1) % PEAK_SWEEPS;
        let most = self.peaks.iter().copied().max().unwrap_or(0);
        usize::try_from(most).unwrap_or(0).max(1)
    }
}

#[cfg(test)]
mod tests;
