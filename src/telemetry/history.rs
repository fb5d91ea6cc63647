//! Traffic history for the dashboard: per pool, requests/s, error rate and
//! p99 of every second of the last 15 minutes ([`CAPACITY`] samples), so
//! a page opened now draws its charts at once (`GET /api/v1/history`).
//!
//! A [`Sampler`] turns the pools' statistics windows into one [`Sample`]
//! per second: it reads the whole buckets finished since its last sample
//! ([`PoolStats::counts_between`]), so every request is counted in exactly
//! one sample whatever the bucket width. Written once a second by one task
//! and read by the admin API: a short lock, never on a request's path.
//!
//! This module knows the two pools by position (blue, green), not by type.

use crate::telemetry::stats::{PoolStats, WindowStats};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

/// Samples kept: 15 minutes at one per second.
pub const CAPACITY: usize = 900;
/// One sample per this long.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// One pool's traffic over one sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PoolSample {
    pub requests: u64,
    pub rps: f64,
    /// 5xx answers and transport errors over requests; 0 without requests.
    pub error_rate: f64,
    /// Null without requests.
    pub p99_ms: Option<f64>,
}

impl From<WindowStats> for PoolSample {
    fn from(s: WindowStats) -> Self {
        PoolSample {
            requests: s.requests,
            rps: s.rps,
            error_rate: s.error_rate,
            p99_ms: s.p99_ms,
        }
    }
}

/// Both pools over the second ending at `time`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// End of the sampled second, Unix milliseconds.
    pub time: u64,
    pub blue: PoolSample,
    pub green: PoolSample,
}

/// The ring of the last [`CAPACITY`] samples, oldest first.
#[derive(Debug, Default)]
pub struct History {
    ring: Mutex<VecDeque<Sample>>,
}

impl History {
    pub fn push(&self, sample: Sample) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() == CAPACITY {
            ring.pop_front();
        }
        ring.push_back(sample);
    }

    /// Every sample kept, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter().cloned().collect()
    }
}

/// Cuts the pools' statistics into consecutive samples.
#[derive(Debug)]
pub struct Sampler {
    /// Monotonic ms up to which traffic has been sampled.
    last_ms: u64,
}

impl Sampler {
    /// Sample from `now_ms` (monotonic, [`crate::clock::now_ms`]) on.
    pub fn new(now_ms: u64) -> Self {
        Sampler { last_ms: now_ms }
    }

    /// The traffic of `[blue, green]` since the last sample, up to `now_ms`
    /// (monotonic) cut down to a bucket boundary, so that the next sample
    /// starts where this one ended; `unix_ms` labels it. None when not a
    /// whole bucket has passed.
    pub fn sample(&mut self, pools: [&PoolStats; 2], now_ms: u64, unix_ms: u64) -> Option<Sample> {
        let bucket = u64::try_from(pools[0].bucket().as_millis())
            .unwrap_or(1)
            .max(1);
        let now_ms = now_ms / bucket * bucket;
        // Only the first start is off a boundary: take its whole bucket.
        let from = self.last_ms / bucket * bucket;
        if now_ms <= from {
            return None;
        }
        let span = Duration::from_millis(now_ms - from);
        let [blue, green] =
            pools.map(|p| PoolSample::from(p.counts_between(from, now_ms).summarize(span)));
        self.last_ms = now_ms;
        Some(Sample {
            time: unix_ms,
            blue,
            green,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::stats::Outcome;

    #[test]
    fn each_request_lands_in_exactly_one_sample() {
        let blue = PoolStats::new(Duration::from_secs(60));
        let green = PoolStats::new(Duration::from_secs(60));
        // Started within a bucket: what that bucket holds is sampled too.
        let mut s = Sampler::new(10_050);
        for t in (10_000..11_000).step_by(10) {
            blue.record(t, Outcome::Status(200), Duration::from_millis(5));
        }
        green.record(10_500, Outcome::Status(503), Duration::from_millis(40));
        green.record(10_600, Outcome::Status(200), Duration::from_millis(2));
        let first = s
            .sample([&blue, &green], 11_000, 1_700_000_001_000)
            .unwrap();
        assert_eq!(first.time, 1_700_000_001_000);
        assert_eq!(first.blue.requests, 100);
        assert_eq!(first.blue.rps, 100.0);
        assert_eq!(first.blue.error_rate, 0.0);
        assert_eq!(first.green.requests, 2);
        assert_eq!(first.green.error_rate, 0.5);
        let p99 = first.green.p99_ms.unwrap();
        assert!((35.0..45.0).contains(&p99), "{p99}");
        // The next second saw nothing: nothing is counted twice.
        let second = s
            .sample([&blue, &green], 12_000, 1_700_000_002_000)
            .unwrap();
        assert_eq!(second.blue.requests, 0);
        assert_eq!(second.green.p99_ms, None);
        assert!(s.sample([&blue, &green], 12_099, 0).is_none());
        // Off a bucket boundary: cut to it, and the rest of the bucket goes
        // to the next sample.
        blue.record(12_950, Outcome::Status(200), Duration::from_millis(1));
        blue.record(13_020, Outcome::Status(200), Duration::from_millis(1));
        let third = s.sample([&blue, &green], 13_050, 0).unwrap();
        assert_eq!(third.blue.requests, 1);
        let fourth = s.sample([&blue, &green], 14_000, 0).unwrap();
        assert_eq!(fourth.blue.requests, 1);
    }

    #[test]
    fn the_ring_keeps_the_newest_fifteen_minutes() {
        let h = History::default();
        for i in 0..(CAPACITY as u64 + 10) {
            h.push(Sample {
                time: i,
                blue: PoolSample::default(),
                green: PoolSample::default(),
            });
        }
        let samples = h.samples();
        assert_eq!(samples.len(), CAPACITY);
        assert_eq!(samples[0].time, 10);
        assert_eq!(samples[CAPACITY - 1].time, CAPACITY as u64 + 9);
    }
}
