//! The configuration file's schema: SPEC.md section 2 as serde types.
//!
//! Every struct denies unknown keys and carries the documented defaults, so a
//! file that names only `pools` is complete. Durations are strings such as
//! `250ms`, `2s` or `1m` (humantime). This module only describes the shape;
//! semantic checks (weights summing to 100, thresholds above zero, ...) live in
//! `semantic.rs`, and `validate.rs` reports every mistake with its line and
//! column. One file, over 500 lines, on purpose: it is SPEC.md section 2 in
//! the spec's order, each section's defaults beside its fields, so the two
//! are read side by side.

use super::cidr::Cidr;
use super::gate::GateConfig;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listeners")]
    pub listeners: Vec<ListenerConfig>,
    #[serde(default)]
    pub admin: AdminConfig,
    /// The only required key.
    pub pools: PoolsConfig,
    #[serde(default)]
    pub health_check: HealthCheckConfig,
    #[serde(default)]
    pub outlier_detection: OutlierConfig,
    #[serde(default)]
    pub traffic: TrafficConfig,
    #[serde(default)]
    pub rollout: RolloutConfig,
    #[serde(default)]
    pub rollback: RollbackConfig,
    #[serde(default)]
    pub cutover: CutoverConfig,
    #[serde(default)]
    pub drain: DrainConfig,
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    #[serde(default)]
    pub retries: RetriesConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// `null` disables persistence of the runtime state.
    #[serde(default = "default_state_file")]
    pub state_file: Option<PathBuf>,
    #[serde(default)]
    pub audit_log: Option<PathBuf>,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub fleet: Option<super::fleet::FleetConfig>,
    /// Checks on business metrics (SPEC.md section 10).
    #[serde(default)]
    pub analysis: super::analysis::AnalysisConfig,
    /// Where events are posted (SPEC.md section 10).
    #[serde(default)]
    pub notify: Vec<super::analysis::NotifyConfig>,
    /// Copies of live requests to the candidate, compared (SPEC.md section 12).
    #[serde(default)]
    pub mirror: super::mirror::MirrorConfig,
}

fn default_listeners() -> Vec<ListenerConfig> {
    vec![ListenerConfig {
        bind: SocketAddr::from(([0, 0, 0, 0], 8080)),
        tls: None,
        pool: None,
    }]
}

fn default_state_file() -> Option<PathBuf> {
    Some(PathBuf::from("./switchyard-state.json"))
}

/// One of the two pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolName {
    Blue,
    Green,
}

impl PoolName {
    pub const ALL: [PoolName; 2] = [PoolName::Blue, PoolName::Green];

    /// Index into per-pool arrays: blue 0, green 1.
    pub const fn index(self) -> usize {
        match self {
            PoolName::Blue => 0,
            PoolName::Green => 1,
        }
    }

    pub const fn other(self) -> PoolName {
        match self {
            PoolName::Blue => PoolName::Green,
            PoolName::Green => PoolName::Blue,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            PoolName::Blue => "blue",
            PoolName::Green => "green",
        }
    }
}

impl std::fmt::Display for PoolName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PoolName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "blue" => Ok(PoolName::Blue),
            "green" => Ok(PoolName::Green),
            other => Err(format!("unknown pool {other:?}: expected blue or green")),
        }
    }
}

/// Which pool a preview listener pins its traffic to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolSelector {
    /// Whichever pool is the candidate at the moment of the request.
    Candidate,
    Blue,
    Green,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub bind: SocketAddr,
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    #[serde(default)]
    pub pool: Option<PoolSelector>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub bind: SocketAddr,
    pub token_file: Option<PathBuf>,
    pub metrics_public: bool,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 9901)),
            token_file: None,
            metrics_public: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolsConfig {
    pub blue: PoolConfig,
    pub green: PoolConfig,
}

impl PoolsConfig {
    pub fn get(&self, name: PoolName) -> &PoolConfig {
        match name {
            PoolName::Blue => &self.blue,
            PoolName::Green => &self.green,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// `host:port` of every endpoint.
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub tls: Option<UpstreamTls>,
    #[serde(default)]
    pub protocol: UpstreamProtocol,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM bundle of trusted roots; the system roots when absent.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// SNI and the name the certificate must match; the endpoint's host when absent.
    #[serde(default)]
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    H2,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    pub path: String,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// `"200-399"`, `"200"`, or a comma-separated list of both forms.
    pub expected_status: String,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            path: "/health".into(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            expected_status: "200-399".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierConfig {
    pub consecutive_failures: u32,
    #[serde(with = "humantime_serde")]
    pub ejection_time: Duration,
    /// At most this share of a pool's endpoints is ejected at once (at
    /// least one may always be): one bad route answering 500 must not
    /// empty a pool and send everyone to the other version.
    pub max_ejection_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_failures: 5,
            ejection_time: Duration::from_secs(30),
            max_ejection_percent: 50,
        }
    }
}

/// A blue/green split in percent, as written in the file (0.01 resolution).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsConfig {
    pub blue: f64,
    pub green: f64,
}

impl Default for WeightsConfig {
    fn default() -> Self {
        WeightsConfig {
            blue: 100.0,
            green: 0.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StickyConfig {
    #[serde(default = "default_sticky_cookie")]
    pub cookie: String,
    #[serde(default = "default_sticky_max_age", with = "humantime_serde")]
    pub max_age: Duration,
}

fn default_sticky_cookie() -> String {
    "switchyard-bucket".into()
}

fn default_sticky_max_age() -> Duration {
    Duration::from_secs(3600)
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrafficConfig {
    pub initial: WeightsConfig,
    pub sticky: Option<StickyConfig>,
    pub override_header: Option<String>,
    /// Clients whose `override_header` is honoured (from anyone else it is
    /// ignored); loopback only by default. It never reaches the upstream.
    pub override_trusted: Vec<Cidr>,
    pub expose_pool_header: bool,
    pub failover: bool,
}

fn default_override_trusted() -> Vec<Cidr> {
    vec![Cidr::new_v4([127, 0, 0, 0], 8), Cidr::IPV6_LOOPBACK]
}

impl Default for TrafficConfig {
    fn default() -> Self {
        TrafficConfig {
            initial: WeightsConfig::default(),
            sticky: None,
            override_header: None,
            override_trusted: default_override_trusted(),
            expose_pool_header: false,
            failover: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutConfig {
    pub steps: Vec<f64>,
    #[serde(with = "humantime_serde")]
    pub step_interval: Duration,
    pub auto_promote: bool,
    #[serde(with = "humantime_serde")]
    pub bake_time: Duration,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        RolloutConfig {
            steps: vec![10.0, 25.0, 50.0, 75.0, 100.0],
            step_interval: Duration::from_secs(60),
            auto_promote: true,
            bake_time: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RollbackConfig {
    pub enabled: bool,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// A short window judged besides `window`, as burn-rate alerting pairs
    /// a long window with a short one: a candidate that starts failing
    /// breaches here at once instead of after its earlier good requests in
    /// `window` stop diluting the rate. Same rules and `min_requests`;
    /// null turns it off.
    #[serde(with = "humantime_serde")]
    pub recent_window: Option<Duration>,
    pub min_requests: u64,
    pub max_error_rate: f64,
    pub max_error_rate_increase: Option<f64>,
    #[serde(with = "humantime_serde")]
    pub max_p99_latency: Option<Duration>,
    pub consecutive_breaches: u32,
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// `threshold` (the rules above) or `sequential` (SPEC.md section 10).
    pub judge: super::analysis::JudgeKind,
    /// Sequential: a false rollback stays under `1 - confidence`.
    pub confidence: f64,
    /// Sequential: the smallest error-rate increase over the live pool worth acting on.
    pub min_effect: f64,
}

/// `rollback.recent_window` by default: 1/12 of the default 60 s `window`,
/// the ratio of the multiwindow burn-rate alerts of Google's SRE workbook
/// (1 h and 5 min); long enough for `consecutive_breaches` (3) evaluations
/// at the default 1 s `interval` to look at overlapping figures, and at 10
/// candidate requests per second it holds the default `min_requests` (50).
pub const DEFAULT_RECENT_WINDOW: Duration = Duration::from_secs(5);

impl Default for RollbackConfig {
    fn default() -> Self {
        RollbackConfig {
            enabled: true,
            interval: Duration::from_secs(1),
            window: Duration::from_secs(60),
            recent_window: Some(DEFAULT_RECENT_WINDOW),
            min_requests: 50,
            max_error_rate: 0.01,
            max_error_rate_increase: None,
            max_p99_latency: None,
            consecutive_breaches: 3,
            grace: Duration::from_secs(10),
            judge: super::analysis::JudgeKind::Threshold,
            confidence: 0.99,
            min_effect: 0.005,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CutoverConfig {
    pub hold_writes: bool,
    #[serde(with = "humantime_serde")]
    pub max_hold: Duration,
    pub max_held_requests: usize,
    pub gate: Option<GateConfig>,
    pub min_healthy: u32,
}

impl CutoverConfig {
    /// The longest a held write can wait: `max_hold`, and once promotion
    /// of the replica has begun, [`super::gate::PROMOTE_WAIT`] more.
    pub fn hold_bound(&self) -> Duration {
        let promotes = self
            .gate
            .as_ref()
            .and_then(|g| g.postgres.as_ref())
            .is_some_and(|p| p.promote);
        if promotes {
            self.max_hold + super::gate::PROMOTE_WAIT
        } else {
            self.max_hold
        }
    }
}

impl Default for CutoverConfig {
    fn default() -> Self {
        CutoverConfig {
            hold_writes: false,
            max_hold: Duration::from_secs(2),
            max_held_requests: 10_000,
            gate: None,
            min_healthy: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DrainConfig {
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig {
            timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsConfig {
    #[serde(with = "humantime_serde")]
    pub connect: Duration,
    #[serde(with = "humantime_serde")]
    pub request: Duration,
    #[serde(with = "humantime_serde")]
    pub client_header: Duration,
    /// The longest pause between pieces of a request body from the client.
    #[serde(with = "humantime_serde")]
    pub client_body: Duration,
    #[serde(with = "humantime_serde")]
    pub upstream_idle: Duration,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(60),
            client_header: Duration::from_secs(10),
            client_body: Duration::from_secs(30),
            upstream_idle: Duration::from_secs(90),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetriesConfig {
    pub attempts: u32,
}

impl Default for RetriesConfig {
    fn default() -> Self {
        RetriesConfig { attempts: 1 }
    }
}

/// What the proxy accepts from clients before it refuses: connections open
/// at once, and the size of a request head. Applied at start (a reload that
/// changes them says a restart is needed).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Client connections open at once over all listeners; one more is
    /// answered `503` with `Retry-After` and closed.
    pub max_connections: usize,
    /// Largest request head (request line and header fields) in bytes: `431` beyond.
    pub max_header_bytes: usize,
    /// Largest request target (path and query) in bytes: `414` beyond.
    pub max_uri_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 10_000,
            max_header_bytes: 64 * 1024,
            max_uri_bytes: 8 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
    pub access_log: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
            access_log: false,
        }
    }
}
