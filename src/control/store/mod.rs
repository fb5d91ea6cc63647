//! The state store: where committed state documents live, and the seam
//! where fleet mode plugs in etcd.
//!
//! The controller loads the stored document once at start, commits every
//! change with the generation it started from (a compare-and-swap), and
//! applies what [`StateStore::commit`] returns. A store shared with other
//! proxies also pushes the documents they commit ([`StoreEvent`]); the
//! controller applies those through the same function.
//!
//! This module owns the contract only: it never builds a table or records
//! an event. [`file::FileStore`] is the single proxy's store (the state
//! file, or memory when there is none).

#[cfg(feature = "fleet")]
pub mod etcd;
pub mod file;

use crate::control::document::StateDoc;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use tokio::sync::mpsc;

pub use file::FileStore;

/// The future of a store operation (stores are used as trait objects).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stored generation is not the one the change started from: the
    /// change is not stored. `current` is what is stored now.
    #[error("the state moved on: generation {} is stored", .current.generation)]
    Conflict { current: Box<StateDoc> },
    /// The store cannot be reached (fleet mode: etcd); nothing was stored,
    /// or it is unknown whether it was.
    #[error("the state store is unavailable: {detail}")]
    Unavailable { detail: String },
    /// The local file could not be read (unreadable, or corrupt and set aside).
    #[error(transparent)]
    File(#[from] file::FileError),
}

/// A document committed elsewhere, or news about the stream of them.
#[derive(Debug, Clone)]
pub enum StoreEvent {
    /// A committed document; the controller applies it when it is newer
    /// than the one it has.
    Doc(Box<StateDoc>),
    /// The store lost track (a reconnect, a compaction) and read the state
    /// again; a `Doc` with what it read comes with it.
    Resynced,
}

/// What status shows about the store (`state_file` in the status document).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct StoreStatus {
    pub path: Option<PathBuf>,
    /// A problem that refused no change: the last write failed and is retried.
    pub last_error: Option<String>,
}

/// Where the state documents live. One controller owns its store.
pub trait StateStore: Send {
    /// The stored document; `None` when nothing is stored yet.
    fn load(&mut self) -> StoreFuture<'_, Result<Option<StateDoc>, StoreError>>;

    /// Store `next` if the stored generation is still `expected_generation`
    /// (0: nothing stored yet); returns the document as committed.
    /// `Conflict` stores nothing; a store may also accept the change while
    /// reporting a problem in [`StateStore::status`] (the file store keeps a
    /// failed write in memory and retries it).
    fn commit<'a>(
        &'a mut self,
        next: &'a StateDoc,
        expected_generation: u64,
    ) -> StoreFuture<'a, Result<StateDoc, StoreError>>;

    /// Called at every rollback tick: retry what failed.
    fn tick(&mut self) -> StoreFuture<'_, ()>;

    fn status(&self) -> StoreStatus;

    /// Where [`StateStore::load`] reads, in words for the start log.
    fn origin(&self) -> String {
        match self.status().path {
            Some(p) => p.display().to_string(),
            None => "memory".into(),
        }
    }

    /// Documents committed by others, taken once by the controller; `None`
    /// for a store nobody else writes.
    fn events(&mut self) -> Option<mpsc::Receiver<StoreEvent>>;

    /// The member this process is in a shared store (fleet mode): events
    /// it decides carry it. None for a single proxy.
    fn member_id(&self) -> Option<&str> {
        None
    }

    /// Whether this member makes the automatic decisions (fleet mode: it
    /// leads the fleet); always for a single proxy.
    fn leads(&self) -> bool {
        true
    }

    /// Fleet mode: the leader's verdict on the sum of every member's
    /// published stats; None for a single proxy (judge the local stats).
    fn fleet_verdict(
        &self,
        _cfg: &crate::config::RollbackConfig,
        _min_reporting: crate::config::fleet::MinReporting,
        _generation: u64,
        _candidate: crate::config::PoolName,
        _live: crate::config::PoolName,
    ) -> Option<crate::control::fleet_judge::FleetVerdict> {
        None
    }

    /// Whether the store is in touch (fleet mode: etcd answers). Out of
    /// touch, no automatic decision is made (rollback, rollout steps, end
    /// of bake): timers and the judge consult this.
    fn in_touch(&self) -> bool {
        true
    }
}
