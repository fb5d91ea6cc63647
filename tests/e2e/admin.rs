//! The admin API and `ctl`: weight changes under load, refusals with the
//! right status, restarts that keep the state, and `ctl` as a client.

use crate::support::admin::start_with_token_file;
use crate::support::process::{ProxyProcess, BIN};
use crate::support::*;
use http::Method;
use serde_json::json;
use std::process::Command;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_change_under_load_takes_effect_at_once_and_loses_nothing() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let s = start_proxy(&config_yaml(&[blue.addr], &[green.addr], "")).await;
    let load = Load::start(proxy_url(&s, "/"), 8);
    wait_for(Duration::from_secs(10), "some traffic", || async {
        blue.requests() > 200
    })
    .await;
    let sent = tokio::time::Instant::now();
    let (code, v) = api(
        s.admin_addr,
        Method::PUT,
        "/api/v1/weights",
        Some(json!({"blue": 50, "green": 50})),
        None,
    )
    .await;
    let answered = tokio::time::Instant::now();
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["weights"]["green"], 50.0);
    wait_for(
        Duration::from_secs(10),
        "traffic after the change",
        || async { green.requests() > 300 },
    )
    .await;
    let samples = load.finish().await;

    assert!(
        samples.iter().all(|x| x.status == 200),
        "a request failed during the change"
    );
    // Before the change was asked for, nothing went to green.
    assert!(samples
        .iter()
        .filter(|x| x.done < sent)
        .all(|x| x.upstream == "blue-1"));
    // Every request started after the answer sees the new split.
    let after: Vec<_> = samples.iter().filter(|x| x.started > answered).collect();
    let green_share =
        after.iter().filter(|x| x.upstream == "green-1").count() as f64 / after.len() as f64;
    assert!(
        after.len() > 300 && (0.4..=0.6).contains(&green_share),
        "green share {green_share} of {}",
        after.len()
    );
    s.shutdown().await;
}

#[tokio::test]
async fn refusals_carry_the_right_status_and_change_nothing() {
    let blue = Upstream::start("blue-1").await;
    let (s, _dir) = start_with_token_file(&blue, "s3cret\n").await;
    let a = s.admin_addr;
    let t = Some("s3cret");

    let (code, v) = api(a, Method::GET, "/api/v1/status", None, None).await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    assert_eq!(
        api(a, Method::GET, "/api/v1/status", None, Some("wrong"))
            .await
            .0,
        401
    );
    assert_eq!(api(a, Method::GET, "/healthz", None, None).await.0, 200);
    assert_eq!(api(a, Method::GET, "/readyz", None, None).await.0, 200);
    assert_eq!(api(a, Method::GET, "/metrics", None, None).await.0, 401);

    let (_, st) = api(a, Method::GET, "/api/v1/status", None, t).await;
    let generation = st["generation"].as_u64().unwrap();

    // Malformed JSON: 400. Weights summing to 99: 422. Unknown field: 422.
    let req = http::Request::put(format!("http://{a}/api/v1/weights"))
        .header("authorization", "Bearer s3cret")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"{\"blue\": 90,",
        )))
        .unwrap();
    let r = read(client().request(req).await.unwrap()).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let (code, v) = api(
        a,
        Method::PUT,
        "/api/v1/weights",
        Some(json!({"blue": 90, "green": 9})),
        t,
    )
    .await;
    assert_eq!(code, 422, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("100"),
        "{v}"
    );
    let (code, _) = api(
        a,
        Method::PUT,
        "/api/v1/weights",
        Some(json!({"blue": 90, "green": 10, "colour": 1})),
        t,
    )
    .await;
    assert_eq!(code, 422);
    // A stale generation: 409.
    let (code, v) = api(
        a,
        Method::PUT,
        "/api/v1/weights",
        Some(json!({"blue": 50, "green": 50, "if_generation": generation - 1})),
        t,
    )
    .await;
    assert_eq!(code, 409, "{v}");
    // Unknown path: 404; too large: 413.
    assert_eq!(api(a, Method::GET, "/api/v1/nope", None, t).await.0, 404);
    let big = json!({"reason": "x".repeat(100_000)});
    assert_eq!(
        api(a, Method::POST, "/api/v1/rollback", Some(big), t)
            .await
            .0,
        413
    );

    let (_, after) = api(a, Method::GET, "/api/v1/status", None, t).await;
    assert_eq!(
        after["generation"].as_u64(),
        Some(generation),
        "a refusal changed the state"
    );
    assert_eq!(after["weights"]["blue"], 100.0);

    // The current generation is accepted.
    let (code, v) = api(
        a,
        Method::PUT,
        "/api/v1/weights",
        Some(json!({"blue": 50, "green": 50, "if_generation": generation})),
        t,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["generation"].as_u64(), Some(generation + 1));
    s.shutdown().await;
}

#[tokio::test]
async fn switch_refuses_an_unhealthy_target_unless_forced_and_is_idempotent() {
    let blue = Upstream::start("blue-1").await;
    let dead = refusing_addr().await;
    let extra = "health_check:\n  interval: 100ms\n  timeout: 100ms\n  unhealthy_threshold: 1\n  healthy_threshold: 1";
    let s = start_proxy(&config_yaml(&[blue.addr], &[dead], extra)).await;
    let a = s.admin_addr;
    // Idempotent: switching to the pool that already has everything.
    let (code, v) = api(
        a,
        Method::POST,
        "/api/v1/switch",
        Some(json!({"to": "blue"})),
        None,
    )
    .await;
    assert_eq!(
        (code, v["outcome"].as_str()),
        (200, Some("unchanged")),
        "{v}"
    );
    // Mark green's only endpoint down through the controller's view of health.
    s.shared
        .table
        .load()
        .pool(switchyard::config::PoolName::Green)
        .endpoints[0]
        .set_healthy(false);
    let (code, v) = api(
        a,
        Method::POST,
        "/api/v1/switch",
        Some(json!({"to": "green"})),
        None,
    )
    .await;
    assert_eq!(code, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("min_healthy"),
        "{v}"
    );
    let (code, v) = api(
        a,
        Method::POST,
        "/api/v1/switch",
        Some(json!({"to": "green", "force": true})),
        None,
    )
    .await;
    assert_eq!(
        (code, v["outcome"].as_str()),
        (200, Some("completed")),
        "{v}"
    );
    assert_eq!(status(&s).await["weights"]["green"], 100.0);
    let (code, _) = api(
        a,
        Method::POST,
        "/api/v1/switch",
        Some(json!({"to": "purple"})),
        None,
    )
    .await;
    assert_eq!(code, 422);
    s.shutdown().await;
}

#[tokio::test]
async fn a_switch_to_a_pool_nobody_has_checked_yet_is_refused() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    // Checks an hour apart: green stays `unknown` for the whole test (it
    // takes traffic, but only passed checks make it healthy).
    let extra = "health_check:\n  interval: 1h\n  healthy_threshold: 2";
    let s = start_proxy(&config_yaml(&[blue.addr], &[green.addr], extra)).await;
    let st = status(&s).await;
    assert_eq!(
        st["pools"]["green"]["endpoints"][0]["state"], "unknown",
        "{st}"
    );
    assert_eq!(st["pools"]["green"]["healthy"], 0, "{st}");
    for body in [
        json!({"to": "green"}),
        json!({"to": "green", "steps": [10, 100]}),
    ] {
        let path = if body.get("steps").is_some() {
            "/api/v1/rollout"
        } else {
            "/api/v1/switch"
        };
        let (code, v) = api(s.admin_addr, Method::POST, path, Some(body), None).await;
        assert_eq!(code, 409, "{path}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("not checked yet"), "{path}: {v}");
    }
    assert_eq!(status(&s).await["weights"]["blue"], 100.0);
    // The operator who knows better can still force it.
    let (code, v) = api(
        s.admin_addr,
        Method::POST,
        "/api/v1/switch",
        Some(json!({"to": "green", "force": true})),
        None,
    )
    .await;
    assert_eq!(
        (code, v["outcome"].as_str()),
        (200, Some("completed")),
        "{v}"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn reloads_refused_for_any_reason_change_nothing_and_a_new_drain_timeout_applies() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cfg.yaml");
    let base = |extra: &str| config_yaml(&[blue.addr], &[green.addr], extra);
    std::fs::write(&path, base("drain:\n  timeout: 30s")).unwrap();
    let s = start_proxy_from_file(&path).await;
    let reload = |body: Option<serde_json::Value>| {
        api(s.admin_addr, Method::POST, "/api/v1/reload", body, None)
    };

    // A CA file that is readable but holds no certificate: refused with
    // the line of `ca`, like any invalid file, and the old config serves.
    let junk = dir.path().join("ca.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let bad = base("").replace(
        &format!("endpoints: [\"{}\"]\nstate_file", green.addr),
        &format!(
            "endpoints: [\"{}\"]\n    tls: {{ca: \"{}\"}}\nstate_file",
            green.addr,
            junk.display()
        ),
    );
    assert_ne!(bad, base(""), "the test's own edit applies");
    std::fs::write(&path, &bad).unwrap();
    let (code, v) = reload(None).await;
    assert_eq!(code, 422, "{v}");
    let first = &v["error"]["errors"][0];
    assert!(
        first["message"].as_str().unwrap().contains("CA bundle"),
        "{v}"
    );
    let ca_line = bad.lines().position(|l| l.contains("tls: {ca:")).unwrap() + 1;
    assert_eq!(first["line"].as_u64(), Some(ca_line as u64), "{v}");
    let st = status(&s).await;
    assert!(!st["config"]["last_error"].is_null(), "{st}");
    assert_eq!(get(&client(), proxy_url(&s, "/")).await.status, 200);
    let metrics = metrics_text(&s).await;
    // At least this refusal (the file watcher may have refused it too).
    let failures: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("switchyard_config_reloads_total{result=\"failure\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(failures >= 1, "{metrics}");

    // A reload asked against a generation that has moved on: 409, nothing read.
    std::fs::write(&path, base("drain:\n  timeout: 300ms")).unwrap();
    let generation = status(&s).await["generation"].as_u64().unwrap();
    let (code, v) = reload(Some(json!({"if_generation": generation + 1}))).await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["error"]["code"], "stale_generation", "{v}");
    // The same file, asked right (the watcher may have applied it already).
    let (code, v) = reload(Some(
        json!({"if_generation": status(&s).await["generation"]}),
    ))
    .await;
    assert_eq!(code, 200, "{v}");
    assert!(status(&s).await["config"]["last_error"].is_null());

    // Shutdown drains for the reloaded 300 ms, not the 30 s it started with.
    blue.set_delay_ms(20_000);
    green.set_delay_ms(20_000);
    let c = client();
    let url = proxy_url(&s, "/");
    let slow = tokio::spawn(async move { c.get(url.parse().unwrap()).await.map(|r| r.status()) });
    wait_for(
        Duration::from_secs(5),
        "the slow request upstream",
        || async {
            s.shared
                .table
                .load()
                .pool(switchyard::config::PoolName::Blue)
                .runtime
                .inflight()
                > 0
                || s.shared
                    .table
                    .load()
                    .pool(switchyard::config::PoolName::Green)
                    .runtime
                    .inflight()
                    > 0
        },
    )
    .await;
    let started = tokio::time::Instant::now();
    s.shutdown().await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    slow.abort();
}

fn process_yaml(blue: &Upstream, green: &Upstream, dir: &std::path::Path) -> String {
    format!(
        "listeners:\n  - bind: \"{{PROXY}}\"\nadmin:\n  bind: \"{{ADMIN}}\"\npools:\n  blue:\n    endpoints: [\"{}\"]\n  green:\n    endpoints: [\"{}\"]\nstate_file: \"{}\"\naudit_log: \"{}\"\nrollout:\n  bake_time: 0s\n",
        blue.addr,
        green.addr,
        dir.join("state.json").display(),
        dir.join("audit.jsonl").display()
    )
}

#[tokio::test]
async fn state_survives_sigkill_and_the_audit_log_shows_the_switch() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let dir = tempfile::tempdir().unwrap();
    let p = ProxyProcess::start(dir.path(), &process_yaml(&blue, &green, dir.path())).await;
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
    let (proxy, admin, config) = (p.proxy, p.admin, p.config.clone());
    p.signal("KILL");
    drop(p);

    let p = ProxyProcess::start_with(config, proxy, admin).await;
    let a = get(&client(), format!("http://{}/", p.proxy)).await;
    assert_eq!(a.upstream(), "green-1", "the restart forgot the switch");
    let (_, st) = api(p.admin, Method::GET, "/api/v1/status", None, None).await;
    assert_eq!(st["live"], "green");
    assert_eq!(st["phase"], "stable");
    let (_, ev) = api(p.admin, Method::GET, "/api/v1/events?limit=50", None, None).await;
    let kinds: Vec<&str> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"switch_completed"), "events: {kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_apply_valid_files_and_refuse_broken_ones_under_load() {
    let b1 = Upstream::start("blue-1").await;
    let b2 = Upstream::start("blue-2").await;
    let green = Upstream::start("green-1").await;
    let dir = tempfile::tempdir().unwrap();
    // Kubernetes layout: cfg.yaml -> ..data/cfg.yaml, ..data -> v1.
    let v1 = dir.path().join("v1");
    std::fs::create_dir(&v1).unwrap();
    let base = |blue: &[std::net::SocketAddr]| config_yaml(blue, &[green.addr], "");
    std::fs::write(v1.join("cfg.yaml"), base(&[b1.addr])).unwrap();
    std::os::unix::fs::symlink("v1", dir.path().join("..data")).unwrap();
    let path = dir.path().join("cfg.yaml");
    std::os::unix::fs::symlink("..data/cfg.yaml", &path).unwrap();
    let s = start_proxy_from_file(&path).await;
    let load = Load::start(proxy_url(&s, "/"), 4);
    let endpoints = |st: &serde_json::Value| {
        st["pools"]["blue"]["endpoints"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0)
    };

    // 1. A broken file written in place: refused, reported with its line, old config serves.
    std::fs::write(
        v1.join("cfg.yaml"),
        format!("{}\nbogus_key: 1\n", base(&[b1.addr])),
    )
    .unwrap();
    wait_for(
        Duration::from_secs(10),
        "the broken file to be reported",
        || async { !status(&s).await["config"]["last_error"].is_null() },
    )
    .await;
    let st = status(&s).await;
    assert!(
        st["config"]["last_error"]["line"].as_u64().unwrap() > 1,
        "{st}"
    );
    assert!(st["config"]["last_error"]["message"]
        .as_str()
        .unwrap()
        .contains("bogus_key"));

    // 2. Fixed in place, with a second blue endpoint: applied.
    std::fs::write(v1.join("cfg.yaml"), base(&[b1.addr, b2.addr])).unwrap();
    wait_for(
        Duration::from_secs(10),
        "the fixed file to apply",
        || async {
            let st = status(&s).await;
            st["config"]["last_error"].is_null() && endpoints(&st) == 2
        },
    )
    .await;
    wait_for(
        Duration::from_secs(10),
        "blue-2 to take traffic",
        || async { b2.requests() > 10 },
    )
    .await;

    // 3. Replaced by rename (editors): picked up.
    let tmp = v1.join("cfg.yaml.tmp");
    std::fs::write(&tmp, base(&[b2.addr])).unwrap();
    std::fs::rename(&tmp, v1.join("cfg.yaml")).unwrap();
    wait_for(
        Duration::from_secs(10),
        "the renamed file to apply",
        || async { endpoints(&status(&s).await) == 1 },
    )
    .await;

    // 4. A ..data symlink swap: picked up.
    let v2 = dir.path().join("v2");
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(v2.join("cfg.yaml"), base(&[b1.addr, b2.addr])).unwrap();
    std::os::unix::fs::symlink("v2", dir.path().join("..data_tmp")).unwrap();
    std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
    wait_for(
        Duration::from_secs(10),
        "the symlink swap to apply",
        || async { endpoints(&status(&s).await) == 2 },
    )
    .await;

    let samples = load.finish().await;
    let failed = samples.iter().filter(|x| x.status != 200).count();
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during reloads",
        samples.len()
    );
    let metrics = metrics_text(&s).await;
    assert!(
        metrics.contains("switchyard_config_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn removed_endpoint_drains_its_in_flight_requests() {
    let b1 = Upstream::start("blue-1").await;
    let b2 = Upstream::start("blue-2").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cfg.yaml");
    std::fs::write(&path, config_yaml(&[b1.addr, b2.addr], &[b1.addr], "")).unwrap();
    let s = start_proxy_from_file(&path).await;
    let c = client();
    let slow: Vec<_> = (0..12)
        .map(|_| {
            let (c, url) = (c.clone(), proxy_url(&s, "/delay/800"));
            tokio::spawn(async move { get(&c, url).await })
        })
        .collect();
    wait_for(
        Duration::from_secs(5),
        "slow requests on blue-2",
        || async { b2.requests() > 0 },
    )
    .await;
    std::fs::write(&path, config_yaml(&[b1.addr], &[b1.addr], "")).unwrap();
    let (code, v) = api(s.admin_addr, Method::POST, "/api/v1/reload", None, None).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["endpoints_removed"].as_array().unwrap().len(), 1, "{v}");
    let on_b2 = b2.requests();
    for t in slow {
        assert_eq!(
            t.await.unwrap().status,
            200,
            "an in-flight request was cut by the reload"
        );
    }
    for _ in 0..30 {
        assert_eq!(get(&c, proxy_url(&s, "/")).await.upstream(), "blue-1");
    }
    assert_eq!(
        b2.requests(),
        on_b2,
        "the removed endpoint still gets traffic"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_status_and_weights_work_and_fail_clearly_when_stopped() {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let s = start_proxy(&config_yaml(&[blue.addr], &[green.addr], "")).await;
    let admin = format!("http://{}", s.admin_addr);
    let ctl = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("ctl")
            .arg("--admin")
            .arg(&admin)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, _) = tokio::task::block_in_place(|| ctl(&["weights", "80", "20"]));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("blue 80% green 20%"), "{out}");
    let (code, out, _) = tokio::task::block_in_place(|| ctl(&["status"]));
    assert_eq!(code, Some(0));
    assert!(
        out.contains("phase manual split") && out.contains("green  20.00%"),
        "{out}"
    );
    let (code, out, _) = tokio::task::block_in_place(|| ctl(&["--json", "status"]));
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["weights"]["green"], 20.0);
    let (code, _, err) = tokio::task::block_in_place(|| ctl(&["weights", "80", "19"]));
    assert_eq!(code, Some(1));
    assert!(err.contains("422") && err.contains("100"), "{err}");
    s.shutdown().await;
    let (code, _, err) = tokio::task::block_in_place(|| ctl(&["status"]));
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot reach the admin API"), "{err}");
}

/// The admin API's refusals follow the standards a client library expects:
/// a 401 names its scheme (RFC 6750), and a 405 on any path, also
/// `/healthz`, has the same `{"error": {...}}` body as every other error.
#[tokio::test]
async fn a_401_names_bearer_and_every_405_has_the_error_body() {
    let blue = Upstream::start("blue-1").await;
    let (s, _dir) = start_with_token_file(&blue, "s3cret\n").await;
    let a = s.admin_addr;

    let r = read(
        client()
            .get(format!("http://{a}/api/v1/status").parse().unwrap())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.headers["www-authenticate"], "Bearer");

    for (method, path, token) in [
        (Method::POST, "/healthz", None),
        (Method::DELETE, "/readyz", None),
        (Method::POST, "/api/v1/status", Some("s3cret")),
    ] {
        let (code, v) = api(a, method.clone(), path, None, token).await;
        assert_eq!(
            (code, v["error"]["code"].as_str()),
            (405, Some("method_not_allowed")),
            "{method} {path}: {v}"
        );
    }
    s.shutdown().await;
}
