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

/// The last millisecond RFC 3339 can write: 9999-12-31T23:59:59.999Z.
/// humantime's formatter panics past it (and a panic aborts the release
/// build), so every time shown is first held to this bound.
pub const MAX_RFC3339_MS: u64 = 253_402_300_799_999;

/// RFC 3339 text for a Unix millisecond time, e.g. `2026-11-20T10:14:58.123Z`.
/// A time past year 9999 is shown as [`MAX_RFC3339_MS`]: a timestamp in a
/// status document must never take the process down.
pub fn rfc3339(unix_ms: u64) -> String {
    let t = UNIX_EPOCH + std::time::Duration::from_millis(unix_ms.min(MAX_RFC3339_MS));
    humantime::format_rfc3339_millis(t).to_string()
}

/// `unix_ms` plus `d`, saturating instead of overflowing: durations come
/// from operators, and a sum that wrapped around would land in the past.
pub fn unix_ms_after(unix_ms: u64, d: std::time::Duration) -> u64 {
    unix_ms.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_past_year_9999_are_shown_saturated_not_panicking() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(MAX_RFC3339_MS), "9999-12-31T23:59:59.999Z");
        // 10000 years of bake time, as a state file once held it.
        assert_eq!(rfc3339(317_371_251_631_413), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn adding_a_huge_duration_saturates() {
        assert_eq!(unix_ms_after(1_000, Duration::from_secs(1)), 2_000);
        assert_eq!(unix_ms_after(1_000, Duration::MAX), u64::MAX);
        assert_eq!(
            unix_ms_after(u64::MAX - 1, Duration::from_millis(5)),
            u64::MAX
        );
    }
}
