//! The rollback lock covers weights: neither a manual split nor a change
//! of `traffic.initial` gives a locked pool traffic unless forced.

use crate::support::*;
use http::Method;
use serde_json::json;

#[tokio::test]
async fn weights_and_traffic_initial_do_not_give_a_locked_pool_traffic() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cfg.yaml");
    std::fs::write(&path, config_yaml(&[blue.addr], &[green.addr], "")).unwrap();
    let s = start_proxy_from_file(&path).await;
    let call = |method: Method, route: &'static str, body: serde_json::Value| {
        api(s.admin_addr, method, route, Some(body), None)
    };

    let (code, v) = call(
        Method::PUT,
        "/api/v1/weights",
        json!({"blue": 90, "green": 10}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = call(
        Method::POST,
        "/api/v1/rollback",
        json!({"reason": "bad deploy"}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["rollback_lock"]["pool"], "green", "{v}");

    // Traffic to the locked pool: refused like a switch or a rollout.
    let (code, v) = call(
        Method::PUT,
        "/api/v1/weights",
        json!({"blue": 80, "green": 20}),
    )
    .await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["error"]["code"], "conflict", "{v}");
    let message = v["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("pool green is rollback-locked") && message.contains("rearm first"),
        "{v}"
    );
    assert_eq!(status(&s).await["weights"]["green"], 0.0);

    // Unless forced; and taking traffic away from it needs no force.
    let (code, v) = call(
        Method::PUT,
        "/api/v1/weights",
        json!({"blue": 80, "green": 20, "force": true}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (code, v) = call(
        Method::PUT,
        "/api/v1/weights",
        json!({"blue": 100, "green": 0}),
    )
    .await;
    assert_eq!(code, 200, "{v}");

    // A GitOps re-sync of traffic.initial: the rest of the file applies,
    // the weights do not, and the answer and the event say so.
    std::fs::write(
        &path,
        config_yaml(
            &[blue.addr],
            &[green.addr],
            "traffic:\n  initial: {blue: 50, green: 50}\nretries: {attempts: 2}",
        ),
    )
    .unwrap();
    let (code, v) = call(Method::POST, "/api/v1/reload", json!({})).await;
    assert_eq!(code, 200, "{v}");
    let st = status(&s).await;
    assert_eq!(st["weights"]["green"], 0.0, "{st}");
    assert_eq!(st["rollback_lock"]["pool"], "green", "{st}");
    // The watcher may have applied the file first: then its event says it.
    let events = admin::events(&client(), &s).await;
    let reloaded = events
        .iter()
        .filter(|e| e["kind"] == "config_reloaded")
        .find(|e| e["to"]["changed"] == true)
        .unwrap_or_else(|| panic!("no config_reloaded event: {events:?}"));
    assert!(
        reloaded["reason"]
            .as_str()
            .unwrap_or("")
            .contains("traffic.initial not applied: refused: pool green is rollback-locked"),
        "{reloaded}"
    );
    if v["changed"] == true {
        assert!(
            v["weights_not_applied"]
                .as_str()
                .unwrap_or("")
                .contains("rollback-locked"),
            "{v}"
        );
    }
    s.shutdown().await;
}
