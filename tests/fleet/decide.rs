//! One decision for the fleet (SPEC.md section 9): three `switchyard`
//! processes on one etcd, green failing 5 % with traffic spread so that no
//! replica alone sees `min_requests` green requests but their sum does.
//! Only the leader judges, on the sum: exactly one rollback, one event id,
//! seen by all three.

use crate::support::etcd::Etcd;
use crate::support::replica::{call, client, FleetOpts, Replica};
use crate::support::upstream::Upstream;
use crate::support::{eventually, prefix, wait_for};
use http::Method;
use serde_json::json;
use std::time::Duration;

const ROLLBACK: &str = "rollback:\n  interval: 200ms\n  window: 30s\n  min_requests: 120\n  consecutive_breaches: 2\n  grace: 0s\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_rolls_back_once_on_the_fleets_sum_when_no_replica_alone_could() {
    let etcd = Etcd::one().await;
    let blue = Upstream::start("blue-1").await;
    let green = Upstream::start("green-1").await;
    green.set_failure_rate(0.05);
    let dir = tempfile::tempdir().unwrap();
    let opts = FleetOpts {
        endpoints: etcd.endpoints(),
        prefix: prefix("decide"),
        write_fence: "2s",
        member_ttl: "3s",
    };
    let mut rs = Vec::new();
    for id in ["a", "b", "c"] {
        rs.push(Replica::start_with(dir.path(), id, blue.addr, green.addr, &opts, ROLLBACK).await);
    }
    let c = client();
    // A leader, and three members seen by it.
    let leader = wait_for(Duration::from_secs(15), "a fleet leader", || async {
        let s = rs[0].status(&c).await?;
        let leader = s["fleet"]["leader"].as_str()?.to_owned();
        (s["fleet"]["members"].as_array()?.len() == 3).then_some(leader)
    })
    .await;
    let (s, _, body) = call(
        &c,
        rs[1].admin,
        Method::PUT,
        "/api/v1/weights",
        Some(json!({"blue": 50.0, "green": 50.0})),
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
    // Let the split settle on every replica's table first.
    // 100 GETs through each replica: at most 100 green each, below
    // min_requests (120) by construction; about 150 green in all.
    for i in 0..300 {
        let r = &rs[i % 3];
        let (s, _, _) = call(&c, r.proxy, Method::GET, &format!("/r{i}"), None)
            .await
            .unwrap();
        assert!(s == 200 || s == 500, "status {s}");
    }
    let green_seen = green.requests();
    assert!(
        green_seen >= 120,
        "the sum must reach min_requests: {green_seen}"
    );
    // One rollback, decided by the leader, seen by every member.
    let mut ids = Vec::new();
    for r in &rs {
        let ev = eventually(Duration::from_secs(15), || async {
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
            let logs: Vec<String> = rs
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
        assert_eq!(ev[0]["member"], json!(leader), "decided by the leader");
        ids.push(ev[0]["id"].clone());
        let s = r.status(&c).await.unwrap();
        assert_eq!(s["weights"]["green"], json!(0.0), "{}: {s}", r.id);
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "one event id: {ids:?}");
    // Each replica alone had fewer than min_requests green requests.
    for r in &rs {
        let log = r.log();
        assert!(!log.contains("panicked"), "{}: {log}", r.id);
    }
}
