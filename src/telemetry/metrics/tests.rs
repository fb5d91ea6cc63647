use super::*;
use std::collections::BTreeMap;

/// `series{labels}` → value, from the text format.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            (series.to_string(), value.parse().expect("numeric value"))
        })
        .collect()
}

fn value(text: &str, series: &str) -> f64 {
    *samples(text)
        .get(series)
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

/// SPEC.md section 7, row by row.
const SPEC: &[(&str, &str)] = &[
    ("switchyard_requests_total", "counter"),
    ("switchyard_request_duration_seconds", "histogram"),
    ("switchyard_upstream_errors_total", "counter"),
    ("switchyard_inflight_requests", "gauge"),
    ("switchyard_pool_weight", "gauge"),
    ("switchyard_endpoint_healthy", "gauge"),
    ("switchyard_switches_total", "counter"),
    ("switchyard_rollbacks_total", "counter"),
    ("switchyard_held_requests_total", "counter"),
    ("switchyard_hold_duration_seconds", "histogram"),
    ("switchyard_config_reloads_total", "counter"),
    // SPEC.md section 10; the check series appear with the first reading.
    ("switchyard_notifications_total", "counter"),
    // SPEC.md section 12.
    ("switchyard_mirror_requests_total", "counter"),
    // SPEC.md section 13.
    ("switchyard_gate_lag_bytes", "gauge"),
];

#[test]
fn every_metric_of_the_spec_has_its_type_and_help() {
    let metrics = Metrics::new();
    metrics.set_endpoint_healthy(PoolName::Blue, "127.0.0.1:8001", true);
    let text = metrics.encode();
    for (name, kind) in SPEC {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} is not a {kind}:\n{text}"
        );
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no help"
        );
    }
    let families = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    assert_eq!(families, SPEC.len(), "unexpected families:\n{text}");
}

#[test]
fn a_fresh_registry_shows_every_known_series_at_zero() {
    let text = Metrics::new().encode();
    let all = samples(&text);
    for pool in ["blue", "green"] {
        for code in CODE_LABELS {
            let series = format!("switchyard_requests_total{{code=\"{code}\",pool=\"{pool}\"}}");
            assert_eq!(all.get(&series), Some(&0.0), "{series}");
        }
        for kind in ["connect", "timeout", "reset", "protocol"] {
            let series =
                format!("switchyard_upstream_errors_total{{kind=\"{kind}\",pool=\"{pool}\"}}");
            assert_eq!(all.get(&series), Some(&0.0), "{series}");
        }
        for series in [
            format!("switchyard_inflight_requests{{pool=\"{pool}\"}}"),
            format!("switchyard_pool_weight{{pool=\"{pool}\"}}"),
            format!("switchyard_request_duration_seconds_count{{pool=\"{pool}\"}}"),
        ] {
            assert_eq!(all.get(&series), Some(&0.0), "{series}");
        }
        for result in ["completed", "aborted", "refused"] {
            let series = format!("switchyard_switches_total{{result=\"{result}\",to=\"{pool}\"}}");
            assert_eq!(all.get(&series), Some(&0.0), "{series}");
        }
    }
    for reason in ["error_rate", "error_rate_increase", "latency", "manual"] {
        let series = format!("switchyard_rollbacks_total{{reason=\"{reason}\"}}");
        assert_eq!(all.get(&series), Some(&0.0), "{series}");
    }
    for result in ["success", "failure"] {
        let series = format!("switchyard_config_reloads_total{{result=\"{result}\"}}");
        assert_eq!(all.get(&series), Some(&0.0), "{series}");
    }
    for result in ["match", "mismatch", "error", "dropped"] {
        let series = format!("switchyard_mirror_requests_total{{result=\"{result}\"}}");
        assert_eq!(all.get(&series), Some(&0.0), "{series}");
    }
    assert_eq!(all.get("switchyard_held_requests_total"), Some(&0.0));
    assert_eq!(
        all.get("switchyard_hold_duration_seconds_count"),
        Some(&0.0)
    );
    // No endpoint is known yet.
    assert!(!text.contains("switchyard_endpoint_healthy"));
}

#[test]
fn status_classes_map_to_code_labels() {
    let label = |o| CODE_LABELS[code_index(o)];
    assert_eq!(label(Outcome::Status(101)), "1xx");
    assert_eq!(label(Outcome::Status(200)), "2xx");
    assert_eq!(label(Outcome::Status(299)), "2xx");
    assert_eq!(label(Outcome::Status(304)), "3xx");
    assert_eq!(label(Outcome::Status(404)), "4xx");
    assert_eq!(label(Outcome::Status(500)), "5xx");
    assert_eq!(label(Outcome::Status(599)), "5xx");
    assert_eq!(label(Outcome::TransportError), "error");
}

#[test]
fn pool_handles_count_requests_errors_inflight_and_weight() {
    let metrics = Metrics::new();
    let green = metrics.pool(PoolName::Green);
    green.record(Outcome::Status(200), Duration::from_millis(3));
    green.record(Outcome::Status(201), Duration::from_millis(40));
    green.record(Outcome::Status(503), Duration::from_secs(2));
    green.record(Outcome::TransportError, Duration::from_millis(700));
    green.upstream_error(UpstreamErrorKind::Reset);
    green.upstream_error(UpstreamErrorKind::Timeout);
    green.upstream_error(UpstreamErrorKind::Timeout);
    green.set_weight(12.5);
    let guard = green.inflight();
    let _second = green.inflight();
    drop(guard);
    assert_eq!(green.inflight_now(), 1);

    let text = metrics.encode();
    let v = |s: &str| value(&text, s);
    assert_eq!(
        v(r#"switchyard_requests_total{code="2xx",pool="green"}"#),
        2.0
    );
    assert_eq!(
        v(r#"switchyard_requests_total{code="5xx",pool="green"}"#),
        1.0
    );
    assert_eq!(
        v(r#"switchyard_requests_total{code="error",pool="green"}"#),
        1.0
    );
    assert_eq!(
        v(r#"switchyard_requests_total{code="2xx",pool="blue"}"#),
        0.0
    );
    assert_eq!(
        v(r#"switchyard_upstream_errors_total{kind="timeout",pool="green"}"#),
        2.0
    );
    assert_eq!(
        v(r#"switchyard_upstream_errors_total{kind="reset",pool="green"}"#),
        1.0
    );
    assert_eq!(
        v(r#"switchyard_upstream_errors_total{kind="connect",pool="green"}"#),
        0.0
    );
    assert_eq!(v(r#"switchyard_inflight_requests{pool="green"}"#), 1.0);
    assert_eq!(v(r#"switchyard_pool_weight{pool="green"}"#), 12.5);
    assert_eq!(
        v(r#"switchyard_request_duration_seconds_count{pool="green"}"#),
        4.0
    );
    let sum = v(r#"switchyard_request_duration_seconds_sum{pool="green"}"#);
    assert!((sum - 2.743).abs() < 1e-9, "sum {sum}");
    assert_eq!(
        v(r#"switchyard_request_duration_seconds_bucket{pool="green",le="0.005"}"#),
        1.0
    );
    assert_eq!(
        v(r#"switchyard_request_duration_seconds_bucket{pool="green",le="1"}"#),
        3.0
    );
    assert_eq!(
        v(r#"switchyard_request_duration_seconds_bucket{pool="green",le="+Inf"}"#),
        4.0
    );
}

#[test]
fn control_plane_events_are_counted() {
    let metrics = Metrics::new();
    metrics.switch(PoolName::Green, SwitchResult::Completed);
    metrics.switch(PoolName::Blue, SwitchResult::Refused);
    metrics.rollback(RollbackReason::ErrorRateIncrease);
    metrics.rollback(RollbackReason::Manual);
    metrics.rollback(RollbackReason::Manual);
    metrics.hold(3, Duration::from_millis(150));
    metrics.hold(2, Duration::from_millis(30));
    metrics.config_reload(true);
    metrics.config_reload(false);
    metrics.config_reload(false);

    let text = metrics.encode();
    let v = |s: &str| value(&text, s);
    assert_eq!(
        v(r#"switchyard_switches_total{result="completed",to="green"}"#),
        1.0
    );
    assert_eq!(
        v(r#"switchyard_switches_total{result="refused",to="blue"}"#),
        1.0
    );
    assert_eq!(
        v(r#"switchyard_switches_total{result="completed",to="blue"}"#),
        0.0
    );
    assert_eq!(
        v(r#"switchyard_rollbacks_total{reason="error_rate_increase"}"#),
        1.0
    );
    assert_eq!(v(r#"switchyard_rollbacks_total{reason="manual"}"#), 2.0);
    assert_eq!(v(r#"switchyard_rollbacks_total{reason="latency"}"#), 0.0);
    assert_eq!(v("switchyard_held_requests_total"), 5.0);
    assert_eq!(v("switchyard_hold_duration_seconds_count"), 2.0);
    assert_eq!(
        v(r#"switchyard_hold_duration_seconds_bucket{le="0.05"}"#),
        1.0
    );
    assert_eq!(
        v(r#"switchyard_config_reloads_total{result="success"}"#),
        1.0
    );
    assert_eq!(
        v(r#"switchyard_config_reloads_total{result="failure"}"#),
        2.0
    );
}

#[test]
fn endpoint_series_follow_health_and_removal() {
    let metrics = Metrics::new();
    metrics.set_endpoint_healthy(PoolName::Blue, "127.0.0.1:8001", true);
    metrics.set_endpoint_healthy(PoolName::Blue, "127.0.0.1:8002", true);
    metrics.set_endpoint_healthy(PoolName::Blue, "127.0.0.1:8002", false);
    let text = metrics.encode();
    let one = r#"switchyard_endpoint_healthy{endpoint="127.0.0.1:8001",pool="blue"}"#;
    let two = r#"switchyard_endpoint_healthy{endpoint="127.0.0.1:8002",pool="blue"}"#;
    assert_eq!(value(&text, one), 1.0);
    assert_eq!(value(&text, two), 0.0);

    assert!(metrics.remove_endpoint(PoolName::Blue, "127.0.0.1:8002"));
    assert!(!metrics.remove_endpoint(PoolName::Blue, "127.0.0.1:8002"));
    let text = metrics.encode();
    assert!(
        !text.contains("8002"),
        "removed endpoint still scraped:\n{text}"
    );
    assert_eq!(value(&text, one), 1.0);
}

#[test]
fn registries_are_independent() {
    let a = Metrics::new();
    let b = Metrics::new();
    a.pool(PoolName::Blue)
        .record(Outcome::Status(200), Duration::ZERO);
    let series = r#"switchyard_requests_total{code="2xx",pool="blue"}"#;
    assert_eq!(value(&a.encode(), series), 1.0);
    assert_eq!(value(&b.encode(), series), 0.0);
}
