//! Clocks: a cheap monotonic millisecond counter for the hot path, and wall
//! time for status and events.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Milliseconds on a monotonic clock since the first call in this process.
#[inline]
pub fn now_ms() -> u64 {
    ms_at(Instant::now())
}

/// [`now_ms`] of an instant already read: the hot path reads the clock once
/// per request and derives the rest from it.
#[inline]
pub fn ms_at(at: Instant) -> u64 {
    let epoch = *EPOCH.get_or_init(|| at);
    at.saturating_duration_since(epoch).as_millis() as u64
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// RFC 3339 text for a Unix millisecond time, e.g. `2026-11-20T10:14:58.123Z`.
pub fn rfc3339(unix_ms: u64) -> String {
    let t = UNIX_EPOCH + std::time::Duration::from_millis(unix_ms);
    humantime::format_rfc3339_millis(t).to_string()
}
