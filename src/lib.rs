//! switchyard: a Layer-7 reverse proxy that moves traffic between two copies
//! of an application, blue and green, safely.
//!
//! # Layout
//!
//! - [`config`]: the YAML schema, validation with line and column, loading.
//! - [`routing`]: the immutable [`routing::RoutingTable`] and the route decision ([`routing::decide()`]).
//! - [`upstream`]: endpoints with their health atomics, pooled upstream connections.
//! - [`proxy`]: listeners, the per-request handler, header rewriting, error responses.
//! - [`control`]: the controller task, the only writer of deployment state.
//! - [`telemetry`]: Prometheus metrics, per-pool statistics windows, the
//!   dashboard's traffic history, logging.
//! - [`admin`]: the admin API and the dashboard served with it.
//! - [`demo`]: sample upstreams and the embedded config of `switchyard demo`.
//! - [`fuzzing`]: entry points of the fuzz targets and property tests.
//!
//! The data plane never waits on a lock: a request loads the routing table
//! once from an `ArcSwap` and records its outcome into atomics. Every change of
//! deployment state goes through the controller, one task with one inbox.
#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod demo;
pub mod fuzzing;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod telemetry;
pub mod upstream;
