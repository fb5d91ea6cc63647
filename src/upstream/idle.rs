//! An endpoint's idle keep-alive connections.
//!
//! A lock-free queue (crossbeam's `SegQueue`) bounded by a count: a request
//! takes the connection idle the longest, and gives it back when its response is read
//! whole. Connections idle for `timeouts.upstream_idle`, or closed by the
//! upstream meanwhile, are closed by [`IdlePool::sweep`], called from a
//! timer, so the surplus a burst opened does not stay open (and, once the
//! upstream gives up on it, in CLOSE_WAIT) until the next burst. First in,
//! first out keeps every connection in use, so age alone would never let a
//! burst's surplus go under a steady lighter load: [`IdlePool::trim`] also
//! closes, each sweep, half of what is idle beyond the most connections in
//! use at once over the last few sweeps, keeping one at least (what
//! HAProxy's idle purge does; see `PeakWindow` in the endpoint).
//!
//! Last in, first out (what nginx's and HAProxy's keep-alive caches do)
//! was tried: a `Mutex<Vec>` that the data plane only `try_lock`s, with a
//! lock-free overflow queue for when another thread holds it. Under the
//! soak test's two worker threads a `take` that found the stack busy and
//! the overflow empty opened a new connection although idle ones were
//! there, and ten or more surplus connections piled up in a minute. A
//! lock-free stack without that flaw needs `unsafe` (or an allocation per
//! connection given back), which this crate forbids; and the load
//! comparison could not tell the two orders apart. So first in, first out.
//!
//! Memory follows use. crossbeam's `ArrayQueue` allocated and wrote all of
//! its slots up front: 40 KiB per endpoint at 1024, even for an endpoint
//! that never keeps a connection idle (an HTTP/2 pool's), 113 MB resident
//! for 2000 endpoints at rest (24 MB now). `SegQueue` allocates its slots
//! in blocks of 31 (1248 bytes for an `UpstreamConn`) as they fill and
//! frees each block once it is read through, so an endpoint never used
//! holds no block and one at rest one or two. Its cost: a steady take-and-give-back load
//! allocates one block (zeroed) per 31 connections given back and frees
//! one per 31 taken; with its more involved pop that is some 40
//! instructions per request more than `ArrayQueue`, of 24 500
//! (`benches/compare/callgrind.sh`, figures in issue 22's notes). It has
//! no bound, so `count` keeps one: a connection given back first reserves
//! a place (compare-and-swap, refused at `capacity`), and a place is given
//! up only after its connection is popped and not pushed again. The queue
//! therefore never holds more than `capacity`, and `count` (what `len`
//! says) is the queue's length plus the puts and takes between reserving
//! and pushing, or popping and releasing: exact whenever the pool is quiet.
//! The other candidate, a small `ArrayQueue` swapped (`ArcSwap`) for a
//! larger one when full, adds a guard to every take and put and a move of
//! connections between queues that concurrent takes must not miss.

use crossbeam_queue::SegQueue;
use std::sync::atomic::{AtomicUsize, Ordering};

/// An idle connection (or anything, in tests) and when it went idle.
struct Idle<C> {
    conn: C,
    since_ms: u64,
}

/// What the pool needs to know of a connection.
pub trait IdleConn {
    /// Still open, as far as can be told without a system call.
    fn still_open(&mut self) -> bool;
}

impl IdleConn for super::UpstreamConn {
    #[inline]
    fn still_open(&mut self) -> bool {
        super::UpstreamConn::still_open(self)
    }
}

pub struct IdlePool<C> {
    queue: SegQueue<Idle<C>>,
    /// Places reserved in `queue`: at most `capacity`.
    count: AtomicUsize,
    capacity: usize,
}

impl<C: IdleConn> IdlePool<C> {
    /// Keeps at most `capacity` connections; more are closed when given back.
    pub fn new(capacity: usize) -> Self {
        IdlePool {
            queue: SegQueue::new(),
            count: AtomicUsize::new(0),
            capacity: capacity.max(1),
        }
    }

    /// Reserve a place for one more connection; false when full.
    #[inline]
    fn reserve(&self) -> bool {
        self.count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok()
    }

    /// Give up the place of a connection popped and not pushed again.
    #[inline]
    fn release(&self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }

    /// The oldest connection, its place given up.
    #[inline]
    fn pop(&self) -> Option<Idle<C>> {
        let idle = self.queue.pop()?;
        self.release();
        Some(idle)
    }

    fn fit(idle: &mut Idle<C>, now_ms: u64, max_idle_ms: u64) -> bool {
        now_ms.saturating_sub(idle.since_ms) < max_idle_ms && idle.conn.still_open()
    }

    /// An idle connection that is still open and went idle less than
    /// `max_idle_ms` ago. Those found closed or too old on the way are
    /// dropped, and so closed.
    #[inline]
    pub fn take(&self, now_ms: u64, max_idle_ms: u64) -> Option<C> {
        while let Some(mut idle) = self.pop() {
            if Self::fit(&mut idle, now_ms, max_idle_ms) {
                return Some(idle.conn);
            }
        }
        None
    }

    /// Give `conn` back, idle since `now_ms`. Dropped (closed) when the pool
    /// is full.
    #[inline]
    pub fn put(&self, conn: C, now_ms: u64) {
        if self.reserve() {
            self.queue.push(Idle {
                conn,
                since_ms: now_ms,
            });
        }
    }

    /// Close the connections idle for `max_idle_ms` or more, or found closed
    /// by the upstream; keep the others. Called from a timer, not from
    /// requests (which may take and give back connections meanwhile).
    pub fn sweep(&self, now_ms: u64, max_idle_ms: u64) {
        for _ in 0..self.len() {
            // Popped without giving up its place, which it keeps when
            // pushed back: a concurrent put cannot take it meanwhile.
            let Some(mut idle) = self.queue.pop() else {
                break;
            };
            if Self::fit(&mut idle, now_ms, max_idle_ms) {
                self.queue.push(idle);
            } else {
                self.release();
            }
        }
    }

    /// Close half (rounded up) of the idle connections beyond `needed`,
    /// the oldest first: a burst's surplus goes within a few sweeps, while
    /// a load that comes back finds most of what it used still open.
    /// Returns how many were closed.
    pub fn trim(&self, needed: usize) -> usize {
        let surplus = self.len().saturating_sub(needed);
        let close = surplus.div_ceil(2);
        let mut closed = 0;
        while closed < close && self.pop().is_some() {
            closed += 1;
        }
        closed
    }

    /// Close every idle connection.
    pub fn clear(&self) {
        while self.pop().is_some() {}
    }

    /// Connections idle (exact when no take or put is under way).
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes one slot of the queue takes: the connection, when it went
    /// idle, and crossbeam's state word.
    pub const SLOT_BYTES: usize = std::mem::size_of::<(usize, Idle<C>)>();

    /// Slots in one of the queue's blocks (crossbeam-queue 0.3's
    /// `BLOCK_CAP`), allocated together when the queue needs them.
    pub const BLOCK_SLOTS: usize = 31;

    /// Bytes one block takes: its slots and the pointer to the next block.
    pub const BLOCK_BYTES: usize = Self::BLOCK_SLOTS * Self::SLOT_BYTES + 8;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A connection with a name, that can be made to look closed, and that
    /// counts its drops (closes).
    struct Fake {
        id: u32,
        open: bool,
        closed: Arc<AtomicUsize>,
    }
    impl IdleConn for Fake {
        fn still_open(&mut self) -> bool {
            self.open
        }
    }
    impl Drop for Fake {
        fn drop(&mut self) {
            self.closed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn fake(id: u32, closed: &Arc<AtomicUsize>) -> Fake {
        Fake {
            id,
            open: true,
            closed: closed.clone(),
        }
    }

    #[test]
    fn trimming_closes_half_the_surplus_oldest_first() {
        let closed = Arc::new(AtomicUsize::new(0));
        let pool = IdlePool::new(64);
        for id in 1..=16 {
            pool.put(fake(id, &closed), 0);
        }
        // 16 idle, 4 needed: half of the 12 beyond go, the oldest ones.
        assert_eq!(pool.trim(4), 6);
        assert_eq!(closed.load(Ordering::Relaxed), 6);
        assert_eq!(pool.len(), 10);
        assert_eq!(pool.take(0, u64::MAX).map(|c| c.id), Some(7));
        // Sweep after sweep the surplus shrinks to what is needed, never below.
        for _ in 0..10 {
            pool.trim(4);
        }
        assert_eq!(pool.len(), 4);
        assert_eq!(pool.trim(4), 0);
        assert_eq!(pool.trim(8), 0);
        assert_eq!(pool.len(), 4);
        assert_eq!(pool.trim(0), 2);
        assert_eq!(pool.trim(0), 1);
        assert_eq!(pool.trim(0), 1);
        assert!(pool.is_empty());
    }

    #[test]
    fn connections_are_taken_in_the_order_given_back() {
        let closed = Arc::new(AtomicUsize::new(0));
        let pool = IdlePool::new(8);
        for id in 1..=3 {
            pool.put(fake(id, &closed), 100 + u64::from(id));
        }
        let ids: Vec<u32> = std::iter::from_fn(|| pool.take(110, 1_000))
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(closed.load(Ordering::Relaxed), 3); // the taken ones, dropped here
        assert!(pool.is_empty());
    }

    #[test]
    fn the_sweep_closes_old_and_closed_connections_and_keeps_the_rest() {
        let closed = Arc::new(AtomicUsize::new(0));
        let pool = IdlePool::new(8);
        pool.put(fake(1, &closed), 0); // too old at 10 s with a 1 s limit
        pool.put(fake(2, &closed), 9_500);
        let mut dead = fake(3, &closed);
        dead.open = false; // the upstream closed it
        pool.put(dead, 9_500);
        pool.put(fake(4, &closed), 9_900);
        pool.sweep(10_000, 1_000);
        assert_eq!(pool.len(), 2);
        assert_eq!(closed.load(Ordering::Relaxed), 2);
        let ids: Vec<u32> = std::iter::from_fn(|| pool.take(10_000, 1_000))
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, [2, 4], "the kept ones, still in order");
    }

    #[test]
    fn closed_or_old_connections_are_skipped_and_closed() {
        let closed = Arc::new(AtomicUsize::new(0));
        let pool = IdlePool::new(8);
        pool.put(fake(1, &closed), 0); // too old by 1_500
        let mut dead = fake(2, &closed);
        dead.open = false;
        pool.put(dead, 1_000);
        pool.put(fake(3, &closed), 1_000);
        assert_eq!(pool.take(1_500, 1_000).map(|c| c.id), Some(3));
        assert_eq!(closed.load(Ordering::Relaxed), 3);
        assert!(pool.take(1_500, 1_000).is_none());
    }

    #[test]
    fn full_pool_closes_what_is_given_back() {
        let closed = Arc::new(AtomicUsize::new(0));
        let pool = IdlePool::new(2);
        for id in 1..=3 {
            pool.put(fake(id, &closed), 0);
        }
        assert_eq!(pool.len(), 2);
        assert_eq!(closed.load(Ordering::Relaxed), 1);
        pool.clear();
        assert_eq!(closed.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn many_threads_lose_no_connection_and_open_none() {
        let closed = Arc::new(AtomicUsize::new(0));
        let pool = Arc::new(IdlePool::new(64));
        for id in 0..8 {
            pool.put(fake(id, &closed), 0);
        }
        let misses = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (pool, misses) = (pool.clone(), misses.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        match pool.take(0, 1_000) {
                            Some(c) => pool.put(c, 0),
                            None => {
                                misses.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(pool.len(), 8);
        assert_eq!(closed.load(Ordering::Relaxed), 0);
        // Four threads holding at most one each never find 8 all taken.
        assert_eq!(misses.load(Ordering::Relaxed), 0, "a take came back empty");
    }

    /// Threads putting, taking, sweeping and trimming at once: the queue
    /// never holds more than the bound, and once they are done the count
    /// is the queue's length and every connection is idle or closed.
    #[test]
    fn the_bound_holds_and_the_count_does_not_drift_under_threads() {
        const CAP: usize = 16;
        let closed = Arc::new(AtomicUsize::new(0));
        let pool = Arc::new(IdlePool::new(CAP));
        let over = Arc::new(AtomicUsize::new(0));
        let putters: Vec<_> = (0..4u32)
            .map(|t| {
                let (pool, closed, over) = (pool.clone(), closed.clone(), over.clone());
                std::thread::spawn(move || {
                    for i in 0..20_000u32 {
                        // Three puts for two takes: the pool runs full and
                        // surplus is closed on put.
                        let mut conn = fake(t * 100_000 + i, &closed);
                        conn.open = i % 7 != 0; // some found closed by take or sweep
                        pool.put(conn, u64::from(i % 3));
                        if pool.queue.len() > CAP {
                            over.fetch_add(1, Ordering::Relaxed);
                        }
                        if i % 3 != 0 {
                            drop(pool.take(0, 2));
                        }
                    }
                })
            })
            .collect();
        let sweeper = {
            let pool = pool.clone();
            std::thread::spawn(move || {
                for i in 0..2_000u64 {
                    pool.sweep(i % 4, 2);
                    pool.trim(CAP / 2);
                }
            })
        };
        for t in putters {
            t.join().unwrap();
        }
        sweeper.join().unwrap();
        assert_eq!(over.load(Ordering::Relaxed), 0, "the queue went past {CAP}");
        let idle = pool.len();
        assert!(idle <= CAP, "{idle} idle");
        assert_eq!(idle, pool.queue.len(), "the count drifted");
        assert_eq!(closed.load(Ordering::Relaxed) + idle, 4 * 20_000);
        pool.clear();
        assert_eq!(closed.load(Ordering::Relaxed), 4 * 20_000);
        assert!(pool.is_empty() && pool.queue.is_empty());
        // Not stuck: full room again after all that.
        for id in 0..CAP as u32 + 1 {
            pool.put(fake(id, &closed), 0);
        }
        assert_eq!(pool.len(), CAP);
        assert_eq!(pool.queue.len(), CAP);
    }
}
