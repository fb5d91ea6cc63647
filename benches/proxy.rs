//! Micro-benchmarks of the request path and the control plane:
//! the route decision (pool and endpoint), rewriting headers, publishing a table.
//! (Recording an outcome is in `benches/record.rs`.)
//!
//! Run: `cargo bench --bench proxy -- --warm-up-time 1 --measurement-time 3`

use arc_swap::ArcSwap;
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::sync::Arc;
use switchyard::config::{self, PoolName};
use switchyard::control::build::build_table;
use switchyard::proxy::headers::prepare_request;
use switchyard::routing::draw::ThreadDraw;
use switchyard::routing::{decide, Access, PoolRuntime, RouteInput, RoutingTable, Weights};
use switchyard::telemetry::metrics::Metrics;

fn table() -> RoutingTable {
    let cfg = config::parse(
        "pools:\n  blue:\n    endpoints: [\"127.0.0.1:8001\", \"127.0.0.1:8002\"]\n  green:\n    endpoints: [\"127.0.0.1:8011\", \"127.0.0.1:8012\"]\nstate_file: null\n",
        "bench",
    )
    .unwrap();
    let metrics = Metrics::new();
    let runtimes = PoolName::ALL.map(|p| {
        Arc::new(PoolRuntime::new(
            p,
            cfg.rollback.window,
            metrics.pool(p).clone(),
        ))
    });
    build_table(
        &cfg,
        None,
        &runtimes,
        1,
        Weights::with_percent(PoolName::Green, 10.0),
        PoolName::Blue,
    )
    .unwrap()
}

fn routing(c: &mut Criterion) {
    let handle = ArcSwap::from_pointee(table());
    let headers = http::HeaderMap::new();
    c.bench_function("route: load table + decide (pool and endpoint)", |b| {
        b.iter(|| {
            let t = handle.load_full();
            let input = RouteInput {
                access: Access::Read,
                preview: None,
                headers: black_box(&headers),
                client_ip: std::net::Ipv4Addr::LOCALHOST.into(),
                now_ms: black_box(1_000),
            };
            black_box(decide(&t, &input, &mut ThreadDraw))
        })
    });
}

fn headers(c: &mut Criterion) {
    let req = http::Request::get("/api/items?page=2")
        .header("host", "app.example")
        .header("user-agent", "bench/1.0")
        .header("accept", "*/*")
        .header("accept-encoding", "gzip")
        .header("cookie", "session=abc; switchyard-bucket=1234")
        .header("x-forwarded-for", "127.0.0.7")
        .body(())
        .unwrap();
    let (parts, ()) = req.into_parts();
    let ip = switchyard::proxy::headers::ClientAddr::new("127.0.0.1".parse().unwrap());
    c.bench_function("headers: prepare_request (6 headers)", |b| {
        b.iter_batched(
            || parts.clone(),
            |mut p| {
                prepare_request(&mut p, &ip, false);
                p
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

fn publish(c: &mut Criterion) {
    let handle = ArcSwap::from_pointee(table());
    let mut generation = 1;
    c.bench_function("control: build next table + swap", |b| {
        b.iter(|| {
            let prev = handle.load_full();
            generation += 1;
            let next = RoutingTable {
                generation,
                weights: Weights::with_percent(PoolName::Green, (generation % 100) as f64),
                live: prev.live,
                pools: prev.pools.clone(),
                settings: prev.settings.clone(),
                hold: None,
            };
            handle.store(Arc::new(next));
        })
    });
}

criterion_group!(benches, routing, headers, publish);
criterion_main!(benches);
