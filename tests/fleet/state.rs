//! The state document: one compare-and-swap per change, one creator, and
//! ambiguous results decided by what etcd holds, never by a blind retry.

use crate::support::etcd::Etcd;
use crate::support::*;
use std::time::Duration;
use switchyard::control::fleet::{Base, CommitOutcome, FleetError, Guard, LeaderKey};
use tokio::time::Instant;

#[tokio::test]
async fn two_writers_on_one_base_one_commits_and_one_conflicts() {
    let etcd = Etcd::one().await;
    let p = prefix("cas");
    let a = connect(etcd.endpoints(), &p).await;
    let b = connect(etcd.endpoints(), &p).await;
    committed(&write(&a, "boot", 0).await);
    let (ra, rb) = (a.read_state().await.unwrap(), b.read_state().await.unwrap());
    assert_eq!(ra.base(), rb.base());
    let (va, vb) = (doc("a-1", 1), doc("b-1", 1));
    let (oa, ob) = tokio::join!(
        a.commit(commit(ra.base(), &va, "a-1")),
        b.commit(commit(rb.base(), &vb, "b-1"))
    );
    let (oa, ob) = (oa.unwrap(), ob.unwrap());
    let (winner, loser) = match (&oa, &ob) {
        (CommitOutcome::Committed { .. }, CommitOutcome::Conflict { .. }) => (&va, &ob),
        (CommitOutcome::Conflict { .. }, CommitOutcome::Committed { .. }) => (&vb, &oa),
        other => panic!("expected one commit and one conflict, got {other:?}"),
    };
    let CommitOutcome::Conflict { current, failed } = loser else {
        unreachable!()
    };
    assert_eq!(failed, &vec![Guard::State]);
    assert_eq!(current.doc.as_ref().map(|d| &d.value), Some(winner));
    let now = a.read_state().await.unwrap().doc.unwrap();
    assert_eq!(&now.value, winner);
    assert_eq!(now.version, 2, "boot, then exactly one of the two");
}

#[tokio::test]
async fn of_two_members_creating_the_document_one_wins() {
    let etcd = Etcd::one().await;
    let p = prefix("boot");
    let a = connect(etcd.endpoints(), &p).await;
    let b = connect(etcd.endpoints(), &p).await;
    let (va, vb) = (doc("a-0", 0), doc("b-0", 0));
    let (oa, ob) = tokio::join!(
        a.commit(commit(Base::Absent, &va, "a-0")),
        b.commit(commit(Base::Absent, &vb, "b-0"))
    );
    let outcomes = [oa.unwrap(), ob.unwrap()];
    let wins = outcomes
        .iter()
        .filter(|o| matches!(o, CommitOutcome::Committed { .. }))
        .count();
    assert_eq!(wins, 1, "{outcomes:?}");
    let now = a.read_state().await.unwrap().doc.unwrap();
    assert_eq!(now.version, 1);
    for o in &outcomes {
        if let CommitOutcome::Conflict { current, .. } = o {
            assert_eq!(
                current.doc.as_ref(),
                Some(&now),
                "the loser is told the winner's document"
            );
        }
    }
    // Creating cannot be guarded: there is nothing to be leader of yet.
    let fake = LeaderKey {
        key: format!("{p}election/1"),
        member: "a".into(),
        create_revision: 1,
    };
    let mut guarded = commit(Base::Absent, &va, "a-9");
    guarded.leader = Some(&fake);
    assert!(matches!(
        a.commit(guarded).await,
        Err(FleetError::GuardedCreate)
    ));
}

/// Each way an ambiguous result can turn out, decided by `resolve`.
#[tokio::test]
async fn an_ambiguous_commit_is_decided_by_what_etcd_holds() {
    let etcd = Etcd::one().await;
    let p = prefix("ambiguous");
    let a = connect(etcd.endpoints(), &p).await;
    let b = connect(etcd.endpoints(), &p).await;
    committed(&write(&a, "boot", 0).await);
    let soon = || Instant::now() + Duration::from_secs(10);

    // It landed and the answer was lost: committed, at its revision.
    let base = a.read_state().await.unwrap().base();
    let x = doc("x-1", 1);
    let landed_at = committed(&a.commit(commit(base, &x, "x-1")).await.unwrap());
    let o = a.resolve(&commit(base, &x, "x-1"), soon()).await.unwrap();
    assert_eq!(
        o,
        CommitOutcome::Committed {
            revision: landed_at
        }
    );

    // ... and another change followed it: still committed (etcd's history).
    committed(&write(&b, "y-1", 2).await);
    let o = a.resolve(&commit(base, &x, "x-1"), soon()).await.unwrap();
    assert_eq!(
        o,
        CommitOutcome::Committed {
            revision: landed_at
        }
    );

    // It never reached etcd: sent again, once.
    let read = a.read_state().await.unwrap();
    let z = doc("z-1", 3);
    let o = a
        .resolve(&commit(read.base(), &z, "z-1"), soon())
        .await
        .unwrap();
    let at = committed(&o);
    let now = a.read_state().await.unwrap().doc.unwrap();
    assert_eq!((now.value, now.mod_revision), (z.clone(), at));
    assert_eq!(
        now.version,
        read.doc.unwrap().version + 1,
        "written exactly once"
    );

    // Another member's change took its place: a conflict.
    let base = a.read_state().await.unwrap().base();
    committed(&write(&b, "w-1", 4).await);
    let v = doc("v-1", 4);
    let o = a.resolve(&commit(base, &v, "v-1"), soon()).await.unwrap();
    assert!(
        matches!(&o, CommitOutcome::Conflict { failed, .. } if failed == &vec![Guard::State]),
        "{o:?}"
    );

    // A guard fails while the document stands: the first transaction could
    // still arrive later, after the missing ack came. The document is
    // rewritten unchanged, so that it cannot.
    let m1 = b.join("m1", b"{}".to_vec()).await.unwrap();
    let read = a.read_state().await.unwrap();
    let u = doc("u-1", 5);
    let expected = vec!["m1".to_string()];
    let mut held = commit(read.base(), &u, "u-1");
    held.acks = Some(("h9", &expected));
    let o = a.resolve(&held, soon()).await.unwrap();
    assert!(
        matches!(&o, CommitOutcome::Conflict { failed, .. } if failed == &vec![Guard::Ack("m1".into())]),
        "{o:?}"
    );
    let fenced = a.read_state().await.unwrap().doc.unwrap();
    let before = read.doc.unwrap();
    assert_eq!(fenced.value, before.value, "rewritten unchanged");
    assert!(fenced.mod_revision > before.mod_revision);
    m1.ack("h9").await.unwrap();
    let late = a.commit(held).await.unwrap();
    assert!(
        matches!(&late, CommitOutcome::Conflict { failed, .. } if failed == &vec![Guard::State]),
        "the late first transaction must not apply: {late:?}"
    );

    // Ours landed, two more followed, and the history was compacted: etcd
    // can no longer tell, and neither does resolve.
    let base = a.read_state().await.unwrap().base();
    let c = doc("c-1", 6);
    committed(&a.commit(commit(base, &c, "c-1")).await.unwrap());
    committed(&write(&b, "d-1", 7).await);
    committed(&write(&b, "d-2", 8).await);
    etcd.compact().await;
    let o = a.resolve(&commit(base, &c, "c-1"), soon()).await;
    assert!(matches!(o, Err(FleetError::Indeterminate { .. })), "{o:?}");
}

/// A commit sent to a frozen etcd times out; when etcd thaws it reads the
/// first transaction (still in the socket) and applies it: the commit is
/// reported committed, and written once.
#[tokio::test]
async fn a_commit_to_a_frozen_etcd_lands_once_when_it_thaws() {
    let etcd = Etcd::one().await;
    let p = prefix("frozen");
    let a = connect(etcd.endpoints(), &p).await;
    committed(&write(&a, "boot", 0).await);
    let read = a.read_state().await.unwrap();
    etcd.freeze(0);
    let writer = a.clone();
    let base = read.base();
    let task = tokio::spawn(async move {
        let v = doc("f-1", 1);
        writer.commit(commit(base, &v, "f-1")).await
    });
    wait_for(Duration::from_secs(5), "the commit to time out", || async {
        (a.contact().ambiguous_commits() >= 1).then_some(())
    })
    .await;
    etcd.thaw(0);
    let at = committed(&task.await.unwrap().unwrap());
    let now = a.read_state().await.unwrap().doc.unwrap();
    assert_eq!((now.value, now.mod_revision), (doc("f-1", 1), at));
    assert_eq!(now.version, read.doc.unwrap().version + 1, "written once");
}

/// The same, but etcd is killed while frozen: the first transaction dies
/// with it, the commit is sent again when etcd is back, and lands once.
#[tokio::test]
async fn a_commit_lost_with_a_killed_etcd_is_sent_again_once() {
    let mut etcd = Etcd::one().await;
    let p = prefix("killed");
    let a = connect(etcd.endpoints(), &p).await;
    committed(&write(&a, "boot", 0).await);
    let read = a.read_state().await.unwrap();
    etcd.freeze(0);
    let writer = a.clone();
    let base = read.base();
    let task = tokio::spawn(async move {
        let v = doc("k-1", 1);
        writer.commit(commit(base, &v, "k-1")).await
    });
    wait_for(Duration::from_secs(5), "the commit to time out", || async {
        (a.contact().ambiguous_commits() >= 1).then_some(())
    })
    .await;
    etcd.kill(0);
    etcd.restart(0).await;
    let at = committed(&task.await.unwrap().unwrap());
    let now = a.read_state().await.unwrap().doc.unwrap();
    assert_eq!((now.value, now.mod_revision), (doc("k-1", 1), at));
    assert_eq!(now.version, read.doc.unwrap().version + 1, "written once");
}
