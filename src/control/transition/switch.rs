//! The documents of the changes that move all traffic at once: a switch
//! (at once, or its hold, then the flip or the abort) and a rollback (at
//! once, or its hold, also taking a switch's hold over).

use super::{begin, check_unlocked, done, refuse_while_switching, start_bake};
use crate::config::{Config, PoolName};
use crate::control::controller::CommandError;
use crate::control::document::{HoldDoc, HoldKind, HoldOutcome, RollbackLock, StateDoc};
use crate::control::events::{Actor, Event, EventKind};
use crate::routing::Weights;

/// What a switch request leads to.
#[derive(Debug)]
pub enum SwitchPlan {
    /// `to` takes all traffic already: nothing changes.
    Unchanged { from: PoolName },
    /// `hold_writes`: a document with the hold in flight (phase `switching`).
    Hold(StateDoc),
    /// No hold: the flip at once.
    Flip(StateDoc),
}

/// A switch to `to` (SPEC.md section 5). `target_ok` is the guardrail that
/// needs the table (enough healthy endpoints), checked unless `force`.
pub fn switch(
    doc: &StateDoc,
    to: PoolName,
    force: bool,
    actor: Actor,
    target_ok: Result<(), CommandError>,
    cfg: &Config,
    now: u64,
) -> Result<SwitchPlan, CommandError> {
    refuse_while_switching(doc)?;
    let from = doc.weights.sole_pool().unwrap_or(doc.live);
    if doc.weights.sole_pool() == Some(to) {
        return Ok(SwitchPlan::Unchanged { from });
    }
    if !force {
        target_ok?;
        check_unlocked(doc, to)?;
    }
    let hold_writes = cfg.cutover.hold_writes;
    let reason = match (force, hold_writes) {
        (true, true) => "forced, holding writes",
        (true, false) => "forced",
        (false, true) => "holding writes",
        (false, false) => "switch",
    };
    let started = Event::new(EventKind::SwitchStarted, actor)
        .from(from)
        .to(to)
        .weights(doc.weights)
        .reason(reason);
    let mut n = begin(doc, now);
    if !hold_writes {
        let mut events = vec![started];
        flip_to(&mut n, to, now);
        events.push(
            Event::new(EventKind::SwitchCompleted, actor)
                .from(from)
                .to(to)
                .weights(n.weights),
        );
        bake_after_flip(&mut n, cfg, now, &mut events);
        return Ok(SwitchPlan::Flip(done(n, events)));
    }
    n.hold = Some(HoldDoc {
        id: n.generation,
        kind: HoldKind::Switch,
        from,
        to,
        actor,
        reason: reason.into(),
        coordinator: None,
        started_unix_ms: now,
        deadline_unix_ms: crate::clock::unix_ms_after(now, cfg.cutover.max_hold),
        expected: Vec::new(),
        promoting: false,
        outcome: None,
    });
    Ok(SwitchPlan::Hold(done(n, vec![started])))
}

/// The state change of a switch to `to`: all traffic on it, the rollout
/// over. The caller records the switch, then [`bake_after_flip`].
fn flip_to(n: &mut StateDoc, to: PoolName, now: u64) {
    n.weights = Weights::all_on(to);
    n.rollout = None;
    n.changed_at_unix_ms = now;
    if to == n.live {
        n.bake = None;
    }
}

/// After a flip to the candidate, the bake (or at once the move's end).
fn bake_after_flip(n: &mut StateDoc, cfg: &Config, now: u64, events: &mut Vec<Event>) {
    if n.weights.sole_pool() == Some(n.candidate()) {
        start_bake(n, cfg, now, events);
    }
}

/// The held switch passed its gate: flip, and end the hold.
pub fn flip(doc: &StateDoc, stats: serde_json::Value, cfg: &Config, now: u64) -> StateDoc {
    let mut n = begin(doc, now);
    let Some(h) = doc.hold_in_flight().cloned() else {
        return n;
    };
    flip_to(&mut n, h.to, now);
    let mut events = vec![Event::new(EventKind::SwitchCompleted, h.actor)
        .from(h.from)
        .to(h.to)
        .weights(n.weights)
        .stats(stats)];
    bake_after_flip(&mut n, cfg, now, &mut events);
    n.hold = Some(HoldDoc {
        outcome: Some(HoldOutcome::Completed),
        ..h
    });
    done(n, events)
}

/// The held switch gave up: nothing changes but the hold ends.
pub fn abort(doc: &StateDoc, reason: &str, stats: serde_json::Value, now: u64) -> StateDoc {
    let mut n = begin(doc, now);
    let Some(h) = doc.hold_in_flight().cloned() else {
        return n;
    };
    let event = Event::new(EventKind::SwitchAborted, h.actor)
        .from(h.from)
        .to(h.to)
        .weights(n.weights)
        .reason(reason)
        .stats(stats);
    n.hold = Some(HoldDoc {
        outcome: Some(HoldOutcome::Aborted),
        ..h
    });
    done(n, vec![event])
}

/// The coordinator's gate is about to promote the replica (fleet mode):
/// the hold in flight records it and its deadline moves to
/// `deadline_unix_ms` (the promotion's own bound), so no member aborts a
/// switch that must now complete. None when no switch is in flight.
pub fn promoting(doc: &StateDoc, deadline_unix_ms: u64, now: u64) -> Option<StateDoc> {
    let h = doc
        .hold_in_flight()
        .filter(|h| h.kind == HoldKind::Switch)?
        .clone();
    let mut n = begin(doc, now);
    n.hold = Some(HoldDoc {
        promoting: true,
        deadline_unix_ms: deadline_unix_ms.max(h.deadline_unix_ms),
        ..h
    });
    Some(done(n, Vec::new()))
}

/// Is there anything for a rollback to undo?
pub fn check_rollback(doc: &StateDoc) -> Result<(), CommandError> {
    let idle = doc.weights.bp(doc.candidate()) == 0
        && doc.rollout.is_none()
        && doc.bake.is_none()
        && !doc.switching();
    if idle {
        return Err(CommandError::Conflict(format!(
            "nothing to roll back: all traffic is on {} already",
            doc.live
        )));
    }
    Ok(())
}

/// A rollback that first holds writes: the document with its hold in
/// flight. `reason` is what the rollback records when it completes.
pub fn rollback_hold(
    doc: &StateDoc,
    actor: Actor,
    reason: &str,
    cfg: &Config,
    now: u64,
) -> Result<StateDoc, CommandError> {
    refuse_while_switching(doc)?;
    check_rollback(doc)?;
    let mut n = begin(doc, now);
    n.hold = Some(HoldDoc {
        id: n.generation,
        kind: HoldKind::Rollback,
        from: doc.candidate(),
        to: doc.live,
        actor,
        reason: reason.into(),
        coordinator: None,
        started_unix_ms: now,
        deadline_unix_ms: crate::clock::unix_ms_after(now, cfg.cutover.max_hold),
        expected: Vec::new(),
        promoting: false,
        outcome: None,
    });
    Ok(done(n, Vec::new()))
}

/// A rollback asked for while a switch holds writes takes the hold over:
/// the switch is aborted, the writes stay held until the rollback is done
/// (within the switch's deadline). `stats` are the switch's figures.
pub fn take_over(
    doc: &StateDoc,
    actor: Actor,
    reason: &str,
    stats: serde_json::Value,
    now: u64,
) -> Result<StateDoc, CommandError> {
    let Some(h) = doc.hold_in_flight().filter(|h| h.kind == HoldKind::Switch) else {
        return Err(CommandError::Conflict("no switch to take over".into()));
    };
    let mut n = begin(doc, now);
    let event = Event::new(EventKind::SwitchAborted, h.actor)
        .from(h.from)
        .to(h.to)
        .weights(n.weights)
        .reason(format!("a rollback took over ({reason})"))
        .stats(stats);
    n.hold = Some(HoldDoc {
        kind: HoldKind::Rollback,
        from: doc.candidate(),
        to: doc.live,
        actor,
        reason: reason.into(),
        ..h.clone()
    });
    Ok(done(n, vec![event]))
}

/// Everything back to live, the candidate rollback-locked; ends a
/// rollback's hold when one is in flight. `reason` reads like
/// `manual: bad deploy`.
pub fn rollback(
    doc: &StateDoc,
    actor: Actor,
    reason: &str,
    stats: Option<serde_json::Value>,
    now: u64,
) -> Result<StateDoc, CommandError> {
    if doc.hold_in_flight().is_none() {
        check_rollback(doc)?;
    }
    let mut n = begin(doc, now);
    let candidate = doc.candidate();
    n.weights = Weights::all_on(doc.live);
    n.rollout = None;
    n.bake = None;
    n.changed_at_unix_ms = now;
    n.rollback_lock = Some(RollbackLock {
        pool: candidate,
        since: crate::clock::rfc3339(now),
        reason: reason.into(),
    });
    if let Some(h) = doc.hold_in_flight() {
        n.hold = Some(HoldDoc {
            outcome: Some(HoldOutcome::Completed),
            ..h.clone()
        });
    }
    let mut event = Event::new(EventKind::Rollback, actor)
        .from(doc.weights)
        .to(doc.live)
        .weights(n.weights)
        .reason(reason);
    if let Some(s) = stats {
        event = event.stats(s);
    }
    Ok(done(n, vec![event]))
}
