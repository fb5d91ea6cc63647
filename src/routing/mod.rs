//! Routing: the immutable [`RoutingTable`] every request loads once, and the
//! choice of pool and endpoint.
//!
//! Owns the per-request decision. It must not mutate anything but the
//! endpoint atomics it reads; tables are built by the controller only.

pub mod hold;
pub mod table;
pub mod weights;

pub use hold::{Hold, WritesInFlight};
pub use table::{Pool, PoolRuntime, RoutingTable, Settings};
pub use weights::Weights;
