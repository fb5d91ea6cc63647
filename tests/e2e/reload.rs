//! Reloads as an operator runs them: what a reload cannot apply stays
//! reported until it matches what runs again, settings read per request
//! (the admin token, `metrics_public`) follow the file.

use crate::support::*;
use http::Method;
use std::time::Duration;

async fn reload(s: &switchyard::server::Server, token: Option<&str>) -> serde_json::Value {
    let (code, v) = api(s.admin_addr, Method::POST, "/api/v1/reload", None, token).await;
    assert_eq!(code, 200, "reload: {v}");
    v
}

/// `restart_needed` compares with the config the process started with: a
/// later no-op reload does not hide it, and restoring the file clears it.
#[tokio::test]
async fn restart_needed_stays_until_the_file_matches_what_runs_again() {
    let (s, path, original, _upstreams, _dir) = from_file().await;

    let more = original.replacen("listeners:\n", "listeners:\n  - bind: \"127.0.0.2:0\"\n", 1);
    std::fs::write(&path, &more).unwrap();
    let v = reload(&s, None).await;
    let note = v["restart_needed"].as_str().unwrap_or("");
    assert!(note.contains("listeners"), "{v}");
    // The same file again (a SIGHUP from config management): still true.
    let v = reload(&s, None).await;
    assert!(
        v["restart_needed"]
            .as_str()
            .unwrap_or("")
            .contains("listeners"),
        "a second reload hid what still needs a restart: {v}"
    );
    let st = status(&s).await;
    assert!(
        st["config"]["restart_needed"]
            .as_str()
            .unwrap_or("")
            .contains("listeners"),
        "{st}"
    );
    // Back to what runs: nothing needs a restart any more.
    std::fs::write(&path, &original).unwrap();
    let v = reload(&s, None).await;
    assert!(v["restart_needed"].is_null(), "{v}");
    assert!(status(&s).await["config"]["restart_needed"].is_null());
    s.shutdown().await;
}

/// A rotated `token_file` (a Kubernetes Secret update) is put in force by
/// the reload; so is `metrics_public`. Neither needs a restart.
#[tokio::test]
async fn a_reload_puts_a_rotated_admin_token_and_metrics_public_in_force() {
    let blue = Upstream::start("blue-1").await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "old-token\n").unwrap();
    let yaml = |public: bool| {
        config_yaml(&[blue.addr], &[blue.addr], "").replacen(
            "admin:\n  bind: \"127.0.0.1:0\"\n",
            &format!(
                "admin:\n  bind: \"127.0.0.1:0\"\n  token_file: \"{}\"\n  metrics_public: {public}\n",
                token_file.display()
            ),
            1,
        )
    };
    let path = dir.path().join("cfg.yaml");
    std::fs::write(&path, yaml(false)).unwrap();
    let s = start_proxy_from_file(&path).await;
    let status_code = |token: &'static str| async move {
        api(
            s.admin_addr,
            Method::GET,
            "/api/v1/status",
            None,
            Some(token),
        )
        .await
        .0
    };
    assert_eq!(status_code("old-token").await, 200);

    std::fs::write(&token_file, "new-token\n").unwrap();
    let v = reload(&s, Some("old-token")).await;
    assert_eq!(v["changed"], true, "{v}");
    assert!(v["restart_needed"].is_null(), "{v}");
    assert_eq!(status_code("new-token").await, 200);
    assert_eq!(status_code("old-token").await, 401);

    let metrics = || async {
        api(s.admin_addr, Method::GET, "/metrics", None, None)
            .await
            .0
    };
    assert_eq!(metrics().await, 401);
    std::fs::write(&path, yaml(true)).unwrap();
    let v = reload(&s, Some("new-token")).await;
    assert!(v["restart_needed"].is_null(), "{v}");
    assert_eq!(metrics().await, 200);
    s.shutdown().await;
}

/// A reload that changes nothing keeps the generation, so a script's
/// `if_generation` survives config management's SIGHUPs; the second of
/// two reloads of one edit (`POST /reload`, then the watcher) is such a
/// reload.
#[tokio::test]
async fn a_reload_that_changes_nothing_keeps_the_generation() {
    let (s, path, _, [blue, green], _dir) = from_file().await;
    let generation = status(&s).await["generation"].as_u64().unwrap();

    let v = reload(&s, None).await;
    assert_eq!(v["changed"], false, "{v}");
    assert_eq!(v["generation"].as_u64(), Some(generation), "{v}");

    std::fs::write(
        &path,
        config_yaml(&[blue.addr], &[green.addr], "retries: {attempts: 2}"),
    )
    .unwrap();
    // The watcher may have applied the edit first: either way the config
    // changed and the deployment state (weights, phase, lock) did not, so
    // the generation, which counts changes of deployment state, stays.
    let v = reload(&s, None).await;
    let edited = v["generation"].as_u64().unwrap();
    assert_eq!(edited, generation, "{v}");
    let events = crate::support::admin::events(&client(), &s).await;
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "config_reloaded" && e["to"]["changed"] == true),
        "the edit was not applied: {events:?}"
    );
    // What the watcher would do next: read the same edit again.
    let v = reload(&s, None).await;
    assert_eq!(v["changed"], false, "{v}");
    assert_eq!(v["generation"].as_u64(), Some(edited), "{v}");
    // A weights change guarded by the generation read before the reloads
    // of nothing goes through.
    let (code, v) = api(
        s.admin_addr,
        Method::PUT,
        "/api/v1/weights",
        Some(serde_json::json!({"blue": 90, "green": 10, "if_generation": edited})),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    s.shutdown().await;
}

/// The file disappears, a reload fails to read it, and it comes back
/// unchanged: the watcher reloads it, and the error clears.
#[tokio::test]
async fn last_error_clears_when_the_file_comes_back_unchanged() {
    let (s, path, _, _upstreams, _dir) = from_file().await;
    let aside = path.with_extension("yaml.bak");

    std::fs::rename(&path, &aside).unwrap();
    let (code, v) = api(s.admin_addr, Method::POST, "/api/v1/reload", None, None).await;
    assert_eq!(code, 422, "{v}");
    assert!(!status(&s).await["config"]["last_error"].is_null());
    let generation = status(&s).await["generation"].as_u64().unwrap();

    std::fs::rename(&aside, &path).unwrap();
    wait_for(Duration::from_secs(10), "last_error to clear", || async {
        status(&s).await["config"]["last_error"].is_null()
    })
    .await;
    assert_eq!(
        status(&s).await["generation"].as_u64(),
        Some(generation),
        "the same file again is no change"
    );
    s.shutdown().await;
}

/// A proxy started from a config file (blue and green upstreams, defaults
/// otherwise) that the test then edits: the proxy, the file, what it held
/// at start, the upstreams, and the directory's guard.
async fn from_file() -> (
    switchyard::server::Server,
    std::path::PathBuf,
    String,
    [Upstream; 2],
    tempfile::TempDir,
) {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cfg.yaml");
    let original = config_yaml(&[blue.addr], &[green.addr], "");
    std::fs::write(&path, &original).unwrap();
    let s = start_proxy_from_file(&path).await;
    (s, path, original, [blue, green], dir)
}
