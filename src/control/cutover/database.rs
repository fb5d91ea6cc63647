//! The controller's side of a held switch's gate: its figures as they
//! move, its end, and the one question a PostgreSQL gate asks, whether it
//! may promote the replica (SPEC.md section 13).
//!
//! Promotion cannot be undone, so it is allowed only while the switch is
//! still on and before its deadline, and from then on the switch
//! completes: past `max_hold` (the event says by how much), over a
//! rollback (refused with 409) and over a shutdown (which flips).

use super::{Ending, HoldKind};
use crate::control::controller::Controller;
use crate::control::gate::{DatabaseFigures, GateEvent, GateOutcome};
use tokio::time::Instant;

impl Controller {
    /// The gate's figures moved, or it asks to promote.
    pub(crate) fn on_gate_event(&mut self, event: GateEvent) {
        let shutting_down = self.shared.is_shutting_down();
        let Some(c) = self.cutover.as_mut() else {
            return;
        };
        match event {
            GateEvent::Figures(f) => {
                self.shared.metrics.set_gate_lag(f.lag_bytes.unwrap_or(0));
                c.figures.database = Some(*f);
                self.publish_view();
            }
            GateEvent::Promote(reply) => {
                let allowed =
                    c.kind == HoldKind::Switch && Instant::now() < c.deadline && !shutting_down;
                if allowed {
                    c.promoting = true;
                    tracing::info!(to = %c.to, "promoting the replica: the switch will complete");
                }
                if reply.send(allowed).is_err() {
                    tracing::debug!("the gate stopped before the answer to promote");
                }
            }
        }
    }

    /// The gate ended: flip when it passed or promotion began, else abort
    /// with its reason.
    pub(crate) async fn on_gate_outcome(&mut self, o: GateOutcome) {
        let max_hold = self.shared.config.load().cutover.max_hold;
        let Some(c) = self.cutover.as_mut() else {
            return;
        };
        c.task = None;
        let elapsed = c.started.elapsed();
        c.figures.gate_ms = (elapsed.as_millis() as u64).saturating_sub(c.figures.settle_ms);
        c.figures.gate_answer = o.answer;
        if let Some(mut d) = o.database {
            if c.promoting && elapsed > max_hold {
                d.max_hold_exceeded_ms = Some((elapsed - max_hold).as_millis() as u64);
            }
            c.figures.database = Some(d);
        }
        let ending = if o.passed || c.promoting {
            Ending::Flip
        } else if let Some(e) = o.error {
            Ending::Abort(format!("the gate failed: {e}"))
        } else if self.shared.is_shutting_down() {
            // Promotion was refused as the process stops.
            Ending::Abort("shutting down".into())
        } else {
            c.figures.timed_out = Some("gate");
            Ending::Abort(self.timed_out_reason("gate"))
        };
        // Fleet mode: the barrier decides, guarded by every member's ack.
        if self.fleet_hold.is_some() {
            return self.fleet_gate_answered(ending);
        }
        self.end_hold(ending).await;
    }

    /// What status shows as `gate`: the switch in flight's, else the last.
    pub(crate) fn gate_view(&self) -> Option<DatabaseFigures> {
        self.cutover
            .as_ref()
            .and_then(|c| c.figures.database.clone())
            .or_else(|| self.last_gate.clone())
    }
}
