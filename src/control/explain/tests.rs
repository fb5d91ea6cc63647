use super::rules::{check, human, sequential_rules, threshold_rules, Window};
use super::*;
use crate::config::RollbackConfig;
use crate::control::sequential;
use crate::telemetry::stats::{Counts, WindowStats};

fn stats(requests: u64, errors: u64, p99_ms: f64) -> WindowStats {
    WindowStats {
        requests,
        errors,
        error_rate: errors as f64 / requests.max(1) as f64,
        rps: 0.0,
        p50_ms: Some(p99_ms / 2.0),
        p99_ms: Some(p99_ms),
    }
}

fn window<'a>(c: &'a WindowStats, l: &'a WindowStats) -> Window<'a> {
    Window {
        name: "60s window".to_owned(),
        candidate: c,
        live: l,
    }
}

#[test]
fn durations_read_as_words() {
    assert_eq!(human(Duration::from_millis(3_100)), "4 s");
    assert_eq!(human(Duration::from_secs(150)), "2 m 30 s");
    assert_eq!(human(Duration::from_secs(600)), "10 m");
}

#[test]
fn too_few_requests_say_how_many_of_how_many() {
    let cfg = RollbackConfig::default();
    let (c, l) = (stats(17, 0, 5.0), stats(900, 0, 5.0));
    let rules = threshold_rules(&cfg, &[window(&c, &l)]);
    let first = &rules[0];
    assert_eq!(first.rule, "max_error_rate");
    assert_eq!(first.verdict, RuleVerdict::Waiting);
    assert_eq!(first.threshold, Some(0.01));
    assert_eq!(
        first.waiting_for.as_deref(),
        Some("17 of 50 requests in the 60s window")
    );
    // Unset rules are shown as off, with the value they would judge.
    assert_eq!(rules[1].verdict, RuleVerdict::Off);
    assert_eq!(rules[2].rule, "max_p99_latency");
    assert_eq!(rules[2].verdict, RuleVerdict::Off);
}

#[test]
fn each_rule_has_its_value_threshold_and_verdict() {
    let cfg = RollbackConfig {
        max_error_rate_increase: Some(0.005),
        max_p99_latency: Some(Duration::from_millis(100)),
        ..RollbackConfig::default()
    };
    let (c, l) = (stats(1_000, 30, 150.0), stats(9_000, 180, 20.0));
    let rules = threshold_rules(&cfg, &[window(&c, &l)]);
    let by = |name: &str| rules.iter().find(|r| r.rule == name).expect(name);
    let rate = by("max_error_rate");
    assert_eq!(
        (rate.value, rate.verdict),
        (Some(0.03), RuleVerdict::Breach)
    );
    assert!(rate.detail.contains("above 0.01"), "{}", rate.detail);
    // 3% against the live pool's 2%: one point over, above 0.5.
    let inc = by("max_error_rate_increase");
    assert_eq!(inc.verdict, RuleVerdict::Breach);
    assert!((inc.value.unwrap() - 0.01).abs() < 1e-9);
    let p99 = by("max_p99_latency");
    assert_eq!((p99.value, p99.threshold), (Some(150.0), Some(100.0)));
    assert_eq!(p99.verdict, RuleVerdict::Breach);
    // A healthy candidate passes each.
    let (c, l) = (stats(1_000, 1, 15.0), stats(9_000, 9, 20.0));
    let rules = threshold_rules(&cfg, &[window(&c, &l)]);
    assert!(
        rules.iter().all(|r| r.verdict == RuleVerdict::Pass),
        "{rules:?}"
    );
}

#[test]
fn the_sequential_halves_show_evidence_against_what_is_needed() {
    let cfg = RollbackConfig {
        judge: JudgeKind::Sequential,
        ..RollbackConfig::default()
    };
    let counts = |requests, errors| Counts {
        requests,
        errors,
        latency: Default::default(),
    };
    let a = sequential::assess(&cfg, &counts(1_000, 2), &counts(9_000, 9));
    let rules = sequential_rules(&a);
    assert_eq!(rules[0].rule, "sequential_errors");
    assert_eq!(rules[0].verdict, RuleVerdict::Pass);
    assert_eq!(rules[0].threshold, Some(200.0));
    let w = rules[0].waiting_for.as_deref().expect("waits for evidence");
    assert!(w.contains("of 200 needed (confidence 0.99)"), "{w}");
    // No histograms: the latency half waits for samples.
    assert_eq!(rules[1].verdict, RuleVerdict::Waiting);
    assert_eq!(
        rules[1].waiting_for.as_deref(),
        Some("latency: 0 of 100 live latency samples")
    );
    let low = sequential::assess(&cfg, &counts(17, 0), &counts(9_000, 9));
    let rules = sequential_rules(&low);
    assert_eq!(
        rules[0].waiting_for.as_deref(),
        Some("17 of 50 candidate requests")
    );
}

#[test]
fn a_check_says_what_it_waits_for() {
    let cfg: crate::config::analysis::CheckConfig = serde_json::from_value(serde_json::json!({
        "name": "orders",
        "http": {"url": "http://127.0.0.1:7000/orders?pool={{pool}}"},
        "min_ratio": 0.9
    }))
    .expect("a check");
    let c = check(&cfg, None, false);
    assert_eq!(c.verdict, "not_armed");
    let c = check(&cfg, None, true);
    assert_eq!(c.verdict, "waiting");
    assert_eq!(c.waiting_for.as_deref(), Some("no reading yet (every 10s)"));
    let report = |verdict, detail: &str| crate::control::analysis::CheckReport {
        check: "orders".into(),
        epoch: 1,
        verdict,
        candidate_pool: PoolName::Green,
        candidate: Some(5.0),
        live: Some(10.0),
        ratio: Some(0.5),
        threshold: "candidate/live >= 0.9".into(),
        detail: detail.into(),
        time: "2026-12-05T12:00:00Z".into(),
    };
    let state = crate::control::analysis::drive::CheckState {
        last: Some(report(
            crate::control::analysis::CheckVerdict::Inconclusive,
            "inconclusive: candidate: Prometheus answered no series",
        )),
        ..Default::default()
    };
    let c = check(&cfg, Some(&state), true);
    assert_eq!(c.verdict, "inconclusive");
    assert_eq!(
        c.waiting_for.as_deref(),
        Some("inconclusive: candidate: Prometheus answered no series")
    );
    let state = crate::control::analysis::drive::CheckState {
        last: Some(report(
            crate::control::analysis::CheckVerdict::Fail,
            "candidate/live 0.5000 is below 0.9",
        )),
        failures: 1,
        ..Default::default()
    };
    let c = check(&cfg, Some(&state), true);
    assert_eq!((c.value, c.verdict.as_str()), (Some(0.5), "fail"));
    assert_eq!(c.threshold, "candidate/live >= 0.9");
    assert_eq!(
        c.waiting_for.as_deref(),
        Some("failed 1 of 3 times in a row before a rollback")
    );
}
