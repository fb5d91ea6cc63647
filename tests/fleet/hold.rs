//! The fleet-wide write hold (SPEC.md section 9): three `switchyard`
//! processes on one real etcd, a held switch started through one of them,
//! load spread over all three. Every POST reaches one pool once, none
//! reaches blue after the first reached green; a member stopped before it
//! acknowledges aborts the switch naming it; a member stopped after its
//! acknowledgement never sends a write to blue.

use crate::support::etcd::Etcd;
use crate::support::replica::{call, call_within, client, FleetOpts, HttpClient, Replica};
use crate::support::upstream::Upstream;
use crate::support::{prefix, wait_for};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub struct HeldFleet {
    pub replicas: Vec<Replica>,
    pub blue: Upstream,
    pub green: Upstream,
    _gate: Upstream,
    pub prefix: String,
    _dir: tempfile::TempDir,
}

/// The cutover section: hold writes, `max_hold`, the gate upstream's `/gate`.
fn cutover_yaml(gate: SocketAddr, max_hold: &str) -> String {
    format!(
        "cutover:\n  hold_writes: true\n  max_hold: {max_hold}\n  gate:\n    url: \"http://{gate}/gate\"\n    poll_interval: 20ms\n    timeout: 200ms\n"
    )
}

/// Three replicas a, b, c on `endpoints` holding writes on switches; the
/// gate opens `gate_after_ms` after its first poll. Waits until all three
/// show one generation, list three members and see green healthy.
pub async fn held_fleet(
    test: &str,
    endpoints: Vec<String>,
    max_hold: &str,
    gate_after_ms: u64,
) -> HeldFleet {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let gate = Upstream::start("gate").await;
    gate.set_gate_open_after(gate_after_ms);
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix(test);
    let extra = cutover_yaml(gate.addr, max_hold);
    let mut replicas = Vec::new();
    for id in ["a", "b", "c"] {
        let opts = FleetOpts {
            endpoints: endpoints.clone(),
            prefix: prefix.clone(),
            write_fence: "2s",
            member_ttl: "3s",
        };
        replicas
            .push(Replica::start_with(dir.path(), id, blue.addr, green.addr, &opts, &extra).await);
    }
    let c = client();
    wait_for(
        Duration::from_secs(15),
        "three members and green healthy everywhere",
        || async {
            let mut generation = None;
            for r in &replicas {
                let s = r.status(&c).await?;
                let ok = s["fleet"]["members"].as_array()?.len() == 3
                    && s["pools"]["green"]["healthy"].as_u64()? >= 1
                    && s["generation"].as_u64()? > 0;
                if !ok || generation.is_some_and(|g| g != s["generation"]) {
                    return None;
                }
                generation = Some(s["generation"].clone());
            }
            Some(())
        },
    )
    .await;
    HeldFleet {
        replicas,
        blue,
        green,
        _gate: gate,
        prefix,
        _dir: dir,
    }
}

pub struct Outcome {
    pub id: String,
    pub method: Method,
    pub status: u16,
    pub replica: usize,
}

/// `workers` clients, each on one replica in turn, sending GET or (one in
/// five: 80 % GET, 20 % POST) POST with unique ids.
pub fn mixed_load(
    targets: Vec<SocketAddr>,
    workers: usize,
    stop: CancellationToken,
) -> Vec<tokio::task::JoinHandle<Vec<Outcome>>> {
    let seq = Arc::new(AtomicU64::new(0));
    (0..workers)
        .map(|w| {
            let (stop, seq, c, targets) = (stop.clone(), seq.clone(), client(), targets.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                let replica = w % targets.len();
                while !stop.is_cancelled() {
                    let n = seq.fetch_add(1, Ordering::Relaxed);
                    let method = if n % 5 == 0 {
                        Method::POST
                    } else {
                        Method::GET
                    };
                    out.push(one(&c, targets[replica], replica, method, n).await);
                }
                out
            })
        })
        .collect()
}

async fn one(c: &HttpClient, to: SocketAddr, replica: usize, method: Method, n: u64) -> Outcome {
    let id = format!("req-{n}");
    let req = Request::builder()
        .method(method.clone())
        .uri(format!("http://{to}/"))
        .header("x-request-id", &id)
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let status = match tokio::time::timeout(Duration::from_secs(20), c.request(req)).await {
        Ok(Ok(r)) => {
            let status = r.status().as_u16();
            let _ = r.into_body().collect().await;
            status
        }
        _ => 0,
    };
    Outcome {
        id,
        method,
        status,
        replica,
    }
}

pub async fn collect(tasks: Vec<tokio::task::JoinHandle<Vec<Outcome>>>) -> Vec<Outcome> {
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// A mixed load running over a fleet's replicas.
pub struct Load {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<Vec<Outcome>>>,
}

impl Load {
    /// `workers` clients over every replica of `f`, once they have sent
    /// more than `min_blue` requests to blue.
    pub async fn on_blue(f: &HeldFleet, workers: usize, min_blue: u64) -> Load {
        let stop = CancellationToken::new();
        let targets = f.replicas.iter().map(|r| r.proxy).collect();
        let tasks = mixed_load(targets, workers, stop.clone());
        wait_for(Duration::from_secs(10), "traffic on blue", || async {
            (f.blue.requests() > min_blue).then_some(())
        })
        .await;
        Load { stop, tasks }
    }

    /// Stop the clients; what each request got.
    pub async fn finish(self) -> Vec<Outcome> {
        self.stop.cancel();
        collect(self.tasks).await
    }
}

/// What [`call`] gives: status, `Retry-After`, the body.
type Answer = (u16, Option<String>, serde_json::Value);

/// `POST /switch` to green through `admin`, answered in the background
/// (within 30 s).
fn switch_in_background(
    c: &HttpClient,
    admin: SocketAddr,
) -> tokio::task::JoinHandle<Result<Answer, String>> {
    let c = c.clone();
    tokio::spawn(async move {
        let body = Some(json!({"to": "green"}));
        let within = Duration::from_secs(30);
        call_within(&c, admin, Method::POST, "/api/v1/switch", body, within).await
    })
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

/// The arrival times of POSTs at `up`.
fn post_times(up: &Upstream) -> Vec<Instant> {
    up.arrivals()
        .into_iter()
        .filter(|a| a.1 == Method::POST)
        .map(|a| a.2)
        .collect()
}

/// No POST reached blue after the first reached green.
#[track_caller]
pub fn no_interleaving(f: &HeldFleet) {
    let last_blue = post_times(&f.blue).into_iter().max();
    let first_green = post_times(&f.green).into_iter().min();
    if let (Some(b), Some(g)) = (last_blue, first_green) {
        assert!(
            b < g,
            "a write reached blue {:?} after the first reached green",
            b - g
        );
    }
}

/// Each POST the clients sent reached the pools at most once, and exactly
/// once when the client saw a 2xx.
#[track_caller]
pub fn each_post_once(f: &HeldFleet, out: &[Outcome]) {
    let (b, g) = (post_ids(&f.blue), post_ids(&f.green));
    for o in out.iter().filter(|o| o.method == Method::POST) {
        let n = b.get(&o.id).copied().unwrap_or(0) + g.get(&o.id).copied().unwrap_or(0);
        if (200..300).contains(&o.status) {
            assert_eq!(
                n, 1,
                "POST {} (answered {}) reached the pools {n} times",
                o.id, o.status
            );
        } else {
            assert!(n <= 1, "POST {} reached the pools {n} times", o.id);
        }
    }
}

/// `POST /switch` to green through `f.replicas[i]`; fails the test with
/// the replicas' logs when it is not answered.
pub async fn switch(c: &HttpClient, f: &HeldFleet, i: usize) -> (u16, serde_json::Value) {
    let r = &f.replicas[i];
    let body = Some(json!({"to": "green"}));
    match call(c, r.admin, Method::POST, "/api/v1/switch", body).await {
        Ok((s, _, body)) => (s, body),
        Err(e) => panic!("the switch was not answered ({e}); logs:\n{}", logs(f)),
    }
}

/// The tail of every replica's log.
pub fn logs(f: &HeldFleet) -> String {
    let mut out = String::new();
    for r in &f.replicas {
        let log = r.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        out.push_str(&format!("--- {} ---\n", r.id));
        for l in tail.into_iter().rev() {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

fn signal(r: &Replica, sig: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(r.child.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {}", r.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_switch_under_load_over_three_replicas_loses_and_interleaves_nothing() {
    let etcd = Etcd::one().await;
    let f = held_fleet("hold3", etcd.endpoints(), "3s", 300).await;
    let c = client();
    let load = Load::on_blue(&f, 12, 300).await;

    let (status, report) = switch(&c, &f, 0).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["outcome"], "completed", "{report}");
    assert!(report["gate_ms"].as_u64().unwrap() >= 250, "{report}");
    let green_then = f.green.requests();
    wait_for(Duration::from_secs(10), "traffic on green", || async {
        (f.green.requests() > green_then + 300).then_some(())
    })
    .await;
    let out = load.finish().await;

    let errors: Vec<_> = out.iter().filter(|o| o.status != 200).collect();
    assert!(
        errors.is_empty(),
        "{} client errors, e.g. {} on replica {}",
        errors.len(),
        errors[0].status,
        errors[0].replica
    );
    each_post_once(&f, &out);
    no_interleaving(&f);
    for r in 0..3 {
        let posts = out
            .iter()
            .filter(|o| o.replica == r && o.method == Method::POST)
            .count();
        assert!(posts > 20, "replica {r} carried {posts} POSTs");
    }
    eprintln!(
        "fleet hold: {} held on a, hold {} ms (drain {} ms, gate {} ms)",
        report["held_requests"], report["hold_ms"], report["drain_ms"], report["gate_ms"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_before_the_switch_aborts_it_naming_the_replica() {
    let etcd = Etcd::one().await;
    let f = held_fleet("hold-stop", etcd.endpoints(), "1500ms", 0).await;
    let c = client();
    signal(&f.replicas[2], "STOP");
    let stop = CancellationToken::new();
    let targets = f.replicas[..2].iter().map(|r| r.proxy).collect();
    let load = Load {
        stop: stop.clone(),
        tasks: mixed_load(targets, 6, stop),
    };

    let started = Instant::now();
    let (status, report) = switch(&c, &f, 0).await;
    let took = started.elapsed();
    signal(&f.replicas[2], "CONT");
    let out = load.finish().await;

    assert_eq!(status, 409, "{report}");
    let err = &report["error"];
    assert_eq!(err["code"], "switch_aborted", "{report}");
    assert_eq!(err["report"]["missing_acks"], json!(["c"]), "{report}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("no acknowledgement from c"),
        "{report}"
    );
    assert!(
        took >= Duration::from_millis(1400),
        "aborted after {took:?}"
    );
    assert_eq!(f.green.requests(), 0, "nothing reaches green");
    each_post_once(&f, &out);
    assert!(out.iter().all(|o| o.status == 200), "a client saw an error");
    // Every member, c too once it runs again, shows the abort: blue live.
    for r in &f.replicas {
        wait_for(Duration::from_secs(10), "blue live everywhere", || async {
            let s = r.status(&c).await?;
            (s["phase"] != "switching" && s["weights"]["blue"] == json!(100.0)).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_after_its_ack_never_sends_a_write_to_blue() {
    let etcd = Etcd::one().await;
    let f = held_fleet("hold-acked", etcd.endpoints(), "3s", 800).await;
    let c = client();
    let etcd_client = crate::support::connect(etcd.endpoints(), &f.prefix).await;
    let g0 = f.replicas[0].generation(&c).await.unwrap();

    let load = Load::on_blue(&f, 9, 200).await;
    let coordinator = switch_in_background(&c, f.replicas[0].admin);
    // The hold is the next generation; c acks it, then stops.
    let hold = (g0 + 1).to_string();
    wait_for(Duration::from_secs(5), "c's ack in etcd", || async {
        let acks = etcd_client.acks(&hold).await.ok()?;
        acks.contains("c").then_some(())
    })
    .await;
    signal(&f.replicas[2], "STOP");
    let stopped_at = Instant::now();
    let (status, _, report) = coordinator.await.unwrap().expect("the switch is answered");
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["outcome"], "completed", "{report}");
    // c runs again once b shows the flip: what it held, and what queued
    // at its door meanwhile, goes to green or is refused, never to blue.
    wait_for(Duration::from_secs(10), "b shows the flip", || async {
        let s = f.replicas[1].status(&c).await?;
        (s["weights"]["green"] == json!(100.0)).then_some(())
    })
    .await;
    signal(&f.replicas[2], "CONT");
    wait_for(Duration::from_secs(10), "c shows the flip", || async {
        let s = f.replicas[2].status(&c).await?;
        (s["weights"]["green"] == json!(100.0)).then_some(())
    })
    .await;
    let green_then = f.green.requests();
    wait_for(Duration::from_secs(10), "traffic on green", || async {
        (f.green.requests() > green_then + 200).then_some(())
    })
    .await;
    let out = load.finish().await;

    each_post_once(&f, &out);
    no_interleaving(&f);
    let from_c: std::collections::HashSet<&str> = out
        .iter()
        .filter(|o| o.replica == 2 && o.method == Method::POST)
        .map(|o| o.id.as_str())
        .collect();
    let late = f
        .blue
        .arrivals()
        .into_iter()
        .filter(|(id, m, at)| {
            *m == Method::POST && *at > stopped_at && from_c.contains(id.as_str())
        })
        .count();
    assert_eq!(
        late, 0,
        "a write through c reached blue after c acked and stopped"
    );
    let c_refused = out
        .iter()
        .filter(|o| o.replica == 2 && o.status != 200)
        .count();
    let others_failed = out
        .iter()
        .filter(|o| o.replica != 2 && o.status != 200)
        .count();
    assert_eq!(others_failed, 0, "a and b answer every request");
    eprintln!("stopped after its ack: c refused {c_refused} requests (503), none reached blue");
}

/// `n` held switches back and forth through `admin`; each one's `hold_ms`.
/// `logs` tells what the proxies logged when one is not answered.
async fn hold_lengths(
    c: &HttpClient,
    admin: SocketAddr,
    n: usize,
    logs: impl Fn() -> String,
) -> Vec<u64> {
    let mut out = Vec::new();
    for i in 0..n {
        let to = if i % 2 == 0 { "green" } else { "blue" };
        let body = Some(json!({ "to": to }));
        let path = "/api/v1/switch";
        let within = Duration::from_secs(10);
        let (s, _, report) =
            crate::support::replica::call_within(c, admin, Method::POST, path, body, within)
                .await
                .unwrap_or_else(|e| {
                    panic!("switch {i} to {to} not answered ({e}); logs:\n{}", logs())
                });
        assert_eq!(s, 200, "{report}");
        assert_eq!(report["outcome"], "completed", "{report}");
        out.push(report["hold_ms"].as_u64().unwrap());
    }
    out.sort_unstable();
    out
}

/// The write-hold length of a fleet cutover (three members, one etcd)
/// against a single proxy's, side by side on the same upstreams and gate
/// (open), 20 switches each: the fleet's adds the members' acks and one
/// guarded etcd commit. Printed for the note; bounded by `max_hold`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_length_of_a_fleet_cutover_against_a_single_proxy() {
    let etcd = Etcd::one().await;
    let f = held_fleet("hold-len", etcd.endpoints(), "3s", 0).await;
    let c = client();
    let dir = tempfile::tempdir().unwrap();
    let single = Replica::start_single(
        dir.path(),
        "single",
        f.blue.addr,
        f.green.addr,
        &cutover_yaml(f._gate.addr, "3s"),
    )
    .await;
    wait_for(
        Duration::from_secs(10),
        "green healthy on the single proxy",
        || async {
            let s = single.status(&c).await?;
            (s["pools"]["green"]["healthy"].as_u64()? >= 1).then_some(())
        },
    )
    .await;
    let n = 20;
    let fleet = hold_lengths(&c, f.replicas[0].admin, n, || logs(&f)).await;
    let one = hold_lengths(&c, single.admin, n, || single.log()).await;
    eprintln!(
        "write hold over {n} switches: fleet of 3 p50 {} ms / max {} ms; single proxy p50 {} ms / max {} ms",
        fleet[n / 2],
        fleet[n - 1],
        one[n / 2],
        one[n - 1]
    );
    assert!(
        fleet[n - 1] < 3_000,
        "a fleet hold reached max_hold: {fleet:?}"
    );
}

/// Three etcd members; the etcd leader is killed while the switch holds
/// writes (its gate still closed). Whatever the switch's answer, every
/// replica ends on the one outcome etcd holds, and no write interleaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_leader_killed_mid_switch_leaves_one_outcome_everywhere() {
    let mut etcd = Etcd::three().await;
    let f = held_fleet("hold-leader", etcd.endpoints(), "3s", 600).await;
    let c = client();
    let load = Load::on_blue(&f, 9, 200).await;
    let answer = switch_in_background(&c, f.replicas[0].admin);
    wait_for(Duration::from_secs(5), "a switching", || async {
        let s = f.replicas[0].status(&c).await?;
        (s["phase"] == "switching").then_some(())
    })
    .await;
    let leader = etcd.leader().await;
    etcd.kill(leader);
    let (status, _, report) = answer.await.unwrap().expect("the switch is answered");
    let want = match status {
        200 => "green",
        409 => "blue",
        other => panic!("the switch answered {other}: {report}"),
    };
    // Every replica converges on the outcome the switch reported.
    for r in &f.replicas {
        wait_for(
            Duration::from_secs(20),
            "one outcome everywhere",
            || async {
                let s = r.status(&c).await?;
                (s["phase"] != "switching" && s["weights"][want] == json!(100.0)).then_some(())
            },
        )
        .await;
    }
    wait_for(
        Duration::from_secs(20),
        "one generation everywhere",
        || async {
            let mut g = Vec::new();
            for r in &f.replicas {
                g.push(r.generation(&c).await?);
            }
            g.iter().all(|x| *x == g[0]).then_some(())
        },
    )
    .await;
    let out = load.finish().await;
    each_post_once(&f, &out);
    no_interleaving(&f);
    eprintln!("etcd leader killed mid-switch: the switch answered {status}; all on {want}");
}
