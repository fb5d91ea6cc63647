//! The instant switch with a write hold and a gate: a database cutover that
//! loses nothing.

use crate::support::*;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

struct Outcome {
    id: String,
    method: Method,
    status: u16,
    retry_after: bool,
    started: Instant,
    took: Duration,
}

/// Requests a load has sent and not yet seen answered, by method.
#[derive(Default)]
struct InFlight {
    gets: AtomicU64,
    posts: AtomicU64,
}

/// `workers` clients sending GET or (1 in `post_every`) POST with unique ids.
fn mixed_load(
    url: String,
    workers: usize,
    post_every: u64,
    stop: tokio_util::sync::CancellationToken,
) -> Vec<tokio::task::JoinHandle<Vec<Outcome>>> {
    counted_load(url, workers, post_every, stop, Arc::default())
}

/// [`mixed_load`], counting each worker's request in `in_flight` until
/// its answer has been read.
fn counted_load(
    url: String,
    workers: usize,
    post_every: u64,
    stop: tokio_util::sync::CancellationToken,
    in_flight: Arc<InFlight>,
) -> Vec<tokio::task::JoinHandle<Vec<Outcome>>> {
    let seq = Arc::new(AtomicU64::new(0));
    (0..workers)
        .map(|_| {
            let (url, stop, seq, c) = (url.clone(), stop.clone(), seq.clone(), client());
            let in_flight = in_flight.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                while !stop.is_cancelled() {
                    let n = seq.fetch_add(1, Ordering::Relaxed);
                    let (method, count) = if n % post_every == 0 {
                        (Method::POST, &in_flight.posts)
                    } else {
                        (Method::GET, &in_flight.gets)
                    };
                    let id = format!("req-{n}");
                    let req = Request::builder()
                        .method(method.clone())
                        .uri(&url)
                        .header("x-request-id", &id)
                        .body(Full::new(Bytes::from_static(b"payload")))
                        .unwrap();
                    count.fetch_add(1, Ordering::SeqCst);
                    let started = Instant::now();
                    let (status, retry_after) = match c.request(req).await {
                        Ok(r) => {
                            let a = read(r).await;
                            (a.status, a.headers.contains_key("retry-after"))
                        }
                        Err(_) => (0, false),
                    };
                    let took = started.elapsed();
                    count.fetch_sub(1, Ordering::SeqCst);
                    out.push(Outcome {
                        id,
                        method,
                        status,
                        retry_after,
                        started,
                        took,
                    });
                }
                out
            })
        })
        .collect()
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<Vec<Outcome>>>) -> Vec<Outcome> {
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// How many times each POST id reached `up`.
fn post_ids(up: &Upstream) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for (id, method, _) in up.arrivals() {
        if method == Method::POST {
            *m.entry(id).or_default() += 1;
        }
    }
    m
}

fn cutover_yaml(
    blue: &Upstream,
    green: &Upstream,
    gate: &Upstream,
    max_hold: &str,
    max_held: usize,
) -> String {
    config_yaml(
        &[blue.addr],
        &[green.addr],
        &format!(
            "cutover:\n  hold_writes: true\n  max_hold: {max_hold}\n  max_held_requests: {max_held}\n  gate:\n    url: \"http://{}/gate\"\n    poll_interval: 20ms\n    timeout: 200ms\nrollout:\n  bake_time: 0s\n",
            gate.addr
        ),
    )
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get((v.len() * 99 / 100).min(v.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// Under a mixed load, a switch holds every write until the gate opens and
/// none of the reads: with the gate closed until the test opens it, every
/// client ends up waiting on a held POST and on no GET, GETs sent then are
/// answered by blue, and each held POST reaches green once, after the flip.
/// (Counted, not timed: a bound on a GET's latency failed on a loaded
/// two-core machine, where any request may take 200 ms.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_with_gate_holds_writes_and_loses_none() {
    const WORKERS: usize = 12;
    let (blue, green, gate) = (
        Upstream::start("blue-1").await,
        Upstream::start("green-1").await,
        Upstream::start("gate").await,
    );
    gate.set_gate_open_after(u64::MAX);
    let s = start_proxy(&cutover_yaml(&blue, &green, &gate, "20s", 10_000)).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let in_flight = Arc::new(InFlight::default());
    let url = proxy_url(&s, "/");
    let load = counted_load(url.clone(), WORKERS, 5, stop.clone(), in_flight.clone());
    wait_for(Duration::from_secs(10), "traffic on blue", || async {
        blue.requests() > 300
    })
    .await;

    wait_healthy(s.admin_addr, "green").await;
    let switch_sent = Instant::now();
    let switch = spawn_switch_to_green(s.admin_addr);
    // Each client has one request in flight at a time: once WORKERS are
    // held, every client waits on a held request, and each must be a POST.
    wait_for(
        Duration::from_secs(15),
        "every client waiting on a held write",
        || async { status(&s).await["held_requests"].as_u64() == Some(WORKERS as u64) },
    )
    .await;
    let all_held = Instant::now();
    assert_eq!(
        in_flight.gets.load(Ordering::SeqCst),
        0,
        "a GET is waiting while writes are held"
    );
    assert_eq!(in_flight.posts.load(Ordering::SeqCst), WORKERS as u64);
    // Reads go on meanwhile, to blue.
    let c = client();
    let mut get_max = Duration::ZERO;
    for _ in 0..20 {
        let t = Instant::now();
        let a = send(&c, Method::GET, url.clone(), "").await;
        get_max = get_max.max(t.elapsed());
        assert_eq!((a.status, a.upstream()), (200, "blue-1"));
    }
    let st = status(&s).await;
    assert_eq!(st["phase"], "switching", "{st}");
    assert_eq!(st["held_requests"], WORKERS, "{st}");

    let gate_opened = Instant::now();
    gate.set_gate_open_after(0);
    let (code, report) = switch.await.unwrap();
    let switch_done = Instant::now();
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["outcome"], "completed");
    assert!(
        report["held_requests"].as_u64() >= Some(WORKERS as u64),
        "{report}"
    );
    wait_for(Duration::from_secs(10), "traffic on green", || async {
        green.requests() > 300
    })
    .await;
    stop.cancel();
    let out = collect(load).await;

    assert!(out.iter().all(|o| o.status == 200), "a client saw an error");
    let (b, g) = (post_ids(&blue), post_ids(&green));
    let posts: Vec<&Outcome> = out.iter().filter(|o| o.method == Method::POST).collect();
    for o in &posts {
        let n = b.get(&o.id).copied().unwrap_or(0) + g.get(&o.id).copied().unwrap_or(0);
        assert_eq!(n, 1, "POST {} reached the pools {n} times", o.id);
    }
    // No write reached blue after the first write reached green: no interleaving.
    let last_blue = blue
        .arrivals()
        .iter()
        .filter(|a| a.1 == Method::POST)
        .map(|a| a.2)
        .max()
        .unwrap();
    let first_green = green
        .arrivals()
        .iter()
        .filter(|a| a.1 == Method::POST)
        .map(|a| a.2)
        .min()
        .unwrap();
    assert!(
        last_blue < first_green,
        "a write reached blue after the flip"
    );
    // The held POSTs: sent before every client was held, answered after
    // the gate opened; each went to green.
    let held: Vec<&&Outcome> = posts
        .iter()
        .filter(|o| o.started < all_held && o.started + o.took > gate_opened)
        .collect();
    assert!(held.len() >= WORKERS, "{} held POSTs", held.len());
    for o in &held {
        assert!(g.contains_key(&o.id), "held POST {} went to blue", o.id);
    }
    let during = |o: &Outcome| o.started >= switch_sent && o.started < switch_done;
    let delays: Vec<Duration> = posts.iter().filter(|o| during(o)).map(|o| o.took).collect();
    eprintln!(
        "cutover: {} held, hold {} ms, gate {} ms; held POST delay p99 {:?} (n={}), slowest of 20 GETs while {WORKERS} writes were held {:?}",
        report["held_requests"], report["hold_ms"], report["gate_ms"], p99(delays.clone()), delays.len(), get_max
    );
    let metrics = metrics_text(&s).await;
    assert!(
        metrics.contains("switchyard_switches_total{result=\"completed\",to=\"green\"} 1"),
        "{metrics}"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_that_never_opens_aborts_and_held_writes_land_on_blue() {
    let (blue, green, gate) = (
        Upstream::start("blue-1").await,
        Upstream::start("green-1").await,
        Upstream::start("gate").await,
    );
    gate.set_gate_open_after(u64::MAX);
    let s = start_proxy(&cutover_yaml(&blue, &green, &gate, "500ms", 10_000)).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let load = mixed_load(proxy_url(&s, "/"), 8, 5, stop.clone());
    wait_for(Duration::from_secs(10), "traffic on blue", || async {
        blue.requests() > 200
    })
    .await;
    wait_healthy(s.admin_addr, "green").await;
    let (code, v) = api(
        s.admin_addr,
        Method::POST,
        "/api/v1/switch",
        Some(json!({"to": "green"})),
        None,
    )
    .await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["error"]["code"], "switch_aborted");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("gate"),
        "{v}"
    );
    assert_eq!(v["error"]["report"]["gate_answer"], "503");
    let held = v["error"]["report"]["held_requests"].as_u64().unwrap();
    let before = blue.requests();
    wait_for(
        Duration::from_secs(10),
        "traffic after the abort",
        || async { blue.requests() > before + 200 },
    )
    .await;
    stop.cancel();
    let out = collect(load).await;
    assert!(out.iter().all(|o| o.status == 200), "a client saw an error");
    assert_eq!(
        green.requests(),
        0,
        "a request reached green although the switch aborted"
    );
    let b = post_ids(&blue);
    for o in out.iter().filter(|o| o.method == Method::POST) {
        assert_eq!(
            b.get(&o.id),
            Some(&1),
            "POST {} not on blue exactly once",
            o.id
        );
    }
    assert!(held > 0, "nothing was held");
    let st = status(&s).await;
    assert_eq!(st["phase"], "stable");
    assert_eq!(st["weights"]["blue"], 100.0);
    let (_, ev) = api(s.admin_addr, Method::GET, "/api/v1/events", None, None).await;
    assert!(ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "switch_aborted"));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_write_in_flight_delays_the_flip_until_it_completes() {
    let (blue, green, gate) = (
        Upstream::start("blue-1").await,
        Upstream::start("green-1").await,
        Upstream::start("gate").await,
    );
    let s = start_proxy(&cutover_yaml(&blue, &green, &gate, "5s", 10_000)).await;
    wait_healthy(s.admin_addr, "green").await;
    let c = client();
    let slow_url = proxy_url(&s, "/delay/2000");
    let slow = tokio::spawn(async move { send(&c, Method::POST, slow_url, "long write").await });
    wait_for(Duration::from_secs(5), "the long write on blue", || async {
        blue.requests() == 1
    })
    .await;
    let admin = s.admin_addr;
    let switch = spawn_switch_to_green(admin);
    wait_for(Duration::from_secs(5), "the switch to hold", || async {
        status(&s).await["phase"] == "switching"
    })
    .await;
    // A write arriving now is held, then goes to green.
    let c = client();
    let held = send(&c, Method::POST, proxy_url(&s, "/"), "held write").await;
    let long = slow.await.unwrap();
    let (code, report) = switch.await.unwrap();
    assert_eq!(long.status, 200);
    assert_eq!(long.upstream(), "blue-1");
    assert_eq!(code, 200, "{report}");
    assert!(
        report["drain_ms"].as_u64().unwrap() >= 1000,
        "the flip did not wait: {report}"
    );
    assert_eq!(held.status, 200);
    assert_eq!(
        held.upstream(),
        "green-1",
        "the held write went to the old pool"
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_beyond_max_held_get_503_with_retry_after_and_nothing_else_is_lost() {
    let ([blue, green, _gate], s, switch) = switch_in_progress(800, 5).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let load = mixed_load(proxy_url(&s, "/"), 20, 1, stop.clone());
    let (code, report) = switch.await.unwrap();
    assert_eq!(code, 200, "{report}");
    stop.cancel();
    let out = collect(load).await;
    let refused: Vec<&Outcome> = out.iter().filter(|o| o.status == 503).collect();
    assert!(
        !refused.is_empty(),
        "no write was refused beyond max_held_requests"
    );
    assert!(
        refused.iter().all(|o| o.retry_after),
        "a 503 without Retry-After"
    );
    assert!(out.iter().all(|o| o.status == 200 || o.status == 503));
    let (b, g) = (post_ids(&blue), post_ids(&green));
    for o in &out {
        let n = b.get(&o.id).copied().unwrap_or(0) + g.get(&o.id).copied().unwrap_or(0);
        let want = usize::from(o.status == 200);
        assert_eq!(
            n, want,
            "POST {} (status {}) reached the pools {n} times",
            o.id, o.status
        );
    }
    assert!(report["held_requests"].as_u64().unwrap() <= 5 * 20);
    // The refused writes are in the request metrics, for blue (live while
    // they were held), as answers no upstream gave.
    let text = metrics_text(&s).await;
    let blue_errors: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("switchyard_requests_total{code=\"error\",pool=\"blue\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert_eq!(blue_errors, refused.len(), "{text}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_holds_writes_but_never_waits_for_the_gate() {
    let (blue, green, gate) = (
        Upstream::start("blue-1").await,
        Upstream::start("green-1").await,
        Upstream::start("gate").await,
    );
    gate.set_gate_open_after(u64::MAX);
    let s = start_proxy(&cutover_yaml(&blue, &green, &gate, "2s", 10_000)).await;
    crate::support::admin::set_weights(&client(), &s, 50.0, 50.0).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let load = mixed_load(proxy_url(&s, "/"), 8, 3, stop.clone());
    wait_for(Duration::from_secs(10), "traffic on green", || async {
        green.requests() > 100
    })
    .await;
    let started = Instant::now();
    let (code, v) = api(
        s.admin_addr,
        Method::POST,
        "/api/v1/rollback",
        Some(json!({"reason": "test"})),
        None,
    )
    .await;
    let took = started.elapsed();
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["weights"]["blue"], 100.0);
    // A gate wait would end in an abort at max_hold (2 s); a rollback never waits for it.
    assert!(
        took < Duration::from_millis(1900),
        "the rollback waited {took:?} (on the gate?)"
    );
    let green_at = green.requests();
    wait_for(
        Duration::from_secs(10),
        "traffic after the rollback",
        || async { blue.requests() > 400 },
    )
    .await;
    stop.cancel();
    let out = collect(load).await;
    assert!(out.iter().all(|o| o.status == 200), "a client saw an error");
    // Requests routed before the flip may still be arriving: one per worker at most.
    assert!(
        green.requests() <= green_at + 8,
        "traffic reached green after the rollback"
    );
    let (b, g) = (post_ids(&blue), post_ids(&green));
    for o in out.iter().filter(|o| o.method == Method::POST) {
        let n = b.get(&o.id).copied().unwrap_or(0) + g.get(&o.id).copied().unwrap_or(0);
        assert_eq!(n, 1, "POST {} reached the pools {n} times", o.id);
    }
    // The rollback set the lock on the candidate.
    let (_, st) = api(s.admin_addr, Method::GET, "/api/v1/status", None, None).await;
    assert_eq!(st["rollback_lock"]["pool"], "green");
    s.shutdown().await;
}

/// Blue live and green healthy, writes held (`max_hold` 3 s, at most
/// `max_held` of them), a gate that opens `gate_after_ms` after its first
/// poll, and a switch to green under way: its answer comes from the handle.
pub(crate) async fn switch_in_progress(
    gate_after_ms: u64,
    max_held: usize,
) -> (
    [Upstream; 3],
    switchyard::server::Server,
    tokio::task::JoinHandle<(u16, serde_json::Value)>,
) {
    let (blue, green, gate) = (
        Upstream::start("blue-1").await,
        Upstream::start("green-1").await,
        Upstream::start("gate").await,
    );
    gate.set_gate_open_after(gate_after_ms);
    let s = start_proxy(&cutover_yaml(&blue, &green, &gate, "3s", max_held)).await;
    wait_healthy(s.admin_addr, "green").await;
    let admin = s.admin_addr;
    let switch = spawn_switch_to_green(admin);
    wait_for(
        Duration::from_secs(5),
        "the switch to hold writes",
        || async { status(&s).await["phase"] == "switching" },
    )
    .await;
    ([blue, green, gate], s, switch)
}

/// `POST /api/v1/switch` to green, answered through the handle: a held
/// switch answers only when it ends.
pub(crate) fn spawn_switch_to_green(
    admin: std::net::SocketAddr,
) -> tokio::task::JoinHandle<(u16, serde_json::Value)> {
    tokio::spawn(async move {
        api(
            admin,
            Method::POST,
            "/api/v1/switch",
            Some(json!({"to": "green"})),
            None,
        )
        .await
    })
}
