//! The controller during a held switch: the switch is a state of its loop,
//! not a wait, so while the gate keeps it waiting the controller answers
//! status, records health events, refuses other changes itself, and a
//! rollback aborts the switch.

use crate::cutover::{spawn_switch_to_green, switch_in_progress};
use crate::support::admin::*;
use crate::support::*;
use http::Method;
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

/// A gate that answers 503 until the test opens it, a `max_hold` long
/// enough that only the test ends the switch, and health checks fast
/// enough to see an endpoint go down meanwhile.
fn yaml(blue: &[&Upstream], green: &Upstream, gate: &Upstream) -> String {
    let blue: Vec<_> = blue.iter().map(|u| u.addr).collect();
    config_yaml(
        &blue,
        &[green.addr],
        &format!(
            "cutover:\n  hold_writes: true\n  max_hold: 30s\n  gate:\n    url: \"http://{}/gate\"\n    poll_interval: 20ms\n    timeout: 200ms\n\
             health_check:\n  interval: 100ms\n  timeout: 100ms\n  unhealthy_threshold: 1\n  healthy_threshold: 1\n\
             rollout:\n  bake_time: 0s\n",
            gate.addr
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_a_switch_waits_on_its_gate_status_answers_and_an_endpoint_going_down_is_recorded() {
    let (blue, blue2, green, gate) = (
        Upstream::start("blue-1").await,
        Upstream::start("blue-2").await,
        Upstream::start("green-1").await,
        Upstream::start("gate").await,
    );
    gate.set_gate_open_after(u64::MAX);
    let s = start_proxy(&yaml(&[&blue, &blue2], &green, &gate)).await;
    let c = client();
    wait_healthy(s.admin_addr, "green").await;
    wait_for(Duration::from_secs(5), "blue-2 healthy", || async {
        endpoint_state(&c, &s, "blue", blue2.addr).await == "healthy"
    })
    .await;
    let before = status(&s).await["generation"].as_u64().unwrap();

    let switch = spawn_switch_to_green(s.admin_addr);
    wait_for(
        Duration::from_secs(5),
        "the switch to hold writes",
        || async { status(&s).await["phase"] == "switching" },
    )
    .await;
    let st = status(&s).await;
    assert_eq!(st["generation"].as_u64(), Some(before + 1), "{st}");
    assert_eq!(st["hold"]["kind"], "switch", "{st}");
    assert_eq!(st["hold"]["to"], "green", "{st}");
    // A write arriving now is held.
    let held = {
        let (c, url) = (client(), proxy_url(&s, "/"));
        tokio::spawn(async move { send(&c, Method::POST, url, "held write").await })
    };

    wait_for(Duration::from_secs(5), "the write to be held", || async {
        status(&s).await["held_requests"] == 1
    })
    .await;

    // An endpoint goes down while the gate keeps the switch waiting: the
    // controller records it now, not when the switch ends.
    blue2.set_health(500);
    wait_for(Duration::from_secs(5), "an endpoint_down event", || async {
        endpoint_events(&c, &s)
            .await
            .contains(&("endpoint_down".to_string(), blue2.addr.to_string()))
    })
    .await;
    assert_eq!(endpoint_gauge(&c, &s, "blue", blue2.addr).await, Some(0));
    let st = status(&s).await;
    assert_eq!(st["phase"], "switching", "{st}");
    assert_eq!(
        endpoint(&st, "blue", blue2.addr)["state"],
        "unhealthy",
        "{st}"
    );
    // Another change is refused at once, by the controller.
    let (code, v) = api(
        s.admin_addr,
        Method::PUT,
        "/api/v1/weights",
        Some(json!({"blue": 50, "green": 50})),
        None,
    )
    .await;
    assert_eq!(code, 409, "{v}");
    assert!(
        !switch.is_finished(),
        "the switch ended before its gate opened"
    );
    assert!(!held.is_finished(), "the write was not held");

    gate.set_gate_open_after(0);
    let (code, report) = switch.await.unwrap();
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["outcome"], "completed", "{report}");
    assert!(report["held_requests"].as_u64().unwrap() >= 1, "{report}");
    // The hold's start and its end: two documents, two generations.
    assert_eq!(report["generation"].as_u64(), Some(before + 2), "{report}");
    let held = held.await.unwrap();
    assert_eq!((held.status, held.upstream()), (200, "green-1"));
    let st = status(&s).await;
    assert_eq!(st["phase"], "stable", "{st}");
    assert!(st["hold"].is_null(), "{st}");
    s.shutdown().await;
}

/// During a held switch other changes are refused 409 by the controller,
/// at once; a rollback takes the hold over: the switch is aborted at once
/// (not at `max_hold`), its held writes go to the old pool, and the
/// target is rollback-locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_switch_changes_are_refused_and_a_rollback_aborts_it() {
    let ([blue, green, _gate], s, switch) = switch_in_progress(u64::MAX, 10_000).await;
    let admin = s.admin_addr;
    for (method, path, body) in [
        (
            Method::PUT,
            "/api/v1/weights",
            json!({"blue": 50, "green": 50}),
        ),
        (Method::POST, "/api/v1/reload", json!({})),
        (Method::POST, "/api/v1/rearm", json!({})),
    ] {
        let (code, v) = api(admin, method, path, Some(body), None).await;
        assert_eq!(code, 409, "{path}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("a switch is in progress"),
            "{path}: {v}"
        );
    }
    assert!(
        !switch.is_finished(),
        "the refusals came only after the switch ended"
    );
    let held = {
        let (c, url) = (client(), proxy_url(&s, "/"));
        tokio::spawn(async move { send(&c, Method::POST, url, "held write").await })
    };
    wait_for(Duration::from_secs(5), "the write to be held", || async {
        status(&s).await["held_requests"] == 1
    })
    .await;

    let asked = Instant::now();
    let (code, v) = api(
        admin,
        Method::POST,
        "/api/v1/rollback",
        Some(json!({"reason": "stop it"})),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["phase"], "stable", "{v}");
    assert_eq!(v["rollback_lock"]["pool"], "green", "{v}");
    let (code, v) = switch.await.unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "the abort waited {:?} (for max_hold, 3 s?)",
        asked.elapsed()
    );
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["error"]["code"], "switch_aborted", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("a rollback took over"),
        "{v}"
    );
    let held = held.await.unwrap();
    assert_eq!((held.status, held.upstream()), (200, "blue-1"));
    assert_eq!(green.requests(), 0, "a request reached green");
    assert!(blue.requests() >= 1);
    assert_eq!(status(&s).await["weights"]["blue"], 100.0);
    let kinds: Vec<String> = events(&client(), &s)
        .await
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or("").to_string())
        // Health checks report on their own schedule.
        .filter(|k| !k.starts_with("endpoint_"))
        .collect();
    let tail: Vec<&str> = kinds
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        ["switch_started", "switch_aborted", "rollback"],
        "{kinds:?}"
    );
    s.shutdown().await;
}

/// Shutdown during a held switch aborts it: the held write goes to the old
/// pool at once instead of waiting out `max_hold` (30 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_aborts_a_held_switch_and_releases_its_writes_to_the_old_pool() {
    let (blue, green, gate) = (
        Upstream::start("blue-1").await,
        Upstream::start("green-1").await,
        Upstream::start("gate").await,
    );
    gate.set_gate_open_after(u64::MAX);
    let s = start_proxy(&yaml(&[&blue], &green, &gate)).await;
    wait_healthy(s.admin_addr, "green").await;
    let switch = spawn_switch_to_green(s.admin_addr);
    wait_for(
        Duration::from_secs(5),
        "the switch to hold writes",
        || async { status(&s).await["phase"] == "switching" },
    )
    .await;
    let held = {
        let (c, url) = (client(), proxy_url(&s, "/"));
        tokio::spawn(async move { send(&c, Method::POST, url, "held write").await })
    };
    wait_for(Duration::from_secs(5), "the write to be held", || async {
        status(&s).await["held_requests"] == 1
    })
    .await;
    let asked = Instant::now();
    let stopped = tokio::spawn(s.shutdown());
    let held = held.await.unwrap();
    assert_eq!((held.status, held.upstream()), (200, "blue-1"));
    let (code, v) = switch.await.unwrap();
    assert_eq!(code, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("shutting down"),
        "{v}"
    );
    stopped.await.unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "shutdown waited {:?}",
        asked.elapsed()
    );
    assert_eq!(green.requests(), 0);
}
