//! Routing: the immutable [`RoutingTable`] every request loads once, the
//! choice of pool (weights, sticky buckets) and endpoint, the write hold of a
//! cutover, and the drain of a pool that lost its traffic.
//!
//! Owns the per-request decision. It must not mutate anything but the
//! endpoint atomics it reads; tables are built by the controller only.

pub mod drain;
pub mod hold;
pub mod sticky;
pub mod table;
pub mod weights;

pub use hold::{Hold, WritesInFlight};
pub use table::{Pool, PoolRuntime, RoutingTable, Settings};
pub use weights::Weights;

/// Health checks reach an endpoint with its pool's connector in the table
/// in force (`upstream` cannot name the table, so the table answers for it).
impl crate::upstream::health::PoolConnectors for arc_swap::ArcSwap<RoutingTable> {
    fn connector(&self, pool: crate::config::PoolName) -> crate::upstream::Connector {
        self.load().pool(pool).connector.clone()
    }
}
