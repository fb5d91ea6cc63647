//! Prometheus metrics: every series of SPEC.md section 7, with exactly its
//! name, labels and type.
//!
//! [`Metrics`] owns its own [`Registry`] (never the process-global default,
//! so every test builds its own) and renders it in the text format for
//! `GET /metrics`. Request-path handles are resolved once into a
//! [`PoolMetrics`] per pool: recording a request is a few atomic adds with
//! no label lookup, lock or allocation. Label lookups remain only where rare
//! events happen (health transitions, switches, rollbacks, reloads).
//!
//! Every label combination known up front is created at 0 so that it shows
//! in the first scrape; `rate()` and absent-series alerts then behave. This
//! module only counts: it does not decide anything from the figures.

mod analysis;

pub use analysis::{AnalysisMetrics, NOTIFICATION_RESULTS};

use super::stats::Outcome;
use crate::config::PoolName;
use prometheus::core::Collector;
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::time::Duration;

/// Values of the `code` label of `switchyard_requests_total`, indexed by [`code_index`].
pub const CODE_LABELS: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];

/// Upper bounds (seconds) of `switchyard_request_duration_seconds`: up to the
/// default request timeout.
const REQUEST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Upper bounds (seconds) of `switchyard_hold_duration_seconds`: around `cutover.max_hold`.
const HOLD_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// Why an upstream attempt failed: the `kind` label of `switchyard_upstream_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    Connect,
    Timeout,
    Reset,
    Protocol,
}

impl UpstreamErrorKind {
    pub const ALL: [UpstreamErrorKind; 4] = [
        UpstreamErrorKind::Connect,
        UpstreamErrorKind::Timeout,
        UpstreamErrorKind::Reset,
        UpstreamErrorKind::Protocol,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorKind::Connect => "connect",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Reset => "reset",
            UpstreamErrorKind::Protocol => "protocol",
        }
    }
}

/// How a switch ended: the `result` label of `switchyard_switches_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchResult {
    /// The table was flipped to the target pool.
    Completed,
    /// Started, then given up (e.g. `max_hold` exceeded); traffic stayed on the old pool.
    Aborted,
    /// Not started: a guardrail refused it (409).
    Refused,
}

impl SwitchResult {
    pub const ALL: [SwitchResult; 3] = [
        SwitchResult::Completed,
        SwitchResult::Aborted,
        SwitchResult::Refused,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            SwitchResult::Completed => "completed",
            SwitchResult::Aborted => "aborted",
            SwitchResult::Refused => "refused",
        }
    }
}

/// Why traffic went back to the live pool: the `reason` label of `switchyard_rollbacks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackReason {
    ErrorRate,
    ErrorRateIncrease,
    Latency,
    /// `POST /api/v1/rollback` or `rollout abort`.
    Manual,
    /// An analysis check failed `failure_limit` times in a row.
    Check,
    /// The sequential judge found the candidate worse than the live pool.
    Sequential,
}

impl RollbackReason {
    pub const ALL: [RollbackReason; 6] = [
        RollbackReason::ErrorRate,
        RollbackReason::ErrorRateIncrease,
        RollbackReason::Latency,
        RollbackReason::Manual,
        RollbackReason::Check,
        RollbackReason::Sequential,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            RollbackReason::ErrorRate => "error_rate",
            RollbackReason::ErrorRateIncrease => "error_rate_increase",
            RollbackReason::Latency => "latency",
            RollbackReason::Manual => "manual",
            RollbackReason::Check => "check",
            RollbackReason::Sequential => "sequential",
        }
    }
}

/// Index into [`CODE_LABELS`]: the status class, or `error` without a response.
pub const fn code_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Status(code) if code < 200 => 0,
        Outcome::Status(code) if code < 300 => 1,
        Outcome::Status(code) if code < 400 => 2,
        Outcome::Status(code) if code < 500 => 3,
        Outcome::Status(_) => 4,
        Outcome::TransportError => 5,
    }
}

/// The request-path handles of one pool, resolved once. Cheap to clone (each
/// handle is an `Arc`), so a routing table can hold its own copy.
#[derive(Clone)]
pub struct PoolMetrics {
    requests: [IntCounter; 6],
    duration: Histogram,
    upstream_errors: [IntCounter; 4],
    inflight: IntGauge,
    weight: Gauge,
    /// `switchyard_mirror_requests_total` (one series for both pools: the
    /// copies of SPEC.md section 12 go to whichever is the candidate).
    pub mirror: super::mirror::MirrorCounters,
}

impl PoolMetrics {
    /// Count one finished request: its status class and its duration.
    pub fn record(&self, outcome: Outcome, latency: Duration) {
        self.requests[code_index(outcome)].inc();
        self.duration.observe(latency.as_secs_f64());
    }

    /// A request meant for this pool that the proxy answered itself, with
    /// no upstream attempt (503: no healthy endpoint, or the write-hold
    /// queue full): `code="error"`, no duration sample.
    #[cold]
    pub fn record_refused(&self) {
        self.requests[code_index(Outcome::TransportError)].inc();
    }

    /// Count one failed upstream attempt. A request retried on another
    /// endpoint may count several; its final outcome goes to [`record`](Self::record).
    pub fn upstream_error(&self, kind: UpstreamErrorKind) {
        self.upstream_errors[kind as usize].inc();
    }

    /// Count a request in flight until the guard is dropped (also when the
    /// request's future is cancelled).
    pub fn inflight(&self) -> InflightGauge {
        self.inflight.inc();
        InflightGauge(self.inflight.clone())
    }

    /// Requests of this pool in flight now.
    pub fn inflight_now(&self) -> i64 {
        self.inflight.get()
    }

    /// The pool's share of traffic, in percent.
    pub fn set_weight(&self, percent: f64) {
        self.weight.set(percent);
    }
}

/// Decrements `switchyard_inflight_requests` when dropped.
pub struct InflightGauge(IntGauge);

impl Drop for InflightGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Every metric of the process, in a registry of its own.
pub struct Metrics {
    registry: Registry,
    pools: [PoolMetrics; 2],
    endpoint_healthy: IntGaugeVec,
    switches: IntCounterVec,
    rollbacks: IntCounterVec,
    held_requests: IntCounter,
    hold_duration: Histogram,
    gate_lag: IntGauge,
    config_reloads: IntCounterVec,
    /// Checks and notifications (SPEC.md section 10).
    pub analysis: AnalysisMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let requests = register(
            r,
            IntCounterVec::new(
                opts(
                    "switchyard_requests_total",
                    "Requests by the pool they were meant for and the response's status class; code=\"error\" when no upstream answered (the proxy's own 502, 503 or 504).",
                ),
                &["pool", "code"],
            ),
        );
        let duration = register(
            r,
            HistogramVec::new(
                HistogramOpts::new(
                    "switchyard_request_duration_seconds",
                    "Time from receiving a request to the upstream's response headers (or the failure), by pool.",
                )
                .buckets(REQUEST_BUCKETS.to_vec()),
                &["pool"],
            ),
        );
        let upstream_errors = register(
            r,
            IntCounterVec::new(
                opts(
                    "switchyard_upstream_errors_total",
                    "Failed upstream attempts, by pool and kind (connect, timeout, reset, protocol).",
                ),
                &["pool", "kind"],
            ),
        );
        let inflight = register(
            r,
            IntGaugeVec::new(
                opts(
                    "switchyard_inflight_requests",
                    "Requests being proxied to the pool right now.",
                ),
                &["pool"],
            ),
        );
        let weight = register(
            r,
            GaugeVec::new(
                opts(
                    "switchyard_pool_weight",
                    "Share of new traffic routed to the pool, in percent (0-100).",
                ),
                &["pool"],
            ),
        );
        let mirror = register(
            r,
            IntCounterVec::new(
                opts(
                    "switchyard_mirror_requests_total",
                    "Copies of live requests sent to the candidate, by result: match, mismatch (its answer differed from the live one), error (no comparison), dropped (mirror.max_inflight copies were out).",
                ),
                &["result"],
            ),
        );
        let mirror = super::mirror::MirrorCounters(
            super::mirror::MirrorResult::ALL.map(|m| mirror.with_label_values(&[m.as_str()])),
        );
        let pools = PoolName::ALL.map(|pool| {
            let name = pool.as_str();
            PoolMetrics {
                requests: CODE_LABELS.map(|code| requests.with_label_values(&[name, code])),
                duration: duration.with_label_values(&[name]),
                upstream_errors: UpstreamErrorKind::ALL
                    .map(|kind| upstream_errors.with_label_values(&[name, kind.as_str()])),
                inflight: inflight.with_label_values(&[name]),
                weight: weight.with_label_values(&[name]),
                mirror: mirror.clone(),
            }
        });

        let endpoint_healthy = register(
            r,
            IntGaugeVec::new(
                opts(
                    "switchyard_endpoint_healthy",
                    "1 when the endpoint receives traffic (healthy, not ejected), else 0.",
                ),
                &["pool", "endpoint"],
            ),
        );
        let switches = register(
            r,
            IntCounterVec::new(
                opts(
                    "switchyard_switches_total",
                    "Instant switches, by target pool and result (completed, aborted, refused).",
                ),
                &["to", "result"],
            ),
        );
        for pool in PoolName::ALL {
            for result in SwitchResult::ALL {
                switches.with_label_values(&[pool.as_str(), result.as_str()]);
            }
        }
        let rollbacks = register(
            r,
            IntCounterVec::new(
                opts(
                    "switchyard_rollbacks_total",
                    "Rollbacks to the live pool, by reason: a rollback rule, or manual.",
                ),
                &["reason"],
            ),
        );
        for reason in RollbackReason::ALL {
            rollbacks.with_label_values(&[reason.as_str()]);
        }
        let held_requests = register(
            r,
            IntCounter::with_opts(opts(
                "switchyard_held_requests_total",
                "Write requests held at the proxy during a switch.",
            )),
        );
        let hold_duration = register(
            r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "switchyard_hold_duration_seconds",
                    "How long writes were held during a switch, from the start of the hold to their release.",
                )
                .buckets(HOLD_BUCKETS.to_vec()),
            ),
        );
        let gate_lag = register(
            r,
            IntGauge::with_opts(opts(
                "switchyard_gate_lag_bytes",
                "While a switch waits on the PostgreSQL gate: how many bytes of the primary's WAL the replica has still to replay; 0 otherwise.",
            )),
        );
        let config_reloads = register(
            r,
            IntCounterVec::new(
                opts(
                    "switchyard_config_reloads_total",
                    "Configuration reloads, by result (success, failure: the old config stays).",
                ),
                &["result"],
            ),
        );
        for result in ["success", "failure"] {
            config_reloads.with_label_values(&[result]);
        }
        let analysis = AnalysisMetrics::new(r);

        Metrics {
            registry,
            pools,
            endpoint_healthy,
            switches,
            rollbacks,
            held_requests,
            hold_duration,
            gate_lag,
            config_reloads,
            analysis,
        }
    }

    /// The registry, e.g. to add process metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The request-path handles of a pool.
    pub fn pool(&self, pool: PoolName) -> &PoolMetrics {
        &self.pools[pool.index()]
    }

    /// Every series in the Prometheus text format.
    pub fn encode(&self) -> String {
        // Only fails on a family without metrics or name; gather() prunes the
        // former and every family here is named.
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|error| {
                tracing::error!(%error, "cannot encode metrics");
                String::new()
            })
    }

    /// Health transition of an endpoint (also call it once when the endpoint appears).
    pub fn set_endpoint_healthy(&self, pool: PoolName, endpoint: &str, healthy: bool) {
        self.endpoint_healthy
            .with_label_values(&[pool.as_str(), endpoint])
            .set(i64::from(healthy));
    }

    /// Drop an endpoint's series (removed by a reload). False if it had none.
    pub fn remove_endpoint(&self, pool: PoolName, endpoint: &str) -> bool {
        self.endpoint_healthy
            .remove_label_values(&[pool.as_str(), endpoint])
            .is_ok()
    }

    pub fn switch(&self, to: PoolName, result: SwitchResult) {
        self.switches
            .with_label_values(&[to.as_str(), result.as_str()])
            .inc();
    }

    pub fn rollback(&self, reason: RollbackReason) {
        self.rollbacks.with_label_values(&[reason.as_str()]).inc();
    }

    /// One switch's hold: how many writes waited and for how long.
    pub fn hold(&self, held_requests: u64, duration: Duration) {
        self.held_requests.inc_by(held_requests);
        self.hold_duration.observe(duration.as_secs_f64());
    }

    /// `switchyard_gate_lag_bytes`.
    pub fn set_gate_lag(&self, bytes: u64) {
        self.gate_lag.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub fn config_reload(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.config_reloads.with_label_values(&[result]).inc();
    }
}

/// Client connections over all proxy listeners: open, and of those the
/// idle HTTP/1 ones parked without hyper's buffers. Registered by the server
/// ([`Metrics::register_client_connections`]); unregistered gauges (the
/// default) count for nobody.
#[derive(Clone, Debug)]
pub struct ClientConnGauges {
    pub open: IntGauge,
    pub parked: IntGauge,
}

impl Default for ClientConnGauges {
    fn default() -> Self {
        let gauge = |name: &str| IntGauge::new(name, name).expect("a valid gauge name");
        ClientConnGauges {
            open: gauge("client_connections"),
            parked: gauge("client_connections_parked"),
        }
    }
}

impl Metrics {
    /// Register the client connection gauges. Call once.
    pub fn register_client_connections(&self) -> ClientConnGauges {
        let r = &self.registry;
        let gauge = |name: &str, help: &str| register(r, IntGauge::with_opts(opts(name, help)));
        ClientConnGauges {
            open: gauge(
                "switchyard_client_connections",
                "Client connections open on the proxy listeners.",
            ),
            parked: gauge(
                "switchyard_client_connections_parked",
                "Of those, idle HTTP/1 keep-alive connections parked: waiting for their next request without a buffer.",
            ),
        }
    }
}

/// Fleet mode's series (SPEC.md section 9), registered only in fleet mode
/// ([`Metrics::register_fleet`]): a single proxy shows none of them.
#[derive(Clone)]
pub struct FleetMetrics {
    pub connected: IntGauge,
    /// 1 while this member leads (set by the election).
    pub leader: IntGauge,
    pub members: IntGauge,
    pub generation: IntGauge,
    pub sync_age_seconds: Gauge,
    pub write_fenced: IntGauge,
    pub resyncs: IntCounterVec,
}

impl Metrics {
    /// Register fleet mode's series; `resync_reasons` get their series at 0.
    /// Call once.
    pub fn register_fleet(&self, resync_reasons: &[&str]) -> FleetMetrics {
        let r = &self.registry;
        let gauge = |name: &str, help: &str| register(r, IntGauge::with_opts(opts(name, help)));
        let m = FleetMetrics {
            connected: gauge(
                "switchyard_fleet_connected",
                "1 while this member is in touch with the fleet's etcd (its watch is up).",
            ),
            leader: gauge(
                "switchyard_fleet_leader",
                "1 while this member is the fleet's leader.",
            ),
            members: gauge(
                "switchyard_fleet_members",
                "Members of the fleet this member sees registered.",
            ),
            generation: gauge(
                "switchyard_fleet_generation",
                "The generation of the fleet's state document this member last saw.",
            ),
            sync_age_seconds: register(
                r,
                Gauge::with_opts(opts(
                    "switchyard_fleet_sync_age_seconds",
                    "Seconds since etcd last answered this member.",
                )),
            ),
            write_fenced: gauge(
                "switchyard_fleet_write_fenced",
                "1 while this member answers unsafe methods 503 (write_fence passed without contact).",
            ),
            resyncs: register(
                r,
                IntCounterVec::new(
                    opts(
                        "switchyard_fleet_resyncs_total",
                        "Times this member's watch had to get in step with etcd again, by reason.",
                    ),
                    &["reason"],
                ),
            ),
        };
        for reason in resync_reasons {
            m.resyncs.with_label_values(&[reason]);
        }
        m
    }
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help)
}

/// Add a collector to the registry. The definitions above are constants, so
/// a failure is a programming error caught by the tests.
fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    collector: prometheus::Result<C>,
) -> C {
    let collector = collector.expect("metric definition is valid");
    registry
        .register(Box::new(collector.clone()))
        .expect("metric names are unique");
    collector
}

#[cfg(test)]
mod tests;
