//! Draining: after a flip, what is in flight on the old pool completes, new
//! requests go to the new pool, and upgraded connections and responses
//! still streaming on the old pool are closed at `drain.timeout`.

use crate::support::admin::*;
use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// One blue and one green upstream behind a proxy whose drain timeout is 1 s.
async fn blue_green_draining_in_1s() -> (Upstream, Upstream, switchyard::server::Server) {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let yaml = config_yaml(&[blue.addr], &[green.addr], "drain:\n  timeout: 1s");
    (blue, green, start_proxy(&yaml).await)
}

#[tokio::test]
async fn a_slow_request_on_blue_completes_after_the_flip_while_new_requests_go_to_green() {
    let (blue, _green, s) = blue_green_draining_in_1s().await;
    let c = client();
    // A pooled connection to blue sits idle before the flip.
    assert_eq!(get(&c, proxy_url(&s, "/")).await.upstream(), "blue-1");
    let st = admin_status(&c, &s).await;
    assert_eq!(endpoint(&st, "blue", blue.addr)["idle"], 1);

    let started = Instant::now();
    let slow = tokio::spawn({
        let c = c.clone();
        let url = proxy_url(&s, "/delay/3000");
        async move { get(&c, url).await }
    });
    wait_for(Duration::from_secs(2), "the slow request in flight", || {
        let c = c.clone();
        let s = &s;
        async move { admin_status(&c, s).await["pools"]["blue"]["inflight"] == 1 }
    })
    .await;

    set_weights(&c, &s, 0.0, 100.0).await;
    let st = admin_status(&c, &s).await;
    let drain = &st["pools"]["blue"]["draining"];
    assert_eq!(drain["inflight"], 1, "{st}");
    assert!(drain["remaining_ms"].as_u64().unwrap() <= 1000);
    assert!(st["pools"]["green"]["draining"].is_null());
    // Idle connections stay a moment (a flip straight back reuses them),
    // then close, while the slow request is still in flight.
    wait_for(
        Duration::from_secs(3),
        "blue's idle connection to close",
        || {
            let c = c.clone();
            let s = &s;
            let addr = blue.addr;
            async move { endpoint(&admin_status(&c, s).await, "blue", addr)["idle"] == 0 }
        },
    )
    .await;

    for _ in 0..20 {
        let a = get(&c, proxy_url(&s, "/")).await;
        assert_eq!((a.status, a.upstream()), (200, "green-1"));
    }
    assert!(!slow.is_finished(), "the slow request ended early");
    let a = slow.await.unwrap();
    assert_eq!((a.status, a.upstream()), (200, "blue-1"));
    assert!(started.elapsed() >= Duration::from_secs(3));
    let st = admin_status(&c, &s).await;
    assert_eq!(st["pools"]["blue"]["inflight"], 0);
    s.shutdown().await;
}

async fn echo(
    ws: &mut (impl SinkExt<Message> + StreamExt<Item = Result<Message, impl std::fmt::Debug>> + Unpin),
    text: &str,
) {
    assert!(ws.send(Message::text(text)).await.is_ok(), "send {text:?}");
    let got = tokio::time::timeout(Duration::from_secs(2), ws.next())
        .await
        .expect("an echo in time")
        .expect("the session is open")
        .expect("a message");
    assert_eq!(got, Message::text(text));
}

#[tokio::test]
async fn a_websocket_on_blue_outlives_the_flip_until_the_drain_timeout() {
    let (blue, green, s) = blue_green_draining_in_1s().await;
    let drain = Duration::from_millis(1000);
    let c = client();
    let url = format!("ws://{}/ws", s.proxy_addrs[0]);
    let (mut on_blue, resp) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    assert_eq!(resp.status(), 101);
    echo(&mut on_blue, "hello").await;
    assert_eq!(blue.ws_open(), 1);
    let st = admin_status(&c, &s).await;
    assert_eq!(st["pools"]["blue"]["upgraded"], 1);
    assert_eq!(st["pools"]["blue"]["inflight"], 1);

    let flipped = Instant::now();
    set_weights(&c, &s, 0.0, 100.0).await;
    echo(&mut on_blue, "still there after the flip").await;
    let (mut on_green, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    echo(&mut on_green, "new sessions go to green").await;
    assert_eq!(green.ws_open(), 1);

    // The proxy closes the blue session at the drain deadline.
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match on_blue.next().await {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the blue session was never closed");
    let took = flipped.elapsed();
    eprintln!("blue WebSocket closed {took:?} after the flip");
    assert!(took >= drain, "closed before the drain timeout: {took:?}");
    wait_for(
        Duration::from_secs(2),
        "blue to see the session end",
        || {
            let n = blue.ws_open();
            async move { n == 0 }
        },
    )
    .await;
    let st = admin_status(&c, &s).await;
    assert_eq!(st["pools"]["blue"]["upgraded"], 0);
    assert_eq!(st["pools"]["blue"]["inflight"], 0);
    // Green's session is not part of blue's drain.
    echo(&mut on_green, "green stays").await;
    s.shutdown().await;
}

/// A flip and a flip straight back (a mistaken switch undone) finds the
/// old pool's keep-alive connections still open: nothing is reconnected.
#[tokio::test]
async fn a_flip_straight_back_reuses_the_idle_connections() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let s = start_proxy(&config_yaml(
        &[blue.addr],
        &[green.addr],
        "drain:\n  timeout: 5s",
    ))
    .await;
    let c = client();
    assert_eq!(get(&c, proxy_url(&s, "/")).await.upstream(), "blue-1");
    let st = admin_status(&c, &s).await;
    assert_eq!(endpoint(&st, "blue", blue.addr)["idle"], 1);
    set_weights(&c, &s, 0.0, 100.0).await;
    set_weights(&c, &s, 100.0, 0.0).await;
    let st = admin_status(&c, &s).await;
    assert_eq!(endpoint(&st, "blue", blue.addr)["idle"], 1, "{st}");
    assert!(st["pools"]["blue"]["draining"].is_null());
    assert_eq!(get(&c, proxy_url(&s, "/")).await.upstream(), "blue-1");
    s.shutdown().await;
}

#[tokio::test]
async fn a_response_still_streaming_at_the_drain_deadline_is_cut_without_blaming_blue() {
    use http_body_util::BodyExt;
    let (blue, _green, s) = blue_green_draining_in_1s().await;
    let c = client();
    // 100 chunks 100 ms apart: 10 s of stream, far past the drain timeout.
    let resp = c
        .get(proxy_url(&s, "/drip/100").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.data_ref().map(|d| &d[..]), Some(&b"tick\n"[..]));

    set_weights(&c, &s, 0.0, 100.0).await;
    let flipped = Instant::now();
    let mut chunks = 1;
    let end = loop {
        match body.frame().await {
            Some(Ok(_)) => chunks += 1,
            Some(Err(e)) => break Err(e),
            None => break Ok(()),
        }
    };
    let after = flipped.elapsed();
    assert!(
        end.is_err(),
        "the stream ended cleanly after {chunks} chunks"
    );
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(5),
        "cut {after:?} after the flip (drain.timeout 1s), {chunks} chunks"
    );
    assert!(chunks < 100, "{chunks}");
    let st = admin_status(&c, &s).await;
    assert_eq!(st["pools"]["blue"]["inflight"], 0, "{st}");
    // Cut by the drain, not failed by blue: no ejection, no upstream error.
    assert_ne!(endpoint(&st, "blue", blue.addr)["state"], "ejected", "{st}");
    let metrics = metrics_text(&s).await;
    assert!(
        metrics.contains("switchyard_upstream_errors_total{kind=\"reset\",pool=\"blue\"} 0"),
        "{metrics}"
    );
    s.shutdown().await;
}
