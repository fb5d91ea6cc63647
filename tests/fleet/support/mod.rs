//! Shared set-ups of the fleet tests: etcd processes (`etcd`), a TCP gate
//! that cuts one client off from etcd (`gate`), settings with short test
//! timings, documents carrying an op id, and waiting for a condition or an
//! event with a deadline (never a fixed sleep).

pub mod etcd;
pub mod gate;
pub mod replica;
#[allow(dead_code)]
#[path = "../../e2e/support/upstream.rs"]
pub mod upstream;

use std::future::Future;
use std::time::Duration;
use switchyard::control::fleet::{
    Base, Commit, CommitOutcome, Etcd as Fleet, EtcdSettings, FleetEvent, FleetWatch,
};
use tokio::time::Instant;

/// Poll `check` every 20 ms until it gives `Some`, at most `within`.
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + within;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
    }
}

/// [`eventually`], failing the test with `what` when it runs out.
pub async fn wait_for<T, F, Fut>(within: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match eventually(within, check).await {
        Some(v) => v,
        None => panic!("timed out after {within:?} waiting for {what}"),
    }
}

/// Settings with the timings of the tests: 2 s leases, a 1.5 s watchdog,
/// 1 s per call.
pub fn settings(endpoints: Vec<String>, prefix: &str) -> EtcdSettings {
    let mut s = EtcdSettings::new(endpoints, prefix);
    s.member_ttl = Duration::from_secs(2);
    s.request_timeout = Duration::from_secs(1);
    s.commit_deadline = Duration::from_secs(10);
    s.watchdog_interval = Duration::from_millis(500);
    s.watchdog_deadline = Duration::from_millis(1500);
    s.retry_min = Duration::from_millis(50);
    s.retry_max = Duration::from_millis(500);
    s
}

/// A unique prefix per test, so a test never sees another's keys.
pub fn prefix(test: &str) -> String {
    format!("/switchyard/test-{test}-{:x}/", fastrand::u64(..))
}

pub async fn connect(endpoints: Vec<String>, prefix: &str) -> Fleet {
    Fleet::connect(settings(endpoints, prefix))
        .await
        .expect("connect")
}

/// A document of change `op` (its op id) with a counter.
pub fn doc(op: &str, n: u64) -> Vec<u8> {
    format!("{{\"op_id\":\"{op}\",\"n\":{n}}}").into_bytes()
}

/// An unguarded commit of `value` over `base`.
pub fn commit<'a>(base: Base, value: &'a [u8], op_id: &'a str) -> Commit<'a> {
    Commit {
        base,
        value,
        op_id,
        leader: None,
        acks: None,
    }
}

/// Read, then commit `doc(op, n)` over what was read; the outcome.
pub async fn write(fleet: &Fleet, op: &str, n: u64) -> CommitOutcome {
    let read = fleet.read_state().await.expect("read state");
    let value = doc(op, n);
    fleet
        .commit(commit(read.base(), &value, op))
        .await
        .expect("commit")
}

/// The revision of a commit that must have landed.
#[track_caller]
pub fn committed(o: &CommitOutcome) -> i64 {
    match o {
        CommitOutcome::Committed { revision } => *revision,
        other => panic!("expected a commit, got {other:?}"),
    }
}

/// Events of `watch` until one matches `want`, at most `within`; returns
/// every event seen, the matching one last.
pub async fn until_event(
    watch: &mut FleetWatch,
    within: Duration,
    what: &str,
    mut want: impl FnMut(&FleetEvent) -> bool,
) -> Vec<FleetEvent> {
    let end = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(end, watch.next()).await {
            Err(_) => panic!("timed out after {within:?} waiting for {what}; saw {seen:#?}"),
            Ok(Err(e)) => panic!("the watch stopped waiting for {what}: {e}"),
            Ok(Ok(ev)) => {
                let done = want(&ev);
                seen.push(ev);
                if done {
                    return seen;
                }
            }
        }
    }
}
