//! Cost of recording one request on the hot path: the rollback statistics
//! window (`PoolStats::record`) plus the Prometheus handles
//! (`PoolMetrics::record`), alone and with two threads contending on the
//! same pool.
//!
//! `cargo bench --bench record -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::time::{Duration, Instant};
use switchyard::config::PoolName;
use switchyard::telemetry::metrics::Metrics;
use switchyard::telemetry::stats::{now_ms, Outcome, PoolStats};

fn outcome(i: u64) -> (Outcome, Duration) {
    let status = if i % 100 == 0 { 503 } else { 200 };
    (
        Outcome::Status(status),
        Duration::from_micros(200 + (i * 7919) % 50_000),
    )
}

fn record(c: &mut Criterion) {
    let stats = PoolStats::new(Duration::from_secs(60));
    let metrics = Metrics::new();
    let pool = metrics.pool(PoolName::Green);

    let mut i = 0u64;
    c.bench_function("stats only, 1 thread", |b| {
        b.iter(|| {
            i += 1;
            let (o, l) = outcome(i);
            stats.record(black_box(now_ms()), o, l);
        })
    });
    c.bench_function("metrics only, 1 thread", |b| {
        b.iter(|| {
            i += 1;
            let (o, l) = outcome(i);
            pool.record(black_box(o), l);
        })
    });
    c.bench_function("stats + metrics, 1 thread", |b| {
        b.iter(|| {
            i += 1;
            let (o, l) = outcome(i);
            stats.record(now_ms(), o, l);
            pool.record(o, l);
        })
    });
    // Wall time per request per thread while another thread records into
    // the same pool.
    c.bench_function("stats + metrics, 2 threads contending", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for t in 0..2u64 {
                    let (stats, pool) = (&stats, pool);
                    s.spawn(move || {
                        for i in 0..iters {
                            let (o, l) = outcome(i + t);
                            stats.record(now_ms(), o, l);
                            pool.record(o, l);
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
}

criterion_group!(benches, record);
criterion_main!(benches);
