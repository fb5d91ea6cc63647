//! Draining: what happens to a pool that loses its traffic (its weight drops
//! to 0) and to an endpoint removed by a reload.
//!
//! Requests already in flight complete: one still waiting for its response
//! head is bounded by `timeouts.request` as always (a slow write is not cut
//! halfway); a response still streaming its body at `drain.timeout` (SSE, a
//! long download) is cut there, as upgraded connections (WebSocket) are,
//! without counting against its endpoint; idle pooled connections are closed after
//! [`IDLE_CLOSE_GRACE`] (a flip straight back finds them still open, instead
//! of opening them all again), and again at the deadline for those that
//! went back to the pool meanwhile.
//!
//! Each pool's upgraded connections (and its responses that wait on their
//! upstream mid-body) hold a clone of the pool's current *tunnel token*. A drain cancels that token at its deadline and puts a
//! fresh one in its place for later tunnels. A pool that regains its traffic
//! before the deadline stops its drain: its connections are wanted again.
//! Tunnels opened while the pool drains (a preview listener, failover) hold
//! the draining token and close at the same deadline.
//!
//! Only the controller starts and stops drains; the data plane takes tokens.

use crate::config::PoolName;
use crate::routing::{Pool, PoolRuntime, RoutingTable};
use crate::upstream::Endpoint;
use arc_swap::{ArcSwap, ArcSwapOption};
use serde::Serialize;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a pool that lost its traffic keeps its idle connections (at
/// most `drain.timeout`). Flips every 100 ms closed and reopened every
/// connection each time, 3-8 % of the proxy's throughput in the load
/// comparison; a second later they are just as closed for the old version.
pub const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// One pool's drain state. Lives in its [`PoolRuntime`], across tables.
#[derive(Debug)]
pub struct PoolDrain {
    tunnels: ArcSwap<CancellationToken>,
    /// Upgraded connections open on the pool.
    upgraded: AtomicI64,
    /// Unix ms of the drain's start and deadline; 0 when not draining.
    since_unix_ms: AtomicU64,
    deadline_unix_ms: AtomicU64,
    /// Cancels the running drain's timer.
    timer: ArcSwapOption<CancellationToken>,
}

impl Default for PoolDrain {
    fn default() -> Self {
        PoolDrain {
            tunnels: ArcSwap::from_pointee(CancellationToken::new()),
            upgraded: AtomicI64::new(0),
            since_unix_ms: AtomicU64::new(0),
            deadline_unix_ms: AtomicU64::new(0),
            timer: ArcSwapOption::empty(),
        }
    }
}

/// What status shows of a pool's drain.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DrainStatus {
    pub since: String,
    pub deadline: String,
    /// Until upgraded connections are closed.
    pub remaining_ms: u64,
    /// Requests still in flight on the pool (upgraded connections included).
    pub inflight: i64,
    pub upgraded: i64,
}

impl PoolDrain {
    pub fn is_draining(&self) -> bool {
        self.timer.load().is_some()
    }

    /// The token cancelled at the end of the pool's next (or current)
    /// drain: what upgraded connections and streaming responses hold.
    pub fn tunnels_token(&self) -> arc_swap::Guard<Arc<CancellationToken>> {
        self.tunnels.load()
    }

    pub fn upgraded(&self) -> i64 {
        self.upgraded.load(Ordering::Relaxed)
    }

    /// The drain in progress as of `now_unix_ms`, with `inflight` requests left.
    pub fn status(&self, now_unix_ms: u64, inflight: i64) -> Option<DrainStatus> {
        let since = self.since_unix_ms.load(Ordering::Relaxed);
        let deadline = self.deadline_unix_ms.load(Ordering::Relaxed);
        if since == 0 {
            return None;
        }
        Some(DrainStatus {
            since: crate::clock::rfc3339(since),
            deadline: crate::clock::rfc3339(deadline),
            remaining_ms: deadline.saturating_sub(now_unix_ms),
            inflight,
            upgraded: self.upgraded(),
        })
    }
}

/// Held by an upgraded connection while it is open: counts it, and resolves
/// [`closed`](Self::closed) when its pool's or its endpoint's drain is over.
pub struct TunnelDrain {
    pool: CancellationToken,
    endpoint: CancellationToken,
    runtime: Arc<PoolRuntime>,
}

impl TunnelDrain {
    pub fn open(runtime: &Arc<PoolRuntime>, ep: &Endpoint) -> Self {
        runtime.drain.upgraded.fetch_add(1, Ordering::Relaxed);
        TunnelDrain {
            pool: (**runtime.drain.tunnels.load()).clone(),
            endpoint: ep.drain_deadline().clone(),
            runtime: runtime.clone(),
        }
    }

    /// Resolves when the connection must be closed.
    pub async fn closed(&self) {
        tokio::select! {
            () = self.pool.cancelled() => {}
            () = self.endpoint.cancelled() => {}
        }
    }
}

impl Drop for TunnelDrain {
    fn drop(&mut self) {
        self.runtime.drain.upgraded.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Start or stop pool drains for the change from `prev` to `next`: a pool
/// whose weight drops to 0 starts draining, a pool with traffic stops.
/// Called by the controller after it stored `next`.
pub fn weights_changed(prev: &RoutingTable, next: &RoutingTable, timeout: Duration) {
    for name in PoolName::ALL {
        let pool = next.pool(name);
        if next.weights.bp(name) > 0 {
            stop_pool(pool);
        } else if prev.weights.bp(name) > 0 {
            start_pool(pool, timeout);
        }
    }
}

/// `pool` lost its traffic: close its idle connections after
/// [`IDLE_CLOSE_GRACE`], its upgraded connections after `timeout`. Does
/// nothing when it already drains.
pub fn start_pool(pool: &Arc<Pool>, timeout: Duration) {
    let drain = &pool.runtime.drain;
    if drain.is_draining() {
        return;
    }
    let now = crate::clock::unix_ms();
    drain.since_unix_ms.store(now, Ordering::Relaxed);
    let deadline = now.saturating_add(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
    drain.deadline_unix_ms.store(deadline, Ordering::Relaxed);
    let stop = Arc::new(CancellationToken::new());
    drain.timer.store(Some(stop.clone()));
    tracing::info!(pool = %pool.name, inflight = pool.runtime.inflight(), upgraded = drain.upgraded(), ?timeout, "pool drains");
    let pool = pool.clone();
    tokio::spawn(async move {
        let grace = IDLE_CLOSE_GRACE.min(timeout);
        tokio::select! {
            () = tokio::time::sleep(grace) => {}
            () = stop.cancelled() => return,
        }
        for ep in &pool.endpoints {
            ep.close_idle();
        }
        tokio::select! {
            () = tokio::time::sleep(timeout.saturating_sub(grace)) => {}
            () = stop.cancelled() => return,
        }
        let drain = &pool.runtime.drain;
        let upgraded = drain.upgraded();
        let old = drain.tunnels.swap(Arc::new(CancellationToken::new()));
        old.cancel();
        for ep in &pool.endpoints {
            ep.close_idle();
        }
        // Clear the drain unless a new one replaced it meanwhile.
        let mine = Some(stop);
        let prev = drain.timer.compare_and_swap(&mine, None);
        if matches!((&*prev, &mine), (Some(p), Some(m)) if Arc::ptr_eq(p, m)) {
            drain.since_unix_ms.store(0, Ordering::Relaxed);
            drain.deadline_unix_ms.store(0, Ordering::Relaxed);
        }
        if upgraded > 0 {
            tracing::info!(pool = %pool.name, closed = upgraded, inflight = pool.runtime.inflight(), "drain timeout: upgraded connections closed");
        } else {
            tracing::info!(pool = %pool.name, inflight = pool.runtime.inflight(), "pool drained");
        }
    });
}

/// `pool` has traffic again: its drain, if any, is called off.
pub fn stop_pool(pool: &Pool) {
    let drain = &pool.runtime.drain;
    if let Some(timer) = drain.timer.swap(None) {
        timer.cancel();
        drain.since_unix_ms.store(0, Ordering::Relaxed);
        drain.deadline_unix_ms.store(0, Ordering::Relaxed);
        tracing::info!(pool = %pool.name, "pool has traffic again: drain stopped");
    }
}

/// Endpoints removed by a reload: they take no new request, their idle
/// connections close now and their upgraded connections after `timeout`.
pub fn drain_removed(endpoints: Vec<Arc<Endpoint>>, timeout: Duration) {
    if endpoints.is_empty() {
        return;
    }
    for ep in &endpoints {
        ep.set_removed();
    }
    tokio::spawn(async move {
        tokio::time::sleep(timeout).await;
        for ep in &endpoints {
            ep.drain_deadline().cancel();
            ep.close_idle();
        }
    });
}

#[cfg(test)]
mod tests;
