//! What the proxy answers itself, on raw connections: hyper's own refusals
//! of heads it cannot parse carry the proxy's text body (SPEC.md section 8)
//! while a forwarded bodiless answer passes untouched; a client that stalls
//! its request body gets 408 and costs the upstream nothing; `Max-Forwards`
//! (RFC 9110 section 7.6.2).

use crate::support::fault::{Fault, FaultProxy};
use crate::support::raw::*;
use crate::support::*;
use std::time::Duration;
use tokio::time::Instant;

fn quiet_yaml(blue: std::net::SocketAddr, extra: &str) -> String {
    config_yaml(
        &[blue],
        &[blue],
        &format!("health_check:\n  interval: 1m\n{extra}"),
    )
}

/// Heads hyper refuses before the proxy sees them: a bad request line, a
/// bad field, too many fields, a target past hyper's limit, a head past its
/// read buffer. Each gets its status, a short text body with a matching
/// length and no address, and the connection closes; nothing is forwarded.
#[tokio::test]
async fn unparseable_heads_get_their_status_and_a_text_body() {
    let up = Upstream::start("blue-1").await;
    let s = start_proxy(&quiet_yaml(up.addr, "")).await;
    let addr = s.proxy_addrs[0];
    let many_fields = format!(
        "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
        (0..150)
            .map(|i| format!("x-{i}: v\r\n"))
            .collect::<String>()
    );
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "t".repeat(70_000));
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
        (0..70)
            .map(|i| format!("x-{i}: {}\r\n", "c".repeat(8000)))
            .collect::<String>()
    );
    let cases: [(&str, &str, u16, &str); 6] = [
        (
            "a method with a bad character",
            "G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
            400,
            "400 bad request\n",
        ),
        (
            "an unknown version",
            "GET / HTTP/9.9\r\nHost: h\r\n\r\n",
            400,
            "400 bad request\n",
        ),
        (
            "a field line without a colon",
            "GET / HTTP/1.1\r\nHost: h\r\nbad field\r\n\r\n",
            400,
            "400 bad request\n",
        ),
        (
            "150 fields",
            &many_fields,
            431,
            "431 request header fields too large\n",
        ),
        ("a 70 KB target", &long_target, 414, "414 URI too long\n"),
        (
            "a 560 KB head",
            &huge,
            431,
            "431 request header fields too large\n",
        ),
    ];
    for (what, bytes, status, text) in cases {
        let (mut c, r) = answer_to(addr, bytes.as_bytes(), what).await;
        assert_eq!(r.status, status, "{what}: {r:?}");
        assert_eq!(r.text(), text, "{what}");
        assert_eq!(
            r.header("content-length"),
            Some(text.len().to_string().as_str()),
            "{what}"
        );
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; charset=utf-8"),
            "{what}"
        );
        assert_eq!(r.header("connection"), Some("close"), "{what}");
        assert!(r.header("date").is_some(), "{what}: hyper's date was lost");
        for (n, v) in &r.headers {
            assert!(!v.contains("127.0.0.1"), "{what}: {n} leaks an address");
        }
        assert!(c.closes_within(Duration::from_secs(5)).await, "{what}");
    }
    assert_eq!(up.requests(), 0, "a refused head was forwarded");
    s.shutdown().await;
}

/// An upstream's own bare `400` (no field but `content-length: 0`) is the
/// same bytes as hyper's automatic answer: it must reach the client as the
/// upstream sent it, body-less, with the connection kept; and a bad head
/// after it on the same connection is still answered with a body.
#[tokio::test]
async fn a_forwarded_bare_400_is_not_mistaken_for_a_refusal() {
    let up = raw_upstream(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await;
    let s = start_proxy(&quiet_yaml(up, "")).await;
    let mut c = RawConn::connect(s.proxy_addrs[0]).await;
    for _ in 0..3 {
        c.send(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n").await;
        let r = c.response(Duration::from_secs(5)).await.expect("an answer");
        assert_eq!(r.status, 400);
        assert_eq!(r.header("content-length"), Some("0"), "{r:?}");
        assert_eq!(r.header("content-type"), None, "{r:?}");
        assert_eq!(r.header("connection"), None, "{r:?}");
        assert!(r.body.is_empty());
    }
    // Pipelined: a forwarded bare 400, then hyper's refusal of the next head.
    c.send(b"GET /y HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nbad field\r\n\r\n")
        .await;
    let first = c.response(Duration::from_secs(5)).await.expect("an answer");
    assert_eq!((first.status, first.body.len()), (400, 0), "{first:?}");
    let refusal = c.response(Duration::from_secs(5)).await.expect("a refusal");
    assert_eq!(refusal.status, 400);
    assert_eq!(refusal.text(), "400 bad request\n");
    assert!(c.closes_within(Duration::from_secs(5)).await);
    s.shutdown().await;
}

/// The value of `switchyard_upstream_errors_total` for `pool` and `kind`.
pub async fn upstream_errors(
    c: &TestClient,
    s: &switchyard::server::Server,
    pool: &str,
    kind: &str,
) -> u64 {
    let text = get(c, admin_url(s, "/metrics")).await.text();
    let (pool, kind) = (format!("pool=\"{pool}\""), format!("kind=\"{kind}\""));
    text.lines()
        .filter(|l| l.starts_with("switchyard_upstream_errors_total{"))
        .find(|l| l.contains(&pool) && l.contains(&kind))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A client that sends its head and a tenth of its body, then stalls: it
/// gets 408 once `timeouts.client_body` passes (not 504 at the request
/// timeout), its connection closes, the upstream's request is aborted, and
/// the upstream is not blamed (one failure would eject it here).
#[tokio::test]
async fn a_stalled_request_body_gets_408_and_costs_the_upstream_nothing() {
    stalled_body(false).await;
}

/// The same over an HTTP/2 upstream, which reports the failed request body
/// as a reset of its stream rather than as the body's error.
#[tokio::test]
async fn a_stalled_request_body_to_an_h2_upstream_gets_408_too() {
    stalled_body(true).await;
}

async fn stalled_body(h2: bool) {
    let up = Upstream::start("blue-1").await;
    let fault = FaultProxy::start(up.addr, Fault::Pass).await;
    let mut yaml = quiet_yaml(
        fault.addr,
        "outlier_detection:\n  consecutive_failures: 1\n  ejection_time: 1m\n\
         timeouts:\n  client_body: 500ms\n  request: 20s\n",
    );
    if h2 {
        yaml = yaml.replace("endpoints: [", "protocol: h2\n    endpoints: [");
    }
    let s = start_proxy(&yaml).await;
    let c = client();
    for round in 0..3 {
        let mut raw = RawConn::connect(s.proxy_addrs[0]).await;
        raw.send(b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n0123456789")
            .await;
        let sent = Instant::now();
        let r = raw
            .response(Duration::from_secs(10))
            .await
            .expect("an answer");
        let took = sent.elapsed();
        assert_eq!(r.status, 408, "h2 {h2}, round {round}: {r:?}");
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_secs(5),
            "round {round}: 408 after {took:?}, client_body is 500ms"
        );
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(r.header("connection"), Some("close"));
        assert!(r.text().starts_with("408 "), "{}", r.text());
        assert!(raw.closes_within(Duration::from_secs(5)).await);
        if !h2 {
            // The upstream's half-sent request was aborted: its connection
            // closed. (An HTTP/2 one only loses the stream.)
            wait_for(
                Duration::from_secs(5),
                "the upstream connection to close",
                || std::future::ready(fault.open() == 0),
            )
            .await;
        }
        let state = crate::support::admin::endpoint_state(&c, &s, "blue", fault.addr).await;
        assert!(
            state == "unknown" || state == "healthy",
            "h2 {h2}, round {round}: the stall was held against the upstream: {state}"
        );
        for kind in ["timeout", "reset", "protocol", "connect"] {
            assert_eq!(upstream_errors(&c, &s, "blue", kind).await, 0, "{kind}");
        }
        // Others are served meanwhile, by the same endpoint.
        let a = get(&c, proxy_url(&s, "/")).await;
        assert_eq!((a.status, a.upstream()), (200, "blue-1"));
    }
    // A body that keeps coming, however slowly, is not cut.
    let mut raw = RawConn::connect(s.proxy_addrs[0]).await;
    raw.send(b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\n")
        .await;
    for b in [b"a", b"b", b"c", b"d"] {
        tokio::time::sleep(Duration::from_millis(200)).await;
        raw.send(b).await;
    }
    let r = raw
        .response(Duration::from_secs(5))
        .await
        .expect("an answer");
    assert_eq!((r.status, r.text().trim()), (200, "4"), "{r:?}");
    s.shutdown().await;
}

/// `timeouts.request` is the upstream's time to answer the whole request,
/// not the client's time to send it: an upload that keeps coming for longer
/// than that gets its answer, and nothing is held against the upstream
/// (one failure would eject it here). An answer that is late after the
/// body was read whole still gets 504, counted from the body's end.
#[tokio::test]
async fn a_slow_upload_is_not_an_upstream_timeout() {
    slow_upload(false).await;
}

#[tokio::test]
async fn a_slow_upload_to_an_h2_upstream_is_not_an_upstream_timeout() {
    slow_upload(true).await;
}

async fn slow_upload(h2: bool) {
    let up = Upstream::start("blue-1").await;
    let mut yaml = quiet_yaml(
        up.addr,
        "outlier_detection:\n  consecutive_failures: 1\n  ejection_time: 1m\n\
         timeouts:\n  client_body: 5s\n  request: 300ms\n",
    );
    if h2 {
        yaml = yaml.replace("endpoints: [", "protocol: h2\n    endpoints: [");
    }
    let s = start_proxy(&yaml).await;
    let c = client();
    let mut raw = RawConn::connect(s.proxy_addrs[0]).await;
    raw.send(b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n")
        .await;
    let started = Instant::now();
    // One byte every 100 ms: a second in all, three times the limit.
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    for b in b"0123456789" {
        pace.tick().await;
        raw.send(&[*b]).await;
    }
    let r = raw
        .response(Duration::from_secs(5))
        .await
        .expect("an answer");
    assert_eq!((r.status, r.text().trim()), (200, "10"), "h2 {h2}: {r:?}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    for kind in ["timeout", "reset", "protocol", "connect"] {
        assert_eq!(upstream_errors(&c, &s, "blue", kind).await, 0, "{kind}");
    }
    let state = crate::support::admin::endpoint_state(&c, &s, "blue", up.addr).await;
    assert!(state == "unknown" || state == "healthy", "h2 {h2}: {state}");

    // The whole body at once, and an upstream that answers after 2 s: 504
    // at the limit, counted from the end of the body.
    let mut raw = RawConn::connect(s.proxy_addrs[0]).await;
    let sent = Instant::now();
    raw.send(b"POST /delay/2000 HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody")
        .await;
    let r = raw
        .response(Duration::from_secs(5))
        .await
        .expect("an answer");
    let took = sent.elapsed();
    assert_eq!(r.status, 504, "h2 {h2}: {r:?}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1500),
        "h2 {h2}: 504 after {took:?}, the limit is 300ms"
    );
    assert_eq!(upstream_errors(&c, &s, "blue", "timeout").await, 1);
    s.shutdown().await;
}

async fn with_max_forwards(
    c: &TestClient,
    method: http::Method,
    url: String,
    max_forwards: Option<&str>,
) -> Answer {
    let mut b = http::Request::builder()
        .method(method)
        .uri(url)
        .header("cookie", "session=secret-cookie")
        .header("authorization", "Bearer secret-token");
    if let Some(v) = max_forwards {
        b = b.header("max-forwards", v);
    }
    let req = b
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    read(c.request(req).await.expect("an answer")).await
}

/// The `Max-Forwards` the upstream saw, from its `/headers` echo.
fn seen(a: &Answer) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(&a.body).expect("the upstream's echo");
    v.get("max-forwards")
        .map(|m| m.as_str().unwrap().to_string())
}

/// RFC 9110 section 7.6.2: an `OPTIONS` or `TRACE` with `Max-Forwards: 0`
/// ends at the proxy (`OPTIONS`: 200 with `Allow`; `TRACE`: 405, never a
/// reflection of the request); with more it is forwarded one less; any
/// other method's `Max-Forwards` is forwarded as it came.
#[tokio::test]
async fn max_forwards_zero_ends_options_and_trace_at_the_proxy() {
    use http::Method;
    let up = Upstream::start("blue-1").await;
    let s = start_proxy(&quiet_yaml(up.addr, "")).await;
    let c = client();
    let url = proxy_url(&s, "/headers");

    let a = with_max_forwards(&c, Method::OPTIONS, url.clone(), Some("0")).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.headers.get("allow").unwrap(),
        "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"
    );
    assert!(a.body.is_empty());
    let a = with_max_forwards(&c, Method::TRACE, url.clone(), Some("0")).await;
    assert_eq!(a.status, 405);
    assert!(a.headers.get("allow").is_some());
    assert!(
        a.text().starts_with("405 method not allowed"),
        "{}",
        a.text()
    );
    for secret in ["secret-cookie", "secret-token", "127.0.0.1"] {
        assert!(!a.text().contains(secret), "the refusal reflects {secret}");
    }
    assert_eq!(
        up.requests(),
        0,
        "a request at Max-Forwards: 0 was forwarded"
    );

    for (method, sent, forwarded) in [
        (Method::OPTIONS, Some("5"), Some("4")),
        (Method::TRACE, Some("1"), Some("0")),
        (Method::OPTIONS, None, None),
        (Method::OPTIONS, Some("x"), Some("x")),
        (Method::GET, Some("0"), Some("0")),
        (Method::POST, Some("3"), Some("3")),
    ] {
        let a = with_max_forwards(&c, method.clone(), url.clone(), sent).await;
        assert_eq!(a.status, 200, "{method} {sent:?}");
        assert_eq!(seen(&a).as_deref(), forwarded, "{method} {sent:?}");
    }
    assert_eq!(up.requests(), 6);
    s.shutdown().await;
}
