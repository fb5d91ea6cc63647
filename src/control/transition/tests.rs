use super::*;
use crate::control::document::{HoldOutcome, Phase};

const NOW: u64 = 1_700_000_000_000;

fn cfg(extra: &str) -> Config {
    let yaml = format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\nadmin:\n  bind: \"127.0.0.1:0\"\npools:\n  blue:\n    endpoints: [\"127.0.0.1:1\"]\n  green:\n    endpoints: [\"127.0.0.1:2\"]\nstate_file: null\n{extra}\n"
    );
    crate::config::parse(&yaml, "<test>").expect("valid test config")
}

fn stable() -> StateDoc {
    let mut d = StateDoc::initial(Weights::all_on(PoolName::Blue), NOW - 10_000);
    d.generation = 5;
    d
}

fn kinds(d: &StateDoc) -> Vec<EventKind> {
    d.last_change
        .as_ref()
        .map(|c| c.events.iter().map(|e| e.kind).collect())
        .unwrap_or_default()
}

fn held(d: &StateDoc, cfg: &Config) -> StateDoc {
    match switch(d, PoolName::Green, false, Actor::Admin, Ok(()), cfg, NOW).unwrap() {
        SwitchPlan::Hold(n) => n,
        other => panic!("expected a hold, got {other:?}"),
    }
}

fn is_conflict(r: Result<impl std::fmt::Debug, CommandError>, words: &str) {
    match r {
        Err(CommandError::Conflict(m)) => assert!(m.contains(words), "{m}"),
        other => panic!("expected a conflict about {words:?}, got {other:?}"),
    }
}

#[test]
fn a_held_switch_is_two_documents_and_the_flip_bakes() {
    let cfg = cfg("cutover:\n  hold_writes: true\n  max_hold: 3s\nrollout:\n  bake_time: 60s\n");
    let start = stable();
    let hold = held(&start, &cfg);
    assert_eq!(hold.generation, 6);
    assert_eq!(hold.phase(), Phase::Switching);
    assert_eq!(
        hold.weights, start.weights,
        "the data plane does not move yet"
    );
    assert_eq!(kinds(&hold), [EventKind::SwitchStarted]);
    let h = hold.hold_in_flight().expect("in flight");
    assert_eq!(
        (h.id, h.kind, h.from, h.to),
        (6, HoldKind::Switch, PoolName::Blue, PoolName::Green)
    );
    assert_eq!(h.deadline_unix_ms, NOW + 3_000);
    assert!(h.expected.is_empty() && h.coordinator.is_none());

    let flipped = flip(
        &hold,
        serde_json::json!({"held_requests": 3}),
        &cfg,
        NOW + 500,
    );
    assert_eq!(flipped.generation, 7, "one more document ends it");
    assert_eq!(flipped.weights, Weights::all_on(PoolName::Green));
    assert_eq!(flipped.phase(), Phase::Baking);
    assert_eq!(flipped.live, PoolName::Blue, "live until the bake ends");
    assert_eq!(flipped.changed_at_unix_ms, NOW + 500);
    assert_eq!(
        flipped.hold.as_ref().unwrap().outcome,
        Some(HoldOutcome::Completed)
    );
    assert_eq!(kinds(&flipped), [EventKind::SwitchCompleted]);
    let event = &flipped.last_change.as_ref().unwrap().events[0];
    assert_eq!(event.stats, Some(serde_json::json!({"held_requests": 3})));

    // The next change drops the ended hold.
    let next = set_weights(
        &flipped,
        Weights::with_percent(PoolName::Green, 50.0),
        false,
        Actor::Admin,
        &cfg,
        NOW + 900,
    )
    .unwrap()
    .unwrap();
    assert_eq!(next.hold, None);
    assert_eq!(next.generation, 8);
}

#[test]
fn an_aborted_switch_changes_nothing_but_the_hold() {
    let cfg = cfg("cutover:\n  hold_writes: true\n");
    let hold = held(&stable(), &cfg);
    let aborted = abort(
        &hold,
        "max_hold 2s exceeded waiting for the gate",
        serde_json::Value::Null,
        NOW + 2_000,
    );
    assert_eq!(aborted.generation, 7);
    assert_eq!(aborted.weights, Weights::all_on(PoolName::Blue));
    assert_eq!(aborted.phase(), Phase::Stable);
    assert_eq!(
        aborted.changed_at_unix_ms, hold.changed_at_unix_ms,
        "the judge keeps its window"
    );
    assert_eq!(
        aborted.hold.as_ref().unwrap().outcome,
        Some(HoldOutcome::Aborted)
    );
    assert_eq!(kinds(&aborted), [EventKind::SwitchAborted]);
}

#[test]
fn a_switch_without_hold_is_one_document_and_a_bake_of_no_time_completes_in_it() {
    let cfg = cfg("rollout:\n  bake_time: 0s\n");
    let plan = switch(
        &stable(),
        PoolName::Green,
        false,
        Actor::Admin,
        Ok(()),
        &cfg,
        NOW,
    )
    .unwrap();
    let SwitchPlan::Flip(n) = plan else {
        panic!("expected a flip, got {plan:?}")
    };
    assert_eq!(n.generation, 6);
    assert_eq!(n.live, PoolName::Green);
    assert_eq!(n.phase(), Phase::Stable);
    assert_eq!(
        kinds(&n),
        [
            EventKind::SwitchStarted,
            EventKind::SwitchCompleted,
            EventKind::BakeCompleted
        ]
    );
    // To the pool that already has everything: nothing to do.
    let again = switch(&n, PoolName::Green, false, Actor::Admin, Ok(()), &cfg, NOW).unwrap();
    assert!(matches!(
        again,
        SwitchPlan::Unchanged {
            from: PoolName::Green
        }
    ));
}

#[test]
fn guardrails_refuse_a_switch_unless_forced() {
    let cfg = cfg("");
    let mut d = stable();
    let unhealthy = || {
        Err(CommandError::Conflict(
            "pool green has 0 healthy endpoint(s)".into(),
        ))
    };
    is_conflict(
        switch(
            &d,
            PoolName::Green,
            false,
            Actor::Admin,
            unhealthy(),
            &cfg,
            NOW,
        ),
        "0 healthy",
    );
    assert!(switch(
        &d,
        PoolName::Green,
        true,
        Actor::Admin,
        unhealthy(),
        &cfg,
        NOW
    )
    .is_ok());
    d.rollback_lock = Some(RollbackLock {
        pool: PoolName::Green,
        since: "then".into(),
        reason: "manual: x".into(),
    });
    is_conflict(
        switch(&d, PoolName::Green, false, Actor::Admin, Ok(()), &cfg, NOW),
        "rollback-locked",
    );
    is_conflict(
        set_weights(
            &d,
            Weights::with_percent(PoolName::Green, 10.0),
            false,
            Actor::Admin,
            &cfg,
            NOW,
        ),
        "rearm first",
    );
    assert!(set_weights(
        &d,
        Weights::with_percent(PoolName::Green, 10.0),
        true,
        Actor::Admin,
        &cfg,
        NOW
    )
    .is_ok());
}

#[test]
fn every_mutation_is_refused_while_a_hold_is_in_flight() {
    let cfg = cfg("cutover:\n  hold_writes: true\n");
    let hold = held(&stable(), &cfg);
    let w = Weights::with_percent(PoolName::Green, 50.0);
    is_conflict(
        set_weights(&hold, w, true, Actor::Admin, &cfg, NOW),
        "a switch is in progress",
    );
    is_conflict(
        switch(&hold, PoolName::Blue, true, Actor::Admin, Ok(()), &cfg, NOW),
        "a switch is in progress",
    );
    is_conflict(
        rollout_start(&hold, PoolName::Green, None, None, Ok(()), &cfg, NOW),
        "a switch is in progress",
    );
    is_conflict(
        rollout_action(&hold, RolloutAction::Pause, &cfg, NOW),
        "a switch is in progress",
    );
    is_conflict(rearm(&hold, NOW), "a switch is in progress");
    is_conflict(
        rollback_hold(&hold, Actor::Admin, "manual: x", &cfg, NOW),
        "a switch is in progress",
    );
    assert!(
        timers(&hold, &cfg, u64::MAX / 2).is_none(),
        "timers wait for the hold"
    );
}

#[test]
fn a_manual_split_pauses_a_rollout_and_full_weight_completes_it() {
    let cfg = cfg("rollout:\n  bake_time: 60s\n");
    let start = rollout_start(
        &stable(),
        PoolName::Green,
        Some(vec![10.0, 50.0, 100.0]),
        None,
        Ok(()),
        &cfg,
        NOW,
    )
    .unwrap();
    assert_eq!(start.phase(), Phase::Rolling);
    assert_eq!(kinds(&start), [EventKind::RolloutStarted]);

    let split = set_weights(
        &start,
        Weights::with_percent(PoolName::Green, 30.0),
        false,
        Actor::Admin,
        &cfg,
        NOW + 1,
    )
    .unwrap()
    .unwrap();
    assert_eq!(split.phase(), Phase::Paused);
    assert_eq!(
        kinds(&split),
        [EventKind::RolloutPaused, EventKind::WeightsChanged]
    );

    let full = set_weights(
        &split,
        Weights::all_on(PoolName::Green),
        false,
        Actor::Admin,
        &cfg,
        NOW + 2,
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        full.generation,
        split.generation + 1,
        "one change, one generation"
    );
    assert_eq!(
        kinds(&full),
        [EventKind::WeightsChanged, EventKind::RolloutCompleted]
    );
    assert_eq!(full.phase(), Phase::Baking);
    assert_eq!(full.bake.as_ref().unwrap().until_unix_ms, NOW + 2 + 60_000);
    // The same weights again: no change at all.
    assert!(
        set_weights(&full, full.weights, false, Actor::Admin, &cfg, NOW + 3)
            .unwrap()
            .is_none()
    );
}

#[test]
fn timers_step_the_rollout_and_end_the_bake_in_one_document() {
    let cfg = cfg("rollout:\n  bake_time: 0s\n  step_interval: 10s\n");
    let d = rollout_start(
        &stable(),
        PoolName::Green,
        Some(vec![50.0, 100.0]),
        None,
        Ok(()),
        &cfg,
        NOW,
    )
    .unwrap();
    assert!(timers(&d, &cfg, NOW + 9_999).is_none(), "not due yet");
    let n = timers(&d, &cfg, NOW + 10_000).expect("due");
    assert_eq!(n.generation, d.generation + 1);
    assert_eq!(
        kinds(&n),
        [
            EventKind::RolloutStep,
            EventKind::RolloutCompleted,
            EventKind::BakeCompleted
        ]
    );
    assert_eq!((n.live, n.phase()), (PoolName::Green, Phase::Stable));

    let mut baking = stable();
    baking.weights = Weights::all_on(PoolName::Green);
    baking.bake = Some(Bake {
        pool: PoolName::Green,
        until_unix_ms: NOW,
    });
    let n = timers(&baking, &cfg, NOW).expect("the bake ends");
    assert_eq!(kinds(&n), [EventKind::BakeCompleted]);
    assert_eq!(n.live, PoolName::Green);
}

#[test]
fn a_rollback_locks_the_candidate_and_a_held_one_ends_its_hold() {
    let cfg = cfg("cutover:\n  hold_writes: true\n");
    is_conflict(
        rollback(&stable(), Actor::Admin, "manual: x", None, NOW),
        "nothing to roll back",
    );
    let split = set_weights(
        &stable(),
        Weights::with_percent(PoolName::Green, 20.0),
        false,
        Actor::Admin,
        &cfg,
        NOW,
    )
    .unwrap()
    .unwrap();
    let hold = rollback_hold(&split, Actor::Auto, "error_rate: too many", &cfg, NOW + 1).unwrap();
    assert_eq!(hold.phase(), Phase::Switching);
    assert_eq!(hold.weights, split.weights);
    assert!(
        hold.last_change.is_none(),
        "nothing to record until it is done"
    );
    let h = hold.hold_in_flight().unwrap();
    assert_eq!(
        (h.kind, h.from, h.to),
        (HoldKind::Rollback, PoolName::Green, PoolName::Blue)
    );

    let done = rollback(
        &hold,
        Actor::Auto,
        &h.reason,
        Some(serde_json::json!({"errors": 9})),
        NOW + 2,
    )
    .unwrap();
    assert_eq!(done.generation, hold.generation + 1);
    assert_eq!(done.weights, Weights::all_on(PoolName::Blue));
    assert_eq!(done.rollback_lock.as_ref().unwrap().pool, PoolName::Green);
    assert_eq!(
        done.rollback_lock.as_ref().unwrap().reason,
        "error_rate: too many"
    );
    assert_eq!(
        done.hold.as_ref().unwrap().outcome,
        Some(HoldOutcome::Completed)
    );
    assert_eq!(done.phase(), Phase::Stable);
    assert_eq!(kinds(&done), [EventKind::Rollback]);
}

#[test]
fn a_rollback_takes_a_switch_hold_over() {
    let cfg = cfg("cutover:\n  hold_writes: true\n");
    let hold = held(&stable(), &cfg);
    let taken = take_over(
        &hold,
        Actor::Admin,
        "manual: stop",
        serde_json::Value::Null,
        NOW + 5,
    )
    .unwrap();
    let h = taken.hold_in_flight().expect("still holding");
    assert_eq!(
        h.id,
        hold.hold.as_ref().unwrap().id,
        "the same hold: writes stay held"
    );
    assert_eq!(h.kind, HoldKind::Rollback);
    assert_eq!(
        h.deadline_unix_ms,
        hold.hold.as_ref().unwrap().deadline_unix_ms
    );
    assert_eq!(kinds(&taken), [EventKind::SwitchAborted]);
    // The switch never flipped: the rollback still locks its target.
    let done = rollback(&taken, Actor::Admin, "manual: stop", None, NOW + 6).unwrap();
    assert_eq!(done.weights, Weights::all_on(PoolName::Blue));
    assert_eq!(done.rollback_lock.unwrap().pool, PoolName::Green);
    // A rollback's own hold is not taken over.
    assert!(take_over(&taken, Actor::Admin, "again", serde_json::Value::Null, NOW).is_err());
}

#[test]
fn a_restart_pauses_a_rollout_and_ends_a_hold_the_old_process_left() {
    let cfg = cfg("cutover:\n  hold_writes: true\n");
    assert!(restarted(&stable(), NOW).is_none(), "nothing to change");
    let rolling = rollout_start(&stable(), PoolName::Green, None, None, Ok(()), &cfg, NOW).unwrap();
    let n = restarted(&rolling, NOW + 1).expect("paused");
    assert_eq!(n.phase(), Phase::Paused);
    assert_eq!(kinds(&n), [EventKind::RolloutPaused]);

    let n = restarted(&held(&stable(), &cfg), NOW + 1).expect("aborted");
    assert_eq!(n.hold.unwrap().outcome, Some(HoldOutcome::Aborted));
    assert_eq!(
        kinds(&restarted(&held(&stable(), &cfg), NOW).unwrap()),
        [EventKind::SwitchAborted]
    );

    let hold = rollback_hold(&rolling, Actor::Admin, "manual: x", &cfg, NOW).unwrap();
    let n = restarted(&hold, NOW + 1).expect("rolled back");
    assert_eq!(kinds(&n), [EventKind::Rollback]);
    assert_eq!(n.weights, Weights::all_on(PoolName::Blue));
}

#[test]
fn promote_pause_resume_and_rearm() {
    let cfg = cfg("rollout:\n  bake_time: 60s\n  auto_promote: false\n");
    let d = rollout_start(
        &stable(),
        PoolName::Green,
        Some(vec![25.0, 100.0]),
        None,
        Ok(()),
        &cfg,
        NOW,
    )
    .unwrap();
    let paused = rollout_action(&d, RolloutAction::Pause, &cfg, NOW)
        .unwrap()
        .unwrap();
    assert!(rollout_action(&paused, RolloutAction::Pause, &cfg, NOW)
        .unwrap()
        .is_none());
    let resumed = rollout_action(&paused, RolloutAction::Resume, &cfg, NOW)
        .unwrap()
        .unwrap();
    assert_eq!(resumed.phase(), Phase::Rolling);
    let promoted = rollout_action(&resumed, RolloutAction::Promote, &cfg, NOW)
        .unwrap()
        .unwrap();
    assert_eq!(
        kinds(&promoted),
        [EventKind::RolloutStep, EventKind::RolloutCompleted]
    );
    assert_eq!(promoted.phase(), Phase::Baking);
    let live = rollout_action(&promoted, RolloutAction::Promote, &cfg, NOW)
        .unwrap()
        .unwrap();
    assert_eq!(kinds(&live), [EventKind::BakeCompleted]);
    assert_eq!(live.live, PoolName::Green);

    assert!(
        rearm(&live, NOW).unwrap().is_none(),
        "no lock: nothing to do"
    );
    let locked = rollback(&promoted, Actor::Admin, "manual: x", None, NOW).unwrap();
    let rearmed = rearm(&locked, NOW).unwrap().unwrap();
    assert_eq!(rearmed.rollback_lock, None);
    assert_eq!(kinds(&rearmed), [EventKind::Rearmed]);
}

#[test]
fn promotion_began_moves_a_switchs_deadline_forward_only_and_keeps_it_in_flight() {
    let cfg = cfg("cutover:\n  hold_writes: true\n  max_hold: 3s\n");
    assert!(promoting(&stable(), NOW + 30_000, NOW).is_none(), "no hold");
    let hold = held(&stable(), &cfg);
    let old = hold.hold.as_ref().unwrap().deadline_unix_ms;
    let n = promoting(&hold, NOW + 30_000, NOW + 500).expect("a switch in flight");
    assert_eq!(n.generation, hold.generation + 1);
    let h = n.hold_in_flight().expect("still in flight");
    assert!(h.promoting);
    assert_eq!((h.id, h.deadline_unix_ms), (hold.generation, NOW + 30_000));
    assert_eq!(n.weights, hold.weights, "nothing flips yet");
    assert!(n.last_change.is_none(), "no event: nobody decided anything");
    #[cfg(feature = "fleet")]
    assert!(
        !crate::control::leader::needs_leader(&n),
        "the coordinator's, not the leader's"
    );
    let earlier = promoting(&hold, old - 1, NOW + 500).unwrap();
    assert_eq!(
        earlier.hold.unwrap().deadline_unix_ms,
        old,
        "never moves back"
    );
}
