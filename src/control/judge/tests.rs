use super::*;

fn cfg() -> RollbackConfig {
    RollbackConfig {
        min_requests: 100,
        max_error_rate: 0.01,
        consecutive_breaches: 3,
        grace: Duration::from_secs(10),
        ..RollbackConfig::default()
    }
}

/// `requests` requests of which `errors` failed, p99 `p99_ms`.
fn window(requests: u64, errors: u64, p99_ms: f64) -> WindowStats {
    WindowStats {
        requests,
        errors,
        error_rate: if requests == 0 {
            0.0
        } else {
            errors as f64 / requests as f64
        },
        rps: 0.0,
        p50_ms: (requests > 0).then_some(p99_ms / 2.0),
        p99_ms: (requests > 0).then_some(p99_ms),
    }
}

fn healthy() -> WindowStats {
    window(10_000, 0, 10.0)
}

fn reason(verdict: &Verdict) -> Option<BreachReason> {
    match verdict {
        Verdict::Breach { reason, .. } => Some(*reason),
        _ => None,
    }
}

#[test]
fn too_few_requests_gives_no_verdict_however_bad() {
    let v = evaluate(&cfg(), &window(99, 99, 60_000.0), &healthy());
    assert_eq!(
        v,
        Verdict::NoVerdict {
            reason: NoVerdictReason::TooFewRequests {
                requests: 99,
                min_requests: 100
            }
        }
    );
    // One more request and it is judged.
    let v = evaluate(&cfg(), &window(100, 99, 60_000.0), &healthy());
    assert_eq!(reason(&v), Some(BreachReason::ErrorRate));
}

#[test]
fn disabled_gives_no_verdict() {
    let cfg = RollbackConfig {
        enabled: false,
        ..cfg()
    };
    let v = evaluate(&cfg, &window(1000, 1000, 1.0), &healthy());
    assert!(matches!(
        v,
        Verdict::NoVerdict {
            reason: NoVerdictReason::Disabled
        }
    ));
}

#[test]
fn error_rate_fires_strictly_above_its_threshold() {
    // 1.0% exactly passes, 1.1% breaches.
    assert_eq!(
        evaluate(&cfg(), &window(1000, 10, 5.0), &healthy()),
        Verdict::Pass
    );
    let v = evaluate(&cfg(), &window(1000, 11, 5.0), &healthy());
    assert_eq!(reason(&v), Some(BreachReason::ErrorRate));
    let Verdict::Breach { figures, .. } = v else {
        panic!("breach expected")
    };
    assert_eq!(figures.candidate_requests, 1000);
    assert!((figures.candidate_error_rate - 0.011).abs() < 1e-12);
    assert_eq!(figures.live_requests, 10_000);
    assert_eq!(figures.max_error_rate, 0.01);
    assert_eq!(figures.baseline_error_rate, None);
}

#[test]
fn error_rate_increase_fires_above_live_plus_increase() {
    let cfg = RollbackConfig {
        max_error_rate: 0.5,
        max_error_rate_increase: Some(0.005),
        ..cfg()
    };
    let live = window(10_000, 100, 10.0); // 1%
                                          // 1.5%: exactly live + increase, passes.
    assert_eq!(evaluate(&cfg, &window(1000, 15, 5.0), &live), Verdict::Pass);
    let v = evaluate(&cfg, &window(1000, 16, 5.0), &live);
    assert_eq!(reason(&v), Some(BreachReason::ErrorRateIncrease));
    let Verdict::Breach { figures, .. } = v else {
        panic!("breach expected")
    };
    assert_eq!(figures.baseline_error_rate, Some(0.01));
    assert_eq!(figures.max_error_rate_increase, Some(0.005));
}

#[test]
fn absolute_ceiling_is_named_before_the_increase() {
    let cfg = RollbackConfig {
        max_error_rate_increase: Some(0.005),
        ..cfg()
    };
    let v = evaluate(&cfg, &window(1000, 100, 5.0), &healthy());
    assert_eq!(reason(&v), Some(BreachReason::ErrorRate));
}

#[test]
fn shared_dependency_failure_does_not_roll_back_with_a_high_ceiling() {
    // Both pools fail 30% of requests: green is no worse than blue.
    let live = window(10_000, 3_000, 10.0);
    let candidate = window(1_000, 300, 10.0);
    let tolerant = RollbackConfig {
        max_error_rate: 0.5,
        max_error_rate_increase: Some(0.005),
        ..cfg()
    };
    assert_eq!(evaluate(&tolerant, &candidate, &live), Verdict::Pass);
    // Green failing a bit more than blue is still caught.
    let worse = window(1_000, 310, 10.0);
    assert_eq!(
        reason(&evaluate(&tolerant, &worse, &live)),
        Some(BreachReason::ErrorRateIncrease)
    );
    // The default ceiling of 1% is absolute: it rolls back anyway.
    let strict = RollbackConfig {
        max_error_rate_increase: Some(0.005),
        ..cfg()
    };
    assert_eq!(
        reason(&evaluate(&strict, &candidate, &live)),
        Some(BreachReason::ErrorRate)
    );
}

#[test]
fn increase_without_live_traffic_compares_against_zero() {
    let cfg = RollbackConfig {
        max_error_rate: 0.5,
        max_error_rate_increase: Some(0.005),
        ..cfg()
    };
    // Baking: the live pool got 99 requests, all failed: no baseline.
    let live = window(99, 99, 10.0);
    assert_eq!(evaluate(&cfg, &window(1000, 5, 5.0), &live), Verdict::Pass);
    let v = evaluate(&cfg, &window(1000, 6, 5.0), &live);
    assert_eq!(reason(&v), Some(BreachReason::ErrorRateIncrease));
}

#[test]
fn latency_fires_strictly_above_max_p99() {
    let slow = RollbackConfig {
        max_p99_latency: Some(Duration::from_millis(800)),
        ..cfg()
    };
    assert_eq!(
        evaluate(&slow, &window(1000, 0, 800.0), &healthy()),
        Verdict::Pass
    );
    let v = evaluate(&slow, &window(1000, 0, 800.5), &healthy());
    assert_eq!(reason(&v), Some(BreachReason::Latency));
    let Verdict::Breach { figures, .. } = v else {
        panic!("breach expected")
    };
    assert_eq!(figures.candidate_p99_ms, Some(800.5));
    assert_eq!(figures.max_p99_latency_ms, Some(800.0));
    // Without the setting, any latency passes.
    assert_eq!(
        evaluate(&cfg(), &window(1000, 0, 60_000.0), &healthy()),
        Verdict::Pass
    );
}

#[test]
fn reasons_are_the_metric_labels() {
    for (reason, label) in [
        (BreachReason::ErrorRate, "error_rate"),
        (BreachReason::ErrorRateIncrease, "error_rate_increase"),
        (BreachReason::Latency, "latency"),
    ] {
        assert_eq!(reason.to_string(), label);
        assert_eq!(RollbackReason::from(reason).as_str(), label);
        assert_eq!(serde_json::to_value(reason).unwrap(), label);
    }
}

#[test]
fn verdicts_serialize_with_their_figures() {
    let v = evaluate(&cfg(), &window(1000, 20, 5.0), &healthy());
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["verdict"], "breach");
    assert_eq!(json["reason"], "error_rate");
    assert_eq!(json["figures"]["candidate_requests"], 1000);
    assert_eq!(json["figures"]["max_error_rate"], 0.01);
}

fn breach() -> Verdict {
    evaluate(&cfg(), &window(1000, 500, 5.0), &healthy())
}

#[tokio::test(start_paused = true)]
async fn fires_after_consecutive_breaches_only() {
    let mut judge = RollbackJudge::new(&cfg());
    judge.reset(Instant::now());
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(!judge.in_grace(Instant::now()));
    assert_eq!(judge.observe(Instant::now(), breach()), None);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(judge.observe(Instant::now(), breach()), None);
    assert_eq!(judge.breaches(), 2);
    tokio::time::advance(Duration::from_secs(1)).await;
    let decision = judge
        .observe(Instant::now(), breach())
        .expect("third breach in a row decides");
    assert_eq!(decision.reason, BreachReason::ErrorRate);
    assert_eq!(decision.breaches, 3);
    assert_eq!(decision.figures.candidate_requests, 1000);
    assert_eq!(judge.breaches(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_pass_or_no_verdict_breaks_the_run() {
    let mut judge = RollbackJudge::new(&cfg());
    let no_verdict = evaluate(&cfg(), &window(3, 3, 5.0), &healthy());
    for interrupt in [Verdict::Pass, no_verdict] {
        judge.reset(Instant::now());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(judge.observe(Instant::now(), breach()), None);
        assert_eq!(judge.observe(Instant::now(), breach()), None);
        assert_eq!(judge.observe(Instant::now(), interrupt), None);
        assert_eq!(judge.breaches(), 0);
        assert_eq!(judge.observe(Instant::now(), breach()), None);
        assert_eq!(judge.observe(Instant::now(), breach()), None);
        assert!(judge.observe(Instant::now(), breach()).is_some());
    }
}

#[tokio::test(start_paused = true)]
async fn no_decision_within_grace_after_a_weight_change() {
    let mut judge = RollbackJudge::new(&cfg());
    judge.reset(Instant::now());
    for _ in 0..9 {
        assert_eq!(judge.observe(Instant::now(), breach()), None);
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    tokio::time::advance(Duration::from_millis(999)).await;
    assert!(judge.in_grace(Instant::now()));
    assert_eq!(judge.observe(Instant::now(), breach()), None);
    assert_eq!(judge.breaches(), 0, "breaches within grace must not count");
    // Grace ends at exactly 10 s.
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(!judge.in_grace(Instant::now()));
    judge.observe(Instant::now(), breach());
    judge.observe(Instant::now(), breach());
    // A weight change restarts grace and the count.
    judge.reset(Instant::now());
    assert_eq!(judge.breaches(), 0);
    assert_eq!(judge.observe(Instant::now(), breach()), None);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(judge.observe(Instant::now(), breach()), None);
    assert_eq!(judge.observe(Instant::now(), breach()), None);
    assert!(judge.observe(Instant::now(), breach()).is_some());
}

#[tokio::test(start_paused = true)]
async fn one_breach_is_enough_when_configured_so() {
    let cfg = RollbackConfig {
        consecutive_breaches: 1,
        grace: Duration::ZERO,
        ..cfg()
    };
    let mut judge = RollbackJudge::new(&cfg);
    judge.reset(Instant::now());
    assert!(judge.observe(Instant::now(), breach()).is_some());
    // Zero is treated as one, not as "never" or "always".
    let mut zero = RollbackJudge::new(&RollbackConfig {
        consecutive_breaches: 0,
        ..cfg
    });
    assert_eq!(zero.observe(Instant::now(), Verdict::Pass), None);
    assert!(zero.observe(Instant::now(), breach()).is_some());
}

#[test]
fn a_recent_onset_breaches_in_the_recent_window_before_the_window() {
    let cfg = RollbackConfig {
        min_requests: 10,
        max_error_rate: 0.05,
        window: Duration::from_secs(10),
        recent_window: Some(Duration::from_secs(3)),
        ..cfg()
    };
    // 50 requests in the window, 1 failed (2 %): the window passes; the
    // same failure among the last 3 s's 15 requests is 6.7 %.
    let (whole, recent) = (window(50, 1, 5.0), window(15, 1, 5.0));
    assert_eq!(evaluate(&cfg, &whole, &healthy()), Verdict::Pass);
    let v = evaluate_windows(&cfg, &whole, &healthy(), Some((&recent, &healthy())));
    match v {
        Verdict::Breach { reason, figures } => {
            assert_eq!(reason, BreachReason::ErrorRate);
            assert_eq!(
                figures.window_ms, 3_000,
                "the figures are the recent window's"
            );
            assert_eq!(figures.candidate_requests, 15);
        }
        other => panic!("{other:?}"),
    }
    // Too few recent requests: the recent window gives no verdict, the
    // window's stands.
    let few = window(9, 9, 5.0);
    assert_eq!(
        evaluate_windows(&cfg, &whole, &healthy(), Some((&few, &healthy()))),
        Verdict::Pass
    );
    // Off, or no shorter than the window: only the window is judged.
    for r in [
        None,
        Some(Duration::from_secs(10)),
        Some(Duration::from_secs(30)),
    ] {
        let cfg = RollbackConfig {
            recent_window: r,
            ..cfg.clone()
        };
        assert_eq!(recent_window(&cfg), None);
        assert_eq!(
            evaluate_windows(&cfg, &whole, &healthy(), Some((&recent, &healthy()))),
            Verdict::Pass
        );
    }
    // A breach of the window itself is reported with its own span.
    let bad = window(50, 10, 5.0);
    match evaluate_windows(&cfg, &bad, &healthy(), Some((&recent, &healthy()))) {
        Verdict::Breach { figures, .. } => assert_eq!(figures.window_ms, 10_000),
        other => panic!("{other:?}"),
    }
}
