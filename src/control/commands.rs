//! The controller's commands and what each does to deployment state.
//!
//! Every mutating command may carry `if_generation`: when the state has moved
//! on since, it is refused and changes nothing.

use crate::config::PoolName;
use crate::control::controller::{Actor, CommandError, ControlView, Controller, Phase, Reply};
use crate::control::events::{Event, EventKind};
use crate::control::rollout::{Advance, Rollout};
use crate::control::rules::{self, BreachReason};
use crate::control::state::{Bake, RollbackLock};
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
    pub drain_ms: u64,
    pub gate_ms: u64,
    pub gate_answer: Option<String>,
    pub reason: Option<String>,
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
}

fn send<T>(reply: Reply<T>, r: Result<T, CommandError>) {
    if reply.send(r).is_err() {
        tracing::debug!("the requester went away before the answer");
    }
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
            Command::SetWeights {
                weights,
                force,
                if_generation,
                actor,
                reply,
            } => {
                let r = self
                    .check_generation(if_generation)
                    .and_then(|()| match force {
                        true => Ok(()),
                        false => self.guard_locked_weights(weights),
                    })
                    .and_then(|()| self.set_weights(weights, actor));
                send(reply, r);
            }
            Command::Switch {
                to,
                force,
                if_generation,
                actor,
                reply,
            } => {
                let r = match self.check_generation(if_generation) {
                    Ok(()) => self.switch(to, force, actor).await,
                    Err(e) => Err(e),
                };
                send(reply, r);
            }
            Command::RolloutStart {
                to,
                steps,
                step_interval,
                if_generation,
                reply,
            } => {
                let r = self
                    .check_generation(if_generation)
                    .and_then(|()| self.rollout_start(to, steps, step_interval));
                send(reply, r);
            }
            Command::Rollout {
                action,
                if_generation,
                reply,
            } => {
                let r = match self.check_generation(if_generation) {
                    Ok(()) if action == RolloutAction::Abort => {
                        if self.rollout.is_none() && self.bake.is_none() {
                            Err(CommandError::Conflict("no rollout to abort".into()))
                        } else {
                            let text = "rollout aborted".to_string();
                            self.rollback_held(Actor::Admin, RollbackReason::Manual, text, None)
                                .await
                        }
                    }
                    Ok(()) => self.rollout_action(action),
                    Err(e) => Err(e),
                };
                send(reply, r);
            }
            Command::Rollback {
                reason,
                if_generation,
                reply,
            } => {
                let text = reason.unwrap_or_else(|| "manual rollback".into());
                let r = match self.check_generation(if_generation) {
                    Ok(()) => {
                        self.rollback_held(Actor::Admin, RollbackReason::Manual, text, None)
                            .await
                    }
                    Err(e) => Err(e),
                };
                send(reply, r);
            }
            Command::Rearm {
                if_generation,
                reply,
            } => {
                let r = self.check_generation(if_generation).map(|()| self.rearm());
                send(reply, r);
            }
            Command::Reload {
                actor,
                if_generation,
                reply,
            } => {
                let r = match self.check_generation(if_generation) {
                    Ok(()) => self.reload(actor),
                    Err(e) => Err(e),
                };
                if let Some(reply) = reply {
                    send(reply, r);
                }
            }
        }
    }

    fn refuse_while_switching(&self) -> Result<(), CommandError> {
        if self.switching {
            return Err(CommandError::Conflict("a switch is in progress".into()));
        }
        Ok(())
    }

    /// A manual split. Pauses a running rollout (SPEC.md section 3), even
    /// at 100 % on live: the operator resumes or aborts it. 100 % on the
    /// candidate completes the move (a rollout in progress is recorded as
    /// completed) and bakes. Outside a rollout, 100 % on live is stable.
    pub(crate) fn set_weights(
        &mut self,
        weights: Weights,
        actor: Actor,
    ) -> Result<ControlView, CommandError> {
        self.refuse_while_switching()?;
        let from = self.weights;
        if from == weights {
            return Ok(self.publish_view());
        }
        self.weights = weights;
        let sole = weights.sole_pool();
        if sole == Some(self.live) && self.rollout.is_none() {
            self.bake = None;
        } else if sole == Some(self.candidate()) {
            if self.rollout.is_none() {
                self.start_bake();
            }
            // A rollout in progress finishes below, after the weights event.
        } else {
            self.bake = None;
            if let Some(r) = self.rollout.as_mut().filter(|r| !r.paused) {
                r.pause();
                self.shared.events.record(
                    Event::new(EventKind::RolloutPaused, actor)
                        .to(r.view())
                        .weights(weights)
                        .reason("paused by a manual weight change"),
                );
            }
        }
        self.weights_changed();
        let view = self.publish(None);
        self.shared.events.record(
            Event::new(EventKind::WeightsChanged, actor)
                .from(from)
                .to(weights)
                .weights(weights),
        );
        if sole == Some(self.candidate()) && self.rollout.is_some() {
            self.finish_rollout(actor);
            return Ok(self.publish(None));
        }
        Ok(view)
    }

    /// Keep the candidate (now at 100 %) under watch for `bake_time`; with
    /// no bake time the move completes at once.
    pub(crate) fn start_bake(&mut self) {
        let cfg = self.shared.config.load();
        let pool = self.candidate();
        if cfg.rollout.bake_time.is_zero() {
            self.complete_bake_of(pool);
        } else {
            self.bake = Some(Bake {
                pool,
                until_unix_ms: crate::clock::unix_ms_after(
                    crate::clock::unix_ms(),
                    cfg.rollout.bake_time,
                ),
            });
        }
    }

    fn complete_bake_of(&mut self, pool: PoolName) {
        let from = self.live;
        self.live = pool;
        self.bake = None;
        self.shared.events.record(
            Event::new(EventKind::BakeCompleted, Actor::Auto)
                .from(from)
                .to(pool)
                .weights(self.weights)
                .reason(format!("{pool} is now live")),
        );
    }

    /// Guardrails shared by switch and rollout: enough healthy endpoints and
    /// no rollback lock on the target.
    fn guard_target(&self, to: PoolName) -> Result<(), CommandError> {
        let min = self.shared.config.load().cutover.min_healthy as usize;
        let table = self.shared.table.load();
        let pool = table.pool(to);
        let now = crate::clock::now_ms();
        let healthy = pool.healthy_count(now);
        if healthy < min {
            let unchecked = pool
                .endpoints
                .iter()
                .filter(|e| e.state(now) == crate::upstream::EndpointState::Unknown)
                .count();
            let note = if unchecked > 0 {
                format!(" ({unchecked} not checked yet: wait for health_check)")
            } else {
                String::new()
            };
            return Err(CommandError::Conflict(format!(
                "pool {to} has {healthy} healthy endpoint(s){note}; cutover.min_healthy is {min}"
            )));
        }
        if let Some(lock) = self.lock.as_ref().filter(|l| l.pool == to) {
            return Err(CommandError::Conflict(locked(lock)));
        }
        Ok(())
    }

    /// The rollback lock covers weights too: a manual split is a partial
    /// rollout, and a GitOps re-sync of `traffic.initial` must not undo an
    /// automatic rollback. Refused when `weights` give the locked pool
    /// more than it has now; taking traffic away from it is always allowed.
    pub(crate) fn guard_locked_weights(&self, weights: Weights) -> Result<(), CommandError> {
        match self
            .lock
            .as_ref()
            .filter(|l| weights.bp(l.pool) > self.weights.bp(l.pool))
        {
            Some(lock) => Err(CommandError::Conflict(locked(lock))),
            None => Ok(()),
        }
    }

    pub(crate) async fn switch(
        &mut self,
        to: PoolName,
        force: bool,
        actor: Actor,
    ) -> Result<SwitchReport, CommandError> {
        self.refuse_while_switching()?;
        let from = self.weights.sole_pool().unwrap_or(self.live);
        if self.weights.sole_pool() == Some(to) {
            return Ok(self.switch_report("unchanged", from, to, None));
        }
        if !force {
            if let Err(e) = self.guard_target(to) {
                self.shared.metrics.switch(to, SwitchResult::Refused);
                return Err(e);
            }
        }
        let hold_writes = self.shared.config.load().cutover.hold_writes;
        self.shared.events.record(
            Event::new(EventKind::SwitchStarted, actor)
                .from(from)
                .to(to)
                .weights(self.weights)
                .reason(match (force, hold_writes) {
                    (true, true) => "forced, holding writes",
                    (true, false) => "forced",
                    (false, true) => "holding writes",
                    (false, false) => "switch",
                }),
        );
        if hold_writes {
            return self.switch_with_hold(from, to, actor).await;
        }
        self.apply_switch(to);
        self.publish(None);
        self.shared.metrics.switch(to, SwitchResult::Completed);
        self.shared.events.record(
            Event::new(EventKind::SwitchCompleted, actor)
                .from(from)
                .to(to)
                .weights(self.weights),
        );
        Ok(self.switch_report("completed", from, to, None))
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
            reason,
            generation: self.generation,
            phase: self.phase(),
            weights: self.weights,
        }
    }

    fn rollout_start(
        &mut self,
        to: PoolName,
        steps: Option<Vec<f64>>,
        step_interval: Option<Duration>,
    ) -> Result<ControlView, CommandError> {
        self.refuse_while_switching()?;
        if self.rollout.is_some() {
            return Err(CommandError::Conflict(
                "a rollout is already in progress; pause, promote or abort it".into(),
            ));
        }
        if self.weights.sole_pool() == Some(to) {
            return Err(CommandError::Conflict(format!(
                "{to} already takes all traffic"
            )));
        }
        if to == self.live {
            return Err(CommandError::Conflict(format!(
                "{to} is the live pool; a rollout moves traffic to the candidate ({})",
                self.candidate()
            )));
        }
        let cfg = self.shared.config.load_full();
        let steps = steps.unwrap_or_else(|| cfg.rollout.steps.clone());
        crate::config::validate_steps(&steps).map_err(CommandError::Invalid)?;
        let interval = step_interval.unwrap_or(cfg.rollout.step_interval);
        if interval.is_zero() {
            return Err(CommandError::Invalid(
                "step_interval must be above 0".into(),
            ));
        }
        // The same bound as the config file's: a step past it could not
        // even be shown as a time.
        crate::config::values::duration_at_most(interval, crate::config::values::MAX_STEP_INTERVAL)
            .map_err(|e| CommandError::Invalid(format!("step_interval: {e}")))?;
        self.guard_target(to)?;
        let rollout = Rollout::new(
            to,
            steps,
            interval,
            cfg.rollout.auto_promote,
            crate::clock::unix_ms(),
        );
        let from = self.weights;
        self.weights = rollout.weights();
        self.bake = None;
        self.shared.events.record(
            Event::new(EventKind::RolloutStarted, Actor::Admin)
                .from(from)
                .to(rollout.view())
                .weights(self.weights),
        );
        self.rollout = Some(rollout);
        self.weights_changed();
        let view = self.publish(None);
        if self.rollout.as_ref().is_some_and(|r| r.is_last_step()) {
            self.finish_rollout(Actor::Admin);
            return Ok(self.publish(None));
        }
        Ok(view)
    }

    /// The rollout reached 100 %: record it and start the bake.
    fn finish_rollout(&mut self, actor: Actor) {
        let Some(r) = self.rollout.take() else { return };
        self.shared.events.record(
            Event::new(EventKind::RolloutCompleted, actor)
                .to(r.to)
                .weights(self.weights),
        );
        self.start_bake();
    }

    /// Move the rollout one step (timer or `promote`).
    fn step_rollout(&mut self, actor: Actor) {
        let Some(r) = self.rollout.as_mut() else {
            return;
        };
        let advance = r.advance(crate::clock::unix_ms());
        let view = r.view();
        let weights = match advance {
            Advance::Step(w) | Advance::Completed(w) => w,
        };
        let from = self.weights;
        self.weights = weights;
        self.weights_changed();
        self.shared.events.record(
            Event::new(EventKind::RolloutStep, actor)
                .from(from)
                .to(view)
                .weights(weights),
        );
        if matches!(advance, Advance::Completed(_)) {
            self.finish_rollout(actor);
        }
        self.publish(None);
    }

    fn rollout_action(&mut self, action: RolloutAction) -> Result<ControlView, CommandError> {
        self.refuse_while_switching()?;
        if action == RolloutAction::Abort {
            if self.rollout.is_none() && self.bake.is_none() {
                return Err(CommandError::Conflict("no rollout to abort".into()));
            }
            return self.rollback(
                Actor::Admin,
                RollbackReason::Manual,
                "rollout aborted".into(),
                None,
            );
        }
        if action == RolloutAction::Promote && self.rollout.is_none() && self.bake.is_some() {
            let pool = self.candidate();
            self.complete_bake_of(pool);
            return Ok(self.publish(None));
        }
        let Some(r) = self.rollout.as_mut() else {
            return Err(CommandError::Conflict("no rollout in progress".into()));
        };
        match action {
            RolloutAction::Pause => {
                if r.paused {
                    return Ok(self.publish_view());
                }
                r.pause();
                let view = r.view();
                self.shared.events.record(
                    Event::new(EventKind::RolloutPaused, Actor::Admin)
                        .to(view)
                        .weights(self.weights),
                );
                Ok(self.publish(None))
            }
            RolloutAction::Resume => {
                if !r.paused {
                    return Ok(self.publish_view());
                }
                r.resume(crate::clock::unix_ms());
                let (view, weights) = (r.view(), r.weights());
                if weights != self.weights {
                    self.weights = weights;
                    self.weights_changed();
                }
                self.shared.events.record(
                    Event::new(EventKind::RolloutResumed, Actor::Admin)
                        .to(view)
                        .weights(self.weights),
                );
                Ok(self.publish(None))
            }
            RolloutAction::Promote => {
                self.step_rollout(Actor::Admin);
                Ok(self.publish_view())
            }
            RolloutAction::Abort => unreachable!("handled above"),
        }
    }

    /// A rollback, behind a write hold when `cutover.hold_writes` is on.
    pub(crate) async fn rollback_held(
        &mut self,
        actor: Actor,
        reason: RollbackReason,
        text: String,
        figures: Option<rules::Figures>,
    ) -> Result<ControlView, CommandError> {
        let hold = self.shared.config.load().cutover.hold_writes;
        if !hold || self.weights.bp(self.candidate()) == 0 {
            return self.rollback(actor, reason, text, figures);
        }
        let (r, f) = self
            .with_write_hold(|c| c.rollback(actor, reason, text, figures))
            .await;
        tracing::info!(
            held = f.held_requests,
            hold_ms = f.hold_ms,
            "rollback held writes"
        );
        r
    }

    /// Everything back to live, the candidate rollback-locked.
    pub(crate) fn rollback(
        &mut self,
        actor: Actor,
        reason: RollbackReason,
        text: String,
        figures: Option<rules::Figures>,
    ) -> Result<ControlView, CommandError> {
        let candidate = self.candidate();
        if self.weights.bp(candidate) == 0 && self.rollout.is_none() && self.bake.is_none() {
            return Err(CommandError::Conflict(format!(
                "nothing to roll back: all traffic is on {} already",
                self.live
            )));
        }
        let from = self.weights;
        self.weights = Weights::all_on(self.live);
        self.rollout = None;
        self.bake = None;
        self.lock = Some(RollbackLock {
            pool: candidate,
            since: crate::clock::rfc3339(crate::clock::unix_ms()),
            reason: format!("{}: {text}", reason.as_str()),
        });
        self.weights_changed();
        let view = self.publish(None);
        self.shared.metrics.rollback(reason);
        let mut event = Event::new(EventKind::Rollback, actor)
            .from(from)
            .to(self.live)
            .weights(self.weights)
            .reason(format!("{}: {text}", reason.as_str()));
        if let Some(f) = figures {
            event = event.stats(f);
        }
        self.shared.events.record(event);
        Ok(view)
    }

    fn rearm(&mut self) -> ControlView {
        if let Some(lock) = self.lock.take() {
            self.shared.events.record(
                Event::new(EventKind::Rearmed, Actor::Admin)
                    .to(lock.pool)
                    .reason(format!("lock cleared (was: {})", lock.reason)),
            );
            return self.publish(None);
        }
        self.publish_view()
    }

    /// Rollout steps and the end of a bake.
    pub(crate) fn on_timer(&mut self) {
        let now = crate::clock::unix_ms();
        if self.rollout.as_ref().is_some_and(|r| r.due(now)) {
            self.step_rollout(Actor::Auto);
        }
        if let Some(b) = self.bake.clone().filter(|b| b.until_unix_ms <= now) {
            self.complete_bake_of(b.pool);
            self.publish(None);
        }
    }

    /// One automatic-rollback evaluation over the window since the last change.
    pub(crate) async fn evaluate(&mut self) {
        let cfg = self.shared.config.load_full();
        if !cfg.rollback.enabled || !self.armed() {
            return;
        }
        let now = crate::clock::now_ms();
        let candidate = self.candidate();
        let window = cfg.rollback.window;
        let c = self.shared.runtimes[candidate.index()].stats.window_since(
            now,
            window,
            self.changed_at_ms,
        );
        let l = self.shared.runtimes[self.live.index()].stats.window_since(
            now,
            window,
            self.changed_at_ms,
        );
        let verdict = rules::evaluate(&cfg.rollback, &c, &l);
        if let Some(decision) = self.judge.observe(tokio::time::Instant::now(), verdict) {
            let reason: RollbackReason = decision.reason.into();
            let text = describe(decision.reason, &decision.figures);
            tracing::warn!(%candidate, reason = reason.as_str(), %text, "automatic rollback");
            let decided = self.rollback_held(Actor::Auto, reason, text, Some(decision.figures));
            if let Err(e) = decided.await {
                tracing::error!(error = %e, "automatic rollback refused");
            }
        }
    }
}

/// Why a change towards a rollback-locked pool is refused.
fn locked(lock: &RollbackLock) -> String {
    format!(
        "pool {} is rollback-locked since {} ({}); rearm first",
        lock.pool, lock.since, lock.reason
    )
}

fn describe(reason: BreachReason, f: &rules::Figures) -> String {
    match reason {
        BreachReason::ErrorRate => format!(
            "candidate error rate {:.4} over {} requests is above max_error_rate {}",
            f.candidate_error_rate, f.candidate_requests, f.max_error_rate
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
    }
}
