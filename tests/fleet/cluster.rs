//! Three etcd members: the etcd leader killed while commits are in flight.
//! Each commit has one outcome, and what each writer was told is what etcd
//! holds and what a watcher saw.

use crate::support::etcd::Etcd;
use crate::support::*;
use std::time::Duration;
use switchyard::control::fleet::{CommitOutcome, FleetEvent};

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

    let mut outcomes = Vec::new();
    for n in 1..=10u64 {
        let op = format!("w-{n}");
        outcomes.push((op.clone(), Ok(write(&writer, &op, n).await)));
    }
    // A commit in flight when the etcd leader stops answering, then dies:
    // frozen first, so that the commit surely reached it or waits on it.
    let base = writer.read_state().await.unwrap().base();
    let leader = etcd.leader().await;
    etcd.freeze(leader);
    let w = writer.clone();
    let mid = tokio::spawn(async move {
        let v = doc("w-11", 11);
        w.commit(commit(base, &v, "w-11")).await
    });
    wait_for(
        Duration::from_secs(10),
        "the commit to time out",
        || async { (writer.contact().ambiguous_commits() >= 1).then_some(()) },
    )
    .await;
    etcd.kill(leader);
    outcomes.push(("w-11".to_string(), mid.await.unwrap()));
    // Then commits through the two members left, each read with a retry
    // while they elect (a failed read is no commit yet).
    for n in 12..=20u64 {
        let op = format!("w-{n}");
        let read = wait_for(Duration::from_secs(20), "a read", || async {
            writer.read_state().await.ok()
        })
        .await;
        let v = doc(&op, n);
        outcomes.push((
            op.clone(),
            writer.commit(commit(read.base(), &v, &op)).await,
        ));
    }

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
    assert_eq!(landed, 20, "a single writer conflicts with nobody");
    let mut revisions: Vec<i64> = history.iter().map(|(r, _)| *r).collect();
    revisions.dedup();
    assert_eq!(revisions.len(), history.len(), "each document told once");
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "in order");
}
