//! Mirroring with response comparison (SPEC.md section 12), on real
//! sockets: clients are answered by blue exactly as without mirroring,
//! green's different answers show in the diffs with both values, a field
//! that differs between two blue endpoints is learned as noise, a hanging
//! green only fills `max_inflight`, and `max_mismatch_rate` refuses a
//! rollout or switch.

mod app;
mod ops;

use crate::support::*;
use app::{app, App};
use http::Method;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub(crate) fn mirror_yaml(blue: &[&App], green: &App, mirror: &str) -> String {
    let blue: Vec<SocketAddr> = blue.iter().map(|a| a.addr).collect();
    config_yaml(
        &blue,
        &[green.addr],
        &format!("health_check: {{ interval: 100ms, timeout: 100ms }}\n{mirror}"),
    )
}

pub(crate) async fn diffs(s: &switchyard::server::Server) -> serde_json::Value {
    let (code, v) = api(
        s.admin_addr,
        Method::GET,
        "/api/v1/mirror/diffs",
        None,
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    v
}

/// The figure of `switchyard_mirror_requests_total{result}`.
pub(crate) fn counted(metrics: &str, result: &str) -> u64 {
    let line = format!("switchyard_mirror_requests_total{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line} in metrics"))
}

#[tokio::test]
async fn clients_get_blues_answers_unchanged_and_greens_differences_show_with_both_values() {
    let (b1, b2, g) = (
        app("blue-1", 10).await,
        app("blue-2", 10).await,
        app("green", 12).await,
    );
    let mirrored = start_proxy(&mirror_yaml(&[&b1, &b2], &g, "mirror: { percent: 100 }")).await;
    let plain = start_proxy(&mirror_yaml(&[&b1, &b2], &g, "")).await;
    let c = client();

    // Byte for byte what the client would get without mirroring.
    for _ in 0..5 {
        let with = get(&c, proxy_url(&mirrored, "/static")).await;
        let without = get(&c, proxy_url(&plain, "/static")).await;
        assert_eq!(with.status, without.status);
        assert_eq!(with.body, without.body);
        let mut h1 = with.headers.clone();
        let mut h2 = without.headers.clone();
        h1.remove("date");
        h2.remove("date");
        h1.remove("x-instance");
        h2.remove("x-instance");
        assert_eq!(h1, h2);
        assert!(with.headers["x-instance"]
            .to_str()
            .unwrap()
            .starts_with("blue"));
    }
    for _ in 0..10 {
        let a = get(&c, proxy_url(&mirrored, "/items")).await;
        assert!(a.headers["x-instance"]
            .to_str()
            .unwrap()
            .starts_with("blue"));
        let p = get(&c, proxy_url(&mirrored, "/price")).await;
        assert_eq!(p.status, 200);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&p.body).unwrap()["price"],
            10
        );
    }
    // 25 copies, each compared once the live answer is in.
    wait_for(Duration::from_secs(10), "every copy compared", || async {
        let m = metrics_text(&mirrored).await;
        counted(&m, "match") + counted(&m, "mismatch") + counted(&m, "error") >= 25
    })
    .await;
    let m = metrics_text(&mirrored).await;
    assert_eq!(counted(&m, "error"), 0, "{m}");
    assert_eq!(counted(&m, "dropped"), 0);
    assert_eq!(counted(&m, "mismatch"), 10, "only /price differs");
    assert_eq!(counted(&m, "match"), 15);
    assert!(g.mirrored.load(Ordering::Relaxed) >= 25);

    let d = diffs(&mirrored).await;
    assert_eq!(d["to"], "green");
    let list = d["diffs"].as_array().unwrap();
    assert_eq!(list.len(), 10);
    for diff in list {
        assert_eq!(diff["request"], "GET /price HTTP/1.1", "{diff}");
        let fields = diff["fields"].as_array().unwrap();
        assert!(
            fields.contains(&json!({"field": "$.price", "live": "10", "candidate": "12"})),
            "{diff}"
        );
        // Learned from two blue answers: neither the stamp nor the
        // instance header is a mismatch.
        assert!(fields.iter().all(|f| f["field"] != "$.now"), "{diff}");
    }
    let noise = d["learned_noise"].as_array().unwrap();
    assert!(noise.contains(&json!("$.now")), "{noise:?}");
    assert!(noise.contains(&json!("header:x-instance")), "{noise:?}");
    let st = status(&mirrored).await;
    assert_eq!(st["mirror"]["enabled"], true);
    assert_eq!(st["mirror"]["mismatch_rate"], 0.4);
    assert_eq!(st["mirror"]["refusing"], false);
    mirrored.shutdown().await;
    plain.shutdown().await;
}

#[tokio::test]
async fn a_hanging_green_fills_max_inflight_and_the_rest_are_dropped_while_clients_go_on() {
    let (b, g) = (app("blue", 10).await, app("green", 10).await);
    g.hang.store(true, Ordering::Relaxed);
    let yaml = mirror_yaml(
        &[&b],
        &g,
        "mirror: { percent: 100, max_inflight: 4 }\ntimeouts: { request: 30s }",
    );
    let s = start_proxy(&yaml).await;
    // The same pools without mirroring, asked in turn: the clients' latency
    // side by side.
    let plain = start_proxy(&mirror_yaml(&[&b], &g, "timeouts: { request: 30s }")).await;
    let c = client();
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..30 {
        for (proxy, took) in [(&s, &mut with), (&plain, &mut without)] {
            let t = tokio::time::Instant::now();
            let a = get(&c, proxy_url(proxy, "/items")).await;
            took.push(t.elapsed());
            assert_eq!(a.status, 200);
            assert_eq!(a.headers["x-instance"], "blue");
        }
    }
    with.sort();
    without.sort();
    // A copy waited on would take the 30 s request timeout.
    assert!(
        with[29] < Duration::from_secs(2),
        "a client waited {:?}",
        with[29]
    );
    // No change beyond noise: the median with mirroring to a hanging
    // green is within half again (plus 2 ms of scheduling) of the one
    // without.
    let (m_with, m_without) = (with[15], without[15]);
    assert!(
        m_with <= m_without * 3 / 2 + Duration::from_millis(2),
        "median {m_with:?} with mirroring to a hanging green, {m_without:?} without"
    );
    let m = metrics_text(&s).await;
    assert_eq!(counted(&m, "dropped"), 26, "{m}");
    let st = status(&s).await;
    assert_eq!(st["mirror"]["inflight"], 4);
    assert_eq!(st["mirror"]["dropped"], 26);
    wait_for(
        Duration::from_secs(5),
        "green to see the 4 copies",
        || async { g.mirrored.load(Ordering::Relaxed) == 4 },
    )
    .await;
    s.shutdown().await;
    plain.shutdown().await;
}

#[tokio::test]
async fn a_green_that_answers_differently_too_often_is_refused_a_rollout_and_a_switch() {
    let (b, g) = (app("blue", 10).await, app("green", 12).await);
    let yaml = mirror_yaml(
        &[&b],
        &g,
        "mirror: { percent: 100, max_mismatch_rate: 0.2, compare: { ignore_headers: [date, x-instance] } }",
    );
    let s = start_proxy(&yaml).await;
    let c = client();
    for path in ["/price", "/static", "/static", "/price"] {
        assert_eq!(get(&c, proxy_url(&s, path)).await.status, 200);
    }
    wait_for(Duration::from_secs(10), "the mismatch rate", || async {
        status(&s).await["mirror"]["refusing"] == true
    })
    .await;
    wait_healthy(s.admin_addr, "green").await;
    let (code, v) = api(
        s.admin_addr,
        Method::POST,
        "/api/v1/rollout",
        Some(json!({"to": "green"})),
        None,
    )
    .await;
    assert_eq!(code, 409, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("mismatch rate 0.5000 > mirror.max_mismatch_rate 0.2"),
        "{msg}"
    );
    let (code, v) = api(
        s.admin_addr,
        Method::POST,
        "/api/v1/switch",
        Some(json!({"to": "green"})),
        None,
    )
    .await;
    assert_eq!(code, 409, "{v}");
    // Back to the live pool is never refused; force passes the guardrail.
    let (code, _) = api(
        s.admin_addr,
        Method::POST,
        "/api/v1/switch",
        Some(json!({"to": "blue"})),
        None,
    )
    .await;
    assert_eq!(code, 200);
    let (code, v) = api(
        s.admin_addr,
        Method::POST,
        "/api/v1/switch",
        Some(json!({"to": "green", "force": true})),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    s.shutdown().await;
}

#[test]
fn the_mirror_compare_fuzz_corpus_replays_cleanly() {
    let seeds = crate::operator_input::corpus("mirror_compare");
    assert!(
        seeds.len() >= 10,
        "the mirror_compare corpus lost its seeds"
    );
    for (_, data) in &seeds {
        switchyard::fuzzing::mirror_compare(data);
    }
}

proptest::proptest! {
    #[test]
    fn any_two_answers_compare_within_bounds(data in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
        switchyard::fuzzing::mirror_compare(&data);
    }

    #[test]
    fn any_two_json_documents_compare_within_bounds(
        a in proptest::collection::btree_map("[a-c]{1,2}", 0u8..4, 0..6),
        b in proptest::collection::btree_map("[a-c]{1,2}", 0u8..4, 0..6),
    ) {
        let (a, b) = (serde_json::to_vec(&json!({"t": 1, "v": a})).unwrap(), serde_json::to_vec(&json!([b])).unwrap());
        let mut data = vec![0, a.len() as u8, (a.len() >> 8) as u8];
        data.extend_from_slice(&a);
        data.extend_from_slice(&b);
        switchyard::fuzzing::mirror_compare(&data);
    }
}
