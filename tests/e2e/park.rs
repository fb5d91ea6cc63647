//! Parked connections: an HTTP/1 keep-alive connection idle for a second
//! gives up hyper's buffers (`src/proxy/park.rs`) and must behave exactly as
//! before: its next request is served, pipelined and half-sent heads are
//! kept, `timeouts.client_header` still closes it, and shutdown closes it
//! at once. `switchyard_client_connections_parked` shows that it happened.

use crate::support::raw::RawConn;
use crate::support::tls::{Ca, CertFiles, TlsClient};
use crate::support::*;
use std::time::Duration;
use switchyard::server::Server;
use tokio::time::Instant;

const SECOND: Duration = Duration::from_secs(5);

/// The value of a gauge without labels on `/metrics`.
async fn gauge(s: &Server, name: &str) -> i64 {
    let text = metrics_text(s).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

async fn wait_parked(s: &Server, n: i64) {
    wait_until(Duration::from_secs(5), &format!("{n} parked"), || async {
        (gauge(s, "switchyard_client_connections_parked").await == n).then_some(())
    })
    .await
}

async fn proxy_with(extra: &str) -> (Upstream, Server) {
    let up = Upstream::start("blue-1").await;
    let s = start_proxy(&config_yaml(&[up.addr], &[up.addr], extra)).await;
    (up, s)
}

fn get_req(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: app\r\n\r\n")
}

#[tokio::test]
async fn an_idle_connection_is_parked_and_its_next_request_is_served() {
    let (up, s) = proxy_with("").await;
    let mut c = RawConn::connect(s.proxy_addrs[0]).await;
    for round in 0..3 {
        c.send(get_req(&format!("/delay/{round}")).as_bytes()).await;
        let r = c.response(SECOND).await.expect("a response");
        assert_eq!(
            (r.status, r.text()),
            (200, format!("blue-1 after {round}ms\n"))
        );
        wait_parked(&s, 1).await;
        assert_eq!(gauge(&s, "switchyard_client_connections").await, 1);
    }
    c.send(get_req("/").as_bytes()).await;
    assert_eq!(c.response(SECOND).await.expect("a response").status, 200);
    assert_eq!(gauge(&s, "switchyard_client_connections_parked").await, 0);
    assert_eq!(up.requests(), 4);
    drop(c);
    wait_until(SECOND, "the connection counted closed", || async {
        (gauge(&s, "switchyard_client_connections").await == 0).then_some(())
    })
    .await;
    s.shutdown().await;
}

#[tokio::test]
async fn pipelined_requests_and_a_half_sent_head_survive_parking() {
    let (up, s) = proxy_with("").await;
    let mut c = RawConn::connect(s.proxy_addrs[0]).await;
    // Three whole requests and the first half of a fourth, in one write.
    let mut bytes = String::new();
    for i in 1..=3 {
        bytes += &get_req(&format!("/delay/{i}"));
    }
    bytes += "GET /delay/4 HTTP/1.1\r\nHo";
    c.send(bytes.as_bytes()).await;
    for i in 1..=3 {
        let r = c.response(SECOND).await.expect("a response");
        assert_eq!(r.text(), format!("blue-1 after {i}ms\n"));
    }
    // Parked with the half head read: it is kept, not lost or re-read.
    wait_parked(&s, 1).await;
    c.send(b"st: app\r\n\r\n").await;
    let r = c.response(SECOND).await.expect("a response");
    assert_eq!(
        (r.status, r.text()),
        (200, "blue-1 after 4ms\n".to_string())
    );
    // And pipelining goes on after a park.
    wait_parked(&s, 1).await;
    c.send(format!("{}{}", get_req("/delay/5"), get_req("/delay/6")).as_bytes())
        .await;
    for i in 5..=6 {
        let r = c.response(SECOND).await.expect("a response");
        assert_eq!(r.text(), format!("blue-1 after {i}ms\n"));
    }
    assert_eq!(up.requests(), 6);
    s.shutdown().await;
}

#[tokio::test]
async fn a_parked_connection_is_closed_at_client_header_counted_from_its_last_response() {
    let (_up, s) = proxy_with("timeouts:\n  client_header: 2500ms").await;
    let addr = s.proxy_addrs[0];
    // Idle: closed 2.5 s after the response, parked on the way.
    let mut idle = RawConn::connect(addr).await;
    idle.send(get_req("/").as_bytes()).await;
    assert_eq!(idle.response(SECOND).await.unwrap().status, 200);
    let answered = Instant::now();
    wait_parked(&s, 1).await;
    assert!(
        idle.closes_within(SECOND).await,
        "a parked connection stayed"
    );
    let took = answered.elapsed();
    assert!(
        took >= Duration::from_millis(2300) && took < Duration::from_millis(4000),
        "closed {took:?} after the response, client_header is 2.5 s"
    );
    // A head trickled into a parked connection does not get a new timeout
    // from being woken: it is cut at the same 2.5 s.
    let mut slow = RawConn::connect(addr).await;
    slow.send(get_req("/").as_bytes()).await;
    assert_eq!(slow.response(SECOND).await.unwrap().status, 200);
    let answered = Instant::now();
    wait_parked(&s, 1).await;
    slow.send(b"GET / HTTP/1.1\r\n").await;
    let mut cut = false;
    for n in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let line = format!("x-slow-{n}: y\r\n");
        if tokio::io::AsyncWriteExt::write_all(&mut slow.stream, line.as_bytes())
            .await
            .is_err()
        {
            cut = true;
            break;
        }
    }
    assert!(
        cut || slow.closes_within(SECOND).await,
        "a trickled head was never cut"
    );
    let took = answered.elapsed();
    assert!(
        took < Duration::from_millis(3300),
        "a head trickled after a park was cut {took:?} after the response"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_parked_connections_at_once() {
    let (_up, s) = proxy_with("drain:\n  timeout: 30s").await;
    let addr = s.proxy_addrs[0];
    let mut conns = Vec::new();
    for _ in 0..3 {
        let mut c = RawConn::connect(addr).await;
        c.send(get_req("/").as_bytes()).await;
        assert_eq!(c.response(SECOND).await.unwrap().status, 200);
        conns.push(c);
    }
    wait_parked(&s, 3).await;
    let started = Instant::now();
    tokio::time::timeout(SECOND, s.shutdown())
        .await
        .expect("shutdown waited for parked connections");
    for c in &mut conns {
        assert!(
            c.closes_within(SECOND).await,
            "a parked connection stayed open"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_tls_connection_is_parked_and_served_again() {
    let up = Upstream::start("blue-1").await;
    let ca = Ca::new("test CA").unwrap();
    let files = CertFiles::new(&ca.issue(&["localhost"]).unwrap());
    let yaml = format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\n    {}\nadmin:\n  bind: \"127.0.0.1:0\"\npools:\n  blue:\n    endpoints: [\"{a}\"]\n  green:\n    endpoints: [\"{a}\"]\nstate_file: null\n",
        files.yaml(),
        a = up.addr
    );
    let s = start_proxy(&yaml).await;
    let mut c = TlsClient::connect(s.proxy_addrs[0], &ca.cert_pem, false)
        .await
        .unwrap();
    for round in 0..2 {
        let a = c.get(&format!("/delay/{round}")).await;
        assert_eq!(
            (a.status, a.text()),
            (200, format!("blue-1 after {round}ms\n"))
        );
        wait_parked(&s, 1).await;
    }
    assert_eq!(c.get("/").await.status, 200);
    assert_eq!(up.requests(), 3);
    s.shutdown().await;
}

#[tokio::test]
async fn many_parked_connections_are_all_woken_and_served() {
    let (up, s) = proxy_with("").await;
    let n = 40;
    let mut conns = Vec::new();
    for i in 0..n {
        let mut c = RawConn::connect(s.proxy_addrs[0]).await;
        c.send(get_req(&format!("/delay/{i}")).as_bytes()).await;
        assert_eq!(c.response(SECOND).await.expect("a response").status, 200);
        conns.push(c);
    }
    wait_parked(&s, n).await;
    // All at once: every one woken, each answered on its own connection.
    for (i, c) in conns.iter_mut().enumerate() {
        c.send(get_req(&format!("/delay/{}", 100 + i)).as_bytes())
            .await;
    }
    for (i, c) in conns.iter_mut().enumerate() {
        let r = c
            .response(SECOND)
            .await
            .expect("a woken connection answered");
        assert_eq!(
            (r.status, r.text()),
            (200, format!("blue-1 after {}ms\n", 100 + i))
        );
    }
    assert_eq!(up.requests(), 2 * n as u64);
    // And they park again.
    wait_parked(&s, n).await;
    assert_eq!(gauge(&s, "switchyard_client_connections").await, n);
    s.shutdown().await;
}

#[tokio::test]
async fn a_woken_connection_still_forwards_its_client_address() {
    let (_up, s) = proxy_with("").await;
    let mut c = RawConn::connect(s.proxy_addrs[0]).await;
    for round in 0..2 {
        c.send(get_req("/headers").as_bytes()).await;
        let r = c.response(SECOND).await.expect("a response");
        let headers: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            headers["x-forwarded-for"], "127.0.0.1",
            "round {round}: {headers}"
        );
        wait_parked(&s, 1).await;
    }
    s.shutdown().await;
}

#[tokio::test]
async fn a_client_closing_a_parked_connection_frees_its_place() {
    let (_up, s) = proxy_with("").await;
    let mut c = RawConn::connect(s.proxy_addrs[0]).await;
    c.send(get_req("/").as_bytes()).await;
    assert_eq!(c.response(SECOND).await.unwrap().status, 200);
    wait_parked(&s, 1).await;
    drop(c);
    wait_until(SECOND, "the parked connection counted closed", || async {
        (gauge(&s, "switchyard_client_connections").await == 0).then_some(())
    })
    .await;
    assert_eq!(gauge(&s, "switchyard_client_connections_parked").await, 0);
    s.shutdown().await;
}

/// What a parked connection gave up must leave the process soon: the
/// binary's jemalloc gives freed pages back after 1 s, not its default
/// 10 s (`.cargo/config.toml`). jemalloc prints its options at exit when
/// asked to (`stats_print`).
#[test]
fn the_binarys_allocator_gives_freed_pages_back_within_a_second() {
    let out = std::process::Command::new(crate::support::process::BIN)
        .arg("--version")
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stats = String::from_utf8_lossy(&out.stderr);
    for option in ["opt.dirty_decay_ms: 1000 ", "opt.muzzy_decay_ms: 0 "] {
        assert!(
            stats.contains(option),
            "jemalloc does not report {option:?}:\n{}",
            &stats[..stats.len().min(3000)]
        );
    }
}
