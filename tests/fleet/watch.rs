//! The watcher: every committed document in order, and getting in step
//! again after a compaction, a restart of etcd, and a frozen etcd, each
//! with its reason.

use crate::support::etcd::Etcd;
use crate::support::gate::Gate;
use crate::support::*;
use std::time::Duration;
use switchyard::control::fleet::{CommitOutcome, Etcd as Fleet, FleetEvent, Resync};
use tokio::time::Instant;

fn is_connected(e: &FleetEvent) -> bool {
    matches!(e, FleetEvent::Connected { .. })
}

#[tokio::test]
async fn the_watch_tells_every_committed_document_in_order() {
    let etcd = Etcd::one().await;
    let p = prefix("order");
    let w = connect(etcd.endpoints(), &p).await;
    let mut watch = w.watch();
    until_event(
        &mut watch,
        Duration::from_secs(10),
        "connected",
        is_connected,
    )
    .await;
    // Two writers racing, each retrying its own change after a conflict.
    let (fa, fb) = (
        connect(etcd.endpoints(), &p).await,
        connect(etcd.endpoints(), &p).await,
    );
    let writer = |fleet: Fleet, name: &'static str| async move {
        let mut landed = Vec::new();
        for n in 0..25u64 {
            let op = format!("{name}-{n}");
            loop {
                if let CommitOutcome::Committed { revision } = write(&fleet, &op, n).await {
                    landed.push((revision, doc(&op, n)));
                    break;
                }
            }
        }
        landed
    };
    let (a, b) = tokio::join!(writer(fa, "a"), writer(fb, "b"));
    let mut all: Vec<(i64, Vec<u8>)> = a.into_iter().chain(b).collect();
    all.sort();
    let last = all.last().unwrap().0;
    let seen = until_event(
        &mut watch,
        Duration::from_secs(10),
        "the last commit",
        |e| matches!(e, FleetEvent::StateChanged(d) if d.mod_revision == last),
    )
    .await;
    let told: Vec<(i64, Vec<u8>)> = seen
        .into_iter()
        .filter_map(|e| match e {
            FleetEvent::StateChanged(d) => Some((d.mod_revision, d.value)),
            _ => None,
        })
        .collect();
    assert_eq!(told.len(), 50);
    assert_eq!(
        told, all,
        "every committed document, once, in revision order"
    );
}

#[tokio::test]
async fn a_watcher_cut_off_during_a_compaction_lists_again_and_says_why() {
    let etcd = Etcd::one().await;
    let p = prefix("compact");
    let gate = Gate::new(etcd.nodes[0].client).await;
    let cut_off = connect(vec![gate.url()], &p).await;
    let writer = connect(etcd.endpoints(), &p).await;
    committed(&write(&writer, "boot", 0).await);
    let mut watch = cut_off.watch();
    until_event(
        &mut watch,
        Duration::from_secs(10),
        "connected",
        is_connected,
    )
    .await;
    assert!(cut_off.contact().connected());

    gate.cut();
    let seen = until_event(&mut watch, Duration::from_secs(5), "disconnected", |e| {
        matches!(e, FleetEvent::Disconnected { .. })
    })
    .await;
    assert!(!cut_off.contact().connected());
    assert!(matches!(
        seen.last(),
        Some(FleetEvent::Disconnected {
            reason: Resync::Reconnect
        })
    ));
    for n in 1..=3 {
        committed(&write(&writer, &format!("w-{n}"), n).await);
    }
    let member = writer.join("m1", b"{}".to_vec()).await.unwrap();
    let compacted_at = etcd.compact().await;

    gate.restore();
    let seen = until_event(
        &mut watch,
        Duration::from_secs(10),
        "connected again",
        is_connected,
    )
    .await;
    let states: Vec<_> = seen
        .iter()
        .filter_map(|e| match e {
            FleetEvent::StateChanged(d) => Some(d.value.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        vec![doc("w-3", 3)],
        "the listing tells the latest document only"
    );
    assert!(seen
        .iter()
        .any(|e| matches!(e, FleetEvent::MemberJoined { id, .. } if id == "m1")));
    let resynced = seen
        .iter()
        .find_map(|e| match e {
            FleetEvent::Resynced { reason, revision } => Some((*reason, *revision)),
            _ => None,
        })
        .expect("a Resynced event");
    assert_eq!(resynced.0, Resync::Compacted);
    assert!(resynced.1 >= compacted_at);
    assert_eq!(cut_off.contact().resyncs(Resync::Compacted), 1);
    assert!(cut_off.contact().connected());
    // And it follows changes again.
    member.update(b"{\"v\":2}".to_vec()).await.unwrap();
    until_event(
        &mut watch,
        Duration::from_secs(5),
        "the update",
        |e| matches!(e, FleetEvent::MemberUpdated { id, .. } if id == "m1"),
    )
    .await;
}

#[tokio::test]
async fn etcd_killed_and_restarted_the_watch_and_the_lease_recover() {
    let mut etcd = Etcd::one().await;
    let p = prefix("restart");
    let fleet = connect(etcd.endpoints(), &p).await;
    let member = fleet.join("m1", b"{}".to_vec()).await.unwrap();
    let mut watch = fleet.watch();
    until_event(
        &mut watch,
        Duration::from_secs(10),
        "connected",
        is_connected,
    )
    .await;
    let mut connected = fleet.contact().subscribe();
    assert!(*connected.borrow_and_update());

    etcd.kill(0);
    until_event(&mut watch, Duration::from_secs(5), "disconnected", |e| {
        matches!(
            e,
            FleetEvent::Disconnected {
                reason: Resync::Reconnect
            }
        )
    })
    .await;
    assert!(!fleet.contact().connected());
    let down_at = switchyard::clock::now_ms();

    etcd.restart(0).await;
    let seen = until_event(
        &mut watch,
        Duration::from_secs(10),
        "connected again",
        is_connected,
    )
    .await;
    assert!(
        seen.iter().any(|e| matches!(
            e,
            FleetEvent::Resynced {
                reason: Resync::Reconnect,
                ..
            }
        )),
        "{seen:?}"
    );
    assert!(fleet.contact().connected());
    assert_eq!(fleet.contact().resyncs(Resync::Reconnect), 1);
    // The connected flag went false, then true.
    assert!(connected.has_changed().unwrap());
    // The same lease is renewed again after the restart.
    wait_for(
        Duration::from_secs(5),
        "a keep-alive after the restart",
        || async { (fleet.contact().lease_acked_sent_ms() > down_at).then_some(()) },
    )
    .await;
    assert_eq!(member.lease().grants, 1, "the lease survived the restart");
    assert!(fleet.members().await.unwrap().contains_key("m1"));
    // Events flow again.
    let at = committed(&write(&fleet, "after", 1).await);
    until_event(
        &mut watch,
        Duration::from_secs(5),
        "the commit after",
        |e| matches!(e, FleetEvent::StateChanged(d) if d.mod_revision == at),
    )
    .await;
}

#[tokio::test]
async fn a_frozen_etcd_trips_the_watchdog_within_its_deadline_and_fences_writes() {
    let etcd = Etcd::one().await;
    let p = prefix("frozen");
    let fleet = connect(etcd.endpoints(), &p).await;
    let _member = fleet.join("m1", b"{}".to_vec()).await.unwrap();
    let mut watch = fleet.watch();
    until_event(
        &mut watch,
        Duration::from_secs(10),
        "connected",
        is_connected,
    )
    .await;
    let fence = Duration::from_millis(1500);
    wait_for(Duration::from_secs(5), "the lease acknowledged", || async {
        (!fleet.contact().fenced(switchyard::clock::now_ms(), fence)).then_some(())
    })
    .await;

    let frozen = Instant::now();
    etcd.freeze(0);
    until_event(&mut watch, Duration::from_secs(10), "the watchdog", |e| {
        matches!(
            e,
            FleetEvent::Disconnected {
                reason: Resync::Watchdog
            }
        )
    })
    .await;
    let tripped = frozen.elapsed();
    let s = fleet.settings();
    // Silent for the deadline, noticed at the next tick at the latest.
    let bound = s.watchdog_deadline + s.watchdog_interval + Duration::from_millis(500);
    assert!(
        tripped <= bound,
        "the watchdog took {tripped:?} (bound {bound:?})"
    );
    assert!(!fleet.contact().connected());
    // No keep-alive is acknowledged: the write fence closes.
    wait_for(Duration::from_secs(5), "the write fence", || async {
        fleet
            .contact()
            .fenced(switchyard::clock::now_ms(), fence)
            .then_some(())
    })
    .await;

    etcd.thaw(0);
    let seen = until_event(
        &mut watch,
        Duration::from_secs(10),
        "connected again",
        is_connected,
    )
    .await;
    assert!(
        seen.iter().any(|e| matches!(
            e,
            FleetEvent::Resynced {
                reason: Resync::Watchdog,
                ..
            }
        )),
        "{seen:?}"
    );
    assert_eq!(fleet.contact().resyncs(Resync::Watchdog), 1);
    wait_for(
        Duration::from_secs(5),
        "the write fence to open",
        || async { (!fleet.contact().fenced(switchyard::clock::now_ms(), fence)).then_some(()) },
    )
    .await;
}
