//! Step-by-step rollouts and automatic rollback, decided in-process from the
//! request stream.

use crate::support::*;
use http::Method;
use serde_json::json;
use std::time::Duration;
use switchyard::server::Server;

async fn events(s: &Server) -> Vec<serde_json::Value> {
    let (_, v) = api(
        s.admin_addr,
        Method::GET,
        "/api/v1/events?limit=200",
        None,
        None,
    )
    .await;
    let mut list = v["events"].as_array().unwrap().clone();
    list.reverse();
    list
}

fn kinds(list: &[serde_json::Value]) -> Vec<String> {
    list.iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

/// Fast rollback rules for tests; outlier ejection out of the way, since
/// these tests are about the rollback rules alone.
const FAST_ROLLBACK: &str = "outlier_detection:\n  consecutive_failures: 100000\nrollback:\n  interval: 250ms\n  window: 10s\n  min_requests: 20\n  consecutive_breaches: 2\n  grace: 0s\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_steps_through_and_bakes_to_stable_on_green() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let extra = "rollout:\n  bake_time: 1s\n";
    let s = start_proxy(&config_yaml(&[blue.addr], &[green.addr], extra)).await;
    let load = Load::start(proxy_url(&s, "/"), 2);
    wait_healthy(s.admin_addr, "green").await;
    let (code, v) = api(
        s.admin_addr,
        Method::POST,
        "/api/v1/rollout",
        Some(json!({"to": "green", "steps": [10, 50, 100], "step_interval": "1s"})),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["phase"], "rolling");
    assert_eq!(v["weights"]["green"], 10.0);
    assert_eq!(v["rollout"]["step"], 1);
    // A second rollout while one runs: 409.
    let (code, _) = api(
        s.admin_addr,
        Method::POST,
        "/api/v1/rollout",
        Some(json!({"to": "green"})),
        None,
    )
    .await;
    assert_eq!(code, 409);
    wait_for(Duration::from_secs(10), "baking on green", || async {
        status(&s).await["phase"] == "baking"
    })
    .await;
    let st = status(&s).await;
    assert_eq!(st["weights"]["green"], 100.0);
    assert_eq!(
        st["live"], "blue",
        "blue stays the rollback target while baking"
    );
    wait_for(Duration::from_secs(10), "stable on green", || async {
        let st = status(&s).await;
        st["phase"] == "stable" && st["live"] == "green"
    })
    .await;
    let samples = load.finish().await;
    assert!(samples.iter().all(|x| x.status == 200));
    let k = kinds(&events(&s).await);
    let expected = [
        "rollout_started",
        "rollout_step",
        "rollout_step",
        "rollout_completed",
        "bake_completed",
    ];
    let mut it = k.iter();
    for e in expected {
        assert!(it.any(|x| x == e), "missing {e} in order: {k:?}");
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_green_is_rolled_back_within_a_second_and_locked() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let extra = format!("{FAST_ROLLBACK}  max_error_rate: 0.05\n");
    let s = start_proxy(&config_yaml(&[blue.addr], &[green.addr], &extra)).await;
    wait_healthy(s.admin_addr, "green").await;
    let (code, _) = api(
        s.admin_addr,
        Method::POST,
        "/api/v1/rollout",
        Some(json!({"to": "green", "steps": [50, 100], "step_interval": "1h"})),
        None,
    )
    .await;
    assert_eq!(code, 200);
    let load = Load::start(proxy_url(&s, "/"), 8);
    wait_for(Duration::from_secs(10), "green to take traffic", || async {
        green.requests() > 50
    })
    .await;
    green.set_failure_rate(0.2);
    let back_at = wait_until(Duration::from_secs(10), "automatic rollback", || async {
        (status(&s).await["weights"]["blue"] == 100.0).then(tokio::time::Instant::now)
    })
    .await;
    let green_after = green.requests();
    // Traffic keeps flowing a moment longer; none of it may reach green.
    wait_for(Duration::from_secs(5), "more traffic on blue", || async {
        blue.requests() > 0
    })
    .await;
    let samples = load.finish().await;
    let first_failure = samples
        .iter()
        .filter(|x| x.status == 500)
        .map(|x| x.done)
        .min()
        .expect("a failing request was seen");
    let took = back_at.saturating_duration_since(first_failure);
    eprintln!(
        "rollback: {:?} from the first failing request to 100/0",
        took
    );
    assert!(took < Duration::from_millis(1500), "rollback took {took:?}");
    assert!(
        green.requests() <= green_after + 8,
        "requests reached green after the rollback"
    );
    assert!(samples
        .iter()
        .filter(|x| x.started > back_at)
        .all(|x| x.upstream == "blue-1"));

    let st = status(&s).await;
    assert_eq!(st["rollback_lock"]["pool"], "green", "{st}");
    let rb = auto_rollback_event(&s).await;
    assert!(
        rb["reason"].as_str().unwrap().starts_with("error_rate"),
        "{rb}"
    );
    assert!(
        rb["stats"]["candidate_error_rate"].as_f64().unwrap() > 0.05,
        "{rb}"
    );
    let (code, v) = api(
        s.admin_addr,
        Method::POST,
        "/api/v1/rollout",
        Some(json!({"to": "green"})),
        None,
    )
    .await;
    assert_eq!(code, 409, "a rollout to a locked pool: {v}");
    assert_eq!(
        api(s.admin_addr, Method::POST, "/api/v1/rearm", None, None)
            .await
            .0,
        200
    );
    green.set_failure_rate(0.0);
    let (code, v) = api(
        s.admin_addr,
        Method::POST,
        "/api/v1/rollout",
        Some(json!({"to": "green"})),
        None,
    )
    .await;
    assert_eq!(code, 200, "after rearm: {v}");
    let metrics = metrics_text(&s).await;
    assert!(
        metrics.contains("switchyard_rollbacks_total{reason=\"error_rate\"} 1"),
        "{metrics}"
    );
    s.shutdown().await;
}

async fn split_with_load(extra: &str) -> (Upstream, Upstream, Server) {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let s = start_proxy(&config_yaml(&[blue.addr], &[green.addr], extra)).await;
    crate::support::admin::set_weights(&client(), &s, 50.0, 50.0).await;
    (blue, green, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_rollback_when_green_is_no_worse_than_blue() {
    // The long window's comparison of two equal pools. Without the recent
    // window: judged over its few seconds, two pools both failing 20 % of
    // a few dozen requests each differ by more than 0.05 by chance, and a
    // loaded machine (few requests) rolled back in 2 of 3 full runs.
    let extra = format!(
        "{FAST_ROLLBACK}  max_error_rate: 0.5\n  max_error_rate_increase: 0.05\n  recent_window: null\n"
    );
    let (blue, green, s) = split_with_load(&extra).await;
    blue.set_failure_rate(0.2);
    green.set_failure_rate(0.2);
    let load = Load::start(proxy_url(&s, "/"), 6);
    // Long enough for many evaluations with plenty of requests.
    // A deadline for a busy machine; on an idle one this takes ~2 s.
    wait_for(Duration::from_secs(40), "traffic on both pools", || async {
        green.requests() > 400 && blue.requests() > 400
    })
    .await;
    let samples = load.finish().await;
    assert!(samples.iter().any(|x| x.status == 500));
    let st = status(&s).await;
    assert_eq!(
        st["weights"]["green"], 50.0,
        "rolled back although green was no worse: {st}"
    );
    assert!(st["rollback_lock"].is_null());
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_green_is_rolled_back_for_latency() {
    let extra = format!("{FAST_ROLLBACK}  max_p99_latency: 100ms\n");
    let (_blue, green, s) = split_with_load(&extra).await;
    green.set_delay_ms(250);
    let load = Load::start(proxy_url(&s, "/"), 16);
    wait_for(Duration::from_secs(15), "a latency rollback", || async {
        status(&s).await["weights"]["blue"] == 100.0
    })
    .await;
    load.finish().await;
    let ev = events(&s).await;
    let rb = ev
        .iter()
        .find(|e| e["kind"] == "rollback")
        .expect("a rollback event");
    assert!(
        rb["reason"].as_str().unwrap().starts_with("latency"),
        "{rb}"
    );
    assert!(
        rb["stats"]["candidate_p99_ms"].as_f64().unwrap() > 100.0,
        "{rb}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_requests_give_no_verdict_however_bad() {
    let extra = "outlier_detection:\n  consecutive_failures: 100000\nrollback:\n  interval: 100ms\n  min_requests: 1000\n  consecutive_breaches: 1\n  grace: 0s\n";
    let (_blue, green, s) = split_with_load(extra).await;
    green.set_failure_rate(1.0);
    let c = client();
    for _ in 0..100 {
        get(&c, proxy_url(&s, "/")).await;
    }
    // Many evaluation intervals pass with every green request failing.
    let until = tokio::time::Instant::now() + Duration::from_millis(800);
    wait_for(Duration::from_secs(5), "evaluations to pass", || async {
        tokio::time::Instant::now() > until
    })
    .await;
    let st = status(&s).await;
    assert!(green.requests() > 10 && green.requests() < 1000);
    assert_eq!(
        st["weights"]["green"], 50.0,
        "a verdict on too few requests: {st}"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn a_rollout_survives_a_restart_and_resumes_paused() {
    use crate::support::process::ProxyProcess;
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "listeners:\n  - bind: \"{{PROXY}}\"\nadmin:\n  bind: \"{{ADMIN}}\"\npools:\n  blue:\n    endpoints: [\"{}\"]\n  green:\n    endpoints: [\"{}\"]\nstate_file: \"{}\"\n",
        blue.addr,
        green.addr,
        dir.path().join("state.json").display()
    );
    let p = ProxyProcess::start(dir.path(), &yaml).await;
    wait_healthy(p.admin, "green").await;
    let (code, v) = api(
        p.admin,
        Method::POST,
        "/api/v1/rollout",
        Some(json!({"to": "green", "steps": [10, 25, 100], "step_interval": "1h"})),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (code, _) = api(p.admin, Method::POST, "/api/v1/rollout/promote", None, None).await;
    assert_eq!(code, 200);
    let (proxy, admin, config) = (p.proxy, p.admin, p.config.clone());
    p.signal("KILL");
    drop(p);

    let p = ProxyProcess::start_with(config, proxy, admin).await;
    let (_, st) = api(p.admin, Method::GET, "/api/v1/status", None, None).await;
    assert_eq!(st["phase"], "paused", "{st}");
    assert_eq!(st["weights"]["green"], 25.0);
    assert_eq!(st["rollout"]["step"], 2);
    assert_eq!(st["rollout"]["to"], "green");
    let (_, ev) = api(p.admin, Method::GET, "/api/v1/events", None, None).await;
    let paused = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "rollout_paused");
    assert!(
        paused.is_some_and(|e| e["reason"].as_str().unwrap().contains("restart")),
        "no event says the rollout resumed paused: {ev}"
    );
    // And it goes on from where it stood.
    let (code, v) = api(p.admin, Method::POST, "/api/v1/rollout/resume", None, None).await;
    assert_eq!((code, &v["phase"]), (200, &json!("rolling")), "{v}");
}

/// A green that fails every request gets its endpoints ejected by passive
/// health at once, and its share fails over to blue: the judge must still
/// see green failing (the requests meant for it that it could not take),
/// or such a green would stay in the split, ejected and re-admitted, forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_green_ejected_for_failing_everything_is_still_rolled_back() {
    let extra = "outlier_detection:\n  consecutive_failures: 3\n  ejection_time: 1m\n\
                 rollback:\n  interval: 250ms\n  window: 10s\n  min_requests: 20\n  \
                 consecutive_breaches: 2\n  grace: 0s\n  max_error_rate: 0.05\n";
    let (_blue, green, s) = split_with_load(extra).await;
    let load = Load::start(proxy_url(&s, "/"), 8);
    wait_for(Duration::from_secs(10), "green to take traffic", || async {
        green.requests() > 50
    })
    .await;
    green.set_failure_rate(1.0);
    wait_for(Duration::from_secs(10), "automatic rollback", || async {
        status(&s).await["weights"]["blue"] == 100.0
    })
    .await;
    let samples = load.finish().await;
    // Three failures ejected green; the rest of its share went to blue.
    let green_500s = samples.iter().filter(|x| x.status == 500).count();
    assert!(green_500s <= 10, "{green_500s} answers of 500 from green");
    auto_rollback_event(&s).await;
    s.shutdown().await;
}

/// The `rollback` event, which automatic rollback must have recorded.
async fn auto_rollback_event(s: &Server) -> serde_json::Value {
    let rb = events(s)
        .await
        .into_iter()
        .find(|e| e["kind"] == "rollback")
        .expect("a rollback event");
    assert_eq!(rb["actor"], "auto");
    rb
}

#[tokio::test]
async fn a_manual_split_pauses_a_rollout_even_all_on_live_and_all_on_green_completes_it() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let extra = "rollout:\n  bake_time: 1h\n";
    let s = start_proxy(&config_yaml(&[blue.addr], &[green.addr], extra)).await;
    wait_healthy(s.admin_addr, "green").await;
    let c = client();
    let start = json!({"to": "green", "steps": [10, 50, 100], "step_interval": "1h"});
    let (code, v) = api(
        s.admin_addr,
        Method::POST,
        "/api/v1/rollout",
        Some(start),
        None,
    )
    .await;
    assert_eq!((code, &v["phase"]), (200, &json!("rolling")), "{v}");

    // Everything back on blue by hand: the rollout is paused, not dropped.
    crate::support::admin::set_weights(&c, &s, 100.0, 0.0).await;
    let st = status(&s).await;
    assert_eq!(st["phase"], "paused", "{st}");
    assert_eq!(st["rollout"]["to"], "green", "{st}");
    assert_eq!(st["rollout"]["paused"], true, "{st}");
    assert_eq!(st["weights"]["blue"], 100.0, "{st}");
    let kinds = |ev: Vec<serde_json::Value>| {
        ev.iter()
            .map(|e| e["kind"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    let seen = kinds(crate::support::admin::events(&c, &s).await);
    assert!(seen.iter().any(|k| k == "rollout_paused"), "{seen:?}");
    let (code, v) = api(
        s.admin_addr,
        Method::POST,
        "/api/v1/rollout/resume",
        None,
        None,
    )
    .await;
    assert_eq!((code, &v["phase"]), (200, &json!("rolling")), "{v}");

    // Everything on green by hand: the move is complete and bakes.
    crate::support::admin::set_weights(&c, &s, 0.0, 100.0).await;
    let st = status(&s).await;
    assert_eq!(st["phase"], "baking", "{st}");
    assert!(st["rollout"].is_null(), "{st}");
    let seen = kinds(crate::support::admin::events(&c, &s).await);
    let at = |kind: &str| seen.iter().rposition(|k| k == kind);
    assert!(
        at("weights_changed") < at("rollout_completed") && at("rollout_completed").is_some(),
        "{seen:?}"
    );
    s.shutdown().await;
}
