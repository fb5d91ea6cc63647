//! Fleet mode's write hold wired into the controller (SPEC.md section 9,
//! "Fleet-wide write hold"): the barrier's two state machines
//! ([`crate::control::barrier`]) fed by the documents this member applies,
//! its own writes settling, the acknowledgements the store sees and the
//! time, and the actions they return performed.
//!
//! On every member: applying a document whose hold is in flight holds
//! writes (the table carries the hold, [`crate::control::apply`]); once the
//! member's own writes in flight settle it puts its acknowledgement under
//! its lease; from then on it forwards no write until a document carries
//! the outcome. Past the deadline plus grace (`write_fence`) without one,
//! held and new writes are answered 503, never sent to the old pool.
//!
//! The decision: the coordinator (the member that started the hold) polls
//! the gate once every expected member has acknowledged, then commits the
//! flip guarded by every acknowledgement in the same transaction; a
//! missing one at the deadline aborts, naming the member. Past deadline
//! plus grace any member ends the hold itself: a switch by an abort, a
//! rollback by the rollback. Safety lies in the commit's guards (the
//! state's revision and the acks), so two members deciding at once leave
//! one outcome.
//!
//! This module reads no etcd itself: the store ([`StateStore`]) commits,
//! lists the members and the acks, and puts this member's ack.

use crate::control::barrier::{Barrier, MemberAction, MemberBarrier, Step};
use crate::control::controller::{CommandError, Controller};
use crate::control::cutover::{report_progress, settle, Ending, Progress};
use crate::control::document::HoldKind;
use crate::control::store::{Acker, StateStore, StoreError};
use crate::control::transition;
use std::time::Duration;
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// The first pause between two tries of an acknowledgement.
const ACK_RETRY_MIN: Duration = Duration::from_millis(20);
/// The longest pause between two tries.
const ACK_RETRY_MAX: Duration = Duration::from_millis(500);
/// How many steps one drive takes at most (a guard that failed turns a
/// flip into an abort: two steps).
const MAX_STEPS: usize = 4;

/// This member's side of the fleet's write holds.
pub(crate) struct FleetHold {
    me: String,
    grace: Duration,
    member: MemberBarrier,
    /// The decision of the hold in flight, and its kind (a rollback may
    /// take a switch's hold over under the same id).
    barrier: Option<(Barrier, HoldKind)>,
    /// A step a commit's answer calls for, taken at the next drive.
    pending: Option<Step>,
    /// Settling this member's writes, then putting its ack.
    task: Option<AbortHandle>,
    acker: Option<Acker>,
}

impl Drop for FleetHold {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl FleetHold {
    /// Some for a store shared by a fleet (it has a member id and a grace).
    pub(crate) fn for_store(store: &dyn StateStore) -> Option<FleetHold> {
        let me = store.member_id()?.to_string();
        let grace = store.hold_grace()?;
        Some(FleetHold {
            me,
            grace,
            member: MemberBarrier::new(grace.as_millis() as u64),
            barrier: None,
            pending: None,
            task: None,
            acker: store.acker(),
        })
    }

    fn grace_ms(&self) -> u64 {
        self.grace.as_millis() as u64
    }
}

/// A unix-ms instant as a tokio instant (now when it has passed).
fn instant_at(unix_ms: u64) -> Instant {
    let wait = unix_ms.saturating_sub(crate::clock::unix_ms());
    Instant::now() + Duration::from_millis(wait.min(24 * 3600 * 1000))
}

/// The first step that is not a wait.
fn first(a: Step, b: Step) -> Step {
    if a == Step::Wait {
        b
    } else {
        a
    }
}

impl Controller {
    /// Whether this member started the hold in flight (fleet mode).
    pub(crate) fn coordinates_hold(&self) -> bool {
        let me = self.store.member_id();
        self.doc
            .hold_in_flight()
            .is_some_and(|h| h.coordinator.is_some() && h.coordinator.as_deref() == me)
    }

    /// A document was put in force: hold, or release, as its hold says;
    /// keep the barrier of the hold in flight.
    pub(crate) fn fleet_on_doc(&mut self) {
        let Some(fh) = self.fleet_hold.as_mut() else {
            return;
        };
        let hold = self.doc.hold.clone();
        match fh.member.on_doc(hold.as_ref()) {
            MemberAction::HoldWrites { hold_id } => {
                if let Some(t) = fh.task.take() {
                    t.abort();
                }
                let deadline = hold.as_ref().map_or(0, |h| h.deadline_unix_ms);
                let (tx, writes) = (self.progress_tx.clone(), self.shared.writes.clone());
                let until = instant_at(deadline);
                fh.task = Some(
                    tokio::spawn(async move {
                        let settled = settle(writes, until).await;
                        report_progress(
                            &tx,
                            Progress::Settled {
                                id: hold_id,
                                settled,
                            },
                        );
                    })
                    .abort_handle(),
                );
            }
            MemberAction::Release { hold_id, outcome } => {
                tracing::debug!(hold_id, ?outcome, "the fleet's hold ended");
                if let Some(t) = fh.task.take() {
                    t.abort();
                }
            }
            MemberAction::Nothing
            | MemberAction::PutAck { .. }
            | MemberAction::RejectHeld { .. } => {}
        }
        match hold.as_ref().filter(|h| h.in_flight()) {
            Some(h) => {
                let current = fh.barrier.as_ref().map(|(b, kind)| (b.id(), *kind));
                if current != Some((h.id, h.kind)) {
                    let b = Barrier::new(h, &fh.me, fh.grace_ms());
                    fh.barrier = Some((b, h.kind));
                    fh.pending = None;
                } else if let Some((b, _)) = fh.barrier.as_mut() {
                    b.refresh(h);
                }
            }
            None => {
                fh.barrier = None;
                fh.pending = None;
            }
        }
    }

    /// When the loop must look at the hold again: its deadline, then the
    /// deadline plus grace (fleet mode, a hold in flight).
    pub(crate) fn fleet_hold_wake(&self) -> Option<Instant> {
        let fh = self.fleet_hold.as_ref()?;
        let h = self.doc.hold_in_flight()?;
        if fh.pending.is_some() {
            return Some(Instant::now());
        }
        let now = crate::clock::unix_ms();
        let grace_end = h.deadline_unix_ms.saturating_add(fh.grace_ms());
        [h.deadline_unix_ms, grace_end]
            .into_iter()
            .find(|t| *t > now)
            .map(instant_at)
    }

    /// A hold's task reported (fleet mode): this member's writes settled,
    /// or the coordinator's gate answered.
    pub(crate) async fn fleet_progress(&mut self, p: Progress) {
        let Some(fh) = self.fleet_hold.as_mut() else {
            return;
        };
        match p {
            Progress::Settled { id, settled } => {
                fh.task = None;
                if let Some(c) = self.cutover.as_mut().filter(|c| c.id == id) {
                    c.settled = settled;
                    c.figures.settle_ms = c.started.elapsed().as_millis() as u64;
                    if !settled {
                        c.figures.timed_out = Some("writes in flight");
                    }
                }
                if !settled {
                    tracing::warn!(id, "own writes did not settle before the deadline: no ack");
                    return;
                }
                if let MemberAction::PutAck { hold_id } = fh.member.on_settled(id) {
                    self.spawn_ack(hold_id);
                }
            }
            Progress::Gate { id, outcome } => {
                if self.cutover.as_ref().is_some_and(|c| c.id == id) {
                    self.on_gate_outcome(*outcome).await;
                }
            }
            Progress::GateEvent { id, event } => {
                if self.cutover.as_ref().is_some_and(|c| c.id == id) {
                    self.on_gate_event(event).await;
                }
            }
        }
    }

    /// The coordinator's gate ended as `ending` would have it (a single
    /// proxy's ending): the barrier commits it, guarded by the acks.
    pub(crate) fn fleet_gate_answered(&mut self, ending: Ending) {
        let passed = matches!(ending, Ending::Flip);
        let Some(c) = self.cutover.as_mut() else {
            return;
        };
        let id = c.id;
        if let Ending::Abort(reason) = ending {
            c.gate_failure = Some(reason);
        }
        if let Some(fh) = self.fleet_hold.as_mut() {
            if let Some((b, _)) = fh.barrier.as_mut().filter(|(b, _)| b.id() == id) {
                fh.pending = Some(b.on_gate(passed));
            }
        }
    }

    /// Put this member's ack of `hold_id`, retrying (bounded by the hold's
    /// deadline plus grace) while etcd does not take it.
    fn spawn_ack(&mut self, hold_id: u64) {
        let Some(fh) = self.fleet_hold.as_mut() else {
            return;
        };
        let Some(acker) = fh.acker.clone() else {
            return;
        };
        let deadline = self.doc.hold_in_flight().map_or(0, |h| h.deadline_unix_ms);
        let until = instant_at(deadline.saturating_add(fh.grace_ms()));
        fh.task = Some(
            tokio::spawn(async move {
                let mut pause = ACK_RETRY_MIN;
                loop {
                    match acker(hold_id).await {
                        Ok(()) => return,
                        Err(e) if Instant::now() + pause >= until => {
                            tracing::error!(hold_id, error = %e, "the hold's ack was not put");
                            return;
                        }
                        Err(e) => tracing::warn!(hold_id, error = %e, "ack not put; trying again"),
                    }
                    // A back-off between tries of a put etcd refused.
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(ACK_RETRY_MAX);
                }
            })
            .abort_handle(),
        );
    }

    /// A commit guarded by the acks found `members`' missing.
    pub(crate) fn fleet_acks_missing(&mut self, members: &[String]) {
        let Some(fh) = self.fleet_hold.as_mut() else {
            return;
        };
        tracing::warn!(?members, "an acknowledgement vanished before the flip");
        if let Some((b, _)) = fh.barrier.as_mut() {
            fh.pending = Some(b.on_ack_guard_failed(members));
        }
    }

    /// Feed the barrier what changed (acks, members, the time) and take
    /// the steps it calls for. Run after every turn of the loop.
    pub(crate) async fn drive_fleet_hold(&mut self) {
        let Some(fh) = self.fleet_hold.as_mut() else {
            return;
        };
        if fh.barrier.is_none() && fh.member.hold_id().is_none() {
            return;
        }
        let now = crate::clock::unix_ms();
        for _ in 0..MAX_STEPS {
            let step = self.next_fleet_step(now);
            if step == Step::Wait {
                break;
            }
            self.take_fleet_step(step).await;
        }
        // After the steps: an abort this member just committed releases
        // the held writes to the old pool instead of refusing them.
        let Some(fh) = self.fleet_hold.as_mut() else {
            return;
        };
        if let MemberAction::RejectHeld { hold_id } = fh.member.on_tick(now) {
            tracing::warn!(
                hold_id,
                "no outcome of the fleet's hold past its deadline: held writes get 503"
            );
            if let Some(held) = self.held.as_ref().filter(|h| h.id == hold_id) {
                held.hold.reject();
            }
        }
    }

    fn next_fleet_step(&mut self, now: u64) -> Step {
        let Some(h) = self.doc.hold_in_flight() else {
            return Step::Wait;
        };
        let Some(fh) = self.fleet_hold.as_mut() else {
            return Step::Wait;
        };
        let Some((b, _)) = fh.barrier.as_mut().filter(|(b, _)| b.id() == h.id) else {
            return Step::Wait;
        };
        if let Some(step) = fh.pending.take() {
            return step;
        }
        // Promotion began: the switch completes whatever the time; the
        // gate's end decides (pending), never the deadline.
        if self.cutover.as_ref().is_some_and(|c| c.promoting) {
            return Step::Wait;
        }
        let acks = self.store.hold_acks(h.id);
        let members = self.store.hold_members();
        let mut step = Step::Wait;
        for m in &h.expected {
            if acks.contains(m) {
                step = first(step, b.on_ack(m, h.id));
            } else {
                b.on_ack_deleted(m);
            }
            if !members.contains(m) {
                step = first(step, b.on_member_left(m));
            }
        }
        first(step, b.on_tick(now))
    }

    async fn take_fleet_step(&mut self, step: Step) {
        let Some(h) = self.doc.hold_in_flight().cloned() else {
            return;
        };
        let mine = self.cutover.as_ref().is_some_and(|c| c.id == h.id);
        match step {
            Step::Wait => {}
            Step::PollGate => {
                if !(mine && self.spawn_gate()) {
                    self.fleet_gate_passed(h.id);
                }
            }
            Step::Flip { acks } if mine => {
                if let Some(c) = self.cutover.as_mut() {
                    c.acks = Some(acks);
                }
                let ending = match h.kind {
                    HoldKind::Switch => Ending::Flip,
                    HoldKind::Rollback => Ending::Rollback,
                };
                self.end_hold(ending).await;
            }
            Step::Abort { missing } if mine => {
                let reason = self.abort_reason(&missing);
                if let Some(c) = self.cutover.as_mut() {
                    c.missing = missing;
                }
                self.end_hold(Ending::Abort(reason)).await;
            }
            // Past deadline plus grace, for a member that is gone (or a
            // coordinator restarted): any member ends it.
            Step::Flip { acks } => {
                let now = crate::clock::unix_ms();
                let next = match h.kind {
                    HoldKind::Switch => Ok(transition::flip(
                        &self.doc,
                        serde_json::Value::Null,
                        &self.shared.config.load_full(),
                        now,
                    )),
                    HoldKind::Rollback => {
                        transition::rollback(&self.doc, h.actor, &h.reason, None, now)
                    }
                };
                self.commit_for_another(next, Some(acks)).await;
            }
            Step::Abort { missing } => {
                let reason = format!(
                    "{} (ended by {} after the deadline)",
                    self.abort_reason(&missing),
                    self.store.member_id().unwrap_or("another member")
                );
                let now = crate::clock::unix_ms();
                let next = transition::abort(&self.doc, &reason, serde_json::Value::Null, now);
                self.commit_for_another(Ok(next), None).await;
            }
        }
    }

    /// No gate to poll (or not this member's to poll): it passed.
    fn fleet_gate_passed(&mut self, id: u64) {
        if let Some(fh) = self.fleet_hold.as_mut() {
            if let Some((b, _)) = fh.barrier.as_mut().filter(|(b, _)| b.id() == id) {
                fh.pending = Some(b.on_gate(true));
            }
        }
    }

    fn abort_reason(&self, missing: &[String]) -> String {
        if missing.is_empty() {
            let failure = self.cutover.as_ref().and_then(|c| c.gate_failure.clone());
            return failure.unwrap_or_else(|| self.timed_out_reason("gate"));
        }
        let max_hold = self.shared.config.load().cutover.max_hold;
        format!(
            "no acknowledgement from {} within max_hold {}",
            missing.join(", "),
            humantime::format_duration(max_hold)
        )
    }

    /// Commit the end of a hold this member does not drive.
    async fn commit_for_another(
        &mut self,
        next: Result<crate::control::StateDoc, CommandError>,
        acks: Option<Vec<String>>,
    ) {
        let Some(id) = self.doc.hold_in_flight().map(|h| h.id) else {
            return;
        };
        let committed = match next {
            Ok(next) => {
                self.commit_with(next, acks.as_deref().map(|a| (id, a)))
                    .await
            }
            Err(e) => Err(e),
        };
        match committed {
            Ok(_) => {
                tracing::info!(id, "ended the fleet's hold for its coordinator");
                self.follow_remote_hold();
            }
            Err(CommandError::Store(StoreError::AcksMissing { members, .. })) => {
                self.fleet_acks_missing(&members)
            }
            Err(e) => {
                tracing::info!(id, error = %e, "the end of the fleet's hold was not stored here");
                self.follow_remote_hold();
                if let Some((b, _)) = self.fleet_hold.as_mut().and_then(|f| f.barrier.as_mut()) {
                    b.on_state_conflict();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
