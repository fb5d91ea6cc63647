//! Sticky sessions (SPEC.md section 4): a cookie holds a bucket 0-9999, and
//! a bucket below the candidate's weight (in basis points) goes to the
//! candidate, every other one to the live pool.
//!
//! Because the threshold only rises while a rollout raises the candidate's
//! weight, a client only ever moves from live to candidate; a rollback (the
//! candidate back at 0) puts every bucket on the live pool. This module is
//! pure: it reads cookies without allocating and never touches the table.

use crate::config::{PoolName, StickyConfig};
use crate::routing::weights::TOTAL_BP;
use crate::routing::Weights;
use http::HeaderValue;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Buckets are `0..BUCKETS`, one per basis point of weight.
pub const BUCKETS: u16 = TOTAL_BP as u16;

/// The pool of a client in `bucket` under `weights`, `live` being the pool
/// at 100 % before the current change.
#[inline]
pub fn pool_for(bucket: u16, weights: Weights, live: PoolName) -> PoolName {
    let candidate = live.other();
    if u32::from(bucket) < weights.bp(candidate) {
        candidate
    } else {
        live
    }
}

/// The bucket in the cookie `name` of these `Cookie` header values, if one
/// holds a valid bucket. RFC 6265 section 5.4: pairs separated by `;`.
pub fn bucket_from_cookies<'a>(
    values: impl IntoIterator<Item = &'a HeaderValue>,
    name: &[u8],
) -> Option<u16> {
    for value in values {
        for pair in value.as_bytes().split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            if let Some(v) = pair
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(b"="))
            {
                if let Some(bucket) = parse_bucket(v) {
                    return Some(bucket);
                }
            }
        }
    }
    None
}

/// 1 to 4 ASCII digits below [`BUCKETS`].
fn parse_bucket(v: &[u8]) -> Option<u16> {
    if v.is_empty() || v.len() > 4 {
        return None;
    }
    let mut n: u16 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u16::from(b - b'0');
    }
    (n < BUCKETS).then_some(n)
}

/// A step coprime with 10 000 close to 10 000 / golden ratio: consecutive
/// buckets `start + n * STRIDE` spread evenly over `0..BUCKETS`.
const STRIDE: u64 = 6_181;

/// Hands out buckets to new clients. Each bucket is unpredictable from the
/// client's side (random start) but consecutive ones follow a golden-ratio
/// sequence, so any run of new clients splits like the weights say, even a
/// few hundred of them, instead of drifting by chance.
#[derive(Debug)]
pub struct BucketSource {
    start: u64,
    next: AtomicU64,
}

impl BucketSource {
    pub fn new() -> Self {
        Self::starting_at(fastrand::u64(0..u64::from(BUCKETS)))
    }

    pub fn starting_at(start: u64) -> Self {
        BucketSource {
            start,
            next: AtomicU64::new(0),
        }
    }

    #[inline]
    pub fn next(&self) -> u16 {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (self.start.wrapping_add(n.wrapping_mul(STRIDE)) % u64::from(BUCKETS)) as u16
    }
}

impl Default for BucketSource {
    fn default() -> Self {
        Self::new()
    }
}

/// Sticky sessions as a request needs them, built once per config.
#[derive(Debug, Clone)]
pub struct Sticky {
    cookie: Box<str>,
    /// `; Max-Age=..; Path=/; HttpOnly; SameSite=Lax`
    attributes: Box<str>,
    pub buckets: Arc<BucketSource>,
}

impl Sticky {
    pub fn from_config(cfg: &StickyConfig) -> Self {
        Sticky {
            cookie: cfg.cookie.as_str().into(),
            attributes: format!(
                "; Max-Age={}; Path=/; HttpOnly; SameSite=Lax",
                cfg.max_age.as_secs()
            )
            .into(),
            buckets: Arc::new(BucketSource::new()),
        }
    }

    #[inline]
    pub fn cookie_name(&self) -> &[u8] {
        self.cookie.as_bytes()
    }

    /// The `Set-Cookie` value giving a client `bucket`; `Secure` on TLS
    /// listeners. None only if the configured name is not a valid token.
    pub fn set_cookie(&self, bucket: u16, secure: bool) -> Option<HeaderValue> {
        let secure = if secure { "; Secure" } else { "" };
        HeaderValue::try_from(format!(
            "{}={bucket}{}{secure}",
            self.cookie, self.attributes
        ))
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn w(green_percent: f64) -> Weights {
        Weights::with_percent(PoolName::Green, green_percent)
    }

    #[test]
    fn bucket_below_candidate_weight_goes_to_candidate() {
        let live = PoolName::Blue;
        assert_eq!(pool_for(999, w(10.0), live), PoolName::Green);
        assert_eq!(pool_for(1000, w(10.0), live), PoolName::Blue);
        // The candidate may be blue while green is live.
        let blue_at_25 = Weights::with_percent(PoolName::Blue, 25.0);
        assert_eq!(pool_for(2499, blue_at_25, PoolName::Green), PoolName::Blue);
        assert_eq!(pool_for(2500, blue_at_25, PoolName::Green), PoolName::Green);
    }

    #[test]
    fn raising_the_candidate_only_moves_clients_from_live_to_candidate() {
        let steps = [0.0, 10.0, 25.0, 50.0, 75.0, 100.0];
        for bucket in 0..BUCKETS {
            let mut on_candidate = false;
            for &s in &steps {
                let now = pool_for(bucket, w(s), PoolName::Blue) == PoolName::Green;
                assert!(!on_candidate || now, "bucket {bucket} went back at {s} %");
                on_candidate = now;
            }
            assert!(
                on_candidate,
                "bucket {bucket} not on the candidate at 100 %"
            );
            // A rollback: everyone on live.
            assert_eq!(pool_for(bucket, w(0.0), PoolName::Blue), PoolName::Blue);
        }
    }

    #[test]
    fn cookies_are_parsed_strictly() {
        let name = b"switchyard-bucket";
        let hv = |s: &'static str| HeaderValue::from_static(s);
        let one = [hv("a=1; switchyard-bucket=0042;b=2")];
        assert_eq!(bucket_from_cookies(&one, name), Some(42));
        // HTTP/2 clients may send one Cookie header per pair.
        let split = [hv("a=1"), hv("switchyard-bucket=9999")];
        assert_eq!(bucket_from_cookies(&split, name), Some(9999));
        for bad in [
            "switchyard-bucket=10000",
            "switchyard-bucket=",
            "switchyard-bucket=12a",
            "switchyard-bucket=-1",
            "switchyard-bucket=00001",
            "xswitchyard-bucket=5",
            "switchyard-bucketx=5",
            "switchyard-bucket",
        ] {
            assert_eq!(bucket_from_cookies(&[hv(bad)], name), None, "{bad}");
        }
        // A bad pair does not hide a good one after it.
        let later = [hv("switchyard-bucket=x; switchyard-bucket=7")];
        assert_eq!(bucket_from_cookies(&later, name), Some(7));
    }

    #[test]
    fn new_buckets_split_like_the_weights_even_for_few_clients() {
        for start in [0, 1, 4_999, 9_999] {
            let src = BucketSource::starting_at(start);
            let buckets: Vec<u16> = (0..1000).map(|_| src.next()).collect();
            assert!(buckets.iter().all(|&b| b < BUCKETS));
            for threshold in [100u16, 1000, 2500, 5000, 7500] {
                let below = buckets.iter().filter(|&&b| b < threshold).count();
                let expected = usize::from(threshold) / 10;
                assert!(
                    below.abs_diff(expected) <= 5,
                    "start {start}: {below} of 1000 below {threshold}, expected {expected}"
                );
            }
        }
        // Over a full period every bucket is handed out once.
        let src = BucketSource::starting_at(123);
        let mut seen = vec![false; usize::from(BUCKETS)];
        for _ in 0..BUCKETS {
            seen[usize::from(src.next())] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn set_cookie_has_the_spec_attributes() {
        let s = Sticky::from_config(&StickyConfig {
            cookie: "switchyard-bucket".into(),
            max_age: Duration::from_secs(3600),
        });
        assert_eq!(
            s.set_cookie(42, false).unwrap(),
            "switchyard-bucket=42; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax"
        );
        assert_eq!(
            s.set_cookie(7, true).unwrap(),
            "switchyard-bucket=7; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
    }
}
