//! One decision for the fleet (SPEC.md section 9): three `switchyard`
//! processes on one etcd, green failing 5 % with traffic spread so that no
//! replica alone sees `min_requests` green requests but their sum does.
//! Only the leader judges, on the sum: exactly one rollback, one event id,
//! seen by every member; the same when the leader is killed mid-run (the
//! next leader decides, on the survivors' sum).

use crate::support::etcd::Etcd;
use crate::support::replica::{call, client, FleetOpts, HttpClient, Replica};
use crate::support::upstream::Upstream;
use crate::support::{eventually, prefix, wait_for};
use http::Method;
use serde_json::json;
use std::time::Duration;

/// `min_requests` above what one replica can send green (at most 100
/// requests each), below what two or three send at 70 % green.
const ROLLBACK: &str = "rollback:\n  interval: 200ms\n  window: 30s\n  min_requests: 110\n  consecutive_breaches: 2\n  grace: 0s\n";
const MIN_REQUESTS: u64 = 110;
/// Requests through each replica when none is killed.
const PER_REPLICA: usize = 100;
/// With the leader killed: through each of the three before the kill,
/// then through each survivor. A survivor sends 100 in all (below
/// `min_requests` whatever the draw); the two send ~140 green.
const BEFORE_KILL: usize = 40;
const PER_SURVIVOR: usize = 60;

async fn leader_of(c: &HttpClient, r: &Replica, members: usize) -> Option<String> {
    let s = r.status(c).await?;
    let leader = s["fleet"]["leader"].as_str()?.to_owned();
    (s["fleet"]["members"].as_array()?.len() == members).then_some(leader)
}

/// `n` GETs through each replica of `rs`, round robin.
async fn load(c: &HttpClient, rs: &[&Replica], n: usize, tag: &str) {
    for i in 0..n * rs.len() {
        let r = rs[i % rs.len()];
        let (s, _, _) = call(c, r.proxy, Method::GET, &format!("/{tag}{i}"), None)
            .await
            .unwrap();
        assert!(s == 200 || s == 500, "status {s}");
    }
}

/// How many requests `r` sent to green, by its own metrics.
async fn green_requests(c: &HttpClient, r: &Replica) -> u64 {
    use http_body_util::BodyExt;
    let req = http::Request::get(format!("http://{}/metrics", r.admin))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = c.request(req).await.expect("metrics answer");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with("switchyard_requests_total{") && l.contains("pool=\"green\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn scenario(kill_leader: bool) {
    let etcd = Etcd::one().await;
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    green.set_failure_rate(0.05);
    let dir = tempfile::tempdir().unwrap();
    let opts = FleetOpts {
        endpoints: etcd.endpoints(),
        prefix: prefix(if kill_leader { "decide-kill" } else { "decide" }),
        write_fence: "2s",
        member_ttl: "3s",
    };
    let mut rs = Vec::new();
    for id in ["a", "b", "c"] {
        rs.push(Replica::start_with(dir.path(), id, blue.addr, green.addr, &opts, ROLLBACK).await);
    }
    let c = client();
    let leader = wait_for(Duration::from_secs(15), "a fleet leader", || {
        leader_of(&c, &rs[0], 3)
    })
    .await;
    let (s, _, body) = call(
        &c,
        rs[1].admin,
        Method::PUT,
        "/api/v1/weights",
        Some(json!({"blue": 30.0, "green": 70.0})),
    )
    .await
    .unwrap();
    assert_eq!(s, 200, "{body}");
    let g = rs[1].generation(&c).await.unwrap();
    wait_for(Duration::from_secs(2), "the split everywhere", || async {
        for r in &rs {
            if r.generation(&c).await? != g {
                return None;
            }
        }
        Some(())
    })
    .await;

    // At most 100 requests through any one replica: below min_requests
    // (110) by construction, whatever share of them went green.
    let all: Vec<&Replica> = rs.iter().collect();
    let survivors: Vec<&Replica> = if kill_leader {
        load(&c, &all, BEFORE_KILL, "x").await;
        let dead = rs.iter().position(|r| r.id == leader).unwrap();
        rs[dead].child.kill().unwrap();
        rs[dead].child.wait().unwrap();
        let survivors: Vec<&Replica> = rs.iter().filter(|r| r.id != leader).collect();
        load(&c, &survivors, PER_SURVIVOR, "y").await;
        survivors
    } else {
        load(&c, &all, PER_REPLICA, "x").await;
        all
    };
    // Each deciding replica's own green count is below min_requests; only
    // their sum reaches it.
    let mut own = Vec::new();
    for r in &survivors {
        own.push((r.id.clone(), green_requests(&c, r).await));
    }
    assert!(
        own.iter().all(|(_, n)| *n < MIN_REQUESTS),
        "no replica alone may reach min_requests: {own:?}"
    );
    let sum: u64 = own.iter().map(|(_, n)| n).sum();
    assert!(
        sum >= MIN_REQUESTS,
        "the survivors' sum must reach min_requests: {own:?}"
    );
    // One rollback, decided by the (new) leader, seen by every member.
    let mut ids = Vec::new();
    let mut deciders = Vec::new();
    for r in &survivors {
        let ev = eventually(Duration::from_secs(20), || async {
            let (_, _, ev) = call(&c, r.admin, Method::GET, "/api/v1/events", None)
                .await
                .ok()?;
            let rollbacks: Vec<serde_json::Value> = ev["events"]
                .as_array()?
                .iter()
                .filter(|e| e["kind"] == "rollback")
                .cloned()
                .collect();
            (!rollbacks.is_empty()).then_some(rollbacks)
        })
        .await
        .unwrap_or_else(|| {
            let logs: Vec<String> = survivors
                .iter()
                .map(|r| format!("--- {}\n{}", r.id, r.log()))
                .collect();
            panic!(
                "no rollback event on {} (leader {leader}):\n{}",
                r.id,
                logs.join("\n")
            )
        });
        assert_eq!(ev.len(), 1, "{}: {ev:?}", r.id);
        ids.push(ev[0]["id"].clone());
        deciders.push(ev[0]["member"].clone());
        let s = r.status(&c).await.unwrap();
        assert_eq!(s["weights"]["green"], json!(0.0), "{}: {s}", r.id);
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "one event id: {ids:?}");
    assert!(deciders.iter().all(|m| *m == deciders[0]), "{deciders:?}");
    if kill_leader {
        assert_ne!(
            deciders[0],
            json!(leader),
            "the killed leader decided nothing"
        );
        let now = leader_of(&c, survivors[0], 2).await;
        assert_eq!(Some(deciders[0].as_str().unwrap().to_owned()), now);
    } else {
        assert_eq!(deciders[0], json!(leader), "decided by the leader");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_rolls_back_once_on_the_fleets_sum_when_no_replica_alone_could() {
    scenario(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_leader_killed_mid_run_the_next_one_rolls_back_once() {
    scenario(true).await;
}
