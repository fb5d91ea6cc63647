//! The pool of idle keep-alive connections to an endpoint: idle connections
//! serve the next requests without new ones being opened, and connections
//! idle past `timeouts.upstream_idle`, or closed by the upstream, are closed
//! without waiting for a request.
//! A fault proxy in `Pass` mode sits in front of a real test upstream to
//! see each connection the proxy opens and closes.

use crate::support::admin::*;
use crate::support::fault::{Fault, FaultProxy};
use crate::support::*;
use std::time::Duration;

/// Wait until `n` connections are open through `fp` (at most `deadline`).
async fn open_becomes(fp: &FaultProxy, n: usize, deadline: Duration, what: &str) {
    wait_for(deadline, what, || {
        let open = fp.open();
        async move { open == n }
    })
    .await;
}

/// Wait for every connection through `fp` to close, and check that it took
/// about `upstream_idle` (1 s in these tests: at least 0.7 s, at most 4 s).
async fn closes_after_upstream_idle(fp: &FaultProxy, what: &str) {
    let started = tokio::time::Instant::now();
    open_becomes(fp, 0, Duration::from_secs(4), what).await;
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "closed after {:?}, before upstream_idle",
        started.elapsed()
    );
}

/// Proxied requests the upstream saw on each connection that carried any,
/// in connection order (the active health checks' connections, which only
/// carry `GET /health`, are left out).
fn requests_per_connection(fp: &FaultProxy) -> Vec<usize> {
    fp.sent()
        .iter()
        .map(|bytes| {
            let text = String::from_utf8_lossy(bytes);
            text.matches("GET /").count() - text.matches("GET /health ").count()
        })
        .filter(|&n| n > 0)
        .collect()
}

/// `n` GETs of `url` at the same time (so on `n` connections), each 200.
async fn all_at_once(c: &TestClient, url: String, n: usize) {
    let requests: Vec<_> = (0..n)
        .map(|_| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move { get(&c, url).await })
        })
        .collect();
    for r in requests {
        assert_eq!(r.await.unwrap().status, 200);
    }
}

#[tokio::test]
async fn sequential_requests_reuse_the_idle_connections_and_open_none() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let fp = FaultProxy::start(blue.addr, Fault::Pass).await;
    let s = start_proxy(&config_yaml(&[fp.addr], &[green.addr], "")).await;
    let c = client();
    // Three requests at once open three connections...
    all_at_once(&c, proxy_url(&s, "/delay/200"), 3).await;
    assert_eq!(requests_per_connection(&fp).len(), 3);
    assert_eq!(
        endpoint(&admin_status(&c, &s).await, "blue", fp.addr)["idle"],
        3
    );
    // ...then one at a time, each goes on one of those: the idle one that
    // waited longest, so the three in turn.
    for _ in 0..12 {
        assert_eq!(get(&c, proxy_url(&s, "/")).await.status, 200);
    }
    assert_eq!(
        requests_per_connection(&fp),
        [5, 5, 5],
        "requests per upstream connection"
    );
}

#[tokio::test]
async fn idle_connections_past_upstream_idle_are_closed_without_a_request() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let fp = FaultProxy::start(blue.addr, Fault::Pass).await;
    let s = start_proxy(&config_yaml(
        &[fp.addr],
        &[green.addr],
        "timeouts:\n  upstream_idle: 1s",
    ))
    .await;
    let c = client();
    assert_eq!(get(&c, proxy_url(&s, "/")).await.status, 200);
    assert_eq!(
        endpoint(&admin_status(&c, &s).await, "blue", fp.addr)["idle"],
        1
    );
    // No request comes: the sweep closes it once a second has passed (and
    // at most a sweep's period later), and the upstream sees it closed.
    closes_after_upstream_idle(&fp, "the idle connection to close").await;
    assert_eq!(
        endpoint(&admin_status(&c, &s).await, "blue", fp.addr)["idle"],
        0
    );
    // The next request opens a new one.
    assert_eq!(get(&c, proxy_url(&s, "/")).await.status, 200);
    assert_eq!(requests_per_connection(&fp), [1, 1]);
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_reaped_while_idle() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    // The fault proxy closes each connection after its first answer: the
    // pooled connection dies while idle.
    let fp = FaultProxy::start(blue.addr, Fault::CloseIdle).await;
    let s = start_proxy(&config_yaml(&[fp.addr], &[green.addr], "")).await;
    let c = client();
    assert_eq!(get(&c, proxy_url(&s, "/")).await.status, 200);
    // upstream_idle is 90 s: only the close can make the sweep drop it.
    wait_for(
        Duration::from_secs(4),
        "the closed connection to leave the pool",
        || {
            let (c, s) = (c.clone(), &s);
            let addr = fp.addr;
            async move { endpoint(&admin_status(&c, s).await, "blue", addr)["idle"] == 0 }
        },
    )
    .await;
}

#[tokio::test]
async fn an_idle_shared_http2_connection_is_closed_after_upstream_idle() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let fp = FaultProxy::start(blue.addr, Fault::Pass).await;
    let yaml = config_yaml(&[fp.addr], &[green.addr], "timeouts:\n  upstream_idle: 1s").replacen(
        "endpoints: [",
        "protocol: h2\n    endpoints: [",
        1,
    );
    let s = start_proxy(&yaml).await;
    let c = client();
    // Two requests one after the other; the HTTP/2 connection they share
    // stays open after them. (The active health checks open a connection
    // of their own for a moment every 2 s, hence a wait rather than a
    // single reading.)
    for _ in 0..2 {
        let a = get(&c, proxy_url(&s, "/")).await;
        assert_eq!((a.status, a.upstream()), (200, "blue-1"));
    }
    open_becomes(
        &fp,
        1,
        Duration::from_secs(2),
        "the shared connection alone open",
    )
    .await;
    // No request for upstream_idle: the sweep lets it go and it closes.
    closes_after_upstream_idle(&fp, "the idle HTTP/2 connection to close").await;
    // The next request opens a new one.
    let a = get(&c, proxy_url(&s, "/")).await;
    assert_eq!((a.status, a.upstream()), (200, "blue-1"));
}

#[tokio::test]
async fn a_bursts_surplus_connections_are_let_go_under_a_lighter_load() {
    let (_up, fp, s) = behind_a_counting_proxy().await;
    let c = client();
    all_at_once(&c, proxy_url(&s, "/delay/300"), 8).await;
    let opened = fp.accepted();
    assert!(opened >= 8, "{opened}");
    assert!(fp.open() >= 8);
    // One request at a time: first in, first out would keep all eight in
    // use for ever; the sweeps close the surplus, half of it a second, once
    // the burst's peak is 5 s old.
    let light = tokio::time::Instant::now();
    wait_for(Duration::from_secs(15), "the surplus to close", || async {
        assert_eq!(get(&c, proxy_url(&s, "/")).await.status, 200);
        fp.open() <= 2
    })
    .await;
    assert!(
        light.elapsed() >= Duration::from_secs(3),
        "closed after {:?}: before the burst's peak was forgotten",
        light.elapsed()
    );
    // And none was opened again meanwhile.
    assert_eq!(fp.accepted(), opened);
    s.shutdown().await;
}

/// An endpoint that gets a request every second and a half keeps its one
/// connection (until `timeouts.upstream_idle`), instead of a new one per
/// request.
#[tokio::test]
async fn a_slow_trickle_of_requests_keeps_its_connection() {
    let (_up, fp, s) = behind_a_counting_proxy().await;
    let c = client();
    let mut pace = tokio::time::interval(Duration::from_millis(1500));
    for _ in 0..3 {
        pace.tick().await;
        assert_eq!(get(&c, proxy_url(&s, "/")).await.status, 200);
    }
    assert_eq!(fp.accepted(), 1);
    s.shutdown().await;
}

/// Blue's one endpoint behind a TCP proxy that counts its connections;
/// checks an hour apart and connections kept for 90 s (the default), so
/// only the demand opens and closes them.
async fn behind_a_counting_proxy() -> ([Upstream; 2], FaultProxy, switchyard::server::Server) {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let fp = FaultProxy::start(blue.addr, Fault::Pass).await;
    let extra = "health_check:\n  interval: 1h";
    let s = start_proxy(&config_yaml(&[fp.addr], &[green.addr], extra)).await;
    ([blue, green], fp, s)
}

/// How many requests each burst has in flight at once.
const BURST: usize = 512;

/// A plain HTTP/1.1 upstream for bursts: it holds every answer to
/// `/burst` until [`BURST`] of them have arrived (so the proxy really needs
/// that many connections at once), and counts the connections that carried
/// at least one (the health check's own connection carries none).
struct BurstUpstream {
    addr: std::net::SocketAddr,
    /// `/burst` requests that have arrived.
    arrived: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Connections that carried a `/burst` request.
    used: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: tokio_util::sync::CancellationToken,
}

impl BurstUpstream {
    async fn start() -> BurstUpstream {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let arrived = Arc::new(AtomicUsize::new(0));
        let used = Arc::new(AtomicUsize::new(0));
        // Reusable: each group of BURST waiters is released together.
        let barrier = Arc::new(tokio::sync::Barrier::new(BURST));
        let stop = tokio_util::sync::CancellationToken::new();
        let (a, u, token) = (arrived.clone(), used.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                    _ = token.cancelled() => break,
                };
                let (a, u, barrier, token) = (a.clone(), u.clone(), barrier.clone(), token.clone());
                let carried = Arc::new(AtomicBool::new(false));
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let (a, u, barrier, carried) =
                                (a.clone(), u.clone(), barrier.clone(), carried.clone());
                            async move {
                                if req.uri().path() == "/burst" {
                                    if !carried.swap(true, Ordering::Relaxed) {
                                        u.fetch_add(1, Ordering::Relaxed);
                                    }
                                    a.fetch_add(1, Ordering::Relaxed);
                                    barrier.wait().await;
                                }
                                Ok::<_, std::convert::Infallible>(http::Response::new(
                                    http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                                ))
                            }
                        },
                    );
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = token.cancelled() => {}
                    }
                });
            }
        });
        BurstUpstream {
            addr,
            arrived,
            used,
            stop,
        }
    }

    fn arrived(&self) -> usize {
        self.arrived.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn used(&self) -> usize {
        self.used.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for BurstUpstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// [`BURST`] GETs of `/burst` at once, as HTTP/2 streams spread over
/// `senders` (the proxy allows 256 streams per connection; few client
/// connections keep this process's file descriptors for the upstream's
/// 512), each answered 200 `ok`.
async fn burst(
    senders: &[hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>],
    proxy: std::net::SocketAddr,
    up: &BurstUpstream,
    what: &str,
) {
    use http_body_util::BodyExt;
    let expected = up.arrived() + BURST;
    let requests: Vec<_> = (0..BURST)
        .map(|i| {
            let mut h2 = senders[i % senders.len()].clone();
            let req = http::Request::get(format!("http://{proxy}/burst"))
                .body(http_body_util::Empty::new())
                .unwrap();
            tokio::spawn(async move {
                let resp = h2.send_request(req).await.expect("the stream is answered");
                let status = resp.status();
                let body = resp.into_body().collect().await.expect("body").to_bytes();
                (status, body)
            })
        })
        .collect();
    let all = async {
        for r in requests {
            let (status, body) = r.await.unwrap();
            assert_eq!((status.as_u16(), &body[..]), (200, &b"ok"[..]));
        }
    };
    // The upstream answers none until all have arrived: if some never do,
    // say how many did rather than hang.
    if tokio::time::timeout(Duration::from_secs(10), all)
        .await
        .is_err()
    {
        panic!(
            "{what}: {} requests in all reached the upstream, not {expected}",
            up.arrived()
        );
    }
}

/// Two bursts of 512 requests in flight at once through the real proxy
/// process to one endpoint (512 upstream connections at once, the
/// upstream holds every answer until all 512 have arrived): the second
/// burst finds the first's connections idle and opens none. With 256 idle
/// slots per endpoint (before fafc136) half were closed when given back
/// and the second burst opened 256 new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_burst_of_512_opens_no_new_upstream_connection() {
    let up = BurstUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "listeners:\n  - bind: \"{{PROXY}}\"\nadmin:\n  bind: \"{{ADMIN}}\"\npools:\n  blue:\n    endpoints: [\"{a}\"]\n  green:\n    endpoints: [\"{a}\"]\nstate_file: null\nhealth_check:\n  interval: 1h\n",
        a = up.addr
    );
    let p = crate::support::process::ProxyProcess::start(dir.path(), &yaml).await;
    // Four client connections, 128 streams each (h2c, prior knowledge).
    let mut senders = Vec::new();
    for _ in 0..4 {
        let tcp = tokio::net::TcpStream::connect(p.proxy).await.unwrap();
        let (send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .expect("h2c handshake");
        tokio::spawn(conn);
        senders.push(send);
    }

    burst(&senders, p.proxy, &up, "first burst").await;
    assert_eq!(up.used(), BURST, "the first burst needs a connection each");
    // Every answer is out; wait until the proxy has given every upstream
    // connection back to the pool (it does so once a response is read
    // whole, which may be just after the client has it).
    let idle = || async {
        let (code, st) = api(p.admin, http::Method::GET, "/api/v1/status", None, None).await;
        assert_eq!(code, 200);
        endpoint(&st, "blue", up.addr)["idle"].as_u64().unwrap_or(0) as usize
    };
    let all_idle = poll_until(Duration::from_secs(2), || async { idle().await == BURST }).await;
    let kept = idle().await;

    burst(&senders, p.proxy, &up, "second burst").await;
    let opened = up.used() - BURST;
    assert!(
        all_idle && opened == 0,
        "the second burst opened {opened} new upstream connections \
         ({kept} of the first burst's {BURST} were kept idle)"
    );
}
