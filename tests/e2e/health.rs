//! Health: active checks mark endpoints down and up in time, passive outlier
//! detection ejects and brings back, failover to the other pool or 503.

use crate::support::admin::*;
use crate::support::*;
use std::time::Duration;
use tokio::time::Instant;

const INTERVAL_MS: u64 = 200;

fn checks(unhealthy: u32, healthy: u32) -> String {
    format!(
        "health_check:\n  interval: {INTERVAL_MS}ms\n  timeout: 150ms\n  unhealthy_threshold: {unhealthy}\n  healthy_threshold: {healthy}\n"
    )
}

#[tokio::test]
async fn a_stopped_upstream_is_marked_down_in_time_and_up_again_when_it_returns() {
    let steady = Upstream::start("blue-steady").await;
    let flaky = Upstream::start("blue-flaky").await;
    let green = Upstream::start("green-1").await;
    let addr = flaky.addr;
    let s = start_proxy(&config_yaml(
        &[steady.addr, addr],
        &[green.addr],
        &checks(3, 2),
    ))
    .await;
    let c = client();
    wait_for(Duration::from_secs(5), "blue-flaky to be healthy", || {
        endpoint_state_is(&c, &s, addr, "healthy")
    })
    .await;

    flaky.stop();
    let stopped = Instant::now();
    // interval × unhealthy_threshold, plus one interval.
    let bound = Duration::from_millis(INTERVAL_MS * 3 + INTERVAL_MS);
    wait_for(bound, "blue-flaky to be marked down", || {
        endpoint_state_is(&c, &s, addr, "unhealthy")
    })
    .await;
    eprintln!("marked down {:?} after it stopped", stopped.elapsed());
    let st = admin_status(&c, &s).await;
    let ep = endpoint(&st, "blue", addr);
    assert_eq!(ep["last_check_result"], "connect failed");
    assert_eq!(ep["last_check_ok"], false);
    assert_eq!(st["pools"]["blue"]["healthy"], 1);
    assert_eq!(endpoint_gauge(&c, &s, "blue", addr).await, Some(0));
    let kinds = endpoint_events(&c, &s).await;
    assert!(
        kinds.contains(&("endpoint_down".into(), addr.to_string())),
        "{kinds:?}"
    );

    // From now on no request meets it.
    for _ in 0..40 {
        let a = get(&c, proxy_url(&s, "/")).await;
        assert_eq!((a.status, a.upstream()), (200, "blue-steady"));
    }

    let back = Upstream::restart_on("blue-flaky", addr).await;
    let restarted = Instant::now();
    // healthy_threshold passes, plus one interval.
    let bound = Duration::from_millis(INTERVAL_MS * 2 + INTERVAL_MS);
    wait_for(bound, "blue-flaky to be marked up", || {
        endpoint_state_is(&c, &s, addr, "healthy")
    })
    .await;
    eprintln!("marked up {:?} after it came back", restarted.elapsed());
    assert_eq!(endpoint_gauge(&c, &s, "blue", addr).await, Some(1));
    wait_for(Duration::from_secs(2), "requests to reach it again", || {
        let c = c.clone();
        let url = proxy_url(&s, "/");
        async move { get(&c, url).await.upstream() == "blue-flaky" }
    })
    .await;
    assert!(back.requests() > 0);
    let kinds = endpoint_events(&c, &s).await;
    let flaky_kinds: Vec<&str> = kinds
        .iter()
        .filter(|(_, e)| *e == addr.to_string())
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(
        flaky_kinds,
        ["endpoint_up", "endpoint_down", "endpoint_up"],
        "unknown → healthy → unhealthy → healthy"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn five_500s_in_a_row_eject_an_endpoint_until_the_ejection_time_is_over() {
    let bad = Upstream::start("blue-bad").await;
    let green = Upstream::start("green-1").await;
    let extra = format!(
        "{}outlier_detection:\n  consecutive_failures: 5\n  ejection_time: 1s\n",
        checks(3, 2)
    );
    let s = start_proxy(&config_yaml(&[bad.addr], &[green.addr], &extra)).await;
    let c = client();
    bad.force_status(500);
    // Timed from before the fifth failure: the ejection starts when its
    // answer is recorded, before the client has read it (on a busy
    // machine, tens of milliseconds before).
    let mut ejected = Instant::now();
    for _ in 0..5 {
        ejected = Instant::now();
        let a = get(&c, proxy_url(&s, "/")).await;
        assert_eq!((a.status, a.upstream()), (500, "blue-bad"));
    }
    assert_eq!(endpoint_state(&c, &s, "blue", bad.addr).await, "ejected");
    // Meanwhile blue has nothing left: its requests fail over to green.
    let a = get(&c, proxy_url(&s, "/")).await;
    assert_eq!((a.status, a.upstream()), (200, "green-1"));
    let st = admin_status(&c, &s).await;
    assert_eq!(st["pools"]["blue"]["failing_over"], true);
    assert!(st["pools"]["blue"]["failovers"].as_u64().unwrap() >= 1);
    wait_for(Duration::from_secs(1), "the ejection event", || {
        let c = c.clone();
        let s = &s;
        async move {
            endpoint_events(&c, s)
                .await
                .contains(&("endpoint_ejected".into(), bad.addr.to_string()))
        }
    })
    .await;
    assert_eq!(endpoint_gauge(&c, &s, "blue", bad.addr).await, Some(0));

    bad.force_status(0);
    wait_for(Duration::from_secs(3), "the ejection to end", || {
        let c = c.clone();
        let s = &s;
        async move { endpoint_state(&c, s, "blue", bad.addr).await != "ejected" }
    })
    .await;
    let took = ejected.elapsed();
    assert!(took >= Duration::from_secs(1), "back after {took:?}");
    eprintln!("back from ejection after {took:?}");
    let st = admin_status(&c, &s).await;
    assert_eq!(endpoint(&st, "blue", bad.addr)["probation"], true);
    let a = get(&c, proxy_url(&s, "/")).await;
    assert_eq!((a.status, a.upstream()), (200, "blue-bad"));
    let st = admin_status(&c, &s).await;
    assert_eq!(endpoint(&st, "blue", bad.addr)["probation"], false);
    assert_eq!(st["pools"]["blue"]["failing_over"], false);
    wait_for(Duration::from_secs(1), "the gauge to be back at 1", || {
        let c = c.clone();
        let s = &s;
        async move { endpoint_gauge(&c, s, "blue", bad.addr).await == Some(1) }
    })
    .await;
    s.shutdown().await;
}

/// One route that answers 500 on every endpoint of a pool must not empty
/// the pool and send everyone to the other version: outlier detection
/// ejects at most `max_ejection_percent` (50 %) of it, so one of the two
/// blue endpoints keeps serving blue's traffic, 500s included.
#[tokio::test]
async fn outlier_detection_leaves_half_of_a_pool_in() {
    let b1 = Upstream::start("blue-1").await;
    let b2 = Upstream::start("blue-2").await;
    let green = Upstream::start("green-1").await;
    let extra = format!(
        "{}outlier_detection:\n  consecutive_failures: 2\n  ejection_time: 1m\n",
        checks(3, 2)
    );
    let s = start_proxy(&config_yaml(&[b1.addr, b2.addr], &[green.addr], &extra)).await;
    let c = client();
    for _ in 0..20 {
        let a = get(&c, proxy_url(&s, "/status/500")).await;
        assert_eq!(a.status, 500);
        assert!(a.upstream().starts_with("blue-"), "{}", a.upstream());
    }
    let states = [
        endpoint_state(&c, &s, "blue", b1.addr).await,
        endpoint_state(&c, &s, "blue", b2.addr).await,
    ];
    assert_eq!(
        states.iter().filter(|st| *st == "ejected").count(),
        1,
        "{states:?}"
    );
    // Every other route still works, on blue.
    let a = get(&c, proxy_url(&s, "/")).await;
    assert_eq!(a.status, 200);
    assert!(a.upstream().starts_with("blue-"), "{}", a.upstream());
    assert_eq!(green.requests(), 0);
    s.shutdown().await;
}

#[tokio::test]
async fn with_blue_down_failover_sends_to_green_and_without_it_503() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    blue.set_health(503);
    let on = start_proxy(&config_yaml(&[blue.addr], &[green.addr], &checks(2, 2))).await;
    let off_extra = format!("{}traffic:\n  failover: false\n", checks(2, 2));
    let off = start_proxy(&config_yaml(&[blue.addr], &[green.addr], &off_extra)).await;
    let c = client();
    for s in [&on, &off] {
        wait_for(Duration::from_secs(3), "blue to be marked down", || {
            endpoint_state_is(&c, s, blue.addr, "unhealthy")
        })
        .await;
    }
    for _ in 0..10 {
        let a = get(&c, proxy_url(&on, "/")).await;
        assert_eq!((a.status, a.upstream()), (200, "green-1"));
        let a = get(&c, proxy_url(&off, "/")).await;
        assert_eq!(a.status, 503);
        assert!(a.text().contains("no healthy upstream"), "{}", a.text());
    }
    assert_eq!(blue.requests(), 0);
    let st = admin_status(&c, &on).await;
    assert_eq!(st["pools"]["blue"]["failing_over"], true);
    assert_eq!(st["pools"]["blue"]["failovers"], 10);
    assert_eq!(st["pools"]["blue"]["healthy"], 0);
    // An outage shows in the request metrics: the proxy's own 503s are
    // counted for the pool they were meant for (an error-rate alert must
    // not stay flat); the failed-over requests are green's 2xx.
    let requests = |text: &str, pool: &str, code: &str| -> u64 {
        let series = format!("switchyard_requests_total{{code=\"{code}\",pool=\"{pool}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let off_metrics = metrics_text(&off).await;
    assert_eq!(requests(&off_metrics, "blue", "error"), 10, "{off_metrics}");
    let on_metrics = metrics_text(&on).await;
    assert_eq!(requests(&on_metrics, "blue", "error"), 0);
    assert_eq!(requests(&on_metrics, "green", "2xx"), 10);
    on.shutdown().await;
    off.shutdown().await;
}

/// A `wait_for` check: is blue's endpoint at `addr` in `state`?
async fn endpoint_state_is(
    c: &TestClient,
    s: &switchyard::server::Server,
    addr: std::net::SocketAddr,
    state: &str,
) -> bool {
    endpoint_state(c, s, "blue", addr).await == state
}
