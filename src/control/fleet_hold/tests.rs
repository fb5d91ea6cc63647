//! Three controllers on one in-memory fleet store with the etcd store's
//! guards (the generation compared, the acks checked in the same commit,
//! acks that vanish with a member): the barrier wired into the real
//! controller loop. The hold's deadlines are wall-clock (the document's
//! unix milliseconds, the only clock members share), so these run in real
//! time with a short `max_hold`, and wait for conditions with a bound.

use super::*;
use crate::config::PoolName;
use crate::control::controller::{ControllerHandle, Shared};
use crate::control::document::{HoldOutcome, StateDoc};
use crate::control::store::{StoreEvent, StoreFuture, StoreStatus};
use crate::control::{Actor, Command};
use crate::routing::PoolRuntime;
use crate::telemetry::metrics::Metrics;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio::time::timeout;

const BOUND: Duration = Duration::from_secs(10);
const GRACE: Duration = Duration::from_millis(200);
/// Long enough for three members to hold on a loaded machine.
const MAX_HOLD_MS: u64 = 5_000;

#[derive(Default)]
struct Inner {
    doc: Option<StateDoc>,
    acks: BTreeMap<u64, BTreeSet<String>>,
    members: BTreeSet<String>,
    subscribers: Vec<(String, mpsc::Sender<StoreEvent>)>,
    /// Members cut off from the store: they hear nothing more, and their
    /// commits fail.
    deaf: BTreeSet<String>,
}

impl Inner {
    fn tell(&self, ev: &StoreEvent) {
        for (id, tx) in &self.subscribers {
            if !self.deaf.contains(id) {
                let _ = tx.try_send(ev.clone());
            }
        }
    }
}

/// The fleet's store, shared by every member's [`MemStore`].
#[derive(Clone, Default)]
struct MemFleet(Arc<Mutex<Inner>>);

impl MemFleet {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap()
    }

    /// A member's store. It subscribes here, before the controller loads
    /// the document, as the etcd store watches from the revision it read:
    /// a document committed before the member's loop runs is not missed.
    fn store(&self, id: &str) -> MemStore {
        let (tx, rx) = mpsc::channel(256);
        let mut inner = self.inner();
        inner.members.insert(id.to_string());
        inner.subscribers.push((id.to_string(), tx));
        MemStore {
            id: id.to_string(),
            fleet: self.clone(),
            events: Some(rx),
        }
    }

    fn doc(&self) -> StateDoc {
        self.inner().doc.clone().expect("a document")
    }

    /// `id` leaves: its acks vanish with its lease.
    fn leave(&self, id: &str) {
        let mut inner = self.inner();
        inner.members.remove(id);
        for acks in inner.acks.values_mut() {
            acks.remove(id);
        }
        inner.tell(&StoreEvent::HoldNews);
    }
}

struct MemStore {
    id: String,
    fleet: MemFleet,
    events: Option<mpsc::Receiver<StoreEvent>>,
}

impl MemStore {
    fn put(
        &self,
        next: &StateDoc,
        expected: u64,
        acks: Option<(u64, &[String])>,
    ) -> Result<StateDoc, StoreError> {
        let mut inner = self.fleet.inner();
        if inner.deaf.contains(&self.id) {
            return Err(StoreError::Unavailable {
                detail: "cut off".into(),
            });
        }
        let stored = inner.doc.as_ref().map_or(0, |d| d.generation);
        if stored != expected {
            return Err(StoreError::Conflict {
                current: Box::new(inner.doc.clone().expect("stored")),
            });
        }
        if let Some((hold, members)) = acks {
            let have = inner.acks.get(&hold).cloned().unwrap_or_default();
            let missing: Vec<String> = members
                .iter()
                .filter(|m| !have.contains(*m))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return Err(StoreError::AcksMissing {
                    members: missing,
                    current: Box::new(inner.doc.clone().expect("stored")),
                });
            }
        }
        inner.doc = Some(next.clone());
        inner.tell(&StoreEvent::Doc(Box::new(next.clone())));
        Ok(next.clone())
    }
}

impl StateStore for MemStore {
    fn load(&mut self) -> StoreFuture<'_, Result<Option<StateDoc>, StoreError>> {
        let doc = self.fleet.inner().doc.clone();
        Box::pin(async move { Ok(doc) })
    }

    fn commit<'a>(
        &'a mut self,
        next: &'a StateDoc,
        expected_generation: u64,
    ) -> StoreFuture<'a, Result<StateDoc, StoreError>> {
        Box::pin(async move { self.put(next, expected_generation, None) })
    }

    fn commit_acked<'a>(
        &'a mut self,
        next: &'a StateDoc,
        expected_generation: u64,
        hold: u64,
        acks: &'a [String],
    ) -> StoreFuture<'a, Result<StateDoc, StoreError>> {
        Box::pin(async move { self.put(next, expected_generation, Some((hold, acks))) })
    }

    fn tick(&mut self) -> StoreFuture<'_, ()> {
        Box::pin(async {})
    }

    fn status(&self) -> StoreStatus {
        StoreStatus::default()
    }

    fn events(&mut self) -> Option<mpsc::Receiver<StoreEvent>> {
        self.events.take()
    }

    fn member_id(&self) -> Option<&str> {
        Some(&self.id)
    }

    fn hold_members(&self) -> Vec<String> {
        self.fleet.inner().members.iter().cloned().collect()
    }

    fn hold_acks(&self, hold: u64) -> BTreeSet<String> {
        self.fleet
            .inner()
            .acks
            .get(&hold)
            .cloned()
            .unwrap_or_default()
    }

    fn acker(&self) -> Option<Acker> {
        let (fleet, id) = (self.fleet.clone(), self.id.clone());
        Some(Arc::new(move |hold: u64| {
            let (fleet, id) = (fleet.clone(), id.clone());
            Box::pin(async move {
                let mut inner = fleet.inner();
                if !inner.members.contains(&id) {
                    return Err("no lease".to_string());
                }
                inner.acks.entry(hold).or_default().insert(id);
                inner.tell(&StoreEvent::HoldNews);
                Ok(())
            })
        }))
    }

    fn hold_grace(&self) -> Option<Duration> {
        Some(GRACE)
    }
}

struct Member {
    handle: ControllerHandle,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

async fn member(fleet: &MemFleet, id: &str) -> Member {
    let yaml = format!(
        "listeners:\n  - bind: \"127.0.0.1:0\"\nadmin:\n  bind: \"127.0.0.1:0\"\npools:\n  blue:\n    endpoints: [\"127.0.0.1:1\"]\n  green:\n    endpoints: [\"127.0.0.1:2\"]\nstate_file: null\ncutover:\n  hold_writes: true\n  max_hold: {MAX_HOLD_MS}ms\nrollout:\n  bake_time: 0s\n"
    );
    let cfg = crate::config::parse(&yaml, "<test>").unwrap();
    let metrics = Arc::new(Metrics::new());
    let runtimes = PoolName::ALL.map(|p| {
        Arc::new(PoolRuntime::new(
            p,
            cfg.rollback.window,
            metrics.pool(p).clone(),
        ))
    });
    let store = Box::new(fleet.store(id));
    let (ctl, handle, shared) = Controller::with_store(cfg, None, runtimes, metrics, store)
        .await
        .unwrap();
    let task = tokio::spawn(ctl.run());
    Member {
        handle,
        shared,
        task,
    }
}

async fn three(fleet: &MemFleet) -> Vec<Member> {
    let mut ms = Vec::new();
    for id in ["a", "b", "c"] {
        ms.push(member(fleet, id).await);
    }
    ms
}

type SwitchAnswer = tokio::task::JoinHandle<Result<crate::control::SwitchReport, CommandError>>;

fn switch(m: &Member) -> SwitchAnswer {
    let handle = m.handle.clone();
    tokio::spawn(async move {
        handle
            .request(|reply| Command::Switch {
                to: PoolName::Green,
                force: true,
                if_generation: None,
                actor: Actor::Admin,
                reply,
            })
            .await
    })
}

/// Wait until `check` holds, at most [`BOUND`].
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let mut poll = tokio::time::interval(Duration::from_millis(5));
    let waited = timeout(BOUND, async {
        while !check() {
            poll.tick().await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}

fn holding(m: &Member) -> bool {
    m.shared.table.load().hold.is_some()
}

/// Wait until every member holds under the document that started the
/// hold. Strictly that document: a member that missed it but applied the
/// abort after the deadline has not held (a store that subscribed late
/// once let such a member pass here, and the abort then named it too).
async fn all_hold(fleet: &MemFleet, ms: &[Member]) {
    let mut started = None;
    until("the hold started", || {
        started = fleet
            .inner()
            .doc
            .as_ref()
            .and_then(|d| d.hold_in_flight().map(|h| h.id));
        started.is_some()
    })
    .await;
    let id = started.unwrap_or_default();
    until("every member holding", || {
        ms.iter().all(|m| {
            let t = m.shared.table.load();
            t.generation == id && t.hold.is_some()
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_holds_and_acks_then_the_coordinator_flips_guarded_by_all_acks() {
    let fleet = MemFleet::default();
    let ms = three(&fleet).await;
    // a's own write in flight keeps the hold open until every member holds.
    let stuck = ms[0].shared.writes.enter();
    let answer = switch(&ms[0]);
    all_hold(&fleet, &ms).await;
    drop(stuck);
    let report = timeout(BOUND, answer)
        .await
        .unwrap()
        .unwrap()
        .expect("completed");
    assert_eq!(report.outcome, "completed");
    let doc = fleet.doc();
    let hold = doc.hold.as_ref().expect("the ended hold");
    assert_eq!(hold.outcome, Some(HoldOutcome::Completed));
    assert_eq!(hold.coordinator.as_deref(), Some("a"));
    assert_eq!(hold.expected, vec!["a", "b", "c"]);
    let acks = fleet
        .inner()
        .acks
        .get(&hold.id)
        .cloned()
        .unwrap_or_default();
    assert_eq!(acks.len(), 3, "flipped with every ack in: {acks:?}");
    until("every member on green, holding nothing", || {
        ms.iter().all(|m| {
            let t = m.shared.table.load();
            t.hold.is_none() && t.live == PoolName::Green
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_writes_never_settle_aborts_the_switch_naming_it() {
    let fleet = MemFleet::default();
    let ms = three(&fleet).await;
    // b has a write in flight that never ends: it never acks.
    let _stuck = ms[1].shared.writes.enter();
    let answer = switch(&ms[0]);
    let err = timeout(BOUND, answer).await.unwrap().unwrap().unwrap_err();
    let CommandError::SwitchAborted(report) = err else {
        panic!("expected an abort, got {err}");
    };
    assert_eq!(report.missing_acks, vec!["b"]);
    assert!(
        report
            .reason
            .as_deref()
            .unwrap()
            .contains("no acknowledgement from b"),
        "{report:?}"
    );
    assert_eq!(fleet.doc().live, PoolName::Blue);
    assert_eq!(
        fleet.doc().hold.and_then(|h| h.outcome),
        Some(HoldOutcome::Aborted)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_coordinators_switch_is_aborted_by_another_member_after_its_deadline() {
    let fleet = MemFleet::default();
    let ms = three(&fleet).await;
    let _stuck = ms[0].shared.writes.enter();
    let answer = switch(&ms[0]);
    all_hold(&fleet, &ms).await;
    // a dies with the hold in flight, before it flipped: its lease goes.
    // Cut off first: a task being aborted may still run one more turn.
    fleet.inner().deaf.insert("a".into());
    ms[0].task.abort();
    answer.abort();
    fleet.leave("a");
    let started = fleet.doc().hold.expect("in flight").started_unix_ms;
    until("b and c release their writes", || {
        !holding(&ms[1]) && !holding(&ms[2])
    })
    .await;
    let doc = fleet.doc();
    assert_eq!(doc.live, PoolName::Blue, "no flip without the coordinator");
    assert_eq!(
        doc.hold.as_ref().and_then(|h| h.outcome),
        Some(HoldOutcome::Aborted)
    );
    let ended = crate::clock::unix_ms();
    let change = doc.last_change.clone();
    assert!(
        ended - started >= MAX_HOLD_MS + GRACE.as_millis() as u64,
        "aborted {} ms after the start, before deadline + grace: {change:?}",
        ended - started
    );
    let reason = doc.last_change.unwrap().events[0]
        .reason
        .clone()
        .unwrap_or_default();
    assert!(reason.contains("after the deadline"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_never_learns_the_outcome_refuses_its_held_writes() {
    let fleet = MemFleet::default();
    let ms = three(&fleet).await;
    let stuck = ms[0].shared.writes.enter();
    let answer = switch(&ms[0]);
    all_hold(&fleet, &ms).await;
    let hold_id = fleet.doc().hold.expect("in flight").id;
    until("c acked", || {
        fleet
            .inner()
            .acks
            .get(&hold_id)
            .is_some_and(|a| a.contains("c"))
    })
    .await;
    // c hears nothing more: the flip never reaches it.
    fleet.inner().deaf.insert("c".into());
    let c_hold = ms[2].shared.table.load().hold.clone().expect("c holds");
    let waiting = tokio::spawn(c_hold.enter().expect("a place").wait());
    drop(stuck);
    let report = timeout(BOUND, answer)
        .await
        .unwrap()
        .unwrap()
        .expect("flipped");
    assert_eq!(report.outcome, "completed");
    let waited = timeout(BOUND, waiting).await.expect("answered").unwrap();
    assert_eq!(
        waited,
        crate::routing::hold::Waited::Refused,
        "never the old pool"
    );
    assert!(c_hold.rejected(), "and new writes are refused too");
    assert_eq!(
        ms[2].shared.table.load().live,
        PoolName::Blue,
        "c missed the flip"
    );
}
