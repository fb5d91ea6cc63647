//! Maintenance of one endpoint (HAProxy's `disable server`): `POST
//! /api/v1/endpoints/{address}/drain` and `/enable`, and `ctl endpoint
//! drain|enable`. A drained endpoint finishes what it has in flight, takes
//! nothing new, shows `draining`, and stays drained through a reload.

use crate::support::admin::*;
use crate::support::process::BIN;
use crate::support::*;
use http::Method;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn endpoints_config(blue: &[std::net::SocketAddr], green: &[std::net::SocketAddr]) -> String {
    config_yaml(
        blue,
        green,
        "health_check:\n  interval: 200ms\n  timeout: 150ms\n",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_endpoint_finishes_in_flight_work_takes_nothing_new_and_survives_a_reload() {
    let b1 = Upstream::start("blue-1").await;
    let b2 = Upstream::start("blue-2").await;
    let g1 = Upstream::start("green-1").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchyard.yaml");
    std::fs::write(&path, endpoints_config(&[b1.addr, b2.addr], &[g1.addr])).unwrap();
    let s = start_proxy_from_file(&path).await;
    let c = client();
    wait_healthy(s.admin_addr, "blue").await;

    // A slow request in flight on blue-1 (power of two choices picks at
    // random: send them until one is there, at most 20).
    let mut slow = Vec::new();
    for _ in 0..20 {
        slow.push(tokio::spawn({
            let (c, url) = (c.clone(), proxy_url(&s, "/delay/1500"));
            async move { get(&c, url).await }
        }));
        let on_b1 = poll_until(Duration::from_millis(300), || async {
            endpoint(&admin_status(&c, &s).await, "blue", b1.addr)["inflight"] != 0
        })
        .await;
        if on_b1 {
            break;
        }
    }
    let b1_requests = || b1.state.requests.load(Ordering::Relaxed);
    wait_for(
        Duration::from_secs(2),
        "a slow request at blue-1",
        || async { b1_requests() >= 1 },
    )
    .await;
    let b1_before = b1_requests();

    let path_drain = format!("/api/v1/endpoints/{}/drain", b1.addr);
    let (code, v) = api(s.admin_addr, Method::POST, &path_drain, None, None).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["changed"], true, "{v}");
    assert_eq!(v["endpoints"][0]["pool"], "blue", "{v}");
    assert_eq!(v["endpoints"][0]["state"], "draining", "{v}");
    assert!(v["endpoints"][0]["inflight"].as_i64().unwrap() >= 1, "{v}");
    assert!(v["generation"].is_u64(), "{v}");
    // Idempotent.
    let (code, again) = api(s.admin_addr, Method::POST, &path_drain, None, None).await;
    assert_eq!((code, &again["changed"]), (200, &serde_json::json!(false)));

    let st = admin_status(&c, &s).await;
    assert_eq!(endpoint(&st, "blue", b1.addr)["state"], "draining", "{st}");
    assert_ne!(endpoint(&st, "blue", b2.addr)["state"], "draining", "{st}");

    // Nothing new goes to blue-1, while what it had in flight finishes.
    for _ in 0..30 {
        let a = get(&c, proxy_url(&s, "/")).await;
        assert_eq!((a.status, a.upstream()), (200, "blue-2"));
    }
    for t in slow {
        let a = t.await.unwrap();
        assert_eq!(a.status, 200, "an in-flight request failed: {}", a.text());
    }
    assert_eq!(
        b1_requests(),
        b1_before,
        "blue-1 got a proxied request after the drain"
    );

    // A reload keeps the endpoint and its flag.
    std::fs::write(
        &path,
        endpoints_config(&[b1.addr, b2.addr], &[g1.addr]) + "# edited\ndrain:\n  timeout: 5s\n",
    )
    .unwrap();
    let (code, v) = api(s.admin_addr, Method::POST, "/api/v1/reload", None, None).await;
    assert_eq!(
        (code, &v["changed"]),
        (200, &serde_json::json!(true)),
        "{v}"
    );
    let st = admin_status(&c, &s).await;
    assert_eq!(endpoint(&st, "blue", b1.addr)["state"], "draining", "{st}");
    for _ in 0..20 {
        assert_eq!(get(&c, proxy_url(&s, "/")).await.upstream(), "blue-2");
    }

    let path_enable = format!("/api/v1/endpoints/{}/enable", b1.addr);
    let (code, v) = api(s.admin_addr, Method::POST, &path_enable, None, None).await;
    assert_eq!(code, 200, "{v}");
    assert_ne!(v["endpoints"][0]["state"], "draining", "{v}");
    wait_for(Duration::from_secs(5), "blue-1 to serve again", || async {
        get(&c, proxy_url(&s, "/")).await.upstream() == "blue-1"
    })
    .await;

    let ev = events(&c, &s).await;
    let kinds: Vec<&str> = ev.iter().filter_map(|e| e["kind"].as_str()).collect();
    let drained = kinds.iter().position(|k| *k == "endpoint_drained");
    let enabled = kinds.iter().position(|k| *k == "endpoint_enabled");
    assert!(
        matches!((drained, enabled), (Some(d), Some(e)) if d < e),
        "{kinds:?}"
    );
    let e = &ev[drained.unwrap()];
    assert_eq!(e["actor"], "admin");
    assert_eq!(e["to"]["endpoint"], b1.addr.to_string());

    // Unknown addresses and actions are named.
    let (code, v) = api(
        s.admin_addr,
        Method::POST,
        "/api/v1/endpoints/127.0.0.1:1/drain",
        None,
        None,
    )
    .await;
    assert_eq!(code, 404, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1:1"),
        "{v}"
    );
    let (code, v) = api(
        s.admin_addr,
        Method::POST,
        &format!("/api/v1/endpoints/{}/disable", b1.addr),
        None,
        None,
    )
    .await;
    assert_eq!(code, 404, "{v}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_endpoint_drain_and_enable() {
    let b1 = Upstream::start("blue-1").await;
    let b2 = Upstream::start("blue-2").await;
    let s = start_proxy(&endpoints_config(&[b1.addr, b2.addr], &[b2.addr])).await;
    let admin = format!("http://{}", s.admin_addr);
    let addr = b1.addr.to_string();
    let ctl = |args: &[&str]| {
        let o = std::process::Command::new(BIN)
            .arg("ctl")
            .args(["--admin", &admin])
            .args(args)
            .env_remove("SWITCHYARD_ADMIN")
            .env_remove("SWITCHYARD_ADMIN_TOKEN")
            .output()
            .expect("run ctl");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = tokio::task::block_in_place(|| ctl(&["endpoint", "drain", &addr]));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        format!("ok: drained blue/{addr}: now draining, 0 in flight\n")
    );
    let (_, out, _) = tokio::task::block_in_place(|| ctl(&["status"]));
    let line = out
        .lines()
        .find(|l| l.contains(&addr))
        .expect("the endpoint's line");
    assert!(line.contains("draining"), "{out}");
    let (code, out, err) = tokio::task::block_in_place(|| ctl(&["endpoint", "enable", &addr]));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with(&format!("ok: enabled blue/{addr}: now ")),
        "{out}"
    );
    let (code, out, err) =
        tokio::task::block_in_place(|| ctl(&["endpoint", "drain", "127.0.0.1:1"]));
    assert_ne!(code, Some(0), "{out}");
    assert!(err.contains("404") && err.contains("127.0.0.1:1"), "{err}");
    s.shutdown().await;
}
