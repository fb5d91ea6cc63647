//! The demo's business check (SPEC.md section 10), from outside: the real
//! `switchyard demo` binary on free ports with its own background traffic,
//! a rollout started with the real `switchyard ctl`, `ctl explain` showing
//! the `orders` check's value, threshold and verdict, then green told to
//! stop taking orders (its answers stay 200) through the demo's control
//! listener, as the guide prints it: a rollback by the check, reason `check`.

use crate::support::process::BIN;
use crate::support::*;
use http::Method;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

/// `switchyard ctl --admin ADMIN ARGS`: exit code, stdout, stderr.
fn ctl(admin: SocketAddr, args: &[&str]) -> (Option<i32>, String, String) {
    let o = std::process::Command::new(BIN)
        .arg("ctl")
        .args(["--admin", &format!("http://{admin}")])
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

/// The address after `http://` on the guide's line containing `marker`.
fn addr_in_guide(guide: &str, marker: &str) -> SocketAddr {
    let line = guide
        .lines()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no `{marker}` in the guide:\n{guide}"));
    let after = line.split("http://").nth(1).unwrap_or("");
    let addr = after.split(['/', '\'', ' ']).next().unwrap_or("");
    addr.parse()
        .unwrap_or_else(|_| panic!("no address in `{line}`"))
}

async fn explain(admin: SocketAddr) -> Value {
    let (code, v) = api(admin, Method::GET, "/api/v1/explain", None, None).await;
    assert_eq!(code, 200, "{v}");
    v
}

fn orders_check(e: &Value) -> Value {
    e["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "orders").cloned())
        .unwrap_or_else(|| panic!("no orders check in {e}"))
}

async fn post(url: String) -> Answer {
    let req = http::Request::post(url)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    read(
        client()
            .request(req)
            .await
            .expect("the control listener answers"),
    )
    .await
}

async fn events(admin: SocketAddr, kind: &str) -> Vec<Value> {
    let (_, v) = api(admin, Method::GET, "/api/v1/events?limit=200", None, None).await;
    v["events"]
        .as_array()
        .map(|l| l.iter().filter(|e| e["kind"] == kind).cloned().collect())
        .unwrap_or_default()
}

#[test]
fn the_demo_check_shows_in_explain_and_rolls_back_a_green_that_stops_taking_orders() {
    let admin = crate::support::process::free_addr();
    crate::cli::demo_guide_then(admin, "50", None, |guide| {
        let control = addr_in_guide(guide, "/orders/green/stop");
        let proxy = addr_in_guide(guide, "proxy              on http://");
        assert!(guide.contains(" explain "), "{guide}");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(scenario(admin, control, proxy));
    });
}

async fn scenario(admin: SocketAddr, control: SocketAddr, proxy: SocketAddr) {
    wait_healthy(admin, "green").await;
    // Before the rollout the check is not armed: green takes no traffic.
    let before = orders_check(&explain(admin).await);
    assert_eq!(before["verdict"], "not_armed", "{before}");
    let (code, out, err) = ctl(admin, &["rollout", "start", "green"]);
    assert_eq!(code, Some(0), "{out}{err}");
    // Green at 10 % of ~50 requests/s: a reading a second, each comparing
    // green's orders per request with blue's.
    let passing = wait_until(
        Duration::from_secs(20),
        "a passing orders reading",
        || async {
            let c = orders_check(&explain(admin).await);
            (c["verdict"] == "pass").then_some(c)
        },
    )
    .await;
    assert_eq!(
        passing["value"], 1.0,
        "every request takes an order: {passing}"
    );
    assert_eq!(passing["candidate"], 1.0, "{passing}");
    assert_eq!(passing["live"], 1.0, "{passing}");
    assert_eq!(passing["threshold"], "candidate/live >= 0.9", "{passing}");
    // The first reading came right at the weight change, before green had
    // any request in its window (no data): within grace that only held the
    // step; it did not pause the rollout.
    assert!(
        events(admin, "rollout_paused").await.is_empty(),
        "no pause for a candidate that has had no time to take traffic"
    );
    let (code, text, err) = ctl(admin, &["explain"]);
    assert_eq!(code, Some(0), "{text}{err}");
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("orders "))
        .unwrap_or_else(|| panic!("no orders row:\n{text}"));
    for word in ["1 ", "candidate/live >= 0.9", "pass", "0 of 3"] {
        assert!(row.contains(word), "`{word}` missing from `{row}`:\n{text}");
    }
    let c = client();
    let green = get(&c, format!("http://{control}/orders/green")).await;
    assert_eq!(green.status, 200, "{}", green.text());
    let v: Value = serde_json::from_str(&green.text()).unwrap();
    assert_eq!(v["value"], 1.0, "{v}");

    // Green stops taking orders; every answer stays 200.
    let said = post(format!("http://{control}/orders/green/stop")).await;
    assert_eq!(said.status, 200, "{}", said.text());
    let failing = wait_until(Duration::from_secs(20), "a failing reading", || async {
        let c = orders_check(&explain(admin).await);
        (c["verdict"] == "fail").then_some(c)
    })
    .await;
    assert!(failing["value"].as_f64().unwrap() < 0.9, "{failing}");
    assert!(
        failing["waiting_for"]
            .as_str()
            .unwrap_or("")
            .contains("times in a row before a rollback"),
        "{failing}"
    );
    let rollback = wait_until(Duration::from_secs(20), "the check's rollback", || async {
        events(admin, "rollback").await.into_iter().next()
    })
    .await;
    assert_eq!(rollback["actor"], "auto", "{rollback}");
    let reason = rollback["reason"].as_str().unwrap_or("");
    assert!(
        reason.starts_with("check: check orders failed 3 times in a row"),
        "{rollback}"
    );
    assert_eq!(rollback["stats"]["check"], "orders", "{rollback}");
    assert!(
        rollback["stats"]["ratio"].as_f64().unwrap() < 0.9,
        "{rollback}"
    );
    assert_eq!(rollback["stats"]["live"], 1.0, "{rollback}");
    let (_, st) = api(admin, Method::GET, "/api/v1/status", None, None).await;
    assert_eq!(st["weights"]["blue"], 100.0, "{st}");
    assert_eq!(st["rollback_lock"]["pool"], "green", "{st}");
    assert_eq!(
        st["pools"]["green"]["stats"]["errors"], 0,
        "green answered 200 throughout: {st}"
    );
    let metrics = read(
        c.get(format!("http://{admin}/metrics").parse().unwrap())
            .await
            .unwrap(),
    )
    .await
    .text();
    assert!(
        metrics
            .lines()
            .any(|l| l == "switchyard_rollbacks_total{reason=\"check\"} 1"),
        "{metrics}"
    );
    let (code, text, err) = ctl(admin, &["events"]);
    assert_eq!(code, Some(0), "{text}{err}");
    assert!(text.contains("check orders failed 3 times"), "{text}");
    // Through the proxy, blue answers again.
    let a = get(&c, format!("http://{proxy}/")).await;
    assert_eq!(a.status, 200);
    assert!(a.text().starts_with("Hello from blue-"), "{}", a.text());
}
