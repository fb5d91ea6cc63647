//! Per-pool statistics windows: what automatic rollback (SPEC.md section 4)
//! and `GET /api/v1/status` read.
//!
//! [`PoolStats`] is written on the hot path by every request and read by the
//! controller once per `rollback.interval`. Recording takes no lock and
//! allocates nothing: it adds to atomics in one slot of a ring of short time
//! buckets. Reading sums the slots that fall in the asked window.
//!
//! Layout:
//! - Time: a ring of buckets [`MIN_BUCKET_MS`] (100 ms) wide, or wider for
//!   windows over 60 s so that the ring never holds more than
//!   [`MAX_BUCKETS`] + 1 slots (window / 600: 1 s buckets for a 10 min
//!   window). The newest, partial bucket is always read, so a verdict sees a
//!   request as soon as it has been recorded.
//! - Latency: a log-linear histogram (HDR style) in units of 8 µs: exact below
//!   64 µs, then 8 linear sub-buckets per power of two up to 67 s (longer
//!   latencies land in the last bucket). A bucket is at most 12.5% wide and a
//!   quantile is reported as its bucket's midpoint, so p50/p99 are within
//!   6.25% between 100 µs and 60 s.
//! - Memory: 24 + 168 × 4 = 696 bytes per slot, at most 601 slots: about
//!   420 KB per pool whatever the window.
//!
//! A slot is tagged with the absolute index of the bucket it holds (`epoch`).
//! The first writer of a new lap claims the slot by swapping the tag for
//! [`RESETTING`], zeroes it, then publishes the new tag; writers that meet a
//! slot being reset drop their sample (a count lost at a bucket boundary,
//! never a wrong one), and readers skip a slot whose tag is not the bucket
//! they expect or that changed while they read it.
//!
//! This module must not know about pools, HTTP or Prometheus: the caller
//! supplies the clock ([`now_ms`]) and the outcome.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Narrowest time bucket, in milliseconds.
pub const MIN_BUCKET_MS: u64 = 100;
/// Most buckets a window is split into; wider windows get wider buckets.
pub const MAX_BUCKETS: u64 = 600;

/// Sub-buckets per power of two (log2).
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Histogram unit: 2^UNIT_SHIFT microseconds (8 µs).
const UNIT_SHIFT: u32 = 3;
/// Highest power of two (in units) the histogram distinguishes: 2^23 × 8 µs = 67 s.
const TOP_EXP: u32 = 22;
/// Number of histogram buckets: 8 exact ones, then 8 per power of two from 2^3 to 2^22.
pub const HIST_BUCKETS: usize = ((TOP_EXP + 1 - SUB_BITS + 1) as u64 * SUB) as usize;
const MAX_UNITS: u64 = (1 << (TOP_EXP + 1)) - 1;

/// Tag of a slot being zeroed for a new lap; larger than any real tag.
const RESETTING: u64 = u64::MAX;

/// Milliseconds since the first call, on a monotonic clock shared by the
/// whole process. The clock [`PoolStats`] expects in production.
pub use crate::clock::now_ms;

/// How a proxied request ended, as far as statistics care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered with this status (or the proxy answered for it).
    Status(u16),
    /// No response from the upstream: refused, reset, timed out, invalid.
    TransportError,
}

impl Outcome {
    /// Errors for automatic rollback: 5xx answers and transport failures.
    /// A 4xx is the client's mistake, not the pool's.
    pub const fn is_error(self) -> bool {
        match self {
            Outcome::Status(code) => code >= 500,
            Outcome::TransportError => true,
        }
    }
}

/// Figures of one pool over a window, as shown by `status` and judged by
/// the rollback rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowStats {
    pub requests: u64,
    /// 5xx answers and transport errors.
    pub errors: u64,
    /// `errors / requests`, 0 without requests.
    pub error_rate: f64,
    /// Requests per second over the part of the window covered.
    pub rps: f64,
    /// Median latency in milliseconds; `None` without samples.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency in milliseconds; `None` without samples.
    pub p99_ms: Option<f64>,
}

/// One time bucket of the ring.
struct Slot {
    /// Absolute bucket index + 1 this slot holds; 0 never used; [`RESETTING`].
    epoch: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU32; HIST_BUCKETS],
}

impl Slot {
    fn new() -> Self {
        Slot {
            epoch: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }

    /// Make this slot hold bucket `tag`, zeroing an older lap. False when the
    /// sample must be dropped: the slot is being reset, or already holds a
    /// newer bucket (the caller's clock reading is more than a lap old).
    fn claim(&self, tag: u64) -> bool {
        let mut current = self.epoch.load(Ordering::Acquire);
        loop {
            if current == tag {
                return true;
            }
            if current > tag {
                return false;
            }
            match self.epoch.compare_exchange_weak(
                current,
                RESETTING,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.requests.store(0, Ordering::Relaxed);
                    self.errors.store(0, Ordering::Relaxed);
                    for count in &self.latency {
                        count.store(0, Ordering::Relaxed);
                    }
                    self.epoch.store(tag, Ordering::Release);
                    return true;
                }
                Err(actual) => current = actual,
            }
        }
    }
}

/// Sums gathered from the slots of a window.
struct Totals {
    requests: u64,
    errors: u64,
    latency: [u64; HIST_BUCKETS],
}

/// The statistics window of one pool. Share it by `Arc`; every method takes `&self`.
pub struct PoolStats {
    bucket_ms: u64,
    slots: Box<[Slot]>,
}

impl std::fmt::Debug for PoolStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolStats")
            .field("bucket_ms", &self.bucket_ms)
            .field("slots", &self.slots.len())
            .finish()
    }
}

impl PoolStats {
    /// A ring able to answer for windows up to `window` (at least one bucket).
    pub fn new(window: Duration) -> Self {
        let window_ms = duration_ms(window).max(1);
        let bucket_ms = window_ms.div_ceil(MAX_BUCKETS).max(MIN_BUCKET_MS);
        // One more slot than the window needs: the oldest bucket overlapping
        // the window is still readable while the newest one fills.
        let len = window_ms.div_ceil(bucket_ms) + 1;
        let slots = (0..len).map(|_| Slot::new()).collect();
        PoolStats { bucket_ms, slots }
    }

    /// Width of one time bucket.
    pub fn bucket(&self) -> Duration {
        Duration::from_millis(self.bucket_ms)
    }

    /// Longest window this ring can answer for; longer asks are cut to it.
    /// Build a new `PoolStats` when `rollback.window` grows.
    pub fn capacity(&self) -> Duration {
        Duration::from_millis((self.slots.len() as u64 - 1) * self.bucket_ms)
    }

    /// Count one finished request at `now_ms` (see [`now_ms`]).
    pub fn record(&self, now_ms: u64, outcome: Outcome, latency: Duration) {
        let index = now_ms / self.bucket_ms;
        let slot = &self.slots[(index % self.slots.len() as u64) as usize];
        if !slot.claim(index + 1) {
            return;
        }
        slot.requests.fetch_add(1, Ordering::Relaxed);
        if outcome.is_error() {
            slot.errors.fetch_add(1, Ordering::Relaxed);
        }
        slot.latency[hist_index(latency)].fetch_add(1, Ordering::Relaxed);
    }

    /// Count a request this pool was meant to serve and could not (no
    /// endpoint available, so it failed over or was refused): an error for
    /// automatic rollback, with no latency sample.
    pub fn record_unserved(&self, now_ms: u64) {
        let index = now_ms / self.bucket_ms;
        let slot = &self.slots[(index % self.slots.len() as u64) as usize];
        if !slot.claim(index + 1) {
            return;
        }
        slot.requests.fetch_add(1, Ordering::Relaxed);
        slot.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Figures over the last `window` up to `now_ms`, counted in whole
    /// buckets: the oldest bucket overlapping the window is included.
    pub fn window(&self, now_ms: u64, window: Duration) -> WindowStats {
        self.window_since(now_ms, window, 0)
    }

    /// Figures since `since_ms` (e.g. the last weight change), up to the
    /// ring's capacity. Only buckets that start at or after `since_ms` count,
    /// so nothing from before it leaks in (at most one bucket of newer
    /// requests is left out).
    pub fn since(&self, now_ms: u64, since_ms: u64) -> WindowStats {
        self.window_since(now_ms, self.capacity(), since_ms)
    }

    /// [`window`](Self::window) restricted to [`since`](Self::since): what
    /// the rollback rules judge after grace.
    pub fn window_since(&self, now_ms: u64, window: Duration, since_ms: u64) -> WindowStats {
        let b = self.bucket_ms;
        let newest = now_ms / b;
        let window_ms = duration_ms(window.min(self.capacity())).max(1);
        let oldest = [
            (now_ms + 1).saturating_sub(window_ms) / b,
            since_ms.div_ceil(b),
            (newest + 1).saturating_sub(self.slots.len() as u64),
        ]
        .into_iter()
        .max()
        .unwrap_or(newest);
        if oldest > newest {
            return WindowStats::default();
        }
        let totals = self.sum(oldest, newest);
        let span_ms = now_ms + 1 - oldest * b;
        summarize(&totals, span_ms)
    }

    /// Raw sums of the whole buckets inside `[from_ms, to_ms)` still in the
    /// ring: what a fleet member adds to the cumulative counters it
    /// publishes. Call it with bucket-aligned bounds that advance, and every
    /// finished request is counted exactly once (while the ring still holds
    /// it: publish at least once per [`capacity`](Self::capacity)).
    pub fn counts_between(&self, from_ms: u64, to_ms: u64) -> Counts {
        let b = self.bucket_ms;
        let oldest = from_ms.div_ceil(b);
        let end = to_ms / b; // exclusive
        let ring_oldest = end.saturating_sub(self.slots.len() as u64 - 1);
        let oldest = oldest.max(ring_oldest);
        if end == 0 || oldest >= end {
            return Counts::default();
        }
        let totals = self.sum(oldest, end - 1);
        Counts::from_totals(&totals)
    }

    /// Add up buckets `oldest..=newest`, skipping slots that hold another
    /// bucket or are overwritten while being read.
    fn sum(&self, oldest: u64, newest: u64) -> Totals {
        let mut totals = Totals {
            requests: 0,
            errors: 0,
            latency: [0; HIST_BUCKETS],
        };
        let mut latency = [0u64; HIST_BUCKETS];
        for index in oldest..=newest {
            let slot = &self.slots[(index % self.slots.len() as u64) as usize];
            let tag = index + 1;
            if slot.epoch.load(Ordering::Acquire) != tag {
                continue;
            }
            let requests = slot.requests.load(Ordering::Relaxed);
            if requests == 0 {
                continue;
            }
            let errors = slot.errors.load(Ordering::Relaxed);
            for (sum, count) in latency.iter_mut().zip(&slot.latency) {
                *sum = u64::from(count.load(Ordering::Relaxed));
            }
            // Seqlock check: a reset that started while we read makes the
            // figures a mix of two laps; drop the slot instead.
            fence(Ordering::Acquire);
            if slot.epoch.load(Ordering::Relaxed) != tag {
                continue;
            }
            totals.requests += requests;
            totals.errors += errors.min(requests);
            for (total, count) in totals.latency.iter_mut().zip(&latency) {
                *total += count;
            }
        }
        totals
    }
}

/// Raw, additive figures of one pool: request and error counts and the
/// latency histogram (sparse: bucket index → count). Fleet members publish
/// these cumulatively and the leader sums them across members and diffs
/// them over time; percentiles come only from the summed histogram, never
/// from averaging members' percentiles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub requests: u64,
    pub errors: u64,
    #[serde(default)]
    pub latency: std::collections::BTreeMap<u16, u64>,
}

impl Counts {
    fn from_totals(totals: &Totals) -> Self {
        let latency = totals
            .latency
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| (i as u16, n))
            .collect();
        Counts {
            requests: totals.requests,
            errors: totals.errors,
            latency,
        }
    }

    /// Add `other` to these counts.
    pub fn add(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.errors += other.errors;
        for (&index, &n) in &other.latency {
            *self.latency.entry(index).or_default() += n;
        }
    }

    /// What happened between `earlier` and these (later) cumulative counts;
    /// a counter that went down (a restarted member) counts from zero.
    pub fn since(&self, earlier: &Counts) -> Counts {
        if self.requests < earlier.requests {
            return self.clone();
        }
        let latency = self
            .latency
            .iter()
            .map(|(&i, &n)| {
                (
                    i,
                    n.saturating_sub(earlier.latency.get(&i).copied().unwrap_or(0)),
                )
            })
            .filter(|&(_, n)| n > 0)
            .collect();
        Counts {
            requests: self.requests - earlier.requests,
            errors: self.errors.saturating_sub(earlier.errors),
            latency,
        }
    }

    /// The figures these counts make over `span`.
    pub fn summarize(&self, span: Duration) -> WindowStats {
        let mut latency = [0u64; HIST_BUCKETS];
        for (&index, &n) in &self.latency {
            if let Some(slot) = latency.get_mut(usize::from(index)) {
                *slot += n;
            }
        }
        let totals = Totals {
            requests: self.requests,
            errors: self.errors.min(self.requests),
            latency,
        };
        summarize(&totals, duration_ms(span))
    }
}

fn summarize(totals: &Totals, span_ms: u64) -> WindowStats {
    let error_rate = if totals.requests == 0 {
        0.0
    } else {
        totals.errors as f64 / totals.requests as f64
    };
    WindowStats {
        requests: totals.requests,
        errors: totals.errors,
        error_rate,
        rps: totals.requests as f64 * 1000.0 / span_ms.max(1) as f64,
        p50_ms: quantile_ms(&totals.latency, 0.50),
        p99_ms: quantile_ms(&totals.latency, 0.99),
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Histogram bucket of a latency.
fn hist_index(latency: Duration) -> usize {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    let units = (micros >> UNIT_SHIFT).min(MAX_UNITS);
    if units < SUB {
        units as usize
    } else {
        let exp = 63 - units.leading_zeros(); // >= SUB_BITS
        let sub = (units >> (exp - SUB_BITS)) & (SUB - 1);
        ((u64::from(exp - SUB_BITS + 1) * SUB) + sub) as usize
    }
}

/// The histogram bucket a latency lands in (the keys of [`Counts::latency`]).
pub fn bucket_of(latency: Duration) -> u16 {
    hist_index(latency) as u16
}

/// The upper bound of histogram bucket `index` in milliseconds: a latency
/// at or above it lands in a later bucket (the keys of [`Counts::latency`]).
pub fn bucket_upper_ms(index: u16) -> f64 {
    hist_bounds_us(usize::from(index)).1 as f64 / 1000.0
}

/// `[low, high)` of a histogram bucket, in microseconds.
fn hist_bounds_us(index: usize) -> (u64, u64) {
    let index = index as u64;
    let (low, high) = if index < SUB {
        (index, index + 1)
    } else {
        let shift = index / SUB - 1;
        let sub = index % SUB;
        ((SUB + sub) << shift, (SUB + sub + 1) << shift)
    };
    (low << UNIT_SHIFT, high << UNIT_SHIFT)
}

/// The `q` quantile in milliseconds: the midpoint of the bucket holding the
/// sample of rank `ceil(q × n)`.
fn quantile_ms(latency: &[u64; HIST_BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = latency.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (index, count) in latency.iter().enumerate() {
        seen += count;
        if seen >= rank {
            let (low, high) = hist_bounds_us(index);
            return Some((low + high) as f64 / 2.0 / 1000.0);
        }
    }
    None
}

#[cfg(test)]
mod tests;
