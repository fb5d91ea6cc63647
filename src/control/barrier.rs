//! The fleet-wide write hold as two pure state machines (SPEC.md section 9,
//! "Fleet-wide write hold"; notes/fleet-design.md section 5).
//!
//! - [`MemberBarrier`], on every member: applying a document whose hold is
//!   in flight holds writes locally; once its own writes in flight settle it
//!   acknowledges (`Member::ack(hold_id)`); from the ack on it forwards no
//!   write until a document carries the hold's outcome. If the hold outlives
//!   its deadline plus grace with no outcome seen, held and new writes are
//!   answered 503 with Retry-After, **never** released to the old pool (the
//!   single proxy's safety timeout releases them to the current table; in
//!   fleet mode that table may be the side another member already left).
//! - [`Barrier`], the decision: with every expected member's ack in, the
//!   coordinator polls the gate once and commits the flip guarded by every
//!   ack (`acks: Some(..)`); a missing ack at the deadline aborts (409 naming
//!   the members); a flip whose ack guard fails aborts naming that member;
//!   if the coordinator is gone, any member aborts after deadline + grace.
//!   A rollback's hold has no gate and never aborts: it completes when each
//!   expected member has acked or left the fleet (its lease expired), and
//!   any member completes it after deadline + grace.
//!
//! Neither reads a clock or talks to etcd: the controller feeds documents,
//! acks, departures and the time (the document's wall-clock milliseconds,
//! the only clock members share) in, and performs the returned actions.
//! Safety lies in the commit's guards (state revision and acks); these
//! machines only decide when to try.

use super::document::{HoldDoc, HoldKind, HoldOutcome};
use std::collections::BTreeSet;

/// What a member does with an unsafe request right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteGate {
    /// No hold: forward it (subject to the write fence).
    Forward,
    /// A hold in flight: keep it until the outcome.
    Hold,
    /// The hold outlived deadline + grace with no outcome: 503 + Retry-After.
    Reject,
}

/// What the member's controller must do after an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberAction {
    Nothing,
    /// Publish the hold locally and start waiting for writes to settle.
    HoldWrites {
        hold_id: u64,
    },
    /// Own writes settled: put the ack on the lease.
    PutAck {
        hold_id: u64,
    },
    /// Deadline + grace passed without an outcome: answer held writes 503.
    RejectHeld {
        hold_id: u64,
    },
    /// The outcome arrived: release held writes to the table the outcome's
    /// document installs (new pool on `Completed`, old on `Aborted`).
    Release {
        hold_id: u64,
        outcome: HoldOutcome,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Local {
    Idle,
    Settling { id: u64, deadline: u64 },
    Acked { id: u64, deadline: u64 },
    Fenced { id: u64 },
}

/// One member's side of the barrier.
#[derive(Debug, Clone)]
pub struct MemberBarrier {
    grace_ms: u64,
    state: Local,
}

impl MemberBarrier {
    /// `grace`: how long past the deadline a member waits for the outcome
    /// before it answers held writes 503 (and may abort a switch itself).
    pub fn new(grace_ms: u64) -> Self {
        MemberBarrier {
            grace_ms,
            state: Local::Idle,
        }
    }

    /// How an unsafe request is treated now.
    pub fn write_gate(&self) -> WriteGate {
        match self.state {
            Local::Idle => WriteGate::Forward,
            Local::Settling { .. } | Local::Acked { .. } => WriteGate::Hold,
            Local::Fenced { .. } => WriteGate::Reject,
        }
    }

    /// The id of the hold this member is in, if any.
    pub fn hold_id(&self) -> Option<u64> {
        match self.state {
            Local::Idle => None,
            Local::Settling { id, .. } | Local::Acked { id, .. } | Local::Fenced { id } => Some(id),
        }
    }

    /// A document was applied; `hold` is its hold (in flight or ended).
    pub fn on_doc(&mut self, hold: Option<&HoldDoc>) -> MemberAction {
        let current = self.hold_id();
        match hold {
            Some(h) if h.in_flight() => {
                if current == Some(h.id) {
                    // The same hold, its deadline moved (promotion began):
                    // wait for its outcome that much longer.
                    if let Local::Settling { deadline, .. } | Local::Acked { deadline, .. } =
                        &mut self.state
                    {
                        *deadline = (*deadline).max(h.deadline_unix_ms);
                    }
                    return MemberAction::Nothing;
                }
                // A new hold (a rollback taking a switch's over included):
                // hold, settle and ack it afresh.
                self.state = Local::Settling {
                    id: h.id,
                    deadline: h.deadline_unix_ms,
                };
                MemberAction::HoldWrites { hold_id: h.id }
            }
            Some(h) => match (current, h.outcome) {
                (Some(id), Some(outcome)) if id == h.id => {
                    self.state = Local::Idle;
                    MemberAction::Release {
                        hold_id: id,
                        outcome,
                    }
                }
                // An outcome for another hold: the document installs the
                // table the fleet decided on; ours ended with it.
                (Some(id), _) => {
                    self.state = Local::Idle;
                    MemberAction::Release {
                        hold_id: id,
                        outcome: HoldOutcome::Aborted,
                    }
                }
                (None, _) => MemberAction::Nothing,
            },
            None => match current {
                Some(id) => {
                    self.state = Local::Idle;
                    MemberAction::Release {
                        hold_id: id,
                        outcome: HoldOutcome::Aborted,
                    }
                }
                None => MemberAction::Nothing,
            },
        }
    }

    /// This member's own writes in flight settled for `hold_id`.
    pub fn on_settled(&mut self, hold_id: u64) -> MemberAction {
        match self.state {
            Local::Settling { id, deadline } if id == hold_id => {
                self.state = Local::Acked { id, deadline };
                MemberAction::PutAck { hold_id }
            }
            _ => MemberAction::Nothing,
        }
    }

    /// The time passed (`now_unix_ms`): past deadline + grace without an
    /// outcome, held writes get 503.
    pub fn on_tick(&mut self, now_unix_ms: u64) -> MemberAction {
        match self.state {
            Local::Settling { id, deadline } | Local::Acked { id, deadline }
                if now_unix_ms >= deadline.saturating_add(self.grace_ms) =>
            {
                self.state = Local::Fenced { id };
                MemberAction::RejectHeld { hold_id: id }
            }
            _ => MemberAction::Nothing,
        }
    }
}

/// What the deciding side should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Wait,
    /// Every ack is in: poll the gate (once).
    PollGate,
    /// Commit the flip (switch) or the rollback, guarded by these acks.
    Flip {
        acks: Vec<String>,
    },
    /// Commit the abort; 409 naming `missing` (empty: the gate said no).
    Abort {
        missing: Vec<String>,
    },
}

/// The decision of one hold, on any member: the coordinator drives it,
/// the others step in only past deadline + grace.
#[derive(Debug, Clone)]
pub struct Barrier {
    id: u64,
    kind: HoldKind,
    coordinator: bool,
    expected: BTreeSet<String>,
    acked: BTreeSet<String>,
    left: BTreeSet<String>,
    deadline_unix_ms: u64,
    grace_ms: u64,
    /// Promotion of the replica began: the switch completes.
    promoting: bool,
    gate_asked: bool,
    gate_passed: bool,
    decided: bool,
}

impl Barrier {
    /// The barrier of `hold` as seen by member `me`.
    pub fn new(hold: &HoldDoc, me: &str, grace_ms: u64) -> Self {
        Barrier {
            id: hold.id,
            kind: hold.kind,
            coordinator: hold.coordinator.as_deref() == Some(me),
            expected: hold.expected.iter().cloned().collect(),
            acked: BTreeSet::new(),
            left: BTreeSet::new(),
            deadline_unix_ms: hold.deadline_unix_ms,
            grace_ms,
            promoting: hold.promoting,
            gate_asked: false,
            gate_passed: false,
            decided: false,
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// A newer document of the same hold: promotion began and its deadline
    /// moved (it never moves back).
    pub fn refresh(&mut self, hold: &HoldDoc) {
        if hold.id == self.id {
            self.deadline_unix_ms = self.deadline_unix_ms.max(hold.deadline_unix_ms);
            self.promoting |= hold.promoting;
        }
    }

    /// Expected members whose ack is not in (and, for a rollback, that
    /// have not left the fleet).
    pub fn missing(&self) -> Vec<String> {
        self.expected
            .iter()
            .filter(|m| !self.acked.contains(*m))
            .filter(|m| self.kind == HoldKind::Switch || !self.left.contains(*m))
            .cloned()
            .collect()
    }

    /// `member` acked hold `hold_id`.
    pub fn on_ack(&mut self, member: &str, hold_id: u64) -> Step {
        if hold_id == self.id && self.expected.contains(member) {
            self.acked.insert(member.to_owned());
        }
        self.next(None)
    }

    /// `member`'s ack key is gone (its lease expired).
    pub fn on_ack_deleted(&mut self, member: &str) {
        self.acked.remove(member);
    }

    /// `member` left the fleet (its lease expired).
    pub fn on_member_left(&mut self, member: &str) -> Step {
        self.acked.remove(member);
        self.left.insert(member.to_owned());
        self.next(None)
    }

    /// The gate answered (coordinator only).
    pub fn on_gate(&mut self, passed: bool) -> Step {
        if !self.gate_asked || self.decided {
            return Step::Wait;
        }
        if !passed {
            self.decided = true;
            return Step::Abort {
                missing: Vec::new(),
            };
        }
        self.gate_passed = true;
        self.next(None)
    }

    /// The time passed.
    pub fn on_tick(&mut self, now_unix_ms: u64) -> Step {
        self.next(Some(now_unix_ms))
    }

    /// The flip's ack guard failed for these members (`Guard::Ack(m)`): a
    /// switch aborts naming them; a rollback drops members that left and
    /// tries again once the rest acked.
    pub fn on_ack_guard_failed(&mut self, members: &[String]) -> Step {
        for m in members {
            self.acked.remove(m);
        }
        match self.kind {
            // Promotion began: flip guarded by the acks still there.
            HoldKind::Switch if self.promoting => {
                self.decided = true;
                Step::Flip {
                    acks: self.acked_expected(),
                }
            }
            HoldKind::Switch => {
                self.decided = true;
                Step::Abort {
                    missing: members.to_vec(),
                }
            }
            HoldKind::Rollback => {
                self.decided = false;
                self.next(None)
            }
        }
    }

    /// The commit lost to another document (state guard): the decision is
    /// someone else's, or must be retaken from the next document.
    pub fn on_state_conflict(&mut self) {
        self.decided = false;
    }

    fn next(&mut self, now: Option<u64>) -> Step {
        if self.decided {
            return Step::Wait;
        }
        let missing = self.missing();
        let past_deadline = now.is_some_and(|t| t >= self.deadline_unix_ms);
        let past_grace =
            now.is_some_and(|t| t >= self.deadline_unix_ms.saturating_add(self.grace_ms));
        let in_charge = self.coordinator || past_grace;
        match self.kind {
            // Promotion began: the switch completes. The coordinator flips
            // when the gate ends; past grace (it is gone) any member does.
            HoldKind::Switch if self.promoting => {
                let gate_ended = self.coordinator && self.gate_passed;
                if !(gate_ended || past_grace) {
                    return Step::Wait;
                }
                self.decided = true;
                Step::Flip {
                    acks: self.acked_expected(),
                }
            }
            HoldKind::Switch => {
                if !missing.is_empty() || (self.gate_asked && !self.gate_passed) {
                    // A gate still polling past the deadline also aborts.
                    if (self.coordinator && past_deadline) || past_grace {
                        self.decided = true;
                        return Step::Abort { missing };
                    }
                    return Step::Wait;
                }
                if !self.coordinator {
                    // Only the coordinator flips; past grace the others
                    // abort (the gate was never polled by them).
                    if past_grace {
                        self.decided = true;
                        return Step::Abort { missing };
                    }
                    return Step::Wait;
                }
                if past_deadline {
                    self.decided = true;
                    return Step::Abort { missing };
                }
                if !self.gate_asked {
                    self.gate_asked = true;
                    return Step::PollGate;
                }
                self.decided = true;
                Step::Flip {
                    acks: self.acked_expected(),
                }
            }
            HoldKind::Rollback => {
                if !missing.is_empty() || !in_charge {
                    return Step::Wait;
                }
                self.decided = true;
                Step::Flip {
                    acks: self.acked_expected(),
                }
            }
        }
    }

    fn acked_expected(&self) -> Vec<String> {
        self.expected
            .iter()
            .filter(|m| self.acked.contains(*m))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests;
