//! The sample upstreams' business metric: every request a sample app
//! answers with 200 places an "order", unless the app was told to stop
//! taking orders (it still answers 200: the regression a status code does
//! not show). Counted per second over the last few seconds, so the demo's
//! `analysis.checks` entry can read a pool's orders per request over a
//! short window, as a Prometheus `rate()` would give it.
//!
//! The sample apps are the demo's stand-in for an application, not the
//! proxy: a short lock per request is fine here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Seconds of history kept; the window read is at most this.
const SECONDS: usize = 8;

/// The window [`Orders::recent`] reads, in whole seconds (the current,
/// partial second included).
pub const WINDOW_SECONDS: u64 = 5;

#[derive(Debug, Clone, Copy, Default)]
struct Second {
    /// Unix second this slot counts; a slot of an older second is stale.
    at: u64,
    requests: u64,
    orders: u64,
}

/// One sample app's order counts.
#[derive(Debug, Default)]
pub struct Orders {
    stopped: AtomicBool,
    seconds: Mutex<[Second; SECONDS]>,
    /// Since start: (requests, orders).
    totals: Mutex<(u64, u64)>,
}

/// Requests and orders over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub orders: u64,
}

impl Counts {
    pub fn add(&mut self, other: Counts) {
        self.requests += other.requests;
        self.orders += other.orders;
    }

    /// Orders per request; None without requests (no data, not zero).
    pub fn per_request(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.orders as f64 / self.requests as f64)
    }
}

impl Orders {
    /// Stop (`false`) or resume (`true`) taking orders.
    pub fn set_taking(&self, taking: bool) {
        self.stopped.store(!taking, Ordering::Relaxed);
    }

    pub fn taking(&self) -> bool {
        !self.stopped.load(Ordering::Relaxed)
    }

    /// One request answered at unix second `now`, with `ok` a 200.
    pub fn record(&self, now: u64, ok: bool) {
        let ordered = ok && self.taking();
        if let Ok(mut seconds) = self.seconds.lock() {
            let slot = &mut seconds[(now % SECONDS as u64) as usize];
            if slot.at != now {
                *slot = Second {
                    at: now,
                    ..Second::default()
                };
            }
            slot.requests += 1;
            slot.orders += u64::from(ordered);
        }
        if let Ok(mut t) = self.totals.lock() {
            t.0 += 1;
            t.1 += u64::from(ordered);
        }
    }

    /// Counts over the [`WINDOW_SECONDS`] seconds up to unix second `now`.
    pub fn recent(&self, now: u64) -> Counts {
        let mut c = Counts::default();
        let Ok(seconds) = self.seconds.lock() else {
            return c;
        };
        for s in seconds.iter() {
            if s.at <= now && now - s.at < WINDOW_SECONDS {
                c.requests += s.requests;
                c.orders += s.orders;
            }
        }
        c
    }

    /// Counts since the app started.
    pub fn total(&self) -> Counts {
        let (requests, orders) = self.totals.lock().map(|t| *t).unwrap_or_default();
        Counts { requests, orders }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_per_request_over_the_last_seconds_and_a_stop_that_still_answers() {
        let o = Orders::default();
        assert_eq!(o.recent(100).per_request(), None, "no requests: no data");
        for _ in 0..4 {
            o.record(100, true);
        }
        o.record(100, false); // a 500 places no order
        assert_eq!(
            o.recent(100),
            Counts {
                requests: 5,
                orders: 4
            }
        );
        o.set_taking(false);
        for _ in 0..5 {
            o.record(102, true);
        }
        let c = o.recent(102);
        assert_eq!((c.requests, c.orders), (10, 4));
        assert_eq!(c.per_request(), Some(0.4));
        // Second 100 leaves the window at 105; 102 at 107.
        assert_eq!(o.recent(104).requests, 10);
        assert_eq!(o.recent(105).requests, 5);
        assert_eq!(o.recent(107).per_request(), None);
        // A slot reused by a later second starts afresh.
        o.set_taking(true);
        o.record(108, true);
        assert_eq!(o.recent(108).requests, 1);
        assert_eq!(
            o.total(),
            Counts {
                requests: 11,
                orders: 5
            }
        );
    }
}
