//! The admin API as the tests use it: status, weights, events, metrics.

use super::{admin_url, read, TestClient};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::Value;
use std::net::SocketAddr;
use switchyard::server::Server;

pub async fn admin_status(c: &TestClient, s: &Server) -> Value {
    let a = read(
        c.get(admin_url(s, "/api/v1/status").parse().unwrap())
            .await
            .expect("status answers"),
    )
    .await;
    assert_eq!(a.status, 200, "status: {}", a.text());
    serde_json::from_slice(&a.body).expect("status is JSON")
}

/// One endpoint's entry in a status document.
pub fn endpoint<'a>(st: &'a Value, pool: &str, addr: SocketAddr) -> &'a Value {
    let address = addr.to_string();
    st["pools"][pool]["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .find(|e| e["address"] == address.as_str())
        .unwrap_or_else(|| panic!("no endpoint {address} in pool {pool}: {st}"))
}

pub async fn endpoint_state(c: &TestClient, s: &Server, pool: &str, addr: SocketAddr) -> String {
    let st = admin_status(c, s).await;
    endpoint(&st, pool, addr)["state"]
        .as_str()
        .expect("state")
        .to_string()
}

pub async fn set_weights(c: &TestClient, s: &Server, blue: f64, green: f64) {
    let body = format!(r#"{{"blue": {blue}, "green": {green}}}"#);
    let put = Request::put(admin_url(s, "/api/v1/weights"))
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let a = read(c.request(put).await.expect("weights answers")).await;
    assert_eq!(a.status, 200, "weights: {}", a.text());
}

/// The audit log, oldest first.
pub async fn events(c: &TestClient, s: &Server) -> Vec<Value> {
    let a = read(
        c.get(admin_url(s, "/api/v1/events").parse().unwrap())
            .await
            .expect("events answer"),
    )
    .await;
    let v: Value = serde_json::from_slice(&a.body).expect("events are JSON");
    let mut list = v["events"].as_array().expect("events").clone();
    list.reverse();
    list
}

/// `(kind, endpoint)` of every endpoint event, oldest first.
pub async fn endpoint_events(c: &TestClient, s: &Server) -> Vec<(String, String)> {
    events(c, s)
        .await
        .iter()
        .filter(|e| e["kind"].as_str().unwrap_or("").starts_with("endpoint_"))
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or("").to_string(),
                e["to"]["endpoint"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The value of `switchyard_endpoint_healthy` for one endpoint.
pub async fn endpoint_gauge(
    c: &TestClient,
    s: &Server,
    pool: &str,
    addr: SocketAddr,
) -> Option<i64> {
    let a = read(
        c.get(admin_url(s, "/metrics").parse().unwrap())
            .await
            .expect("metrics answer"),
    )
    .await;
    let text = a.text();
    let needle = format!("endpoint=\"{addr}\"");
    let pool = format!("pool=\"{pool}\"");
    text.lines()
        .filter(|l| l.starts_with("switchyard_endpoint_healthy{"))
        .find(|l| l.contains(&needle) && l.contains(&pool))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A proxy in front of `blue` (both pools) whose admin API wants a token,
/// read from a token file holding `contents` (a trailing newline included,
/// as secrets are often written); the file's directory lives as long as
/// the returned guard.
pub async fn start_with_token_file(
    blue: &super::Upstream,
    contents: &str,
) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, contents).unwrap();
    let yaml = super::config_yaml(&[blue.addr], &[blue.addr], "").replacen(
        "admin:\n  bind: \"127.0.0.1:0\"\n",
        &format!(
            "admin:\n  bind: \"127.0.0.1:0\"\n  token_file: \"{}\"\n",
            token_file.display()
        ),
        1,
    );
    (super::start_proxy(&yaml).await, dir)
}
