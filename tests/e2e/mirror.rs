//! Mirroring with response comparison (SPEC.md section 12), on real
//! sockets: clients are answered by blue exactly as without mirroring,
//! green's different answers show in the diffs with both values, a field
//! that differs between two blue endpoints is learned as noise, a hanging
//! green only fills `max_inflight`, and `max_mismatch_rate` refuses a
//! rollout or switch.

use crate::support::*;
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Unique in the process: the `now` field differs between any two answers.
static STAMP: AtomicU64 = AtomicU64::new(1);

/// A small JSON application: `/static` (the same everywhere), `/items`
/// (with a `now` stamp that differs in every answer), `/price` (this
/// instance's price), `/health`. With `hang`, everything but `/health`
/// never answers.
struct App {
    addr: SocketAddr,
    hang: Arc<AtomicBool>,
    /// Requests that carried `x-switchyard-mirror: 1`.
    mirrored: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn app(name: &'static str, price: u32) -> App {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (hang, mirrored, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        CancellationToken::new(),
    );
    let (h, m, s) = (hang.clone(), mirrored.clone(), stop.clone());
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                _ = s.cancelled() => return,
            };
            let (h, m, s) = (h.clone(), m.clone(), s.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (h, m) = (h.clone(), m.clone());
                    async move { Ok::<_, Infallible>(answer(req, name, price, &h, &m).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(stream), svc);
                tokio::select! { _ = conn => {}, _ = s.cancelled() => {} }
            });
        }
    });
    App {
        addr,
        hang,
        mirrored,
        stop,
    }
}

async fn answer(
    req: Request<Incoming>,
    name: &str,
    price: u32,
    hang: &AtomicBool,
    mirrored: &AtomicU64,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if req
        .headers()
        .get("x-switchyard-mirror")
        .is_some_and(|v| v == "1")
    {
        mirrored.fetch_add(1, Ordering::Relaxed);
    }
    if path != "/health" && hang.load(Ordering::Relaxed) {
        std::future::pending::<()>().await;
    }
    let body = match path.as_str() {
        "/health" => json!({"ok": true}),
        "/static" => json!({"greeting": "hello", "items": [1, 2, 3]}),
        "/items" => json!({"items": [1, 2, 3], "now": STAMP.fetch_add(1, Ordering::Relaxed)}),
        "/price" => json!({"sku": "a-1", "price": price}),
        _ => json!({"path": path}),
    };
    Response::builder()
        .header("content-type", "application/json")
        .header("x-instance", name)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn mirror_yaml(blue: &[&App], green: &App, mirror: &str) -> String {
    let blue: Vec<SocketAddr> = blue.iter().map(|a| a.addr).collect();
    config_yaml(
        &blue,
        &[green.addr],
        &format!("health_check: {{ interval: 100ms, timeout: 100ms }}\n{mirror}"),
    )
}

async fn diffs(s: &switchyard::server::Server) -> serde_json::Value {
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
fn counted(metrics: &str, result: &str) -> u64 {
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
    let c = client();
    let mut slowest = Duration::ZERO;
    for _ in 0..30 {
        let t = tokio::time::Instant::now();
        let a = get(&c, proxy_url(&s, "/items")).await;
        slowest = slowest.max(t.elapsed());
        assert_eq!(a.status, 200);
        assert_eq!(a.headers["x-instance"], "blue");
    }
    // A copy waited on would take the 30 s request timeout.
    assert!(
        slowest < Duration::from_secs(2),
        "a client waited {slowest:?}"
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
