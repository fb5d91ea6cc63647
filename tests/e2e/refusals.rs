//! What the proxy answers itself, on raw connections: hyper's own refusals
//! of heads it cannot parse carry the proxy's text body (SPEC.md section 8)
//! while a forwarded bodiless answer passes untouched; a client that stalls
//! its request body gets 408 and costs the upstream nothing; `Max-Forwards`
//! (RFC 9110 section 7.6.2).

use crate::support::raw::*;
use crate::support::*;
use std::time::Duration;

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
        let mut c = RawConn::connect(addr).await;
        // The refusal may come before the whole head was read.
        let _sent = tokio::io::AsyncWriteExt::write_all(&mut c.stream, bytes.as_bytes()).await;
        let r = c
            .response(Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{what}: no answer"));
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
