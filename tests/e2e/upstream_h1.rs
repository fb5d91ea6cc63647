//! The proxy's own HTTP/1.1 client against upstreams that answer with
//! scripted bytes: every response framing of RFC 9112 reaches the client
//! intact, broken framing is a 502, and keep-alive connections are reused
//! only when that is sound.

use crate::support::raw::*;
use crate::support::*;
use http::Method;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the scripted upstream saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    closed: AtomicUsize,
}

/// Answers each request head by its target (see `answer`); a `/close…`
/// answer is followed by closing the connection, `/bye` by closing it
/// without saying so in the response.
async fn scripted_upstream() -> (SocketAddr, Arc<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let s2 = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            s2.connections.fetch_add(1, Ordering::SeqCst);
            let seen = s2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                'conn: loop {
                    while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_string();
                        buf.drain(..i + 4);
                        let target = head.split(' ').nth(1).unwrap_or("/").to_string();
                        if s.write_all(&answer(&target)).await.is_err() {
                            break 'conn;
                        }
                        if target.starts_with("/close") || target == "/bye" {
                            break 'conn;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                drop(s);
                seen.closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, seen)
}

fn answer(target: &str) -> Vec<u8> {
    let a: &[u8] = match target {
        "/chunked" => {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
        }
        "/trailers" => {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum\r\n\r\n3\r\nabc\r\n0\r\nx-sum: 6\r\n\r\n"
        }
        "/interim" => {
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        }
        "/nocontent" => b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
        "/head" => b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
        "/close" => b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
        "/bye" => b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye",
        "/conflict" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        "/badstatus" => b"HTTP/1.1 2x0 Nope\r\nContent-Length: 0\r\n\r\n",
        "/badchunk" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        "/extra" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokSURPRISE",
        "/close-early" => {
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big\n"
        }
        _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Kept: yes\r\n\r\nka",
    };
    a.to_vec()
}

async fn fixture() -> (switchyard::server::Server, Arc<Seen>) {
    let (up, seen) = scripted_upstream().await;
    let s = start_proxy(&config_yaml(
        &[up],
        &[up],
        "health_check:\n  interval: 1m\ntimeouts:\n  request: 2s\n",
    ))
    .await;
    (s, seen)
}

#[tokio::test]
async fn every_response_framing_reaches_the_client_intact() {
    let (s, seen) = fixture().await;
    let c = client();
    let body = |a: &Answer| String::from_utf8_lossy(&a.body).to_string();

    let a = get(&c, proxy_url(&s, "/chunked")).await;
    assert_eq!((a.status, body(&a).as_str()), (200, "hello world"));
    let a = get(&c, proxy_url(&s, "/trailers")).await;
    assert_eq!((a.status, body(&a).as_str()), (200, "abc"));
    let a = get(&c, proxy_url(&s, "/interim")).await;
    assert_eq!((a.status, body(&a).as_str()), (200, "ok"), "1xx skipped");
    let a = get(&c, proxy_url(&s, "/nocontent")).await;
    assert_eq!((a.status, a.body.len()), (204, 0));
    assert_eq!(a.headers["x-a"], "1");
    let a = send(&c, Method::HEAD, proxy_url(&s, "/head"), "").await;
    assert_eq!((a.status, a.body.len()), (200, 0));
    assert_eq!(a.headers["content-length"], "10", "HEAD keeps the length");
    // All of the above kept the one upstream connection.
    for _ in 0..5 {
        let a = get(&c, proxy_url(&s, "/ka")).await;
        assert_eq!((a.status, body(&a).as_str()), (200, "ka"));
        assert_eq!(a.headers["x-kept"], "yes");
        assert_eq!(a.headers["via"], "1.1 switchyard", "RFC 9110 7.6.3");
    }
    assert_eq!(
        seen.connections.load(Ordering::SeqCst),
        1,
        "keep-alive reuse across framings"
    );

    // Read until the upstream closes: whole, and that connection is not reused.
    let a = get(&c, proxy_url(&s, "/close")).await;
    assert_eq!((a.status, body(&a).as_str()), (200, "until the end"));
    let a = get(&c, proxy_url(&s, "/ka")).await;
    assert_eq!(a.status, 200);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
    s.shutdown().await;
}

#[tokio::test]
async fn broken_framing_is_a_502_and_its_connection_is_dropped() {
    let (s, seen) = fixture().await;
    let c = client();
    for path in ["/conflict", "/badstatus"] {
        let a = get(&c, proxy_url(&s, path)).await;
        assert_eq!(a.status, 502, "{path}");
        assert!(!String::from_utf8_lossy(&a.body).contains("127.0.0.1"));
    }
    // Bad chunking after the head: the client's body breaks.
    let resp = c
        .get(proxy_url(&s, "/badchunk").parse().unwrap())
        .await
        .expect("the head arrives");
    assert_eq!(resp.status(), 200);
    assert!(http_body_util::BodyExt::collect(resp.into_body())
        .await
        .is_err());
    // Bytes beyond the declared length: the answer is cut at the length and
    // that connection is never reused (the extra bytes would be read as the
    // next response).
    let before = seen.connections.load(Ordering::SeqCst);
    let a = get(&c, proxy_url(&s, "/extra")).await;
    assert_eq!(String::from_utf8_lossy(&a.body), "ok");
    let a = get(&c, proxy_url(&s, "/ka")).await;
    assert_eq!(String::from_utf8_lossy(&a.body), "ka");
    assert!(seen.connections.load(Ordering::SeqCst) > before);
    s.shutdown().await;
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_not_used() {
    let (s, seen) = fixture().await;
    let c = client();
    for n in 1..=3usize {
        // The upstream answers and then closes, without a `Connection: close`.
        let a = get(&c, proxy_url(&s, "/bye")).await;
        assert_eq!((a.status, a.body.as_ref()), (200, &b"bye"[..]));
        wait_for(Duration::from_secs(5), "the upstream to close", || {
            let closed = seen.closed.load(Ordering::SeqCst);
            async move { closed >= n }
        })
        .await;
    }
    // Each request found its pooled connection closed and opened another,
    // without an error reaching the client.
    assert_eq!(seen.connections.load(Ordering::SeqCst), 3);
    s.shutdown().await;
}

/// A request body reaches the upstream framed as the client framed it
/// (length, or chunked when the length is unknown), after the head.
#[tokio::test]
async fn request_bodies_are_framed_for_the_upstream() {
    let (up, _seen) = scripted_upstream().await;
    let fault =
        crate::support::fault::FaultProxy::start(up, crate::support::fault::Fault::Pass).await;
    let s = start_proxy(&config_yaml(
        &[fault.addr],
        &[fault.addr],
        "health_check:\n  interval: 1m\n",
    ))
    .await;
    let a = s.proxy_addrs[0];
    let r = exchange(
        a,
        b"POST /ka HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
        1,
    )
    .await;
    assert_eq!(r[0].status, 200);
    let r = exchange(
        a,
        b"POST /ka HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        1,
    )
    .await;
    assert_eq!(r[0].status, 200);
    let r = exchange(a, b"POST /ka HTTP/1.1\r\nHost: h\r\n\r\n", 1).await;
    assert_eq!(r[0].status, 200);
    let sent: Vec<u8> = fault.sent().concat();
    let text = String::from_utf8_lossy(&sent).to_lowercase();
    assert!(
        text.contains("content-length: 5\r\n") && text.contains("\r\n\r\nhello"),
        "{text}"
    );
    assert!(
        text.contains("transfer-encoding: chunked\r\n") && text.contains("0\r\n\r\n"),
        "{text}"
    );
    assert!(
        text.contains("content-length: 0\r\n"),
        "an empty POST says so"
    );
    s.shutdown().await;
}

/// An upstream that refuses a large upload at its head (an early 413) and
/// closes without reading the body: the client gets that answer, not a 502.
#[tokio::test]
async fn an_early_answer_to_an_unread_upload_reaches_the_client() {
    let (s, _seen) = fixture().await;
    let c = client();
    let body = vec![b'x'; 8 * 1024 * 1024];
    let req = http::Request::post(proxy_url(&s, "/close-early"))
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let a = read(c.request(req).await.expect("an answer")).await;
    assert_eq!(a.status, 413, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(String::from_utf8_lossy(&a.body), "too big\n");
    s.shutdown().await;
}
