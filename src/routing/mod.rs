//! Routing: the immutable [`RoutingTable`] every request loads once, the
//! route decision for one request ([`decide()`]: preview listener, override
//! header, sticky bucket, weighted pick, failover, write-hold admission, and
//! the endpoint), the write hold of a cutover, and the drain of a pool that
//! lost its traffic.
//!
//! Owns the per-request decision; the proxy acts on it. It must not mutate
//! anything but the atomics it reads (endpoints, the sticky bucket sequence,
//! the hold queue); tables are built by the controller only.

pub mod decide;
pub mod drain;
pub mod draw;
pub mod hold;
pub mod mirror;
pub mod sticky;
pub mod table;
pub mod weights;

pub use decide::{admit, decide, Access, Decision, Refusal, Route, RouteInput};
pub use hold::{Hold, WritesInFlight};
pub use table::{Pool, PoolRuntime, RoutingTable, Settings, WriteFence};
pub use weights::Weights;

/// Health checks reach an endpoint with its pool's connector in the table
/// in force (`upstream` cannot name the table, so the table answers for it).
impl crate::upstream::health::PoolConnectors for arc_swap::ArcSwap<RoutingTable> {
    fn connector(&self, pool: crate::config::PoolName) -> crate::upstream::Connector {
        self.load().pool(pool).connector.clone()
    }
}
