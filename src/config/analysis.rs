//! The `analysis:` and `notify:` sections and the sequential judge's keys of
//! `rollback:` (SPEC.md section 10): checks on business metrics, and where
//! events are posted.
//!
//! Owns the sections' serde types, their defaults and their rules. The rules
//! are a pure function of the typed config ([`problems`]), tested without a
//! file; [`check`] places them in the file for `switchyard check` and
//! reloads. Running checks and sending notifications is
//! `control::analysis`'s and `control::notify`'s job, not this module's.

use super::fleet::Problem;
use super::schema::{Config, RollbackConfig};
use super::tree::{Issue, Tree};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

/// The one placeholder a check's query or URL may hold.
pub const POOL_PLACEHOLDER: &str = "{{pool}}";

/// Every event kind a notification may name: the words of SPEC.md
/// section 3 (`control::events` pins that this is all of them).
pub const EVENT_KINDS: &[&str] = &[
    "started",
    "weights_changed",
    "switch_started",
    "switch_completed",
    "switch_aborted",
    "rollout_started",
    "rollout_step",
    "rollout_paused",
    "rollout_resumed",
    "rollout_completed",
    "rollback",
    "bake_completed",
    "config_reloaded",
    "config_rejected",
    "endpoint_down",
    "endpoint_up",
    "endpoint_ejected",
    "endpoint_drained",
    "endpoint_enabled",
    "failover",
    "rearmed",
    "state_file_error",
];

/// `analysis:`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisConfig {
    /// Run while the candidate takes traffic.
    pub checks: Vec<CheckConfig>,
}

/// One check: where its value comes from and what it must be.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// Names the check in events, `explain` and the `check` label.
    pub name: String,
    #[serde(default)]
    pub prometheus: Option<PrometheusSource>,
    #[serde(default)]
    pub http: Option<HttpSource>,
    #[serde(default)]
    pub compare: Compare,
    #[serde(default)]
    pub min_ratio: Option<f64>,
    #[serde(default)]
    pub max_ratio: Option<f64>,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default = "default_check_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// How long one query may take; longer is inconclusive.
    #[serde(default = "default_check_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive failures that roll back, reason `check`.
    #[serde(default = "default_failure_limit")]
    pub failure_limit: u32,
}

fn default_check_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_check_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_failure_limit() -> u32 {
    3
}

/// An instant query against a Prometheus server's HTTP API.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSource {
    /// `http://host:port` (or https) of the server.
    pub url: String,
    /// PromQL; `{{pool}}` becomes `blue` or `green`.
    pub query: String,
}

/// A URL answering `{"value": NUMBER}`, or only 2xx (pass) / else (fail).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSource {
    /// `{{pool}}` becomes `blue` or `green`.
    pub url: String,
}

/// What a check's value is held against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compare {
    /// The candidate's value against the live pool's: `min_ratio`, `max_ratio`.
    #[default]
    Baseline,
    /// The candidate's value against `min` and `max`.
    Absolute,
}

impl CheckConfig {
    /// An `http` check with no bound: its answer's status is the verdict.
    pub fn status_only(&self) -> bool {
        self.http.is_some()
            && self.compare == Compare::Absolute
            && self.min.is_none()
            && self.max.is_none()
    }
}

/// `rollback.judge`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JudgeKind {
    /// The rules of SPEC.md section 4.
    #[default]
    Threshold,
    /// A mixture sequential probability ratio test against the live pool.
    Sequential,
}

/// One `notify:` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    pub url: String,
    /// Event kinds sent to this URL (the words of `GET /api/v1/events`).
    pub events: Vec<String>,
    /// HMAC-SHA256 key: the file's content, trailing newline trimmed.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    #[serde(default)]
    pub format: NotifyFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyFormat {
    /// The event as JSON.
    #[default]
    Json,
    /// `{"text": "..."}`, Slack's incoming-webhook form.
    Slack,
}

fn problem(path: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        path: path.into(),
        message: message.into(),
    }
}

/// Whether `s` is an http:// or https:// URL with a host: `Ok(true)` for https.
pub fn outbound_url(s: &str) -> Result<bool, String> {
    let err = || format!("`{s}` is not an http:// or https:// URL with a host");
    let uri: http::Uri = s.parse().map_err(|_| err())?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(err()),
    };
    match uri.host() {
        Some(h) if !h.is_empty() => Ok(https),
        _ => Err(err()),
    }
}

/// Every `{{...}}` in `s` must be `{{pool}}`.
pub fn placeholders(s: &str) -> Result<(), String> {
    let mut rest = s;
    for _ in 0..s.len() {
        let Some(open) = rest.find("{{") else {
            return match rest.contains("}}") {
                true => Err("has `}}` without `{{`".into()),
                false => Ok(()),
            };
        };
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return Err("has `{{` without `}}`".into());
        };
        let name = &after[..close];
        if name.trim() != "pool" {
            return Err(format!(
                "unknown placeholder `{{{{{name}}}}}`: the only one is {POOL_PLACEHOLDER}"
            ));
        }
        rest = &after[close + 2..];
    }
    Ok(())
}

/// `s` with `{{pool}}` replaced by `pool`.
pub fn fill(s: &str, pool: &str) -> String {
    s.replace(POOL_PLACEHOLDER, pool)
}

fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("must not be empty")
    } else if name.len() > 64 {
        Err("must be at most 64 characters")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        Err("may hold only letters, digits, `_`, `-` and `.`")
    } else {
        Ok(())
    }
}

fn finite(out: &mut Vec<Problem>, path: String, v: Option<f64>) {
    if v.is_some_and(|v| !v.is_finite()) {
        out.push(problem(path, "must be a finite number"));
    }
}

fn one_check(out: &mut Vec<Problem>, at: &str, c: &CheckConfig) {
    let p = |k: &str| format!("{at}.{k}");
    if let Err(m) = check_name(&c.name) {
        out.push(problem(p("name"), m));
    }
    match (&c.prometheus, &c.http) {
        (Some(_), Some(_)) => out.push(problem(at, "give either `prometheus` or `http`, not both")),
        (None, None) => out.push(problem(at, "needs a source: `prometheus` or `http`")),
        (Some(prom), None) => {
            if let Err(m) = outbound_url(&prom.url) {
                out.push(problem(p("prometheus.url"), m));
            }
            if prom.query.trim().is_empty() {
                out.push(problem(p("prometheus.query"), "must not be empty"));
            } else if let Err(m) = placeholders(&prom.query) {
                out.push(problem(p("prometheus.query"), m));
            }
        }
        (None, Some(h)) => match placeholders(&h.url) {
            Err(m) => out.push(problem(p("http.url"), m)),
            Ok(()) => {
                if let Err(m) = outbound_url(&fill(&h.url, "blue")) {
                    out.push(problem(p("http.url"), m));
                }
            }
        },
    }
    for (k, v) in [
        ("min_ratio", c.min_ratio),
        ("max_ratio", c.max_ratio),
        ("min", c.min),
        ("max", c.max),
    ] {
        finite(out, p(k), v);
    }
    match c.compare {
        Compare::Baseline => {
            if c.min.is_some() || c.max.is_some() {
                let k = if c.min.is_some() { "min" } else { "max" };
                out.push(problem(
                    p(k),
                    "belongs to `compare: absolute`; a baseline check takes min_ratio/max_ratio",
                ));
            }
            if c.min_ratio.is_none() && c.max_ratio.is_none() {
                out.push(problem(
                    p("compare"),
                    "baseline needs `min_ratio` or `max_ratio` (e.g. min_ratio: 0.9)",
                ));
            }
            for (k, v) in [("min_ratio", c.min_ratio), ("max_ratio", c.max_ratio)] {
                if v.is_some_and(|v| v < 0.0) {
                    out.push(problem(p(k), "must not be negative"));
                }
            }
            if let (Some(lo), Some(hi)) = (c.min_ratio, c.max_ratio) {
                if lo > hi {
                    out.push(problem(
                        p("min_ratio"),
                        format!("min_ratio ({lo}) is above max_ratio ({hi})"),
                    ));
                }
            }
        }
        Compare::Absolute => {
            if c.min_ratio.is_some() || c.max_ratio.is_some() {
                let k = if c.min_ratio.is_some() {
                    "min_ratio"
                } else {
                    "max_ratio"
                };
                out.push(problem(
                    p(k),
                    "belongs to `compare: baseline`; an absolute check takes min/max",
                ));
            }
            if c.prometheus.is_some() && c.min.is_none() && c.max.is_none() {
                out.push(problem(
                    p("compare"),
                    "absolute needs `min` or `max` (only an http check may go without, judged by its status)",
                ));
            }
            if let (Some(lo), Some(hi)) = (c.min, c.max) {
                if lo > hi {
                    out.push(problem(p("min"), format!("min ({lo}) is above max ({hi})")));
                }
            }
        }
    }
    let max = super::values::MAX_CHECK_INTERVAL;
    for (k, d) in [("interval", c.interval), ("timeout", c.timeout)] {
        if d.is_zero() {
            out.push(problem(p(k), "must be longer than 0"));
        } else if let Err(m) = super::values::duration_at_most(d, max) {
            out.push(problem(p(k), m));
        }
    }
    if c.failure_limit == 0 {
        out.push(problem(p("failure_limit"), "must be at least 1"));
    }
}

/// The sequential judge's keys of `rollback`.
fn judge(out: &mut Vec<Problem>, r: &RollbackConfig) {
    if !(r.confidence > 0.5 && r.confidence < 1.0) {
        out.push(problem(
            "rollback.confidence",
            "must be above 0.5 and below 1 (0.99: a false rollback at most 1% of the time)",
        ));
    }
    if !(r.min_effect > 0.0 && r.min_effect < 1.0) {
        out.push(problem(
            "rollback.min_effect",
            "must be above 0 and below 1 (0.005 is half a percentage point)",
        ));
    }
}

fn notify(out: &mut Vec<Problem>, i: usize, n: &NotifyConfig) {
    let p = |k: &str| format!("notify.{i}.{k}");
    if let Err(m) = outbound_url(&n.url) {
        out.push(problem(p("url"), m));
    }
    if n.events.is_empty() {
        out.push(problem(p("events"), "name at least one event kind"));
    }
    for (j, kind) in n.events.iter().enumerate() {
        if !EVENT_KINDS.contains(&kind.as_str()) {
            out.push(problem(
                format!("notify.{i}.events.{j}"),
                format!(
                    "unknown event kind `{kind}`; known: {}",
                    EVENT_KINDS.join(", ")
                ),
            ));
        }
    }
    if let Some(f) = &n.secret_file {
        match super::values::readable_file(f) {
            Err(m) => out.push(problem(p("secret_file"), m)),
            Ok(()) if read_secret(f).is_none() => out.push(problem(
                p("secret_file"),
                "is empty: the secret would be no secret",
            )),
            Ok(()) => {}
        }
    }
}

/// The secret in `path`, trailing whitespace trimmed; None when it cannot
/// be read or is blank.
pub fn read_secret(path: &std::path::Path) -> Option<Vec<u8>> {
    let raw = std::fs::read(path).ok()?;
    let end = raw
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    (end > 0).then(|| raw[..end].to_vec())
}

/// Every broken rule of `analysis`, `notify` and the judge's keys of
/// `rollback`, each at its dotted path from the top of the file.
pub fn problems(cfg: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for (i, c) in cfg.analysis.checks.iter().enumerate() {
        let at = format!("analysis.checks.{i}");
        one_check(&mut out, &at, c);
        if !names.insert(c.name.as_str()) {
            out.push(problem(
                format!("{at}.name"),
                format!("`{}` names another check already", c.name),
            ));
        }
    }
    judge(&mut out, &cfg.rollback);
    for (i, n) in cfg.notify.iter().enumerate() {
        notify(&mut out, i, n);
    }
    out
}

/// The sections' mistakes placed in the file; a section that could not be
/// read is skipped (its values are stand-ins).
pub(super) fn check(cfg: &Config, doc: &Tree, dirty: &BTreeSet<String>) -> Vec<Issue> {
    problems(cfg)
        .into_iter()
        .filter(|p| {
            let section = p.path.split('.').next().unwrap_or("");
            !dirty.contains(section)
        })
        .map(|p| {
            let shown = super::tree::display_path(&p.path);
            Issue::new(doc.value_pos(&p.path), format!("{shown}: {}", p.message))
        })
        .collect()
}

#[cfg(test)]
mod tests;
