//! Maintenance of one endpoint (HAProxy's `disable server`): an operator
//! drains an endpoint, which then takes no new request and finishes those in
//! flight, and enables it again later.
//!
//! The flag lives on the [`crate::upstream::Endpoint`]'s atomics, like its
//! health, not in the state document: it is this proxy's fact about one of
//! its upstreams, so it survives a config reload (the endpoint is carried
//! over while its address stays in the config) but not a restart, and in
//! fleet mode it applies to the member asked. The controller is still the
//! one that sets it, so the event log stays complete.

use crate::config::PoolName;
use crate::control::controller::{CommandError, Controller};
use crate::control::events::{Actor, Event, EventKind};
use serde::Serialize;

/// The answer to a drain or an enable.
#[derive(Debug, Clone, Serialize)]
pub struct MaintenanceReport {
    /// The state generation (unchanged: maintenance is not deployment state).
    pub generation: u64,
    /// `drain` or `enable`.
    pub action: &'static str,
    pub address: String,
    /// Whether the flag moved (false: it was already so).
    pub changed: bool,
    /// Every endpoint with that address (one per pool that lists it).
    pub endpoints: Vec<MaintainedEndpoint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MaintainedEndpoint {
    pub pool: PoolName,
    pub address: String,
    pub state: &'static str,
    /// Requests still in flight on it: a drain is done when this is 0.
    pub inflight: i64,
}

impl Controller {
    /// Drain (`drain`) or enable an endpoint by address, in every pool that
    /// lists it. Idempotent; 404 when no pool lists the address.
    pub(crate) fn maintain_endpoint(
        &mut self,
        address: &str,
        drain: bool,
    ) -> Result<MaintenanceReport, CommandError> {
        let table = self.shared.table.load_full();
        let now = crate::clock::now_ms();
        let mut changed = false;
        let mut endpoints = Vec::new();
        for pool in PoolName::ALL {
            for ep in table.pool(pool).endpoints.iter() {
                if ep.address != address {
                    continue;
                }
                if ep.set_maintenance(drain) {
                    changed = true;
                    let kind = if drain {
                        EventKind::EndpointDrained
                    } else {
                        EventKind::EndpointEnabled
                    };
                    let state = ep.state(now);
                    tracing::info!(%pool, endpoint = %ep.address, inflight = ep.inflight(), event = %kind, "endpoint maintenance");
                    self.shared.events.record(
                        Event::new(kind, Actor::Admin)
                            .to(serde_json::json!({"pool": pool, "endpoint": ep.address, "state": state}))
                            .reason(if drain {
                                "drained for maintenance: no new requests"
                            } else {
                                "enabled after maintenance"
                            }),
                    );
                    self.shared.metrics.set_endpoint_healthy(
                        pool,
                        &ep.address,
                        ep.is_available(now),
                    );
                }
                endpoints.push(MaintainedEndpoint {
                    pool,
                    address: ep.address.clone(),
                    state: ep.state(now).as_str(),
                    inflight: ep.inflight(),
                });
            }
        }
        if endpoints.is_empty() {
            return Err(CommandError::NotFound(format!(
                "no pool lists the endpoint {address:?} (write it as in the config, e.g. 127.0.0.1:8001)"
            )));
        }
        if changed {
            self.publish_view();
        }
        Ok(MaintenanceReport {
            generation: self.doc.generation,
            action: if drain { "drain" } else { "enable" },
            address: address.to_string(),
            changed,
            endpoints,
        })
    }
}
