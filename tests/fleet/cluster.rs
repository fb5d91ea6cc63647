//! Three etcd members: the etcd leader killed while commits are in flight.
//! Each commit has one outcome, and what each writer was told is what etcd
//! holds and what a watcher saw.

use crate::support::etcd::Etcd;
use crate::support::*;
use std::time::Duration;
use switchyard::control::fleet::{CommitOutcome, FleetEvent};
use tokio::time::Instant;

#[tokio::test]
async fn killing_the_etcd_leader_mid_commits_leaves_one_outcome_per_commit() {
    let mut etcd = Etcd::three().await;
    let p = prefix("leader");
    let mut s = settings(etcd.endpoints(), &p);
    s.commit_deadline = Duration::from_secs(20);
    let writer = switchyard::control::fleet::Etcd::connect(s.clone())
        .await
        .unwrap();
    let watcher = switchyard::control::fleet::Etcd::connect(s).await.unwrap();
    committed(&write(&writer, "boot", 0).await);
    let mut watch = watcher.watch();
    until_event(&mut watch, Duration::from_secs(10), "connected", |e| {
        matches!(e, FleetEvent::Connected { .. })
    })
    .await;

    let (started_tx, mut started) = tokio::sync::watch::channel(0u64);
    let w = writer.clone();
    let task = tokio::spawn(async move {
        let mut outcomes = Vec::new();
        for n in 1..=30u64 {
            let op = format!("w-{n}");
            // A read may fail while etcd elects: that is no commit yet.
            let end = Instant::now() + Duration::from_secs(20);
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            let read = loop {
                tick.tick().await;
                match w.read_state().await {
                    Ok(r) => break r,
                    Err(e) if Instant::now() >= end => panic!("no read within 20 s: {e}"),
                    Err(_) => {}
                }
            };
            let v = doc(&op, n);
            let o = w.commit(commit(read.base(), &v, &op)).await;
            outcomes.push((op, o));
            started_tx.send_replace(n);
        }
        outcomes
    });
    started.wait_for(|n| *n >= 5).await.unwrap();
    let leader = etcd.leader().await;
    etcd.kill(leader);
    let outcomes = tokio::time::timeout(Duration::from_secs(120), task)
        .await
        .expect("the writer finished")
        .unwrap();

    // What etcd holds: the history of the state key, from the watcher.
    let last = writer.read_state().await.unwrap().doc.unwrap();
    let seen = until_event(
        &mut watch,
        Duration::from_secs(20),
        "the last document",
        |e| matches!(e, FleetEvent::StateChanged(d) if d.mod_revision == last.mod_revision),
    )
    .await;
    let history: Vec<(i64, Vec<u8>)> = seen
        .into_iter()
        .filter_map(|e| match e {
            FleetEvent::StateChanged(d) => Some((d.mod_revision, d.value)),
            _ => None,
        })
        .collect();
    let mut landed = 0;
    for (op, o) in &outcomes {
        let n: u64 = op[2..].parse().unwrap();
        let found: Vec<i64> = history
            .iter()
            .filter(|(_, v)| v == &doc(op, n))
            .map(|(r, _)| *r)
            .collect();
        match o {
            Ok(CommitOutcome::Committed { revision }) => {
                assert_eq!(
                    found,
                    vec![*revision],
                    "{op} committed at {revision}: seen at {found:?}"
                );
                landed += 1;
            }
            Ok(CommitOutcome::Conflict { .. }) => {
                assert!(
                    found.is_empty(),
                    "{op} reported a conflict but landed at {found:?}"
                )
            }
            Err(e) => panic!("{op}: no outcome: {e}"),
        }
    }
    assert_eq!(landed, 30, "a single writer conflicts with nobody");
    let mut revisions: Vec<i64> = history.iter().map(|(r, _)| *r).collect();
    revisions.dedup();
    assert_eq!(revisions.len(), history.len(), "each document told once");
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "in order");
}
