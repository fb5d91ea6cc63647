//! The soak test: the real binary under mixed GET and POST load while, all
//! at once, weights flip, the config is reloaded (API, SIGHUP, one broken
//! file), a rollout to a failing green rolls back by itself, and an upstream
//! restarts again and again. At the end every request is accounted for,
//! `switchyard_requests_total` agrees with the client, nothing was processed
//! twice, and descriptors and memory are flat.
//!
//! `SWITCHYARD_SOAK_SECS` sets the length (default 10 s in `cargo test`;
//! `.ci/checks/soak.sh` runs 60 s; longer by hand).

use crate::support::process::ProxyProcess;
use crate::support::*;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

const WORKERS: usize = 6;

fn soak_secs() -> u64 {
    std::env::var("SWITCHYARD_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
        .max(6)
}

fn yaml(
    blue: &[SocketAddr],
    green: &[SocketAddr],
    state: &std::path::Path,
    interval_ms: u64,
) -> String {
    let list = |v: &[SocketAddr]| {
        v.iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "listeners:\n  - bind: \"{{PROXY}}\"\nadmin:\n  bind: \"{{ADMIN}}\"\n\
         pools:\n  blue:\n    endpoints: [{}]\n  green:\n    endpoints: [{}]\n\
         state_file: \"{}\"\n\
         health_check:\n  interval: {interval_ms}ms\n  timeout: 150ms\n  unhealthy_threshold: 2\n  healthy_threshold: 1\n\
         outlier_detection:\n  consecutive_failures: 5\n  ejection_time: 1s\n\
         rollback:\n  interval: 200ms\n  window: 5s\n  min_requests: 20\n  max_error_rate: 0.05\n  consecutive_breaches: 2\n  grace: 500ms\n\
         rollout:\n  steps: [20, 50, 100]\n  step_interval: 30s\n  bake_time: 1s\n\
         drain:\n  timeout: 2s\n\
         timeouts:\n  request: 5s\n",
        list(blue),
        list(green),
        state.display()
    )
}

/// What came back for one request.
#[derive(Debug, Clone)]
struct Outcome {
    id: String,
    method: Method,
    /// 0: no HTTP answer at all (lost).
    status: u16,
    /// The upstream that answered (`x-upstream`), empty when the proxy did.
    upstream: String,
}

struct Upstreams {
    /// Every instance ever started, the stopped ones too (for the accounting).
    all: Mutex<Vec<Upstream>>,
}

impl Upstreams {
    fn deliveries(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for u in self.all.lock().unwrap().iter() {
            for id in u.request_ids() {
                *m.entry(id).or_insert(0) += 1;
            }
        }
        m
    }

    fn set_failure_rate(&self, name: &str, rate: f64) {
        for u in self
            .all
            .lock()
            .unwrap()
            .iter()
            .filter(|u| u.name.starts_with(name))
        {
            u.set_failure_rate(rate);
        }
    }
}

async fn admin_json(
    admin: SocketAddr,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{admin}{path}"))
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .unwrap();
    match client().request(req).await {
        Ok(r) => {
            let a = read(r).await;
            (
                a.status,
                serde_json::from_slice(&a.body).unwrap_or(Value::Null),
            )
        }
        Err(e) => panic!("the admin API did not answer {path}: {e}"),
    }
}

fn metric_sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_mixed_load_flips_reloads_rollback_and_restarts_lose_nothing() {
    let secs = soak_secs();
    let total = Duration::from_secs(secs);
    let ups = Arc::new(Upstreams {
        all: Mutex::new(Vec::new()),
    });
    let mut blue = Vec::new();
    let mut green = Vec::new();
    for name in ["blue-1", "blue-2", "green-1", "green-2"] {
        let u = Upstream::start(name).await;
        if name.starts_with("blue") {
            blue.push(u.addr)
        } else {
            green.push(u.addr)
        }
        ups.all.lock().unwrap().push(u);
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let mut p = ProxyProcess::start(dir.path(), &yaml(&blue, &green, &state, 200)).await;
    let (proxy, admin) = (p.proxy, p.admin);
    let config_text = std::fs::read_to_string(&p.config).unwrap();
    let started = Instant::now();
    let end = started + total;
    let stop = Arc::new(AtomicBool::new(false));

    // Load: GETs and POSTs back to back, each with its own id.
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (stop, next) = (stop.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let c = client();
            let mut out = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let method = if (n + w as u64) % 3 == 0 {
                    Method::POST
                } else {
                    Method::GET
                };
                let id = format!("soak-{n}");
                let req = Request::builder()
                    .method(method.clone())
                    .uri(format!("http://{proxy}/"))
                    .header("x-request-id", &id)
                    .body(Full::new(Bytes::from_static(b"payload")))
                    .unwrap();
                let (status, upstream) = match c.request(req).await {
                    Ok(r) => {
                        let a = read(r).await;
                        (a.status, a.upstream().to_string())
                    }
                    Err(_) => (0, String::new()),
                };
                out.push(Outcome {
                    id,
                    method,
                    status,
                    upstream,
                });
            }
            out
        }));
    }

    // An upstream restarting: blue-2 stops (its connections cut) and comes back.
    let restarts = {
        let (ups, stop) = (ups.clone(), stop.clone());
        let addr = blue[1];
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(900)).await;
                for u in ups.all.lock().unwrap().iter().filter(|u| u.addr == addr) {
                    u.stop();
                }
                // Down for a moment, as a process restart would be.
                tokio::time::sleep(Duration::from_millis(300)).await;
                let back = Upstream::restart_on("blue-2", addr).await;
                ups.all.lock().unwrap().push(back);
                n += 1;
            }
            n
        })
    };

    // Reloads: through the API and SIGHUP, changing a value each time; once
    // a broken file, which is refused and changes nothing.
    let reloads = {
        let stop = stop.clone();
        let config = p.config.clone();
        let pid = p.pid();
        let text = config_text.clone();
        tokio::spawn(async move {
            let (mut ok, mut refused, mut i) = (0u32, 0u32, 0u64);
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(700)).await;
                i += 1;
                if i == 3 {
                    std::fs::write(&config, "pools: [broken\n").unwrap();
                    let (code, _) = admin_json(admin, Method::POST, "/api/v1/reload", None).await;
                    assert_eq!(code, 422, "a broken file was not refused");
                    refused += 1;
                    std::fs::write(&config, &text).unwrap();
                    continue;
                }
                let interval = if i % 2 == 0 { "200ms" } else { "250ms" };
                std::fs::write(
                    &config,
                    text.replace(
                        "interval: 200ms\n  timeout: 150ms",
                        &format!("interval: {interval}\n  timeout: 150ms"),
                    ),
                )
                .unwrap();
                if i % 2 == 0 {
                    let ok_status = std::process::Command::new("kill")
                        .args(["-HUP", &pid.to_string()])
                        .status()
                        .unwrap()
                        .success();
                    assert!(ok_status);
                } else {
                    let (code, v) = admin_json(admin, Method::POST, "/api/v1/reload", None).await;
                    assert_eq!(code, 200, "reload: {v}");
                }
                ok += 1;
            }
            (ok, refused)
        })
    };

    // The director: flips, then a rollout to a failing green that must roll
    // back by itself, then flips again.
    let mut flips = 0u32;
    let flip = |i: u32| async move {
        let (blue_w, green_w) =
            [(50.0, 50.0), (0.0, 100.0), (90.0, 10.0), (100.0, 0.0)][i as usize % 4];
        let (code, v) = admin_json(
            admin,
            Method::PUT,
            "/api/v1/weights",
            Some(json!({"blue": blue_w, "green": green_w})),
        )
        .await;
        assert_eq!(code, 200, "weights: {v}");
    };
    let warm_at = started + total / 4;
    let mut warm: Option<(usize, u64)> = None;
    let rollout_at = started + total * 2 / 5;
    while Instant::now() < rollout_at {
        flip(flips).await;
        flips += 1;
        if warm.is_none() && Instant::now() >= warm_at {
            warm = Some((p.open_fds(), p.status_kib("VmRSS:")));
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let (fds_warm, rss_warm) = warm.unwrap_or_else(|| (p.open_fds(), p.status_kib("VmRSS:")));

    // Blue live, green failing, a rollout to green: it must roll back.
    let (code, v) = admin_json(
        admin,
        Method::PUT,
        "/api/v1/weights",
        Some(json!({"blue": 100, "green": 0})),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    ups.set_failure_rate("green", 0.5);
    let (code, v) = admin_json(
        admin,
        Method::POST,
        "/api/v1/rollout",
        Some(json!({"to": "green"})),
    )
    .await;
    assert_eq!(code, 200, "rollout: {v}");
    let rolled_back = Instant::now();
    wait_for(
        Duration::from_secs(15),
        "the automatic rollback",
        || async {
            let (_, st) = admin_json(admin, Method::GET, "/api/v1/status", None).await;
            st["rollback_lock"]["pool"] == "green" && st["weights"]["green"] == 0.0
        },
    )
    .await;
    let rollback_took = rolled_back.elapsed();
    ups.set_failure_rate("green", 0.0);
    let (code, v) = admin_json(admin, Method::POST, "/api/v1/rearm", None).await;
    assert_eq!(code, 200, "rearm: {v}");

    while Instant::now() < end {
        flip(flips).await;
        flips += 1;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for w in workers {
        outcomes.extend(w.await.unwrap());
    }
    let restarts = restarts.await.unwrap();
    let (reloads_ok, reloads_refused) = reloads.await.unwrap();

    // Accounting.
    let deliveries = ups.deliveries();
    let mut by_status: HashMap<u16, usize> = HashMap::new();
    let mut lost = Vec::new();
    let mut twice = Vec::new();
    let mut unaccounted = Vec::new();
    let (mut err_delivered, mut err_not_delivered) = (0usize, 0usize);
    for o in &outcomes {
        *by_status.entry(o.status).or_insert(0) += 1;
        let d = deliveries.get(&o.id).copied().unwrap_or(0);
        if o.status == 0 {
            lost.push(o.clone());
        } else if d > 1 {
            twice.push(o.clone());
        } else if !o.upstream.is_empty() {
            // Answered by an upstream: delivered exactly once.
            if d != 1 {
                unaccounted.push(o.clone());
            }
        } else {
            // Answered by the proxy itself.
            assert!(matches!(o.status, 502..=504), "proxy answered {o:?}");
            if o.status == 503 && d != 0 {
                unaccounted.push(o.clone());
            }
            if d == 1 {
                err_delivered += 1
            } else {
                err_not_delivered += 1
            }
        }
    }
    let posts = outcomes.iter().filter(|o| o.method == Method::POST).count();
    let metrics = get(&client(), format!("http://{admin}/metrics"))
        .await
        .text();
    let counted = metric_sum(&metrics, "switchyard_requests_total");
    let refused_503 = by_status.get(&503).copied().unwrap_or(0) as u64;
    let sent = outcomes.len() as u64;

    // Descriptors back (clients gone), memory flat.
    let back = poll_until(Duration::from_secs(10), || {
        let fds = p.open_fds();
        async move { fds <= fds_warm + 8 }
    })
    .await;
    if !back {
        let (_, st) = admin_json(admin, Method::GET, "/api/v1/status", None).await;
        let idle: Vec<String> = ["blue", "green"]
            .iter()
            .flat_map(|pool| {
                st["pools"][pool]["endpoints"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|e| format!("{} idle {}", e["address"], e["idle"]))
            .collect();
        panic!(
            "descriptors did not come back: {} open, {fds_warm} when warm; idle pooled connections: {idle:?}",
            p.open_fds()
        );
    }
    let (fds_end, rss_end) = (p.open_fds(), p.status_kib("VmRSS:"));
    let events = admin_json(admin, Method::GET, "/api/v1/events?limit=1000", None)
        .await
        .1;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    eprintln!(
        "soak {secs}s: {sent} requests ({posts} POST), statuses {by_status:?}; proxy errors delivered {err_delivered}, not delivered {err_not_delivered}; \
         metric {counted}; flips {flips}, reloads {reloads_ok} (+{reloads_refused} refused), upstream restarts {restarts}, rollback after {rollback_took:?}; \
         fds warm {fds_warm} end {fds_end}; RSS warm {rss_warm} KiB end {rss_end} KiB"
    );
    assert!(
        lost.is_empty(),
        "{} requests got no answer: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        twice.is_empty(),
        "{} requests processed twice: {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    assert!(
        unaccounted.is_empty(),
        "answers the upstreams do not account for: {:?}",
        &unaccounted[..unaccounted.len().min(5)]
    );
    assert_eq!(
        counted,
        sent - refused_503,
        "switchyard_requests_total disagrees with the client"
    );
    assert!(
        sent > 200 * secs,
        "too little load to mean anything: {sent}"
    );
    assert!(restarts >= 2 && flips >= 4 && reloads_ok >= 3 && reloads_refused == 1);
    assert!(
        kinds.contains(&"rollback")
            && kinds.contains(&"config_rejected")
            && kinds.contains(&"config_reloaded"),
        "{kinds:?}"
    );
    assert!(
        rss_end <= rss_warm + rss_warm / 4 + 4 * 1024,
        "memory grew from {rss_warm} KiB to {rss_end} KiB"
    );
    // The state file is whole and says what status says.
    let st = admin_json(admin, Method::GET, "/api/v1/status", None)
        .await
        .1;
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved["weights"], st["weights"]);
    assert_eq!(saved["generation"], st["generation"]);
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(10)).await.success());
}
