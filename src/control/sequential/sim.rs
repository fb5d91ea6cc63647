//! Seeded simulations of rollouts: both judges fed the same request streams,
//! one evaluation per simulated second, as the controller does at the
//! default `rollback.interval`.
//!
//! - `false_rollbacks_stay_under_one_minus_confidence` (runs with the
//!   suite): thousands of rollouts where green equals blue.
//! - `time_to_rollback_table` (`--ignored`, prints the table of the issue):
//!   `cargo test --lib sequential::sim::time_to_rollback_table -- --ignored --nocapture`

use super::*;
use crate::control::judge::{evaluate_windows, RollbackJudge};
use crate::telemetry::stats::WindowStats;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// One simulated rollout step: per second, `rps` candidate requests failing
/// with `p1` and `live_share` times as many live requests failing with `p0`.
#[derive(Debug, Clone, Copy)]
struct Stream {
    rps: u64,
    live_share: u64,
    p1: f64,
    p0: f64,
}

/// Seconds until each judge rolled back (None: not within the horizon).
#[derive(Debug, Clone, Copy)]
struct Outcome {
    threshold: Option<u32>,
    sequential: Option<u32>,
}

/// How many of `n` trials fail with probability `p`: geometric jumps from
/// one failure to the next, so the cost is the number of failures.
fn binomial(rng: &mut fastrand::Rng, n: u64, p: f64) -> u64 {
    if p <= 0.0 {
        return 0;
    }
    let log_q = (1.0 - p).ln();
    let (mut at, mut failures) = (0u64, 0u64);
    loop {
        let u = 1.0 - rng.f64(); // (0, 1]
        let gap = (u.ln() / log_q).floor();
        if !gap.is_finite() || gap >= (n - at) as f64 {
            return failures;
        }
        at += gap as u64 + 1;
        failures += 1;
        if at >= n {
            return failures;
        }
    }
}

fn window_stats(slots: &VecDeque<(u64, u64)>, seconds: usize) -> WindowStats {
    let (n, x) = slots
        .iter()
        .rev()
        .take(seconds)
        .fold((0, 0), |(n, x), (a, b)| (n + a, x + b));
    WindowStats {
        requests: n,
        errors: x,
        error_rate: if n == 0 { 0.0 } else { x as f64 / n as f64 },
        rps: 0.0,
        p50_ms: None,
        p99_ms: None,
    }
}

/// One rollout of `horizon` seconds, both judges on the same stream.
fn rollout(cfg: &RollbackConfig, s: Stream, seed: u64, horizon: u32) -> Outcome {
    let mut rng = fastrand::Rng::with_seed(seed);
    let start = Instant::now();
    let mut threshold = RollbackJudge::new(cfg);
    let mut sequential = RollbackJudge::new(cfg);
    threshold.reset(start);
    sequential.reset(start);
    let window = cfg.window.as_secs() as usize;
    let recent = crate::control::judge::recent_window(cfg).map(|w| w.as_secs() as usize);
    let (mut cand_slots, mut live_slots) = (VecDeque::new(), VecDeque::new());
    let (mut cand, mut live) = (Counts::default(), Counts::default());
    let mut out = Outcome {
        threshold: None,
        sequential: None,
    };
    for second in 1..=horizon {
        let live_n = s.rps * s.live_share;
        let c = (s.rps, binomial(&mut rng, s.rps, s.p1));
        let l = (live_n, binomial(&mut rng, live_n, s.p0));
        for (slots, x) in [(&mut cand_slots, c), (&mut live_slots, l)] {
            slots.push_back(x);
            if slots.len() > window {
                slots.pop_front();
            }
        }
        cand.requests += c.0;
        cand.errors += c.1;
        live.requests += l.0;
        live.errors += l.1;
        let now = start + Duration::from_secs(u64::from(second));
        if out.threshold.is_none() {
            let (cw, lw) = (
                window_stats(&cand_slots, window),
                window_stats(&live_slots, window),
            );
            let r = recent.map(|r| (window_stats(&cand_slots, r), window_stats(&live_slots, r)));
            let v = evaluate_windows(cfg, &cw, &lw, r.as_ref().map(|(c, l)| (c, l)));
            if threshold.observe(now, v).is_some() {
                out.threshold = Some(second);
            }
        }
        if out.sequential.is_none() {
            let v = verdict(cfg, &cand, &live).expect("the live pool is a baseline");
            if sequential.observe(now, v).is_some() {
                out.sequential = Some(second);
            }
        }
        if out.threshold.is_some() && out.sequential.is_some() {
            break;
        }
    }
    out
}

fn sequential_cfg(min_effect: f64) -> RollbackConfig {
    RollbackConfig {
        judge: crate::config::analysis::JudgeKind::Sequential,
        min_effect,
        ..RollbackConfig::default()
    }
}

/// Rollbacks by each judge among `runs` rollouts of `s`.
fn count(cfg: &RollbackConfig, s: Stream, runs: u64, horizon: u32, seed: u64) -> (u64, u64) {
    (0..runs).fold((0, 0), |(t, q), i| {
        let o = rollout(
            cfg,
            s,
            seed.wrapping_mul(1_000_003).wrapping_add(i),
            horizon,
        );
        (
            t + u64::from(o.threshold.is_some()),
            q + u64::from(o.sequential.is_some()),
        )
    })
}

/// Green equals blue: 3 × 1000 rollouts of 4 minutes at 20 candidate
/// requests per second (a 10 % step of 200 req/s), error rates 0.1 %, 1 %
/// (with a `min_effect` of 0.0001, so the bound is nearly sharp) and 5 %
/// (both pools failing alike). The sequential judge's false rollbacks
/// stay under `1 - confidence` in each.
#[test]
fn false_rollbacks_stay_under_one_minus_confidence() {
    let runs = 1000;
    for (p, min_effect) in [(0.001, 0.005), (0.01, 0.0001), (0.05, 0.005)] {
        let cfg = sequential_cfg(min_effect);
        let s = Stream {
            rps: 20,
            live_share: 9,
            p1: p,
            p0: p,
        };
        let (threshold, sequential) = count(&cfg, s, runs, 240, 7);
        let bound = ((1.0 - cfg.confidence) * runs as f64) as u64;
        println!(
            "error rate {p} both pools, min_effect {min_effect}: false rollbacks of {runs}: \
             sequential {sequential}, threshold {threshold}"
        );
        assert!(
            sequential <= bound,
            "{sequential} false rollbacks of {runs} at error rate {p}: more than {bound}"
        );
    }
}

/// A candidate clearly worse is caught, and within the horizon every time.
#[test]
fn a_worse_candidate_is_rolled_back_by_both() {
    let cfg = sequential_cfg(0.005);
    let s = Stream {
        rps: 200,
        live_share: 9,
        p1: 0.051,
        p0: 0.001,
    };
    let (threshold, sequential) = count(&cfg, s, 50, 120, 11);
    assert_eq!((threshold, sequential), (50, 50));
}

fn median(mut v: Vec<u32>) -> Option<u32> {
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

/// The table: median seconds to rollback, and the share rolled back
/// within 10 minutes, at 1, 2 and 5 % extra errors over a live error rate
/// of 0.1 %, at 50, 200 and 1000 candidate requests per second (the live
/// pool taking 9 times as many: a 10 % step), both judges on the same
/// seeded streams; then false rollbacks when green equals blue.
#[test]
#[ignore = "prints the table for the issue note; about a minute in debug"]
fn time_to_rollback_table() {
    let horizon = 600;
    let runs = 200;
    let base = 0.001;
    for min_effect in [0.005, 0.001] {
        // No grace, so that the table shows each judge's own speed (with
        // the default 10 s grace neither decides before 10 s).
        let cfg = RollbackConfig {
            grace: Duration::ZERO,
            ..sequential_cfg(min_effect)
        };
        println!("\nmin_effect {min_effect}, confidence {}, grace 0; threshold judge: defaults (max_error_rate 0.01, window 60s, recent_window 5s, 3 breaches)", cfg.confidence);
        println!("| req/s | extra errors | threshold: median s (rolled back) | sequential: median s (rolled back) |");
        println!("|---|---|---|---|");
        for rps in [50, 200, 1000] {
            for extra in [0.01, 0.02, 0.05] {
                let s = Stream {
                    rps,
                    live_share: 9,
                    p1: base + extra,
                    p0: base,
                };
                let outs: Vec<Outcome> = (0..runs)
                    .map(|i| rollout(&cfg, s, 1000 + i, horizon))
                    .collect();
                let cell = |f: fn(&Outcome) -> Option<u32>| {
                    let t: Vec<u32> = outs.iter().filter_map(f).collect();
                    let share = t.len() as f64 * 100.0 / runs as f64;
                    match median(t) {
                        Some(m) if share >= 50.0 => format!("{m} ({share:.0}%)"),
                        _ => format!("> {horizon} ({share:.0}%)"),
                    }
                };
                println!(
                    "| {rps} | {:.0}% | {} | {} |",
                    extra * 100.0,
                    cell(|o| o.threshold),
                    cell(|o| o.sequential)
                );
            }
        }
    }
    println!("\nfalse rollbacks in 10 minutes, green = blue, 1000 rollouts each, default grace:");
    println!("| req/s | error rate | min_effect | threshold | sequential |");
    println!("|---|---|---|---|---|");
    for (rps, p, min_effect) in [
        (50, 0.001, 0.005),
        (50, 0.005, 0.005),
        (50, 0.01, 0.005),
        (50, 0.05, 0.005),
        (200, 0.001, 0.005),
        (200, 0.005, 0.005),
        (200, 0.01, 0.001),
        (1000, 0.01, 0.001),
    ] {
        let cfg = sequential_cfg(min_effect);
        {
            let s = Stream {
                rps,
                live_share: 9,
                p1: p,
                p0: p,
            };
            let (t, q) = count(&cfg, s, 1000, horizon, 99);
            println!(
                "| {rps} | {:.1}% | {min_effect} | {:.1}% | {:.1}% |",
                p * 100.0,
                t as f64 / 10.0,
                q as f64 / 10.0
            );
        }
    }
}
