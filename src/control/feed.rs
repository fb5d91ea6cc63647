//! The change feed: what the dashboard's stream (`GET /api/v1/stream`)
//! forwards as it happens: every event as the log records it, a note that
//! the published view changed, and each one-second traffic sample.
//!
//! A bounded `tokio::sync::broadcast`: sending never waits and never fails
//! the sender, so no reader, however slow, can slow the controller down. A
//! reader that falls more than [`CAPACITY`] changes behind loses the oldest
//! ones and learns it (`RecvError::Lagged`) on its next receive.

use crate::control::events::Event;
use crate::telemetry::history::Sample;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Changes a reader may fall behind before it is told it lagged.
pub const CAPACITY: usize = 256;

/// One change, cheap to clone for every reader.
#[derive(Debug, Clone)]
pub enum Change {
    /// An event, as the log stamped it (id and time set).
    Event(Arc<Event>),
    /// The controller published a new view (status changed).
    Status,
    /// The traffic of the last second (the history's newest sample).
    Sample(Arc<Sample>),
}

#[derive(Debug, Clone)]
pub struct Feed {
    tx: broadcast::Sender<Change>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Feed {
    /// Hand `change` to every reader; without readers it is dropped.
    pub fn send(&self, change: Change) {
        // `Err` only says that nobody is listening: nothing to do.
        if self.tx.send(change).is_err() {
            tracing::trace!("no stream reader");
        }
    }

    /// A reader of the changes sent from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::events::{Actor, EventKind};

    #[tokio::test]
    async fn a_reader_that_falls_behind_is_told_and_the_sender_never_waits() {
        let feed = Feed::default();
        let mut slow = feed.subscribe();
        // Far more than the buffer holds, with nobody reading: each send
        // returns at once.
        for _ in 0..CAPACITY * 4 {
            feed.send(Change::Status);
        }
        match slow.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => {
                assert_eq!(n as usize, CAPACITY * 3)
            }
            other => panic!("expected a lag, got {other:?}"),
        }
        let mut fresh = feed.subscribe();
        feed.send(Change::Event(Arc::new(Event::new(
            EventKind::Rearmed,
            Actor::Admin,
        ))));
        assert!(matches!(fresh.recv().await, Ok(Change::Event(_))));
    }
}
