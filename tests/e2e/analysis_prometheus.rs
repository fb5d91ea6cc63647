//! Analysis checks against a real Prometheus server (SPEC.md section 10),
//! scraping the test upstreams' own `orders_total` and `served_total`
//! every second. Ignored in a plain `cargo test` (they need Debian's
//! `prometheus`); `.ci/checks/prometheus-analysis.sh` runs them with
//! `--ignored` and fails when none ran.

use crate::support::hooks::Receiver;
use crate::support::prometheus::Prometheus;
use crate::support::*;
use http::Method;
use serde_json::{json, Value};
use std::time::Duration;
use switchyard::server::Server;

/// Orders per request served over the last 5 s: 1 while a pool takes
/// orders, whatever its share of the traffic; NaN (no data) without traffic.
const QUERY: &str = "sum(rate(orders_total{pool=\"{{pool}}\"}[5s])) / sum(rate(served_total{pool=\"{{pool}}\"}[5s]))";

fn config(prom: &Prometheus, hook: Option<&Receiver>) -> String {
    let notify = hook.map_or(String::new(), |r| {
        format!(
            "notify:\n  - url: \"{}\"\n    events: [rollback]\n",
            r.url("/hooks")
        )
    });
    format!(
        "outlier_detection:\n  consecutive_failures: 100000\nrollout:\n  bake_time: 0s\nanalysis:\n  checks:\n    - name: orders\n      prometheus: {{ url: \"{}\", query: '{QUERY}' }}\n      compare: baseline\n      min_ratio: 0.9\n      interval: 500ms\n      timeout: 2s\n      failure_limit: 2\n{notify}",
        prom.url()
    )
}

async fn newest(s: &Server, kind: &str) -> Option<Value> {
    newest_after(s, kind, 0).await
}

/// The newest event of `kind` with an id above `after`.
async fn newest_after(s: &Server, kind: &str, after: u64) -> Option<Value> {
    let (_, v) = api(
        s.admin_addr,
        Method::GET,
        "/api/v1/events?limit=200",
        None,
        None,
    )
    .await;
    v["events"]
        .as_array()?
        .iter()
        .find(|e| e["kind"] == kind && e["id"].as_u64().unwrap_or(0) > after)
        .cloned()
}

async fn series(s: &Server, name: &str) -> f64 {
    metrics_text(s)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Blue and green under load, a rollout to green at 50 % (the next step an
/// hour away), and a first passing reading of the check: Prometheus has
/// both pools' orders.
async fn rolling_with_a_passing_check(s: &Server, prom: &Prometheus) -> Load {
    let load = Load::start(proxy_url(s, "/"), 2);
    wait_healthy(s.admin_addr, "green").await;
    let (code, v) = api(
        s.admin_addr,
        Method::POST,
        "/api/v1/rollout",
        Some(json!({"to": "green", "steps": [50, 100], "step_interval": "1h"})),
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let green_query = QUERY.replace("{{pool}}", "green");
    wait_for(
        Duration::from_secs(60),
        "a passing reading from Prometheus",
        || async {
            series(
                s,
                "switchyard_checks_total{check=\"orders\",result=\"pass\"}",
            )
            .await
                >= 1.0
        },
    )
    .await;
    let ratio = prom.value(&green_query).await;
    assert!(
        ratio.is_some_and(|r| r > 0.9),
        "green takes orders: {ratio:?}"
    );
    // Green's first seconds had no series yet: inconclusive, so the
    // rollout may have paused. The operator resumes it.
    if status(s).await["phase"] == "paused" {
        let early = newest(s, "rollout_paused").await.unwrap_or_default();
        assert!(
            early["reason"]
                .as_str()
                .unwrap_or("")
                .contains("answered no series"),
            "{early}"
        );
        let (code, v) = api(
            s.admin_addr,
            Method::POST,
            "/api/v1/rollout/resume",
            None,
            None,
        )
        .await;
        assert_eq!(code, 200, "{v}");
    }
    load
}

/// The id of the newest event.
async fn last_id(s: &Server) -> u64 {
    let (_, v) = api(
        s.admin_addr,
        Method::GET,
        "/api/v1/events?limit=1",
        None,
        None,
    )
    .await;
    v["events"][0]["id"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Prometheus: .ci/checks/prometheus-analysis.sh"]
async fn prometheus_a_green_whose_orders_stop_is_rolled_back_by_the_check() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let prom = Prometheus::start(&[(blue.addr, "blue"), (green.addr, "green")]).await;
    let hook = Receiver::start(&[]).await;
    let extra = config(&prom, Some(&hook));
    let s = start_proxy(&config_yaml(&[blue.addr], &[green.addr], &extra)).await;
    let load = rolling_with_a_passing_check(&s, &prom).await;
    // Orders stop on green; its HTTP answers stay 200.
    green.stop_orders();
    let rb = wait_until(Duration::from_secs(30), "the check's rollback", || async {
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
    let stats = &rb["stats"];
    assert_eq!(stats["check"], "orders", "{rb}");
    assert_eq!(stats["threshold"], "candidate/live >= 0.9", "{rb}");
    let (c, l, r) = (
        stats["candidate"].as_f64().unwrap_or(f64::NAN),
        stats["live"].as_f64().unwrap_or(f64::NAN),
        stats["ratio"].as_f64().unwrap_or(f64::NAN),
    );
    assert!(c < 0.9 && l > 0.95 && r < 0.9, "{rb}");
    eprintln!("prometheus check: rolled back at candidate {c:.3}, live {l:.3}, ratio {r:.3}");
    let st = status(&s).await;
    assert_eq!(st["weights"]["blue"], 100.0, "{st}");
    assert_eq!(
        series(&s, "switchyard_rollbacks_total{reason=\"check\"}").await,
        1.0
    );
    // The webhook heard of it once, with the same evidence.
    wait_for(
        Duration::from_secs(10),
        "the rollback notification",
        || async { !hook.accepted("rollback").is_empty() },
    )
    .await;
    let heard = hook.accepted("rollback");
    assert_eq!(heard.len(), 1, "{heard:?}");
    assert_eq!(heard[0]["reason"], rb["reason"]);
    assert_eq!(heard[0]["stats"], rb["stats"]);
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Prometheus: .ci/checks/prometheus-analysis.sh"]
async fn prometheus_stopped_pauses_the_rollout_as_inconclusive() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let mut prom = Prometheus::start(&[(blue.addr, "blue"), (green.addr, "green")]).await;
    let s = start_proxy(&config_yaml(
        &[blue.addr],
        &[green.addr],
        &config(&prom, None),
    ))
    .await;
    let load = rolling_with_a_passing_check(&s, &prom).await;
    let before = last_id(&s).await;
    assert_eq!(status(&s).await["phase"], "rolling");
    // `explain` during the rollout: the check's value, threshold, verdict.
    let passing = wait_until(
        Duration::from_secs(30),
        "explain: orders passing",
        || async {
            let c = orders_explained(&s).await;
            (c["verdict"] == "pass").then_some(c)
        },
    )
    .await;
    assert!(passing["value"].as_f64().unwrap_or(0.0) > 0.9, "{passing}");
    assert_eq!(passing["threshold"], "candidate/live >= 0.9", "{passing}");
    assert_eq!(passing["failure_limit"], 2, "{passing}");
    prom.stop();
    let paused = wait_until(Duration::from_secs(30), "the pause", || async {
        newest_after(&s, "rollout_paused", before).await
    })
    .await;
    load.finish().await;
    assert_eq!(paused["actor"], "auto", "{paused}");
    let why = paused["reason"].as_str().unwrap_or("");
    assert!(why.contains("check orders is inconclusive"), "{paused}");
    assert!(why.contains("Prometheus unreachable"), "{paused}");
    let st = status(&s).await;
    assert_eq!(st["phase"], "paused", "{st}");
    assert_eq!(st["weights"]["green"], 50.0, "{st}");
    assert!(
        st["rollback_lock"].is_null(),
        "no rollback on no data: {st}"
    );
    assert!(
        series(
            &s,
            "switchyard_checks_total{check=\"orders\",result=\"inconclusive\"}"
        )
        .await
            >= 1.0
    );
    assert!(newest(&s, "rollback").await.is_none());
    // `explain` says why: inconclusive, and the reason.
    let c = orders_explained(&s).await;
    assert_eq!(c["verdict"], "inconclusive", "{c}");
    let waiting = c["waiting_for"].as_str().unwrap_or("");
    assert!(waiting.starts_with("inconclusive: "), "{c}");
    assert!(waiting.contains("Prometheus unreachable"), "{c}");
    assert_eq!(c["threshold"], "candidate/live >= 0.9", "{c}");
    s.shutdown().await;
}

/// The `orders` check as `GET /api/v1/explain` shows it now.
async fn orders_explained(s: &Server) -> Value {
    let (code, e) = api(s.admin_addr, Method::GET, "/api/v1/explain", None, None).await;
    assert_eq!(code, 200, "{e}");
    e["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "orders").cloned())
        .unwrap_or_else(|| panic!("no orders check in {e}"))
}
