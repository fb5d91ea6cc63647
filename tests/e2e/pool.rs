//! The pool of idle keep-alive connections to an endpoint: idle connections
//! serve the next requests without new ones being opened, and connections
//! idle past `timeouts.upstream_idle`, or closed by the upstream, are closed
//! without waiting for a request.
//! A fault proxy in `Pass` mode sits in front of a real test upstream to
//! see each connection the proxy opens and closes.

use crate::support::admin::*;
use crate::support::fault::{Fault, FaultProxy};
use crate::support::*;
use std::time::Duration;

/// Wait until `n` connections are open through `fp` (at most `deadline`).
async fn open_becomes(fp: &FaultProxy, n: usize, deadline: Duration, what: &str) {
    wait_for(deadline, what, || {
        let open = fp.open();
        async move { open == n }
    })
    .await;
}

/// Wait for every connection through `fp` to close, and check that it took
/// about `upstream_idle` (1 s in these tests: at least 0.7 s, at most 4 s).
async fn closes_after_upstream_idle(fp: &FaultProxy, what: &str) {
    let started = tokio::time::Instant::now();
    open_becomes(fp, 0, Duration::from_secs(4), what).await;
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "closed after {:?}, before upstream_idle",
        started.elapsed()
    );
}

/// Proxied requests the upstream saw on each connection that carried any,
/// in connection order (the active health checks' connections, which only
/// carry `GET /health`, are left out).
fn requests_per_connection(fp: &FaultProxy) -> Vec<usize> {
    fp.sent()
        .iter()
        .map(|bytes| {
            let text = String::from_utf8_lossy(bytes);
            text.matches("GET /").count() - text.matches("GET /health ").count()
        })
        .filter(|&n| n > 0)
        .collect()
}

/// `n` GETs of `url` at the same time (so on `n` connections), each 200.
async fn all_at_once(c: &TestClient, url: String, n: usize) {
    let requests: Vec<_> = (0..n)
        .map(|_| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move { get(&c, url).await })
        })
        .collect();
    for r in requests {
        assert_eq!(r.await.unwrap().status, 200);
    }
}

#[tokio::test]
async fn sequential_requests_reuse_the_idle_connections_and_open_none() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let fp = FaultProxy::start(blue.addr, Fault::Pass).await;
    let s = start_proxy(&config_yaml(&[fp.addr], &[green.addr], "")).await;
    let c = client();
    // Three requests at once open three connections...
    all_at_once(&c, proxy_url(&s, "/delay/200"), 3).await;
    assert_eq!(requests_per_connection(&fp).len(), 3);
    assert_eq!(
        endpoint(&admin_status(&c, &s).await, "blue", fp.addr)["idle"],
        3
    );
    // ...then one at a time, each goes on one of those: the idle one that
    // waited longest, so the three in turn.
    for _ in 0..12 {
        assert_eq!(get(&c, proxy_url(&s, "/")).await.status, 200);
    }
    assert_eq!(
        requests_per_connection(&fp),
        [5, 5, 5],
        "requests per upstream connection"
    );
}

#[tokio::test]
async fn idle_connections_past_upstream_idle_are_closed_without_a_request() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let fp = FaultProxy::start(blue.addr, Fault::Pass).await;
    let s = start_proxy(&config_yaml(
        &[fp.addr],
        &[green.addr],
        "timeouts:\n  upstream_idle: 1s",
    ))
    .await;
    let c = client();
    assert_eq!(get(&c, proxy_url(&s, "/")).await.status, 200);
    assert_eq!(
        endpoint(&admin_status(&c, &s).await, "blue", fp.addr)["idle"],
        1
    );
    // No request comes: the sweep closes it once a second has passed (and
    // at most a sweep's period later), and the upstream sees it closed.
    closes_after_upstream_idle(&fp, "the idle connection to close").await;
    assert_eq!(
        endpoint(&admin_status(&c, &s).await, "blue", fp.addr)["idle"],
        0
    );
    // The next request opens a new one.
    assert_eq!(get(&c, proxy_url(&s, "/")).await.status, 200);
    assert_eq!(requests_per_connection(&fp), [1, 1]);
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_reaped_while_idle() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    // The fault proxy closes each connection after its first answer: the
    // pooled connection dies while idle.
    let fp = FaultProxy::start(blue.addr, Fault::CloseIdle).await;
    let s = start_proxy(&config_yaml(&[fp.addr], &[green.addr], "")).await;
    let c = client();
    assert_eq!(get(&c, proxy_url(&s, "/")).await.status, 200);
    // upstream_idle is 90 s: only the close can make the sweep drop it.
    wait_for(
        Duration::from_secs(4),
        "the closed connection to leave the pool",
        || {
            let (c, s) = (c.clone(), &s);
            let addr = fp.addr;
            async move { endpoint(&admin_status(&c, s).await, "blue", addr)["idle"] == 0 }
        },
    )
    .await;
}

#[tokio::test]
async fn an_idle_shared_http2_connection_is_closed_after_upstream_idle() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let fp = FaultProxy::start(blue.addr, Fault::Pass).await;
    let yaml = config_yaml(&[fp.addr], &[green.addr], "timeouts:\n  upstream_idle: 1s").replacen(
        "endpoints: [",
        "protocol: h2\n    endpoints: [",
        1,
    );
    let s = start_proxy(&yaml).await;
    let c = client();
    // Two requests one after the other; the HTTP/2 connection they share
    // stays open after them. (The active health checks open a connection
    // of their own for a moment every 2 s, hence a wait rather than a
    // single reading.)
    for _ in 0..2 {
        let a = get(&c, proxy_url(&s, "/")).await;
        assert_eq!((a.status, a.upstream()), (200, "blue-1"));
    }
    open_becomes(
        &fp,
        1,
        Duration::from_secs(2),
        "the shared connection alone open",
    )
    .await;
    // No request for upstream_idle: the sweep lets it go and it closes.
    closes_after_upstream_idle(&fp, "the idle HTTP/2 connection to close").await;
    // The next request opens a new one.
    let a = get(&c, proxy_url(&s, "/")).await;
    assert_eq!((a.status, a.upstream()), (200, "blue-1"));
}

#[tokio::test]
async fn a_bursts_surplus_connections_are_let_go_under_a_lighter_load() {
    let (_up, fp, s) = behind_a_counting_proxy().await;
    let c = client();
    all_at_once(&c, proxy_url(&s, "/delay/300"), 8).await;
    let opened = fp.accepted();
    assert!(opened >= 8, "{opened}");
    assert!(fp.open() >= 8);
    // One request at a time: first in, first out would keep all eight in
    // use for ever; the sweeps close the surplus, half of it a second, once
    // the burst's peak is 5 s old.
    let light = tokio::time::Instant::now();
    wait_for(Duration::from_secs(15), "the surplus to close", || async {
        assert_eq!(get(&c, proxy_url(&s, "/")).await.status, 200);
        fp.open() <= 2
    })
    .await;
    assert!(
        light.elapsed() >= Duration::from_secs(3),
        "closed after {:?}: before the burst's peak was forgotten",
        light.elapsed()
    );
    // And none was opened again meanwhile.
    assert_eq!(fp.accepted(), opened);
    s.shutdown().await;
}

/// An endpoint that gets a request every second and a half keeps its one
/// connection (until `timeouts.upstream_idle`), instead of a new one per
/// request.
#[tokio::test]
async fn a_slow_trickle_of_requests_keeps_its_connection() {
    let (_up, fp, s) = behind_a_counting_proxy().await;
    let c = client();
    let mut pace = tokio::time::interval(Duration::from_millis(1500));
    for _ in 0..3 {
        pace.tick().await;
        assert_eq!(get(&c, proxy_url(&s, "/")).await.status, 200);
    }
    assert_eq!(fp.accepted(), 1);
    s.shutdown().await;
}

/// Blue's one endpoint behind a TCP proxy that counts its connections;
/// checks an hour apart and connections kept for 90 s (the default), so
/// only the demand opens and closes them.
async fn behind_a_counting_proxy() -> ([Upstream; 2], FaultProxy, switchyard::server::Server) {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let fp = FaultProxy::start(blue.addr, Fault::Pass).await;
    let extra = "health_check:\n  interval: 1h";
    let s = start_proxy(&config_yaml(&[fp.addr], &[green.addr], extra)).await;
    ([blue, green], fp, s)
}
