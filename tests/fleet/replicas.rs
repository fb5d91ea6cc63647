//! Three `switchyard` processes sharing one state through a real etcd
//! (SPEC.md section 9): every member shows a change made through any one
//! of them, `if_generation` holds across members, a member out of touch
//! keeps serving reads and fences writes, and a member cut off through a
//! compaction resyncs. Conditions are awaited with deadlines.

use crate::support::etcd::Etcd;
use crate::support::gate::Gate;
use crate::support::replica::{call, client, FleetOpts, HttpClient, Replica};
use crate::support::upstream::Upstream;
use crate::support::{prefix, wait_for};
use http::Method;
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

pub(crate) struct Fleet {
    pub(crate) replicas: Vec<Replica>,
    _blue: Upstream,
    _green: Upstream,
    _dir: tempfile::TempDir,
}

/// Three replicas on `endpoints[i]` (one list per replica).
pub(crate) async fn fleet(
    test: &str,
    endpoints: [Vec<String>; 3],
    write_fence: &'static str,
) -> Fleet {
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix(test);
    let mut replicas = Vec::new();
    for (i, endpoints) in endpoints.into_iter().enumerate() {
        let opts = FleetOpts {
            endpoints,
            prefix: prefix.clone(),
            write_fence,
            member_ttl: "3s",
        };
        let id = ["a", "b", "c"][i];
        replicas.push(Replica::start(dir.path(), id, blue.addr, green.addr, &opts).await);
    }
    Fleet {
        replicas,
        _blue: blue,
        _green: green,
        _dir: dir,
    }
}

/// Every replica's generation, None for one that does not answer.
async fn generations(c: &HttpClient, rs: &[Replica]) -> Vec<Option<u64>> {
    let mut out = Vec::new();
    for r in rs {
        out.push(r.generation(c).await);
    }
    out
}

/// Wait until every replica shows one generation (> 0), and each lists
/// three members; returns it.
pub(crate) async fn converged(c: &HttpClient, rs: &[Replica], within: Duration, what: &str) -> u64 {
    wait_for(within, what, || async {
        let g = generations(c, rs).await;
        let first = g[0]?;
        (first > 0 && g.iter().all(|x| *x == Some(first))).then_some(first)
    })
    .await
}

async fn put_weights(
    c: &HttpClient,
    r: &Replica,
    green: f64,
    if_generation: Option<u64>,
) -> (u16, Option<String>, serde_json::Value) {
    try_put_weights(c, r, green, if_generation)
        .await
        .expect("admin answers")
}

/// `PUT /weights`; Err when the admin API does not answer in time (a
/// commit waiting on a frozen etcd).
pub(crate) async fn try_put_weights(
    c: &HttpClient,
    r: &Replica,
    green: f64,
    if_generation: Option<u64>,
) -> Result<(u16, Option<String>, serde_json::Value), String> {
    let mut body = json!({"blue": 100.0 - green, "green": green});
    if let Some(g) = if_generation {
        body["if_generation"] = json!(g);
    }
    call(c, r.admin, Method::PUT, "/api/v1/weights", Some(body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_through_one_replica_shows_on_all_three_within_a_second() {
    let etcd = Etcd::one().await;
    let e = etcd.endpoints();
    let f = fleet("switch3", [e.clone(), e.clone(), e], "2s").await;
    let c = client();
    let g0 = converged(
        &c,
        &f.replicas,
        Duration::from_secs(10),
        "a first generation",
    )
    .await;
    // Every member lists the three, and knows the leader.
    let leader = wait_for(
        Duration::from_secs(10),
        "three members and a leader in status",
        || async {
            let s = f.replicas[2].status(&c).await?;
            let leader = s["fleet"]["leader"].as_str()?.to_owned();
            (s["fleet"]["members"].as_array()?.len() == 3).then_some(leader)
        },
    )
    .await;
    // Through a member that does not lead: an operator's change needs no
    // leadership (with no bake time the switch also completes the bake,
    // an automatic event, in the same change).
    let via = f.replicas.iter().position(|r| r.id != leader).unwrap();
    let via_id = f.replicas[via].id.clone();
    wait_for(Duration::from_secs(10), "green checked healthy", || async {
        let s = f.replicas[via].status(&c).await?;
        (s["pools"]["green"]["healthy"].as_u64()? >= 1).then_some(())
    })
    .await;

    let (status, _, body) = call(
        &c,
        f.replicas[via].admin,
        Method::POST,
        "/api/v1/switch",
        Some(json!({"to": "green"})),
    )
    .await
    .unwrap();
    let done = Instant::now();
    assert_eq!(status, 200, "{body}");
    let g = f.replicas[via].generation(&c).await.unwrap();
    assert!(g > g0);
    for r in &f.replicas {
        let end = done + Duration::from_secs(1);
        loop {
            let s = r.status(&c).await.unwrap();
            if s["generation"] == json!(g) && s["weights"]["green"] == json!(100.0) {
                assert_eq!(s["live"], "green");
                break;
            }
            assert!(
                Instant::now() < end,
                "{} not at generation {g} within 1 s: {s}",
                r.id
            );
        }
    }
    // The decision's events name the member that made it, on every member.
    let (_, _, ev) = call(&c, f.replicas[2].admin, Method::GET, "/api/v1/events", None)
        .await
        .unwrap();
    let switched = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "switch_completed")
        .cloned()
        .unwrap_or_else(|| panic!("no switch_completed on c: {ev}"));
    assert_eq!(switched["member"], json!(via_id), "{switched}");

    // `ctl fleet` prints the members table (each member publishes its
    // generation within a tick of applying it).
    let ctl_fleet = || {
        let out = std::process::Command::new(crate::support::replica::BIN)
            .args(["ctl", "--admin"])
            .arg(format!("http://{}", f.replicas[1].admin))
            .arg("fleet")
            .output()
            .expect("run ctl fleet");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = wait_for(
        Duration::from_secs(5),
        "ctl fleet lists a, b, c",
        || async {
            let text = ctl_fleet();
            ["a", "b", "c"]
                .iter()
                .all(|id| {
                    text.lines()
                        .any(|l| l.starts_with(&format!("{id} ")) && l.contains(&format!(" {g} ")))
                })
                .then_some(text)
        },
    )
    .await;
    assert!(text.starts_with("member b   connected true"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_changes_from_one_generation_through_two_replicas_one_wins() {
    let etcd = Etcd::one().await;
    let e = etcd.endpoints();
    let f = fleet("ifgen", [e.clone(), e.clone(), e], "2s").await;
    let c = client();
    let g = converged(
        &c,
        &f.replicas,
        Duration::from_secs(10),
        "a first generation",
    )
    .await;
    let (b, cc) = (&f.replicas[1], &f.replicas[2]);
    let (x, y) = tokio::join!(
        put_weights(&c, b, 30.0, Some(g)),
        put_weights(&c, cc, 60.0, Some(g))
    );
    let mut statuses = [x.0, y.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "b: {:?} c: {:?}", x, y);
    let lost = if x.0 == 409 { &x.2 } else { &y.2 };
    assert_eq!(lost["error"]["code"], "stale_generation", "{lost}");
    let g2 = converged(&c, &f.replicas, Duration::from_secs(2), "one generation").await;
    assert_eq!(g2, g + 1, "exactly one change was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_stopped_reads_flow_admin_and_writes_get_503_then_all_converge() {
    let etcd = Etcd::one().await;
    let e = etcd.endpoints();
    let f = fleet("stopped", [e.clone(), e.clone(), e], "1s").await;
    let c = client();
    converged(
        &c,
        &f.replicas,
        Duration::from_secs(10),
        "a first generation",
    )
    .await;
    let a = &f.replicas[0];
    // Writes flow once each member holds its lease (fenced before).
    for r in &f.replicas {
        wait_for(
            Duration::from_secs(10),
            "writes flow while in touch",
            || async {
                let (s, _, _) = call(&c, r.proxy, Method::POST, "/x", None).await.ok()?;
                (s == 200).then_some(())
            },
        )
        .await;
    }

    etcd.freeze(0);
    // Admin changes: 503 fleet_unavailable with Retry-After, on every member.
    for r in &f.replicas {
        let (s, retry, body) = wait_for(Duration::from_secs(20), "admin 503", || async {
            let r = try_put_weights(&c, r, 10.0, None).await.ok()?;
            (r.0 == 503).then_some(r)
        })
        .await;
        assert_eq!(s, 503);
        assert_eq!(body["error"]["code"], "fleet_unavailable", "{body}");
        assert!(retry.is_some(), "Retry-After on the admin 503");
    }
    // Writes: 503 with Retry-After once write_fence passed; reads flow.
    for r in &f.replicas {
        let retry = wait_for(Duration::from_secs(10), "writes fenced", || async {
            let (s, retry, _) = call(&c, r.proxy, Method::POST, "/x", None).await.ok()?;
            (s == 503).then_some(retry)
        })
        .await;
        assert!(retry.is_some(), "Retry-After on a fenced write");
        let (s, _, _) = call(&c, r.proxy, Method::GET, "/x", None).await.unwrap();
        assert_eq!(s, 200, "reads keep flowing on {}", r.id);
        let st = r.status(&c).await.unwrap();
        assert_eq!(st["fleet"]["connected"], false, "{}", st["fleet"]);
    }

    etcd.thaw(0);
    // Back in touch: writes flow again, a change goes through and every
    // member converges on it.
    for r in &f.replicas {
        wait_for(Duration::from_secs(20), "writes flow again", || async {
            let (s, _, _) = call(&c, r.proxy, Method::POST, "/x", None).await.ok()?;
            (s == 200).then_some(())
        })
        .await;
    }
    let (s, _, body) = wait_for(Duration::from_secs(20), "an admin change", || async {
        let r = try_put_weights(&c, a, 20.0, None).await.ok()?;
        (r.0 == 200).then_some(r)
    })
    .await;
    assert_eq!(s, 200, "{body}");
    let g = a.generation(&c).await.unwrap();
    let all = converged(&c, &f.replicas, Duration::from_secs(10), "convergence").await;
    assert_eq!(all, g);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_through_a_compaction_resyncs_and_converges() {
    let etcd = Etcd::one().await;
    let e = etcd.endpoints();
    let node = etcd.nodes[0].client;
    let gate = Gate::new(node).await;
    let f = fleet("compacted", [e.clone(), e, vec![gate.url()]], "2s").await;
    let c = client();
    converged(
        &c,
        &f.replicas,
        Duration::from_secs(10),
        "a first generation",
    )
    .await;
    let (a, cut) = (&f.replicas[0], &f.replicas[2]);
    wait_for(Duration::from_secs(10), "c's watch up", || async {
        let s = cut.status(&c).await?;
        (s["fleet"]["connected"] == true).then_some(())
    })
    .await;

    gate.cut();
    wait_for(Duration::from_secs(10), "c out of touch", || async {
        let s = cut.status(&c).await?;
        (s["fleet"]["connected"] == false).then_some(())
    })
    .await;
    for green in [10.0, 20.0, 30.0] {
        let (s, _, body) = put_weights(&c, a, green, None).await;
        assert_eq!(s, 200, "{body}");
    }
    let g = a.generation(&c).await.unwrap();
    etcd.compact().await;
    assert_ne!(
        cut.generation(&c).await,
        Some(g),
        "c is behind while cut off"
    );

    gate.restore();
    let all = converged(&c, &f.replicas, Duration::from_secs(20), "c converges").await;
    assert_eq!(all, g);
    let s = cut.status(&c).await.unwrap();
    assert_eq!(s["weights"]["green"], json!(30.0));
    // The resync is told after the documents it brought.
    let metrics = crate::support::eventually(Duration::from_secs(10), || async {
        let m = metrics_text(&c, cut).await;
        let resyncs: f64 = m
            .lines()
            .filter(|l| l.starts_with("switchyard_fleet_resyncs_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        (resyncs >= 1.0).then_some(m)
    })
    .await
    .unwrap_or_else(|| panic!("c counted no resync; its log:\n{}", cut.log()));
    assert!(
        metrics.contains("switchyard_fleet_generation "),
        "{metrics}"
    );
    wait_for(Duration::from_secs(10), "c connected again", || async {
        let s = cut.status(&c).await?;
        (s["fleet"]["connected"] == true).then_some(())
    })
    .await;
}

async fn metrics_text(c: &HttpClient, r: &Replica) -> String {
    use http_body_util::BodyExt;
    let req = http::Request::get(format!("http://{}/metrics", r.admin))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

/// The figure of the note: from a change committed (and answered) on A
/// to applied on every member, over 100 changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propagation_time_over_100_changes() {
    let etcd = Etcd::one().await;
    let e = etcd.endpoints();
    let f = fleet("propagation", [e.clone(), e.clone(), e], "2s").await;
    let c = client();
    converged(
        &c,
        &f.replicas,
        Duration::from_secs(10),
        "a first generation",
    )
    .await;
    let a = &f.replicas[0];
    let mut took = Vec::new();
    for i in 0..100 {
        let green = if i % 2 == 0 { 100.0 } else { 0.0 };
        let (s, _, body) = put_weights(&c, a, green, None).await;
        assert_eq!(s, 200, "{body}");
        let committed = Instant::now();
        let g = a.generation(&c).await.unwrap();
        for r in &f.replicas[1..] {
            let end = committed + Duration::from_secs(1);
            while r.generation(&c).await.unwrap_or(0) < g {
                assert!(Instant::now() < end, "{} not at {g} within 1 s", r.id);
            }
        }
        took.push(committed.elapsed());
    }
    took.sort();
    let p50 = took[49];
    let p99 = took[98];
    eprintln!(
        "fleet propagation over 100 changes: p50 {p50:?} p99 {p99:?} max {:?}",
        took[99]
    );
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");
}
