//! TLS: listeners speaking HTTP/1.1 and HTTP/2 by ALPN, certificate reload
//! that refuses bad files, the handshake timeout, and verified TLS to
//! upstreams. Certificates are made at run time.

use crate::support::logs::Logs;
use crate::support::tls::{acceptor, Ca, CertFiles, TlsClient};
use crate::support::*;
use http::Request;
use http_body_util::Full;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};
use switchyard::server::Server;
use tokio::io::AsyncReadExt;

const DAY: Duration = Duration::from_secs(86_400);

fn tls_config(blue: SocketAddr, green: SocketAddr, files: &CertFiles, extra: &str) -> String {
    format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\n    {}\nadmin:\n  bind: \"127.0.0.1:0\"\npools:\n  blue:\n    endpoints: [\"{blue}\"]\n  green:\n    endpoints: [\"{green}\"]\nstate_file: null\n{extra}\n",
        files.yaml()
    )
}

/// The message of the first TLS listener's last certificate error, "" if none.
async fn cert_error(c: &TestClient, s: &Server) -> String {
    let a = get(c, admin_url(s, "/api/v1/status")).await;
    let status: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    status["tls"][0]["last_error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn tls_listener_serves_http1_and_http2_from_the_live_pool() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let ca = Ca::new("test CA").unwrap();
    let files = CertFiles::new(&ca.issue(&["localhost"]).unwrap());
    let extra = "traffic:\n  initial: { blue: 0, green: 100 }\n  expose_pool_header: true";
    let s = start_proxy(&tls_config(blue.addr, green.addr, &files, extra)).await;
    for h2 in [false, true] {
        let mut c = TlsClient::connect(s.proxy_addrs[0], &ca.cert_pem, h2)
            .await
            .unwrap();
        let a = c.get("/headers").await;
        assert_eq!(a.status, 200);
        assert_eq!(a.upstream(), "green-1");
        assert_eq!(a.headers["x-switchyard-pool"], "green");
        let seen: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(seen["x-forwarded-proto"], "https");
    }
    assert_eq!(blue.requests(), 0);
    s.shutdown().await;
}

#[tokio::test]
async fn certificate_reload_refuses_bad_files_and_serves_good_ones_to_new_handshakes() {
    let blue = Upstream::start("blue-1").await;
    let ca = Ca::new("test CA").unwrap();
    let first = ca.issue(&["localhost"]).unwrap();
    let files = CertFiles::new(&first);
    let s = start_proxy(&tls_config(blue.addr, blue.addr, &files, "")).await;
    let addr = s.proxy_addrs[0];
    let c = client();
    let mut open = TlsClient::connect(addr, &ca.cert_pem, true).await.unwrap();
    let original = open.peer_cert.clone();
    let handshake_cert = || async {
        TlsClient::connect(addr, &ca.cert_pem, false)
            .await
            .unwrap()
            .peer_cert
    };

    let now = SystemTime::now();
    files.replace(
        &ca.issue_valid(&["localhost"], now - 10 * DAY, now - DAY)
            .unwrap(),
    );
    wait_for(
        Duration::from_secs(10),
        "the expired cert refused",
        || async { cert_error(&c, &s).await.contains("expired") },
    )
    .await;
    assert_eq!(handshake_cert().await, original);

    let other = ca.issue(&["localhost"]).unwrap();
    files.replace_pair(&other.cert_pem, &first.key_pem);
    wait_for(
        Duration::from_secs(10),
        "the mismatched key refused",
        || async { cert_error(&c, &s).await.contains("does not match") },
    )
    .await;
    assert_eq!(handshake_cert().await, original);

    let second = ca.issue(&["localhost"]).unwrap();
    files.replace(&second);
    let second_der = CertificateDer::from_pem_slice(second.cert_pem.as_bytes()).unwrap();
    wait_for(Duration::from_secs(10), "the new cert served", || async {
        handshake_cert().await == second_der
    })
    .await;
    assert_eq!(
        cert_error(&c, &s).await,
        "",
        "a good reload clears the error"
    );
    // The connection opened before every change still works as it was.
    assert_eq!(open.get("/").await.status, 200);
    assert_eq!(open.peer_cert, original);
    s.shutdown().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_dropped() {
    let blue = Upstream::start("blue-1").await;
    let ca = Ca::new("test CA").unwrap();
    let files = CertFiles::new(&ca.issue(&["localhost"]).unwrap());
    let extra = "timeouts:\n  client_header: 300ms";
    let s = start_proxy(&tls_config(blue.addr, blue.addr, &files, extra)).await;
    let mut silent = tokio::net::TcpStream::connect(s.proxy_addrs[0])
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("the proxy closed the silent connection");
    assert!(matches!(read, Ok(0) | Err(_)), "got {read:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed before the handshake timeout"
    );
    s.shutdown().await;
}

/// A pool config line for TLS upstreams trusting `ca`.
fn upstream_pools(blue: SocketAddr, green: SocketAddr, ca: &std::path::Path) -> String {
    format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\nadmin:\n  bind: \"127.0.0.1:0\"\npools:\n  blue:\n    endpoints: [\"{blue}\"]\n    tls: {{ ca: \"{ca}\", server_name: app.internal }}\n  green:\n    endpoints: [\"{green}\"]\n    tls: {{ ca: \"{ca}\" }}\n    protocol: h2\nstate_file: null\nretries:\n  attempts: 0\ntraffic:\n  override_header: x-pool\n",
        ca = ca.display()
    )
}

async fn get_pool(c: &TestClient, s: &Server, pool: &str) -> Answer {
    let req = Request::get(proxy_url(s, "/"))
        .header("x-pool", pool)
        .body(Full::default())
        .unwrap();
    read(c.request(req).await.unwrap()).await
}

#[tokio::test]
async fn upstream_tls_is_verified_against_the_pool_ca_over_http1_and_h2() {
    let ca = Ca::new("upstream CA").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.cert_pem).unwrap();
    // Blue is checked against server_name, green against its endpoint's IP.
    let blue =
        Upstream::start_tls("blue-tls", acceptor(&ca.issue(&["app.internal"]).unwrap())).await;
    let green =
        Upstream::start_tls("green-tls", acceptor(&ca.issue(&["127.0.0.1"]).unwrap())).await;
    // Active health checks reach the endpoints as requests do (TLS, h2).
    let yaml = format!(
        "{}health_check:\n  interval: 100ms\n  timeout: 100ms\n  healthy_threshold: 1\n",
        upstream_pools(blue.addr, green.addr, &ca_file)
    );
    let s = start_proxy(&yaml).await;
    wait_for(
        Duration::from_secs(10),
        "TLS and h2 endpoints checked healthy",
        || async {
            let st = status(&s).await;
            ["blue", "green"]
                .iter()
                .all(|p| st["pools"][p]["endpoints"][0]["state"] == "healthy")
        },
    )
    .await;
    let c = client();
    for (pool, name, version) in [
        ("blue", "blue-tls", "HTTP/1.1"),
        ("green", "green-tls", "HTTP/2.0"),
    ] {
        let a = get_pool(&c, &s, pool).await;
        assert_eq!(a.status, 200, "{pool}: {}", a.text());
        assert_eq!(a.upstream(), name);
        assert_eq!(a.headers["x-upstream-http"], version);
    }
    s.shutdown().await;
}

#[tokio::test]
async fn an_upstream_certificate_from_an_untrusted_ca_gives_502_and_the_log_says_why() {
    let (logs, _capture) = Logs::capture();
    let trusted = Ca::new("trusted CA").unwrap();
    let rogue = Ca::new("rogue CA").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &trusted.cert_pem).unwrap();
    let up = Upstream::start_tls(
        "rogue",
        acceptor(&rogue.issue(&["app.internal", "127.0.0.1"]).unwrap()),
    )
    .await;
    let s = start_proxy(&upstream_pools(up.addr, up.addr, &ca_file)).await;
    let c = client();
    for pool in ["blue", "green"] {
        let a = get_pool(&c, &s, pool).await;
        assert_eq!(a.status, 502, "{pool}");
        assert!(!a.text().contains("127.0.0.1"), "{}", a.text());
    }
    assert_eq!(up.requests(), 0, "a request reached the untrusted upstream");
    let text = logs.text();
    assert!(
        text.contains("TLS handshake with") && text.contains("UnknownIssuer"),
        "the log does not say why:\n{text}"
    );
    s.shutdown().await;
}
