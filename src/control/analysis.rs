//! Checks on business metrics (SPEC.md section 10, `analysis.checks`): a
//! value per pool from Prometheus or a URL, held against the live pool's
//! (`compare: baseline`) or fixed bounds (`absolute`).
//!
//! # Layout
//!
//! - this file: the verdict of one reading as pure logic ([`judge`]) and
//!   the report a check sends to the controller ([`CheckReport`]);
//! - [`probe`]: reading one value (a Prometheus instant query, a URL);
//! - [`runner`]: one task per check, armed while the candidate takes
//!   traffic, reporting to the controller as commands; a slow check never
//!   delays the controller, whose loop only receives reports;
//! - [`drive`]: the controller's side: consecutive failures roll back
//!   (reason `check`), an inconclusive reading pauses a running rollout, a
//!   rollout step waits until every check has passed since the step began.
//!
//! No data (an empty answer, NaN, an error from Prometheus, an unreachable
//! URL) is **inconclusive**, never a pass nor a fail: a rollout never
//! promotes nor rolls back on no data.

pub mod drive;
pub mod probe;
pub mod runner;

use crate::config::analysis::{CheckConfig, Compare};
use crate::config::PoolName;
use serde::Serialize;

/// A check's verdict on one reading; `as_str` is the `result` label of
/// `switchyard_checks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckVerdict {
    Pass,
    Fail,
    Inconclusive,
}

impl CheckVerdict {
    pub const ALL: [CheckVerdict; 3] = [
        CheckVerdict::Pass,
        CheckVerdict::Fail,
        CheckVerdict::Inconclusive,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            CheckVerdict::Pass => "pass",
            CheckVerdict::Fail => "fail",
            CheckVerdict::Inconclusive => "inconclusive",
        }
    }
}

/// What one source said for one pool.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// A number (Prometheus' one sample, or an http check's `value`).
    Value(f64),
    /// A status-only http check's answer: pass on 2xx.
    Status(u16),
    /// No usable data, and why ("Prometheus answered no series").
    NoData(String),
}

/// One check's result, sent to the controller.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    pub check: String,
    /// The arming this reading was taken under ([`runner::Target::epoch`]):
    /// a reading from before the last weight change is dropped.
    #[serde(skip)]
    pub epoch: u64,
    pub verdict: CheckVerdict,
    pub candidate_pool: PoolName,
    /// The candidate's value.
    pub candidate: Option<f64>,
    /// The live pool's value (baseline checks).
    pub live: Option<f64>,
    /// candidate / live (baseline checks with both values).
    pub ratio: Option<f64>,
    /// The bounds it was held against, in words: `ratio >= 0.9`.
    pub threshold: String,
    /// Why, in words.
    pub detail: String,
    pub time: String,
}

/// The bounds of `cfg`, in words.
pub fn threshold(cfg: &CheckConfig) -> String {
    let bound = |name: &str, lo: Option<f64>, hi: Option<f64>| match (lo, hi) {
        (Some(lo), Some(hi)) => format!("{lo} <= {name} <= {hi}"),
        (Some(lo), None) => format!("{name} >= {lo}"),
        (None, Some(hi)) => format!("{name} <= {hi}"),
        (None, None) => "2xx".to_string(),
    };
    match cfg.compare {
        Compare::Baseline => bound("candidate/live", cfg.min_ratio, cfg.max_ratio),
        Compare::Absolute => bound("value", cfg.min, cfg.max),
    }
}

/// The verdict on the candidate's reading (and the live pool's, for a
/// baseline check), with the figures and the why.
pub fn judge(cfg: &CheckConfig, candidate: &Reading, live: Option<&Reading>) -> Judged {
    let mut j = Judged {
        verdict: CheckVerdict::Inconclusive,
        candidate: None,
        live: None,
        ratio: None,
        detail: String::new(),
    };
    let value = |r: &Reading, whose: &str| -> Result<f64, String> {
        match r {
            Reading::Value(v) if v.is_finite() => Ok(*v),
            Reading::Value(v) => Err(format!("{whose} value is {v}")),
            Reading::Status(s) => Err(format!("{whose} answer {s} carried no value")),
            Reading::NoData(why) => Err(format!("{whose}: {why}")),
        }
    };
    if let Reading::Status(s) = candidate {
        if cfg.status_only() {
            let pass = (200..300).contains(s);
            j.verdict = if pass {
                CheckVerdict::Pass
            } else {
                CheckVerdict::Fail
            };
            j.detail = format!("candidate answered {s}");
            return j;
        }
    }
    let c = match value(candidate, "candidate") {
        Ok(c) => c,
        Err(why) => {
            j.detail = format!("inconclusive: {why}");
            return j;
        }
    };
    j.candidate = Some(c);
    let (x, lo, hi, what) = match cfg.compare {
        Compare::Absolute => (c, cfg.min, cfg.max, "value"),
        Compare::Baseline => {
            let l = match live.map(|r| value(r, "live")) {
                Some(Ok(l)) => l,
                Some(Err(why)) => {
                    j.detail = format!("inconclusive: {why}");
                    return j;
                }
                None => {
                    j.detail = "inconclusive: no live value to compare with".into();
                    return j;
                }
            };
            j.live = Some(l);
            if l <= 0.0 {
                j.detail = format!("inconclusive: the live pool's value is {l}: no baseline");
                return j;
            }
            let ratio = c / l;
            j.ratio = Some(ratio);
            (ratio, cfg.min_ratio, cfg.max_ratio, "candidate/live")
        }
    };
    let low = lo.is_some_and(|lo| x < lo);
    let high = hi.is_some_and(|hi| x > hi);
    j.verdict = if low || high {
        CheckVerdict::Fail
    } else {
        CheckVerdict::Pass
    };
    j.detail = match (low, high) {
        (true, _) => format!("{what} {x:.4} is below {}", lo.unwrap_or_default()),
        (_, true) => format!("{what} {x:.4} is above {}", hi.unwrap_or_default()),
        _ => format!("{what} {x:.4} is within {}", threshold(cfg)),
    };
    j
}

/// [`judge`]'s answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub verdict: CheckVerdict,
    pub candidate: Option<f64>,
    pub live: Option<f64>,
    pub ratio: Option<f64>,
    pub detail: String,
}

#[cfg(test)]
mod tests;
