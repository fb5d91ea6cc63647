//! Operator input at its extremes: durations so long that the times they
//! lead to cannot be written, and a state file that holds such a time. The
//! proxy refuses the first with the key named and sets the second aside; it
//! never crashes (a panic aborts the release build).

use crate::support::*;
use http::Method;
use serde_json::json;
use switchyard::control::document::DOC_VERSION;

#[tokio::test]
async fn a_rollout_step_interval_past_the_bound_is_refused_and_the_proxy_keeps_serving() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let s = start_proxy(&config_yaml(&[blue.addr], &[green.addr], "")).await;
    let (code, v) = api(
        s.admin_addr,
        Method::POST,
        "/api/v1/rollout",
        Some(json!({"to": "green", "step_interval": "99999999999h"})),
        None,
    )
    .await;
    assert_eq!(code, 422, "{v}");
    let message = v["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("step_interval") && message.contains("maximum of 1 year"),
        "{v}"
    );
    let st = status(&s).await;
    assert_eq!(st["phase"], "stable", "{st}");
    assert!(st["rollout"].is_null(), "{st}");
    s.shutdown().await;
}

/// An older build persisted a bake of 10000 years and then crashed at
/// every start formatting its end: such a file is set aside like a
/// corrupt one, and the proxy starts from the config.
#[tokio::test]
async fn a_state_file_with_a_time_past_year_9999_is_set_aside_at_start() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let saved = json!({
        "version": DOC_VERSION,
        "generation": 9,
        "live": "blue",
        "weights": {"blue": 0.0, "green": 100.0},
        "rollout": null,
        "bake": {"pool": "green", "until_unix_ms": 317_371_251_631_413u64},
        "rollback_lock": null,
        "saved_at": "2026-11-20T10:00:00Z"
    });
    std::fs::write(&path, saved.to_string()).unwrap();
    let yaml = config_yaml(&[blue.addr], &[green.addr], "").replace(
        "state_file: null",
        &format!("state_file: \"{}\"", path.display()),
    );
    let s = start_proxy(&yaml).await;
    let st = status(&s).await;
    assert_eq!(
        st["weights"]["blue"], 100.0,
        "started from the config: {st}"
    );
    assert!(st["bake"].is_null(), "{st}");
    let c = client();
    let events = admin::events(&c, &s).await;
    let note = events
        .iter()
        .find(|e| e["kind"] == "state_file_error")
        .unwrap_or_else(|| panic!("no state_file_error event: {events:?}"));
    assert!(
        note["reason"]
            .as_str()
            .unwrap_or("")
            .contains("past year 9999"),
        "{note}"
    );
    let kept = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().contains(".corrupt-"));
    assert!(kept, "the old file is kept aside");
    s.shutdown().await;
}
