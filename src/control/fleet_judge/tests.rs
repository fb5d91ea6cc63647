use super::*;
use crate::control::judge::{BreachReason, RollbackJudge};
use crate::telemetry::stats::Outcome;
use PoolName::{Blue, Green};

fn cfg() -> RollbackConfig {
    RollbackConfig {
        interval: Duration::from_secs(1),
        window: Duration::from_secs(10),
        min_requests: 100,
        max_error_rate: 0.01,
        consecutive_breaches: 2,
        grace: Duration::ZERO,
        ..RollbackConfig::default()
    }
}

fn members(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

/// Cumulative counts: `requests` of which `errors` failed, all at `ms` latency.
fn counts(requests: u64, errors: u64, ms: u64) -> Counts {
    let stats = PoolStats::new(Duration::from_secs(1));
    for i in 0..requests {
        let outcome = if i < errors {
            Outcome::Status(500)
        } else {
            Outcome::Status(200)
        };
        stats.record(0, outcome, Duration::from_millis(ms));
    }
    stats.counts_between(0, 100)
}

fn report(generation: u64, covered_ms: u64, green: Counts, blue: Counts) -> StatsReport {
    StatsReport {
        generation,
        since_unix_ms: 1,
        published_unix_ms: 2,
        covered_ms,
        blue,
        green,
    }
}

#[tokio::test(start_paused = true)]
async fn no_single_member_reaches_min_requests_but_the_sum_breaches() {
    let cfg = cfg();
    let live = members(&["a", "b", "c"]);
    let mut agg = Aggregator::new();
    // Each member: 40 green requests, 2 failed (5 %); alone below 100.
    for m in &live {
        agg.observe(
            m,
            report(7, 1_000, counts(40, 2, 5), counts(400, 0, 5)),
            Instant::now(),
        );
    }
    let v = agg.evaluate(
        &cfg,
        MinReporting::Majority,
        &live,
        7,
        Green,
        Blue,
        Instant::now(),
    );
    assert_eq!(v.fleet.reporting, live);
    assert!(v.fleet.stale.is_empty());
    assert_eq!(v.fleet.candidate_requests, 120);
    match &v.verdict {
        Verdict::Breach { reason, figures } => {
            assert_eq!(*reason, BreachReason::ErrorRate);
            assert_eq!(figures.candidate_requests, 120);
            assert!((figures.candidate_error_rate - 0.05).abs() < 1e-9);
            assert_eq!(figures.live_requests, 1_200);
        }
        other => panic!("expected a breach, got {other:?}"),
    }
    // And the unchanged judge turns two such verdicts into one decision.
    let mut judge = RollbackJudge::new(&cfg);
    judge.reset(Instant::now());
    assert!(judge.observe(Instant::now(), v.verdict.clone()).is_none());
    let decision = judge
        .observe(Instant::now(), v.verdict)
        .expect("second breach decides");
    assert_eq!(decision.breaches, 2);
}

#[tokio::test(start_paused = true)]
async fn the_fleet_p99_comes_from_the_summed_histogram_not_an_average() {
    let cfg = RollbackConfig {
        max_p99_latency: Some(Duration::from_millis(100)),
        max_error_rate: 1.0,
        ..cfg()
    };
    let live = members(&["a", "b"]);
    let mut agg = Aggregator::new();
    // a: 98 fast; b: 2 fast + 2 at 500 ms. The fleet's p99 of 104 requests
    // lies among the slow ones; an average of the two p99s would too, but
    // with a's share fast: check the rank is computed over the sum.
    agg.observe(
        "a",
        report(1, 500, counts(98, 0, 5), Counts::default()),
        Instant::now(),
    );
    let mut b = counts(2, 0, 5);
    b.add(&counts(2, 0, 500));
    agg.observe("b", report(1, 500, b, Counts::default()), Instant::now());
    let v = agg.evaluate(
        &cfg,
        MinReporting::All,
        &live,
        1,
        Green,
        Blue,
        Instant::now(),
    );
    assert_eq!(v.fleet.candidate_requests, 102);
    match v.verdict {
        Verdict::Breach { reason, figures } => {
            assert_eq!(reason, BreachReason::Latency);
            let p99 = figures.candidate_p99_ms.unwrap();
            assert!((470.0..530.0).contains(&p99), "p99 {p99}");
        }
        other => panic!("expected a latency breach, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn too_few_fresh_members_give_no_verdict_and_name_the_stale_ones() {
    let cfg = cfg();
    let live = members(&["a", "b", "c"]);
    let mut agg = Aggregator::new();
    agg.observe(
        "a",
        report(3, 1_000, counts(500, 100, 5), Counts::default()),
        Instant::now(),
    );
    // b reports an older generation; c never reported.
    agg.observe(
        "b",
        report(2, 1_000, counts(500, 100, 5), Counts::default()),
        Instant::now(),
    );
    let v = agg.evaluate(
        &cfg,
        MinReporting::Majority,
        &live,
        3,
        Green,
        Blue,
        Instant::now(),
    );
    assert_eq!(v.fleet.reporting, members(&["a"]));
    assert_eq!(v.fleet.stale, members(&["b", "c"]));
    assert_eq!(
        v.verdict,
        Verdict::NoVerdict {
            reason: NoVerdictReason::TooFewReporting {
                reporting: 1,
                needed: 2
            }
        }
    );
    // A count of 1 lets a alone decide.
    let v = agg.evaluate(
        &cfg,
        MinReporting::Count(1),
        &live,
        3,
        Green,
        Blue,
        Instant::now(),
    );
    assert!(matches!(v.verdict, Verdict::Breach { .. }));

    // A report older than two intervals is stale.
    for m in &live {
        agg.observe(
            m,
            report(3, 1_000, counts(500, 100, 5), Counts::default()),
            Instant::now(),
        );
    }
    tokio::time::advance(Duration::from_millis(2_100)).await;
    agg.observe(
        "a",
        report(3, 3_000, counts(500, 100, 5), Counts::default()),
        Instant::now(),
    );
    let v = agg.evaluate(
        &cfg,
        MinReporting::All,
        &live,
        3,
        Green,
        Blue,
        Instant::now(),
    );
    assert_eq!(v.fleet.stale, members(&["b", "c"]));
    assert!(matches!(v.verdict, Verdict::NoVerdict { .. }));
    // Only live members count: b and c left the fleet.
    agg.forget("b");
    let v = agg.evaluate(
        &cfg,
        MinReporting::All,
        &members(&["a"]),
        3,
        Green,
        Blue,
        Instant::now(),
    );
    assert!(v.fleet.stale.is_empty());
}

#[tokio::test(start_paused = true)]
async fn past_the_window_only_the_difference_over_the_window_counts() {
    let cfg = cfg();
    let live = members(&["a"]);
    let mut agg = Aggregator::new();
    // Early on: 1000 green requests, half of them failed.
    agg.observe(
        "a",
        report(1, 1_000, counts(1_000, 500, 5), Counts::default()),
        Instant::now(),
    );
    for second in 1..=12u64 {
        tokio::time::advance(cfg.interval).await;
        // From then on: 100 healthy requests a second.
        let mut total = counts(1_000, 500, 5);
        total.add(&counts(100 * second, 0, 5));
        agg.observe(
            "a",
            report(1, 1_000 + second * 1_000, total, Counts::default()),
            Instant::now(),
        );
    }
    let v = agg.evaluate(
        &cfg,
        MinReporting::All,
        &live,
        1,
        Green,
        Blue,
        Instant::now(),
    );
    // 10 s window: the last 10 seconds' 1000 healthy requests, none of the failures.
    assert_eq!(v.fleet.candidate_requests, 1_000);
    assert_eq!(v.verdict, Verdict::Pass);
}

#[test]
fn the_publisher_accumulates_finished_buckets_and_restarts_per_generation() {
    let blue = PoolStats::new(Duration::from_secs(10));
    let green = PoolStats::new(Duration::from_secs(10));
    let mut p = Publisher::new(4, 1_000, 50);
    green.record(60, Outcome::Status(500), Duration::from_millis(3));
    green.record(150, Outcome::Status(200), Duration::from_millis(3));
    // At 120 only the bucket [100,..) has not finished; the one holding 60
    // started before the publisher and does not count.
    assert_eq!(p.tick(&blue, &green, 120, 9).green.requests, 0);
    let r = p.tick(&blue, &green, 210, 10).clone();
    assert_eq!((r.generation, r.green.requests, r.green.errors), (4, 1, 0));
    blue.record(250, Outcome::Status(200), Duration::from_millis(3));
    let r = p.tick(&blue, &green, 1_000, 11).clone();
    assert_eq!((r.blue.requests, r.green.requests), (1, 1), "cumulative");
    assert_eq!(StatsReport::decode(&r.encode()).unwrap(), r);
    p.restart(5, 2_000, 1_000);
    assert_eq!(p.tick(&blue, &green, 2_000, 12).green.requests, 0);
    assert_eq!(p.generation(), 5);
}

#[tokio::test(start_paused = true)]
async fn the_sequential_judge_weighs_the_fleets_sums_since_the_generation_began() {
    let cfg = RollbackConfig {
        judge: JudgeKind::Sequential,
        ..cfg()
    };
    let live = members(&["a", "b", "c"]);
    let both_fail = |agg: &mut Aggregator, green_errors: u64| {
        for m in &live {
            // Covering more than the window: the sequential judge still
            // counts everything since the generation began.
            agg.observe(
                m,
                report(7, 60_000, counts(300, green_errors, 5), counts(900, 9, 5)),
                Instant::now(),
            );
        }
    };
    let evaluate = |agg: &mut Aggregator| {
        agg.evaluate(
            &cfg,
            MinReporting::Majority,
            &live,
            7,
            Green,
            Blue,
            Instant::now(),
        )
    };
    // 1 % on both sides in every member: no evidence against green.
    let mut agg = Aggregator::new();
    both_fail(&mut agg, 3);
    let v = evaluate(&mut agg);
    assert_eq!(v.verdict, Verdict::Pass);
    let (c, l) = v.totals.expect("the fleet's sums");
    assert_eq!((c.requests, c.errors, l.requests), (900, 9, 2_700));
    // 6 % against 1 %: decided on the sum, with its evidence.
    let mut agg = Aggregator::new();
    both_fail(&mut agg, 18);
    match evaluate(&mut agg).verdict {
        Verdict::Breach { reason, figures } => {
            assert_eq!(reason, BreachReason::Sequential);
            let e = figures.sequential.expect("evidence");
            assert_eq!((e.candidate_requests, e.candidate_events), (900, 54));
            assert_eq!((e.live_requests, e.live_events), (2_700, 27));
            assert!(e.decides());
        }
        other => panic!("expected a sequential breach, got {other:?}"),
    }
}
