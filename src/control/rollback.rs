//! Rolling back: asked for by the admin API, or decided by the automatic
//! evaluation at every tick (the [`crate::control::judge`] rules on the
//! pools' statistics windows since the last weight change, or with
//! `rollback.judge: sequential` the [`crate::control::sequential`] test on
//! the counts since that change; in fleet mode both on every member's sum).
//!
//! A rollback holds writes when `cutover.hold_writes` is on and the
//! candidate has traffic ([`crate::control::cutover`]); one asked for while
//! a switch holds writes takes that hold over. This module decides when;
//! the documents come from [`crate::control::transition`].

use crate::config::analysis::JudgeKind;
use crate::control::controller::{send, CommandError, Controller};
use crate::control::cutover::PendingRollback;
use crate::control::document::HoldKind;
use crate::control::fleet_judge::FleetFigures;
use crate::control::judge::{self, BreachReason, Verdict};
use crate::control::sequential::{self, Assessment};
use crate::control::transition;
use crate::control::Actor;
use crate::telemetry::metrics::RollbackReason;
use crate::telemetry::stats::WindowStats;

/// What the automatic rollback sees at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Judgement {
    pub verdict: Verdict,
    /// The candidate's and the live pool's figures over `rollback.window`.
    pub window: Option<(WindowStats, WindowStats)>,
    /// `rollback.judge: sequential`: both halves of the test, since the
    /// last weight change.
    pub sequential: Option<Assessment>,
    /// Fleet mode: whose stats were summed.
    pub fleet: Option<FleetFigures>,
}

/// Answer every requester of `p` with `e`.
pub(crate) fn refuse(p: PendingRollback, e: CommandError) {
    let mut replies = p.replies.into_iter();
    let Some(first) = replies.next() else {
        tracing::error!(error = %e, "automatic rollback refused");
        return;
    };
    let message = e.to_string();
    send(first, Err(e));
    for reply in replies {
        send(reply, Err(CommandError::Conflict(message.clone())));
    }
}

impl Controller {
    /// Roll back now, behind a write hold when one is due, or by taking
    /// over the hold of a switch in flight.
    pub(crate) async fn rollback(&mut self, p: PendingRollback) {
        match self.doc.hold_in_flight().map(|h| h.kind) {
            Some(HoldKind::Switch) if self.cutover.is_some() => return self.take_over(p).await,
            Some(_) => {
                let e = transition::refuse_while_switching(&self.doc)
                    .err()
                    .unwrap_or_else(|| CommandError::Conflict("a hold is in flight".into()));
                return refuse(p, e);
            }
            None => {}
        }
        let cfg = self.shared.config.load_full();
        let now = crate::clock::unix_ms();
        let reason = p.recorded();
        if cfg.cutover.hold_writes && self.doc.weights.bp(self.doc.candidate()) > 0 {
            let next = transition::rollback_hold(&self.doc, p.actor, &reason, &cfg, now);
            match next {
                Ok(next) => match self.commit(next).await {
                    Ok(_) => self.begin_cutover(None, Some(p)),
                    Err(e) => refuse(p, e),
                },
                Err(e) => refuse(p, e),
            }
            return;
        }
        let figures = p.figures.clone();
        let next = transition::rollback(&self.doc, p.actor, &reason, figures, now);
        let committed = match next {
            Ok(next) => self.commit(next).await,
            Err(e) => Err(e),
        };
        match committed {
            Ok(_) => {
                self.shared.metrics.rollback(p.reason);
                let view = self.publish_view();
                for reply in p.replies {
                    send(reply, Ok(view.clone()));
                }
            }
            Err(e) => refuse(p, e),
        }
    }

    /// What the automatic rollback sees now, as [`Controller::evaluate`]
    /// judges it (and `explain` shows it): this proxy's statistics, or in
    /// fleet mode the sum of every member's.
    pub(crate) fn judge_now(&mut self, cfg: &crate::config::Config) -> Judgement {
        let now = crate::clock::now_ms();
        let (candidate, live) = (self.doc.candidate(), self.doc.live);
        let stats = |pool: crate::config::PoolName, w: std::time::Duration| {
            self.shared.runtimes[pool.index()]
                .stats
                .window_since(now, w, self.changed_at_ms)
        };
        let blue = &self.shared.runtimes[crate::config::PoolName::Blue.index()].stats;
        let green = &self.shared.runtimes[crate::config::PoolName::Green.index()].stats;
        let report = self.since_change.tick(blue, green, now, 0).clone();
        let min_reporting = cfg
            .fleet
            .as_ref()
            .map(|f| f.min_reporting)
            .unwrap_or_default();
        let fleet = self.store.fleet_verdict(
            &cfg.rollback,
            min_reporting,
            self.doc.generation,
            candidate,
            live,
        );
        let sequential_on = cfg.rollback.judge == JudgeKind::Sequential;
        if let Some(f) = fleet {
            let sequential = match (&f.totals, sequential_on) {
                (Some((c, l)), true) => Some(sequential::assess(&cfg.rollback, c, l)),
                _ => None,
            };
            return Judgement {
                verdict: f.verdict,
                window: f.window,
                sequential,
                fleet: Some(f.fleet),
            };
        }
        let window = (
            stats(candidate, cfg.rollback.window),
            stats(live, cfg.rollback.window),
        );
        let (c_total, l_total) = (report.pool(candidate), report.pool(live));
        let seq_verdict = sequential_on
            .then(|| sequential::verdict(&cfg.rollback, c_total, l_total))
            .flatten();
        let verdict = seq_verdict.unwrap_or_else(|| {
            let recent =
                judge::recent_window(&cfg.rollback).map(|w| (stats(candidate, w), stats(live, w)));
            judge::evaluate_windows(
                &cfg.rollback,
                &window.0,
                &window.1,
                recent.as_ref().map(|(c, l)| (c, l)),
            )
        });
        Judgement {
            verdict,
            window: Some(window),
            sequential: sequential_on.then(|| sequential::assess(&cfg.rollback, c_total, l_total)),
            fleet: None,
        }
    }

    /// One automatic-rollback evaluation over the window since the last change.
    pub(crate) async fn evaluate(&mut self) {
        self.arm_checks();
        let cfg = self.shared.config.load_full();
        if !cfg.rollback.enabled
            || !self.doc.armed()
            || !self.store.in_touch()
            || !self.store.leads()
        {
            return;
        }
        let candidate = self.doc.candidate();
        let Judgement {
            verdict,
            fleet: fleet_figures,
            window,
            sequential,
        } = self.judge_now(&cfg);
        if let Some(a) = &sequential {
            tracing::trace!(?a, ?window, "sequential judge");
        }
        if let Some(f) = &fleet_figures {
            tracing::debug!(verdict = ?verdict, reporting = ?f.reporting, stale = ?f.stale, candidate_requests = f.candidate_requests, "fleet verdict");
        }
        if let Some(decision) = self.judge.observe(tokio::time::Instant::now(), verdict) {
            let reason: RollbackReason = decision.reason.into();
            let mut text = describe(decision.reason, &decision.figures);
            if let Some(f) = &fleet_figures {
                text.push_str(&format!(
                    " (fleet sum of {} members: {}; stale: {})",
                    f.reporting.len(),
                    f.reporting.join(", "),
                    if f.stale.is_empty() {
                        "none".to_owned()
                    } else {
                        f.stale.join(", ")
                    }
                ));
            }
            tracing::warn!(%candidate, reason = reason.as_str(), %text, "automatic rollback");
            let p = PendingRollback {
                actor: Actor::Auto,
                reason,
                text,
                figures: serde_json::to_value(&decision.figures).ok(),
                replies: Vec::new(),
            };
            self.rollback(p).await;
        }
    }
}

fn describe(reason: BreachReason, f: &judge::Figures) -> String {
    match reason {
        BreachReason::ErrorRate => format!(
            "candidate error rate {:.4} over {} requests ({} window) is above max_error_rate {}",
            f.candidate_error_rate,
            f.candidate_requests,
            humantime::format_duration(std::time::Duration::from_millis(f.window_ms)),
            f.max_error_rate
        ),
        BreachReason::ErrorRateIncrease => format!(
            "candidate error rate {:.4} exceeds the live pool's {:.4} by more than {}",
            f.candidate_error_rate,
            f.baseline_error_rate.unwrap_or(0.0),
            f.max_error_rate_increase.unwrap_or(0.0)
        ),
        BreachReason::Latency => format!(
            "candidate p99 {:.1} ms is above max_p99_latency {:.1} ms",
            f.candidate_p99_ms.unwrap_or(0.0),
            f.max_p99_latency_ms.unwrap_or(0.0)
        ),
        BreachReason::Sequential => match &f.sequential {
            Some(e) => crate::control::sequential::describe(e),
            None => "the sequential judge found the candidate worse".to_owned(),
        },
    }
}
