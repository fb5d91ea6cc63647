//! The mirror of the fleet's prefix and the typed events that change it.
//!
//! A [`Snapshot`] is what etcd holds under the prefix at one revision,
//! sorted by kind. The watcher keeps one up to date: each etcd event
//! applied to it yields the [`FleetEvent`]s it means, and a fresh listing
//! after a compaction is diffed against it, so a consumer sees every
//! member leave and every ack vanish even across a gap. Pure: no I/O.

use super::keys::{KeyKind, Keys};
use super::state::StateDoc;
use super::watch::Resync;
use super::Revision;
use etcd_client::KeyValue;
use std::collections::{BTreeMap, BTreeSet};

/// A key-value pair as etcd sends it, borrowed (built from etcd-client's
/// `KeyValue`, or by a test).
#[derive(Debug, Clone, Copy)]
pub(super) struct Kv<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub create_revision: Revision,
    pub mod_revision: Revision,
    pub version: i64,
    pub lease: i64,
}

impl<'a> From<&'a KeyValue> for Kv<'a> {
    fn from(kv: &'a KeyValue) -> Kv<'a> {
        Kv {
            key: kv.key(),
            value: kv.value(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            version: kv.version(),
            lease: kv.lease(),
        }
    }
}

/// A key's value and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Vec<u8>,
    pub create_revision: Revision,
    pub mod_revision: Revision,
    /// The lease the key lives under (0: none).
    pub lease: i64,
}

impl Entry {
    pub(super) fn from_kv(kv: Kv<'_>) -> Entry {
        Entry {
            value: kv.value.to_vec(),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            lease: kv.lease,
        }
    }
}

/// A candidate for leader; the one with the lowest `create_revision`
/// leads. A commit guarded by it applies only while this very key exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderKey {
    pub key: String,
    pub member: String,
    pub create_revision: Revision,
}

/// Something that changed in the fleet, in etcd's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetEvent {
    StateChanged(StateDoc),
    StateDeleted {
        revision: Revision,
    },
    MemberJoined {
        id: String,
        entry: Entry,
    },
    MemberUpdated {
        id: String,
        entry: Entry,
    },
    MemberLeft {
        id: String,
        revision: Revision,
    },
    AckPut {
        hold: String,
        member: String,
        revision: Revision,
    },
    AckDeleted {
        hold: String,
        member: String,
        revision: Revision,
    },
    StatsUpdated {
        member: String,
        entry: Entry,
    },
    StatsDeleted {
        member: String,
        revision: Revision,
    },
    /// The leader is another key (or none).
    LeaderChanged {
        leader: Option<LeaderKey>,
        revision: Revision,
    },
    /// The watch is up; everything up to `revision` has been told.
    Connected {
        revision: Revision,
    },
    /// The watch is down; a resync for `reason` follows when etcd answers.
    Disconnected {
        reason: Resync,
    },
    /// After a gap, this member is in step again at `revision`: the
    /// events since the gap (or the differences of a fresh listing, after
    /// a compaction) came before this one.
    Resynced {
        reason: Resync,
        revision: Revision,
    },
}

/// What etcd holds under the prefix at `revision`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub revision: Revision,
    pub state: Option<StateDoc>,
    pub members: BTreeMap<String, Entry>,
    /// Hold id and member of each acknowledgement.
    pub acks: BTreeSet<(String, String)>,
    pub stats: BTreeMap<String, Entry>,
    /// Candidate keys by key.
    pub candidates: BTreeMap<String, LeaderKey>,
}

impl Snapshot {
    /// The candidate created first.
    pub fn leader(&self) -> Option<&LeaderKey> {
        self.candidates.values().min_by_key(|c| c.create_revision)
    }

    /// The members that acknowledged `hold`.
    pub fn acks_of<'s>(&'s self, hold: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.acks
            .iter()
            .filter(move |(h, _)| h == hold)
            .map(|(_, m)| m.as_str())
    }

    /// A snapshot of a listing of the prefix at `revision`.
    pub(super) fn from_kvs<'k>(
        keys: &Keys,
        kvs: impl IntoIterator<Item = Kv<'k>>,
        revision: Revision,
    ) -> Snapshot {
        let mut s = Snapshot {
            revision,
            ..Snapshot::default()
        };
        let mut ignored = Vec::new();
        for kv in kvs {
            s.put(keys, kv, &mut ignored);
        }
        s
    }

    /// Apply a put of `kv`; the events it means go to `out`.
    pub(super) fn put(&mut self, keys: &Keys, kv: Kv<'_>, out: &mut Vec<FleetEvent>) {
        let revision = kv.mod_revision;
        self.revision = self.revision.max(revision);
        match keys.parse(kv.key, kv.value) {
            None => {}
            Some(KeyKind::State) => {
                let doc = StateDoc::from_kv(kv);
                self.state = Some(doc.clone());
                out.push(FleetEvent::StateChanged(doc));
            }
            Some(KeyKind::Member(id)) => {
                let entry = Entry::from_kv(kv);
                let id = id.to_string();
                out.push(match self.members.insert(id.clone(), entry.clone()) {
                    None => FleetEvent::MemberJoined { id, entry },
                    Some(_) => FleetEvent::MemberUpdated { id, entry },
                });
            }
            Some(KeyKind::Ack { hold, member }) => {
                let pair = (hold.to_string(), member.to_string());
                if self.acks.insert(pair) {
                    out.push(FleetEvent::AckPut {
                        hold: hold.to_string(),
                        member: member.to_string(),
                        revision,
                    });
                }
            }
            Some(KeyKind::Stats(member)) => {
                let entry = Entry::from_kv(kv);
                self.stats.insert(member.to_string(), entry.clone());
                out.push(FleetEvent::StatsUpdated {
                    member: member.to_string(),
                    entry,
                });
            }
            Some(KeyKind::Candidate(member)) => {
                let key = String::from_utf8_lossy(kv.key).into_owned();
                self.candidates.insert(
                    key.clone(),
                    LeaderKey {
                        key,
                        member: member.to_string(),
                        create_revision: kv.create_revision,
                    },
                );
            }
        }
    }

    /// Apply a delete of `kv` (its `mod_revision` is the deletion's).
    pub(super) fn delete(&mut self, keys: &Keys, kv: Kv<'_>, out: &mut Vec<FleetEvent>) {
        let revision = kv.mod_revision;
        self.revision = self.revision.max(revision);
        // A delete event carries no value: a candidate key is known by its key.
        let told = match keys.parse(kv.key, b"") {
            None => None,
            Some(KeyKind::State) => self
                .state
                .take()
                .map(|_| FleetEvent::StateDeleted { revision }),
            Some(KeyKind::Member(id)) => self.members.remove(id).map(|_| FleetEvent::MemberLeft {
                id: id.to_string(),
                revision,
            }),
            Some(KeyKind::Ack { hold, member }) => self
                .acks
                .remove(&(hold.to_string(), member.to_string()))
                .then(|| FleetEvent::AckDeleted {
                    hold: hold.to_string(),
                    member: member.to_string(),
                    revision,
                }),
            Some(KeyKind::Stats(member)) => {
                self.stats.remove(member).map(|_| FleetEvent::StatsDeleted {
                    member: member.to_string(),
                    revision,
                })
            }
            Some(KeyKind::Candidate(_)) => {
                self.candidates
                    .remove(String::from_utf8_lossy(kv.key).as_ref());
                None
            }
        };
        out.extend(told);
    }

    /// Become `new`, telling in `out` every difference as the events that
    /// would have led here (at `new.revision` where a key is gone).
    pub(super) fn replace(&mut self, new: Snapshot, out: &mut Vec<FleetEvent>) {
        let at = new.revision;
        if self.state != new.state {
            out.push(match &new.state {
                Some(doc) => FleetEvent::StateChanged(doc.clone()),
                None => FleetEvent::StateDeleted { revision: at },
            });
        }
        for (id, old) in &self.members {
            match new.members.get(id) {
                None => out.push(FleetEvent::MemberLeft {
                    id: id.clone(),
                    revision: at,
                }),
                // Created again: the member's key went away and came back.
                Some(e) if e.create_revision != old.create_revision => {
                    out.push(FleetEvent::MemberLeft {
                        id: id.clone(),
                        revision: at,
                    });
                    out.push(FleetEvent::MemberJoined {
                        id: id.clone(),
                        entry: e.clone(),
                    });
                }
                Some(e) if e != old => out.push(FleetEvent::MemberUpdated {
                    id: id.clone(),
                    entry: e.clone(),
                }),
                Some(_) => {}
            }
        }
        for (id, e) in &new.members {
            if !self.members.contains_key(id) {
                out.push(FleetEvent::MemberJoined {
                    id: id.clone(),
                    entry: e.clone(),
                });
            }
        }
        for (hold, member) in self.acks.difference(&new.acks) {
            out.push(FleetEvent::AckDeleted {
                hold: hold.clone(),
                member: member.clone(),
                revision: at,
            });
        }
        for (hold, member) in new.acks.difference(&self.acks) {
            out.push(FleetEvent::AckPut {
                hold: hold.clone(),
                member: member.clone(),
                revision: at,
            });
        }
        for member in self.stats.keys() {
            if !new.stats.contains_key(member) {
                out.push(FleetEvent::StatsDeleted {
                    member: member.clone(),
                    revision: at,
                });
            }
        }
        for (member, e) in &new.stats {
            if self.stats.get(member) != Some(e) {
                out.push(FleetEvent::StatsUpdated {
                    member: member.clone(),
                    entry: e.clone(),
                });
            }
        }
        *self = new;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key-value pair, its strings kept alive for the test's length.
    fn kv(key: &str, value: &str, create: i64, modr: i64) -> Kv<'static> {
        Kv {
            key: Box::leak(key.as_bytes().to_vec().into_boxed_slice()),
            value: Box::leak(value.as_bytes().to_vec().into_boxed_slice()),
            create_revision: create,
            mod_revision: modr,
            version: 1,
            lease: 0,
        }
    }

    fn keys() -> Keys {
        Keys::new("/f/")
    }

    #[test]
    fn puts_and_deletes_become_typed_events_and_the_leader_is_the_oldest_candidate() {
        let k = keys();
        let mut s = Snapshot::default();
        let mut out = Vec::new();
        s.put(&k, kv("/f/members/a", "{}", 2, 2), &mut out);
        s.put(&k, kv("/f/members/a", "{\"x\":1}", 2, 3), &mut out);
        s.put(&k, kv("/f/acks/h1/a", "", 4, 4), &mut out);
        s.put(&k, kv("/f/election/2", "b", 6, 6), &mut out);
        s.put(&k, kv("/f/election/1", "a", 5, 5), &mut out);
        s.put(&k, kv("/f/unrelated", "", 7, 7), &mut out);
        assert!(matches!(&out[0], FleetEvent::MemberJoined { id, .. } if id == "a"));
        assert!(
            matches!(&out[1], FleetEvent::MemberUpdated { id, entry } if id == "a" && entry.mod_revision == 3)
        );
        assert!(
            matches!(&out[2], FleetEvent::AckPut { hold, member, revision: 4 } if hold == "h1" && member == "a")
        );
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(s.leader().map(|l| l.member.as_str()), Some("a"));
        assert_eq!(s.revision, 7);

        out.clear();
        s.delete(&k, kv("/f/election/1", "", 0, 8), &mut out);
        s.delete(&k, kv("/f/acks/h1/a", "", 0, 8), &mut out);
        s.delete(&k, kv("/f/members/a", "", 0, 8), &mut out);
        s.delete(&k, kv("/f/members/a", "", 0, 9), &mut out); // twice: told once
        assert_eq!(s.leader().map(|l| l.member.as_str()), Some("b"));
        assert_eq!(
            out,
            vec![
                FleetEvent::AckDeleted {
                    hold: "h1".into(),
                    member: "a".into(),
                    revision: 8
                },
                FleetEvent::MemberLeft {
                    id: "a".into(),
                    revision: 8
                },
            ]
        );
        assert_eq!(s.acks_of("h1").count(), 0);
    }

    #[test]
    fn a_fresh_listing_tells_every_difference_across_a_gap() {
        let k = keys();
        let old = Snapshot::from_kvs(
            &k,
            [
                kv("/f/state", "{\"g\":1}", 2, 2),
                kv("/f/members/a", "{}", 3, 3),
                kv("/f/members/b", "{}", 4, 4),
                kv("/f/members/c", "{}", 5, 5),
                kv("/f/acks/h1/a", "", 6, 6),
                kv("/f/stats/a", "1", 7, 7),
            ],
            7,
        );
        let new = Snapshot::from_kvs(
            &k,
            [
                kv("/f/state", "{\"g\":2}", 2, 9),
                kv("/f/members/a", "{}", 3, 3),
                kv("/f/members/b", "{}", 10, 10), // its lease expired and it came back
                kv("/f/members/d", "{}", 11, 11),
                kv("/f/acks/h2/d", "", 12, 12),
                kv("/f/stats/a", "2", 7, 13),
            ],
            20,
        );
        let mut view = old;
        let mut out = Vec::new();
        view.replace(new.clone(), &mut out);
        assert_eq!(view, new);
        let named: Vec<String> = out
            .iter()
            .map(|e| match e {
                FleetEvent::StateChanged(d) => format!("state@{}", d.mod_revision),
                FleetEvent::MemberLeft { id, revision } => format!("left {id}@{revision}"),
                FleetEvent::MemberJoined { id, entry } => {
                    format!("joined {id}@{}", entry.mod_revision)
                }
                FleetEvent::AckDeleted { hold, member, .. } => format!("unack {hold}/{member}"),
                FleetEvent::AckPut { hold, member, .. } => format!("ack {hold}/{member}"),
                FleetEvent::StatsUpdated { member, entry } => {
                    format!("stats {member}@{}", entry.mod_revision)
                }
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            named,
            [
                "state@9",
                "left b@20",
                "joined b@10",
                "left c@20",
                "joined d@11",
                "unack h1/a",
                "ack h2/d",
                "stats a@13"
            ]
        );
        let mut again = Vec::new();
        view.replace(new, &mut again);
        assert_eq!(again, vec![], "the same listing twice tells nothing");
    }
}
