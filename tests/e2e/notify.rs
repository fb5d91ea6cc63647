//! Notifications (SPEC.md section 10, `notify`) against real webhook
//! receivers: an aborted switch, a manual switch and a rollback each reach
//! a receiver exactly once, signed with the HMAC of the body; a receiver
//! that answers 500 twice per event then 200 gets each exactly once; the
//! Slack form carries one line of text.

use crate::support::hooks::{Delivery, Receiver};
use crate::support::*;
use http::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

const SECRET: &str = "correct horse battery staple";
const KINDS: [&str; 3] = ["switch_aborted", "switch_completed", "rollback"];

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// The delivery's signature is the HMAC-SHA256 of its body under SECRET.
fn assert_signed(d: &Delivery) {
    let sig = d
        .headers
        .get("x-switchyard-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("unsigned: {:?}", d.headers));
    let hex = sig.strip_prefix("sha256=").expect("sha256= prefix");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    ring::hmac::verify(&key, &d.body, &unhex(hex)).expect("the signature verifies");
    assert_eq!(d.headers["content-type"], "application/json");
}

/// How many deliveries each event kind got.
fn per_kind(deliveries: &[Delivery]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for d in deliveries {
        let kind = d.json()["kind"].as_str().unwrap_or("").to_string();
        *m.entry(kind).or_default() += 1;
    }
    m
}

async fn notifications(s: &switchyard::server::Server, result: &str) -> u64 {
    let name = format!("switchyard_notifications_total{{result=\"{result}\"}}");
    metrics_text(s)
        .await
        .lines()
        .find_map(|l| {
            l.strip_prefix(name.as_str())
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_a_switch_and_a_rollback_each_reach_the_receivers_once_signed() {
    let (blue, green, gate) = (
        Upstream::start("blue-1").await,
        Upstream::start("green-1").await,
        Upstream::start("gate").await,
    );
    gate.set_gate_open_after(u64::MAX);
    let steady = Receiver::start(&[]).await;
    let flaky = Receiver::failing_first(2).await;
    let slack = Receiver::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("hook.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let listed = "[switch_aborted, switch_completed, rollback]";
    let extra = format!(
        "cutover:\n  hold_writes: true\n  max_hold: 300ms\n  gate:\n    url: \"http://{gate}/gate\"\n    poll_interval: 20ms\n    timeout: 200ms\nrollout:\n  bake_time: 0s\nnotify:\n  - url: \"{steady}\"\n    events: {listed}\n    secret_file: \"{secret}\"\n  - url: \"{flaky}\"\n    events: {listed}\n    secret_file: \"{secret}\"\n  - url: \"{slack}\"\n    events: [rollback]\n    format: slack\n",
        gate = gate.addr,
        steady = steady.url("/hooks/switchyard"),
        flaky = flaky.url("/hooks/flaky"),
        slack = slack.url("/services/T0/B0/x"),
        secret = secret.display(),
    );
    let s = start_proxy(&config_yaml(&[blue.addr], &[green.addr], &extra)).await;
    wait_healthy(s.admin_addr, "green").await;
    let switch = |to: &'static str| {
        let admin = s.admin_addr;
        async move {
            api(
                admin,
                Method::POST,
                "/api/v1/switch",
                Some(json!({ "to": to })),
                None,
            )
            .await
        }
    };
    // The gate never opens: the switch aborts.
    let (code, v) = switch("green").await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["error"]["code"], "switch_aborted", "{v}");
    // The gate opens: a manual switch completes. Then a rollout back to
    // blue, rolled back by hand.
    gate.set_gate_open_after(0);
    let (code, v) = switch("green").await;
    assert_eq!(code, 200, "{v}");
    wait_healthy(s.admin_addr, "blue").await;
    let (code, v) = api(
        s.admin_addr,
        Method::POST,
        "/api/v1/rollout",
        Some(json!({"to": "blue", "steps": [10, 50, 100], "step_interval": "1h"})),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = api(
        s.admin_addr,
        Method::POST,
        "/api/v1/rollback",
        Some(json!({"reason": "orders look wrong"})),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");

    // 3 to each JSON receiver, 1 in Slack's form.
    wait_for(Duration::from_secs(20), "7 notifications sent", || async {
        notifications(&s, "sent").await >= 7
    })
    .await;
    assert_eq!(notifications(&s, "sent").await, 7);
    assert_eq!(notifications(&s, "failed").await, 0);
    assert_eq!(notifications(&s, "dropped").await, 0);

    let once: BTreeMap<String, usize> = KINDS.iter().map(|k| (k.to_string(), 1)).collect();
    let got = steady.deliveries();
    assert_eq!(per_kind(&got), once, "{got:?}");
    for d in &got {
        assert_eq!(d.path, "/hooks/switchyard");
        assert_signed(d);
    }
    // The bodies are the events the log recorded, ids and all.
    let (_, ev) = api(s.admin_addr, Method::GET, "/api/v1/events", None, None).await;
    let logged: Vec<Value> = ev["events"].as_array().cloned().unwrap_or_default();
    for d in &got {
        let e = d.json();
        assert!(logged.contains(&e), "{e} is not in the log");
    }
    let rb = steady.accepted("rollback").remove(0);
    assert_eq!(rb["actor"], "admin", "{rb}");
    assert_eq!(rb["reason"], "manual: orders look wrong", "{rb}");
    assert_eq!(steady.accepted("switch_completed")[0]["actor"], "admin");

    // 500, 500, 200 for each event: three tries each, accepted once each.
    let tries = flaky.deliveries();
    let thrice: BTreeMap<String, usize> = KINDS.iter().map(|k| (k.to_string(), 3)).collect();
    assert_eq!(per_kind(&tries), thrice, "{tries:?}");
    for kind in KINDS {
        let answers: Vec<u16> = tries
            .iter()
            .filter(|d| d.json()["kind"] == kind)
            .map(|d| d.answered)
            .collect();
        assert_eq!(answers, [500, 500, 200], "{kind}");
        assert_eq!(flaky.accepted(kind).len(), 1, "{kind}");
    }
    tries.iter().for_each(assert_signed);

    let chat = slack.deliveries();
    assert_eq!(chat.len(), 1, "{chat:?}");
    assert!(chat[0].headers.get("x-switchyard-signature").is_none());
    let text = chat[0].json()["text"].as_str().unwrap_or("").to_string();
    assert!(
        text.starts_with(
            "switchyard: rollback by admin (blue 0, green 100): manual: orders look wrong"
        ),
        "{text}"
    );
    s.shutdown().await;
}
