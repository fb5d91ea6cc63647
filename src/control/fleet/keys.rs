//! The key layout under `fleet.etcd.prefix`; nothing else names a key.
//!
//! - `state`: the one routing-state document.
//! - `members/<id>`: a member's description, under its lease.
//! - `acks/<hold>/<id>`: a member's acknowledgement of a write hold, under its lease.
//! - `stats/<id>`: a member's published counters, under its lease.
//! - `election/<lease>`: a candidate for leader, under its lease; the one
//!   created first (lowest create_revision) leads.

use super::FleetError;

/// The keys of one fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

/// What a key under the prefix is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind<'a> {
    State,
    Member(&'a str),
    Ack {
        hold: &'a str,
        member: &'a str,
    },
    Stats(&'a str),
    /// A candidate key; its value names the member.
    Candidate(&'a str),
}

const STATE: &str = "state";
const MEMBERS: &str = "members/";
const ACKS: &str = "acks/";
const STATS: &str = "stats/";
const ELECTION: &str = "election/";

/// An id that can be one segment of a key.
pub(super) fn segment(id: &str) -> Result<&str, FleetError> {
    if id.is_empty() || id.contains('/') {
        Err(FleetError::BadId(id.to_string()))
    } else {
        Ok(id)
    }
}

impl Keys {
    /// `prefix` ends with `/` (the config's rule).
    pub fn new(prefix: impl Into<String>) -> Keys {
        Keys {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn state(&self) -> String {
        format!("{}{STATE}", self.prefix)
    }

    pub fn members(&self) -> String {
        format!("{}{MEMBERS}", self.prefix)
    }

    pub fn member(&self, id: &str) -> String {
        format!("{}{MEMBERS}{id}", self.prefix)
    }

    /// The acknowledgements of one hold (a prefix).
    pub fn acks(&self, hold: &str) -> String {
        format!("{}{ACKS}{hold}/", self.prefix)
    }

    pub fn ack(&self, hold: &str, member: &str) -> String {
        format!("{}{ACKS}{hold}/{member}", self.prefix)
    }

    pub fn all_stats(&self) -> String {
        format!("{}{STATS}", self.prefix)
    }

    pub fn stats(&self, member: &str) -> String {
        format!("{}{STATS}{member}", self.prefix)
    }

    pub fn election(&self) -> String {
        format!("{}{ELECTION}", self.prefix)
    }

    /// A candidate key: one per lease, as etcd's own election names them.
    pub fn candidate(&self, lease: i64) -> String {
        format!("{}{ELECTION}{lease:x}", self.prefix)
    }

    /// What `key` is, or `None` for a key this layer does not write.
    pub fn parse<'k>(&self, key: &'k [u8], value: &'k [u8]) -> Option<KeyKind<'k>> {
        let rest = std::str::from_utf8(key.strip_prefix(self.prefix.as_bytes())?).ok()?;
        let single = |s: &'k str| (!s.is_empty() && !s.contains('/')).then_some(s);
        if rest == STATE {
            Some(KeyKind::State)
        } else if let Some(id) = rest.strip_prefix(MEMBERS) {
            single(id).map(KeyKind::Member)
        } else if let Some(id) = rest.strip_prefix(STATS) {
            single(id).map(KeyKind::Stats)
        } else if let Some(pair) = rest.strip_prefix(ACKS) {
            let (hold, member) = pair.split_once('/')?;
            Some(KeyKind::Ack {
                hold: single(hold)?,
                member: single(member)?,
            })
        } else if let Some(lease) = rest.strip_prefix(ELECTION) {
            single(lease)?;
            std::str::from_utf8(value).ok().map(KeyKind::Candidate)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_written_parses_back_to_what_it_is() {
        let k = Keys::new("/sy/shop/");
        let cases = [
            (k.state(), "", KeyKind::State),
            (k.member("a:9901"), "", KeyKind::Member("a:9901")),
            (k.stats("a"), "", KeyKind::Stats("a")),
            (
                k.ack("h1", "b"),
                "",
                KeyKind::Ack {
                    hold: "h1",
                    member: "b",
                },
            ),
            (k.candidate(0x1f), "c", KeyKind::Candidate("c")),
        ];
        for (key, value, kind) in cases {
            assert_eq!(
                k.parse(key.as_bytes(), value.as_bytes()),
                Some(kind),
                "{key}"
            );
        }
        assert_eq!(k.candidate(0x1f), "/sy/shop/election/1f");
        assert!(k.ack("h1", "b").starts_with(&k.acks("h1")));
    }

    #[test]
    fn keys_of_another_fleet_or_shape_are_not_ours() {
        let k = Keys::new("/sy/shop/");
        for key in [
            "/sy/shopx/state",
            "/sy/other/state",
            "/sy/shop/states",
            "/sy/shop/members/",
            "/sy/shop/members/a/b",
            "/sy/shop/acks/h1",
            "/sy/shop/acks/h1/",
            "/sy/shop/acks/h1/b/c",
        ] {
            assert_eq!(k.parse(key.as_bytes(), b""), None, "{key}");
        }
        assert!(segment("a/b").is_err());
        assert!(segment("").is_err());
        assert_eq!(segment("a").ok(), Some("a"));
    }
}
