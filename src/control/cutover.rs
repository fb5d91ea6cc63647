//! The instant switch with a write hold (SPEC.md section 5).
//!
//! Hold writes at the proxy (reads keep flowing to the old pool), wait for
//! the writes already in flight to finish, wait for the gate to answer 2xx,
//! then flip the table and release the held writes to the new pool. When
//! that takes longer than `max_hold` the switch is aborted and the held
//! writes go to the old pool. Either way each held write is forwarded once.
//!
//! A rollback uses the same hold without the gate, and never aborts: rolling
//! back must not wait on the thing that may be broken.

use crate::config::{GateConfig, PoolName};
use crate::control::commands::SwitchReport;
use crate::control::controller::{Actor, CommandError, Controller};
use crate::control::events::{Event, EventKind};
use crate::routing::{Hold, Weights};
use crate::telemetry::metrics::SwitchResult;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How often the in-flight write count is looked at while draining.
const DRAIN_POLL: Duration = Duration::from_millis(2);

/// What a hold went through, for the report and the events.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct HoldFigures {
    pub held_requests: u64,
    pub hold_ms: u64,
    pub drain_ms: u64,
    pub gate_ms: u64,
    /// The gate's last answer, e.g. `200` or `503`, or the error.
    pub gate_answer: Option<String>,
    /// Which step ran out of time, when one did.
    pub timed_out: Option<&'static str>,
}

/// Wait until no write is in flight, at most until `deadline`.
async fn drain_writes(ctl: &Controller, deadline: Instant) -> bool {
    let mut tick = tokio::time::interval(DRAIN_POLL);
    loop {
        if ctl.shared.writes.get() <= 0 {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tick.tick().await;
    }
}

/// Poll the gate until it answers 2xx, at most until `deadline`.
async fn pass_gate(gate: &GateConfig, deadline: Instant, last: &mut Option<String>) -> bool {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let Ok(uri) = gate.url.parse::<http::Uri>() else {
        *last = Some("invalid gate url".into());
        return false;
    };
    let mut tick = tokio::time::interval(gate.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return false;
        }
        let call = tokio::time::timeout(gate.timeout.min(remaining), client.get(uri.clone())).await;
        match call {
            Ok(Ok(resp)) => {
                let status = resp.status();
                *last = Some(status.as_u16().to_string());
                if status.is_success() {
                    return true;
                }
            }
            Ok(Err(e)) => *last = Some(format!("error: {e}")),
            Err(_) => *last = Some("timeout".into()),
        }
    }
}

impl Controller {
    /// Publish a hold: from now on unsafe requests wait.
    fn begin_hold(&mut self) -> Arc<Hold> {
        let cfg = self.shared.config.load();
        let hold = Arc::new(Hold::new(
            cfg.cutover.max_held_requests,
            cfg.cutover.max_hold,
        ));
        self.switching = true;
        self.hold = Some(hold.clone());
        self.publish(None);
        hold
    }

    /// Drop the hold from the table (the caller sets the weights first),
    /// publish, and release the held requests to the table now in force.
    fn end_hold(&mut self, hold: &Hold, started: Instant, figures: &mut HoldFigures) {
        self.switching = false;
        self.hold = None;
        self.publish(None);
        hold.release();
        figures.held_requests = hold.held_total();
        figures.hold_ms = started.elapsed().as_millis() as u64;
        self.shared
            .metrics
            .hold(figures.held_requests, started.elapsed());
    }

    /// The switch of SPEC.md section 5 with `hold_writes` on.
    pub(crate) async fn switch_with_hold(
        &mut self,
        from: PoolName,
        to: PoolName,
        actor: Actor,
    ) -> Result<SwitchReport, CommandError> {
        let cfg = self.shared.config.load_full();
        let started = Instant::now();
        let deadline = started + cfg.cutover.max_hold;
        let hold = self.begin_hold();
        let mut f = HoldFigures::default();

        let drained = drain_writes(self, deadline).await;
        f.drain_ms = started.elapsed().as_millis() as u64;
        if !drained {
            f.timed_out = Some("drain");
        } else if let Some(gate) = &cfg.cutover.gate {
            let gate_started = Instant::now();
            let passed = pass_gate(gate, deadline, &mut f.gate_answer).await;
            f.gate_ms = gate_started.elapsed().as_millis() as u64;
            if !passed {
                f.timed_out = Some("gate");
            }
        }

        if let Some(step) = f.timed_out {
            // Abort: nothing changes but the hold ends; held writes go to the old pool.
            self.end_hold(&hold, started, &mut f);
            let reason = format!(
                "max_hold {} exceeded waiting for the {step}{}",
                humantime::format_duration(cfg.cutover.max_hold),
                f.gate_answer
                    .as_deref()
                    .map(|a| format!(" (last gate answer: {a})"))
                    .unwrap_or_default()
            );
            tracing::warn!(%from, %to, %reason, "switch aborted");
            self.shared.metrics.switch(to, SwitchResult::Aborted);
            self.shared.events.record(
                Event::new(EventKind::SwitchAborted, actor)
                    .from(from)
                    .to(to)
                    .weights(self.weights)
                    .reason(reason.clone())
                    .stats(&f),
            );
            let mut report = self.switch_report("aborted", from, to, Some(reason));
            fill(&mut report, &f);
            return Err(CommandError::SwitchAborted(Box::new(report)));
        }

        self.apply_switch(to);
        self.end_hold(&hold, started, &mut f);
        self.shared.metrics.switch(to, SwitchResult::Completed);
        self.shared.events.record(
            Event::new(EventKind::SwitchCompleted, actor)
                .from(from)
                .to(to)
                .weights(self.weights)
                .stats(&f),
        );
        let mut report = self.switch_report("completed", from, to, None);
        fill(&mut report, &f);
        Ok(report)
    }

    /// The state change of a switch to `to` (the table is published by the caller).
    pub(crate) fn apply_switch(&mut self, to: PoolName) {
        self.weights = Weights::all_on(to);
        self.rollout = None;
        if to == self.live {
            self.bake = None;
        } else {
            self.start_bake();
        }
        self.weights_changed();
    }

    /// Hold writes, let the candidate's writes finish (bounded by
    /// `max_hold`, never aborting), then run `apply`, and release.
    pub(crate) async fn with_write_hold<T>(
        &mut self,
        apply: impl FnOnce(&mut Controller) -> T,
    ) -> (T, HoldFigures) {
        let cfg = self.shared.config.load_full();
        let started = Instant::now();
        let hold = self.begin_hold();
        let mut f = HoldFigures::default();
        if !drain_writes(self, started + cfg.cutover.max_hold).await {
            f.timed_out = Some("drain");
        }
        f.drain_ms = started.elapsed().as_millis() as u64;
        self.switching = false;
        self.hold = None;
        let out = apply(self);
        self.end_hold(&hold, started, &mut f);
        (out, f)
    }
}

fn fill(report: &mut SwitchReport, f: &HoldFigures) {
    report.held_requests = f.held_requests;
    report.hold_ms = f.hold_ms;
    report.drain_ms = f.drain_ms;
    report.gate_ms = f.gate_ms;
    report.gate_answer = f.gate_answer.clone();
}
