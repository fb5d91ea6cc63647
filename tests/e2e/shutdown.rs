//! Graceful shutdown (SPEC.md section 6): readiness off at once, no new
//! connections, in-flight requests complete, then exit 0.

use crate::support::process::ProxyProcess;
use crate::support::*;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

#[tokio::test]
async fn sigterm_lets_the_request_in_flight_complete_refuses_new_connections_and_exits_0() {
    let up = Upstream::start("blue-1").await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "listeners:\n  - bind: \"{{PROXY}}\"\nadmin:\n  bind: \"{{ADMIN}}\"\npools:\n  blue:\n    endpoints: [\"{a}\"]\n  green:\n    endpoints: [\"{a}\"]\ndrain:\n  timeout: 10s\nstate_file: null\n",
        a = up.addr
    );
    let mut p = ProxyProcess::start(dir.path(), &yaml).await;
    let c = client();
    let admin = |path: &str| format!("http://{}{}", p.admin, path);
    assert_eq!(get(&c, admin("/readyz")).await.status, 200);

    // A 4 s request on a keep-alive connection: time enough for the
    // checks below on a loaded machine, while it is still in flight.
    let started = Instant::now();
    let mut conn = TcpStream::connect(p.proxy).await.unwrap();
    conn.write_all(b"GET /delay/4000 HTTP/1.1\r\nhost: app\r\n\r\n")
        .await
        .unwrap();
    wait_for(Duration::from_secs(5), "the request in flight", || {
        let c = c.clone();
        let url = admin("/api/v1/status");
        async move {
            let st: serde_json::Value = serde_json::from_slice(&get(&c, url).await.body).unwrap();
            st["pools"]["blue"]["inflight"] == 1
        }
    })
    .await;

    p.signal("TERM");
    wait_for(Duration::from_millis(1500), "/readyz to answer 503", || {
        let c = c.clone();
        let url = admin("/readyz");
        async move {
            match c.get(url.parse().unwrap()).await {
                Ok(r) => r.status() == 503,
                Err(_) => false,
            }
        }
    })
    .await;
    let proxy = p.proxy;
    wait_for(
        Duration::from_millis(1500),
        "new connections to be refused",
        || async move { TcpStream::connect(proxy).await.is_err() },
    )
    .await;

    // The request completes, the server closes the connection after it.
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut answer))
        .await
        .expect("the connection closes after the response")
        .unwrap();
    let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    assert!(text.ends_with("blue-1 after 4000ms\n"), "{text}");
    assert!(started.elapsed() >= Duration::from_secs(4));

    let status = p.wait_exit(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(0), "exit status {status}");
    eprintln!("exited {:?} after the request started", started.elapsed());
}

#[tokio::test]
async fn shutdown_sends_http2_goaway_and_lets_the_stream_in_flight_finish() {
    let up = Upstream::start("blue-1").await;
    let s = start_proxy(&config_yaml(
        &[up.addr],
        &[up.addr],
        "drain:\n  timeout: 5s",
    ))
    .await;
    let c = client();
    let addr = s.proxy_addrs[0];
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get(format!("http://{addr}/delay/800"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let slow = tokio::spawn(h2.send_request(req));
    wait_for(Duration::from_secs(5), "the stream in flight", || {
        let c = c.clone();
        let s = &s;
        async move { crate::support::admin::admin_status(&c, s).await["pools"]["blue"]["inflight"] == 1 }
    })
    .await;

    let stopping = tokio::spawn(s.shutdown());
    let resp = slow.await.unwrap().expect("the stream in flight completes");
    assert_eq!(resp.status(), 200);
    assert_eq!(read(resp).await.text(), "blue-1 after 800ms\n");
    // GOAWAY: the connection ends cleanly and takes no new stream.
    let ended = tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("the HTTP/2 connection is closed by the proxy");
    assert!(ended.unwrap().is_ok(), "closed with an error, not a GOAWAY");
    let req = http::Request::get(format!("http://{addr}/"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert!(h2.send_request(req).await.is_err());
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("shutdown finishes")
        .unwrap();
}
