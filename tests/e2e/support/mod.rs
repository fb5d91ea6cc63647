#![allow(dead_code)] // shared by many tests; each uses a part
//! Shared pieces of the end-to-end tests: test upstreams, a proxy started
//! in-process on 127.0.0.1:0, an HTTP client, and waiting with a deadline.

pub mod logs;
pub mod process;
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
pub async fn wait_for<F, Fut>(deadline: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + deadline;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
    }
}

pub fn proxy_url(s: &Server, path: &str) -> String {
    format!("http://{}{}", s.proxy_addrs[0], path)
}

pub fn admin_url(s: &Server, path: &str) -> String {
    format!("http://{}{}", s.admin_addr, path)
}
