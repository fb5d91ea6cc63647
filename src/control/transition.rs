//! Every change of deployment state as a pure function: the current
//! [`StateDoc`], the request and the time in; the next document (or a
//! refusal, or `None` when nothing would change) out.
//!
//! The next document carries the generation after the current one and the
//! [`Change`] it records, in the order the events happened. Nothing here
//! reads a clock, the routing table or the store: the controller passes
//! the time and the result of the guardrails that need the table (enough
//! healthy endpoints), commits what comes out, and applies it.

use crate::config::{Config, PoolName};
use crate::control::controller::CommandError;
use crate::control::document::{Bake, Change, HoldKind, RollbackLock, StateDoc, DOC_VERSION};
use crate::control::events::{Actor, Event, EventKind};
use crate::control::rollout::{Advance, Rollout};
use crate::control::RolloutAction;
use crate::routing::Weights;
use std::time::Duration;

/// The next document's starting point: a copy of `doc` one generation on,
/// with no change recorded yet and an ended hold dropped.
fn begin(doc: &StateDoc, now: u64) -> StateDoc {
    let mut n = doc.clone();
    n.version = DOC_VERSION;
    n.generation = doc.generation + 1;
    n.saved_at = crate::clock::rfc3339(now);
    n.last_change = None;
    if n.hold.as_ref().is_some_and(|h| !h.in_flight()) {
        n.hold = None;
    }
    n
}

fn done(mut n: StateDoc, events: Vec<Event>) -> StateDoc {
    n.last_change = (!events.is_empty()).then(|| Change::new(events));
    n
}

/// Refused while a hold is in flight: the switch (or rollback) decides first.
pub fn refuse_while_switching(doc: &StateDoc) -> Result<(), CommandError> {
    match doc.hold_in_flight().map(|h| h.kind) {
        Some(HoldKind::Switch) => Err(CommandError::Conflict(
            "a switch is in progress; try again when it has completed or aborted".into(),
        )),
        Some(HoldKind::Rollback) => Err(CommandError::Conflict(
            "a rollback is holding writes; try again when it has completed".into(),
        )),
        None => Ok(()),
    }
}

/// Why a change towards a rollback-locked pool is refused.
pub fn locked(lock: &RollbackLock) -> String {
    format!(
        "pool {} is rollback-locked since {} ({}); rearm first",
        lock.pool, lock.since, lock.reason
    )
}

/// The rollback lock covers weights too: a manual split is a partial
/// rollout, and a GitOps re-sync of `traffic.initial` must not undo an
/// automatic rollback. Refused when `weights` give the locked pool more
/// than it has now; taking traffic away from it is always allowed.
pub fn check_locked_weights(doc: &StateDoc, weights: Weights) -> Result<(), CommandError> {
    match doc
        .rollback_lock
        .as_ref()
        .filter(|l| weights.bp(l.pool) > doc.weights.bp(l.pool))
    {
        Some(lock) => Err(CommandError::Conflict(locked(lock))),
        None => Ok(()),
    }
}

fn check_unlocked(doc: &StateDoc, to: PoolName) -> Result<(), CommandError> {
    match doc.rollback_lock.as_ref().filter(|l| l.pool == to) {
        Some(lock) => Err(CommandError::Conflict(locked(lock))),
        None => Ok(()),
    }
}

/// `pool` is live now: the move is complete.
fn complete_bake(n: &mut StateDoc, pool: PoolName, events: &mut Vec<Event>) {
    let from = n.live;
    n.live = pool;
    n.bake = None;
    events.push(
        Event::new(EventKind::BakeCompleted, Actor::Auto)
            .from(from)
            .to(pool)
            .weights(n.weights)
            .reason(format!("{pool} is now live")),
    );
}

/// Keep the candidate (now at 100 %) under watch for `bake_time`; with no
/// bake time the move completes at once.
fn start_bake(n: &mut StateDoc, cfg: &Config, now: u64, events: &mut Vec<Event>) {
    let pool = n.candidate();
    if cfg.rollout.bake_time.is_zero() {
        complete_bake(n, pool, events);
    } else {
        n.bake = Some(Bake {
            pool,
            until_unix_ms: crate::clock::unix_ms_after(now, cfg.rollout.bake_time),
        });
    }
}

/// The rollout reached 100 %: record it and start the bake.
fn finish_rollout(n: &mut StateDoc, actor: Actor, cfg: &Config, now: u64, ev: &mut Vec<Event>) {
    let Some(r) = n.rollout.take() else { return };
    ev.push(
        Event::new(EventKind::RolloutCompleted, actor)
            .to(r.to)
            .weights(n.weights),
    );
    start_bake(n, cfg, now, ev);
}

/// A manual split. Pauses a running rollout (SPEC.md section 3), even at
/// 100 % on live: the operator resumes or aborts it. 100 % on the candidate
/// completes the move (a rollout in progress is recorded as completed) and
/// bakes. Outside a rollout, 100 % on live is stable.
pub fn set_weights(
    doc: &StateDoc,
    weights: Weights,
    force: bool,
    actor: Actor,
    cfg: &Config,
    now: u64,
) -> Result<Option<StateDoc>, CommandError> {
    refuse_while_switching(doc)?;
    if !force {
        check_locked_weights(doc, weights)?;
    }
    if doc.weights == weights {
        return Ok(None);
    }
    let mut n = begin(doc, now);
    let mut events = Vec::new();
    n.weights = weights;
    n.changed_at_unix_ms = now;
    let sole = weights.sole_pool();
    if sole == Some(n.live) && n.rollout.is_none() {
        n.bake = None;
    } else if sole != Some(n.candidate()) {
        n.bake = None;
        if let Some(r) = n.rollout.as_mut().filter(|r| !r.paused) {
            r.pause();
            events.push(
                Event::new(EventKind::RolloutPaused, actor)
                    .to(r.view())
                    .weights(weights)
                    .reason("paused by a manual weight change"),
            );
        }
    }
    events.push(
        Event::new(EventKind::WeightsChanged, actor)
            .from(doc.weights)
            .to(weights)
            .weights(weights),
    );
    if sole == Some(n.candidate()) {
        if n.rollout.is_some() {
            finish_rollout(&mut n, actor, cfg, now, &mut events);
        } else {
            start_bake(&mut n, cfg, now, &mut events);
        }
    }
    Ok(Some(done(n, events)))
}

/// A step-by-step rollout towards `to`. `target_ok` is the guardrail that
/// needs the table (enough healthy endpoints).
pub fn rollout_start(
    doc: &StateDoc,
    to: PoolName,
    steps: Option<Vec<f64>>,
    step_interval: Option<Duration>,
    target_ok: Result<(), CommandError>,
    cfg: &Config,
    now: u64,
) -> Result<StateDoc, CommandError> {
    refuse_while_switching(doc)?;
    if doc.rollout.is_some() {
        return Err(CommandError::Conflict(
            "a rollout is already in progress; pause, promote or abort it".into(),
        ));
    }
    if doc.weights.sole_pool() == Some(to) {
        return Err(CommandError::Conflict(format!(
            "{to} already takes all traffic"
        )));
    }
    if to == doc.live {
        return Err(CommandError::Conflict(format!(
            "{to} is the live pool; a rollout moves traffic to the candidate ({})",
            doc.candidate()
        )));
    }
    let steps = steps.unwrap_or_else(|| cfg.rollout.steps.clone());
    crate::config::validate_steps(&steps).map_err(CommandError::Invalid)?;
    let interval = step_interval.unwrap_or(cfg.rollout.step_interval);
    if interval.is_zero() {
        return Err(CommandError::Invalid(
            "step_interval must be above 0".into(),
        ));
    }
    // The same bound as the config file's: a step past it could not even
    // be shown as a time.
    crate::config::values::duration_at_most(interval, crate::config::values::MAX_STEP_INTERVAL)
        .map_err(|e| CommandError::Invalid(format!("step_interval: {e}")))?;
    target_ok?;
    check_unlocked(doc, to)?;
    let rollout = Rollout::new(to, steps, interval, cfg.rollout.auto_promote, now);
    let mut n = begin(doc, now);
    n.weights = rollout.weights();
    n.bake = None;
    n.changed_at_unix_ms = now;
    let mut events = vec![Event::new(EventKind::RolloutStarted, Actor::Admin)
        .from(doc.weights)
        .to(rollout.view())
        .weights(n.weights)];
    let last = rollout.is_last_step();
    n.rollout = Some(rollout);
    if last {
        finish_rollout(&mut n, Actor::Admin, cfg, now, &mut events);
    }
    Ok(done(n, events))
}

/// Move the rollout one step (timer or `promote`).
fn step_rollout(n: &mut StateDoc, actor: Actor, cfg: &Config, now: u64, ev: &mut Vec<Event>) {
    let Some(r) = n.rollout.as_mut() else { return };
    let advance = r.advance(now);
    let view = r.view();
    let weights = match advance {
        Advance::Step(w) | Advance::Completed(w) => w,
    };
    let from = n.weights;
    n.weights = weights;
    n.changed_at_unix_ms = now;
    ev.push(
        Event::new(EventKind::RolloutStep, actor)
            .from(from)
            .to(view)
            .weights(weights),
    );
    if matches!(advance, Advance::Completed(_)) {
        finish_rollout(n, actor, cfg, now, ev);
    }
}

/// Pause, resume or promote (abort is a rollback).
pub fn rollout_action(
    doc: &StateDoc,
    action: RolloutAction,
    cfg: &Config,
    now: u64,
) -> Result<Option<StateDoc>, CommandError> {
    refuse_while_switching(doc)?;
    let mut n = begin(doc, now);
    let mut events = Vec::new();
    if action == RolloutAction::Promote && doc.rollout.is_none() && doc.bake.is_some() {
        let pool = doc.candidate();
        complete_bake(&mut n, pool, &mut events);
        return Ok(Some(done(n, events)));
    }
    let Some(r) = n.rollout.as_mut() else {
        return Err(CommandError::Conflict("no rollout in progress".into()));
    };
    match action {
        RolloutAction::Pause if r.paused => return Ok(None),
        RolloutAction::Pause => {
            r.pause();
            events.push(
                Event::new(EventKind::RolloutPaused, Actor::Admin)
                    .to(r.view())
                    .weights(doc.weights),
            );
        }
        RolloutAction::Resume if !r.paused => return Ok(None),
        RolloutAction::Resume => {
            r.resume(now);
            let (view, weights) = (r.view(), r.weights());
            if weights != n.weights {
                n.weights = weights;
                n.changed_at_unix_ms = now;
            }
            events.push(
                Event::new(EventKind::RolloutResumed, Actor::Admin)
                    .to(view)
                    .weights(n.weights),
            );
        }
        RolloutAction::Promote => step_rollout(&mut n, Actor::Admin, cfg, now, &mut events),
        RolloutAction::Abort => {
            return Err(CommandError::Invalid("abort is a rollback".into()));
        }
    }
    Ok(Some(done(n, events)))
}

/// Clear the rollback lock; `None` when there is none.
pub fn rearm(doc: &StateDoc, now: u64) -> Result<Option<StateDoc>, CommandError> {
    refuse_while_switching(doc)?;
    let Some(lock) = &doc.rollback_lock else {
        return Ok(None);
    };
    let mut n = begin(doc, now);
    n.rollback_lock = None;
    let event = Event::new(EventKind::Rearmed, Actor::Admin)
        .to(lock.pool)
        .reason(format!("lock cleared (was: {})", lock.reason));
    Ok(Some(done(n, vec![event])))
}

/// The rollout step and the end of a bake that are due at `now`, as one
/// change; `None` when nothing is due (or a hold is in flight: timers wait
/// for it).
pub fn timers(doc: &StateDoc, cfg: &Config, now: u64) -> Option<StateDoc> {
    timers_gated(doc, cfg, now, true)
}

/// [`timers`], with a due rollout step taken only when `step_allowed`
/// (every analysis check has passed since the step began).
pub fn timers_gated(
    doc: &StateDoc,
    cfg: &Config,
    now: u64,
    step_allowed: bool,
) -> Option<StateDoc> {
    if doc.switching() {
        return None;
    }
    let mut n = begin(doc, now);
    let mut events = Vec::new();
    if step_allowed && n.rollout.as_ref().is_some_and(|r| r.due(now)) {
        step_rollout(&mut n, Actor::Auto, cfg, now, &mut events);
    }
    if let Some(b) = n.bake.clone().filter(|b| b.until_unix_ms <= now) {
        complete_bake(&mut n, b.pool, &mut events);
    }
    (!events.is_empty()).then(|| done(n, events))
}

/// A running rollout paused by the analysis (a check said nothing
/// usable); `None` when no rollout runs.
pub fn auto_pause(doc: &StateDoc, reason: &str, now: u64) -> Option<StateDoc> {
    if doc.switching() {
        return None;
    }
    let r = doc.rollout.as_ref().filter(|r| !r.paused)?;
    let mut n = begin(doc, now);
    let mut r = r.clone();
    r.pause();
    let event = Event::new(EventKind::RolloutPaused, Actor::Auto)
        .to(r.view())
        .weights(doc.weights)
        .reason(reason);
    n.rollout = Some(r);
    Some(done(n, vec![event]))
}

/// The first document of a proxy that found none stored: the state from
/// the config, as generation 1.
pub fn first(initial: &StateDoc, now: u64) -> StateDoc {
    begin(initial, now)
}

/// What a restart must change in the stored document: a running rollout
/// resumes paused; a hold in flight lost its held writes with the old
/// process, so a switch is aborted and a rollback completes.
pub fn restarted(doc: &StateDoc, now: u64) -> Option<StateDoc> {
    if let Some(h) = doc.hold_in_flight() {
        return Some(match h.kind {
            HoldKind::Switch => abort(
                doc,
                "restarted during the switch",
                serde_json::Value::Null,
                now,
            ),
            HoldKind::Rollback => {
                let reason = h.reason.clone();
                rollback(doc, h.actor, &reason, None, now).ok()?
            }
        });
    }
    let r = doc.rollout.as_ref().filter(|r| !r.paused)?;
    let mut n = begin(doc, now);
    let mut r = r.clone();
    r.pause();
    let event = Event::new(EventKind::RolloutPaused, Actor::Auto)
        .to(r.view())
        .weights(doc.weights)
        .reason("restarted during a rollout: it resumes paused");
    n.rollout = Some(r);
    Some(done(n, vec![event]))
}

mod switch;

pub use switch::{
    abort, check_rollback, flip, promoting, rollback, rollback_hold, switch, take_over, SwitchPlan,
};

#[cfg(test)]
mod tests;
