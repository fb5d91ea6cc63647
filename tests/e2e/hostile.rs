//! Hostile clients: slowloris, oversized heads and targets, request
//! smuggling attempts, more connections than the cap. Each is refused with
//! the right status, and whatever is forwarded is framed one way only: the
//! bytes that reach the upstream (through a recording fault proxy) are read
//! back by a strict reader, which must see exactly the requests the proxy saw.

use crate::support::fault::{Fault, FaultProxy};
use crate::support::raw::*;
use crate::support::*;
use std::time::Duration;
use switchyard::server::Server;
use tokio::time::Instant;

struct Fixture {
    _up: Upstream,
    fault: FaultProxy,
    s: Server,
}

async fn fixture(extra: &str) -> Fixture {
    let up = Upstream::start("blue-1").await;
    let fault = FaultProxy::start(up.addr, Fault::Pass).await;
    let yaml = config_yaml(
        &[fault.addr],
        &[fault.addr],
        &format!("health_check:\n  interval: 1m\n{extra}"),
    );
    let s = start_proxy(&yaml).await;
    Fixture { _up: up, fault, s }
}

impl Fixture {
    /// The request lines the upstream read, health checks left out.
    fn forwarded(&self) -> Vec<FramedRequest> {
        self.fault
            .sent()
            .iter()
            .flat_map(|bytes| frame_requests(bytes))
            .filter(|r| !r.line.starts_with("GET /health "))
            .collect()
    }

    fn lines(&self) -> Vec<String> {
        self.forwarded().into_iter().map(|r| r.line).collect()
    }
}

#[tokio::test]
async fn slowloris_heads_are_cut_at_client_header_while_others_are_served() {
    let f = fixture("timeouts:\n  client_header: 1s\n").await;
    let addr = f.s.proxy_addrs[0];
    let started = Instant::now();
    let mut trickles = Vec::new();
    for i in 0..20 {
        trickles.push(tokio::spawn(async move {
            let mut c = RawConn::connect(addr).await;
            c.send(b"GET / HTTP/1.1\r\nHost: h\r\n").await;
            // The attack: one more header line every 100 ms, never the end.
            for n in 0..50 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let line = format!("x-slow-{i}-{n}: y\r\n");
                if tokio::io::AsyncWriteExt::write_all(&mut c.stream, line.as_bytes())
                    .await
                    .is_err()
                {
                    break;
                }
            }
            c.closes_within(Duration::from_secs(5)).await
        }));
    }
    // Meanwhile an honest client is served at once.
    let c = client();
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(get(&c, proxy_url(&f.s, "/")).await.status, 200);
        assert!(t.elapsed() < Duration::from_secs(1), "starved by slowloris");
    }
    for t in trickles {
        assert!(t.await.unwrap(), "a trickled head was never cut");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "heads cut after {took:?}, client_header is 1s"
    );
    assert_eq!(f.lines(), vec!["GET / HTTP/1.1"; 5]);
    f.s.shutdown().await;
}

#[tokio::test]
async fn oversized_heads_get_431_long_targets_414_and_host_is_required() {
    let f = fixture("limits:\n  max_header_bytes: 16384\n  max_uri_bytes: 2048\n").await;
    let addr = f.s.proxy_addrs[0];
    let at_limit = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(2047));
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(2048));
    let big_field = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nx-big: {}\r\n\r\n",
        "b".repeat(20_000)
    );
    let many_fields = format!(
        "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
        (0..150)
            .map(|i| format!("x-{i}: v\r\n"))
            .collect::<String>()
    );
    // Past hyper's own read buffer: refused while still being read.
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: h\r\n{}\r\n",
        (0..70)
            .map(|i| format!("x-{i}: {}\r\n", "c".repeat(8000)))
            .collect::<String>()
    );
    let cases: [(&str, &str, u16); 8] = [
        ("a target at the limit", &at_limit, 200),
        ("a target one byte over", &long_uri, 414),
        ("a 20 KB field", &big_field, 431),
        ("150 fields", &many_fields, 431),
        ("a 560 KB head", &huge, 431),
        ("no Host", "GET / HTTP/1.1\r\n\r\n", 400),
        (
            "two Hosts",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            400,
        ),
        (
            "a Host with userinfo",
            "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n",
            400,
        ),
    ];
    for (what, bytes, want) in cases {
        let (_, r) = answer_to(addr, bytes.as_bytes(), what).await;
        assert_eq!(r.status, want, "{what}: {}", r.text());
    }
    assert_eq!(f.lines(), [format!("GET /{} HTTP/1.1", "a".repeat(2047))]);
    f.s.shutdown().await;
}

/// hyper's read buffer is capped near the head limit (`h1_buf_size`): at
/// the largest limit allowed, a head exactly at it is still read whole and
/// forwarded, and one byte more gets the proxy's own 431.
#[tokio::test]
async fn a_head_at_the_largest_limit_is_read_whole() {
    const MAX: usize = 256 * 1024;
    let f = fixture(&format!("limits:\n  max_header_bytes: {MAX}\n")).await;
    let addr = f.s.proxy_addrs[0];
    // As the limit counts: request line (method, target and 12), then
    // name, value and 4 per field.
    let head_of = |size: usize| {
        let mut head = String::from("GET /big HTTP/1.1\r\nHost: h\r\n");
        let mut counted = 3 + 4 + 12 + (4 + 1 + 4);
        let mut i = 0;
        while counted < size {
            let name = format!("x-{i:02}");
            let value = (size - counted - name.len() - 4).min(8000);
            head.push_str(&format!("{name}: {}\r\n", "v".repeat(value)));
            counted += name.len() + value + 4;
            i += 1;
        }
        assert_eq!(counted, size);
        head + "\r\n"
    };
    let (_, r) = answer_to(addr, head_of(MAX).as_bytes(), "a head at the limit").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (_, r) = answer_to(addr, head_of(MAX + 1).as_bytes(), "one byte over").await;
    assert_eq!(r.status, 431, "{}", r.text());
    // hyper's own 431 (a head past its buffer) closes the connection.
    assert_ne!(
        r.header("connection"),
        Some("close"),
        "hyper's 431, not the proxy's"
    );
    assert_eq!(f.lines(), ["GET /big HTTP/1.1"]);
    f.s.shutdown().await;
}

/// One smuggling attempt: what is sent on one connection, the statuses that
/// must come back (the connection may close after them), and the request
/// lines the upstream may read, in order.
struct Attempt {
    what: &'static str,
    send: &'static [u8],
    statuses: &'static [u16],
    forwarded: &'static [&'static str],
}

const ATTEMPTS: &[Attempt] = &[
    Attempt {
        what: "Content-Length then Transfer-Encoding (CL.TE)",
        send: b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
        statuses: &[200],
        forwarded: &["POST /a HTTP/1.1"],
    },
    Attempt {
        what: "Transfer-Encoding then Content-Length (TE.CL)",
        send: b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
        statuses: &[200],
        forwarded: &["POST /a HTTP/1.1"],
    },
    Attempt {
        what: "Transfer-Encoding: xchunked",
        send: b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        statuses: &[400],
        forwarded: &[],
    },
    Attempt {
        what: "Transfer-Encoding: chunked, identity",
        send: b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        statuses: &[400],
        forwarded: &[],
    },
    Attempt {
        what: "two Transfer-Encoding lines, chunked first",
        send: b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
        statuses: &[400],
        forwarded: &[],
    },
    Attempt {
        what: "a space before the colon",
        send: b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        statuses: &[400],
        forwarded: &[],
    },
    Attempt {
        what: "a vertical tab before chunked",
        send: b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
        statuses: &[400],
        forwarded: &[],
    },
    Attempt {
        what: "Transfer-Encoding folded onto the previous line",
        send: b"POST /a HTTP/1.1\r\nHost: h\r\nX: y\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        statuses: &[400],
        forwarded: &[],
    },
    Attempt {
        what: "Transfer-Encoding in HTTP/1.0",
        send: b"POST /a HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        statuses: &[400],
        forwarded: &[],
    },
    Attempt {
        what: "Content-Length: 5, 6",
        send: b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\nhello!",
        statuses: &[400],
        forwarded: &[],
    },
    Attempt {
        what: "Content-Length: +5",
        send: b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello",
        statuses: &[400],
        forwarded: &[],
    },
    Attempt {
        what: "two different Content-Lengths",
        send: b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        statuses: &[400],
        forwarded: &[],
    },
    Attempt {
        what: "a bare CR inside a field value",
        send: b"GET /a HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
        statuses: &[400],
        forwarded: &[],
    },
    Attempt {
        what: "a bare LF ending a chunk size",
        send: b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        statuses: &[400],
        forwarded: &[],
    },
    Attempt {
        what: "a bare LF inside a chunk extension",
        send: b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n",
        statuses: &[400],
        forwarded: &[],
    },
    // RFC 9112 section 2.2 lets a recipient take a bare LF as a line end in
    // the head; the head is forwarded with CRLF only, so it reads one way.
    Attempt {
        what: "bare LF line ends in the head",
        send: b"GET /lf HTTP/1.1\nHost: h\n\n",
        statuses: &[200],
        forwarded: &["GET /lf HTTP/1.1"],
    },
    Attempt {
        what: "a GET whose Content-Length body looks like a request, pipelined",
        send: b"GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\nX: 1\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n",
        statuses: &[200, 200],
        forwarded: &["GET /a HTTP/1.1", "GET /b HTTP/1.1"],
    },
    Attempt {
        what: "a GET whose chunked body looks like a request, pipelined",
        send: b"GET /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n23\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n\r\n0\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n",
        statuses: &[200, 200],
        forwarded: &["GET /a HTTP/1.1", "GET /b HTTP/1.1"],
    },
    Attempt {
        what: "an absolute-form target with another Host",
        send: b"GET http://app.example/x HTTP/1.1\r\nHost: evil.example\r\n\r\n",
        statuses: &[200],
        forwarded: &["GET /x HTTP/1.1"],
    },
];

#[tokio::test]
async fn smuggling_attempts_are_refused_or_framed_one_way() {
    for a in ATTEMPTS {
        let f = fixture("").await;
        let got = exchange(f.s.proxy_addrs[0], a.send, a.statuses.len()).await;
        let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
        assert_eq!(statuses, a.statuses, "{}", a.what);
        let forwarded = f.forwarded();
        let lines: Vec<&str> = forwarded.iter().map(|r| r.line.as_str()).collect();
        assert_eq!(
            lines, a.forwarded,
            "{}: the upstream read other requests",
            a.what
        );
        for r in &forwarded {
            assert_eq!(r.header_count("host"), 1, "{}: {r:?}", a.what);
            assert!(!r.body.windows(8).any(|w| w == b"smuggled") || r.line.starts_with("GET /a"));
        }
        if a.what.starts_with("an absolute-form") {
            assert!(forwarded[0]
                .headers
                .contains(&("host".into(), "app.example".into())));
        }
        if a.what.contains("body looks like a request") {
            assert!(
                forwarded[0].body.starts_with(b"GET /smuggled"),
                "{}: the body did not reach the upstream as a body",
                a.what
            );
        }
        f.s.shutdown().await;
    }
}

#[tokio::test]
async fn beyond_max_connections_a_connection_is_told_503_and_closed() {
    let f = fixture("limits:\n  max_connections: 3\n").await;
    let addr = f.s.proxy_addrs[0];
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = RawConn::connect(addr).await;
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").await;
        let r = c.response(Duration::from_secs(5)).await.expect("served");
        assert_eq!(r.status, 200);
        held.push(c);
    }
    let mut extra = RawConn::connect(addr).await;
    extra.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").await;
    let r = extra
        .response(Duration::from_secs(5))
        .await
        .expect("a refusal");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("connection"), Some("close"));
    assert!(r.text().contains("too many connections"), "{}", r.text());
    assert!(extra.closes_within(Duration::from_secs(3)).await);
    // A place frees when a connection closes.
    drop(held.pop());
    wait_for(
        Duration::from_secs(5),
        "a new connection to be served",
        || async {
            let mut c = RawConn::connect(addr).await;
            c.send(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
                .await;
            c.response(Duration::from_secs(5))
                .await
                .is_some_and(|r| r.status == 200)
        },
    )
    .await;
    assert_eq!(f.lines().len(), 4, "the refused request was forwarded");
    f.s.shutdown().await;
}

/// A client that breaks its own request body is answered 400 and counts
/// against nobody: a hostile client cannot eject healthy endpoints.
#[tokio::test]
async fn broken_client_bodies_do_not_eject_the_upstream() {
    let f = fixture("outlier_detection:\n  consecutive_failures: 2\n").await;
    for _ in 0..5 {
        let r = exchange(
            f.s.proxy_addrs[0],
            b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
            1,
        )
        .await;
        assert_eq!(r[0].status, 400);
    }
    let c = client();
    let state = crate::support::admin::endpoint_state(&c, &f.s, "blue", f.fault.addr).await;
    assert_ne!(state, "ejected");
    assert_eq!(get(&c, proxy_url(&f.s, "/")).await.status, 200);
    f.s.shutdown().await;
}

/// An upstream answer framed both ways is read as chunked (RFC 9112 section
/// 6.3), and its Content-Length does not reach the client, which would
/// otherwise read a short body and then garbage as its next answer.
#[tokio::test]
async fn an_answer_with_both_framings_reaches_the_client_one_way() {
    let up = raw_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let s = start_proxy(&config_yaml(
        &[up],
        &[up],
        "health_check:\n  interval: 1m\n",
    ))
    .await;
    let mut c = RawConn::connect(s.proxy_addrs[0]).await;
    for _ in 0..3 {
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").await;
        let r = c.response(Duration::from_secs(5)).await.expect("an answer");
        assert_eq!((r.status, r.text().as_str()), (200, "hello"));
        assert!(
            r.header("content-length").is_none() || r.header("transfer-encoding").is_none(),
            "{r:?}"
        );
    }
    s.shutdown().await;
}

/// Slowloris against the admin API: a client that never finishes its head
/// is closed after `timeouts.client_header`, like on the proxy listeners,
/// and the API keeps answering others meanwhile.
#[tokio::test]
async fn the_admin_api_closes_a_connection_whose_head_never_ends() {
    let up = Upstream::start("blue-1").await;
    let s = start_proxy(&config_yaml(
        &[up.addr],
        &[up.addr],
        "timeouts:\n  client_header: 300ms",
    ))
    .await;
    let mut c = RawConn::connect(s.admin_addr).await;
    c.send(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n").await;
    let started = Instant::now();
    assert_eq!(status(&s).await["phase"], "stable");
    assert!(
        c.closes_within(Duration::from_secs(5)).await,
        "the admin API kept a half-sent head open"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed after {:?}, before the timeout",
        started.elapsed()
    );
    s.shutdown().await;
}
