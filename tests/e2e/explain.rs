//! The sequential judge and `explain` (SPEC.md section 10) on the real
//! proxy: a green failing more than blue is rolled back with reason
//! `sequential` and its evidence; both pools failing alike is no rollback;
//! `GET /api/v1/explain` and the real `switchyard ctl explain` answer during
//! a rollout with each rule's and check's value, threshold, verdict and
//! what it waits for.

use crate::support::hooks::CheckValues;
use crate::support::process::BIN;
use crate::support::*;
use http::Method;
use serde_json::{json, Value};
use std::time::Duration;
use switchyard::server::Server;

/// No ejections (failing upstreams stay in their pool), a short grace.
const SEQUENTIAL: &str = "outlier_detection:\n  consecutive_failures: 100000\nrollout:\n  bake_time: 0s\nrollback:\n  judge: sequential\n  grace: 1s\n";

async fn explain(s: &Server) -> Value {
    let (code, v) = api(s.admin_addr, Method::GET, "/api/v1/explain", None, None).await;
    assert_eq!(code, 200, "{v}");
    v
}

fn rule<'a>(e: &'a Value, name: &str) -> &'a Value {
    e["rollback"]["rules"]
        .as_array()
        .and_then(|r| r.iter().find(|x| x["rule"] == name))
        .unwrap_or_else(|| panic!("no rule {name} in {e}"))
}

async fn start_rollout(s: &Server, steps: Value) {
    wait_healthy(s.admin_addr, "green").await;
    let body = json!({"to": "green", "steps": steps, "step_interval": "1h"});
    let (code, v) = api(
        s.admin_addr,
        Method::POST,
        "/api/v1/rollout",
        Some(body),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
}

async fn newest(s: &Server, kind: &str) -> Option<Value> {
    let (_, v) = api(
        s.admin_addr,
        Method::GET,
        "/api/v1/events?limit=100",
        None,
        None,
    )
    .await;
    v["events"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["kind"] == kind).cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_green_failing_more_than_blue_is_rolled_back_by_the_sequential_judge() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    green.set_failure_rate(0.2);
    let s = start_proxy(&config_yaml(&[blue.addr], &[green.addr], SEQUENTIAL)).await;
    let load = Load::start(proxy_url(&s, "/"), 4);
    start_rollout(&s, json!([50, 100])).await;
    let rb = wait_until(
        Duration::from_secs(30),
        "the sequential rollback",
        || async { newest(&s, "rollback").await },
    )
    .await;
    load.finish().await;
    assert_eq!(rb["actor"], "auto", "{rb}");
    let reason = rb["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("sequential judge (errors)"), "{rb}");
    let e = &rb["stats"]["sequential"];
    assert_eq!(e["test"], "errors", "{rb}");
    assert!(
        e["evidence"].as_f64().unwrap() >= e["needed"].as_f64().unwrap(),
        "{rb}"
    );
    assert!(e["candidate_rate"].as_f64().unwrap() > 0.05, "{rb}");
    assert!(e["live_rate"].as_f64().unwrap() < 0.01, "{rb}");
    let metrics = metrics_text(&s).await;
    assert!(
        metrics.contains("switchyard_rollbacks_total{reason=\"sequential\"} 1"),
        "{metrics}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slower_green_is_rolled_back_on_its_latency_distribution() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    // No errors anywhere: only the latency half can see it.
    green.set_delay_ms(50);
    let s = start_proxy(&config_yaml(&[blue.addr], &[green.addr], SEQUENTIAL)).await;
    let load = Load::start(proxy_url(&s, "/"), 4);
    start_rollout(&s, json!([50, 100])).await;
    let rb = wait_until(Duration::from_secs(30), "the latency rollback", || async {
        newest(&s, "rollback").await
    })
    .await;
    load.finish().await;
    let reason = rb["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("sequential judge (latency)"), "{rb}");
    assert!(reason.contains("slower than the live pool's p99"), "{rb}");
    let e = &rb["stats"]["sequential"];
    assert_eq!(e["test"], "latency", "{rb}");
    // (Under a loaded machine blue's own p99 can near 50 ms: the shares
    // vary, the ordering and the evidence do not.)
    let (cand, live) = (
        e["candidate_rate"].as_f64().unwrap(),
        e["live_rate"].as_f64().unwrap(),
    );
    assert!(cand > live + 0.005, "{rb}");
    assert!(live <= 0.01, "{rb}");
    assert!(e["cut_ms"].as_f64().is_some(), "{rb}");
    assert!(
        e["evidence"].as_f64().unwrap() >= e["needed"].as_f64().unwrap(),
        "{rb}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_pools_failing_alike_is_no_sequential_rollback() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    blue.set_failure_rate(0.3);
    green.set_failure_rate(0.3);
    let s = start_proxy(&config_yaml(&[blue.addr], &[green.addr], SEQUENTIAL)).await;
    let load = Load::start(proxy_url(&s, "/"), 4);
    start_rollout(&s, json!([50, 100])).await;
    // 400 candidate requests at 30% errors: the threshold rules (a 1%
    // ceiling) would have rolled back long before.
    let e = wait_until(Duration::from_secs(60), "400 weighed requests", || async {
        let e = explain(&s).await;
        let r = rule(&e, "sequential_errors");
        let weighed = r["value"].is_number() && e["rollback"]["verdict"] == "pass";
        let enough = e["rollback"]["rules"][0]["detail"]
            .as_str()
            .and_then(|d| d.split(" of ").nth(1))
            .and_then(|d| d.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n >= 400);
        (weighed && enough).then_some(e)
    })
    .await;
    load.finish().await;
    assert!(newest(&s, "rollback").await.is_none(), "rolled back: {e}");
    let r = rule(&e, "sequential_errors");
    assert_eq!(r["verdict"], "pass", "{e}");
    assert!(
        r["value"].as_f64().unwrap() < r["threshold"].as_f64().unwrap(),
        "{e}"
    );
    assert_eq!(status(&s).await["phase"], "rolling");
    s.shutdown().await;
}

/// `switchyard ctl ARGS` (blocking: from `block_in_place`).
fn ctl(args: &[&str]) -> (Option<i32>, String, String) {
    let o = std::process::Command::new(BIN)
        .arg("ctl")
        .args(args)
        .env_remove("SWITCHYARD_ADMIN")
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .output()
        .expect("run switchyard ctl");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_answers_during_a_rollout_via_the_api_and_ctl() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let values = CheckValues::start(100, 100).await;
    let extra = format!(
        "rollout:\n  bake_time: 0s\nrollback:\n  grace: 3s\nanalysis:\n  checks:\n    - name: orders\n      http: {{ url: \"{}\" }}\n      compare: baseline\n      min_ratio: 0.9\n      interval: 100ms\n      failure_limit: 1000\n",
        values.url()
    );
    let s = start_proxy(&config_yaml(&[blue.addr], &[green.addr], &extra)).await;
    let before = explain(&s).await;
    assert_eq!(before["phase"], "stable", "{before}");
    assert_eq!(before["rollback"]["verdict"], "not_armed", "{before}");
    start_rollout(&s, json!([20, 50, 100])).await;
    // Within grace, with no traffic.
    let e = explain(&s).await;
    assert_eq!(e["phase"], "rolling", "{e}");
    assert_eq!(e["rollback"]["judge"], "threshold", "{e}");
    let waiting = e["rollback"]["waiting_for"].as_str().unwrap_or_default();
    assert!(waiting.starts_with("grace ends in "), "{e}");
    let rate = rule(&e, "max_error_rate");
    assert_eq!(rate["threshold"], 0.01, "{e}");
    assert_eq!(rate["verdict"], "waiting", "{e}");
    assert_eq!(
        rate["waiting_for"], "0 of 50 requests in the 60s window",
        "{e}"
    );
    assert_eq!(rule(&e, "max_p99_latency")["verdict"], "off", "{e}");
    assert_eq!(e["rollout"]["step"], 0, "{e}");
    // After grace, with no traffic: what the rollback waits for.
    let e = wait_until(
        Duration::from_secs(20),
        "grace over, a passing check",
        || async {
            let e = explain(&s).await;
            let done = e["rollback"]["waiting_for"] == "0 of 50 requests"
                && e["checks"][0]["verdict"] == "pass";
            done.then_some(e)
        },
    )
    .await;
    let check = &e["checks"][0];
    assert_eq!(check["name"], "orders", "{e}");
    assert_eq!(check["value"], 1.0, "{e}");
    assert_eq!(check["threshold"], "candidate/live >= 0.9", "{e}");
    let next = e["rollout"]["waiting_for"].as_str().unwrap_or_default();
    assert!(next.starts_with("next step in "), "{e}");
    // No data from the check: inconclusive, and it says why.
    values.set("green", -1);
    let e = wait_until(Duration::from_secs(20), "an inconclusive check", || async {
        let e = explain(&s).await;
        (e["checks"][0]["verdict"] == "inconclusive").then_some(e)
    })
    .await;
    let why = e["checks"][0]["waiting_for"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("inconclusive: ") && why.contains("503"),
        "{e}"
    );
    let summary = e["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("check orders: inconclusive"), "{e}");
    // The automatic pause carries its evidence: the checks and the rules.
    let paused = wait_until(Duration::from_secs(10), "the automatic pause", || async {
        newest(&s, "rollout_paused").await
    })
    .await;
    assert_eq!(paused["actor"], "auto", "{paused}");
    assert_eq!(
        paused["stats"]["checks"][0]["verdict"], "inconclusive",
        "{paused}"
    );
    assert_eq!(
        paused["stats"]["rollback"]["rules"][0]["rule"], "max_error_rate",
        "{paused}"
    );
    let e = wait_until(Duration::from_secs(10), "the pause in explain", || async {
        let e = explain(&s).await;
        (e["rollout"]["paused"] == true).then_some(e)
    })
    .await;
    let w = e["rollout"]["waiting_for"].as_str().unwrap_or_default();
    assert!(w.starts_with("paused: "), "{e}");
    // The real ctl binary, as text and as JSON.
    let admin = format!("http://{}", s.admin_addr);
    let (code, out, err) = tokio::task::block_in_place(|| ctl(&["--admin", &admin, "explain"]));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.starts_with("blue live, green candidate, phase "),
        "{out}"
    );
    let row = out
        .lines()
        .find(|l| l.trim_start().starts_with("max_error_rate "))
        .expect("a max_error_rate row");
    assert!(
        row.contains("0.01") && row.contains("of 50 requests"),
        "{out}"
    );
    let check_row = out
        .lines()
        .find(|l| l.trim_start().starts_with("orders "))
        .expect("a check row");
    assert!(check_row.contains("inconclusive"), "{out}");
    let (code, out, err) =
        tokio::task::block_in_place(|| ctl(&["--admin", &admin, "--json", "explain"]));
    assert_eq!(code, Some(0), "{out}{err}");
    let v: Value = serde_json::from_str(&out).expect("ctl --json explain is JSON");
    assert_eq!(v["checks"][0]["name"], "orders", "{v}");
    assert!(
        v["rollback"]["rules"]
            .as_array()
            .is_some_and(|r| r.len() == 3),
        "{v}"
    );
    s.shutdown().await;
}
