//! `GET /api/v1/explain` and `ctl explain` (SPEC.md section 10,
//! "Explanations"): for every rollback rule and every check, now, its
//! value, its threshold, its verdict, and what it waits for ("17 of 50
//! requests", "grace ends in 4 s", "inconclusive: Prometheus answered no
//! series"); and why the rollout has not moved yet.
//!
//! The controller builds it on request from what it judges with (the same
//! [`crate::control::rollback::Judgement`] as the rollback tick), so it
//! never disagrees with the decision it explains. [`rules`] holds the pure
//! part; this file only gathers. Nothing here decides anything.

pub mod rules;

use crate::config::analysis::JudgeKind;
use crate::config::PoolName;
use crate::control::document::Phase;
use crate::control::fleet_judge::FleetFigures;
use crate::control::judge::{NoVerdictReason, Verdict};
use crate::control::Controller;
use rules::{human, Window};
use serde::Serialize;
use std::time::Duration;

/// One rule's state now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleVerdict {
    Pass,
    Breach,
    /// No verdict yet (too little traffic, no baseline).
    Waiting,
    /// Not configured.
    Off,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleExplained {
    /// The config key (`max_error_rate`, ...) or `sequential_errors`,
    /// `sequential_latency`.
    pub rule: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub verdict: RuleVerdict,
    pub detail: String,
    pub waiting_for: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckExplained {
    pub name: String,
    /// `pass`, `fail`, `inconclusive`, `waiting` (no reading yet) or
    /// `not_armed`.
    pub verdict: String,
    /// What the bounds are held against: candidate/live for a baseline
    /// check, the candidate's value for an absolute one.
    pub value: Option<f64>,
    pub candidate: Option<f64>,
    pub live: Option<f64>,
    pub threshold: String,
    pub failures: u32,
    pub failure_limit: u32,
    pub detail: String,
    pub waiting_for: Option<String>,
    pub last_reading: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RollbackExplained {
    pub judge: JudgeKind,
    /// Automatic rollback watches the candidate now.
    pub armed: bool,
    /// `pass`, `breach`, `no_verdict`, `not_armed` or `disabled`.
    pub verdict: String,
    pub waiting_for: Option<String>,
    pub grace_left_ms: Option<u64>,
    pub breaches: u32,
    pub consecutive_breaches: u32,
    pub rules: Vec<RuleExplained>,
    /// Fleet mode: whose stats the leader summed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetFigures>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RolloutExplained {
    pub step: usize,
    pub steps: Vec<f64>,
    pub paused: bool,
    pub auto_promote: bool,
    pub next_step_in_ms: Option<u64>,
    pub waiting_for: Option<String>,
}

/// The answer of `GET /api/v1/explain`.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub time: String,
    pub generation: u64,
    pub phase: Phase,
    pub live: PoolName,
    pub candidate: PoolName,
    /// One line: what happens next, and what it waits for.
    pub summary: String,
    pub rollback: RollbackExplained,
    pub checks: Vec<CheckExplained>,
    pub rollout: Option<RolloutExplained>,
    /// Baking: time left before the candidate becomes live.
    pub bake_left_ms: Option<u64>,
}

impl Controller {
    /// Everything `explain` shows, now.
    pub(crate) fn explain(&mut self) -> Explanation {
        let cfg = self.shared.config.load_full();
        let now_unix = crate::clock::unix_ms();
        let now = tokio::time::Instant::now();
        let armed = self.doc.armed();
        let may_decide = self.store.in_touch() && self.store.leads();
        let j = self.judge_now(&cfg);
        let r = &cfg.rollback;
        let grace = self.judge.grace_left(now).filter(|_| armed);
        let mut rules = Vec::new();
        let sequential = j
            .sequential
            .as_ref()
            .filter(|_| r.judge == JudgeKind::Sequential);
        if let Some(a) = sequential {
            rules.extend(rules::sequential_rules(a));
        }
        // The threshold rules judge unless the sequential judge has a baseline.
        if sequential.is_none_or(|a| a.errors.is_none()) {
            if let Some((c, l)) = &j.window {
                let window = Window {
                    name: format!("{} window", human(r.window).replace(' ', "")),
                    candidate: c,
                    live: l,
                };
                rules.extend(rules::threshold_rules(r, &[window]));
            }
        }
        if let Some(left) = grace {
            for rule in rules
                .iter_mut()
                .filter(|x| x.verdict == RuleVerdict::Breach)
            {
                rule.waiting_for = Some(format!("grace ends in {}", human(left)));
            }
        }
        let verdict_word = match &j.verdict {
            _ if !r.enabled => "disabled",
            _ if !armed => "not_armed",
            Verdict::Pass => "pass",
            Verdict::Breach { .. } => "breach",
            Verdict::NoVerdict { .. } => "no_verdict",
        };
        let waiting_for = if !r.enabled {
            Some("automatic rollback is disabled".to_owned())
        } else if !armed {
            Some("nothing to judge: the candidate takes no traffic".to_owned())
        } else if !may_decide {
            Some("another fleet member decides, or etcd is out of touch".to_owned())
        } else if let Some(left) = grace {
            Some(format!("grace ends in {}", human(left)))
        } else {
            match &j.verdict {
                Verdict::NoVerdict {
                    reason:
                        NoVerdictReason::TooFewRequests {
                            requests,
                            min_requests,
                        },
                } => Some(format!("{requests} of {min_requests} requests")),
                Verdict::NoVerdict { reason } => Some(reason.to_string()),
                Verdict::Breach { .. } => Some(format!(
                    "breached {} of {} evaluations in a row",
                    self.judge.breaches() + 1,
                    self.judge.consecutive_breaches()
                )),
                Verdict::Pass => None,
            }
        };
        let rollback = RollbackExplained {
            judge: r.judge,
            armed,
            verdict: verdict_word.to_owned(),
            waiting_for,
            grace_left_ms: grace.map(|g| g.as_millis() as u64),
            breaches: self.judge.breaches(),
            consecutive_breaches: self.judge.consecutive_breaches(),
            rules,
            fleet: j.fleet,
        };
        let checks_armed = self.analysis.target().is_some();
        let mut checks: Vec<CheckExplained> = self
            .analysis
            .checks()
            .iter()
            .map(|c| rules::check(c, self.analysis.state(&c.name), checks_armed))
            .collect();
        // Within grace an inconclusive reading holds the step, no pause yet.
        if let Some(left) = grace {
            for c in checks.iter_mut().filter(|c| c.verdict == "inconclusive") {
                c.waiting_for = Some(format!(
                    "{}; no pause before grace ends in {}",
                    c.detail,
                    human(left)
                ));
            }
        }
        let rollout = self.doc.rollout.as_ref().map(|ro| {
            let next_in = ro.next_step_at_unix_ms.map(|t| t.saturating_sub(now_unix));
            let waiting_for = if ro.paused {
                Some("paused: `ctl rollout resume` continues".to_owned())
            } else if !ro.auto_promote && next_in.is_none() {
                Some("auto_promote is off: `ctl rollout promote` takes the next step".to_owned())
            } else {
                match (next_in, self.analysis.step_ready()) {
                    (Some(0), Err(why)) => Some(format!("step due, waiting for {why}")),
                    (Some(ms), Err(why)) => Some(format!(
                        "next step in {}, then waiting for {why}",
                        human(Duration::from_millis(ms))
                    )),
                    (Some(ms), Ok(())) => {
                        Some(format!("next step in {}", human(Duration::from_millis(ms))))
                    }
                    (None, _) => None,
                }
            };
            RolloutExplained {
                step: ro.step,
                steps: ro.steps.clone(),
                paused: ro.paused,
                auto_promote: ro.auto_promote,
                next_step_in_ms: next_in,
                waiting_for,
            }
        });
        let bake_left_ms = self
            .doc
            .bake
            .as_ref()
            .map(|b| b.until_unix_ms.saturating_sub(now_unix));
        let summary = summary(&rollback, &checks, rollout.as_ref(), bake_left_ms);
        Explanation {
            time: crate::clock::rfc3339(now_unix),
            generation: self.doc.generation,
            phase: self.doc.phase(),
            live: self.doc.live,
            candidate: self.doc.candidate(),
            summary,
            rollback,
            checks,
            rollout,
            bake_left_ms,
        }
    }
}

impl Controller {
    /// The evidence an automatic step, end of bake or pause carries in its
    /// event's `stats`: the rollback rules' and the checks' state when it
    /// was decided (a rollback carries its own figures).
    pub(crate) fn attach_evidence(&mut self, next: &mut crate::control::StateDoc) {
        let Some(change) = next.last_change.as_mut() else {
            return;
        };
        let bare = |e: &crate::control::events::Event| {
            e.actor == crate::control::Actor::Auto && e.stats.is_none()
        };
        if !change.events.iter().any(bare) {
            return;
        }
        let e = self.explain();
        let evidence = serde_json::json!({
            "rollback": e.rollback,
            "checks": e.checks,
        });
        for event in change.events.iter_mut().filter(|e| bare(e)) {
            event.stats = Some(evidence.clone());
        }
    }
}

/// The one line: the rollout's wait, the bake's, then the rollback's.
fn summary(
    rollback: &RollbackExplained,
    checks: &[CheckExplained],
    rollout: Option<&RolloutExplained>,
    bake_left_ms: Option<u64>,
) -> String {
    let mut parts = Vec::new();
    if let Some(w) = rollout.and_then(|r| r.waiting_for.as_ref()) {
        parts.push(format!("rollout: {w}"));
    }
    if let Some(ms) = bake_left_ms {
        parts.push(format!("bake ends in {}", human(Duration::from_millis(ms))));
    }
    match (&rollback.waiting_for, rollback.armed) {
        (Some(w), _) => parts.push(format!("rollback: {w}")),
        (None, true) => parts.push("rollback: no rule breached".to_owned()),
        (None, false) => {}
    }
    for c in checks.iter().filter(|c| c.verdict != "pass") {
        if let Some(w) = &c.waiting_for {
            parts.push(format!("check {}: {w}", c.name));
        }
    }
    if parts.is_empty() {
        "stable: nothing to explain".to_owned()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests;
