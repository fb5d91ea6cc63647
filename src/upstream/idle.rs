//! An endpoint's idle keep-alive connections, most recently used first.
//!
//! Last in, first out, as nginx's and HAProxy's keep-alive caches: a
//! request takes the connection that went idle last. That one is warm in
//! the caches of both ends, and the least likely to have been closed by the
//! upstream's own keep-alive timeout in the meantime; the connections a
//! burst opened and steady traffic no longer needs sink to the bottom, grow
//! old there and are closed by the sweep ([`IdlePool::sweep`]). A first-in,
//! first-out queue did the opposite: it kept every connection ever opened
//! in rotation, each one cold and idle for the longest time.
//!
//! The stack is a `Mutex<Vec>` that the data plane only ever `try_lock`s: a
//! request never waits for it. When another thread holds it for the few
//! instructions of a push or a pop, the connection goes to (or comes from)
//! a lock-free overflow queue instead. With one worker thread the stack is
//! never busy.

use crossbeam_queue::ArrayQueue;
use std::sync::{Mutex, MutexGuard, TryLockError};

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
    /// Oldest at the bottom, most recent on top.
    stack: Mutex<Vec<Idle<C>>>,
    /// Where connections go while the stack is busy.
    overflow: ArrayQueue<Idle<C>>,
    capacity: usize,
}

impl<C: IdleConn> IdlePool<C> {
    /// Keeps at most `capacity` connections on the stack (and as many again
    /// in the overflow queue); more are closed when given back.
    pub fn new(capacity: usize) -> Self {
        IdlePool {
            stack: Mutex::new(Vec::new()),
            overflow: ArrayQueue::new(capacity.max(1)),
            capacity,
        }
    }

    /// The stack, unless another thread is in it this instant.
    #[inline]
    fn try_stack(&self) -> Option<MutexGuard<'_, Vec<Idle<C>>>> {
        match self.stack.try_lock() {
            Ok(g) => Some(g),
            // A panic while holding it left a valid Vec.
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// The control plane may wait for the stack.
    fn stack(&self) -> MutexGuard<'_, Vec<Idle<C>>> {
        self.stack
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The most recently idle connection that is still open and went idle
    /// less than `max_idle_ms` ago. Those found closed or too old on the way
    /// are dropped, and so closed.
    #[inline]
    pub fn take(&self, now_ms: u64, max_idle_ms: u64) -> Option<C> {
        let usable = |i: &mut Idle<C>| {
            now_ms.saturating_sub(i.since_ms) < max_idle_ms && i.conn.still_open()
        };
        loop {
            let top = match self.try_stack() {
                Some(mut stack) => stack.pop(),
                None => None,
            };
            match top {
                Some(mut idle) => {
                    if usable(&mut idle) {
                        return Some(idle.conn);
                    }
                    // Too old or closed: dropped here, outside the lock.
                }
                None => break,
            }
        }
        while let Some(mut idle) = self.overflow.pop() {
            if usable(&mut idle) {
                return Some(idle.conn);
            }
        }
        None
    }

    /// Give `conn` back, idle since `now_ms`. Dropped (closed) when the pool
    /// is full.
    #[inline]
    pub fn put(&self, conn: C, now_ms: u64) {
        let idle = Idle {
            conn,
            since_ms: now_ms,
        };
        let idle = match self.try_stack() {
            Some(mut stack) if stack.len() < self.capacity => {
                stack.push(idle);
                return;
            }
            Some(_full) => return,
            None => idle,
        };
        let _full = self.overflow.push(idle);
    }

    /// Close the connections idle for `max_idle_ms` or more, or found closed
    /// by the upstream; keep the others in their order. Called from a timer,
    /// not from requests.
    pub fn sweep(&self, now_ms: u64, max_idle_ms: u64) {
        let mut closed = Vec::new();
        {
            let mut stack = self.stack();
            let mut kept = Vec::with_capacity(stack.len());
            for mut idle in stack.drain(..) {
                if now_ms.saturating_sub(idle.since_ms) < max_idle_ms && idle.conn.still_open() {
                    kept.push(idle);
                } else {
                    closed.push(idle);
                }
            }
            *stack = kept;
        }
        drop(closed); // closes the sockets outside the lock
        for _ in 0..self.overflow.len() {
            let Some(mut idle) = self.overflow.pop() else {
                break;
            };
            if now_ms.saturating_sub(idle.since_ms) < max_idle_ms && idle.conn.still_open() {
                self.put(idle.conn, idle.since_ms);
            }
        }
    }

    /// Close every idle connection.
    pub fn clear(&self) {
        let all = std::mem::take(&mut *self.stack());
        drop(all);
        while self.overflow.pop().is_some() {}
    }

    pub fn len(&self) -> usize {
        self.stack().len() + self.overflow.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
    fn most_recently_idle_is_taken_first() {
        let closed = Arc::new(AtomicUsize::new(0));
        let pool = IdlePool::new(8);
        for id in 1..=3 {
            pool.put(fake(id, &closed), 100 + u64::from(id));
        }
        let ids: Vec<u32> = std::iter::from_fn(|| pool.take(110, 1_000))
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, [3, 2, 1]);
        assert_eq!(closed.load(Ordering::Relaxed), 3); // the taken ones, dropped here
        assert!(pool.is_empty());
    }

    #[test]
    fn steady_reuse_leaves_the_surplus_to_age_out() {
        // A burst opened 5; steady traffic then needs one at a time.
        let closed = Arc::new(AtomicUsize::new(0));
        let pool = IdlePool::new(8);
        for id in 1..=5 {
            pool.put(fake(id, &closed), 0);
        }
        for t in 1..=100u64 {
            let c = pool.take(t * 100, 1_000).expect("a warm connection");
            assert_eq!(c.id, 5, "the same connection serves every request");
            pool.put(c, t * 100);
        }
        // The four the burst left behind went idle at 0: a sweep at 10 s
        // with a 1 s limit closes them and keeps the one in use.
        pool.sweep(10_000, 1_000);
        assert_eq!(pool.len(), 1);
        assert_eq!(closed.load(Ordering::Relaxed), 4);
        // The kept one is gone too once it is old enough.
        pool.sweep(10_000 + 1_000, 1_000);
        assert!(pool.is_empty());
    }

    #[test]
    fn closed_or_old_connections_are_skipped_and_closed() {
        let closed = Arc::new(AtomicUsize::new(0));
        let pool = IdlePool::new(8);
        pool.put(fake(1, &closed), 1_000);
        let mut dead = fake(2, &closed);
        dead.open = false;
        pool.put(dead, 1_000);
        pool.put(fake(3, &closed), 0); // too old by 1_500
        assert_eq!(pool.take(1_500, 1_000).map(|c| c.id), Some(1));
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
    fn a_busy_stack_sends_connections_through_the_overflow() {
        let closed = Arc::new(AtomicUsize::new(0));
        let pool = IdlePool::new(4);
        pool.put(fake(1, &closed), 0);
        {
            // Another thread in the stack: neither put nor take waits.
            let _held = pool.stack.lock().unwrap();
            pool.put(fake(2, &closed), 0);
            assert_eq!(pool.overflow.len(), 1);
            assert_eq!(pool.take(0, 1_000).map(|c| c.id), Some(2));
            assert!(
                pool.take(0, 1_000).is_none(),
                "the stack is busy, the overflow empty"
            );
        }
        assert_eq!(pool.take(0, 1_000).map(|c| c.id), Some(1));
    }

    #[test]
    fn sweep_keeps_young_overflow_entries() {
        let closed = Arc::new(AtomicUsize::new(0));
        let pool = IdlePool::new(4);
        let held = pool.stack.lock().unwrap();
        pool.put(fake(1, &closed), 900);
        pool.put(fake(2, &closed), 0);
        drop(held);
        pool.sweep(1_000, 500);
        assert_eq!(pool.len(), 1);
        assert_eq!(closed.load(Ordering::Relaxed), 1);
        assert_eq!(pool.take(1_000, 500).map(|c| c.id), Some(1));
    }

    #[test]
    fn many_threads_lose_no_connection() {
        let closed = Arc::new(AtomicUsize::new(0));
        let pool = Arc::new(IdlePool::new(64));
        for id in 0..8 {
            pool.put(fake(id, &closed), 0);
        }
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if let Some(c) = pool.take(0, 1_000) {
                            pool.put(c, 0);
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
    }
}
