//! Routing by client: sticky buckets through a rollout and a rollback, a
//! preview listener pinned to the candidate, and the override header.

use crate::support::*;
use futures_util::StreamExt;
use http::Request;
use http_body_util::Full;
use switchyard::server::Server;

const CLIENTS: usize = 1000;

async fn put_weights(c: &TestClient, s: &Server, blue: u32, green: u32) {
    let put = Request::put(admin_url(s, "/api/v1/weights"))
        .body(Full::new(
            format!(r#"{{"blue": {blue}, "green": {green}}}"#).into(),
        ))
        .unwrap();
    assert_eq!(read(c.request(put).await.unwrap()).await.status, 200);
}

/// One request per client, each with its cookie (if any), answers in order.
async fn visit_all(c: &TestClient, url: &str, cookies: &[Option<String>]) -> Vec<Answer> {
    futures_util::stream::iter(cookies.iter().cloned())
        .map(|cookie| {
            let (c, url) = (c.clone(), url.to_string());
            async move {
                let mut req = Request::get(url);
                if let Some(cookie) = cookie {
                    req = req.header("cookie", format!("theme=dark; {cookie}"));
                }
                read(c.request(req.body(Full::default()).unwrap()).await.unwrap()).await
            }
        })
        .buffered(32)
        .collect()
        .await
}

fn pool(a: &Answer) -> &str {
    a.headers["x-switchyard-pool"].to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_clients_only_move_to_the_candidate_and_all_return_on_rollback() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let extra = "traffic:\n  sticky: { cookie: switchyard-bucket, max_age: 1h }\n  expose_pool_header: true";
    let s = start_proxy(&config_yaml(&[blue.addr], &[green.addr], extra)).await;
    let (c, url) = (client(), proxy_url(&s, "/"));

    // First visits, all on blue: each client is given its bucket.
    let first = visit_all(&c, &url, &vec![None; CLIENTS]).await;
    let set_cookie = first[0].headers["set-cookie"].to_str().unwrap();
    for attr in ["Max-Age=3600", "Path=/", "HttpOnly", "SameSite=Lax"] {
        assert!(set_cookie.contains(attr), "{attr} missing: {set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "Secure on a plain listener");
    let cookies: Vec<Option<String>> = first
        .iter()
        .map(|a| {
            assert_eq!((a.status, pool(a)), (200, "blue"));
            let v = a.headers["set-cookie"].to_str().unwrap();
            Some(v.split(';').next().unwrap().to_string())
        })
        .collect();

    let mut on_green = vec![false; CLIENTS];
    for percent in [10, 25, 50] {
        put_weights(&c, &s, 100 - percent, percent).await;
        let answers = visit_all(&c, &url, &cookies).await;
        for (i, a) in answers.iter().enumerate() {
            assert!(!a.headers.contains_key("set-cookie"), "cookie set twice");
            let now_green = pool(a) == "green";
            assert!(
                now_green || !on_green[i],
                "client {i} went back from green to blue at {percent} %"
            );
            on_green[i] = now_green;
        }
        let share = on_green.iter().filter(|&&g| g).count() as f64 / CLIENTS as f64;
        let want = f64::from(percent) / 100.0;
        assert!(
            (share - want).abs() <= 0.03,
            "{share:.3} of clients on green at {percent} %"
        );
    }

    // A rollback puts every client back on the live pool.
    put_weights(&c, &s, 100, 0).await;
    let answers = visit_all(&c, &url, &cookies).await;
    assert!(answers.iter().all(|a| pool(a) == "blue"));
    s.shutdown().await;
}

#[tokio::test]
async fn a_preview_listener_pinned_to_candidate_reaches_green_while_main_sends_all_to_blue() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let yaml = format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\n  - bind: \"127.0.0.1:0\"\n    pool: candidate\nadmin:\n  bind: \"127.0.0.1:0\"\npools:\n  blue:\n    endpoints: [\"{}\"]\n  green:\n    endpoints: [\"{}\"]\nstate_file: null\ntraffic:\n  expose_pool_header: true\n",
        blue.addr, green.addr
    );
    let s = start_proxy(&yaml).await;
    let c = client();
    let preview = format!("http://{}/", s.proxy_addrs[1]);
    for _ in 0..50 {
        let a = get(&c, proxy_url(&s, "/")).await;
        assert_eq!((a.upstream(), pool(&a)), ("blue-1", "blue"));
        let a = get(&c, preview.clone()).await;
        assert_eq!((a.upstream(), pool(&a)), ("green-1", "green"));
    }
    assert_eq!((blue.requests(), green.requests()), (50, 50));
    s.shutdown().await;
}

#[tokio::test]
async fn the_override_header_is_honoured_only_from_trusted_clients_and_never_forwarded() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let ask = |s: &Server, pool: &str| {
        Request::get(proxy_url(s, "/headers"))
            .header("x-pool", pool)
            .body(Full::default())
            .unwrap()
    };
    let c = client();
    for (trust, expected) in [
        ("", "green-1"),
        ("\n  override_trusted: [\"192.0.2.0/24\"]", "blue-1"),
    ] {
        let extra = format!("traffic:\n  override_header: X-Pool{trust}");
        let s = start_proxy(&config_yaml(&[blue.addr], &[green.addr], &extra)).await;
        let a = read(c.request(ask(&s, "green")).await.unwrap()).await;
        assert_eq!(a.upstream(), expected, "trust list {trust:?}");
        // The value in any case, as the header's name.
        let a = read(c.request(ask(&s, "GREEN")).await.unwrap()).await;
        assert_eq!(a.upstream(), expected, "trust list {trust:?}, GREEN");
        let seen: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert!(
            seen.get("x-pool").is_none(),
            "override header forwarded: {seen}"
        );
        s.shutdown().await;
    }
}
