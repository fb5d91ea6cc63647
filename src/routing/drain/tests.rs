//! Drain deadlines, with paused tokio time.

use super::*;
use crate::config::UpstreamProtocol;
use crate::routing::Weights;
use crate::upstream::Connector;

const DRAIN: Duration = Duration::from_secs(5);

fn pool(name: PoolName) -> Arc<Pool> {
    Arc::new(Pool {
        name,
        endpoints: vec![Arc::new(Endpoint::new(name, "127.0.0.1:1").unwrap())],
        protocol: UpstreamProtocol::Http1,
        connector: Connector::new(Duration::from_secs(1)),
        runtime: Arc::new(PoolRuntime::new(
            name,
            Duration::from_secs(10),
            crate::telemetry::metrics::Metrics::new().pool(name).clone(),
        )),
    })
}

fn table(pools: &[Arc<Pool>; 2], weights: Weights) -> RoutingTable {
    RoutingTable {
        generation: 1,
        weights,
        live: PoolName::Blue,
        pools: pools.clone(),
        hold: None,
        settings: Arc::new(crate::routing::Settings::from_config(
            &crate::config::parse(
                "pools: {blue: {endpoints: [\"127.0.0.1:1\"]}, green: {endpoints: [\"127.0.0.1:2\"]}}",
                "t",
            )
            .unwrap(),
        )),
    }
}

/// Is the tunnel told to close within `ms` of (paused) time?
async fn closes_within(t: &TunnelDrain, ms: u64) -> bool {
    tokio::time::timeout(Duration::from_millis(ms), t.closed())
        .await
        .is_ok()
}

#[tokio::test(start_paused = true)]
async fn a_pool_losing_its_traffic_closes_its_tunnels_at_the_deadline() {
    let pools = [pool(PoolName::Blue), pool(PoolName::Green)];
    let blue = &pools[0];
    let before = TunnelDrain::open(&blue.runtime, &blue.endpoints[0]);
    let on_green = TunnelDrain::open(&pools[1].runtime, &pools[1].endpoints[0]);
    assert_eq!(blue.runtime.drain.upgraded(), 1);

    let all_blue = table(&pools, Weights::all_on(PoolName::Blue));
    let all_green = table(&pools, Weights::all_on(PoolName::Green));
    weights_changed(&all_blue, &all_green, DRAIN);
    assert!(blue.runtime.drain.is_draining());
    assert!(!pools[1].runtime.drain.is_draining());
    let st = blue
        .runtime
        .drain
        .status(crate::clock::unix_ms(), 1)
        .unwrap();
    assert_eq!((st.upgraded, st.inflight), (1, 1));
    assert!(st.remaining_ms <= 5000 && st.remaining_ms > 4000);
    // Opened while the pool drains (preview listener, failover): same deadline.
    let during = TunnelDrain::open(&blue.runtime, &blue.endpoints[0]);

    assert!(
        !closes_within(&before, 4999).await,
        "closed before the deadline"
    );
    assert!(
        closes_within(&before, 2).await,
        "not closed at the deadline"
    );
    assert!(closes_within(&during, 0).await);
    assert!(
        !closes_within(&on_green, 1000).await,
        "green was not draining"
    );
    assert!(!blue.runtime.drain.is_draining());
    assert_eq!(blue.runtime.drain.status(0, 0), None);

    // Later tunnels get a fresh token.
    let after = TunnelDrain::open(&blue.runtime, &blue.endpoints[0]);
    assert!(!closes_within(&after, 60_000).await);
    drop((before, during, after));
    assert_eq!(blue.runtime.drain.upgraded(), 0);
}

#[tokio::test(start_paused = true)]
async fn regaining_traffic_calls_the_drain_off() {
    let pools = [pool(PoolName::Blue), pool(PoolName::Green)];
    let blue = &pools[0];
    let t = TunnelDrain::open(&blue.runtime, &blue.endpoints[0]);
    let all_blue = table(&pools, Weights::all_on(PoolName::Blue));
    let all_green = table(&pools, Weights::all_on(PoolName::Green));
    let split = table(&pools, Weights::with_percent(PoolName::Green, 50.0));
    weights_changed(&all_blue, &all_green, DRAIN);
    assert!(!closes_within(&t, 3000).await);
    // Rolled back to a split: blue has traffic again.
    weights_changed(&all_green, &split, DRAIN);
    assert!(!blue.runtime.drain.is_draining());
    assert!(
        !closes_within(&t, 60_000).await,
        "a called-off drain closed"
    );
    // Losing it again starts a new, full drain; a second 0 changes nothing.
    weights_changed(&split, &all_green, DRAIN);
    weights_changed(&all_green, &all_green, DRAIN);
    assert!(!closes_within(&t, 4999).await);
    assert!(closes_within(&t, 2).await);
}

#[tokio::test(start_paused = true)]
async fn removed_endpoints_stop_taking_requests_and_close_tunnels_at_the_deadline() {
    let p = pool(PoolName::Blue);
    let ep = p.endpoints[0].clone();
    let t = TunnelDrain::open(&p.runtime, &ep);
    drain_removed(vec![ep.clone()], DRAIN);
    assert!(!ep.is_available(0));
    assert_eq!(ep.state(0), crate::upstream::EndpointState::Draining);
    assert!(!closes_within(&t, 4999).await);
    assert!(closes_within(&t, 2).await);
    assert!(
        !p.runtime.drain.is_draining(),
        "the pool itself does not drain"
    );
}
