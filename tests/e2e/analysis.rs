//! Analysis (SPEC.md section 10) end to end: checks against a real check
//! URL roll back a green whose business value drops while it answers 200,
//! a step waits for the checks, no data pauses the rollout, and `explain`
//! answers during a rollout. (The Prometheus-backed test is at the end,
//! ignored here: `.ci/checks/prometheus-analysis.sh` runs it with a real
//! Prometheus.)

use crate::support::hooks::CheckValues;
use crate::support::*;
use http::Method;
use serde_json::{json, Value};
use std::time::Duration;
use switchyard::server::Server;

/// A baseline check on `url` every 100 ms; the threshold rules out of the way.
fn check_config(url: &str, failure_limit: u32) -> String {
    format!(
        "outlier_detection:\n  consecutive_failures: 100000\nrollout:\n  bake_time: 0s\nanalysis:\n  checks:\n    - name: orders\n      http: {{ url: \"{url}\" }}\n      compare: baseline\n      min_ratio: 0.9\n      interval: 100ms\n      failure_limit: {failure_limit}\n"
    )
}

async fn events(s: &Server) -> Vec<Value> {
    let (_, v) = api(
        s.admin_addr,
        Method::GET,
        "/api/v1/events?limit=200",
        None,
        None,
    )
    .await;
    v["events"].as_array().cloned().unwrap_or_default()
}

/// The newest event of `kind`.
async fn newest(s: &Server, kind: &str) -> Option<Value> {
    events(s).await.into_iter().find(|e| e["kind"] == kind)
}

async fn start_rollout(s: &Server, steps: Value, interval: &str) {
    wait_healthy(s.admin_addr, "green").await;
    let (code, v) = api(
        s.admin_addr,
        Method::POST,
        "/api/v1/rollout",
        Some(json!({"to": "green", "steps": steps, "step_interval": interval})),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
}

/// The value of one series on `/metrics` (0 when absent).
async fn series(s: &Server, name: &str) -> f64 {
    metrics_text(s)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_green_whose_business_value_drops_is_rolled_back_by_the_check() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let values = CheckValues::start(100, 100).await;
    let extra = check_config(&values.url(), 2);
    let s = start_proxy(&config_yaml(&[blue.addr], &[green.addr], &extra)).await;
    let load = Load::start(proxy_url(&s, "/"), 2);
    start_rollout(&s, json!([20, 50, 100]), "1h").await;
    wait_for(Duration::from_secs(10), "a passing reading", || async {
        series(
            &s,
            "switchyard_checks_total{check=\"orders\",result=\"pass\"}",
        )
        .await
            >= 1.0
    })
    .await;
    // Orders stop on green; its HTTP answers stay 200.
    values.set("green", 10);
    let rb = wait_until(Duration::from_secs(10), "the check's rollback", || async {
        newest(&s, "rollback").await
    })
    .await;
    let samples = load.finish().await;
    assert!(
        samples.iter().all(|x| x.status == 200),
        "every answer stayed 200"
    );
    assert_eq!(rb["actor"], "auto", "{rb}");
    let reason = rb["reason"].as_str().unwrap_or("");
    assert!(
        reason.starts_with("check: check orders failed 2 times in a row"),
        "{rb}"
    );
    assert_eq!(rb["stats"]["check"], "orders", "{rb}");
    assert_eq!(rb["stats"]["candidate"], 10.0, "{rb}");
    assert_eq!(rb["stats"]["live"], 100.0, "{rb}");
    assert_eq!(rb["stats"]["ratio"], 0.1, "{rb}");
    assert_eq!(rb["stats"]["threshold"], "candidate/live >= 0.9", "{rb}");
    let st = status(&s).await;
    assert_eq!(st["weights"]["blue"], 100.0, "{st}");
    assert_eq!(st["rollback_lock"]["pool"], "green", "{st}");
    assert_eq!(
        series(&s, "switchyard_rollbacks_total{reason=\"check\"}").await,
        1.0
    );
    assert_eq!(
        series(
            &s,
            "switchyard_check_value{check=\"orders\",pool=\"green\"}"
        )
        .await,
        10.0
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_data_pauses_the_rollout_and_a_step_waits_for_the_checks() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    // The check URL answers 503 for green: no data.
    let values = CheckValues::start(100, -1).await;
    let extra = check_config(&values.url(), 1000) + "rollback:\n  grace: 2s\n";
    let s = start_proxy(&config_yaml(&[blue.addr], &[green.addr], &extra)).await;
    let began = tokio::time::Instant::now();
    start_rollout(&s, json!([10, 50, 100]), "100ms").await;
    let paused = wait_until(Duration::from_secs(10), "the pause", || async {
        newest(&s, "rollout_paused").await
    })
    .await;
    // Readings every 100 ms from the weight change on, but within grace
    // (a candidate that may have no data yet) they only hold the step.
    assert!(
        began.elapsed() >= Duration::from_secs(2),
        "paused {:?} after the rollout began, within grace",
        began.elapsed()
    );
    assert_eq!(paused["actor"], "auto", "{paused}");
    let why = paused["reason"].as_str().unwrap_or("");
    assert!(why.contains("check orders is inconclusive"), "{paused}");
    assert!(why.contains("answered 503"), "{paused}");
    let st = status(&s).await;
    assert_eq!(st["phase"], "paused", "{st}");
    assert_eq!(st["rollout"]["step"], 1, "{st}");
    assert!(
        st["rollback_lock"].is_null(),
        "no rollback on no data: {st}"
    );
    // Failing (but under failure_limit) after a resume: the due step waits.
    values.set("green", 50);
    let (code, v) = api(
        s.admin_addr,
        Method::POST,
        "/api/v1/rollout/resume",
        None,
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    wait_for(Duration::from_secs(10), "five failing readings", || async {
        series(
            &s,
            "switchyard_checks_total{check=\"orders\",result=\"fail\"}",
        )
        .await
            >= 5.0
    })
    .await;
    let st = status(&s).await;
    assert_eq!(st["phase"], "rolling", "{st}");
    assert_eq!(
        st["rollout"]["step"], 1,
        "the step waits for the check: {st}"
    );
    assert_eq!(st["weights"]["green"], 10.0, "{st}");
    values.set("green", 100);
    wait_for(
        Duration::from_secs(10),
        "the next steps once the check passes",
        || async {
            let st = status(&s).await;
            st["rollout"]["step"].as_u64().unwrap_or(0) >= 2 || st["live"] == "green"
        },
    )
    .await;
    s.shutdown().await;
}
