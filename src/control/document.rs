//! The state document: all deployment state as one serde value.
//!
//! Generation, live pool, weights, rollout, bake, rollback lock, the write
//! hold of a switch in flight, when the weights last changed and the change
//! that produced the document. The controller computes the next document
//! from the current one ([`crate::control::transition`]), commits it to the
//! state store ([`crate::control::store`]) and applies what was committed;
//! a document committed elsewhere (fleet mode) is applied the same way.
//!
//! This module owns the shape and what can be derived from it alone (the
//! [`Phase`]); it reads no clock and touches no table.

use crate::config::PoolName;
use crate::control::events::{Actor, Event};
use crate::control::rollout::Rollout;
use crate::routing::Weights;
use serde::{Deserialize, Serialize};

/// The version this build writes. Version 1 (no hold, no change record)
/// still loads: the fields it lacks take their defaults.
pub const DOC_VERSION: u32 = 2;

/// The versions this build reads.
pub const READABLE_VERSIONS: [u32; 2] = [1, DOC_VERSION];

/// The deployment phase (SPEC.md section 4), derived by [`StateDoc::phase`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Stable,
    Rolling,
    Paused,
    Switching,
    Baking,
    /// A manual split (`PUT /weights`) with no rollout: both pools take
    /// traffic and nothing moves on its own. Not `paused`, which says a
    /// rollout waits to be resumed.
    Split,
}

/// Why automatic (or manual) rollback locked a pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackLock {
    pub pool: PoolName,
    pub since: String,
    pub reason: String,
}

/// A completed move kept under watch until `until_unix_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bake {
    pub pool: PoolName,
    pub until_unix_ms: u64,
}

/// What a write hold is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldKind {
    /// A switch: settle the writes in flight, pass the gate, flip; aborts at
    /// the deadline.
    Switch,
    /// A rollback: settle the writes in flight, then roll back; never aborts
    /// (at the deadline it rolls back all the same).
    Rollback,
}

/// How a hold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldOutcome {
    Completed,
    Aborted,
}

/// The write hold of a switch or rollback (SPEC.md section 5). While its
/// `outcome` is None the phase is `switching` and unsafe requests wait; the
/// document that ends it carries the outcome, so every receiver learns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldDoc {
    /// Unique in a document's history: the generation that started it.
    pub id: u64,
    pub kind: HoldKind,
    /// The pool giving up the traffic and the one taking it.
    pub from: PoolName,
    pub to: PoolName,
    pub actor: Actor,
    /// Why: for a rollback the reason it records when it completes.
    pub reason: String,
    /// The member that drives it (fleet mode); None for a single proxy.
    #[serde(default)]
    pub coordinator: Option<String>,
    pub started_unix_ms: u64,
    /// When a switch aborts (a rollback goes ahead).
    pub deadline_unix_ms: u64,
    /// The members that must settle their writes (fleet mode); empty for a
    /// single proxy.
    #[serde(default)]
    pub expected: Vec<String>,
    /// The coordinator's gate began promoting the replica (fleet mode):
    /// the deadline was moved past the promotion's own bound and, from
    /// here on, the switch completes; no member aborts it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub promoting: bool,
    #[serde(default)]
    pub outcome: Option<HoldOutcome>,
}

impl HoldDoc {
    pub fn in_flight(&self) -> bool {
        self.outcome.is_none()
    }
}

/// The change a document records: its events (kind, actor, reason, stats)
/// in order, so every receiver can log the same decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Random, unique per change: a committer that lost track of its commit
    /// (a timeout) finds it again by this id.
    pub id: u64,
    pub events: Vec<Event>,
}

impl Change {
    pub fn new(events: Vec<Event>) -> Self {
        Change {
            id: fastrand::u64(1..),
            events,
        }
    }
}

/// All deployment state. Replaced whole by every change, never edited in
/// place once committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateDoc {
    pub version: u32,
    /// One per committed change; 0 for a document never committed.
    pub generation: u64,
    pub live: PoolName,
    pub weights: Weights,
    pub rollout: Option<Rollout>,
    pub bake: Option<Bake>,
    pub rollback_lock: Option<RollbackLock>,
    #[serde(default)]
    pub hold: Option<HoldDoc>,
    /// When the weights last changed: statistics from before do not count
    /// and the judge's grace starts again. 0 in a version 1 file.
    #[serde(default)]
    pub changed_at_unix_ms: u64,
    #[serde(default)]
    pub last_change: Option<Change>,
    /// The commit that wrote it (fleet mode: unique per commit, so a
    /// committer that lost track of its commit recognises it); empty for a
    /// single proxy.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub op_id: String,
    /// When the document was committed (RFC 3339).
    pub saved_at: String,
}

impl StateDoc {
    /// The document of a proxy with no stored state: `weights` from the
    /// config, the pool with more of them live. Generation 0: not committed.
    pub fn initial(weights: Weights, now_unix_ms: u64) -> Self {
        let live = if weights.bp(PoolName::Green) > weights.bp(PoolName::Blue) {
            PoolName::Green
        } else {
            PoolName::Blue
        };
        StateDoc {
            version: DOC_VERSION,
            generation: 0,
            live,
            weights,
            rollout: None,
            bake: None,
            rollback_lock: None,
            hold: None,
            changed_at_unix_ms: now_unix_ms,
            last_change: None,
            op_id: String::new(),
            saved_at: crate::clock::rfc3339(now_unix_ms),
        }
    }

    pub fn candidate(&self) -> PoolName {
        self.live.other()
    }

    /// The document in one line, for the start log and `check`:
    /// `blue 70, green 30 (live blue, generation 5, saved 2026-11-20T10:15:00Z)`.
    pub fn describe(&self) -> String {
        let mut extra = vec![
            format!("live {}", self.live.as_str()),
            format!("generation {}", self.generation),
        ];
        if self.rollout.is_some() {
            extra.push("a rollout in progress".into());
        }
        if let Some(lock) = &self.rollback_lock {
            extra.push(format!("rollback lock on {}", lock.pool.as_str()));
        }
        extra.push(format!("saved {}", self.saved_at));
        format!(
            "blue {}, green {} ({})",
            self.weights.percent(PoolName::Blue),
            self.weights.percent(PoolName::Green),
            extra.join(", ")
        )
    }

    /// The hold in flight, if any (not one that ended).
    pub fn hold_in_flight(&self) -> Option<&HoldDoc> {
        self.hold.as_ref().filter(|h| h.in_flight())
    }

    pub fn switching(&self) -> bool {
        self.hold_in_flight().is_some()
    }

    /// The phase, from the document alone.
    pub fn phase(&self) -> Phase {
        if self.switching() {
            Phase::Switching
        } else if let Some(r) = &self.rollout {
            if r.paused {
                Phase::Paused
            } else {
                Phase::Rolling
            }
        } else if self.bake.is_some() {
            Phase::Baking
        } else if self.weights.sole_pool() == Some(self.live) {
            Phase::Stable
        } else {
            Phase::Split
        }
    }

    /// Automatic rollback watches whenever the candidate takes traffic,
    /// except while a hold is in flight.
    pub fn armed(&self) -> bool {
        !self.switching() && self.weights.bp(self.candidate()) > 0
    }

    /// Whether `self` moved the weights against `prev` (or reset their
    /// clock): the judge starts over.
    pub fn weights_changed_since(&self, prev: &StateDoc) -> bool {
        self.weights != prev.weights || self.changed_at_unix_ms != prev.changed_at_unix_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(weights: Weights) -> StateDoc {
        StateDoc::initial(weights, 1_000)
    }

    fn hold(outcome: Option<HoldOutcome>) -> HoldDoc {
        HoldDoc {
            id: 3,
            kind: HoldKind::Switch,
            from: PoolName::Blue,
            to: PoolName::Green,
            actor: Actor::Admin,
            reason: "holding writes".into(),
            coordinator: None,
            started_unix_ms: 1_000,
            deadline_unix_ms: 3_000,
            expected: Vec::new(),
            promoting: false,
            outcome,
        }
    }

    #[test]
    fn the_phase_follows_from_the_document() {
        let mut d = doc(Weights::all_on(PoolName::Blue));
        assert_eq!(d.live, PoolName::Blue);
        assert_eq!(d.phase(), Phase::Stable);
        assert!(!d.armed());

        d.weights = Weights::with_percent(PoolName::Green, 10.0);
        assert_eq!(d.phase(), Phase::Split, "a manual split");
        assert!(d.armed());

        let mut r = Rollout::new(
            PoolName::Green,
            vec![10.0, 100.0],
            std::time::Duration::from_secs(1),
            true,
            0,
        );
        d.rollout = Some(r.clone());
        assert_eq!(d.phase(), Phase::Rolling);
        r.pause();
        d.rollout = Some(r);
        assert_eq!(d.phase(), Phase::Paused);

        d.rollout = None;
        d.weights = Weights::all_on(PoolName::Green);
        d.bake = Some(Bake {
            pool: PoolName::Green,
            until_unix_ms: 9_000,
        });
        assert_eq!(d.phase(), Phase::Baking);
        assert!(d.armed());

        d.hold = Some(hold(None));
        assert_eq!(d.phase(), Phase::Switching, "a hold in flight wins");
        assert!(!d.armed(), "no verdict while switching");
        d.hold = Some(hold(Some(HoldOutcome::Aborted)));
        assert_eq!(d.phase(), Phase::Baking, "an ended hold is history");
        assert!(d.hold_in_flight().is_none());
    }

    #[test]
    fn the_initial_live_pool_is_the_one_with_more_traffic() {
        assert_eq!(doc(Weights::all_on(PoolName::Green)).live, PoolName::Green);
        assert_eq!(
            doc(Weights::with_percent(PoolName::Green, 50.0)).live,
            PoolName::Blue
        );
        assert_eq!(doc(Weights::all_on(PoolName::Blue)).generation, 0);
    }

    #[test]
    fn a_version_1_document_still_reads() {
        let v1 = serde_json::json!({
            "version": 1, "generation": 7, "live": "blue",
            "weights": {"blue": 75.0, "green": 25.0},
            "rollout": null, "bake": null,
            "rollback_lock": {"pool": "green", "since": "2026-11-20T10:00:00Z", "reason": "x"},
            "saved_at": "2026-11-20T10:00:00Z"
        });
        let d: StateDoc = serde_json::from_value(v1).unwrap();
        assert_eq!(d.generation, 7);
        assert_eq!(d.weights, Weights::with_percent(PoolName::Green, 25.0));
        assert_eq!(d.hold, None);
        assert_eq!(d.last_change, None);
        assert!(READABLE_VERSIONS.contains(&d.version));
        // And a document survives a round trip with everything set.
        let mut full = d.clone();
        full.version = DOC_VERSION;
        full.hold = Some(hold(None));
        full.last_change = Some(Change::new(vec![Event::new(
            crate::control::events::EventKind::SwitchStarted,
            Actor::Admin,
        )]));
        let back: StateDoc = serde_json::from_str(&serde_json::to_string(&full).unwrap()).unwrap();
        assert_eq!(back, full);
    }
}
