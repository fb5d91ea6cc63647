//! The controller's side of the checks: what each report changes, and
//! whether a rollout step may be taken.
//!
//! [`Analysis`] is owned by the controller and touched only from its loop.
//! It turns reports into an [`Action`] (roll back after `failure_limit`
//! failures in a row; pause a running rollout on an inconclusive reading,
//! once the rollback's `grace` after the last weight change is over)
//! and answers [`Analysis::step_ready`]: a step is taken only after every
//! runnable check has passed since the step began (its latest reading since
//! then is a pass). It arms the [`Runner`] while the candidate takes
//! traffic and this controller may decide (fleet mode: the leader).

use super::runner::{Runner, Sink, Target};
use super::{CheckReport, CheckVerdict};
use crate::config::analysis::{CheckConfig, Compare};
use crate::control::document::StateDoc;
use crate::telemetry::metrics::AnalysisMetrics;
use serde::Serialize;
use std::collections::BTreeMap;

/// What the controller does about a report.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Nothing,
    /// Roll back, reason `check`: the why and the evidence.
    Rollback {
        text: String,
        figures: serde_json::Value,
    },
    /// Pause a running rollout: the why.
    Pause(String),
}

/// One check as the controller sees it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckState {
    /// The latest reading of the current arming.
    pub last: Option<CheckReport>,
    /// Failures in a row.
    pub failures: u32,
    /// Readings since the step began, and whether the latest passed.
    pub readings_this_step: u32,
    pub passed_this_step: bool,
}

pub struct Analysis {
    runner: Runner,
    checks: Vec<CheckConfig>,
    states: BTreeMap<String, CheckState>,
    epoch: u64,
}

impl Analysis {
    pub fn new(sink: Sink, checks: &[CheckConfig]) -> Self {
        let mut a = Analysis {
            runner: Runner::new(sink),
            checks: Vec::new(),
            states: BTreeMap::new(),
            epoch: 0,
        };
        a.configure(checks);
        a
    }

    /// Take a (re)loaded list: a check whose definition changed starts over.
    pub fn configure(&mut self, checks: &[CheckConfig]) {
        self.states.retain(|name, _| {
            let old = self.checks.iter().find(|c| &c.name == name);
            let new = checks.iter().find(|c| &c.name == name);
            old.is_some() && old == new
        });
        for c in checks {
            self.states.entry(c.name.clone()).or_default();
        }
        self.checks = checks.to_vec();
        self.runner.reconcile(checks);
    }

    pub fn checks(&self) -> &[CheckConfig] {
        &self.checks
    }

    pub fn state(&self, name: &str) -> Option<&CheckState> {
        self.states.get(name)
    }

    /// Where the checks run now, if they are armed.
    pub fn target(&self) -> Option<Target> {
        self.runner.target()
    }

    /// The weights changed: a new step begins; readings from before it no
    /// longer count towards taking the next one.
    pub fn step_began(&mut self) {
        self.epoch += 1;
        for s in self.states.values_mut() {
            s.readings_this_step = 0;
            s.passed_this_step = false;
        }
    }

    /// Arm the checks for `doc` when the candidate takes traffic and this
    /// controller may decide; disarm them otherwise (which forgets the
    /// failures: the next candidate starts clean).
    pub fn arm(&mut self, doc: &StateDoc, may_decide: bool) {
        let target = (may_decide && doc.armed() && !self.checks.is_empty()).then(|| Target {
            candidate: doc.candidate(),
            baseline: doc.weights.bp(doc.live) > 0,
            epoch: self.epoch,
        });
        if target.is_none() && self.runner.target().is_some() {
            for s in self.states.values_mut() {
                *s = CheckState::default();
            }
        }
        self.runner.arm(target);
    }

    /// Take one report. A reading of an older arming is dropped.
    pub fn on_report(&mut self, r: CheckReport, metrics: &AnalysisMetrics) -> Action {
        if self.runner.target().map(|t| t.epoch) != Some(r.epoch) {
            tracing::debug!(check = %r.check, "a reading from before the last change is dropped");
            return Action::Nothing;
        }
        let Some(cfg) = self.checks.iter().find(|c| c.name == r.check) else {
            return Action::Nothing;
        };
        let Some(state) = self.states.get_mut(&r.check) else {
            return Action::Nothing;
        };
        let live_pool = r.candidate_pool.other();
        metrics.check(
            &r.check,
            r.verdict.as_str(),
            &[
                (r.candidate_pool.as_str(), r.candidate),
                (live_pool.as_str(), r.live),
            ],
        );
        state.readings_this_step += 1;
        state.passed_this_step = r.verdict == CheckVerdict::Pass;
        let action = match r.verdict {
            CheckVerdict::Pass => {
                state.failures = 0;
                Action::Nothing
            }
            CheckVerdict::Fail => {
                state.failures += 1;
                if state.failures >= cfg.failure_limit {
                    let text = format!(
                        "check {} failed {} times in a row: {}",
                        r.check, state.failures, r.detail
                    );
                    let mut figures = serde_json::to_value(&r).unwrap_or_default();
                    figures["failures"] = state.failures.into();
                    figures["failure_limit"] = cfg.failure_limit.into();
                    Action::Rollback { text, figures }
                } else {
                    Action::Nothing
                }
            }
            CheckVerdict::Inconclusive => {
                Action::Pause(format!("check {} is {}", r.check, r.detail))
            }
        };
        state.last = Some(r);
        action
    }

    /// Whether a rollout step may be taken now: every check that can run
    /// has passed since the step began; else what it waits for.
    pub fn step_ready(&self) -> Result<(), String> {
        let baseline = self.runner.target().is_some_and(|t| t.baseline);
        let waiting: Vec<String> = self
            .checks
            .iter()
            .filter(|c| baseline || c.compare == Compare::Absolute)
            .filter_map(|c| {
                let s = self.states.get(&c.name)?;
                match (s.readings_this_step, s.passed_this_step) {
                    (_, true) => None,
                    (0, _) => Some(format!("check {}: no reading yet in this step", c.name)),
                    _ => Some(format!(
                        "check {}: {}",
                        c.name,
                        s.last.as_ref().map_or("not passed", |l| l.detail.as_str())
                    )),
                }
            })
            .collect();
        match waiting.is_empty() {
            true => Ok(()),
            false => Err(waiting.join("; ")),
        }
    }
}

impl crate::control::Controller {
    /// Arm the checks for the document in force, or disarm them.
    pub(crate) fn arm_checks(&mut self) {
        let may_decide = self.store.in_touch() && self.store.leads();
        self.analysis.arm(&self.doc, may_decide);
    }

    /// A check's report: roll back, pause the rollout, or only remember it.
    pub(crate) async fn on_check(&mut self, r: CheckReport) {
        let metrics = self.shared.metrics.clone();
        let action = self.analysis.on_report(r, &metrics.analysis);
        if action == Action::Nothing || !self.store.in_touch() || !self.store.leads() {
            return;
        }
        match action {
            Action::Nothing => {}
            Action::Rollback { text, figures } => {
                tracing::warn!(candidate = %self.doc.candidate(), %text, "automatic rollback");
                let p = crate::control::cutover::PendingRollback {
                    actor: crate::control::Actor::Auto,
                    reason: crate::telemetry::metrics::RollbackReason::Check,
                    text,
                    figures: Some(figures),
                    replies: Vec::new(),
                };
                self.rollback(p).await;
            }
            // Right after a weight change the candidate may have no data
            // yet (no series, no requests in the check's window): that is
            // expected, not a reason to stop. Within the rollback's grace an
            // inconclusive reading only holds the step (it is no pass);
            // after grace it pauses.
            Action::Pause(why) if self.judge.in_grace(tokio::time::Instant::now()) => {
                tracing::debug!(%why, "inconclusive within grace: the step waits, no pause");
            }
            Action::Pause(why) => {
                let now = crate::clock::unix_ms();
                let Some(mut next) = crate::control::transition::auto_pause(&self.doc, &why, now)
                else {
                    return;
                };
                self.attach_evidence(&mut next);
                tracing::warn!(%why, "rollout paused by a check");
                if let Err(e) = self.commit(next).await {
                    tracing::error!(error = %e, "the pause a check asked for was not stored");
                }
            }
        }
    }
}
