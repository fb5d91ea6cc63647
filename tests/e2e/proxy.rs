//! Routing by weight, header rewriting, and the errors the proxy answers.

use crate::support::*;
use futures_util::StreamExt;
use http::{Method, Request};
use http_body_util::Full;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn send_many(c: &TestClient, url: String, n: usize, concurrency: usize) -> Vec<Answer> {
    futures_util::stream::iter(0..n)
        .map(|_| {
            let c = c.clone();
            let url = url.clone();
            async move { get(&c, url).await }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_traffic_and_zero_weight_gets_nothing() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let yaml = config_yaml(
        &[blue.addr],
        &[green.addr],
        "traffic:\n  initial: { blue: 90, green: 10 }",
    );
    let s = start_proxy(&yaml).await;
    let c = client();

    let answers = send_many(&c, proxy_url(&s, "/"), 10_000, 32).await;
    assert!(answers.iter().all(|a| a.status == 200));
    let to_green = answers.iter().filter(|a| a.upstream() == "green-1").count();
    let share = to_green as f64 / 10_000.0;
    assert!(
        (0.08..=0.12).contains(&share),
        "green got {share:.4} of traffic, expected 0.10 ± 0.02"
    );
    assert_eq!(green.requests() as usize, to_green);

    // 100/0: not one request reaches green.
    let put = Request::put(admin_url(&s, "/api/v1/weights"))
        .body(Full::new(r#"{"blue": 100, "green": 0}"#.into()))
        .unwrap();
    assert_eq!(read(c.request(put).await.unwrap()).await.status, 200);
    let before = green.requests();
    let answers = send_many(&c, proxy_url(&s, "/"), 2_000, 32).await;
    assert!(answers
        .iter()
        .all(|a| a.status == 200 && a.upstream() == "blue-1"));
    assert_eq!(green.requests(), before);
    s.shutdown().await;
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_and_forwarded_headers_set() {
    let blue = Upstream::start("blue-1").await;
    let s = start_proxy(&config_yaml(&[blue.addr], &[blue.addr], "")).await;
    let c = client();
    let req = Request::get(proxy_url(&s, "/headers"))
        .header("host", "app.example")
        .header("connection", "x-custom-hop")
        .header("x-custom-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("te", "gzip")
        .header("x-forwarded-for", "127.0.0.7")
        .header("x-app", "kept")
        .body(Full::new("".into()))
        .unwrap();
    let a = read(c.request(req).await.unwrap()).await;
    assert_eq!(a.status, 200);
    let seen: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    for gone in ["x-custom-hop", "keep-alive", "proxy-authorization", "te"] {
        assert!(
            seen.get(gone).is_none(),
            "{gone} reached the upstream: {seen}"
        );
    }
    assert_ne!(seen["connection"], "x-custom-hop");
    assert_eq!(seen["host"], "app.example");
    assert_eq!(seen["x-forwarded-host"], "app.example");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.7, 127.0.0.1");
    assert_eq!(seen["x-app"], "kept");
    // The upstream's own Connection-named header does not reach the client.
    assert!(!a.headers.contains_key("x-hop-secret"));
    s.shutdown().await;
}

#[tokio::test]
async fn refused_upstream_gives_502_without_leaking_its_address() {
    let dead = refusing_addr().await;
    let yaml = config_yaml(&[dead], &[dead], "retries:\n  attempts: 0");
    let s = start_proxy(&yaml).await;
    let a = get(&client(), proxy_url(&s, "/")).await;
    assert_eq!(a.status, 502);
    assert!(
        !a.text().contains("127.0.0.1"),
        "body leaks an address: {}",
        a.text()
    );
    s.shutdown().await;
}

#[tokio::test]
async fn slow_upstream_gives_504() {
    let blue = Upstream::start("blue-1").await;
    let yaml = config_yaml(&[blue.addr], &[blue.addr], "timeouts:\n  request: 300ms");
    let s = start_proxy(&yaml).await;
    let started = std::time::Instant::now();
    let a = get(&client(), proxy_url(&s, "/delay/3000")).await;
    assert_eq!(a.status, 504);
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "504 came too late"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn malformed_request_gives_400() {
    let blue = Upstream::start("blue-1").await;
    let s = start_proxy(&config_yaml(&[blue.addr], &[blue.addr], "")).await;
    let mut conn = tokio::net::TcpStream::connect(s.proxy_addrs[0])
        .await
        .unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 400"), "got {text:?}");
    assert_eq!(blue.requests(), 0, "a malformed request was forwarded");
    s.shutdown().await;
}

#[tokio::test]
async fn idempotent_requests_retry_on_another_endpoint_and_posts_do_not() {
    let good = Upstream::start("blue-good").await;
    let dead = refusing_addr().await;
    // A high outlier threshold keeps the dead endpoint in rotation, so every
    // request has its chance to meet it.
    let yaml = config_yaml(
        &[dead, good.addr],
        &[good.addr],
        "retries:\n  attempts: 1\noutlier_detection:\n  consecutive_failures: 100000",
    );
    let s = start_proxy(&yaml).await;
    let c = client();
    for _ in 0..40 {
        let a = get(&c, proxy_url(&s, "/")).await;
        assert_eq!(a.status, 200, "an idempotent request was not retried");
        assert_eq!(a.upstream(), "blue-good");
    }
    let mut refused = 0;
    for _ in 0..40 {
        let a = send(&c, Method::POST, proxy_url(&s, "/"), "data").await;
        match a.status {
            200 => assert_eq!(a.upstream(), "blue-good"),
            502 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        refused > 0,
        "a POST was retried: none of 40 met the dead endpoint"
    );
    assert_eq!(good.requests(), 40 + (40 - refused));
    s.shutdown().await;
}

// The default (current-thread) runtime: the proxy's tasks run on this
// thread, so the subscriber set here sees what they log.
#[tokio::test]
async fn the_access_log_has_a_line_per_request_when_asked_and_none_otherwise() {
    let (logs, _guard) = crate::support::logs::Logs::capture();
    let access_lines = || {
        logs.text()
            .lines()
            .filter(|l| l.contains("switchyard::access"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let c = client();

    let s = start_proxy(&config_yaml(
        &[blue.addr],
        &[green.addr],
        "log:\n  access_log: true",
    ))
    .await;
    assert_eq!(get(&c, proxy_url(&s, "/hello?x=1")).await.status, 200);
    let a = send(&c, Method::POST, proxy_url(&s, "/form"), "data").await;
    assert_eq!(a.status, 200);
    s.shutdown().await;
    let lines = access_lines();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    for (line, method, target) in [
        (&lines[0], "GET", "/hello?x=1"),
        (&lines[1], "POST", "/form"),
    ] {
        for part in [
            format!("method={method}"),
            format!("target={target}"),
            "status=200".to_string(),
            "pool=\"blue\"".to_string(),
            format!("endpoint=\"{}\"", blue.addr),
            "client=127.0.0.1".to_string(),
        ] {
            assert!(line.contains(&part), "{part} missing from {line}");
        }
    }

    // Off (the default): not a line.
    let s = start_proxy(&config_yaml(&[blue.addr], &[green.addr], "")).await;
    assert_eq!(get(&c, proxy_url(&s, "/")).await.status, 200);
    s.shutdown().await;
    assert_eq!(access_lines().len(), 2);
}
