//! [`FleetLink`]: the fleet as this member sees it (members, leader,
//! stats, the acknowledgements of write holds), kept by the store's
//! watcher and read by status, the membership task and the controller.

use crate::control::fleet::{AckHandle, Etcd, LeaderKey};
use crate::telemetry::metrics::FleetMetrics;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

/// What the watcher learned of the fleet, for status and metrics.
#[derive(Debug, Default, Clone)]
pub struct FleetSeen {
    /// Each member's `members/<id>` value (JSON) and the revision of its
    /// last update.
    pub members: BTreeMap<String, Vec<u8>>,
    pub leader: Option<LeaderKey>,
}

/// The fleet as this member sees it, shared between the store's watcher
/// (the writer), the membership task and the admin API (readers).
pub struct FleetLink {
    pub member_id: String,
    pub etcd: Etcd,
    pub write_fence: Duration,
    pub metrics: FleetMetrics,
    seen: Mutex<FleetSeen>,
    /// Every member's published stats, for the leader's verdict.
    pub stats: Mutex<crate::control::fleet_judge::Aggregator>,
    /// The acknowledgements of write holds in etcd: hold id → members.
    acks: Mutex<BTreeMap<String, BTreeSet<String>>>,
    /// How this member acknowledges a hold, once it has joined.
    acker: Mutex<Option<AckHandle>>,
}

impl FleetLink {
    pub fn new(
        member_id: String,
        etcd: Etcd,
        write_fence: Duration,
        metrics: FleetMetrics,
    ) -> Self {
        FleetLink {
            member_id,
            etcd,
            write_fence,
            metrics,
            seen: Mutex::new(FleetSeen::default()),
            stats: Mutex::new(crate::control::fleet_judge::Aggregator::new()),
            acks: Mutex::new(BTreeMap::new()),
            acker: Mutex::new(None),
        }
    }

    /// A member's value was put (joined or updated); how many there are.
    pub fn member_put(&self, id: String, value: Vec<u8>) -> usize {
        let mut seen = lock(&self.seen);
        seen.members.insert(id, value);
        seen.members.len()
    }

    /// A member left (its key is gone); how many remain.
    pub fn member_left(&self, id: &str) -> usize {
        let mut seen = lock(&self.seen);
        seen.members.remove(id);
        seen.members.len()
    }

    pub fn set_leader(&self, leader: Option<LeaderKey>) {
        lock(&self.seen).leader = leader;
    }

    /// The members in the fleet now, by id.
    pub fn member_ids(&self) -> Vec<String> {
        lock(&self.seen).members.keys().cloned().collect()
    }

    /// `member`'s acknowledgement of `hold` appeared (`present`) or vanished.
    pub fn ack_seen(&self, hold: &str, member: &str, present: bool) {
        let mut acks = lock(&self.acks);
        if present {
            acks.entry(hold.to_string())
                .or_default()
                .insert(member.to_string());
        } else if let Some(m) = acks.get_mut(hold) {
            m.remove(member);
            if m.is_empty() {
                acks.remove(hold);
            }
        }
    }

    /// The members whose acknowledgement of `hold` is in etcd.
    pub fn acks_of(&self, hold: &str) -> BTreeSet<String> {
        lock(&self.acks).get(hold).cloned().unwrap_or_default()
    }

    /// The membership task hands over how this member acknowledges holds.
    pub fn set_acker(&self, acker: AckHandle) {
        *lock(&self.acker) = Some(acker);
    }

    pub fn acker(&self) -> Option<AckHandle> {
        lock(&self.acker).clone()
    }

    pub fn seen(&self) -> FleetSeen {
        lock(&self.seen).clone()
    }

    /// Whether this member is in touch with etcd (the watch is up).
    pub fn connected(&self) -> bool {
        self.etcd.contact().connected()
    }

    /// Whether `write_fence` has passed without a lease keep-alive.
    pub fn fenced(&self, now_ms: u64) -> bool {
        self.etcd.contact().fenced(now_ms, self.write_fence)
    }

    /// The member that leads, if any.
    pub fn leader(&self) -> Option<String> {
        lock(&self.seen).leader.as_ref().map(|l| l.member.clone())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
