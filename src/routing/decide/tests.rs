//! Every rule of the route decision and their precedence, on hand-built
//! tables with scripted random draws.

use super::*;
use crate::config::{StickyConfig, UpstreamProtocol};
use crate::routing::sticky::{BucketSource, Sticky};
use crate::routing::{Hold, Pool, PoolRuntime, Settings, Weights};
use crate::upstream::{Connector, Endpoint};
use http::HeaderValue;
use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Duration;

const NOW: u64 = 1_000;

/// Draws handed out in order; every bound asked for is noted, and a draw
/// nobody scripted fails the test.
#[derive(Default)]
struct Script {
    draws: VecDeque<usize>,
    asked: Vec<usize>,
}

impl Script {
    fn of(draws: &[usize]) -> Self {
        Script {
            draws: draws.iter().copied().collect(),
            asked: Vec::new(),
        }
    }
}

impl Draw for Script {
    fn below(&mut self, n: usize) -> usize {
        self.asked.push(n);
        let d = self.draws.pop_front().expect("a draw nobody scripted");
        assert!(d < n, "scripted draw {d} is not below {n}");
        d
    }
}

fn pool(name: PoolName, port: u16) -> Arc<Pool> {
    Arc::new(Pool {
        name,
        endpoints: (0..2)
            .map(|i| Arc::new(Endpoint::new(name, &format!("127.0.0.1:{}", port + i)).unwrap()))
            .collect(),
        protocol: UpstreamProtocol::Http1,
        connector: Connector::new(Duration::from_secs(1)),
        runtime: Arc::new(PoolRuntime::new(
            name,
            Duration::from_secs(10),
            crate::telemetry::metrics::Metrics::new().pool(name).clone(),
        )),
    })
}

fn settings() -> Settings {
    let cfg = crate::config::parse(
        "pools:\n  blue:\n    endpoints: [\"127.0.0.1:8001\", \"127.0.0.1:8002\"]\n  green:\n    endpoints: [\"127.0.0.1:8011\", \"127.0.0.1:8012\"]\nstate_file: null\n",
        "decide-test",
    )
    .unwrap();
    Settings::from_config(&cfg)
}

/// Override header `x-pool` from 127.0.0.1 only, and sticky buckets handed
/// out from bucket 0 (then 6181, 2362, ...).
fn full_settings() -> Settings {
    let mut s = settings();
    s.override_header = Some(http::HeaderName::from_static("x-pool"));
    s.override_trusted = vec!["127.0.0.1/32".parse().unwrap()];
    let mut sticky = Sticky::from_config(&StickyConfig {
        cookie: "bucket".into(),
        max_age: Duration::from_secs(60),
    });
    sticky.buckets = Arc::new(BucketSource::starting_at(0));
    s.sticky = Some(sticky);
    s
}

/// Blue live, green at `green_percent`, two endpoints each.
fn table(green_percent: f64, settings: Settings) -> RoutingTable {
    RoutingTable {
        generation: 1,
        weights: Weights::with_percent(PoolName::Green, green_percent),
        live: PoolName::Blue,
        pools: [pool(PoolName::Blue, 8001), pool(PoolName::Green, 8011)],
        settings: Arc::new(settings),
        hold: None,
    }
}

fn down(t: &RoutingTable, p: PoolName) {
    for e in &t.pool(p).endpoints {
        e.set_healthy(false);
    }
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for &(k, v) in pairs {
        h.append(k, HeaderValue::from_static(v));
    }
    h
}

fn input(h: &HeaderMap) -> RouteInput<'_> {
    RouteInput {
        access: Access::Read,
        preview: None,
        headers: h,
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        now_ms: NOW,
    }
}

fn forward(pool: PoolName, endpoint: usize) -> Route {
    Route {
        pool,
        endpoint,
        failed_over: false,
        new_bucket: None,
    }
}

/// The route, or a failure naming what was decided instead.
fn route(d: Decision) -> Route {
    match d {
        Decision::Forward(r) => r,
        other => panic!("expected a route, got {other:?}"),
    }
}

fn refusal(d: Decision) -> Refusal {
    match d {
        Decision::Refuse(r) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_weighted_pick_splits_by_basis_points() {
    let t = table(10.0, settings());
    let h = HeaderMap::new();
    // The pool draw below green's 1000 bp goes green, from 1000 blue; then
    // two endpoint draws (the second among the other n - 1).
    let mut d = Script::of(&[999, 0, 0]);
    assert_eq!(
        route(decide(&t, &input(&h), &mut d)),
        forward(PoolName::Green, 0)
    );
    assert_eq!(d.asked, [TOTAL_BP as usize, 2, 1]);
    let mut d = Script::of(&[1000, 1, 0]);
    assert_eq!(
        route(decide(&t, &input(&h), &mut d)),
        forward(PoolName::Blue, 1)
    );
}

#[test]
fn of_two_endpoints_the_one_with_fewer_in_flight_and_never_an_unavailable_one() {
    let t = table(0.0, settings());
    let blue = t.pool(PoolName::Blue);
    let h = HeaderMap::new();
    // Equal: the first drawn. Busier first drawn: the second.
    let pick = |draws: &[usize]| route(decide(&t, &input(&h), &mut Script::of(draws))).endpoint;
    assert_eq!(pick(&[5000, 0, 0]), 0);
    blue.endpoints[0].inflight_inc();
    assert_eq!(pick(&[5000, 0, 0]), 1);
    assert_eq!(pick(&[5000, 1, 0]), 1);
    blue.endpoints[0].inflight_dec();
    // Unavailable (down, draining or ejected): never picked, whatever the draws.
    blue.endpoints[1].set_healthy(false);
    assert_eq!(pick(&[5000, 1, 0]), 0);
    blue.endpoints[1].set_healthy(true);
    blue.endpoints[0].set_removed();
    assert_eq!(pick(&[5000, 0, 0]), 1);
}

#[test]
fn a_preview_listener_beats_the_override_header_sticky_and_weights() {
    let t = table(10.0, full_settings());
    // A trusted override naming green and a bucket on blue: both ignored.
    let h = headers(&[("x-pool", "green"), ("cookie", "bucket=9999")]);
    for (sel, pool) in [
        (PoolSelector::Blue, PoolName::Blue),
        (PoolSelector::Green, PoolName::Green),
        (PoolSelector::Candidate, PoolName::Green),
    ] {
        let req = RouteInput {
            preview: Some(sel),
            ..input(&h)
        };
        let mut d = Script::of(&[0, 0]);
        let r = route(decide(&t, &req, &mut d));
        assert_eq!(r, forward(pool, 0), "{sel:?}");
        assert_eq!(d.asked, [2, 1], "no pool drawn for {sel:?}");
    }
    // The candidate is whichever pool is not live at the time.
    let green_live = RoutingTable {
        live: PoolName::Green,
        ..table(90.0, full_settings())
    };
    let req = RouteInput {
        preview: Some(PoolSelector::Candidate),
        ..input(&h)
    };
    assert_eq!(
        route(decide(&green_live, &req, &mut Script::of(&[0, 0]))).pool,
        PoolName::Blue
    );
}

#[test]
fn a_trusted_override_beats_sticky_and_weights_in_any_case() {
    let t = table(10.0, full_settings());
    for (value, pool) in [
        ("green", PoolName::Green),
        ("GREEN", PoolName::Green),
        ("Blue", PoolName::Blue),
    ] {
        // The bucket says blue (9999 >= 1000) or green (0 < 1000).
        for cookie in ["bucket=9999", "bucket=0"] {
            let h = headers(&[("x-pool", value), ("cookie", cookie)]);
            let r = route(decide(&t, &input(&h), &mut Script::of(&[0, 0])));
            assert_eq!(r, forward(pool, 0), "{value} with {cookie}");
        }
    }
}

#[test]
fn an_untrusted_or_unknown_override_falls_through_to_sticky() {
    let t = table(10.0, full_settings());
    // Bucket 0 is green's; an override to blue is ignored when not trusted
    // (127.0.0.2 is outside 127.0.0.1/32) or not a pool's name.
    let h = headers(&[("x-pool", "blue"), ("cookie", "bucket=0")]);
    let untrusted = RouteInput {
        client_ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
        ..input(&h)
    };
    let r = route(decide(&t, &untrusted, &mut Script::of(&[0, 0])));
    assert_eq!(r, forward(PoolName::Green, 0));
    let h = headers(&[("x-pool", "purple"), ("cookie", "bucket=0")]);
    let r = route(decide(&t, &input(&h), &mut Script::of(&[0, 0])));
    assert_eq!(r, forward(PoolName::Green, 0));
    // Without override_header configured, the header is just a header.
    let mut s = full_settings();
    s.override_header = None;
    let t = table(10.0, s);
    let h = headers(&[("x-pool", "blue"), ("cookie", "bucket=0")]);
    let r = route(decide(&t, &input(&h), &mut Script::of(&[0, 0])));
    assert_eq!(r, forward(PoolName::Green, 0));
}

#[test]
fn a_sticky_bucket_beats_weights_and_a_new_client_gets_one_to_keep() {
    let t = table(10.0, full_settings());
    for (cookie, pool) in [
        ("bucket=0", PoolName::Green),
        ("bucket=999", PoolName::Green),
        ("a=1; bucket=1000", PoolName::Blue),
    ] {
        let h = headers(&[("cookie", cookie)]);
        let mut d = Script::of(&[0, 0]);
        let r = route(decide(&t, &input(&h), &mut d));
        assert_eq!(r, forward(pool, 0), "{cookie}");
        assert_eq!(d.asked, [2, 1], "no pool drawn for {cookie}");
    }
    // No (valid) bucket: the next one of the sequence, to be set as a cookie.
    let h = headers(&[("cookie", "bucket=x")]);
    let r = route(decide(&t, &input(&h), &mut Script::of(&[0, 0])));
    assert_eq!(
        r,
        Route {
            new_bucket: Some(0),
            ..forward(PoolName::Green, 0)
        }
    );
    let h = HeaderMap::new();
    let r = route(decide(&t, &input(&h), &mut Script::of(&[0, 0])));
    assert_eq!(
        r,
        Route {
            new_bucket: Some(6181),
            ..forward(PoolName::Blue, 0)
        }
    );
}

#[test]
fn a_pool_without_an_available_endpoint_fails_over_to_the_other() {
    let t = table(10.0, full_settings());
    down(&t, PoolName::Green);
    // A sticky client of green goes to blue, and still gets its cookie.
    let h = HeaderMap::new();
    let mut d = Script::of(&[0, 0, 1, 0]);
    let r = route(decide(&t, &input(&h), &mut d));
    assert_eq!(
        r,
        Route {
            pool: PoolName::Blue,
            endpoint: 1,
            failed_over: true,
            new_bucket: Some(0),
        }
    );
    assert_eq!(r.meant(), PoolName::Green);
    // Two endpoints drawn in green (both down), then two in blue.
    assert_eq!(d.asked, [2, 1, 2, 1]);
    // A weighted pick of green, likewise.
    let t = table(10.0, settings());
    down(&t, PoolName::Green);
    let r = route(decide(&t, &input(&h), &mut Script::of(&[0, 0, 0, 0, 0])));
    assert_eq!((r.pool, r.failed_over), (PoolName::Blue, true));
}

#[test]
fn without_failover_or_when_pinned_an_empty_pool_is_refused() {
    let mut s = settings();
    s.failover = false;
    let t = table(10.0, s);
    down(&t, PoolName::Green);
    let h = HeaderMap::new();
    let no_green = Refusal::NoEndpoint {
        meant: PoolName::Green,
        failed_over: false,
    };
    assert_eq!(
        refusal(decide(&t, &input(&h), &mut Script::of(&[0, 0, 0]))),
        no_green
    );
    // Failover on, but the pool was pinned: by a preview listener ...
    let t = table(10.0, full_settings());
    down(&t, PoolName::Green);
    let req = RouteInput {
        preview: Some(PoolSelector::Candidate),
        ..input(&h)
    };
    assert_eq!(
        refusal(decide(&t, &req, &mut Script::of(&[0, 0]))),
        no_green
    );
    // ... or by a trusted override.
    let h = headers(&[("x-pool", "green")]);
    assert_eq!(
        refusal(decide(&t, &input(&h), &mut Script::of(&[0, 0]))),
        no_green
    );
}

#[test]
fn no_available_endpoint_in_either_pool_is_refused() {
    let t = table(10.0, settings());
    down(&t, PoolName::Blue);
    down(&t, PoolName::Green);
    let h = HeaderMap::new();
    assert_eq!(
        refusal(decide(&t, &input(&h), &mut Script::of(&[5000, 0, 0, 0, 0]))),
        Refusal::NoEndpoint {
            meant: PoolName::Blue,
            failed_over: true,
        }
    );
}

#[test]
fn a_write_meeting_a_hold_waits_until_the_queue_is_full() {
    let mut t = table(10.0, full_settings());
    let hold = Arc::new(Hold::new(1, Duration::from_secs(1)));
    t.hold = Some(hold.clone());
    let h = HeaderMap::new();
    let write = RouteInput {
        access: Access::Write,
        // Held before any pool is chosen, even on a preview listener.
        preview: Some(PoolSelector::Green),
        ..input(&h)
    };
    let mut none = Script::default();
    let Decision::Hold(ticket) = decide(&t, &write, &mut none) else {
        panic!("the write was not held");
    };
    assert_eq!((hold.held_now(), hold.held_total()), (1, 1));
    assert_eq!(
        refusal(decide(&t, &write, &mut none)),
        Refusal::HoldQueueFull
    );
    assert!(none.asked.is_empty(), "a held write draws nothing");
    drop(ticket);
    assert!(matches!(decide(&t, &write, &mut none), Decision::Hold(_)));
    // Reads, and writes already released, go on; the held writes took no
    // sticky bucket (the sequence still starts at 0).
    for access in [Access::Read, Access::Released] {
        let req = RouteInput {
            access,
            preview: None,
            ..write
        };
        let r = route(decide(&t, &req, &mut Script::of(&[0, 0])));
        assert!(r.new_bucket.is_some(), "{access:?}");
    }
    let again = route(decide(&t, &input(&h), &mut Script::of(&[0, 0])));
    assert_eq!(again.new_bucket, Some(2362), "third bucket of the sequence");
    // Without a hold, a write is routed like a read.
    t.hold = None;
    let r = route(decide(&t, &write, &mut Script::of(&[0, 0])));
    assert_eq!(r, forward(PoolName::Green, 0));
}

#[test]
fn a_decision_is_small() {
    assert!(std::mem::size_of::<Decision>() <= 32);
}

mod admission {
    use super::*;

    fn setup() -> (ArcSwap<RoutingTable>, Arc<WritesInFlight>) {
        (
            ArcSwap::from_pointee(table(0.0, settings())),
            Arc::new(WritesInFlight::default()),
        )
    }

    fn holding(generation: u64) -> RoutingTable {
        RoutingTable {
            generation,
            hold: Some(Arc::new(Hold::new(1, Duration::from_secs(1)))),
            ..table(0.0, settings())
        }
    }

    #[test]
    fn a_read_is_not_counted_and_keeps_its_table() {
        let (tables, writes) = setup();
        let t = tables.load_full();
        let (got, token) = admit(&tables, &writes, t.clone(), Access::Read);
        assert!(Arc::ptr_eq(&got, &t) && token.is_none());
        assert_eq!(writes.get(), 0);
    }

    #[test]
    fn a_write_is_counted_until_its_token_drops() {
        let (tables, writes) = setup();
        let t = tables.load_full();
        let (got, token) = admit(&tables, &writes, t.clone(), Access::Write);
        assert!(Arc::ptr_eq(&got, &t));
        assert_eq!(writes.get(), 1);
        drop(token);
        assert_eq!(writes.get(), 0);
    }

    #[test]
    fn a_write_that_sees_a_hold_is_not_counted() {
        let (tables, writes) = setup();
        // In the table it loaded ...
        let t = Arc::new(holding(1));
        let (got, token) = admit(&tables, &writes, t.clone(), Access::Write);
        assert!(Arc::ptr_eq(&got, &t) && token.is_none());
        // ... or published while it registered: it gets that table.
        let stale = tables.load_full();
        tables.store(Arc::new(holding(2)));
        let (got, token) = admit(&tables, &writes, stale, Access::Write);
        assert!(token.is_none());
        assert_eq!(got.generation, 2);
        assert!(got.hold.is_some());
        assert_eq!(writes.get(), 0);
    }

    #[test]
    fn a_newer_table_is_taken_and_a_released_write_ignores_the_hold() {
        let (tables, writes) = setup();
        let stale = tables.load_full();
        tables.store(Arc::new(RoutingTable {
            generation: 2,
            ..table(100.0, settings())
        }));
        let (got, token) = admit(&tables, &writes, stale, Access::Write);
        assert_eq!((got.generation, token.is_some()), (2, true));
        drop(token);
        tables.store(Arc::new(holding(3)));
        let (got, token) = admit(&tables, &writes, got, Access::Released);
        assert_eq!((got.generation, token.is_some()), (3, true));
        assert_eq!(writes.get(), 1);
    }
}
