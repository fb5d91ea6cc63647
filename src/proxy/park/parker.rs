//! One task per listener that waits for all its parked cleartext
//! connections (see the module documentation of [`crate::proxy::park`]).
//!
//! A connection parked in a task of its own still costs that task (tokio
//! aligns a task to 128 bytes; with the wait in it, 512 or more), tokio's
//! readiness record of its socket (`ScheduledIo`, 256 bytes), a timer entry
//! and the service with its state. Here it costs one slab entry (socket,
//! client address, deadline, place under `limits.max_connections`) and one
//! heap entry for its deadline. Its socket leaves tokio's reactor
//! (`into_std`) for an epoll set of the parker's own (mio, edge-triggered,
//! the entry's key as token), which is itself registered with tokio. When
//! the client sends again or closes, the socket goes back to tokio and the
//! listener serves it in a new task, with a new service and watch; when
//! its head deadline passes, or the listener shuts down, it is closed here.
//! The deadlines wait in one heap behind one timer; a woken connection's
//! heap entry stays until its time (its generation no longer matches), and
//! the heap is swept when such entries outnumber the live ones.

use crate::proxy::limits::{ConnectionSlot, ParkedSlot};
use bytes::Bytes;
use mio::unix::SourceFd;
use slab::Slab;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Readiness events taken from the parker's epoll set at a time.
const EVENTS: usize = 256;

/// An idle cleartext connection on its way into the parker (`T`: a
/// `std::net::TcpStream`) or out of it, woken (`T`: tokio's).
pub(crate) struct Idle<T> {
    pub io: T,
    pub ip: IpAddr,
    /// Bytes hyper had read of the next head (usually none).
    pub replay: Bytes,
    /// The deadline of the next head (`timeouts.client_header`).
    pub deadline: Instant,
    pub slot: ConnectionSlot,
}

/// A listener's parker: where its serving tasks hand idle connections.
#[derive(Clone)]
pub(crate) struct Parker {
    tx: mpsc::UnboundedSender<Idle<std::net::TcpStream>>,
}

impl Parker {
    /// Start the parker's task in the listener's `tracker`; it ends when
    /// `stop` is cancelled (closing every parked connection) or when no
    /// `Parker` is left. A woken connection is given to `resume`, with a
    /// `Parker` to park it again. Needs a tokio runtime with IO.
    pub(crate) fn start<F>(
        tracker: &tokio_util::task::TaskTracker,
        stop: CancellationToken,
        resume: F,
    ) -> io::Result<Parker>
    where
        F: Fn(Idle<TcpStream>, Option<Parker>) + Send + 'static,
    {
        let poll = mio::Poll::new()?;
        let set = ParkedSet::new(poll.registry().try_clone()?);
        // tokio deprecates its safe constructor because a caller's `T`
        // could hand it a file descriptor that is closed, or another one,
        // while registered; its replacement is `unsafe`, which this crate
        // forbids. A `mio::Poll` owns its epoll descriptor and always
        // returns that one, so the safe constructor is sound here.
        #[allow(deprecated)]
        let poll = AsyncFd::with_interest(poll, tokio::io::Interest::READABLE)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let weak = tx.downgrade();
        tracker.spawn(run(poll, set, rx, stop, move |idle| {
            resume(idle, weak.upgrade().map(|tx| Parker { tx }))
        }));
        Ok(Parker { tx })
    }

    /// The parker has stopped (the listener shuts down): park nothing.
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Park `idle` until its client sends again (or closes), its deadline
    /// passes or the listener shuts down.
    pub(crate) fn park(&self, idle: Idle<std::net::TcpStream>) {
        if let Err(refused) = self.tx.send(idle) {
            close(refused.0.io);
        }
    }
}

async fn run(
    mut poll: AsyncFd<mio::Poll>,
    mut set: ParkedSet,
    mut rx: mpsc::UnboundedReceiver<Idle<std::net::TcpStream>>,
    stop: CancellationToken,
    resume: impl Fn(Idle<TcpStream>),
) {
    let mut events = mio::Events::with_capacity(EVENTS);
    let mut stopped = pin!(stop.cancelled());
    // The parker's one timer (not a wait): reset to the earliest parked
    // deadline below, so parked connections need no timer each.
    let mut timer = pin!(tokio::time::sleep(Duration::ZERO));
    let mut timer_at = None;
    loop {
        let next = set.next_deadline();
        if next != timer_at {
            if let Some(at) = next {
                timer.as_mut().reset(at);
            }
            timer_at = next;
        }
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            _ = &mut timer, if timer_at.is_some() => {
                timer_at = None;
                set.expire(Instant::now());
            }
            idle = rx.recv() => match idle {
                Some(idle) => set.insert(idle),
                None => break,
            },
            ready = poll.readable_mut() => {
                let mut ready = match ready {
                    Ok(ready) => ready,
                    Err(e) => {
                        tracing::warn!(error = %e, "parked connections: poll failed, closing them");
                        break;
                    }
                };
                match ready.get_inner_mut().poll(&mut events, Some(Duration::ZERO)) {
                    Ok(()) if events.is_empty() => ready.clear_ready(),
                    Ok(()) => {
                        for event in &events {
                            if let Some(idle) = set.wake(event.token().0) {
                                resume(idle);
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "parked connections: poll failed, closing them");
                        break;
                    }
                }
            }
        }
    }
    rx.close();
    while let Ok(idle) = rx.try_recv() {
        close(idle.io);
    }
    set.close_all();
}

/// One parked connection.
struct Entry {
    stream: std::net::TcpStream,
    /// Tells this entry's heap entry from those of earlier ones at its key.
    generation: u32,
    ip: IpAddr,
    /// Nanoseconds after [`ParkedSet::origin`].
    deadline: u64,
    /// Almost always `None`: kept small.
    replay: Option<Box<[u8]>>,
    slot: ParkedSlot,
}

/// The parked connections and their deadlines.
struct ParkedSet {
    registry: mio::Registry,
    entries: Slab<Entry>,
    /// (deadline, key, generation), soonest first.
    deadlines: BinaryHeap<Reverse<(u64, u32, u32)>>,
    generation: u32,
    origin: Instant,
}

impl ParkedSet {
    fn new(registry: mio::Registry) -> Self {
        ParkedSet {
            registry,
            entries: Slab::new(),
            deadlines: BinaryHeap::new(),
            generation: 0,
            origin: Instant::now(),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    fn insert(&mut self, idle: Idle<std::net::TcpStream>) {
        let vacant = self.entries.vacant_entry();
        let key = vacant.key();
        let Ok(key32) = u32::try_from(key) else {
            close(idle.io);
            return;
        };
        let fd = idle.io.as_raw_fd();
        let token = mio::Token(key);
        if let Err(e) = self
            .registry
            .register(&mut SourceFd(&fd), token, mio::Interest::READABLE)
        {
            tracing::debug!(error = %e, "a parked connection could not be watched: closed");
            close(idle.io);
            return;
        }
        self.generation = self.generation.wrapping_add(1);
        let deadline = u64::try_from(
            idle.deadline
                .saturating_duration_since(self.origin)
                .as_nanos(),
        )
        .unwrap_or(u64::MAX);
        vacant.insert(Entry {
            stream: idle.io,
            generation: self.generation,
            ip: idle.ip,
            deadline,
            replay: (!idle.replay.is_empty()).then(|| Box::from(&idle.replay[..])),
            slot: idle.slot.park(),
        });
        self.deadlines
            .push(Reverse((deadline, key32, self.generation)));
        self.sweep();
    }

    /// The client of the connection at `key` sent something or closed:
    /// the connection, back in tokio's reactor.
    fn wake(&mut self, key: usize) -> Option<Idle<TcpStream>> {
        let entry = self.entries.try_remove(key)?;
        let fd = entry.stream.as_raw_fd();
        if let Err(e) = self.registry.deregister(&mut SourceFd(&fd)) {
            tracing::debug!(error = %e, "a parked connection could not be unwatched: closed");
            return None;
        }
        let io = match TcpStream::from_std(entry.stream) {
            Ok(io) => io,
            Err(e) => {
                tracing::debug!(error = %e, "a woken connection could not be served: closed");
                return None;
            }
        };
        Some(Idle {
            io,
            ip: entry.ip,
            replay: entry.replay.map(Bytes::from).unwrap_or_default(),
            deadline: self.origin + Duration::from_nanos(entry.deadline),
            slot: entry.slot.wake(),
        })
    }

    /// The earliest deadline in the heap (perhaps of a woken connection).
    fn next_deadline(&self) -> Option<Instant> {
        let Reverse((at, _, _)) = self.deadlines.peek()?;
        Some(self.origin + Duration::from_nanos(*at))
    }

    /// Close the connections whose deadline is `now` or past.
    fn expire(&mut self, now: Instant) {
        let now = self.nanos(now);
        while let Some(&Reverse((at, key, generation))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let key = key as usize;
            if self
                .entries
                .get(key)
                .is_some_and(|e| e.generation == generation)
            {
                close(self.entries.remove(key).stream);
            }
        }
    }

    /// Drop the heap entries of woken connections once they outnumber the
    /// parked ones.
    fn sweep(&mut self) {
        if self.deadlines.len() <= 2 * self.entries.len() + 64 {
            return;
        }
        let entries = &self.entries;
        self.deadlines.retain(|Reverse((_, key, generation))| {
            entries
                .get(*key as usize)
                .is_some_and(|e| e.generation == *generation)
        });
    }

    fn close_all(&mut self) {
        for entry in self.entries.drain() {
            close(entry.stream);
        }
        self.deadlines.clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Close a parked stream as hyper closes an idle one: shut down writing
/// (a FIN after the last response), then close.
fn close(stream: std::net::TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

#[cfg(test)]
mod tests;
