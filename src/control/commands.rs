//! The controller's commands, their answers, and what each asks of the
//! controller: most compute the next document with a function of
//! [`crate::control::transition`] and commit it; a held switch or rollback
//! starts a hold ([`crate::control::cutover`]) and is answered when it ends.
//!
//! Every mutating command may carry `if_generation`: when the state has moved
//! on since, it is refused and changes nothing. While a hold is in flight
//! the controller keeps answering: mutations are refused with 409 (a
//! rollback takes the hold over), status, health events and reloads from
//! the file watcher (run when the hold ends) are served.

use crate::config::PoolName;
use crate::control::controller::{send, Actor, CommandError, Controller, Phase, Reply};
use crate::control::cutover::PendingRollback;
use crate::control::transition::{self, SwitchPlan};
use crate::control::view::ControlView;
use crate::routing::Weights;
use crate::telemetry::metrics::{RollbackReason, SwitchResult};
use crate::upstream::EndpointState;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutAction {
    Pause,
    Resume,
    Promote,
    Abort,
}

/// The answer to a switch.
#[derive(Debug, Clone, Serialize)]
pub struct SwitchReport {
    /// `completed`, `unchanged` or `aborted`.
    pub outcome: &'static str,
    pub from: PoolName,
    pub to: PoolName,
    pub held_requests: u64,
    pub hold_ms: u64,
    /// Until the writes already in flight finished (SPEC.md section 5).
    pub drain_ms: u64,
    pub gate_ms: u64,
    pub gate_answer: Option<String>,
    /// The PostgreSQL gate's LSNs, lag and promotion; null for other gates.
    pub database: Option<crate::control::gate::DatabaseFigures>,
    pub reason: Option<String>,
    /// Fleet mode: the members whose acknowledgement the switch missed
    /// (it aborted naming them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_acks: Vec<String>,
    pub generation: u64,
    pub phase: Phase,
    pub weights: Weights,
}

/// The answer to a reload.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    pub generation: u64,
    pub changed: bool,
    pub endpoints_added: Vec<String>,
    pub endpoints_removed: Vec<String>,
    pub restart_needed: Option<String>,
    /// Set when `traffic.initial` changed but was not applied as weights
    /// (it would give a rollback-locked pool traffic); the rest of the
    /// file was applied.
    pub weights_not_applied: Option<String>,
}

pub enum Command {
    /// An endpoint changed health (active checks) or was ejected (passive).
    EndpointHealth {
        pool: PoolName,
        address: String,
        state: EndpointState,
        reason: String,
    },
    /// The view as the controller has it now (the admin API reads the
    /// published view; this is the same, through the inbox).
    Status { reply: Reply<ControlView> },
    /// Every rollback rule and check now, and what each waits for.
    Explain {
        reply: Reply<Box<crate::control::explain::Explanation>>,
    },
    SetWeights {
        weights: Weights,
        /// Give a rollback-locked pool traffic all the same.
        force: bool,
        if_generation: Option<u64>,
        actor: Actor,
        reply: Reply<ControlView>,
    },
    Switch {
        to: PoolName,
        force: bool,
        if_generation: Option<u64>,
        actor: Actor,
        reply: Reply<SwitchReport>,
    },
    RolloutStart {
        to: PoolName,
        steps: Option<Vec<f64>>,
        step_interval: Option<Duration>,
        if_generation: Option<u64>,
        reply: Reply<ControlView>,
    },
    Rollout {
        action: RolloutAction,
        if_generation: Option<u64>,
        reply: Reply<ControlView>,
    },
    Rollback {
        reason: Option<String>,
        if_generation: Option<u64>,
        reply: Reply<ControlView>,
    },
    Rearm {
        if_generation: Option<u64>,
        reply: Reply<ControlView>,
    },
    /// Reload the config file; `reply` is None for the file watcher and signals.
    Reload {
        actor: Actor,
        /// Refuse (409) if the state has moved on since this generation.
        if_generation: Option<u64>,
        reply: Option<Reply<ReloadReport>>,
    },
    /// An analysis check's reading (from its task, never awaited).
    CheckResult(Box<crate::control::analysis::CheckReport>),
    /// Drain an endpoint for maintenance (`drain`), or enable it again.
    Maintenance {
        address: String,
        drain: bool,
        reply: Reply<crate::control::maintenance::MaintenanceReport>,
    },
    /// The process is stopping: a switch in flight aborts now, so its held
    /// writes go to the old pool instead of waiting out `max_hold`; one
    /// whose replica is being promoted flips once the promotion has ended
    /// (answered then).
    Shutdown { reply: Reply<()> },
}

impl Controller {
    pub(crate) async fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::EndpointHealth {
                pool,
                address,
                state,
                reason,
            } => self.record_endpoint_health(pool, address, state, reason),
            Command::Status { reply } => send(reply, Ok(self.publish_view())),
            Command::Explain { reply } => send(reply, Ok(Box::new(self.explain()))),
            Command::CheckResult(report) => self.on_check(*report).await,
            Command::Maintenance {
                address,
                drain,
                reply,
            } => send(reply, self.maintain_endpoint(&address, drain)),
            Command::SetWeights {
                weights,
                force,
                if_generation,
                actor,
                reply,
            } => {
                let r = self.set_weights(weights, force, if_generation, actor).await;
                send(reply, r);
            }
            Command::Switch {
                to,
                force,
                if_generation,
                actor,
                reply,
            } => self.switch(to, force, if_generation, actor, reply).await,
            Command::RolloutStart {
                to,
                steps,
                step_interval,
                if_generation,
                reply,
            } => {
                let cfg = self.shared.config.load_full();
                let target_ok = self.check_healthy(to).and_then(|()| self.check_mirror(to));
                let now = crate::clock::unix_ms();
                let r = self
                    .change(if_generation, |d| {
                        let ok = target_ok.clone().map_err(CommandError::Conflict);
                        let (steps, interval) = (steps.clone(), step_interval);
                        transition::rollout_start(d, to, steps, interval, ok, &cfg, now).map(Some)
                    })
                    .await;
                send(reply, r.map(|_| self.publish_view()));
            }
            Command::Rollout {
                action: RolloutAction::Abort,
                if_generation,
                reply,
            } => {
                let r = self.check_generation(if_generation).and_then(|()| {
                    match self.doc.rollout.is_none() && self.doc.bake.is_none() {
                        true => Err(CommandError::Conflict("no rollout to abort".into())),
                        false => Ok(()),
                    }
                });
                match r {
                    Ok(()) => self.rollback_manual("rollout aborted".into(), reply).await,
                    Err(e) => send(reply, Err(e)),
                }
            }
            Command::Rollout {
                action,
                if_generation,
                reply,
            } => {
                let cfg = self.shared.config.load_full();
                let now = crate::clock::unix_ms();
                let r = self
                    .change(if_generation, |d| {
                        transition::rollout_action(d, action, &cfg, now)
                    })
                    .await;
                send(reply, r.map(|_| self.publish_view()));
            }
            Command::Rollback {
                reason,
                if_generation,
                reply,
            } => {
                // No reason given: the event says `manual`, not
                // `manual: manual rollback`.
                let text = reason.map(|r| r.trim().to_string()).unwrap_or_default();
                match self.check_generation(if_generation) {
                    Ok(()) => self.rollback_manual(text, reply).await,
                    Err(e) => send(reply, Err(e)),
                }
            }
            Command::Rearm {
                if_generation,
                reply,
            } => {
                let now = crate::clock::unix_ms();
                let r = self
                    .change(if_generation, |d| transition::rearm(d, now))
                    .await;
                send(reply, r.map(|_| self.publish_view()));
            }
            Command::Reload {
                actor,
                if_generation,
                reply,
            } => {
                let r = match self.check_generation(if_generation) {
                    // The watcher's and a signal's reloads wait for the hold.
                    Ok(()) if reply.is_none() && self.doc.switching() => {
                        self.pending_reload = Some(actor);
                        return;
                    }
                    Ok(()) => match transition::refuse_while_switching(&self.doc) {
                        Ok(()) => self.reload(actor).await,
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                };
                if let Some(reply) = reply {
                    send(reply, r);
                }
            }
            Command::Shutdown { reply } => self.abort_switch("shutting down", reply).await,
        }
    }

    /// A manual split (`PUT /weights`, or `traffic.initial` on reload).
    pub(crate) async fn set_weights(
        &mut self,
        weights: Weights,
        force: bool,
        if_generation: Option<u64>,
        actor: Actor,
    ) -> Result<ControlView, CommandError> {
        let cfg = self.shared.config.load_full();
        let now = crate::clock::unix_ms();
        self.change(if_generation, |d| {
            transition::set_weights(d, weights, force, actor, &cfg, now)
        })
        .await?;
        Ok(self.publish_view())
    }

    /// The guardrail that needs the table: enough healthy endpoints in `to`.
    pub(crate) fn check_healthy(&self, to: PoolName) -> Result<(), String> {
        let min = self.shared.config.load().cutover.min_healthy as usize;
        let table = self.shared.table.load();
        let pool = table.pool(to);
        let now = crate::clock::now_ms();
        let healthy = pool.healthy_count(now);
        if healthy >= min {
            return Ok(());
        }
        let unchecked = pool
            .endpoints
            .iter()
            .filter(|e| e.state(now) == EndpointState::Unknown)
            .count();
        let note = if unchecked > 0 {
            format!(" ({unchecked} not checked yet: wait for health_check)")
        } else {
            String::new()
        };
        Err(format!(
            "pool {to} has {healthy} healthy endpoint(s){note}; cutover.min_healthy is {min}"
        ))
    }

    /// A switch (SPEC.md section 5). With `hold_writes` the answer waits
    /// for the hold to end; the loop goes on meanwhile.
    async fn switch(
        &mut self,
        to: PoolName,
        force: bool,
        if_generation: Option<u64>,
        actor: Actor,
        reply: Reply<SwitchReport>,
    ) {
        let cfg = self.shared.config.load_full();
        let target_ok = self.check_healthy(to).and_then(|()| self.check_mirror(to));
        let now = crate::clock::unix_ms();
        let from = self.doc.weights.sole_pool().unwrap_or(self.doc.live);
        let was_switching = self.doc.switching();
        let r = self
            .change(if_generation, |d| {
                let ok = target_ok.clone().map_err(CommandError::Conflict);
                Ok(
                    match transition::switch(d, to, force, actor, ok, &cfg, now)? {
                        SwitchPlan::Unchanged { .. } => None,
                        SwitchPlan::Hold(n) | SwitchPlan::Flip(n) => Some(n),
                    },
                )
            })
            .await;
        match r {
            Ok(None) => send(reply, Ok(self.switch_report("unchanged", from, to, None))),
            Ok(Some(_)) if self.doc.switching() => self.begin_cutover(Some(reply), None),
            Ok(Some(_)) => {
                self.shared.metrics.switch(to, SwitchResult::Completed);
                send(reply, Ok(self.switch_report("completed", from, to, None)));
            }
            Err(e) => {
                if matches!(e, CommandError::Conflict(_)) && !was_switching {
                    self.shared.metrics.switch(to, SwitchResult::Refused);
                }
                send(reply, Err(e));
            }
        }
    }

    pub(crate) fn switch_report(
        &self,
        outcome: &'static str,
        from: PoolName,
        to: PoolName,
        reason: Option<String>,
    ) -> SwitchReport {
        SwitchReport {
            outcome,
            from,
            to,
            held_requests: 0,
            hold_ms: 0,
            drain_ms: 0,
            gate_ms: 0,
            gate_answer: None,
            database: None,
            reason,
            missing_acks: Vec::new(),
            generation: self.doc.generation,
            phase: self.doc.phase(),
            weights: self.doc.weights,
        }
    }

    async fn rollback_manual(&mut self, text: String, reply: Reply<ControlView>) {
        let p = PendingRollback {
            actor: Actor::Admin,
            reason: RollbackReason::Manual,
            text,
            figures: None,
            replies: vec![reply],
        };
        self.rollback(p).await;
    }
}
