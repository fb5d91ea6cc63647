//! Per-pool statistics windows. Filled in by the telemetry work.
