//! Membership under leases, and the election: a member that stops
//! renewing leaves with everything it put, one leader at a time, and a
//! commit guarded by a stale leader key applies nothing.

use crate::support::etcd::Etcd;
use crate::support::gate::Gate;
use crate::support::*;
use std::time::Duration;
use switchyard::control::fleet::{CommitOutcome, FleetEvent, Guard};
use tokio::time::Instant;

#[tokio::test]
async fn an_expired_lease_takes_the_member_its_acks_and_stats_with_it() {
    let etcd = Etcd::one().await;
    let p = prefix("expiry");
    let observer = connect(etcd.endpoints(), &p).await;
    let fleet = connect(etcd.endpoints(), &p).await;
    let mut watch = observer.watch();
    until_event(&mut watch, Duration::from_secs(10), "connected", |e| {
        matches!(e, FleetEvent::Connected { .. })
    })
    .await;
    let member = fleet
        .join("m1", b"{\"admin\":\"x\"}".to_vec())
        .await
        .unwrap();
    member.ack("h1").await.unwrap();
    member
        .publish_stats(b"{\"requests\":5}".to_vec())
        .await
        .unwrap();
    until_event(
        &mut watch,
        Duration::from_secs(5),
        "the stats",
        |e| matches!(e, FleetEvent::StatsUpdated { member, .. } if member == "m1"),
    )
    .await;
    assert_eq!(
        observer
            .acks("h1")
            .await
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        ["m1"]
    );
    assert_eq!(
        observer.stats().await.unwrap()["m1"].value,
        b"{\"requests\":5}".to_vec()
    );

    // The process dies: nothing renews its lease any more.
    drop(member);
    let died = Instant::now();
    let mut gone = Vec::new();
    let ttl = fleet.settings().member_ttl;
    while gone.len() < 3 {
        let seen = until_event(
            &mut watch,
            ttl + Duration::from_secs(3),
            "the lease to expire",
            |e| {
                matches!(
                    e,
                    FleetEvent::MemberLeft { .. }
                        | FleetEvent::AckDeleted { .. }
                        | FleetEvent::StatsDeleted { .. }
                )
            },
        )
        .await;
        gone.push(seen.last().cloned().unwrap());
    }
    let after = died.elapsed();
    assert!(
        after >= Duration::from_secs(1) && after <= ttl + Duration::from_secs(2),
        "the lease expired {after:?} after the last renewal could have been sent (TTL {ttl:?})"
    );
    assert!(gone
        .iter()
        .any(|e| matches!(e, FleetEvent::MemberLeft { id, .. } if id == "m1")));
    assert!(gone.iter().any(|e| matches!(e, FleetEvent::AckDeleted { hold, member, .. } if hold == "h1" && member == "m1")));
    assert!(gone
        .iter()
        .any(|e| matches!(e, FleetEvent::StatsDeleted { member, .. } if member == "m1")));
    assert!(observer.members().await.unwrap().is_empty());
    assert!(observer.acks("h1").await.unwrap().is_empty());
}

#[tokio::test]
async fn one_leader_at_a_time_and_a_stale_leader_key_commits_nothing() {
    let etcd = Etcd::one().await;
    let p = prefix("election");
    let (fa, fb) = (
        connect(etcd.endpoints(), &p).await,
        connect(etcd.endpoints(), &p).await,
    );
    let mut watch = fb.watch();
    until_event(&mut watch, Duration::from_secs(10), "connected", |e| {
        matches!(e, FleetEvent::Connected { .. })
    })
    .await;
    let a = fa.join("a", b"{}".to_vec()).await.unwrap();
    let b = fb.join("b", b"{}".to_vec()).await.unwrap();
    let ka = a.campaign().await.unwrap();
    let kb = b.campaign().await.unwrap();
    assert_eq!(
        a.campaign().await.unwrap(),
        ka,
        "campaigning again keeps the key"
    );
    assert_eq!(
        fb.leader().await.unwrap(),
        Some(ka.clone()),
        "the first candidate leads"
    );
    until_event(
        &mut watch,
        Duration::from_secs(5),
        "a leads",
        |e| matches!(e, FleetEvent::LeaderChanged { leader: Some(l), .. } if l.member == "a"),
    )
    .await;

    committed(&write(&fa, "boot", 0).await);
    let guarded = |key| {
        let fleet = fa.clone();
        async move {
            let read = fleet.read_state().await.unwrap();
            let v = doc("g", read.revision as u64);
            let mut c = commit(read.base(), &v, "g");
            c.leader = Some(key);
            let o = fleet.commit(c).await.unwrap();
            (o, read)
        }
    };
    let (o, _) = guarded(&kb).await;
    assert!(
        matches!(&o, CommitOutcome::Conflict { failed, .. } if failed == &vec![Guard::Leader]),
        "{o:?}"
    );
    committed(&guarded(&ka).await.0);

    // a's process dies; when its lease expires, b leads.
    drop(a);
    until_event(
        &mut watch,
        Duration::from_secs(6),
        "b to lead",
        |e| matches!(e, FleetEvent::LeaderChanged { leader: Some(l), .. } if l.member == "b"),
    )
    .await;
    assert_eq!(fb.leader().await.unwrap(), Some(kb.clone()));
    let (o, read) = guarded(&ka).await;
    assert!(
        matches!(&o, CommitOutcome::Conflict { failed, .. } if failed == &vec![Guard::Leader]),
        "{o:?}"
    );
    assert_eq!(
        fa.read_state().await.unwrap().doc,
        read.doc,
        "the deposed leader wrote nothing"
    );
    committed(&guarded(&kb).await.0);

    // Resigning hands leadership on; with no candidate there is no leader.
    b.resign().await.unwrap();
    until_event(&mut watch, Duration::from_secs(5), "no leader", |e| {
        matches!(e, FleetEvent::LeaderChanged { leader: None, .. })
    })
    .await;
    assert_eq!(fb.leader().await.unwrap(), None);
    b.leave().await.unwrap();
    until_event(
        &mut watch,
        Duration::from_secs(5),
        "b to leave at once",
        |e| matches!(e, FleetEvent::MemberLeft { id, .. } if id == "b"),
    )
    .await;
}

/// Cut off from etcd past its TTL, a member loses its lease and all under
/// it; back in touch, it registers under a new lease and stands again.
#[tokio::test]
async fn a_member_cut_off_past_its_ttl_comes_back_under_a_new_lease() {
    let etcd = Etcd::one().await;
    let p = prefix("release");
    let gate = Gate::new(etcd.nodes[0].client).await;
    let observer = connect(etcd.endpoints(), &p).await;
    let cut_off = connect(vec![gate.url()], &p).await;
    let mut watch = observer.watch();
    until_event(&mut watch, Duration::from_secs(10), "connected", |e| {
        matches!(e, FleetEvent::Connected { .. })
    })
    .await;
    let member = cut_off.join("m1", b"{}".to_vec()).await.unwrap();
    let first = member.campaign().await.unwrap();
    assert_eq!(member.lease().grants, 1);

    gate.cut();
    until_event(
        &mut watch,
        Duration::from_secs(6),
        "m1 to leave",
        |e| matches!(e, FleetEvent::MemberLeft { id, .. } if id == "m1"),
    )
    .await;
    gate.restore();
    let seen = until_event(
        &mut watch,
        Duration::from_secs(10),
        "m1 to lead again",
        |e| matches!(e, FleetEvent::LeaderChanged { leader: Some(l), .. } if l.member == "m1"),
    )
    .await;
    assert!(seen
        .iter()
        .any(|e| matches!(e, FleetEvent::MemberJoined { id, .. } if id == "m1")));
    wait_for(Duration::from_secs(5), "the second lease", || async {
        let s = member.lease();
        (s.grants == 2 && s.lease.is_some()).then_some(())
    })
    .await;
    let now = observer.leader().await.unwrap().expect("a leader");
    assert_ne!(now, first, "a new candidate key under the new lease");
    assert_eq!(now.member, "m1");
}
