//! Mirroring as an operator meets it through the real binary: `switchyard
//! check` warns when writes are copied, a listed write is copied with its
//! body and `x-switchyard-mirror: 1` (a body past `max_body` is not),
//! `ctl mirror diffs` shows each differing field with both values and no
//! credential anywhere, a failing green gets each copy once, and a slow green with large answers keeps the
//! proxy's memory bounded.

use super::app::{app, BIG};
use super::{counted, diffs, mirror_yaml};
use crate::support::process::{ProxyProcess, BIN};
use crate::support::*;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Every secret the client or the applications put in a request or an
/// answer; none may show in the diffs.
const SECRETS: [&str; 5] = ["s3cret", "c00kie", "qtok", "blue-secret", "green-secret"];

/// `switchyard ARGS`: (exit code, stdout, stderr), nothing inherited from
/// the test's admin variables.
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(BIN)
        .args(args)
        .env_remove("SWITCHYARD_ADMIN")
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .output()
        .expect("run switchyard");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (o.status.code(), text(&o.stdout), text(&o.stderr))
}

fn no_secret_in(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} shows {s:?}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_write_is_copied_with_its_body_and_ctl_shows_the_diffs_without_credentials() {
    let (b, g) = (app("blue", 10).await, app("green", 12).await);
    let yaml = mirror_yaml(
        &[&b],
        &g,
        "mirror: { percent: 100, methods: [GET, POST], max_body: 1KiB, compare: { ignore_headers: [date, x-instance] } }",
    );
    // The config check names what is copied and warns of repeated writes.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("switchyard.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let (code, out, err) =
        tokio::task::block_in_place(|| run(&["check", "-c", file.to_str().unwrap()]));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("mirror: 100% of GET, POST"), "{out}");
    assert!(
        out.contains("warning: mirror.methods lists POST: every copy repeats its write"),
        "{out}"
    );

    let s = start_proxy(&yaml).await;
    let c = client();
    let post = |body: Bytes| {
        Request::builder()
            .method(Method::POST)
            .uri(proxy_url(&s, "/price?token=qtok&x=1"))
            .header("authorization", "Bearer s3cret")
            .header("cookie", "sid=c00kie")
            .header("content-type", "application/json")
            .body(Full::new(body))
            .unwrap()
    };
    let small = Bytes::from_static(br#"{"qty": 2}"#);
    let a = read(c.request(post(small.clone())).await.unwrap()).await;
    assert_eq!(
        (a.status, a.headers["x-instance"].as_bytes()),
        (200, &b"blue"[..])
    );
    assert_eq!(a.headers["set-cookie"], "sid=blue-secret");
    // Past max_body: answered by blue, never copied.
    let large = Bytes::from(vec![b'y'; 2048]);
    let a = read(c.request(post(large.clone())).await.unwrap()).await;
    assert_eq!(a.status, 200);
    assert_eq!(get(&c, proxy_url(&s, "/price")).await.status, 200);
    wait_for(Duration::from_secs(10), "both copies compared", || async {
        let m = metrics_text(&s).await;
        counted(&m, "match") + counted(&m, "mismatch") + counted(&m, "error") >= 2
    })
    .await;
    let m = metrics_text(&s).await;
    assert_eq!(counted(&m, "mismatch"), 2, "{m}");
    assert_eq!(counted(&m, "dropped") + counted(&m, "error"), 0, "{m}");

    // Blue got all three as the client sent them, not marked as copies,
    // and the GET's noise sample (learn_noise), never a repeated write;
    // green got only copies, the write with its body, the large one never.
    let (client, noise): (Vec<_>, Vec<_>) = b.seen().into_iter().partition(|r| !r.copy);
    assert_eq!(client.len(), 3);
    assert_eq!(client[1].body, large);
    assert!(noise.iter().all(|r| r.method == "GET"), "{noise:?}");
    let green = g.seen();
    assert_eq!(green.len(), 2, "{green:?}");
    assert!(green.iter().all(|r| r.copy), "{green:?}");
    let write = green
        .iter()
        .find(|r| r.method == "POST")
        .expect("the write copied");
    assert_eq!(write.body, small);
    assert_eq!(write.target, "/price?token=qtok&x=1");
    assert!(green.iter().all(|r| r.body.len() < 2048));

    // The admin API and ctl: request line, both values, no credential.
    let d = diffs(&s).await;
    no_secret_in("GET /api/v1/mirror/diffs", &d.to_string());
    let list = d["diffs"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{d}");
    let write = list
        .iter()
        .find(|d| d["request"] == "POST /price?token=(hidden)&x=1 HTTP/1.1")
        .expect("the write's diff, its token hidden");
    assert!(write["fields"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!({"field": "header:set-cookie", "live": "(hidden)", "candidate": "(hidden)"})));
    let admin = format!("http://{}", s.admin_addr);
    let (code, out, err) =
        tokio::task::block_in_place(|| run(&["ctl", "--admin", &admin, "mirror", "diffs"]));
    assert_eq!(code, Some(0), "{out}{err}");
    no_secret_in("ctl mirror diffs", &out);
    assert!(
        out.contains("POST /price?token=(hidden)&x=1 HTTP/1.1"),
        "{out}"
    );
    assert!(out.contains("GET /price HTTP/1.1"), "{out}");
    assert!(
        out.contains("    $.price\n      live:      10\n      green      12\n"),
        "{out}"
    );
    let (code, out, _) = tokio::task::block_in_place(|| {
        run(&[
            "ctl", "--admin", &admin, "--json", "mirror", "diffs", "--limit", "1",
        ])
    });
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).expect("ctl --json prints JSON");
    assert_eq!(v["diffs"].as_array().unwrap().len(), 1, "{v}");
    // ctl status carries the mirror line with the rate.
    let (code, out, _) = tokio::task::block_in_place(|| run(&["ctl", "--admin", &admin, "status"]));
    assert_eq!(code, Some(0));
    assert!(
        out.contains("mismatch 2") && out.contains("mismatch rate 100.00%"),
        "{out}"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn copies_waiting_on_a_hanging_green_hold_at_most_the_comparison_cap_of_each_answer() {
    // 128 copies wait on green for a minute while the client gets 1 MiB
    // answers: held whole they would be 128 MiB; capped, 128 x 64 KiB.
    let (b, g) = (app("blue", 10).await, app("green", 10).await);
    g.hang.store(true, Ordering::Relaxed);
    let yaml = mirror_yaml(
        &[&b],
        &g,
        "mirror: { percent: 100, max_inflight: 128 }\ntimeouts: { request: 60s }\nlog: { level: warn }",
    )
    .replacen("127.0.0.1:0", "{PROXY}", 1)
    .replacen("127.0.0.1:0", "{ADMIN}", 1);
    let dir = tempfile::tempdir().unwrap();
    let p = ProxyProcess::start(dir.path(), &yaml).await;
    let c = client();
    let url = format!("http://{}/big", p.proxy);
    let fetch = || async {
        let a = get(&c, url.clone()).await;
        assert_eq!((a.status, a.body.len()), (200, BIG));
    };
    // Warm up: connections, buffers, the allocator's arenas.
    for _ in 0..8 {
        fetch().await;
    }
    let before = p.status_kib("VmRSS");
    for _ in 0..200 {
        fetch().await;
    }
    let after = p.status_kib("VmHWM");
    let (code, st) = api(p.admin, Method::GET, "/api/v1/status", None, None).await;
    assert_eq!(code, 200);
    assert_eq!(st["mirror"]["inflight"], 128, "{st}");
    assert_eq!(st["mirror"]["dropped"], 80, "{st}");
    let grew = after.saturating_sub(before);
    assert!(
        grew < 48 * 1024,
        "the proxy grew {grew} KiB with 128 copies of 1 MiB answers waiting"
    );
}

#[tokio::test]
async fn a_copy_that_fails_is_counted_an_error_and_never_sent_again() {
    let (b, g) = (app("blue", 10).await, app("green", 10).await);
    let s = start_proxy(&mirror_yaml(&[&b], &g, "mirror: { percent: 100 }")).await;
    wait_healthy(s.admin_addr, "green").await;
    // Green closes every connection without an answer (its /health still
    // passes): each copy fails once and stays failed.
    g.fail.store(true, Ordering::Relaxed);
    let c = client();
    for _ in 0..5 {
        let a = get(&c, proxy_url(&s, "/static")).await;
        assert_eq!(
            (a.status, a.headers["x-instance"].as_bytes()),
            (200, &b"blue"[..])
        );
    }
    wait_for(Duration::from_secs(10), "five failed copies", || async {
        counted(&metrics_text(&s).await, "error") == 5
    })
    .await;
    let m = metrics_text(&s).await;
    assert_eq!(counted(&m, "match") + counted(&m, "mismatch"), 0, "{m}");
    assert_eq!(g.seen().len(), 5, "a copy was sent again: {:?}", g.seen());
    s.shutdown().await;
}
