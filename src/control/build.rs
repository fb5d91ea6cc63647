//! Building a [`RoutingTable`] from a validated config.
//!
//! Endpoints whose address is unchanged are carried over (same `Arc`), so
//! their health, in-flight counts and idle connections survive a reload.

use crate::config::{Config, PoolName};
use crate::routing::{Pool, PoolRuntime, RoutingTable, Settings, Weights};
use crate::upstream::pool_tls::{UpstreamTls, UpstreamTlsError};
use crate::upstream::{Connector, Endpoint};
use std::sync::Arc;

/// Why a table could not be built from a config that passed validation.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("pool {pool}: endpoint {address:?} is not host:port: {source}")]
    Endpoint {
        pool: PoolName,
        address: String,
        #[source]
        source: http::uri::InvalidUri,
    },
    #[error("pool {pool}: {source}")]
    UpstreamTls {
        pool: PoolName,
        #[source]
        source: UpstreamTlsError,
    },
}

/// Endpoints of `prev` no longer in `cfg`: they must drain.
pub fn removed_endpoints(prev: &RoutingTable, next: &RoutingTable) -> Vec<Arc<Endpoint>> {
    let mut out = Vec::new();
    for name in PoolName::ALL {
        for ep in &prev.pool(name).endpoints {
            if !next.pool(name).endpoints.iter().any(|e| Arc::ptr_eq(e, ep)) {
                out.push(ep.clone());
            }
        }
    }
    out
}

pub fn build_pools(
    cfg: &Config,
    prev: Option<&RoutingTable>,
    runtimes: &[Arc<PoolRuntime>; 2],
) -> Result<[Arc<Pool>; 2], BuildError> {
    let build = |name: PoolName| -> Result<Arc<Pool>, BuildError> {
        let pc = cfg.pools.get(name);
        // Once per pool and table, never per connection.
        let tls = match &pc.tls {
            Some(t) => Some(
                UpstreamTls::from_config(t, pc.protocol)
                    .map_err(|source| BuildError::UpstreamTls { pool: name, source })?,
            ),
            None => None,
        };
        let mut endpoints = Vec::with_capacity(pc.endpoints.len());
        for address in &pc.endpoints {
            let reused = prev.and_then(|t| {
                t.pool(name)
                    .endpoints
                    .iter()
                    .find(|e| &e.address == address && !e.is_removed())
                    .cloned()
            });
            let ep = match reused {
                Some(ep) => ep,
                None => Arc::new(Endpoint::new(name, address).map_err(|source| {
                    BuildError::Endpoint {
                        pool: name,
                        address: address.clone(),
                        source,
                    }
                })?),
            };
            endpoints.push(ep);
        }
        Ok(Arc::new(Pool {
            name,
            endpoints,
            protocol: pc.protocol,
            connector: Connector::new(cfg.timeouts.connect).with_protocol(pc.protocol, tls),
            runtime: runtimes[name.index()].clone(),
        }))
    };
    Ok([build(PoolName::Blue)?, build(PoolName::Green)?])
}

/// A table for `cfg` with the given deployment state.
pub fn build_table(
    cfg: &Config,
    prev: Option<&RoutingTable>,
    runtimes: &[Arc<PoolRuntime>; 2],
    generation: u64,
    weights: Weights,
    live: PoolName,
) -> Result<RoutingTable, BuildError> {
    let pools = build_pools(cfg, prev, runtimes)?;
    // Both callers publish the table they get: from now on, these are the
    // pools' endpoints for the ejection cap.
    for pool in &pools {
        pool.runtime.set_members(&pool.endpoints);
    }
    Ok(RoutingTable {
        generation,
        weights,
        live,
        pools,
        settings: Arc::new(Settings {
            fence: prev.and_then(|t| t.settings.fence.clone()),
            ..Settings::from_config(cfg)
        }),
        hold: None,
    })
}
