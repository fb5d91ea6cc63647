//! Prometheus metrics (SPEC.md section 7). Filled in by the telemetry work.
