//! The one path of every change: commit the next document to the state
//! store, then [`Controller::apply`] what was committed. Documents the store
//! pushes (committed by another proxy) are applied by the same function.
//!
//! `apply` is the only place that moves deployment state into the data
//! plane: it publishes the routing table (with the hold in flight, if any),
//! releases the held writes of a hold that ended, sets the weight gauges,
//! restarts the judge when the weights moved, records the document's
//! events and publishes the view. It decides nothing.

use crate::config::PoolName;
use crate::control::controller::{CommandError, Controller};
use crate::control::cutover::LocalHold;
use crate::control::document::StateDoc;
use crate::control::store::StoreError;
use crate::routing::{Hold, RoutingTable};
use std::sync::Arc;
use std::time::Duration;

/// What applying a document did beyond publishing it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Applied {
    /// A hold ended: the writes it held were released.
    pub released: Option<Released>,
}

#[derive(Debug, Clone, Copy)]
pub struct Released {
    pub held_requests: u64,
    pub hold: Duration,
}

impl From<StoreError> for CommandError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { current } => CommandError::StaleGeneration {
                expected: current.generation.saturating_sub(1),
                current: current.generation,
            },
            StoreError::Unavailable { detail } => CommandError::Unavailable(detail),
            other => CommandError::Store(other),
        }
    }
}

impl Controller {
    /// Commit `next` (computed from the document in force) and apply it.
    /// On a conflict the stored document is applied and the change refused.
    pub(crate) async fn commit(&mut self, next: StateDoc) -> Result<Applied, CommandError> {
        self.commit_with(next, None).await
    }

    /// [`Controller::commit`]; with `acks` (fleet mode), only if every
    /// member of `.1` has acknowledged hold `.0` (`AcksMissing` if not).
    /// A hold this change starts names this member as its coordinator and
    /// the fleet's members as the ones it waits for.
    pub(crate) async fn commit_with(
        &mut self,
        next: StateDoc,
        acks: Option<(u64, &[String])>,
    ) -> Result<Applied, CommandError> {
        let mut next = stamped(next, self.store.member_id());
        if let (Some(me), Some(h)) = (self.store.member_id(), next.hold.as_mut()) {
            if h.in_flight() && h.id == next.generation && h.coordinator.is_none() {
                h.coordinator = Some(me.to_string());
                h.expected = self.store.hold_members();
            }
        }
        let expected = self.doc.generation;
        let stored = match acks {
            Some((hold, members)) => {
                self.store
                    .commit_acked(&next, expected, hold, members)
                    .await
            }
            None => self.store.commit(&next, expected).await,
        };
        match stored {
            Ok(committed) => Ok(self.apply(committed)),
            Err(StoreError::Conflict { current }) => {
                let generation = current.generation;
                self.apply(*current);
                Err(CommandError::StaleGeneration {
                    expected,
                    current: generation,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A change asked for against `if_generation`: `next` computes the
    /// document from the one in force (`None`: nothing changes). When the
    /// store holds a newer document than this controller had (fleet mode),
    /// the change is refused if the caller named a generation, and computed
    /// once more from the newer document if not. Whether a change was made.
    pub(crate) async fn change(
        &mut self,
        if_generation: Option<u64>,
        next: impl Fn(&StateDoc) -> Result<Option<StateDoc>, CommandError>,
    ) -> Result<Option<Applied>, CommandError> {
        self.check_generation(if_generation)?;
        let mut retried = false;
        loop {
            let Some(doc) = next(&self.doc)? else {
                return Ok(None);
            };
            match self.commit(doc).await {
                Err(CommandError::StaleGeneration { .. })
                    if !retried && if_generation.is_none() =>
                {
                    retried = true;
                }
                Err(CommandError::StaleGeneration { current, .. }) => {
                    return Err(CommandError::StaleGeneration {
                        expected: if_generation.unwrap_or(current),
                        current,
                    })
                }
                other => return other.map(Some),
            }
        }
    }

    /// Put a committed document in force. Documents older than (or as old
    /// as) the one in force are ignored, so a store echoing this
    /// controller's own commits, or replaying, changes nothing.
    pub(crate) fn apply(&mut self, doc: StateDoc) -> Applied {
        if doc.generation <= self.doc.generation {
            tracing::debug!(
                generation = doc.generation,
                current = self.doc.generation,
                "an old state document is ignored"
            );
            return Applied::default();
        }
        let prev = std::mem::replace(&mut self.doc, doc);
        if self.doc.weights_changed_since(&prev) {
            self.weights_changed();
        }
        let applied = self.publish_table();
        self.fleet_on_doc();
        if let Some(change) = &self.doc.last_change {
            for e in &change.events {
                self.shared.events.record(e.clone());
            }
        }
        self.publish_view();
        self.arm_checks();
        applied
    }

    /// Store a table for the document in force (same pools and settings),
    /// with the hold it has in flight; release a hold that ended, after the
    /// table without it is in force, so its writes see the new table.
    pub(crate) fn publish_table(&mut self) -> Applied {
        let wanted = self.doc.hold_in_flight().map(|h| h.id);
        let ended = match &self.held {
            Some(h) if Some(h.id) != wanted => self.held.take(),
            _ => None,
        };
        if let (Some(id), None) = (wanted, &self.held) {
            let cfg = self.shared.config.load();
            let mut hold = Hold::new(cfg.cutover.max_held_requests, cfg.cutover.hold_bound());
            if self.fleet_hold.is_some() {
                hold = hold.strict();
            }
            self.held = Some(LocalHold {
                id,
                hold: Arc::new(hold),
                started: tokio::time::Instant::now(),
            });
        }
        let prev = self.shared.table.load_full();
        let table = Arc::new(RoutingTable {
            generation: self.doc.generation,
            weights: self.doc.weights,
            live: self.doc.live,
            pools: prev.pools.clone(),
            settings: prev.settings.clone(),
            hold: self.held.as_ref().map(|h| h.hold.clone()),
        });
        self.shared.table.store(table.clone());
        let drain = self.shared.config.load().drain.timeout;
        crate::routing::drain::weights_changed(&prev, &table, drain);
        for p in PoolName::ALL {
            self.shared
                .metrics
                .pool(p)
                .set_weight(self.doc.weights.percent(p));
        }
        let released = ended.map(|h| {
            h.hold.release();
            let r = Released {
                held_requests: h.hold.held_total(),
                hold: h.started.elapsed(),
            };
            self.shared.metrics.hold(r.held_requests, r.hold);
            r
        });
        Applied { released }
    }

    /// Swap in a table rebuilt from a config under the same generation:
    /// the deployment state did not move, so an `if_generation` read before
    /// it still holds; the table is still replaced because the pools or
    /// files it was built from (an upstream CA bundle) may have changed.
    pub(crate) fn replace_table(&mut self, mut table: RoutingTable) {
        table.hold = self.held.as_ref().map(|h| h.hold.clone());
        table.generation = self.doc.generation;
        table.weights = self.doc.weights;
        table.live = self.doc.live;
        let prev = self.shared.table.load_full();
        let table = Arc::new(table);
        self.shared.table.store(table.clone());
        let drain = self.shared.config.load().drain.timeout;
        crate::routing::drain::weights_changed(&prev, &table, drain);
    }
}

/// The decision time on the change's events, so every receiver logs the
/// same time.
fn stamped(mut next: StateDoc, member: Option<&str>) -> StateDoc {
    if let Some(change) = next.last_change.as_mut() {
        let now = next.saved_at.clone();
        for e in change.events.iter_mut() {
            if e.time.is_empty() {
                e.time = now.clone();
            }
            if e.member.is_none() {
                e.member = member.map(str::to_string);
            }
        }
    }
    next
}
