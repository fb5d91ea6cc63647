//! The `GET /api/v1/status` document (SPEC.md section 3): the controller's
//! published view plus live figures read from the pools' atomics: each
//! endpoint's state and last check, requests in flight, failover, and what
//! is left of a drain.

use crate::config::PoolName;
use crate::control::{ControlView, Shared};
use crate::routing::drain::DrainStatus;
use crate::routing::Pool;
use crate::telemetry::stats::WindowStats;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct EndpointStatus {
    pub address: String,
    pub state: &'static str,
    pub inflight: i64,
    pub last_check: Option<String>,
    pub last_check_ok: Option<bool>,
    /// e.g. `status 200`, `connect failed`, `timed out`.
    pub last_check_result: Option<String>,
    /// Back from an ejection, not yet proven by a success.
    pub probation: bool,
    /// Idle pooled connections to it.
    pub idle: usize,
}

#[derive(Debug, Serialize)]
pub struct PoolStatus {
    pub healthy: usize,
    pub inflight: i64,
    /// Upgraded connections (WebSocket) open, part of `inflight`.
    pub upgraded: i64,
    pub failovers: u64,
    /// Requests meant for this pool go to the other: it has no available endpoint.
    pub failing_over: bool,
    /// Null unless the pool lost its traffic less than `drain.timeout` ago.
    pub draining: Option<DrainStatus>,
    pub stats: WindowStats,
    pub endpoints: Vec<EndpointStatus>,
}

#[derive(Debug, Serialize)]
pub struct Status {
    #[serde(flatten)]
    pub view: ControlView,
    pub pools: PoolsStatus,
    pub shutting_down: bool,
    /// Writes waiting on the write hold now; null when there is no hold.
    pub held_requests: Option<usize>,
    /// One entry per TLS listener: its certificate and last reload error.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<crate::proxy::listener_tls::CertStatus>,
    /// Copies to the candidate and how its answers compare (SPEC.md section 12).
    pub mirror: crate::admin::mirror::MirrorStatus,
    /// Fleet mode only (SPEC.md section 9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<crate::control::view::FleetView>,
}

#[derive(Debug, Serialize)]
pub struct PoolsStatus {
    pub blue: PoolStatus,
    pub green: PoolStatus,
}

fn pool_status(pool: &Pool, now_ms: u64, window: Duration) -> PoolStatus {
    let inflight = pool.runtime.inflight();
    let has_available = pool.has_available(now_ms);
    PoolStatus {
        healthy: pool.healthy_count(now_ms),
        inflight,
        upgraded: pool.runtime.drain.upgraded(),
        failovers: pool.runtime.failovers(),
        failing_over: pool.runtime.is_failing_over() && !has_available,
        draining: pool.runtime.drain.status(crate::clock::unix_ms(), inflight),
        stats: pool.runtime.stats.window(now_ms, window),
        endpoints: pool
            .endpoints
            .iter()
            .map(|e| {
                let last = e.last_check();
                EndpointStatus {
                    address: e.address.clone(),
                    state: e.state(now_ms).as_str(),
                    inflight: e.inflight(),
                    last_check: last.map(|(ms, _)| crate::clock::rfc3339(ms)),
                    last_check_ok: last.map(|(_, ok)| ok),
                    last_check_result: e.last_check_result().map(|r| r.to_string()),
                    probation: e.on_probation(now_ms),
                    idle: e.idle_count(),
                }
            })
            .collect(),
    }
}

pub fn status(shared: &Shared) -> Status {
    let view = (**shared.view.load()).clone();
    let table = shared.table.load_full();
    let now = crate::clock::now_ms();
    let window = shared.config.load().rollback.window;
    Status {
        view,
        pools: PoolsStatus {
            blue: pool_status(table.pool(PoolName::Blue), now, window),
            green: pool_status(table.pool(PoolName::Green), now, window),
        },
        shutting_down: shared.is_shutting_down(),
        held_requests: table.hold.as_ref().map(|h| h.held_now()),
        tls: Vec::new(),
        mirror: crate::admin::mirror::status(shared),
        fleet: shared.fleet.load_full().map(|f| (*f).clone()),
    }
}

/// Ready: config loaded, not shutting down, and some pool with traffic (or
/// failover) has an endpoint that may serve.
pub fn ready(shared: &Shared) -> Result<(), &'static str> {
    if shared.is_shutting_down() {
        return Err("shutting down");
    }
    let table = shared.table.load_full();
    let now = crate::clock::now_ms();
    let can_serve = PoolName::ALL.iter().any(|&p| {
        (table.weights.bp(p) > 0 || table.settings.failover) && table.pool(p).has_available(now)
    });
    if can_serve {
        Ok(())
    } else {
        Err("no pool can serve")
    }
}
