//! The series of SPEC.md section 10: each check's last value per pool,
//! checks by result, notifications by result. Rare events (a check every
//! few seconds, a notification per decision): label lookups are fine here.

use super::{opts, register};
use prometheus::{GaugeVec, IntCounterVec, Registry};

/// How a notification ended: the `result` label of `switchyard_notifications_total`.
pub const NOTIFICATION_RESULTS: [&str; 3] = ["sent", "failed", "dropped"];

#[derive(Clone)]
pub struct AnalysisMetrics {
    check_value: GaugeVec,
    checks: IntCounterVec,
    notifications: IntCounterVec,
}

impl AnalysisMetrics {
    pub(super) fn new(r: &Registry) -> Self {
        let check_value = register(
            r,
            GaugeVec::new(
                opts(
                    "switchyard_check_value",
                    "The last value an analysis check read, by check and pool.",
                ),
                &["check", "pool"],
            ),
        );
        let checks = register(
            r,
            IntCounterVec::new(
                opts(
                    "switchyard_checks_total",
                    "Analysis check readings, by check and result (pass, fail, inconclusive).",
                ),
                &["check", "result"],
            ),
        );
        let notifications = register(
            r,
            IntCounterVec::new(
                opts(
                    "switchyard_notifications_total",
                    "Event notifications, by result: sent, failed (given up after retries), dropped (queue full).",
                ),
                &["result"],
            ),
        );
        for result in NOTIFICATION_RESULTS {
            notifications.with_label_values(&[result]);
        }
        AnalysisMetrics {
            check_value,
            checks,
            notifications,
        }
    }

    /// A check's reading: its result, and each pool's value when it had one.
    pub fn check(&self, check: &str, result: &str, values: &[(&str, Option<f64>)]) {
        self.checks.with_label_values(&[check, result]).inc();
        for (pool, value) in values {
            if let Some(v) = value {
                self.check_value.with_label_values(&[check, pool]).set(*v);
            }
        }
    }

    /// `result` is one of [`NOTIFICATION_RESULTS`].
    pub fn notification(&self, result: &str) {
        self.notifications.with_label_values(&[result]).inc();
    }

    /// The value of `switchyard_notifications_total{result}` (tests, status).
    pub fn notifications(&self, result: &str) -> u64 {
        self.notifications.with_label_values(&[result]).get()
    }
}
