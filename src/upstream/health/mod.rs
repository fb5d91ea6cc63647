//! Active health checks: one task per endpoint sends `GET health_check.path`
//! every `interval` and feeds the result to a pure [`HealthCounter`]; the
//! set of tasks ([`HealthChecks`]) is reconciled against each new routing
//! table, keyed by endpoint `Arc` identity.
//!
//! Owns the health verdict on the [`Endpoint`](crate::upstream::Endpoint)
//! atomics and reporting every change of an endpoint's health state to a
//! [`HealthSink`] (the controller, which records `endpoint_up` /
//! `endpoint_down` / `endpoint_ejected` and sets `switchyard_endpoint_healthy`).
//! It never writes deployment state.
//!
//! Choices where SPEC.md is silent (what HAProxy and Envoy do by default):
//!
//! - **Start-up**: an endpoint starts `unknown` and serves until proven
//!   unhealthy (`unhealthy_threshold` failures in a row); no start-up grace.
//!   `healthy_threshold` passes turn it `healthy` (an `endpoint_up` event, the
//!   gauge stays 1). Passive outlier detection protects traffic meanwhile.
//! - **A failure** is anything but a response whose status is in
//!   `expected_status` within `timeout`: connect error, timeout, broken
//!   connection, non-HTTP answer, unexpected status. Each check opens a new
//!   connection (`Connection: close`) so it tests what a new request meets;
//!   only the status line and headers are read.
//! - **Jitter**: each task's first check comes after a random delay in
//!   `[0, interval)`, which spreads the checks of many endpoints evenly; after
//!   that the period is exact, so a dead endpoint is marked down within
//!   `interval × unhealthy_threshold` plus one interval.
//! - **Ejection** by passive detection is reported by the endpoint's checker
//!   (woken by the ejection), and so is its end. Active checks continue while
//!   ejected but do not end an ejection early: live traffic saw errors that
//!   `/health` may not show.

mod checker;
pub mod probe;
mod set;

pub use probe::{HttpProbe, PoolConnectors, Probe};
pub use set::{HealthChecks, HealthSink, HealthStop, Reconciled};

use crate::config::{HealthCheckConfig, StatusRanges};
use crate::upstream::EndpointState;
use http::uri::PathAndQuery;
use std::time::Duration;

/// Why `health_check` cannot be turned into [`CheckSettings`].
#[derive(Debug, thiserror::Error)]
pub enum HealthConfigError {
    #[error("health_check.path {path:?} is not a valid request path: {source}")]
    Path {
        path: String,
        #[source]
        source: http::uri::InvalidUri,
    },
    #[error("health_check.expected_status: {0}")]
    ExpectedStatus(String),
    #[error("health_check.interval must be above zero")]
    ZeroInterval,
}

/// The verdict of active checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Unknown,
    Healthy,
    Unhealthy,
}

impl Verdict {
    /// The active verdict an endpoint shows now (ejection and drain aside).
    pub fn of(state: EndpointState) -> Self {
        match state {
            EndpointState::Healthy => Verdict::Healthy,
            EndpointState::Unhealthy => Verdict::Unhealthy,
            _ => Verdict::Unknown,
        }
    }
}

/// Consecutive check results and the verdict they lead to. Pure: no clock,
/// no I/O.
#[derive(Debug, Clone)]
pub struct HealthCounter {
    healthy_threshold: u32,
    unhealthy_threshold: u32,
    passes: u32,
    failures: u32,
    verdict: Verdict,
}

impl HealthCounter {
    /// Thresholds below 1 count as 1.
    pub fn new(healthy_threshold: u32, unhealthy_threshold: u32, start: Verdict) -> Self {
        HealthCounter {
            healthy_threshold: healthy_threshold.max(1),
            unhealthy_threshold: unhealthy_threshold.max(1),
            passes: 0,
            failures: 0,
            verdict: start,
        }
    }

    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// Count one check; the new verdict when this result changed it.
    pub fn observe(&mut self, passed: bool) -> Option<Verdict> {
        if passed {
            self.failures = 0;
            self.passes = self.passes.saturating_add(1);
            if self.verdict != Verdict::Healthy && self.passes >= self.healthy_threshold {
                self.verdict = Verdict::Healthy;
                return Some(Verdict::Healthy);
            }
        } else {
            self.passes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.verdict != Verdict::Unhealthy && self.failures >= self.unhealthy_threshold {
                self.verdict = Verdict::Unhealthy;
                return Some(Verdict::Unhealthy);
            }
        }
        None
    }
}

/// `health_check` as the checkers use it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSettings {
    pub path: PathAndQuery,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub expected: StatusRanges,
}

impl CheckSettings {
    pub fn from_config(c: &HealthCheckConfig) -> Result<Self, HealthConfigError> {
        if c.interval.is_zero() {
            return Err(HealthConfigError::ZeroInterval);
        }
        Ok(CheckSettings {
            path: c.path.parse().map_err(|source| HealthConfigError::Path {
                path: c.path.clone(),
                source,
            })?,
            interval: c.interval,
            timeout: c.timeout,
            healthy_threshold: c.healthy_threshold.max(1),
            unhealthy_threshold: c.unhealthy_threshold.max(1),
            expected: StatusRanges::parse(&c.expected_status)
                .map_err(HealthConfigError::ExpectedStatus)?,
        })
    }
}

#[cfg(test)]
mod tests;
