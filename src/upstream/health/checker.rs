//! The task that watches one endpoint: it runs the active checks on a
//! `tokio::time::interval` (missed ticks skipped), wakes on an ejection and
//! at its end, and reports every change of the endpoint's health state.
//! It stops when its cancellation token fires, also in the middle of a check.

use crate::upstream::health::{CheckSettings, HealthCounter, HealthSink, Probe, Verdict};
use crate::upstream::{CheckResult, Endpoint, EndpointState};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

pub(super) struct Checker<P> {
    pub ep: Arc<Endpoint>,
    pub settings: Arc<CheckSettings>,
    pub probe: Arc<P>,
    pub sink: Arc<dyn HealthSink>,
    /// The monotonic clock the endpoint's ejection deadline is written in.
    pub clock: fn() -> u64,
    pub cancel: CancellationToken,
}

impl<P: Probe> Checker<P> {
    pub async fn run(self) {
        let Checker {
            ep,
            settings: s,
            probe,
            sink,
            clock,
            cancel,
        } = self;
        let mut counter = HealthCounter::new(
            s.healthy_threshold,
            s.unhealthy_threshold,
            Verdict::of(ep.active_state()),
        );
        let mut reported = ep.health_state(clock());
        let mut last = ep.last_check_result();
        let period_ms = u64::try_from(s.interval.as_millis()).unwrap_or(u64::MAX);
        let offset = Duration::from_millis(fastrand::u64(0..period_ms.max(1)));
        let mut tick = tokio::time::interval_at(Instant::now() + offset, s.interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            let now = clock();
            let ejected_until = ep.ejected_until_ms();
            let ejection_left = Duration::from_millis(ejected_until.saturating_sub(now));
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                () = ep.ejected() => {}
                () = tokio::time::sleep(ejection_left), if ejected_until > now => {}
                _ = tick.tick() => {
                    let result = tokio::select! {
                        biased;
                        () = cancel.cancelled() => return,
                        r = probe.check(&ep, &s) => r,
                    };
                    let passed = matches!(result, CheckResult::Status(c) if s.expected.contains(c));
                    ep.record_check(crate::clock::unix_ms(), passed, result);
                    last = Some(result);
                    if let Some(verdict) = counter.observe(passed) {
                        ep.set_healthy(verdict == Verdict::Healthy);
                    }
                }
            }
            let state = ep.health_state(clock());
            if state != reported {
                let why = reason(reported, state, &s, last);
                tracing::info!(
                    pool = %ep.pool,
                    endpoint = %ep.address,
                    from = reported.as_str(),
                    to = state.as_str(),
                    reason = %why,
                    "endpoint health changed"
                );
                sink.transition(&ep, state, why);
                reported = state;
            }
        }
    }
}

/// The `reason` of the event for a change from `from` to `to`.
pub(super) fn reason(
    from: EndpointState,
    to: EndpointState,
    s: &CheckSettings,
    last: Option<CheckResult>,
) -> String {
    let last = last.map_or_else(|| "no check yet".to_string(), |r| r.to_string());
    match (from, to) {
        (_, EndpointState::Ejected) => {
            "ejected by outlier detection: 5xx or transport errors in a row from live traffic"
                .to_string()
        }
        (EndpointState::Ejected, EndpointState::Unhealthy) => {
            format!("ejection time over, but active checks fail (last: {last})")
        }
        (EndpointState::Ejected, _) => "ejection time over: back on probation".to_string(),
        (_, EndpointState::Healthy) => {
            format!("{} health checks passed in a row", s.healthy_threshold)
        }
        (_, EndpointState::Unhealthy) => format!(
            "{} health checks failed in a row (last: {last})",
            s.unhealthy_threshold
        ),
        (_, other) => format!("health state is now {}", other.as_str()),
    }
}
