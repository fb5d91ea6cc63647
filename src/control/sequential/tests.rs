use super::*;
use crate::control::judge::RollbackJudge;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

fn cfg() -> RollbackConfig {
    RollbackConfig {
        judge: crate::config::analysis::JudgeKind::Sequential,
        min_requests: 50,
        confidence: 0.99,
        min_effect: 0.005,
        ..RollbackConfig::default()
    }
}

fn counts(requests: u64, errors: u64) -> Counts {
    Counts {
        requests,
        errors,
        latency: BTreeMap::new(),
    }
}

/// `fast` requests at 10 ms and `slow` at 100 ms, no errors.
fn timed(fast: u64, slow: u64) -> Counts {
    let mut latency = BTreeMap::new();
    latency.insert(stats::bucket_of(Duration::from_millis(10)), fast);
    *latency
        .entry(stats::bucket_of(Duration::from_millis(100)))
        .or_default() += slow;
    Counts {
        requests: fast + slow,
        errors: 0,
        latency,
    }
}

fn reason(v: &Verdict) -> Option<BreachReason> {
    match v {
        Verdict::Breach { reason, .. } => Some(*reason),
        _ => None,
    }
}

#[test]
fn ln_gamma_matches_known_values() {
    let close = |a: f64, b: f64| (a - b).abs() < 1e-10 * b.abs().max(1.0);
    assert!(close(ln_gamma(1.0), 0.0));
    assert!(close(ln_gamma(2.0), 0.0));
    assert!(close(ln_gamma(0.5), std::f64::consts::PI.sqrt().ln()));
    assert!(close(ln_gamma(10.0), 362_880f64.ln()));
    assert!(close(ln_gamma(0.1), 2.252_712_651_734_206));
    // Stirling's series at a million.
    let x: f64 = 1e6;
    let stirling =
        (x - 0.5) * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI).ln() + 1.0 / (12.0 * x);
    assert!(close(ln_gamma(x), stirling));
}

#[test]
fn the_null_maximum_is_the_best_point_of_a_fine_grid() {
    for (x1, n1, x0, n0) in [
        (9.0, 40.0, 1.0, 200.0),
        (5.0, 50.0, 0.0, 100.0),
        (30.0, 30.0, 3.0, 60.0),
    ] {
        let delta = 0.01;
        let got = null_max(x1, n1, x0, n0, delta);
        let mut best = f64::NEG_INFINITY;
        for i in 0..=20_000 {
            let q = f64::from(i) / 20_000.0 * (1.0 - delta);
            // On the boundary and inside the null (p1 below the boundary).
            for p1 in [q + delta, (q + delta) * 0.5] {
                let v = log_lik(x1, n1, p1.min(1.0)) + log_lik(x0, n0, q);
                if v.is_finite() {
                    best = best.max(v);
                }
            }
        }
        assert!(got >= best - 1e-9, "{got} below the grid's {best}");
        assert!(got <= best + 1e-3, "{got} above the grid's {best}");
    }
}

#[test]
fn equal_pools_give_no_evidence() {
    for (n, rate) in [
        (1_000u64, 0.0),
        (10_000, 0.001),
        (100_000, 0.01),
        (100_000, 0.3),
    ] {
        let x = (n as f64 * rate) as u64;
        let log_e = log_evidence((n, x), (9 * n, 9 * x), 0.005);
        assert!(log_e < 0.0, "{n} requests at {rate}: ln E = {log_e}");
        assert_eq!(
            verdict(&cfg(), &counts(n, x), &counts(9 * n, 9 * x)),
            Some(Verdict::Pass)
        );
    }
}

#[test]
fn a_clearly_worse_candidate_is_a_sequential_breach_with_its_evidence() {
    let v = verdict(&cfg(), &counts(1_000, 50), &counts(9_000, 9)).expect("a baseline");
    let Verdict::Breach { reason, figures } = v else {
        panic!("no breach: {v:?}");
    };
    assert_eq!(reason, BreachReason::Sequential);
    assert_eq!(figures.candidate_requests, 1_000);
    assert!((figures.candidate_error_rate - 0.05).abs() < 1e-12);
    let e = figures.sequential.expect("evidence in the figures");
    assert_eq!(e.test, Test::Errors);
    assert_eq!((e.candidate_events, e.live_events), (50, 9));
    assert!((e.needed - 200.0).abs() < 1e-6, "{}", e.needed);
    assert!(e.evidence >= e.needed);
    let text = describe(&e);
    assert!(
        text.contains("candidate 50 of 1000 requests failed (5.00%)"),
        "{text}"
    );
    assert!(text.contains("200 needed"), "{text}");
}

#[test]
fn evidence_grows_with_the_candidates_errors() {
    let mut last = f64::NEG_INFINITY;
    for errors in [0, 5, 10, 20, 40, 80] {
        let log_e = log_evidence((1_000, errors), (9_000, 9), 0.005);
        assert!(log_e > last, "{errors} errors: {log_e} after {last}");
        last = log_e;
    }
}

#[test]
fn both_pools_failing_alike_is_no_candidate_fault() {
    // A shared dependency fails 30% of everyone's requests.
    let v = verdict(&cfg(), &counts(2_000, 600), &counts(18_000, 5_400));
    assert_eq!(v, Some(Verdict::Pass));
    // The threshold rules would roll back on the same figures.
    let c = counts(2_000, 600).summarize(Duration::from_secs(60));
    let l = counts(18_000, 5_400).summarize(Duration::from_secs(60));
    assert!(matches!(
        crate::control::judge::evaluate(&cfg(), &c, &l),
        Verdict::Breach { .. }
    ));
}

#[test]
fn worse_by_less_than_min_effect_is_never_enough() {
    // 0.4 points worse, a million requests: below min_effect (0.5 points).
    let v = verdict(&cfg(), &counts(1_000_000, 5_000), &counts(1_000_000, 1_000));
    assert_eq!(v, Some(Verdict::Pass));
    // The same gap against a min_effect of 0.1 points is decided.
    let small = RollbackConfig {
        min_effect: 0.001,
        ..cfg()
    };
    let v = verdict(&small, &counts(1_000_000, 5_000), &counts(1_000_000, 1_000));
    assert_eq!(v.as_ref().and_then(reason), Some(BreachReason::Sequential));
}

#[test]
fn low_traffic_is_inconclusive_and_no_baseline_falls_back() {
    // Every one of 49 candidate requests failed: still no verdict.
    let v = verdict(&cfg(), &counts(49, 49), &counts(9_000, 0));
    assert_eq!(
        v,
        Some(Verdict::NoVerdict {
            reason: NoVerdictReason::TooFewRequests {
                requests: 49,
                min_requests: 50
            }
        })
    );
    let a = assess(&cfg(), &counts(17, 0), &counts(9_000, 0));
    assert_eq!(
        a.waiting_for,
        vec!["17 of 50 candidate requests".to_owned()]
    );
    // Baking at 100%: the live pool has no traffic, no baseline.
    assert_eq!(verdict(&cfg(), &counts(5_000, 500), &counts(3, 0)), None);
    let a = assess(&cfg(), &counts(5_000, 500), &counts(3, 0));
    assert!(
        a.waiting_for[0].starts_with("no baseline: 3 of 50 live requests"),
        "{a:?}"
    );
}

#[test]
fn latency_is_compared_as_distributions() {
    // Same distributions: 1% slow in both.
    let v = verdict(&cfg(), &timed(990, 10), &timed(9_900, 100));
    assert_eq!(v, Some(Verdict::Pass));
    let a = assess(&cfg(), &timed(990, 10), &timed(9_900, 100));
    let lat = a.latency.expect("a latency half");
    assert!(!lat.decides());
    // 8% of the candidate's requests in the slow tail, 1% of the live pool's.
    let v = verdict(&cfg(), &timed(920, 80), &timed(9_900, 100)).expect("a baseline");
    let Verdict::Breach { reason, figures } = v else {
        panic!("no breach: {v:?}");
    };
    assert_eq!(reason, BreachReason::Sequential);
    let e = figures.sequential.expect("evidence");
    assert_eq!(e.test, Test::Latency);
    assert_eq!(e.candidate_events, 80);
    // The cut is the p99 bucket's upper bound: 10 ms, in a 12.5% bucket.
    let cut = e.cut_ms.expect("a cut");
    assert!((10.0..11.5).contains(&cut), "{cut}");
    assert!(describe(&e).contains("slower than the live pool's p99"));
}

#[test]
fn a_latency_half_waits_for_histograms() {
    // Counts without latency samples (requests never answered).
    let a = assess(&cfg(), &counts(1_000, 0), &counts(9_000, 0));
    assert!(a.errors.is_some());
    assert_eq!(a.latency, None);
    assert_eq!(
        a.waiting_for,
        vec!["latency: 0 of 100 live latency samples".to_owned()]
    );
}

#[test]
fn the_rollback_judge_decides_on_the_first_sequential_breach_after_grace() {
    let cfg = cfg();
    let mut judge = RollbackJudge::new(&cfg);
    let start = Instant::now();
    judge.reset(start);
    let breach = || verdict(&cfg, &counts(1_000, 50), &counts(9_000, 9)).expect("a baseline");
    assert_eq!(
        judge.observe(start + Duration::from_secs(9), breach()),
        None
    );
    let d = judge
        .observe(start + Duration::from_secs(10), breach())
        .expect("decided at once");
    assert_eq!(d.reason, BreachReason::Sequential);
    assert_eq!(d.breaches, 1);
}
