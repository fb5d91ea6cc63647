//! The audit log: every change of deployment state as an [`Event`], kept in
//! a bounded ring for `GET /api/v1/events` and appended as JSON lines to
//! `audit_log` when one is configured.
//!
//! Only the controller appends; the admin API reads.

use crate::control::feed::{Change, Feed};
use crate::routing::Weights;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Events kept in memory.
pub const RING_CAPACITY: usize = 1000;

/// Who asked for a change (SPEC.md section 3, events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Actor {
    Admin,
    Config,
    Auto,
    Signal,
}

/// `admin`, `config`, `auto`, `signal`: the API's words, for the log.
impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        api_word(self, f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Started,
    WeightsChanged,
    SwitchStarted,
    SwitchCompleted,
    SwitchAborted,
    RolloutStarted,
    RolloutStep,
    RolloutPaused,
    RolloutResumed,
    RolloutCompleted,
    Rollback,
    BakeCompleted,
    ConfigReloaded,
    ConfigRejected,
    EndpointDown,
    EndpointUp,
    EndpointEjected,
    /// An operator drained an endpoint for maintenance.
    EndpointDrained,
    /// An operator enabled a drained endpoint again.
    EndpointEnabled,
    Failover,
    Rearmed,
    StateFileError,
}

/// The word the API and the audit log use (`endpoint_up`, `auto`), so the
/// log says the same: SPEC.md section 3, "Events use the same words", and a
/// grep for `config_rejected` finds it everywhere. Derived from the serde
/// name so the two cannot drift apart.
pub(crate) fn api_word(v: &impl Serialize, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(word)) => f.write_str(&word),
        // Not reached for unit variants; never fail a log line over it.
        _ => f.write_str("?"),
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        api_word(self, f)
    }
}

/// One event. In a state document's change, `id` is 0 (left out) until
/// the log numbers it; `time` is when the change was decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub id: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub time: String,
    pub kind: EventKind,
    pub actor: Actor,
    pub from: Option<serde_json::Value>,
    pub to: Option<serde_json::Value>,
    pub weights: Option<Weights>,
    pub reason: Option<String>,
    pub stats: Option<serde_json::Value>,
    /// The member that made the decision (fleet mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Event {
    /// An event of `kind` by `actor`; fill the optional fields with the setters.
    pub fn new(kind: EventKind, actor: Actor) -> Self {
        Event {
            id: 0,
            time: String::new(),
            kind,
            actor,
            from: None,
            to: None,
            weights: None,
            reason: None,
            stats: None,
            member: None,
        }
    }

    pub fn from(mut self, v: impl Serialize) -> Self {
        self.from = serde_json::to_value(v).ok();
        self
    }

    pub fn to(mut self, v: impl Serialize) -> Self {
        self.to = serde_json::to_value(v).ok();
        self
    }

    pub fn weights(mut self, w: Weights) -> Self {
        self.weights = Some(w);
        self
    }

    pub fn reason(mut self, r: impl Into<String>) -> Self {
        self.reason = Some(r.into());
        self
    }

    pub fn stats(mut self, v: impl Serialize) -> Self {
        self.stats = serde_json::to_value(v).ok();
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open audit log {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

struct Inner {
    ring: VecDeque<Event>,
    next_id: u64,
    audit: Option<(PathBuf, std::fs::File)>,
}

pub struct EventLog {
    inner: Mutex<Inner>,
    /// Where each recorded event goes next, for the dashboard's stream.
    feed: Feed,
}

impl EventLog {
    /// A log that also appends to `audit_log` when given. Ids continue after
    /// the last id found in an existing audit log, so they stay unique
    /// across restarts. Each recorded event is also sent on `feed`.
    pub fn new(audit_log: Option<&Path>, feed: Feed) -> Result<Self, AuditError> {
        let mut ring = VecDeque::with_capacity(RING_CAPACITY);
        let mut next_id = 1;
        let audit = match audit_log {
            Some(path) => {
                if let Ok(text) = std::fs::read_to_string(path) {
                    for line in text.lines() {
                        if let Ok(e) = serde_json::from_str::<Event>(line) {
                            next_id = next_id.max(e.id + 1);
                            if ring.len() == RING_CAPACITY {
                                ring.pop_front();
                            }
                            ring.push_back(e);
                        }
                    }
                }
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| AuditError::Open {
                        path: path.to_path_buf(),
                        source,
                    })?;
                Some((path.to_path_buf(), file))
            }
            None => None,
        };
        Ok(EventLog {
            inner: Mutex::new(Inner {
                ring,
                next_id,
                audit,
            }),
            feed,
        })
    }

    /// Stamp `event` with an id (and the time, unless it carries the time
    /// its change was decided), keep it, append it to the audit log, send
    /// it on the feed; returns the stamped event.
    pub fn record(&self, event: Event) -> Event {
        let event = self.keep(event);
        self.feed.send(Change::Event(Arc::new(event.clone())));
        event
    }

    fn keep(&self, mut event: Event) -> Event {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        event.id = inner.next_id;
        inner.next_id += 1;
        if event.time.is_empty() {
            event.time = crate::clock::rfc3339(crate::clock::unix_ms());
        }
        tracing::info!(
            id = event.id,
            kind = %event.kind,
            actor = %event.actor,
            reason = event.reason.as_deref().unwrap_or(""),
            "event"
        );
        if let Some((path, file)) = &mut inner.audit {
            let line = serde_json::to_string(&event).unwrap_or_default();
            if let Err(e) = writeln!(file, "{line}").and_then(|()| file.flush()) {
                tracing::error!(path = %path.display(), error = %e, "cannot append to the audit log");
            }
        }
        if inner.ring.len() == RING_CAPACITY {
            inner.ring.pop_front();
        }
        inner.ring.push_back(event.clone());
        event
    }

    /// The newest `limit` events, newest first.
    pub fn recent(&self, limit: usize) -> Vec<Event> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.ring.iter().rev().take(limit).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_actors_display_as_the_api_words() {
        assert_eq!(EventKind::EndpointUp.to_string(), "endpoint_up");
        assert_eq!(EventKind::ConfigRejected.to_string(), "config_rejected");
        assert_eq!(Actor::Auto.to_string(), "auto");
    }

    /// The config's list of kinds a notification may name is every kind.
    #[test]
    fn notify_knows_every_event_kind() {
        use crate::config::analysis::EVENT_KINDS;
        for word in EVENT_KINDS {
            let kind: EventKind = serde_json::from_value(serde_json::json!(word)).expect(word);
            assert_eq!(kind.to_string(), *word);
        }
        // Exhaustive: a new kind fails to compile here until it is listed.
        let listed = |k: EventKind| match k {
            EventKind::Started
            | EventKind::WeightsChanged
            | EventKind::SwitchStarted
            | EventKind::SwitchCompleted
            | EventKind::SwitchAborted
            | EventKind::RolloutStarted
            | EventKind::RolloutStep
            | EventKind::RolloutPaused
            | EventKind::RolloutResumed
            | EventKind::RolloutCompleted
            | EventKind::Rollback
            | EventKind::BakeCompleted
            | EventKind::ConfigReloaded
            | EventKind::ConfigRejected
            | EventKind::EndpointDown
            | EventKind::EndpointUp
            | EventKind::EndpointEjected
            | EventKind::EndpointDrained
            | EventKind::EndpointEnabled
            | EventKind::Failover
            | EventKind::Rearmed
            | EventKind::StateFileError => EVENT_KINDS.contains(&k.to_string().as_str()),
        };
        assert!(listed(EventKind::Failover));
        assert_eq!(EVENT_KINDS.len(), 22, "one word per variant above");
    }

    #[test]
    fn events_are_numbered_bounded_and_survive_in_the_audit_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = EventLog::new(Some(&path), Feed::default()).unwrap();
        for _ in 0..3 {
            log.record(Event::new(EventKind::WeightsChanged, Actor::Admin));
        }
        let recent = log.recent(2);
        assert_eq!(recent.iter().map(|e| e.id).collect::<Vec<_>>(), vec![3, 2]);
        drop(log);
        // A restart reads the audit log back and continues the numbering.
        let log = EventLog::new(Some(&path), Feed::default()).unwrap();
        assert_eq!(log.recent(10).len(), 3);
        let e = log.record(Event::new(EventKind::Rearmed, Actor::Admin));
        assert_eq!(e.id, 4);
        let lines = std::fs::read_to_string(&path).unwrap();
        assert_eq!(lines.lines().count(), 4);
    }
}
