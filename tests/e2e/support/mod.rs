#![allow(dead_code)] // shared by many tests; each uses a part
//! Shared pieces of the end-to-end tests: test upstreams, a proxy started
//! in-process on 127.0.0.1:0, an HTTP client, and waiting with a deadline.

pub mod admin;
pub mod fault;
pub mod hooks;
pub mod logs;
pub mod pg_app;
pub mod postgres;
pub mod process;
pub mod prometheus;
pub mod raw;
pub mod tls;
pub mod upstream;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use switchyard::server::{self, Server};

pub use upstream::{refusing_addr, Upstream};

/// A config with both pools, every listener and the admin API on port 0,
/// no state file; `extra` is appended (top-level YAML keys).
pub fn config_yaml(blue: &[SocketAddr], green: &[SocketAddr], extra: &str) -> String {
    let list = |v: &[SocketAddr]| {
        v.iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\nadmin:\n  bind: \"127.0.0.1:0\"\npools:\n  blue:\n    endpoints: [{}]\n  green:\n    endpoints: [{}]\nstate_file: null\n{extra}\n",
        list(blue),
        list(green)
    )
}

pub async fn start_proxy(yaml: &str) -> Server {
    let cfg = switchyard::config::parse(yaml, "<test>").expect("test config is valid");
    server::start(cfg, None).await.expect("proxy starts")
}

/// Start the proxy from the config file at `path`, which it then watches
/// and reloads (the tests that change the file).
pub async fn start_proxy_from_file(path: &std::path::Path) -> Server {
    let cfg = switchyard::config::load(path).expect("test config file is valid");
    server::start(cfg, Some(path.to_path_buf()))
        .await
        .expect("proxy starts")
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build_http()
}

/// A response with its body read whole.
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn upstream(&self) -> &str {
        self.headers
            .get("x-upstream")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

pub async fn read(resp: Response<hyper::body::Incoming>) -> Answer {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("read body").to_bytes();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

pub async fn send(c: &TestClient, method: Method, url: String, body: &'static str) -> Answer {
    let req = Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    read(c.request(req).await.expect("request completes")).await
}

pub async fn get(c: &TestClient, url: String) -> Answer {
    send(c, Method::GET, url, "").await
}

/// Wait until `check` returns true, polling every 20 ms, at most `deadline`.
pub async fn wait_for<F, Fut>(deadline: Duration, what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    assert!(
        poll_until(deadline, check).await,
        "timed out waiting for {what}"
    );
}

/// Wait until the admin API at `admin` shows `pool` with a healthy endpoint
/// (its active checks passed): a switch or rollout to a pool nobody has
/// checked yet is refused (`cutover.min_healthy`).
pub async fn wait_healthy(admin: SocketAddr, pool: &str) {
    wait_for(
        Duration::from_secs(10),
        &format!("{pool} healthy"),
        || async {
            let (code, v) = api(admin, Method::GET, "/api/v1/status", None, None).await;
            code == 200 && v["pools"][pool]["healthy"].as_u64().unwrap_or(0) >= 1
        },
    )
    .await
}

/// Like [`wait_for`], but says whether `check` came true within `deadline`
/// instead of failing, for a caller that explains a timeout itself.
pub async fn poll_until<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + deadline;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
    }
}

pub fn proxy_url(s: &Server, path: &str) -> String {
    format!("http://{}{}", s.proxy_addrs[0], path)
}

pub fn admin_url(s: &Server, path: &str) -> String {
    format!("http://{}{}", s.admin_addr, path)
}

/// Call the admin API: `(status, JSON body)`; `token` adds a bearer token.
pub async fn api(
    admin: SocketAddr,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{admin}{path}"));
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let bytes = body.map(|v| v.to_string()).unwrap_or_default();
    let req = b.body(Full::new(Bytes::from(bytes))).unwrap();
    let a = read(client().request(req).await.expect("admin API answers")).await;
    let v = serde_json::from_slice(&a.body).unwrap_or(serde_json::Value::Null);
    (a.status, v)
}

/// The proxy's `/metrics` page, as text.
pub async fn metrics_text(s: &Server) -> String {
    read(
        client()
            .get(admin_url(s, "/metrics").parse().unwrap())
            .await
            .expect("metrics answer"),
    )
    .await
    .text()
}

pub async fn status(s: &Server) -> serde_json::Value {
    let (code, v) = api(s.admin_addr, Method::GET, "/api/v1/status", None, None).await;
    assert_eq!(code, 200, "status failed: {v}");
    v
}

/// A steady load: `workers` clients each sending GETs back to back until
/// stopped, recording every answer with the time it came back.
pub struct Load {
    stop: tokio_util::sync::CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<Vec<Sample>>>,
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub started: tokio::time::Instant,
    pub done: tokio::time::Instant,
    /// 0 when the request failed without an answer.
    pub status: u16,
    pub upstream: String,
}

impl Load {
    pub fn start(url: String, workers: usize) -> Load {
        let stop = tokio_util::sync::CancellationToken::new();
        let tasks = (0..workers)
            .map(|_| {
                let (url, stop, c) = (url.clone(), stop.clone(), client());
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    while !stop.is_cancelled() {
                        let started = tokio::time::Instant::now();
                        let (status, upstream) = match c.get(url.parse().unwrap()).await {
                            Ok(r) => {
                                let a = read(r).await;
                                (a.status, a.upstream().to_string())
                            }
                            Err(_) => (0, String::new()),
                        };
                        out.push(Sample {
                            started,
                            done: tokio::time::Instant::now(),
                            status,
                            upstream,
                        });
                    }
                    out
                })
            })
            .collect();
        Load { stop, tasks }
    }

    pub async fn finish(self) -> Vec<Sample> {
        self.stop.cancel();
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await.unwrap());
        }
        all.sort_by_key(|s| s.started);
        all
    }
}

/// Like [`wait_for`], returning the first `Some` the check yields.
pub async fn wait_until<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
    }
}
