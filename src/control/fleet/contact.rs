//! Whether this member is in touch with etcd: the inputs of SPEC.md
//! section 9's out-of-touch rules.
//!
//! Written by the watcher (`connected`), by every answer from etcd
//! (`last_contact`) and by the lease keeper (the send time of the last
//! acknowledged keep-alive, from which the write fence is computed). Read
//! from anywhere, the data plane included: each read is one atomic load.
//! Times are [`crate::clock::now_ms`] milliseconds (monotonic); 0 is never.
//! It owns no policy: what to do when out of touch is the controller's.

use super::watch::Resync;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug)]
pub struct Contact {
    connected: AtomicBool,
    last_contact_ms: AtomicU64,
    lease_acked_sent_ms: AtomicU64,
    resyncs: [AtomicU64; 3],
    ambiguous: AtomicU64,
    changes: watch::Sender<bool>,
}

impl Default for Contact {
    fn default() -> Self {
        Contact {
            connected: AtomicBool::new(false),
            last_contact_ms: AtomicU64::new(0),
            lease_acked_sent_ms: AtomicU64::new(0),
            resyncs: Default::default(),
            ambiguous: AtomicU64::new(0),
            changes: watch::channel(false).0,
        }
    }
}

/// `now_ms`, never 0 (0 means never).
fn stamp() -> u64 {
    crate::clock::now_ms().max(1)
}

impl Contact {
    /// Whether the watch stream is up (a watch created and answering
    /// within the watchdog's deadline).
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// The connected flag, as a channel that tells each change.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.changes.subscribe()
    }

    /// When etcd last answered anything (a watch message, a keep-alive, a
    /// call), in `now_ms` milliseconds; 0 if never.
    pub fn last_contact_ms(&self) -> u64 {
        self.last_contact_ms.load(Ordering::Acquire)
    }

    /// How long ago etcd last answered, if it ever did.
    pub fn since_contact(&self) -> Option<Duration> {
        since(self.last_contact_ms())
    }

    /// When the last keep-alive that etcd acknowledged was sent; 0 if
    /// never. The lease is known to live until this time plus its TTL.
    pub fn lease_acked_sent_ms(&self) -> u64 {
        self.lease_acked_sent_ms.load(Ordering::Acquire)
    }

    /// Whether `write_fence` has passed since the send time of the last
    /// acknowledged keep-alive, at `now_ms`: a member past it forwards no
    /// write (SPEC.md section 9, out of touch).
    pub fn fenced(&self, now_ms: u64, write_fence: Duration) -> bool {
        let sent = self.lease_acked_sent_ms();
        sent == 0 || now_ms.saturating_sub(sent) >= write_fence.as_millis() as u64
    }

    /// How many resyncs the watcher made for `reason`.
    pub fn resyncs(&self, reason: Resync) -> u64 {
        self.resyncs[reason as usize].load(Ordering::Relaxed)
    }

    /// How many commits got an ambiguous result and had to be resolved.
    pub fn ambiguous_commits(&self) -> u64 {
        self.ambiguous.load(Ordering::Relaxed)
    }

    pub(super) fn count_ambiguous(&self) {
        self.ambiguous.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn touch(&self) {
        self.last_contact_ms.store(stamp(), Ordering::Release);
    }

    pub(super) fn lease_acked(&self, sent_ms: u64) {
        self.lease_acked_sent_ms
            .fetch_max(sent_ms.max(1), Ordering::AcqRel);
        self.touch();
    }

    pub(super) fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Release);
        self.changes
            .send_if_modified(|v| std::mem::replace(v, up) != up);
    }

    pub(super) fn count_resync(&self, reason: Resync) {
        self.resyncs[reason as usize].fetch_add(1, Ordering::Relaxed);
    }
}

fn since(ms: u64) -> Option<Duration> {
    (ms != 0).then(|| Duration::from_millis(crate::clock::now_ms().saturating_sub(ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_closes_write_fence_after_the_last_acknowledged_send() {
        let c = Contact::default();
        let fence = Duration::from_secs(3);
        assert!(c.fenced(10_000, fence), "never acknowledged: fenced");
        c.lease_acked(10_000);
        assert!(!c.fenced(10_000, fence));
        assert!(!c.fenced(12_999, fence));
        assert!(c.fenced(13_000, fence));
        // A late answer to an older keep-alive never moves the time back.
        c.lease_acked(9_000);
        assert_eq!(c.lease_acked_sent_ms(), 10_000);
    }

    #[test]
    fn connected_changes_are_told_once_each() {
        let c = Contact::default();
        let mut rx = c.subscribe();
        c.set_connected(true);
        assert!(rx.has_changed().expect("open"));
        assert!(*rx.borrow_and_update());
        c.set_connected(true);
        assert!(!rx.has_changed().expect("open"), "no change, no news");
        c.set_connected(false);
        assert!(rx.has_changed().expect("open"));
        assert!(!c.connected());
    }
}
