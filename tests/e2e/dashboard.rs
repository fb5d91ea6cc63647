//! The dashboard over real HTTP (SPEC.md section 11): the page, its stream
//! of server-sent events and its traffic history. The page itself is
//! driven in a real browser by `.ci/checks/dashboard.sh`.

use crate::support::admin::start_with_token_file;
use crate::support::*;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

/// One open `GET /api/v1/stream`, read message by message.
struct Sse {
    body: Incoming,
    buf: String,
}

impl Sse {
    /// Open the stream; the status it answered when it is not a stream.
    async fn open(admin: SocketAddr, token: Option<&str>) -> Result<Sse, (u16, String)> {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let mut req = Request::get(format!("http://{admin}/api/v1/stream"));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = client
            .request(req.body(Empty::new()).unwrap())
            .await
            .expect("the admin API answers");
        if resp.status() != 200 {
            let a = read(resp).await;
            let retry = a.headers.get("retry-after").is_some();
            return Err((a.status, format!("{} retry-after={retry}", a.text())));
        }
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        assert_eq!(resp.headers()["cache-control"], "no-cache");
        Ok(Sse {
            body: resp.into_body(),
            buf: String::new(),
        })
    }

    /// The next message as (event, data), within `within`.
    async fn next(&mut self, within: Duration) -> (String, Value) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(cut) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..cut + 2).collect();
                let mut event = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = v.to_string();
                    }
                }
                let value = serde_json::from_str(&data).expect("data is one line of JSON");
                return (event, value);
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .expect("a message in time")
                .expect("the stream is open")
                .expect("a frame");
            if let Ok(data) = frame.into_data() {
                self.buf.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }

    /// Read until `pick` accepts a message, within `within`.
    async fn until(
        &mut self,
        within: Duration,
        mut pick: impl FnMut(&str, &Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let (event, data) = self.next(left).await;
            if pick(&event, &data) {
                return data;
            }
        }
    }
}

#[tokio::test]
async fn the_page_comes_from_the_binary_under_a_strict_policy_and_needs_no_token() {
    let blue = Upstream::start("blue-1").await;
    let (s, _dir) = start_with_token_file(&blue, "s3cret\n").await;
    let c = client();
    let page = get(&c, admin_url(&s, "/")).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none';"), "{csp}");
    assert!(csp.contains("connect-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    // It tells the script that this proxy wants a token, so it asks first.
    assert!(page.text().contains(r#"data-token="required""#));
    let mut total = page.body.len();
    for (path, kind) in [
        ("/dashboard.js", "text/javascript; charset=utf-8"),
        ("/dashboard.css", "text/css; charset=utf-8"),
    ] {
        let a = get(&c, admin_url(&s, path)).await;
        assert_eq!(
            (a.status, a.headers["content-type"].to_str().unwrap()),
            (200, kind)
        );
        assert!(a.headers.contains_key("content-security-policy"));
        total += a.body.len();
    }
    assert!(total < 200 * 1024, "{total} bytes");
    // The API behind it still wants the token.
    assert_eq!(get(&c, admin_url(&s, "/api/v1/history")).await.status, 401);
    s.shutdown().await;

    let open = start_proxy(&config_yaml(&[blue.addr], &[blue.addr], "")).await;
    let page = get(&c, admin_url(&open, "/")).await;
    assert!(page.text().contains(r#"data-token="none""#));
    open.shutdown().await;
}

#[tokio::test]
async fn the_stream_opens_with_a_snapshot_then_sends_changes_as_they_happen() {
    let blue = Upstream::start("blue-1").await;
    let (s, _dir) = start_with_token_file(&blue, "s3cret\n").await;
    let a = s.admin_addr;
    assert_eq!(Sse::open(a, None).await.err().map(|e| e.0), Some(401));
    assert_eq!(
        Sse::open(a, Some("wrong")).await.err().map(|e| e.0),
        Some(401)
    );
    let mut sse = Sse::open(a, Some("s3cret")).await.expect("a stream");
    let (event, status) = sse.next(Duration::from_secs(2)).await;
    assert_eq!(event, "status");
    assert_eq!(status["weights"], json!({"blue": 100.0, "green": 0.0}));
    let generation = status["generation"].as_u64().unwrap();
    let (event, events) = sse.next(Duration::from_secs(2)).await;
    assert_eq!(event, "events");
    assert!(events.is_array(), "{events}");

    let t0 = tokio::time::Instant::now();
    let (code, v) = api(
        a,
        Method::PUT,
        "/api/v1/weights",
        Some(json!({"blue": 90, "green": 10})),
        Some("s3cret"),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let e = sse
        .until(Duration::from_secs(2), |ev, d| {
            ev == "event" && d["kind"] == "weights_changed"
        })
        .await;
    assert_eq!(e["weights"], json!({"blue": 90.0, "green": 10.0}));
    assert_eq!(e["actor"], "admin");
    let st = sse
        .until(Duration::from_secs(2), |ev, d| {
            ev == "status" && d["generation"].as_u64() > Some(generation)
        })
        .await;
    assert_eq!(st["weights"]["green"], 10.0);
    assert!(t0.elapsed() < Duration::from_secs(2));
    // The traffic of each second, with the heartbeat's status in between.
    let sample = sse
        .until(Duration::from_secs(3), |ev, _| ev == "sample")
        .await;
    assert!(
        sample["blue"]["rps"].is_number() && sample["time"].as_u64() > Some(0),
        "{sample}"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn history_keeps_every_second_of_real_traffic() {
    let blue = Upstream::start("blue-1").await;
    let s = start_proxy(&config_yaml(&[blue.addr], &[blue.addr], "")).await;
    let c = client();
    for _ in 0..20 {
        assert_eq!(get(&c, proxy_url(&s, "/")).await.status, 200);
    }
    // Bounded: a sample is taken every second.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let (counted, last) = loop {
        let a = get(&c, admin_url(&s, "/api/v1/history")).await;
        let last: Value = serde_json::from_slice(&a.body).unwrap();
        let sum: u64 = last["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["blue"]["requests"].as_u64().unwrap())
            .sum();
        if sum == 20 || tokio::time::Instant::now() > deadline {
            break (sum == 20, last);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(counted, "20 requests, each in one sample: {last}");
    assert_eq!(last["interval_ms"], 1000);
    assert_eq!(last["capacity"], 900);
    let samples = last["samples"].as_array().unwrap();
    let times: Vec<u64> = samples
        .iter()
        .map(|x| x["time"].as_u64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {times:?}"
    );
    assert_eq!(samples[0]["green"]["p99_ms"], Value::Null);
    s.shutdown().await;
}

#[tokio::test]
async fn streams_are_capped_and_a_shutdown_ends_the_open_ones() {
    let blue = Upstream::start("blue-1").await;
    let s = start_proxy(&config_yaml(&[blue.addr], &[blue.addr], "")).await;
    let a = s.admin_addr;
    let mut open = Vec::new();
    for _ in 0..switchyard::admin::stream::MAX_STREAMS {
        open.push(Sse::open(a, None).await.expect("room for it"));
    }
    let (code, why) = Sse::open(a, None).await.err().expect("one too many");
    assert_eq!(code, 503);
    assert!(
        why.contains("too_many_streams") && why.ends_with("retry-after=true"),
        "{why}"
    );
    // A reader that goes away gives its place back (seen at its next
    // message, a heartbeat at most later).
    drop(open.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let again = loop {
        match Sse::open(a, None).await {
            Ok(sse) => break sse,
            Err(e) if tokio::time::Instant::now() > deadline => {
                panic!("the closed stream's place never came back: {e:?}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    open.push(again);
    // Streams never end on their own; a shutdown must still finish.
    tokio::time::timeout(Duration::from_secs(10), s.shutdown())
        .await
        .expect("shutdown with streams open");
    let mut ended = 0;
    for mut sse in open {
        let next = tokio::time::timeout(Duration::from_secs(5), async {
            // Heartbeats until the end; bounded by the timeout around it.
            while let Some(Ok(_)) = sse.body.frame().await {}
        })
        .await;
        ended += usize::from(next.is_ok());
    }
    assert_eq!(ended, switchyard::admin::stream::MAX_STREAMS);
}
