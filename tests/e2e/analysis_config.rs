//! The `analysis` and `notify` sections as an operator meets them, with the
//! real binary: `switchyard check` names every mistake at its file:line:col
//! (a bad PromQL placeholder, min_ratio above max_ratio, an unknown event
//! kind, a missing secret file), and a SIGHUP reload of such a file is
//! refused while the old config keeps serving: requests still answer, and
//! its notifications (signed with the secret beside the config file) still
//! go out.

use crate::support::hooks::Receiver;
use crate::support::process::{ProxyProcess, BIN};
use crate::support::*;
use http::Method;
use serde_json::json;
use std::time::Duration;

fn good(blue: &Upstream, green: &Upstream, hook: &Receiver) -> String {
    format!(
        "listeners:\n  - bind: \"{{PROXY}}\"\nadmin:\n  bind: \"{{ADMIN}}\"\npools:\n  blue:\n    endpoints: [\"{}\"]\n  green:\n    endpoints: [\"{}\"]\nstate_file: null\nanalysis:\n  checks:\n    - name: orders\n      prometheus: {{ url: \"http://127.0.0.1:9\", query: 'sum(rate(orders_total{{pool=\"{{{{pool}}}}\"}}[1m]))' }}\n      compare: baseline\n      min_ratio: 0.9\nnotify:\n  - url: \"{}\"\n    events: [switch_completed]\n    secret_file: hook.secret\n",
        blue.addr,
        green.addr,
        hook.url("/hooks")
    )
}

/// `good` with the four mistakes, each on a line of its own.
fn bad(good: &str) -> String {
    good.replace("{{pool}}", "{{pol}}")
        .replace(
            "      min_ratio: 0.9\n",
            "      min_ratio: 1.5\n      max_ratio: 1.1\n",
        )
        .replace(
            "events: [switch_completed]",
            "events: [switch_completed, rolback]",
        )
        .replace("secret_file: hook.secret", "secret_file: missing.secret")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_each_mistake_at_its_place_and_a_reload_keeps_the_old_config() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let hook = Receiver::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    // Relative to the config file's folder, not the working directory.
    std::fs::write(dir.path().join("hook.secret"), "s3cret\n").unwrap();
    let p = ProxyProcess::start(dir.path(), &good(&blue, &green, &hook)).await;
    let text = std::fs::read_to_string(&p.config).unwrap();
    std::fs::write(&p.config, bad(&text)).unwrap();

    let out = std::process::Command::new(BIN)
        .args(["check", "-c"])
        .arg(&p.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    let file = p.config.display().to_string();
    for (line, col, what) in [
        (
            14,
            55,
            "analysis.checks[0].prometheus.query: unknown placeholder `{{pol}}`",
        ),
        (
            16,
            18,
            "analysis.checks[0].min_ratio: min_ratio (1.5) is above max_ratio (1.1)",
        ),
        (20, 32, "notify[0].events[1]: unknown event kind `rolback`"),
        (21, 18, "notify[0].secret_file: `"),
    ] {
        let at = format!("{file}:{line}:{col}: {what}");
        assert!(said.contains(&at), "no `{at}` in:\n{said}");
    }
    // Beside the config file, not in the working directory.
    let missing = dir.path().join("missing.secret").display().to_string();
    assert!(
        said.contains(&format!("`{missing}` does not exist")),
        "{said}"
    );

    // The running proxy refuses the file on SIGHUP and keeps the old one.
    p.signal("HUP");
    wait_for(Duration::from_secs(10), "the refused reload", || async {
        let (_, ev) = api(p.admin, Method::GET, "/api/v1/events", None, None).await;
        ev["events"]
            .as_array()
            .is_some_and(|v| v.iter().any(|e| e["kind"] == "config_rejected"))
    })
    .await;
    let (_, st) = api(p.admin, Method::GET, "/api/v1/status", None, None).await;
    let last = &st["config"]["last_error"];
    assert_eq!(
        (&last["line"], &last["column"]),
        (&json!(14), &json!(55)),
        "{st}"
    );
    assert!(
        last["message"].as_str().unwrap_or("").contains("{{pol}}"),
        "{st}"
    );
    let r = send(&client(), Method::GET, format!("http://{}/", p.proxy), "").await;
    assert_eq!(r.status, 200);
    // The old notify entry (and its secret) is still in force.
    wait_healthy(p.admin, "green").await;
    let (code, v) = api(
        p.admin,
        Method::POST,
        "/api/v1/switch",
        Some(json!({"to": "green"})),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    wait_for(
        Duration::from_secs(10),
        "the switch's notification",
        || async { !hook.accepted("switch_completed").is_empty() },
    )
    .await;
    let d = hook.deliveries();
    assert_eq!(d.len(), 1, "{d:?}");
    let sig = d[0].headers["x-switchyard-signature"].to_str().unwrap();
    assert_eq!(
        sig,
        switchyard::control::notify::signature(b"s3cret", &d[0].body)
    );
}
