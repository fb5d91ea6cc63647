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
    // The increase rule against the live pool's rate: both pools fail
    // exactly every 5th request (20 %): green fails, but no worse than blue.
    //
    // Exactly, not at random: two pools both failing 20 % *at random* over
    // a few dozen requests each differ by more than 0.05 by chance in about
    // a third of the looks (the threshold rules' known noise on small
    // samples; the sequential judge is the remedy, and its own e2e test
    // and simulation show it under noise). A loaded machine sends fewer
    // requests, hence more such looks: this test failed under load for
    // that reason, not for a fault of the rule. With failures every 5th
    // request a window of n requests of one pool holds n/5 failures, give
    // or take the few requests in flight at its edges (6 clients):
    // |rate - 0.2| <= 5/n, so with n >= min_requests = 250 the pools
    // differ by at most 0.04, and a breach would be a fault of the rule.
    let extra = "outlier_detection:\n  consecutive_failures: 100000\nrollback:\n  interval: 250ms\n  window: 60s\n  recent_window: null\n  min_requests: 250\n  consecutive_breaches: 2\n  grace: 0s\n  max_error_rate: 0.5\n  max_error_rate_increase: 0.05\n";
    let (blue, green, s) = split_with_load(extra).await;
    blue.set_failure_every(5);
    green.set_failure_every(5);
    let load = Load::start(proxy_url(&s, "/"), 6);
    // Many evaluations with the rule judging (>= 250 requests a pool).
    // A deadline for a busy machine; on an idle one this takes ~3 s.
    let both = poll_until(Duration::from_secs(60), || async {
        green.requests() > 800 && blue.requests() > 800
    })
    .await;
    let samples = load.finish().await;
    assert!(
        both,
        "traffic on both pools: blue {} green {} requests; the proxy answered {} times, statuses {:?}",
        blue.requests(),
        green.requests(),
        samples.len(),
        status_counts(&samples)
    );
    let failed = samples.iter().filter(|x| x.status == 500).count();
    assert!(
        failed * 6 > samples.len(),
        "about 20 % failed: {failed} of {}",
        samples.len()
    );
    let st = status(&s).await;
    assert_eq!(
        st["weights"]["green"], 50.0,
        "rolled back although green was no worse: {st}"
    );
    assert!(st["rollback_lock"].is_null());
    // The rule judged (it was not waiting for requests), and passed.
    let (code, e) = api(s.admin_addr, Method::GET, "/api/v1/explain", None, None).await;
    assert_eq!(code, 200, "{e}");
    let rule = e["rollback"]["rules"]
        .as_array()
        .and_then(|r| r.iter().find(|x| x["rule"] == "max_error_rate_increase"))
        .unwrap_or_else(|| panic!("no max_error_rate_increase rule: {e}"))
        .clone();
    assert_eq!(rule["verdict"], "pass", "{rule}");
    // The value is green's rate minus blue's: within the bound above.
    let diff = rule["value"].as_f64().unwrap_or(1.0);
    assert!(diff.abs() <= 0.04, "green and blue fail alike: {rule}");
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

/// How many answers had each status (0: no answer).
fn status_counts(samples: &[Sample]) -> std::collections::BTreeMap<u16, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for x in samples {
        *counts.entry(x.status).or_insert(0) += 1;
    }
    counts
}
