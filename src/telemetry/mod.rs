//! Telemetry: Prometheus metrics with handles resolved once, per-pool
//! statistics windows recorded on the hot path, the dashboard's traffic
//! history, and logging set-up.

pub mod history;
pub mod logging;
pub mod metrics;
pub mod mirror;
pub mod stats;
