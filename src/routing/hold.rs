//! The write hold of a cutover (SPEC.md section 5).
//!
//! While a switch with `hold_writes` runs, the routing table carries a
//! [`Hold`]: requests with unsafe methods that see it wait on it instead of
//! being forwarded, and are released in arrival order (a fair semaphore)
//! when the controller flips the table or gives up. At most `max_held`
//! wait at once; the rest are refused with 503 and `Retry-After`.
//!
//! In fleet mode a hold may also end without an outcome this member knows
//! ([`Hold::reject`]): the held writes, and writes that meet it later, are
//! then answered 503 instead of forwarded, because the table this member
//! still has may name the pool the rest of the fleet has left. For the
//! same reason a fleet member's held write that outlives the safety
//! timeout is refused, never forwarded.
//!
//! Writes being routed are counted in [`WritesInFlight`] from the moment
//! they load the table until their response ends. A write registers, then
//! looks at the table again; the controller publishes the hold, then reads
//! the count. Both sides use sequentially consistent operations, so either
//! the write sees the hold or the controller sees the write: none slips past.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// More permits than there can ever be waiters: the release lets all go.
const RELEASE_PERMITS: usize = 1 << 24;

#[derive(Debug)]
pub struct Hold {
    max_held: usize,
    /// Requests waiting now.
    held_now: AtomicUsize,
    /// Requests that waited on this hold in all.
    held_total: AtomicU64,
    /// No permits until release; tokio's semaphore serves waiters in order.
    gate: Semaphore,
    /// A held request gives up waiting after this long (the controller
    /// always releases within `max_hold`; this only guards against a bug).
    pub safety_timeout: Duration,
    /// Fleet mode: a write that gave up waiting is refused, not forwarded.
    strict: bool,
    /// The hold ended without an outcome: every held write is refused.
    rejected: AtomicBool,
}

/// How a held request's wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// Released: decide again on the table in force.
    Released,
    /// Refused: answer 503 with `Retry-After`, forward nothing.
    Refused,
}

impl Hold {
    pub fn new(max_held: usize, max_hold: Duration) -> Self {
        Hold {
            max_held,
            held_now: AtomicUsize::new(0),
            held_total: AtomicU64::new(0),
            gate: Semaphore::new(0),
            safety_timeout: max_hold + Duration::from_secs(5),
            strict: false,
            rejected: AtomicBool::new(false),
        }
    }

    /// A fleet member's hold: a write that waits past the safety timeout
    /// is refused (see the module doc).
    pub fn strict(mut self) -> Self {
        self.strict = true;
        self
    }

    /// Take a place in the queue, or None when it is full.
    pub fn enter(self: &Arc<Self>) -> Option<HeldTicket> {
        if self.held_now.fetch_add(1, Ordering::SeqCst) >= self.max_held {
            self.held_now.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        self.held_total.fetch_add(1, Ordering::Relaxed);
        Some(HeldTicket { hold: self.clone() })
    }

    /// Let every held request go (in arrival order), and any that comes later.
    pub fn release(&self) {
        self.gate.add_permits(RELEASE_PERMITS);
    }

    /// Refuse every held request, and any that comes later: the hold's
    /// outcome is not known here (fleet mode, see the module doc).
    pub fn reject(&self) {
        self.rejected.store(true, Ordering::SeqCst);
        self.gate.add_permits(RELEASE_PERMITS);
    }

    /// Whether [`Hold::reject`] was called.
    #[inline]
    pub fn rejected(&self) -> bool {
        self.rejected.load(Ordering::SeqCst)
    }

    pub fn held_total(&self) -> u64 {
        self.held_total.load(Ordering::Relaxed)
    }

    pub fn held_now(&self) -> usize {
        self.held_now.load(Ordering::SeqCst)
    }
}

/// A request's place in the hold; leaving (release or client gone) frees it.
#[derive(Debug)]
pub struct HeldTicket {
    hold: Arc<Hold>,
}

impl HeldTicket {
    /// Wait for the release (or the refusal). Dropping the future (the
    /// client went away) simply forgets the request.
    pub async fn wait(self) -> Waited {
        let waited = tokio::time::timeout(self.hold.safety_timeout, self.hold.gate.acquire()).await;
        if waited.is_err() {
            if self.hold.strict {
                tracing::error!("a held request waited past max_hold with no outcome; refusing it");
                return Waited::Refused;
            }
            tracing::error!("a held request waited past max_hold; releasing it");
        }
        if self.hold.rejected() {
            Waited::Refused
        } else {
            Waited::Released
        }
    }
}

impl Drop for HeldTicket {
    fn drop(&mut self) {
        self.hold.held_now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Writes being routed or in flight, across all pools.
#[derive(Debug, Default)]
pub struct WritesInFlight(AtomicI64);

impl WritesInFlight {
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    pub fn enter(self: &Arc<Self>) -> WriteToken {
        self.0.fetch_add(1, Ordering::SeqCst);
        WriteToken(self.clone())
    }
}

/// One write counted in flight until dropped.
pub struct WriteToken(Arc<WritesInFlight>);

impl Drop for WriteToken {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn held_requests_wait_for_release_in_order_and_the_queue_is_bounded() {
        let hold = Arc::new(Hold::new(2, Duration::from_secs(2)));
        let a = hold.enter().unwrap();
        let b = hold.enter().unwrap();
        assert!(hold.enter().is_none(), "a third request exceeds max_held");
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, ticket) in [("a", a), ("b", b)] {
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                ticket.wait().await;
                order.lock().unwrap().push(name);
            }));
            tokio::task::yield_now().await;
        }
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(
            order.lock().unwrap().is_empty(),
            "released before the release"
        );
        hold.release();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec!["a", "b"]);
        assert_eq!(hold.held_now(), 0);
        assert_eq!(hold.held_total(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_forgotten_release_times_out_instead_of_hanging() {
        let hold = Arc::new(Hold::new(1, Duration::from_secs(1)));
        let t = hold.enter().unwrap();
        let waited = tokio::spawn(t.wait());
        tokio::time::advance(Duration::from_secs(7)).await;
        assert_eq!(waited.await.unwrap(), Waited::Released);
        assert_eq!(hold.held_now(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fleet_hold_refuses_what_it_cannot_release_safely() {
        // Past the safety timeout: refused, not released.
        let hold = Arc::new(Hold::new(4, Duration::from_secs(1)).strict());
        let waited = tokio::spawn(hold.enter().unwrap().wait());
        tokio::time::advance(Duration::from_secs(7)).await;
        assert_eq!(waited.await.unwrap(), Waited::Refused);

        // Rejected: the held ones and later ones are refused at once.
        let hold = Arc::new(Hold::new(4, Duration::from_secs(60)).strict());
        let a = tokio::spawn(hold.enter().unwrap().wait());
        tokio::task::yield_now().await;
        assert!(!hold.rejected());
        hold.reject();
        assert_eq!(a.await.unwrap(), Waited::Refused);
        assert!(hold.rejected());
        assert_eq!(hold.enter().unwrap().wait().await, Waited::Refused);
        assert_eq!(hold.held_now(), 0);

        // Released normally: released.
        let hold = Arc::new(Hold::new(4, Duration::from_secs(60)).strict());
        let b = tokio::spawn(hold.enter().unwrap().wait());
        tokio::task::yield_now().await;
        hold.release();
        assert_eq!(b.await.unwrap(), Waited::Released);
    }

    #[test]
    fn write_tokens_count_in_flight_writes() {
        let w = Arc::new(WritesInFlight::default());
        let a = w.enter();
        let b = w.enter();
        assert_eq!(w.get(), 2);
        drop(a);
        drop(b);
        assert_eq!(w.get(), 0);
    }
}
