//! Routing: the immutable [`RoutingTable`] every request loads once, and the
//! choice of pool (weights, sticky buckets) and endpoint.
//!
//! Owns the per-request decision. It must not mutate anything but the
//! endpoint atomics it reads; tables are built by the controller only.

pub mod sticky;
pub mod table;
pub mod weights;

pub use table::{Pool, PoolRuntime, RoutingTable, Settings};
pub use weights::Weights;
