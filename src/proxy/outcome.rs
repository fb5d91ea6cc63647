//! What became of a request, recorded in one place: [`record`] is the only
//! code on the request path that writes the figures of an exchange (the
//! pool's rollback statistics window and metrics, the endpoint's passive
//! health and outlier ejection, a pool's failover state).
//!
//! Requests in flight are not counted here: they are counted by the
//! [`crate::proxy::body::InflightGuard`] held for as long as the exchange
//! lasts (its response body, or its upgraded connection). This module must
//! not log, answer, or decide anything: the handler does, then records.

use crate::proxy::error::{status_of, ProxyError, UpstreamErrorKind};
use crate::routing::table::Outlier;
use crate::routing::{Decision, PoolRuntime, Refusal, Route, RoutingTable};
use crate::upstream::Endpoint;
use http::StatusCode;
use std::time::Duration;

/// One thing that became of a request (or of one attempt at it).
#[derive(Debug)]
pub enum Outcome<'a> {
    /// Routed by the decision (to the other pool when it failed over):
    /// recorded for the pool it was meant for.
    Routed(Route),
    /// Refused by the decision: recorded for the pool it was meant for, or
    /// for the live pool (where held writes wait) when the hold was full.
    Refused(Refusal),
    /// An attempt failed before the upstream saw the request; it is tried
    /// again on another endpoint.
    Retried {
        endpoint: &'a Endpoint,
        kind: UpstreamErrorKind,
    },
    /// The request failed after `latency`: the upstream's fault when the
    /// error is of an upstream kind, else (the client's body broke) not.
    Failed {
        endpoint: &'a Endpoint,
        error: &'a ProxyError,
        latency: Duration,
    },
    /// The upstream's response head, after `latency`.
    Answered {
        endpoint: &'a Endpoint,
        status: StatusCode,
        latency: Duration,
    },
    /// The connection was upgraded (a tunnel): the exchange succeeded.
    Upgraded { endpoint: &'a Endpoint },
    /// The response body was read whole. `head_ok`: its head was not
    /// already counted as a failure (a 5xx).
    BodyEnded {
        endpoint: &'a Endpoint,
        head_ok: bool,
    },
    /// The upstream broke the response body.
    BodyBroken {
        endpoint: &'a Endpoint,
        kind: UpstreamErrorKind,
        head_ok: bool,
    },
}

/// Record `o` for the pool whose figures it belongs to (`pool`): see
/// [`Outcome`] for which that is. `outlier` is the table's
/// `outlier_detection`.
///
/// Always inlined: each call site names its outcome, so only that arm is
/// left of the match.
#[inline(always)]
pub fn record(pool: &PoolRuntime, outlier: Outlier, o: Outcome<'_>) {
    let failure = |ep: &Endpoint| {
        pool.record_failure(ep, crate::clock::now_ms(), outlier);
    };
    match o {
        Outcome::Routed(route) => {
            if route.failed_over {
                pool.note_failover();
            } else {
                pool.note_served();
            }
        }
        Outcome::Refused(Refusal::NoEndpoint { failed_over, .. }) => {
            if failed_over {
                pool.note_failover();
            } else {
                pool.note_unserved();
            }
            pool.metrics.record_refused();
        }
        Outcome::Refused(Refusal::HoldQueueFull | Refusal::Fenced | Refusal::HoldUndecided) => {
            pool.metrics.record_refused()
        }
        Outcome::Retried { endpoint, kind } => {
            failure(endpoint);
            pool.record_error(kind);
        }
        Outcome::Failed {
            endpoint,
            error,
            latency,
        } => match error.upstream_kind() {
            Some(kind) => {
                failure(endpoint);
                pool.record_error(kind);
                pool.record_response(None, latency);
            }
            // A broken or stalled client body says nothing about the
            // upstream: no ejection, no rollback verdict from it.
            None => pool.record_response(Some(status_of(error).0.as_u16()), latency),
        },
        Outcome::Answered {
            endpoint,
            status,
            latency,
        } => {
            pool.record_response(Some(status.as_u16()), latency);
            if status.is_server_error() {
                failure(endpoint);
            }
        }
        Outcome::Upgraded { endpoint } => endpoint.record_success(),
        Outcome::BodyEnded { endpoint, head_ok } => {
            if head_ok {
                endpoint.record_success();
            }
        }
        Outcome::BodyBroken {
            endpoint,
            kind,
            head_ok,
        } => {
            pool.record_error(kind);
            if head_ok {
                failure(endpoint);
            }
        }
    }
}

/// Record what the decision came to (a hold is not an outcome yet), for
/// the pool [`Outcome::Routed`] and [`Outcome::Refused`] name.
#[inline(always)]
pub fn record_decision(table: &RoutingTable, d: &Decision) {
    let (pool, o) = match *d {
        Decision::Forward(route) => (route.meant(), Outcome::Routed(route)),
        Decision::Refuse(r @ Refusal::NoEndpoint { meant, .. }) => (meant, Outcome::Refused(r)),
        Decision::Refuse(
            r @ (Refusal::HoldQueueFull | Refusal::Fenced | Refusal::HoldUndecided),
        ) => (table.live, Outcome::Refused(r)),
        Decision::Hold(_) => return,
    };
    record(&table.pool(pool).runtime, table.settings.outlier, o);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PoolName;
    use crate::telemetry::metrics::Metrics;

    struct Fixture {
        metrics: Metrics,
        pool: PoolRuntime,
        ep: Endpoint,
    }

    fn fixture() -> Fixture {
        let metrics = Metrics::new();
        let pool = PoolRuntime::new(
            PoolName::Blue,
            Duration::from_secs(10),
            metrics.pool(PoolName::Blue).clone(),
        );
        let ep = Endpoint::new(PoolName::Blue, "127.0.0.1:1").unwrap();
        Fixture { metrics, pool, ep }
    }

    /// Ejected on the `threshold`-th failure in a row.
    fn outlier(threshold: u32) -> Outlier {
        Outlier {
            threshold,
            ejection_ms: 60_000,
            max_ejection_percent: 100,
        }
    }

    impl Fixture {
        /// (requests, errors) in the rollback window.
        fn window(&self) -> (u64, u64) {
            let w = self
                .pool
                .stats
                .window(crate::clock::now_ms(), Duration::from_secs(10));
            (w.requests, w.errors)
        }

        /// The value of the sample of `metric` whose labels include `label`.
        fn metric(&self, metric: &str, label: &str) -> u64 {
            let text = self.metrics.encode();
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("{metric}{{")) && l.contains(label))
                .unwrap_or_else(|| panic!("no {metric} with {label} in\n{text}"));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        }

        fn ejected(&self) -> bool {
            self.ep.ejected_until_ms() > crate::clock::now_ms()
        }

        fn record(&self, threshold: u32, o: Outcome<'_>) {
            record(&self.pool, outlier(threshold), o);
        }
    }

    const REQUESTS: &str = "switchyard_requests_total";
    const UPSTREAM_ERRORS: &str = "switchyard_upstream_errors_total";
    const MS: Duration = Duration::from_millis(3);

    #[test]
    fn an_upstream_failure_counts_everywhere() {
        let f = fixture();
        let error = ProxyError::Timeout(Duration::from_secs(1));
        f.record(
            1,
            Outcome::Failed {
                endpoint: &f.ep,
                error: &error,
                latency: MS,
            },
        );
        assert!(f.ejected());
        assert_eq!(f.window(), (1, 1));
        assert_eq!(f.metric(UPSTREAM_ERRORS, "kind=\"timeout\""), 1);
        assert_eq!(f.metric(REQUESTS, "code=\"error\""), 1);
    }

    #[test]
    fn a_broken_client_body_blames_no_upstream() {
        let f = fixture();
        let error = ProxyError::ClientBodyStalled(Duration::from_secs(1));
        f.record(
            1,
            Outcome::Failed {
                endpoint: &f.ep,
                error: &error,
                latency: MS,
            },
        );
        assert!(!f.ejected());
        // A request, with its 408, and no error.
        assert_eq!(f.window(), (1, 0));
        assert_eq!(f.metric(REQUESTS, "code=\"4xx\""), 1);
        assert_eq!(f.metric(UPSTREAM_ERRORS, "kind=\"reset\""), 0);
    }

    #[test]
    fn a_retried_attempt_counts_against_its_endpoint_not_as_a_request() {
        let f = fixture();
        f.record(
            1,
            Outcome::Retried {
                endpoint: &f.ep,
                kind: UpstreamErrorKind::Connect,
            },
        );
        assert!(f.ejected());
        assert_eq!(f.window(), (0, 0));
        assert_eq!(f.metric(UPSTREAM_ERRORS, "kind=\"connect\""), 1);
    }

    #[test]
    fn an_answer_is_a_request_and_a_5xx_a_failure_of_its_endpoint() {
        let f = fixture();
        let answered = |status| Outcome::Answered {
            endpoint: &f.ep,
            status,
            latency: MS,
        };
        f.record(1, answered(StatusCode::OK));
        assert!(!f.ejected());
        f.record(1, answered(StatusCode::BAD_GATEWAY));
        assert!(f.ejected());
        assert_eq!(f.window(), (2, 1));
        assert_eq!(f.metric(REQUESTS, "code=\"2xx\""), 1);
        assert_eq!(f.metric(REQUESTS, "code=\"5xx\""), 1);
    }

    #[test]
    fn a_body_counts_once_for_its_endpoint() {
        // Threshold 2: a 5xx head and a body broken after it are one
        // failure, not two.
        let f = fixture();
        let five = Outcome::Answered {
            endpoint: &f.ep,
            status: StatusCode::INTERNAL_SERVER_ERROR,
            latency: MS,
        };
        f.record(2, five);
        let broken = |head_ok| Outcome::BodyBroken {
            endpoint: &f.ep,
            kind: UpstreamErrorKind::Reset,
            head_ok,
        };
        f.record(2, broken(false));
        assert!(!f.ejected());
        assert_eq!(f.metric(UPSTREAM_ERRORS, "kind=\"reset\""), 1);
        // A body read whole after a good head ends the run of failures.
        f.record(
            2,
            Outcome::BodyEnded {
                endpoint: &f.ep,
                head_ok: true,
            },
        );
        f.record(2, broken(true));
        assert!(!f.ejected(), "one failure since the success");
        f.record(2, broken(true));
        assert!(f.ejected());
    }

    #[test]
    fn refusals_count_for_the_pool_they_were_meant_for() {
        let f = fixture();
        let no_endpoint = |failed_over| {
            Outcome::Refused(Refusal::NoEndpoint {
                meant: PoolName::Blue,
                failed_over,
            })
        };
        f.record(1, no_endpoint(false));
        assert_eq!(f.pool.failovers(), 0);
        f.record(1, no_endpoint(true));
        assert_eq!(f.pool.failovers(), 1);
        assert!(f.pool.is_failing_over());
        // Each an error in the rollback window (the judge sees them) and a
        // refused request in the metrics; a full hold queue only the latter.
        assert_eq!(f.window(), (2, 2));
        f.record(1, Outcome::Refused(Refusal::HoldQueueFull));
        assert_eq!(f.window(), (2, 2));
        assert_eq!(f.metric(REQUESTS, "code=\"error\""), 3);
        // A request served by its pool ends the failover.
        let route = Route {
            pool: PoolName::Blue,
            endpoint: 0,
            failed_over: false,
            new_bucket: None,
        };
        f.record(1, Outcome::Routed(route));
        assert!(!f.pool.is_failing_over());
        assert_eq!(f.window(), (2, 2), "routing alone is no request yet");
    }
}
