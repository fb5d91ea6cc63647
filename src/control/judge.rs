//! Automatic rollback as pure logic (SPEC.md section 4): [`evaluate`] judges
//! one pair of statistics windows, [`RollbackJudge`] turns a stream of
//! verdicts into a decision (grace after each weight change, then
//! `consecutive_breaches` breaches in a row).
//!
//! Neither reads a clock, the statistics or the routing table: the
//! controller passes the windows and the time in, and acts on the
//! [`Decision`]. That keeps every rule testable on crafted windows.
//!
//! # The rules
//!
//! With at least `min_requests` candidate requests in the window, the
//! candidate breaches when (checked in this order, the first one named):
//! 1. its error rate exceeds `max_error_rate`;
//! 2. `max_error_rate_increase` is set and its error rate exceeds the live
//!    pool's by more than that;
//! 3. `max_p99_latency` is set and its p99 exceeds it.
//!
//! "Exceeds" is strictly above (with 1e-9 of slack for floating-point noise):
//! a value equal to its threshold passes.
//!
//! # Two windows
//!
//! [`evaluate_windows`] judges `window` and, when set, `recent_window` (a
//! few seconds) by the same rules and `min_requests`; a breach in either is
//! a breach. A candidate that starts failing after a minute of good
//! requests takes many seconds to push the whole window's rate over the
//! threshold; in the recent window its earlier good requests no longer
//! dilute the rate. This is the short window of multiwindow burn-rate
//! alerting, used here for speed: `min_requests` in the short window and
//! `consecutive_breaches` keep a single unlucky second from deciding.
//!
//! # When both pools fail (a shared dependency)
//!
//! The rules are independent: `max_error_rate` is an absolute ceiling that
//! applies whatever the live pool does. So with the default
//! `max_error_rate: 0.01`, a database outage that fails blue and green alike
//! still rolls back (harmlessly: blue is no better, but no worse). An
//! operator who wants "roll back only if green is worse than blue" sets
//! `max_error_rate_increase` (e.g. 0.005) and raises `max_error_rate` to a
//! catastrophe ceiling (e.g. 0.5): green failing at 30% while blue fails at
//! 30% then passes, because green is no worse than blue.
//!
//! The increase rule needs a baseline. When the live pool has fewer than
//! `min_requests` requests in the window (e.g. while baking with the
//! candidate at 100%), its error rate is unknown and taken as 0: the
//! candidate may then fail at most `max_error_rate_increase` of its requests.
//! Erring towards a rollback is the safe side for a deployment.

use crate::config::RollbackConfig;
use crate::telemetry::metrics::RollbackReason;
use crate::telemetry::stats::WindowStats;
use serde::Serialize;
use std::time::Duration;
use tokio::time::Instant;

/// Tolerance of threshold comparisons: `0.01 + 0.005` must not breach at 0.015.
const EPSILON: f64 = 1e-9;

/// Which rule a breach broke; `as_str` is the `reason` label of
/// `switchyard_rollbacks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreachReason {
    ErrorRate,
    ErrorRateIncrease,
    Latency,
    /// The sequential judge (SPEC.md section 10): decided at once, not
    /// after `consecutive_breaches` evaluations.
    Sequential,
}

impl BreachReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            BreachReason::ErrorRate => "error_rate",
            BreachReason::ErrorRateIncrease => "error_rate_increase",
            BreachReason::Latency => "latency",
            BreachReason::Sequential => "sequential",
        }
    }
}

impl std::fmt::Display for BreachReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<BreachReason> for RollbackReason {
    fn from(reason: BreachReason) -> Self {
        match reason {
            BreachReason::ErrorRate => RollbackReason::ErrorRate,
            BreachReason::ErrorRateIncrease => RollbackReason::ErrorRateIncrease,
            BreachReason::Latency => RollbackReason::Latency,
            BreachReason::Sequential => RollbackReason::Sequential,
        }
    }
}

/// Why an evaluation could not judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NoVerdictReason {
    /// `rollback.enabled` is false.
    Disabled,
    /// Fewer than `min_requests` candidate requests in the window.
    TooFewRequests { requests: u64, min_requests: u64 },
    /// Fleet mode: fresh stats from fewer than `min_reporting` members.
    TooFewReporting { reporting: u64, needed: u64 },
}

impl std::fmt::Display for NoVerdictReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoVerdictReason::Disabled => f.write_str("automatic rollback is disabled"),
            NoVerdictReason::TooFewRequests {
                requests,
                min_requests,
            } => write!(
                f,
                "{requests} candidate requests in the window, {min_requests} needed"
            ),
            NoVerdictReason::TooFewReporting { reporting, needed } => {
                write!(f, "fresh stats from {reporting} members, {needed} needed")
            }
        }
    }
}

/// The figures that decided a breach: what the `rollback` event's `stats` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    pub candidate_requests: u64,
    pub candidate_error_rate: f64,
    pub candidate_p99_ms: Option<f64>,
    pub live_requests: u64,
    pub live_error_rate: f64,
    pub live_p99_ms: Option<f64>,
    /// The live error rate the increase rule compared against (0 without
    /// enough live requests); `None` when that rule is off.
    pub baseline_error_rate: Option<f64>,
    pub min_requests: u64,
    pub max_error_rate: f64,
    pub max_error_rate_increase: Option<f64>,
    pub max_p99_latency_ms: Option<f64>,
    /// The window these figures cover: `rollback.window`, or
    /// `rollback.recent_window` when that one breached; 0 for the
    /// sequential judge, which counts since the last weight change.
    pub window_ms: u64,
    /// The sequential judge's evidence (`rollback.judge: sequential`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequential: Option<Box<crate::control::sequential::Evidence>>,
}

/// The outcome of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    NoVerdict {
        reason: NoVerdictReason,
    },
    Pass,
    Breach {
        reason: BreachReason,
        figures: Figures,
    },
}

/// Judge the candidate's window against the live pool's.
pub fn evaluate(cfg: &RollbackConfig, candidate: &WindowStats, live: &WindowStats) -> Verdict {
    if !cfg.enabled {
        return Verdict::NoVerdict {
            reason: NoVerdictReason::Disabled,
        };
    }
    if candidate.requests < cfg.min_requests {
        return Verdict::NoVerdict {
            reason: NoVerdictReason::TooFewRequests {
                requests: candidate.requests,
                min_requests: cfg.min_requests,
            },
        };
    }
    let baseline = cfg.max_error_rate_increase.map(|_| {
        if live.requests >= cfg.min_requests {
            live.error_rate
        } else {
            0.0
        }
    });
    let max_p99_ms = cfg.max_p99_latency.map(millis);

    let reason = if exceeds(candidate.error_rate, cfg.max_error_rate) {
        Some(BreachReason::ErrorRate)
    } else if let (Some(increase), Some(base)) = (cfg.max_error_rate_increase, baseline) {
        exceeds(candidate.error_rate, base + increase).then_some(BreachReason::ErrorRateIncrease)
    } else {
        None
    };
    let reason = reason.or_else(|| match (max_p99_ms, candidate.p99_ms) {
        (Some(max), Some(p99)) if exceeds(p99, max) => Some(BreachReason::Latency),
        _ => None,
    });
    match reason {
        None => Verdict::Pass,
        Some(reason) => Verdict::Breach {
            reason,
            figures: Figures {
                candidate_requests: candidate.requests,
                candidate_error_rate: candidate.error_rate,
                candidate_p99_ms: candidate.p99_ms,
                live_requests: live.requests,
                live_error_rate: live.error_rate,
                live_p99_ms: live.p99_ms,
                baseline_error_rate: baseline,
                min_requests: cfg.min_requests,
                max_error_rate: cfg.max_error_rate,
                max_error_rate_increase: cfg.max_error_rate_increase,
                max_p99_latency_ms: max_p99_ms,
                window_ms: u64::try_from(cfg.window.as_millis()).unwrap_or(u64::MAX),
                sequential: None,
            },
        },
    }
}

/// The recent window actually judged: `recent_window` cut to `window`;
/// None when off or no shorter than `window` (then it adds nothing).
pub fn recent_window(cfg: &RollbackConfig) -> Option<Duration> {
    cfg.recent_window
        .map(|r| r.min(cfg.window))
        .filter(|r| *r < cfg.window)
}

/// Judge `window` and then, if it did not breach, the recent window (see
/// the module doc). `recent` is the candidate's and the live pool's figures
/// over [`recent_window`]; None when there is none.
pub fn evaluate_windows(
    cfg: &RollbackConfig,
    candidate: &WindowStats,
    live: &WindowStats,
    recent: Option<(&WindowStats, &WindowStats)>,
) -> Verdict {
    let verdict = evaluate(cfg, candidate, live);
    if matches!(verdict, Verdict::Breach { .. }) {
        return verdict;
    }
    let (Some(window), Some((c, l))) = (recent_window(cfg), recent) else {
        return verdict;
    };
    match evaluate(cfg, c, l) {
        Verdict::Breach {
            reason,
            mut figures,
        } => {
            figures.window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
            Verdict::Breach { reason, figures }
        }
        _ => verdict,
    }
}

/// Strictly above `threshold`, with [`EPSILON`] of slack.
pub fn exceeds(value: f64, threshold: f64) -> bool {
    value > threshold + EPSILON
}

pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Roll back now: the rule broken on the last evaluation, its figures, and
/// how many breaches in a row led here.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub reason: BreachReason,
    pub figures: Figures,
    pub breaches: u32,
}

/// Turns verdicts into a decision: none during `grace` after a weight
/// change, then a rollback after `consecutive_breaches` breaches in a row.
#[derive(Debug, Clone)]
pub struct RollbackJudge {
    consecutive_breaches: u32,
    grace: Duration,
    /// Verdicts before this instant are ignored; `None`: no grace running.
    grace_until: Option<Instant>,
    /// Breaches in a row so far.
    run: u32,
}

impl RollbackJudge {
    /// A judge with no grace running: call [`reset`](Self::reset) when the
    /// candidate starts taking traffic.
    pub fn new(cfg: &RollbackConfig) -> Self {
        RollbackJudge {
            consecutive_breaches: cfg.consecutive_breaches.max(1),
            grace: cfg.grace,
            grace_until: None,
            run: 0,
        }
    }

    /// Take a reloaded config; the running grace and breach count stay.
    pub fn set_config(&mut self, cfg: &RollbackConfig) {
        self.consecutive_breaches = cfg.consecutive_breaches.max(1);
        self.grace = cfg.grace;
    }

    /// A weight change at `now`: restart grace and forget earlier breaches.
    pub fn reset(&mut self, now: Instant) {
        self.grace_until = Some(now + self.grace);
        self.run = 0;
    }

    /// Breaches in a row so far.
    pub fn breaches(&self) -> u32 {
        self.run
    }

    /// How much of grace is left at `now`; None when none runs.
    pub fn grace_left(&self, now: Instant) -> Option<Duration> {
        self.grace_until
            .filter(|until| now < *until)
            .map(|until| until - now)
    }

    /// Breaches in a row that decide.
    pub fn consecutive_breaches(&self) -> u32 {
        self.consecutive_breaches
    }

    /// Whether `now` is still within grace.
    pub fn in_grace(&self, now: Instant) -> bool {
        self.grace_until.is_some_and(|until| now < until)
    }

    /// Feed one evaluation. Returns a decision on the breach that completes
    /// a run of `consecutive_breaches`, then starts counting afresh (the
    /// controller rolls back and calls `reset`). A pass or no verdict breaks
    /// the run; verdicts within grace are ignored.
    pub fn observe(&mut self, now: Instant, verdict: Verdict) -> Option<Decision> {
        if self.in_grace(now) {
            return None;
        }
        match verdict {
            Verdict::Breach { reason, figures } => {
                self.run += 1;
                // The sequential test's bound already holds for every look.
                let needed = match reason {
                    BreachReason::Sequential => 1,
                    _ => self.consecutive_breaches,
                };
                if self.run < needed {
                    return None;
                }
                let breaches = std::mem::take(&mut self.run);
                Some(Decision {
                    reason,
                    figures,
                    breaches,
                })
            }
            Verdict::Pass | Verdict::NoVerdict { .. } => {
                self.run = 0;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
