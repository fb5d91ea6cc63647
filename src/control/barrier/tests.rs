use super::*;
use crate::config::PoolName;
use crate::control::Actor;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

const GRACE: u64 = 1_000;

fn hold(kind: HoldKind, expected: &[&str]) -> HoldDoc {
    HoldDoc {
        id: 9,
        kind,
        from: PoolName::Blue,
        to: PoolName::Green,
        actor: Actor::Admin,
        reason: "holding writes".into(),
        coordinator: Some("a".into()),
        started_unix_ms: 0,
        deadline_unix_ms: 2_000,
        expected: expected.iter().map(|s| (*s).to_owned()).collect(),
        promoting: false,
        outcome: None,
    }
}

fn names(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn a_member_holds_acks_after_settling_and_releases_only_on_the_outcome() {
    let doc = hold(HoldKind::Switch, &["a", "b"]);
    let mut m = MemberBarrier::new(GRACE);
    assert_eq!(m.write_gate(), WriteGate::Forward);
    assert_eq!(
        m.on_doc(Some(&doc)),
        MemberAction::HoldWrites { hold_id: 9 }
    );
    assert_eq!(
        m.on_doc(Some(&doc)),
        MemberAction::Nothing,
        "same hold twice"
    );
    assert_eq!(m.write_gate(), WriteGate::Hold);
    assert_eq!(
        m.on_settled(8),
        MemberAction::Nothing,
        "another hold's settling"
    );
    assert_eq!(m.on_settled(9), MemberAction::PutAck { hold_id: 9 });
    assert_eq!(
        m.write_gate(),
        WriteGate::Hold,
        "acked: still forwards nothing"
    );
    assert_eq!(m.on_tick(2_999), MemberAction::Nothing);
    let mut done = doc.clone();
    done.outcome = Some(HoldOutcome::Completed);
    assert_eq!(
        m.on_doc(Some(&done)),
        MemberAction::Release {
            hold_id: 9,
            outcome: HoldOutcome::Completed
        }
    );
    assert_eq!(m.write_gate(), WriteGate::Forward);
}

#[test]
fn a_member_that_never_learns_the_outcome_answers_503_never_the_old_pool() {
    let doc = hold(HoldKind::Switch, &["a", "b"]);
    let mut m = MemberBarrier::new(GRACE);
    m.on_doc(Some(&doc));
    m.on_settled(9);
    assert_eq!(m.on_tick(3_000), MemberAction::RejectHeld { hold_id: 9 });
    assert_eq!(m.write_gate(), WriteGate::Reject);
    assert_eq!(m.on_tick(10_000), MemberAction::Nothing, "rejects once");
    // Only a document with the outcome ends it.
    let mut done = doc;
    done.outcome = Some(HoldOutcome::Aborted);
    assert_eq!(
        m.on_doc(Some(&done)),
        MemberAction::Release {
            hold_id: 9,
            outcome: HoldOutcome::Aborted
        }
    );
}

#[test]
fn the_coordinator_polls_the_gate_once_with_every_ack_then_flips_guarded_by_all() {
    let doc = hold(HoldKind::Switch, &["a", "b", "c"]);
    let mut b = Barrier::new(&doc, "a", GRACE);
    assert_eq!(b.on_ack("a", 9), Step::Wait);
    assert_eq!(b.on_ack("b", 8), Step::Wait, "an ack of another hold");
    assert_eq!(b.on_ack("b", 9), Step::Wait);
    assert_eq!(b.missing(), names(&["c"]));
    assert_eq!(b.on_ack("c", 9), Step::PollGate);
    assert_eq!(b.on_tick(1_000), Step::Wait, "gate polling");
    assert_eq!(
        b.on_gate(true),
        Step::Flip {
            acks: names(&["a", "b", "c"])
        }
    );
    assert_eq!(b.on_tick(5_000), Step::Wait, "decided once");
}

#[test]
fn a_missing_ack_at_the_deadline_aborts_naming_it_and_a_failed_guard_names_its_member() {
    let doc = hold(HoldKind::Switch, &["a", "b", "c"]);
    let mut b = Barrier::new(&doc, "a", GRACE);
    b.on_ack("a", 9);
    b.on_ack("c", 9);
    assert_eq!(b.on_tick(1_999), Step::Wait);
    assert_eq!(
        b.on_tick(2_000),
        Step::Abort {
            missing: names(&["b"])
        }
    );
    // A gate answer nobody asked for is ignored.
    let mut b = Barrier::new(&doc, "a", GRACE);
    assert_eq!(b.on_gate(true), Step::Wait);
    // A flip whose ack guard fails (c's lease expired in between): 409 naming c.
    let mut b = Barrier::new(&doc, "a", GRACE);
    b.on_ack("a", 9);
    b.on_ack("b", 9);
    assert_eq!(b.on_ack("c", 9), Step::PollGate);
    assert!(matches!(b.on_gate(true), Step::Flip { .. }));
    assert_eq!(
        b.on_ack_guard_failed(&names(&["c"])),
        Step::Abort {
            missing: names(&["c"])
        }
    );
    // A gate that says no aborts with nobody missing.
    let mut b = Barrier::new(&doc, "a", GRACE);
    b.on_ack("a", 9);
    b.on_ack("b", 9);
    b.on_ack("c", 9);
    assert_eq!(b.on_gate(false), Step::Abort { missing: vec![] });
}

#[test]
fn other_members_abort_a_dead_coordinators_switch_only_after_deadline_and_grace() {
    let doc = hold(HoldKind::Switch, &["a", "b"]);
    let mut b = Barrier::new(&doc, "b", GRACE);
    assert_eq!(b.on_ack("b", 9), Step::Wait);
    assert_eq!(
        b.on_ack("a", 9),
        Step::Wait,
        "only the coordinator polls the gate"
    );
    assert_eq!(b.on_tick(2_500), Step::Wait);
    assert_eq!(b.on_tick(3_000), Step::Abort { missing: vec![] });
}

#[test]
fn a_rollback_has_no_gate_never_aborts_and_waits_for_each_ack_or_departure() {
    let doc = hold(HoldKind::Rollback, &["a", "b", "c"]);
    let mut b = Barrier::new(&doc, "a", GRACE);
    b.on_ack("a", 9);
    b.on_ack("b", 9);
    assert_eq!(b.on_tick(50_000), Step::Wait, "never aborts");
    assert_eq!(
        b.on_member_left("c"),
        Step::Flip {
            acks: names(&["a", "b"])
        }
    );
    // Its guard failing for a member that left: retried without it.
    let mut b = Barrier::new(&doc, "a", GRACE);
    for m in ["a", "b", "c"] {
        b.on_ack(m, 9);
    }
    b.on_member_left("b");
    assert_eq!(
        b.on_ack_guard_failed(&names(&["b"])),
        Step::Flip {
            acks: names(&["a", "c"])
        }
    );
    // Another member completes it once the coordinator is past grace.
    let mut b = Barrier::new(&doc, "b", GRACE);
    for m in ["a", "b", "c"] {
        b.on_ack(m, 9);
    }
    assert_eq!(b.on_tick(2_999), Step::Wait);
    assert!(matches!(b.on_tick(3_000), Step::Flip { .. }));
}

/// A tiny in-memory store with the etcd layer's guards: a revision, the
/// hold's outcome, and ack keys that vanish with a member's lease.
struct Store {
    revision: u64,
    outcome: Option<HoldOutcome>,
    acks: BTreeMap<String, u64>,
}

impl Store {
    /// `Err(missing)` when an ack guard fails; `Ok(false)` on a stale base.
    fn commit(
        &mut self,
        base: u64,
        outcome: HoldOutcome,
        acks: &[String],
        hold_id: u64,
    ) -> Result<bool, Vec<String>> {
        if base != self.revision {
            return Ok(false);
        }
        let missing: Vec<String> = acks
            .iter()
            .filter(|m| self.acks.get(*m) != Some(&hold_id))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(missing);
        }
        self.revision += 1;
        self.outcome = Some(outcome);
        Ok(true)
    }
}

/// Three members under paused time: each settles its writes after its own
/// delay (b never, as if stopped), acks, and the coordinator decides. With
/// everyone in, the flip lands with all three acks; with b stopped, the
/// abort lands at the deadline naming b, and nobody flipped.
#[tokio::test(start_paused = true)]
async fn three_members_reach_one_outcome_on_an_in_memory_store() {
    for stopped in [None, Some("b")] {
        let doc = hold(HoldKind::Switch, &["a", "b", "c"]);
        let t0 = Instant::now();
        let unix = |now: Instant| (now - t0).as_millis() as u64;
        let mut store = Store {
            revision: 1,
            outcome: None,
            acks: BTreeMap::new(),
        };
        let settle = [("a", 30u64), ("b", 120), ("c", 70)];
        let mut members: Vec<(&str, MemberBarrier, Barrier)> = settle
            .iter()
            .map(|(id, _)| {
                let mut m = MemberBarrier::new(GRACE);
                assert_eq!(
                    m.on_doc(Some(&doc)),
                    MemberAction::HoldWrites { hold_id: 9 }
                );
                (*id, m, Barrier::new(&doc, id, GRACE))
            })
            .collect();
        let mut answer = None;
        let mut gate_asked = [false; 3];
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        while store.outcome.is_none() {
            tick.tick().await;
            let now = unix(Instant::now());
            // Settling and acking.
            for (i, (id, delay)) in settle.iter().enumerate() {
                if stopped == Some(*id) || now < *delay {
                    continue;
                }
                if members[i].1.on_settled(9) == (MemberAction::PutAck { hold_id: 9 }) {
                    store.acks.insert((*id).to_owned(), 9);
                    for (k, (_, _, barrier)) in members.iter_mut().enumerate() {
                        if barrier.on_ack(id, 9) == Step::PollGate {
                            gate_asked[k] = true;
                        }
                    }
                }
            }
            // Every member's decision side, coordinator first.
            for (k, (_, _, barrier)) in members.iter_mut().enumerate() {
                let mut step = barrier.on_tick(now);
                if std::mem::take(&mut gate_asked[k]) {
                    assert_eq!(k, 0, "only the coordinator polls the gate");
                    step = barrier.on_gate(true);
                } else if step == Step::PollGate {
                    step = barrier.on_gate(true);
                }
                match step {
                    Step::Flip { acks } => {
                        match store.commit(1, HoldOutcome::Completed, &acks, 9) {
                            Ok(true) => answer = Some(Ok(now)),
                            Ok(false) => barrier.on_state_conflict(),
                            Err(missing) => {
                                let _ = barrier.on_ack_guard_failed(&missing);
                            }
                        }
                    }
                    Step::Abort { missing } => {
                        if store.commit(1, HoldOutcome::Aborted, &[], 9) == Ok(true) {
                            answer = Some(Err(missing));
                        }
                    }
                    Step::Wait | Step::PollGate => {}
                }
            }
            assert!(Instant::now() - t0 < Duration::from_secs(10), "no outcome");
        }
        // Every member releases to the one outcome.
        let mut done = doc.clone();
        done.outcome = store.outcome;
        for (_, m, _) in &mut members {
            assert_eq!(
                m.on_doc(Some(&done)),
                MemberAction::Release {
                    hold_id: 9,
                    outcome: store.outcome.unwrap()
                }
            );
        }
        match stopped {
            None => {
                let at = answer.unwrap().expect("a flip");
                assert!(
                    (120..200).contains(&at),
                    "flipped at {at} ms, after the last ack"
                );
                assert_eq!(store.outcome, Some(HoldOutcome::Completed));
            }
            Some(id) => {
                assert_eq!(
                    answer.unwrap(),
                    Err(names(&[id])),
                    "409 naming the stopped member"
                );
                assert_eq!(store.outcome, Some(HoldOutcome::Aborted));
                assert!(Instant::now() - t0 >= Duration::from_millis(2_000));
            }
        }
    }
}

/// Promotion began (the coordinator committed it, the deadline moved from
/// 2 000 to 40 000): no member aborts at the old deadline, and past the new
/// one a member that never heard of the outcome completes the switch
/// (guarded by the acks still there) instead of aborting it.
#[test]
fn once_promotion_began_no_member_aborts_and_past_its_deadline_one_flips() {
    let doc = hold(HoldKind::Switch, &["a", "b", "c"]);
    let mut b = Barrier::new(&doc, "b", GRACE);
    b.on_ack("a", 9);
    b.on_ack("b", 9);
    b.on_ack("c", 9);
    let mut promoting = doc.clone();
    promoting.promoting = true;
    promoting.deadline_unix_ms = 40_000;
    b.refresh(&promoting);
    // The same document again, or an older deadline, never moves it back.
    b.refresh(&doc);
    b.on_ack_deleted("c");
    assert_eq!(b.on_tick(3_000), Step::Wait, "old deadline + grace");
    assert_eq!(b.on_tick(40_999), Step::Wait, "new deadline, not its grace");
    assert_eq!(
        b.on_tick(41_000),
        Step::Flip {
            acks: names(&["a", "b"])
        },
        "past the new deadline + grace: flip, even with c's ack gone"
    );
    assert_eq!(b.on_tick(50_000), Step::Wait, "decided once");

    // Not promoting, the same member aborts at the old deadline + grace.
    let mut plain = Barrier::new(&doc, "b", GRACE);
    plain.on_ack("a", 9);
    plain.on_ack("b", 9);
    assert_eq!(
        plain.on_tick(3_000),
        Step::Abort {
            missing: names(&["c"])
        }
    );
}

/// The coordinator, promotion begun: the gate's end flips at once, and a
/// failed ack guard (a member's lease expired meanwhile) flips again with
/// the acks left, never aborts.
#[test]
fn a_promoting_coordinator_flips_when_the_gate_ends_and_never_aborts_on_a_lost_ack() {
    let doc = hold(HoldKind::Switch, &["a", "b", "c"]);
    let mut b = Barrier::new(&doc, "a", GRACE);
    b.on_ack("a", 9);
    b.on_ack("b", 9);
    assert_eq!(b.on_ack("c", 9), Step::PollGate);
    let mut promoting = doc.clone();
    promoting.promoting = true;
    promoting.deadline_unix_ms = 40_000;
    b.refresh(&promoting);
    assert_eq!(
        b.on_tick(5_000),
        Step::Wait,
        "past the old deadline: waits for the gate"
    );
    assert_eq!(
        b.on_gate(true),
        Step::Flip {
            acks: names(&["a", "b", "c"])
        }
    );
    assert_eq!(
        b.on_ack_guard_failed(&names(&["c"])),
        Step::Flip {
            acks: names(&["a", "b"])
        }
    );
}

#[test]
fn a_members_fence_moves_with_the_promotions_deadline() {
    let doc = hold(HoldKind::Switch, &["a", "b"]);
    let mut m = MemberBarrier::new(GRACE);
    m.on_doc(Some(&doc));
    m.on_settled(9);
    let mut promoting = doc.clone();
    promoting.promoting = true;
    promoting.deadline_unix_ms = 40_000;
    assert_eq!(m.on_doc(Some(&promoting)), MemberAction::Nothing);
    assert_eq!(
        m.on_tick(3_000),
        MemberAction::Nothing,
        "old deadline + grace"
    );
    assert_eq!(m.write_gate(), WriteGate::Hold);
    assert_eq!(m.on_tick(41_000), MemberAction::RejectHeld { hold_id: 9 });
}
