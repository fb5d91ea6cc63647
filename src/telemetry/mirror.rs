//! What became of the copies sent to one pool (SPEC.md section 12): the
//! counts of `switchyard_mirror_requests_total{result}`, the match and
//! mismatch window the `max_mismatch_rate` guardrail reads, the copies in
//! flight, the last 100 mismatches and the fields learned as noise.
//!
//! Written by the copies' own tasks, never by a client's request: taking
//! a copy slot is one atomic add ([`MirrorRecord::try_begin`]), and a
//! dropped copy one counter increment. The diff ring is behind a mutex
//! that only those tasks and the admin API take. This module keeps
//! figures; deciding what differs is `proxy::mirror`'s job.

use super::stats::{Outcome, PoolStats, WindowStats};
use prometheus::IntCounter;
use serde::Serialize;
use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Mismatches kept for `GET /api/v1/mirror/diffs`.
pub const DIFFS_KEPT: usize = 100;
/// Fields learned as noise at most; more are not learned (and logged).
pub const NOISE_MAX: usize = 256;

/// The `result` label of `switchyard_mirror_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorResult {
    /// The candidate answered like the live pool.
    Match,
    Mismatch,
    /// No comparison: the candidate (or the live answer) failed.
    Error,
    /// Not sent: `max_inflight` copies were already out.
    Dropped,
}

impl MirrorResult {
    pub const ALL: [MirrorResult; 4] = [
        MirrorResult::Match,
        MirrorResult::Mismatch,
        MirrorResult::Error,
        MirrorResult::Dropped,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            MirrorResult::Match => "match",
            MirrorResult::Mismatch => "mismatch",
            MirrorResult::Error => "error",
            MirrorResult::Dropped => "dropped",
        }
    }
}

/// The four handles of `switchyard_mirror_requests_total`, resolved once
/// (in [`ALL`](MirrorResult::ALL) order).
#[derive(Clone)]
pub struct MirrorCounters(pub [IntCounter; 4]);

impl MirrorCounters {
    pub fn inc(&self, r: MirrorResult) {
        self.0[r as usize].inc();
    }

    pub fn get(&self, r: MirrorResult) -> u64 {
        self.0[r as usize].get()
    }
}

/// One field that differs: where, and the two values as shown (cut short,
/// credentials hidden).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldDiff {
    /// `status`, `header:NAME`, `body`, or a JSON path (`$.a[0].b`).
    pub field: String,
    pub live: String,
    pub candidate: String,
}

/// One mismatch as the diffs API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MirrorDiff {
    pub time: String,
    /// `GET /path?query HTTP/1.1` (credential-like query values hidden).
    pub request: String,
    pub fields: Vec<FieldDiff>,
}

/// A copy slot; released when dropped.
pub struct CopySlot(Arc<MirrorRecord>);

impl Drop for CopySlot {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The figures of the copies sent to one pool; shared by every table
/// generation like the pool's other runtime figures.
pub struct MirrorRecord {
    counters: MirrorCounters,
    /// requests = compared copies, errors = mismatches.
    window: PoolStats,
    inflight: AtomicU32,
    diffs: Mutex<VecDeque<MirrorDiff>>,
    noise: arc_swap::ArcSwap<BTreeSet<String>>,
}

impl std::fmt::Debug for MirrorRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorRecord")
            .field("inflight", &self.inflight)
            .finish_non_exhaustive()
    }
}

/// A summary for `status.mirror` and the diffs API.
#[derive(Debug, Clone, Serialize)]
pub struct MirrorFigures {
    /// Copies out now.
    pub inflight: u32,
    /// Since start, by result.
    #[serde(rename = "match")]
    pub matched: u64,
    pub mismatch: u64,
    pub error: u64,
    pub dropped: u64,
    /// Compared copies over `rollback.window` and how many differed.
    pub window_compared: u64,
    pub window_mismatched: u64,
    /// `window_mismatched / window_compared`; null before any comparison.
    pub mismatch_rate: Option<f64>,
    /// The candidate's p99 answering copies over the window, in ms.
    pub p99_ms: Option<f64>,
}

impl MirrorRecord {
    pub fn new(window: Duration, counters: MirrorCounters) -> Self {
        MirrorRecord {
            counters,
            window: PoolStats::new(window),
            inflight: AtomicU32::new(0),
            diffs: Mutex::new(VecDeque::with_capacity(DIFFS_KEPT)),
            noise: arc_swap::ArcSwap::from_pointee(BTreeSet::new()),
        }
    }

    /// A slot for one copy while fewer than `max` are out; else the copy
    /// is counted dropped. Never waits.
    #[inline]
    pub fn try_begin(self: &Arc<Self>, max: u32) -> Option<CopySlot> {
        if self.inflight.fetch_add(1, Ordering::Relaxed) >= max {
            self.inflight.fetch_sub(1, Ordering::Relaxed);
            self.counters.inc(MirrorResult::Dropped);
            return None;
        }
        Some(CopySlot(self.clone()))
    }

    /// A compared copy: a match, or a mismatch kept with its diff.
    pub fn compared(&self, now_ms: u64, latency: Duration, diff: Option<MirrorDiff>) {
        let (result, status) = match diff {
            None => (MirrorResult::Match, 200),
            Some(d) => {
                let mut ring = self.diffs.lock().unwrap_or_else(|p| p.into_inner());
                if ring.len() == DIFFS_KEPT {
                    ring.pop_front();
                }
                ring.push_back(d);
                (MirrorResult::Mismatch, 500)
            }
        };
        self.counters.inc(result);
        self.window.record(now_ms, Outcome::Status(status), latency);
    }

    /// Copies compared since start (matches and mismatches).
    pub fn compared_total(&self) -> u64 {
        self.counters.get(MirrorResult::Match) + self.counters.get(MirrorResult::Mismatch)
    }

    /// A copy that could not be compared.
    pub fn failed(&self) {
        self.counters.inc(MirrorResult::Error);
    }

    /// The kept mismatches, newest first.
    pub fn diffs(&self, limit: usize) -> Vec<MirrorDiff> {
        let ring = self.diffs.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter().rev().take(limit).cloned().collect()
    }

    /// Fields learned as noise.
    pub fn noise(&self) -> Arc<BTreeSet<String>> {
        self.noise.load_full()
    }

    /// Learn `fields` as noise (up to [`NOISE_MAX`] in all); the new ones.
    pub fn learn(&self, fields: impl IntoIterator<Item = String>) -> Vec<String> {
        let fresh: Vec<String> = {
            let known = self.noise.load();
            let mut f: Vec<String> = fields.into_iter().filter(|f| !known.contains(f)).collect();
            f.sort();
            f.dedup();
            f
        };
        if fresh.is_empty() {
            return fresh;
        }
        let mut added = Vec::new();
        self.noise.rcu(|old| {
            let mut set = (**old).clone();
            added.clear();
            for f in &fresh {
                if set.len() >= NOISE_MAX {
                    break;
                }
                if set.insert(f.clone()) {
                    added.push(f.clone());
                }
            }
            set
        });
        added
    }

    /// Forget what was learned and kept (a new candidate, or new config).
    pub fn clear(&self) {
        self.noise.store(Arc::new(BTreeSet::new()));
        self.diffs.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The compared copies over the last `window` up to `now_ms`.
    pub fn window(&self, now_ms: u64, window: Duration) -> WindowStats {
        self.window.window(now_ms, window)
    }

    /// The `max_mismatch_rate` rule: with copies compared over `window`
    /// and more than `max` of them different, the window's figures (a
    /// rollout or switch to this pool is then refused). No copies: no
    /// verdict, nothing refused.
    pub fn over_limit(
        &self,
        now_ms: u64,
        window: Duration,
        max: Option<f64>,
    ) -> Option<WindowStats> {
        let max = max?;
        let w = self.window(now_ms, window);
        (w.requests > 0 && w.error_rate > max).then_some(w)
    }

    pub fn figures(&self, now_ms: u64, window: Duration) -> MirrorFigures {
        let w = self.window(now_ms, window);
        MirrorFigures {
            inflight: self.inflight.load(Ordering::Relaxed),
            matched: self.counters.get(MirrorResult::Match),
            mismatch: self.counters.get(MirrorResult::Mismatch),
            error: self.counters.get(MirrorResult::Error),
            dropped: self.counters.get(MirrorResult::Dropped),
            window_compared: w.requests,
            window_mismatched: w.errors,
            mismatch_rate: (w.requests > 0).then_some(w.error_rate),
            p99_ms: w.p99_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Arc<MirrorRecord> {
        let m = crate::telemetry::metrics::Metrics::new();
        Arc::new(MirrorRecord::new(
            Duration::from_secs(60),
            m.pool(crate::config::PoolName::Green).mirror.clone(),
        ))
    }

    fn diff(n: usize) -> MirrorDiff {
        MirrorDiff {
            time: String::new(),
            request: format!("GET /{n} HTTP/1.1"),
            fields: Vec::new(),
        }
    }

    #[test]
    fn slots_beyond_the_limit_are_dropped_and_counted() {
        let r = record();
        let a = r.try_begin(2).unwrap();
        let _b = r.try_begin(2).unwrap();
        assert!(r.try_begin(2).is_none());
        assert!(r.try_begin(2).is_none());
        drop(a);
        assert!(r.try_begin(2).is_some());
        let f = r.figures(0, Duration::from_secs(60));
        assert_eq!((f.dropped, f.inflight), (2, 1));
    }

    #[test]
    fn the_last_hundred_mismatches_are_kept_newest_first_and_the_rate_follows() {
        let r = record();
        let now = 10_000;
        for n in 0..150 {
            r.compared(now, Duration::from_millis(1), Some(diff(n)));
        }
        for _ in 0..50 {
            r.compared(now, Duration::from_millis(1), None);
        }
        let d = r.diffs(usize::MAX);
        assert_eq!(d.len(), DIFFS_KEPT);
        assert_eq!(d[0].request, "GET /149 HTTP/1.1");
        assert_eq!(d[99].request, "GET /50 HTTP/1.1");
        let f = r.figures(now, Duration::from_secs(60));
        assert_eq!((f.matched, f.mismatch), (50, 150));
        assert_eq!(f.mismatch_rate, Some(0.75));
        // Out of the window, no rate at all.
        let later = r.figures(now + 600_000, Duration::from_secs(60));
        assert_eq!(later.mismatch_rate, None);
    }

    #[test]
    fn noise_is_learned_once_and_bounded() {
        let r = record();
        assert_eq!(r.learn(["$.time".to_string(), "$.time".into()]), ["$.time"]);
        assert!(r.learn(["$.time".to_string()]).is_empty());
        let many = (0..1000).map(|i| format!("$.f{i}"));
        assert_eq!(r.learn(many).len(), NOISE_MAX - 1);
        assert_eq!(r.noise().len(), NOISE_MAX);
        r.clear();
        assert!(r.noise().is_empty());
    }
}
