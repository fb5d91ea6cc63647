//! The write hold of a switch or rollback as a state (SPEC.md section 5).
//!
//! A held switch starts with a committed document whose hold is in flight
//! (phase `switching`): applying it publishes the [`Hold`] in the table,
//! so unsafe requests wait while reads flow to the old pool. A spawned task
//! waits until the writes in flight settle, then another polls the gate;
//! each reports back to the controller's loop as a [`Progress`], never
//! blocking it. Then the controller commits the document that ends the
//! hold: the flip, or an abort past `max_hold` (held writes go to the old
//! pool). Either way each held write is forwarded once, and the admin
//! request that started the switch is answered then.
//!
//! A rollback uses the same hold without the gate, and never aborts:
//! rolling back must not wait on the thing that may be broken. A rollback
//! asked for during a switch takes its hold over.
//!
//! In fleet mode the settling, the acknowledgements and the decision go
//! through the fleet's barrier ([`crate::control::fleet_hold`]); this
//! module keeps the requester, the figures, the gate and the commit of
//! the ending.
//!
//! This module drives the hold; it never stores into the table itself
//! (`apply` does) and never waits inside the loop.

use crate::config::PoolName;
use crate::control::apply::Applied;
use crate::control::commands::SwitchReport;
use crate::control::controller::{send, CommandError, Controller, Reply};
use crate::control::document::{HoldKind, HoldOutcome};
use crate::control::gate::{self, DatabaseFigures, GateEvent, GateOutcome};
use crate::control::rollback::refuse;
use crate::control::store::StoreError;
use crate::control::transition;
use crate::control::view::ControlView;
use crate::control::Actor;
use crate::routing::{Hold, WritesInFlight};
use crate::telemetry::metrics::{RollbackReason, SwitchResult};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

mod database;

/// How often the in-flight write count is looked at while writes settle.
const SETTLE_POLL: Duration = Duration::from_millis(2);

/// The table's side of a hold: what `apply` publishes while the document
/// has the hold `id` in flight.
pub(crate) struct LocalHold {
    pub id: u64,
    pub hold: Arc<Hold>,
    pub started: Instant,
}

/// What a hold went through, for the report and the events.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct HoldFigures {
    pub held_requests: u64,
    pub hold_ms: u64,
    /// Until the writes in flight settled (`drain_ms`, the report's word).
    #[serde(rename = "drain_ms")]
    pub settle_ms: u64,
    pub gate_ms: u64,
    /// The gate's last answer, e.g. `200` or `503`, or the error.
    pub gate_answer: Option<String>,
    /// Which step ran out of time, when one did.
    pub timed_out: Option<&'static str>,
    /// The PostgreSQL gate's LSNs, lag and promotion (SPEC.md section 13).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseFigures>,
}

/// A report from a hold's task.
#[derive(Debug)]
pub enum Progress {
    /// The writes in flight finished (`settled`), or the deadline came first.
    Settled { id: u64, settled: bool },
    /// The gate passed, failed, or the deadline came first.
    Gate { id: u64, outcome: Box<GateOutcome> },
    /// The gate's figures moved, or it asks to promote the replica.
    GateEvent { id: u64, event: GateEvent },
}

/// A rollback waiting for its hold.
pub(crate) struct PendingRollback {
    pub actor: Actor,
    pub reason: RollbackReason,
    pub text: String,
    /// The evidence: the rule's or the check's figures, as the event's `stats`.
    pub figures: Option<serde_json::Value>,
    pub replies: Vec<Reply<ControlView>>,
}

impl PendingRollback {
    /// The reason the rollback records: `manual: bad deploy`, or `manual`
    /// alone when no reason was given.
    pub fn recorded(&self) -> String {
        if self.text.is_empty() {
            self.reason.as_str().to_string()
        } else {
            format!("{}: {}", self.reason.as_str(), self.text)
        }
    }
}

/// How the controller ends a hold.
#[derive(Debug, Clone)]
pub(crate) enum Ending {
    Flip,
    Abort(String),
    Rollback,
}

/// The hold this controller drives.
pub(crate) struct Cutover {
    pub(crate) id: u64,
    pub(crate) kind: HoldKind,
    from: PoolName,
    to: PoolName,
    pub(crate) started: Instant,
    pub(crate) deadline: Instant,
    pub(crate) figures: HoldFigures,
    pub(crate) settled: bool,
    pub(crate) task: Option<AbortHandle>,
    /// Fleet mode: the ending is committed only with these members'
    /// acknowledgements present.
    pub(crate) acks: Option<Vec<String>>,
    /// Fleet mode: the members whose acknowledgement an abort missed.
    pub(crate) missing: Vec<String>,
    /// Fleet mode: why the gate failed, for the abort it leads to.
    pub(crate) gate_failure: Option<String>,
    /// The admin request that started the switch.
    switch_reply: Option<Reply<SwitchReport>>,
    rollback: Option<PendingRollback>,
    /// An ending the store did not take; tried again at every tick.
    retry: Option<Ending>,
    /// The gate, prepared when the hold starts (its connections open
    /// while the writes drain), run once they have drained.
    gate: Option<gate::Prepared>,
    /// Promotion of the replica has begun: the switch completes, whatever
    /// the time; a rollback cannot take it over.
    pub(crate) promoting: bool,
    /// A shutdown asked for during promotion: answered once the switch
    /// has flipped.
    shutdowns: Vec<Reply<()>>,
}

/// Wait until no write is in flight, at most until `deadline`.
pub(crate) async fn settle(writes: Arc<WritesInFlight>, deadline: Instant) -> bool {
    let mut tick = tokio::time::interval(SETTLE_POLL);
    loop {
        if writes.get() <= 0 {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tick.tick().await;
    }
}

pub(crate) fn report_progress(tx: &mpsc::UnboundedSender<Progress>, p: Progress) {
    if tx.send(p).is_err() {
        tracing::debug!("the controller stopped before the hold ended");
    }
}

impl Controller {
    /// The document in force has a hold in flight that this controller
    /// started: drive it. `switch_reply` answers a switch, `rollback` is
    /// the rollback it holds writes for.
    pub(crate) fn begin_cutover(
        &mut self,
        switch_reply: Option<Reply<SwitchReport>>,
        rollback: Option<PendingRollback>,
    ) {
        let Some(h) = self.doc.hold_in_flight() else {
            return;
        };
        let cutover = self.shared.config.load().cutover.clone();
        let max_hold = cutover.max_hold;
        let started = self
            .held
            .as_ref()
            .map_or_else(Instant::now, |held| held.started);
        let mut c = Cutover {
            id: h.id,
            kind: h.kind,
            from: h.from,
            to: h.to,
            started,
            deadline: started + max_hold,
            figures: HoldFigures::default(),
            settled: false,
            task: None,
            switch_reply,
            rollback,
            retry: None,
            gate: match h.kind {
                HoldKind::Switch => cutover.gate.map(gate::prepare),
                HoldKind::Rollback => None,
            },
            promoting: false,
            shutdowns: Vec::new(),
            acks: None,
            missing: Vec::new(),
            gate_failure: None,
        };
        // In fleet mode every member settles its own writes (fleet_hold).
        if self.fleet_hold.is_none() {
            let (tx, writes, id, deadline) = (
                self.progress_tx.clone(),
                self.shared.writes.clone(),
                c.id,
                c.deadline,
            );
            c.task = Some(
                tokio::spawn(async move {
                    let settled = settle(writes, deadline).await;
                    report_progress(&tx, Progress::Settled { id, settled });
                })
                .abort_handle(),
            );
        }
        self.cutover = Some(c);
    }

    /// Run the gate of the switch this controller drives, if it has one;
    /// it reports [`Progress::GateEvent`]s and a [`Progress::Gate`].
    /// Whether a gate runs.
    pub(crate) fn spawn_gate(&mut self) -> bool {
        let tx = self.progress_tx.clone();
        let Some(c) = self.cutover.as_mut() else {
            return false;
        };
        let Some(prepared) = c.gate.take() else {
            return false;
        };
        let id = c.id;
        let (started, deadline) = (c.started, c.deadline);
        c.task = Some(
            tokio::spawn(async move {
                let events = {
                    let tx = tx.clone();
                    move |event| report_progress(&tx, Progress::GateEvent { id, event })
                };
                let outcome = gate::pass(prepared, started, deadline, events).await;
                let outcome = Box::new(outcome);
                report_progress(&tx, Progress::Gate { id, outcome });
            })
            .abort_handle(),
        );
        true
    }

    /// A hold's task reported.
    pub(crate) async fn on_progress(&mut self, p: Progress) {
        if self.fleet_hold.is_some() {
            return self.fleet_progress(p).await;
        }
        let Some(c) = self.cutover.as_mut() else {
            return;
        };
        match p {
            Progress::Settled { id, settled } if id == c.id => {
                c.task = None;
                c.settled = true;
                c.figures.settle_ms = c.started.elapsed().as_millis() as u64;
                if !settled {
                    c.figures.timed_out = Some("writes in flight");
                }
                match (c.kind, settled) {
                    (HoldKind::Rollback, _) => self.end_hold(Ending::Rollback).await,
                    (HoldKind::Switch, false) => {
                        let reason = self.timed_out_reason("writes in flight");
                        self.end_hold(Ending::Abort(reason)).await
                    }
                    (HoldKind::Switch, true) => {
                        if !self.spawn_gate() {
                            self.end_hold(Ending::Flip).await;
                        }
                    }
                }
            }
            Progress::Gate { id, outcome } if id == c.id && c.kind == HoldKind::Switch => {
                self.on_gate_outcome(*outcome).await
            }
            Progress::GateEvent { id, event } if id == c.id => self.on_gate_event(event),
            other => tracing::debug!(?other, "progress of a hold that already ended"),
        }
    }

    pub(crate) fn timed_out_reason(&self, step: &str) -> String {
        let max_hold = self.shared.config.load().cutover.max_hold;
        let answer = self
            .cutover
            .as_ref()
            .and_then(|c| c.figures.gate_answer.as_deref())
            .map(|a| format!(" (last gate answer: {a})"))
            .unwrap_or_default();
        format!(
            "max_hold {} exceeded waiting for the {step}{answer}",
            crate::config::values::human_duration(max_hold)
        )
    }

    /// Commit the document that ends the hold, answer who waits for it.
    /// When the store does not take it, the hold stays (writes stay held)
    /// and the ending is tried again at every tick.
    pub(crate) async fn end_hold(&mut self, ending: Ending) {
        let Some(c) = self.cutover.as_mut() else {
            return;
        };
        if let Some(task) = c.task.take() {
            task.abort();
        }
        c.figures.hold_ms = c.started.elapsed().as_millis() as u64;
        c.figures.held_requests = self.held.as_ref().map_or(0, |h| h.hold.held_total());
        let stats = serde_json::to_value(&c.figures).unwrap_or_default();
        let cfg = self.shared.config.load_full();
        let now = crate::clock::unix_ms();
        let next = match &ending {
            Ending::Flip => Ok(transition::flip(&self.doc, stats, &cfg, now)),
            Ending::Abort(reason) => Ok(transition::abort(&self.doc, reason, stats, now)),
            Ending::Rollback => {
                let p = c.rollback.as_ref();
                let reason = p.map_or_else(|| "rollback".to_string(), PendingRollback::recorded);
                let figures = p.and_then(|p| p.figures.clone());
                transition::rollback(&self.doc, rollback_actor(p), &reason, figures, now)
            }
        };
        let (id, acks) = (c.id, c.acks.clone());
        let applied = match next {
            Ok(next) => {
                self.commit_with(next, acks.as_deref().map(|a| (id, a)))
                    .await
            }
            Err(e) => Err(e),
        };
        match applied {
            Ok(applied) => self.ended(ending, applied),
            Err(CommandError::Store(StoreError::AcksMissing { members, .. })) => {
                self.fleet_acks_missing(&members);
            }
            // Fleet mode: another member ended the hold first (its
            // document is in force now): answer as it ended.
            Err(CommandError::StaleGeneration { .. })
                if self.doc.hold_in_flight().is_none_or(|h| h.id != id) =>
            {
                self.follow_remote_hold();
            }
            Err(e) => {
                tracing::error!(error = %e, "the end of the hold was not stored; writes stay held, retried at the next tick");
                if let Some(c) = self.cutover.as_mut() {
                    c.retry = Some(ending);
                }
            }
        }
    }

    /// Try again an ending the store did not take.
    pub(crate) async fn retry_decision(&mut self) {
        if let Some(ending) = self.cutover.as_mut().and_then(|c| c.retry.take()) {
            self.end_hold(ending).await;
        }
    }

    /// The hold ended as `ending` and its writes were released: answer.
    fn ended(&mut self, ending: Ending, applied: Applied) {
        let Some(mut c) = self.cutover.take() else {
            return;
        };
        if c.figures.database.is_some() {
            self.shared.metrics.set_gate_lag(0);
            self.last_gate = c.figures.database.clone();
        }
        if let Some(r) = applied.released {
            c.figures.held_requests = r.held_requests;
            c.figures.hold_ms = r.hold.as_millis() as u64;
        }
        for reply in c.shutdowns.drain(..) {
            send(reply, Ok(()));
        }
        match ending {
            Ending::Flip => {
                self.shared.metrics.switch(c.to, SwitchResult::Completed);
                let report = self.report("completed", &c, None);
                if let Some(reply) = c.switch_reply.take() {
                    send(reply, Ok(report));
                }
            }
            Ending::Abort(reason) => {
                tracing::warn!(from = %c.from, to = %c.to, %reason, "switch aborted");
                self.shared.metrics.switch(c.to, SwitchResult::Aborted);
                let report = self.report("aborted", &c, Some(reason));
                if let Some(reply) = c.switch_reply.take() {
                    send(reply, Err(CommandError::SwitchAborted(Box::new(report))));
                }
            }
            Ending::Rollback => {
                tracing::info!(
                    held = c.figures.held_requests,
                    hold_ms = c.figures.hold_ms,
                    "rollback held writes"
                );
                if let Some(p) = c.rollback.take() {
                    self.shared.metrics.rollback(p.reason);
                    let view = self.publish_view();
                    for reply in p.replies {
                        send(reply, Ok(view.clone()));
                    }
                }
            }
        }
    }

    pub(crate) fn report(
        &self,
        outcome: &'static str,
        c: &Cutover,
        reason: Option<String>,
    ) -> SwitchReport {
        let mut r = self.switch_report(outcome, c.from, c.to, reason);
        r.held_requests = c.figures.held_requests;
        r.hold_ms = c.figures.hold_ms;
        r.drain_ms = c.figures.settle_ms;
        r.gate_ms = c.figures.gate_ms;
        r.gate_answer = c.figures.gate_answer.clone();
        r.database = c.figures.database.clone();
        r.missing_acks = c.missing.clone();
        r
    }

    /// End the switch in flight (shutdown): abort it, and answer `reply`.
    /// Once the replica is being promoted the switch flips instead, and
    /// only when the promotion has ended (the gate's end, bounded by
    /// `PROMOTE_WAIT`): flipping earlier would release the held writes
    /// to a database still in recovery. A rollback's hold goes on.
    pub(crate) async fn abort_switch(&mut self, reason: &str, reply: Reply<()>) {
        let Some(c) = self.cutover.as_mut().filter(|c| c.kind == HoldKind::Switch) else {
            return send(reply, Ok(()));
        };
        if !c.promoting {
            self.end_hold(Ending::Abort(reason.into())).await;
            return send(reply, Ok(()));
        }
        if c.task.as_ref().is_some_and(|t| !t.is_finished()) {
            tracing::info!(to = %c.to, "shutting down once the replica's promotion has ended");
            return c.shutdowns.push(reply);
        }
        // The gate's task is gone without its end: nothing left to wait for.
        self.end_hold(Ending::Flip).await;
        send(reply, Ok(()));
    }

    /// A rollback asked for while this controller's switch holds writes:
    /// the switch is aborted (its requester answered), the writes stay
    /// held, and the rollback completes once they settle.
    pub(crate) async fn take_over(&mut self, p: PendingRollback) {
        let Some(c) = self.cutover.as_mut() else {
            return refuse(p, CommandError::Conflict("no switch to take over".into()));
        };
        if c.promoting {
            let why = "the replica is being promoted: the switch will complete; roll back after it";
            return refuse(p, CommandError::Conflict(why.into()));
        }
        c.figures.hold_ms = c.started.elapsed().as_millis() as u64;
        let stats = serde_json::to_value(&c.figures).unwrap_or_default();
        let now = crate::clock::unix_ms();
        let next = transition::take_over(&self.doc, p.actor, &p.recorded(), stats, now);
        let committed = match next {
            Ok(next) => self.commit(next).await,
            Err(e) => Err(e),
        };
        if let Err(e) = committed {
            return refuse(p, e);
        }
        let Some(c) = self.cutover.as_mut() else {
            return;
        };
        self.shared.metrics.switch(c.to, SwitchResult::Aborted);
        c.kind = HoldKind::Rollback;
        c.rollback = Some(p);
        let (reply, settled) = (c.switch_reply.take(), c.settled);
        if let (Some(reply), Some(c)) = (reply, self.cutover.as_ref()) {
            let report = self.report("aborted", c, Some("a rollback took over".into()));
            send(reply, Err(CommandError::SwitchAborted(Box::new(report))));
        }
        // The gate was being polled: nothing left to wait for (in fleet
        // mode the barrier waits for every member's ack first).
        if settled && self.fleet_hold.is_none() {
            self.end_hold(Ending::Rollback).await;
        }
    }

    /// A document from the store ended the hold this controller drives
    /// (fleet mode: another member aborted it): answer as it ended.
    pub(crate) fn follow_remote_hold(&mut self) {
        let Some((id, kind)) = self.cutover.as_ref().map(|c| (c.id, c.kind)) else {
            return;
        };
        let outcome = match self.doc.hold.as_ref().filter(|h| h.id == id) {
            Some(h) if h.in_flight() => return,
            Some(h) => h.outcome,
            None => None,
        };
        if let Some(task) = self.cutover.as_mut().and_then(|c| c.task.take()) {
            task.abort();
        }
        let ending = match (outcome, kind) {
            (Some(HoldOutcome::Completed), HoldKind::Switch) => Ending::Flip,
            (_, HoldKind::Rollback) => Ending::Rollback,
            _ => Ending::Abort("ended by another member".into()),
        };
        self.ended(ending, Applied::default());
    }
}

fn rollback_actor(p: Option<&PendingRollback>) -> Actor {
    p.map_or(Actor::Auto, |p| p.actor)
}

#[cfg(test)]
mod tests;
