//! What an operator reads: a manual split is called one, a bake says which
//! pool serves, and a manual rollback's reason is not `manual: manual
//! rollback`. Checked on the API and in `ctl status` as printed.

use crate::support::process::BIN;
use crate::support::*;
use http::Method;
use serde_json::json;

fn ctl_status(admin: std::net::SocketAddr) -> String {
    let o = std::process::Command::new(BIN)
        .args(["ctl", "--admin", &format!("http://{admin}"), "status"])
        .env_remove("SWITCHYARD_ADMIN")
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .env("NO_COLOR", "1")
        .output()
        .expect("run ctl status");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_a_bake_and_a_manual_rollback_are_called_what_they_are() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let s = start_proxy(&config_yaml(&[blue.addr], &[green.addr], "")).await;
    let admin = s.admin_addr;
    wait_healthy(admin, "green").await;

    let (code, v) = api(
        admin,
        Method::PUT,
        "/api/v1/weights",
        Some(json!({"blue": 90, "green": 10})),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        v["phase"], "split",
        "a manual split is not a paused rollout: {v}"
    );
    let out = tokio::task::block_in_place(|| ctl_status(admin));
    assert!(out.starts_with("phase manual split "), "{out}");
    assert!(!out.contains("paused"), "{out}");

    let (code, v) = api(
        admin,
        Method::POST,
        "/api/v1/switch",
        Some(json!({"to": "green"})),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let out = tokio::task::block_in_place(|| ctl_status(admin));
    assert!(out.starts_with("phase baking "), "{out}");
    assert!(
        out.contains("baking   green serves all traffic; blue is kept warm"),
        "{out}"
    );

    let (code, v) = api(admin, Method::POST, "/api/v1/rollback", None, None).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["rollback_lock"]["reason"], "manual", "{v}");
    let (_, ev) = api(admin, Method::GET, "/api/v1/events?limit=1", None, None).await;
    assert_eq!(ev["events"][0]["kind"], "rollback", "{ev}");
    assert_eq!(ev["events"][0]["reason"], "manual", "{ev}");

    // A reason given is kept after the word.
    let (code, _) = api(admin, Method::POST, "/api/v1/rearm", None, None).await;
    assert_eq!(code, 200);
    let (code, _) = api(
        admin,
        Method::PUT,
        "/api/v1/weights",
        Some(json!({"blue": 50, "green": 50})),
        None,
    )
    .await;
    assert_eq!(code, 200);
    let (code, v) = api(
        admin,
        Method::POST,
        "/api/v1/rollback",
        Some(json!({"reason": "bad deploy"})),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["rollback_lock"]["reason"], "manual: bad deploy", "{v}");
    s.shutdown().await;
}
