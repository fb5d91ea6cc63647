//! The `GET /api/v1/status` document (SPEC.md section 3): the controller's
//! published view plus live figures read from the pools' atomics.

use crate::config::PoolName;
use crate::control::{ControlView, Shared};
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
}

#[derive(Debug, Serialize)]
pub struct PoolStatus {
    pub healthy: usize,
    pub inflight: i64,
    pub failovers: u64,
    pub stats: WindowStats,
    pub endpoints: Vec<EndpointStatus>,
}

#[derive(Debug, Serialize)]
pub struct Status {
    #[serde(flatten)]
    pub view: ControlView,
    pub pools: PoolsStatus,
    pub shutting_down: bool,
    /// One entry per TLS listener: its certificate and last reload error.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<crate::proxy::tls::CertStatus>,
}

#[derive(Debug, Serialize)]
pub struct PoolsStatus {
    pub blue: PoolStatus,
    pub green: PoolStatus,
}

fn pool_status(pool: &Pool, now_ms: u64, window: Duration) -> PoolStatus {
    PoolStatus {
        healthy: pool.healthy_count(now_ms),
        inflight: pool.runtime.inflight(),
        failovers: pool.runtime.failovers(),
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
        tls: Vec::new(),
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
