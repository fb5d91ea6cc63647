//! Fleet mode's one decision-maker (SPEC.md section 9, "One decision"):
//! every member stands for leader and publishes its cumulative stats each
//! `rollback.interval`; the member the watch shows leading is the only one
//! that runs rollout timers, bake end and automatic rollback, and the store
//! guards each automatic commit with its leader key, so a deposed leader's
//! decision fails in the same transaction (it is dropped and logged).
//!
//! It owns the leader key lookup ([`leading`]), which commits need the
//! guard ([`needs_leader`]), and the member-side stats publishing
//! ([`MemberDuties`], driven by the membership task's tick). It must not
//! decide anything itself: the controller decides, through its store; the
//! arithmetic lives in [`crate::control::fleet_judge`].

use crate::config::PoolName;
use crate::control::controller::Shared;
use crate::control::document::{HoldKind, StateDoc};
use crate::control::events::{Actor, EventKind};
use crate::control::fleet::{LeaderKey, Member};
use crate::control::fleet_judge::Publisher;
use crate::control::store::etcd::FleetLink;
use tokio::time::Instant;

/// This member's leader key while the watch shows it leading.
pub fn leading(link: &FleetLink) -> Option<LeaderKey> {
    link.seen().leader.filter(|l| l.member == link.member_id)
}

/// Whether committing `doc` needs leadership: a change an automatic
/// decision made (a rollout step, the end of a bake, an automatic rollback).
/// Health events (`endpoint_up`, ...) are automatic too but every member
/// records its own: they are not decisions and need no leadership. A
/// change an operator made through any member is theirs, even when it
/// carries an automatic consequence: a switch (or a split of 100 % to the
/// candidate) with no bake time records `bake_completed` by `auto` in the
/// same change, and must not be refused on a member that does not lead.
pub fn needs_leader(doc: &StateDoc) -> bool {
    let by_operator = doc
        .last_change
        .as_ref()
        .is_some_and(|c| c.events.iter().any(|e| e.actor != Actor::Auto));
    let decision_event = !by_operator
        && doc.last_change.as_ref().is_some_and(|c| {
            c.events.iter().any(|e| {
                e.actor == Actor::Auto
                    && matches!(
                        e.kind,
                        EventKind::RolloutStep
                            | EventKind::RolloutCompleted
                            | EventKind::BakeCompleted
                            | EventKind::Rollback
                    )
            })
        });
    // The start of an automatic rollback's write hold.
    let auto_rollback_hold = doc.hold_in_flight().is_some_and(|h| {
        h.kind == HoldKind::Rollback && h.actor == Actor::Auto && h.id == doc.generation
    });
    decision_event || auto_rollback_hold
}

/// What the membership task does for the decision on each of its ticks:
/// stand for leader once in touch, keep `switchyard_fleet_leader` current,
/// publish this member's stats every `rollback.interval`.
#[derive(Debug, Default)]
pub struct MemberDuties {
    campaigned: bool,
    publisher: Option<Publisher>,
    last_published: Option<Instant>,
    /// The stats clock at the previous tick.
    last_tick_ms: Option<u64>,
}

impl MemberDuties {
    pub async fn tick(&mut self, link: &FleetLink, shared: &Shared, member: &Member) {
        link.metrics.leader.set(i64::from(leading(link).is_some()));
        if !link.connected() {
            return;
        }
        if !self.campaigned {
            match member.campaign().await {
                Ok(key) => {
                    tracing::info!(
                        create_revision = key.create_revision,
                        "standing for fleet leader"
                    );
                    self.campaigned = true;
                }
                Err(e) => tracing::debug!(error = %e, "campaign not placed yet"),
            }
        }
        // Follow the generation on every tick, not only when publishing:
        // counting restarts from the previous tick, so at most one tick of
        // traffic from before the change is counted, and none after it lost.
        let generation = shared.table.load().generation;
        let now_ms = crate::clock::now_ms();
        let bucket = shared.runtimes[PoolName::Blue.index()].stats.bucket();
        let bucket = u64::try_from(bucket.as_millis()).unwrap_or(1).max(1);
        // Aligned down: the bucket the change fell in counts whole.
        let from_ms = self.last_tick_ms.replace(now_ms).unwrap_or(now_ms) / bucket * bucket;
        let now_unix = crate::clock::unix_ms();
        let publisher = self
            .publisher
            .get_or_insert_with(|| Publisher::new(generation, now_unix, from_ms));
        if publisher.generation() != generation {
            publisher.restart(generation, now_unix, from_ms);
        }
        let every = shared.config.load().rollback.interval;
        if self.last_published.is_some_and(|at| at.elapsed() < every) {
            return;
        }
        let blue = &shared.runtimes[PoolName::Blue.index()].stats;
        let green = &shared.runtimes[PoolName::Green.index()].stats;
        let report = publisher.tick(blue, green, now_ms, now_unix).clone();
        match member.publish_stats(report.encode()).await {
            Ok(()) => self.last_published = Some(Instant::now()),
            Err(e) => tracing::debug!(error = %e, "stats not published"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::document::Change;
    use crate::control::events::Event;
    use crate::routing::Weights;

    fn changed(events: &[(EventKind, Actor)]) -> StateDoc {
        let mut doc = StateDoc::initial(Weights::all_on(PoolName::Blue), 1);
        let events = events.iter().map(|(k, a)| Event::new(*k, *a)).collect();
        doc.last_change = Some(Change::new(events));
        doc
    }

    #[test]
    fn only_a_change_the_leader_decided_alone_needs_leadership() {
        use Actor::{Admin, Auto};
        use EventKind::{BakeCompleted, Rollback, RolloutStep, SwitchCompleted, SwitchStarted};
        assert!(needs_leader(&changed(&[(RolloutStep, Auto)])));
        assert!(needs_leader(&changed(&[(Rollback, Auto)])));
        assert!(needs_leader(&changed(&[(BakeCompleted, Auto)])));
        // A manual switch with no bake time completes the bake at once.
        let manual = [
            (SwitchStarted, Admin),
            (SwitchCompleted, Admin),
            (BakeCompleted, Auto),
        ];
        assert!(!needs_leader(&changed(&manual)));
        assert!(!needs_leader(&changed(&[(RolloutStep, Admin)])));
        assert!(!needs_leader(&changed(&[(EventKind::EndpointUp, Auto)])));
    }
}
