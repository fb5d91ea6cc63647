//! The rollback rules and the checks as `explain` shows them: pure
//! functions of the figures the controller has, tested on crafted ones.

use super::{CheckExplained, RuleExplained, RuleVerdict};
use crate::config::analysis::CheckConfig;
use crate::config::RollbackConfig;
use crate::control::analysis::drive::CheckState;
use crate::control::analysis::CheckVerdict;
use crate::control::judge::{exceeds, millis};
use crate::control::sequential::{self, Assessment, Evidence};
use crate::telemetry::stats::WindowStats;
use std::time::Duration;

/// A duration in words for a reader: `4 s`, `2 m 30 s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs_f64().ceil() as u64;
    match s {
        0..=119 => format!("{s} s"),
        _ if s % 60 == 0 => format!("{} m", s / 60),
        _ => format!("{} m {} s", s / 60, s % 60),
    }
}

/// One window of the threshold rules: its name and both pools' figures.
pub struct Window<'a> {
    pub name: String,
    pub candidate: &'a WindowStats,
    pub live: &'a WindowStats,
}

/// The threshold rules of SPEC.md section 4, each on `windows` (the
/// rollback window first, then the recent one): the value of the first
/// window that breaches it, else of the rollback window.
pub fn threshold_rules(cfg: &RollbackConfig, windows: &[Window<'_>]) -> Vec<RuleExplained> {
    let Some(main) = windows.first() else {
        return Vec::new();
    };
    let too_few = |w: &Window<'_>| w.candidate.requests < cfg.min_requests;
    let waiting = |w: &Window<'_>| {
        format!(
            "{} of {} requests in the {}",
            w.candidate.requests, cfg.min_requests, w.name
        )
    };
    // (rule, threshold, the value in a window, how it reads)
    type Value<'b> = Box<dyn Fn(&Window<'_>) -> Option<f64> + 'b>;
    let baseline = |w: &Window<'_>| {
        if w.live.requests >= cfg.min_requests {
            w.live.error_rate
        } else {
            0.0
        }
    };
    let rules: Vec<(&str, Option<f64>, Value<'_>, &str)> = vec![
        (
            "max_error_rate",
            Some(cfg.max_error_rate),
            Box::new(|w| Some(w.candidate.error_rate)),
            "candidate error rate",
        ),
        (
            "max_error_rate_increase",
            cfg.max_error_rate_increase,
            Box::new(move |w| Some(w.candidate.error_rate - baseline(w))),
            "candidate error rate over the live pool's",
        ),
        (
            "max_p99_latency",
            cfg.max_p99_latency.map(millis),
            Box::new(|w| w.candidate.p99_ms),
            "candidate p99 (ms)",
        ),
    ];
    rules
        .into_iter()
        .map(|(rule, threshold, value, what)| {
            let Some(threshold) = threshold else {
                return RuleExplained {
                    rule: rule.to_owned(),
                    value: value(main),
                    threshold: None,
                    verdict: RuleVerdict::Off,
                    detail: format!("{rule} is not set"),
                    waiting_for: None,
                };
            };
            if too_few(main) {
                return RuleExplained {
                    rule: rule.to_owned(),
                    value: value(main),
                    threshold: Some(threshold),
                    verdict: RuleVerdict::Waiting,
                    detail: format!("no verdict below min_requests ({})", cfg.min_requests),
                    waiting_for: Some(waiting(main)),
                };
            }
            let judged = windows.iter().filter(|w| !too_few(w));
            let breached = judged
                .clone()
                .find(|w| value(w).is_some_and(|v| exceeds(v, threshold)));
            let shown = breached.unwrap_or(main);
            let v = value(shown);
            let verdict = match breached {
                Some(_) => RuleVerdict::Breach,
                None => RuleVerdict::Pass,
            };
            let relation = if verdict == RuleVerdict::Breach {
                "above"
            } else {
                "within"
            };
            let detail = match v {
                Some(v) => format!(
                    "{what} {v:.4} over {} requests in the {} is {relation} {threshold}",
                    shown.candidate.requests, shown.name
                ),
                None => format!("{what}: no samples in the {}", shown.name),
            };
            RuleExplained {
                rule: rule.to_owned(),
                value: v,
                threshold: Some(threshold),
                verdict,
                detail,
                waiting_for: None,
            }
        })
        .collect()
}

/// The sequential judge's two halves.
pub fn sequential_rules(a: &Assessment) -> Vec<RuleExplained> {
    let waiting = a.waiting_for.first().cloned();
    let half = |name: &str, e: Option<&Evidence>, why: Option<String>| match e {
        Some(e) => RuleExplained {
            rule: name.to_owned(),
            value: Some(e.evidence),
            threshold: Some(e.needed),
            verdict: if e.decides() {
                RuleVerdict::Breach
            } else {
                RuleVerdict::Pass
            },
            detail: sequential::describe(e),
            waiting_for: (!e.decides()).then(|| {
                format!(
                    "evidence {:.3} of {:.0} needed (confidence {})",
                    e.evidence, e.needed, a.confidence
                )
            }),
        },
        None => RuleExplained {
            rule: name.to_owned(),
            value: None,
            threshold: None,
            verdict: RuleVerdict::Waiting,
            detail: "inconclusive: too little traffic to weigh".to_owned(),
            waiting_for: why,
        },
    };
    let latency_why = a
        .waiting_for
        .iter()
        .find(|w| w.starts_with("latency"))
        .cloned()
        .or_else(|| waiting.clone());
    vec![
        half("sequential_errors", a.errors.as_ref(), waiting),
        half("sequential_latency", a.latency.as_ref(), latency_why),
    ]
}

/// One check now: its last reading, its bounds, and what it waits for.
pub fn check(cfg: &CheckConfig, state: Option<&CheckState>, armed: bool) -> CheckExplained {
    let threshold = crate::control::analysis::threshold(cfg);
    let mut c = CheckExplained {
        name: cfg.name.clone(),
        verdict: "waiting".to_owned(),
        value: None,
        candidate: None,
        live: None,
        threshold,
        failures: 0,
        failure_limit: cfg.failure_limit,
        detail: String::new(),
        waiting_for: None,
        last_reading: None,
    };
    if !armed {
        c.verdict = "not_armed".to_owned();
        c.waiting_for = Some("not armed: the candidate takes no traffic".to_owned());
        return c;
    }
    let Some(last) = state.and_then(|s| s.last.as_ref()) else {
        c.waiting_for = Some(format!(
            "no reading yet (every {})",
            human(cfg.interval).replace(' ', "")
        ));
        return c;
    };
    let s = state.cloned().unwrap_or_default();
    c.verdict = last.verdict.as_str().to_owned();
    c.value = last.ratio.or(last.candidate);
    c.candidate = last.candidate;
    c.live = last.live;
    c.failures = s.failures;
    c.detail = last.detail.clone();
    c.last_reading = Some(last.time.clone());
    c.waiting_for = match last.verdict {
        CheckVerdict::Pass => None,
        CheckVerdict::Inconclusive => Some(last.detail.clone()),
        CheckVerdict::Fail => Some(format!(
            "failed {} of {} times in a row before a rollback",
            s.failures, cfg.failure_limit
        )),
    };
    c
}
