//! The verdict counter and settings, and the checkers' timing (with paused
//! tokio time and a scripted probe).

use super::*;
use crate::config::{HealthCheckConfig, PoolName};
use crate::upstream::{CheckResult, Endpoint, EndpointState};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

thread_local! {
    // Paused-time tests run on one thread: the first call fixes the base.
    static BASE: Instant = Instant::now();
}

/// Milliseconds of tokio (paused) time, as the endpoint's clock.
fn test_clock() -> u64 {
    BASE.with(|b| b.elapsed().as_millis() as u64)
}

/// Answers each address with the result set for it (default 200), after
/// `delay`; counts the calls.
#[derive(Default)]
struct Script {
    results: Mutex<HashMap<String, CheckResult>>,
    calls: Mutex<HashMap<String, u32>>,
    delay: Duration,
}

impl Script {
    fn set(&self, ep: &Endpoint, r: CheckResult) {
        self.results.lock().unwrap().insert(ep.address.clone(), r);
    }

    fn calls(&self, ep: &Endpoint) -> u32 {
        self.calls
            .lock()
            .unwrap()
            .get(&ep.address)
            .copied()
            .unwrap_or(0)
    }
}

impl Probe for Script {
    async fn check(&self, ep: &Endpoint, _s: &CheckSettings) -> CheckResult {
        *self
            .calls
            .lock()
            .unwrap()
            .entry(ep.address.clone())
            .or_default() += 1;
        tokio::time::sleep(self.delay).await;
        let results = self.results.lock().unwrap();
        results
            .get(&ep.address)
            .copied()
            .unwrap_or(CheckResult::Status(200))
    }
}

/// Records every transition with the tokio time it came at.
#[derive(Default)]
struct Sink(Mutex<Vec<(String, EndpointState, Instant)>>);

impl HealthSink for Sink {
    fn transition(&self, ep: &Endpoint, state: EndpointState, _reason: String) {
        self.0
            .lock()
            .unwrap()
            .push((ep.address.clone(), state, Instant::now()));
    }
}

impl Sink {
    fn states(&self) -> Vec<EndpointState> {
        self.0.lock().unwrap().iter().map(|t| t.1).collect()
    }

    fn last_at(&self) -> Instant {
        self.0.lock().unwrap().last().expect("a transition").2
    }
}

fn settings(interval_ms: u64) -> CheckSettings {
    CheckSettings::from_config(&HealthCheckConfig {
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(interval_ms / 2),
        healthy_threshold: 2,
        unhealthy_threshold: 3,
        ..HealthCheckConfig::default()
    })
    .unwrap()
}

fn endpoint(port: u16) -> Arc<Endpoint> {
    Arc::new(Endpoint::new(PoolName::Blue, &format!("127.0.0.1:{port}")).unwrap())
}

struct Rig {
    script: Arc<Script>,
    sink: Arc<Sink>,
    checks: HealthChecks<Script>,
}

fn rig(delay: Duration) -> Rig {
    let script = Arc::new(Script {
        delay,
        ..Script::default()
    });
    let sink = Arc::new(Sink::default());
    let checks = HealthChecks::with_probe(settings(100), script.clone(), sink.clone(), test_clock);
    Rig {
        script,
        sink,
        checks,
    }
}

/// Let tasks run for `ms` of (paused) time.
async fn run_for(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[tokio::test(start_paused = true)]
async fn unknown_turns_healthy_then_down_within_the_bound_then_up_again() {
    let mut r = rig(Duration::ZERO);
    let ep = endpoint(1);
    r.checks.reconcile([&ep], &settings(100));
    // First check within one interval (jitter), healthy after two passes.
    run_for(200).await;
    assert_eq!(r.sink.states(), vec![EndpointState::Healthy]);
    assert_eq!(ep.state(test_clock()), EndpointState::Healthy);
    assert_eq!(ep.last_check_result(), Some(CheckResult::Status(200)));

    // It stops answering: down within interval × unhealthy_threshold + one interval.
    r.script.set(&ep, CheckResult::ConnectFailed);
    let broke = Instant::now();
    run_for(400).await;
    assert_eq!(
        r.sink.states(),
        vec![EndpointState::Healthy, EndpointState::Unhealthy]
    );
    // Three failed checks 100 ms apart: 200 ms at least, when a check due
    // at the very moment of the break already sees it.
    let took = r.sink.last_at() - broke;
    assert!(
        took >= Duration::from_millis(200) && took <= Duration::from_millis(400),
        "marked down after {took:?}"
    );
    assert!(!ep.is_available(test_clock()));

    // A status outside expected_status is a failure too; 200 twice brings it back.
    r.script.set(&ep, CheckResult::Status(503));
    run_for(300).await;
    assert_eq!(
        r.sink.states().len(),
        2,
        "no transition while still failing"
    );
    r.script.set(&ep, CheckResult::Status(204));
    let fixed = Instant::now();
    run_for(300).await;
    assert_eq!(r.sink.states().last(), Some(&EndpointState::Healthy));
    assert!(r.sink.last_at() - fixed <= Duration::from_millis(200));
    assert!(ep.is_available(test_clock()));
}

#[tokio::test(start_paused = true)]
async fn an_ejection_is_reported_at_once_and_its_end_after_the_ejection_time() {
    let mut r = rig(Duration::ZERO);
    let ep = endpoint(2);
    r.checks.reconcile([&ep], &settings(100));
    run_for(250).await;
    assert_eq!(r.sink.states(), vec![EndpointState::Healthy]);

    // Live traffic: five failures in a row eject it for 1 s.
    for _ in 0..5 {
        ep.record_failure(test_clock(), 5, 1000, || true);
    }
    let ejected = Instant::now();
    run_for(1).await;
    assert_eq!(r.sink.states().last(), Some(&EndpointState::Ejected));
    assert!(r.sink.last_at() - ejected < Duration::from_millis(2));
    run_for(997).await;
    assert_eq!(r.sink.states().last(), Some(&EndpointState::Ejected));
    run_for(5).await;
    assert_eq!(
        r.sink.states(),
        vec![
            EndpointState::Healthy,
            EndpointState::Ejected,
            EndpointState::Healthy
        ]
    );
    let back = r.sink.last_at() - ejected;
    assert!(
        back >= Duration::from_millis(1000) && back < Duration::from_millis(1002),
        "back after {back:?}"
    );
    assert!(ep.on_probation(test_clock()));
}

#[tokio::test(start_paused = true)]
async fn a_slow_check_skips_missed_ticks_instead_of_bursting() {
    // Each check takes 250 ms with a 100 ms interval.
    let mut r = rig(Duration::from_millis(250));
    let ep = endpoint(3);
    r.checks.reconcile([&ep], &settings(100));
    run_for(1000).await;
    let calls = r.script.calls(&ep);
    assert!(
        (3..=4).contains(&calls),
        "{calls} checks in 1 s of 250 ms checks"
    );
}

#[tokio::test(start_paused = true)]
async fn reconcile_starts_new_checkers_stops_removed_ones_and_keeps_the_rest() {
    let mut r = rig(Duration::from_millis(10));
    let (a, b, c) = (endpoint(4), endpoint(5), endpoint(6));
    let s = settings(100);
    assert_eq!(
        r.checks.reconcile([&a, &b], &s),
        Reconciled {
            started: 2,
            stopped: 0
        }
    );
    run_for(500).await;
    // b is removed, c added; a keeps its checker (and its count).
    assert_eq!(
        r.checks.reconcile([&a, &c], &s),
        Reconciled {
            started: 1,
            stopped: 1
        }
    );
    let (a0, b0) = (r.script.calls(&a), r.script.calls(&b));
    run_for(500).await;
    assert_eq!(
        r.script.calls(&b),
        b0,
        "a removed endpoint is still checked"
    );
    assert!(r.script.calls(&a) >= a0 + 4);
    assert!(r.script.calls(&c) >= 4);
    assert_eq!(r.checks.len(), 2);
    // Same endpoints, same settings: nothing to do.
    assert_eq!(r.checks.reconcile([&a, &c], &s), Reconciled::default());
    // New settings restart every checker, from the endpoint's verdict.
    assert_eq!(a.state(test_clock()), EndpointState::Healthy);
    let done = r.checks.reconcile([&a, &c], &settings(50));
    assert_eq!(
        done,
        Reconciled {
            started: 2,
            stopped: 2
        }
    );
    run_for(300).await;
    let to_a = r
        .sink
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|t| t.0 == a.address)
        .count();
    assert_eq!(
        to_a, 1,
        "a restarted checker reported a change that was not one"
    );
}

#[tokio::test(start_paused = true)]
async fn stop_ends_every_checker_even_in_the_middle_of_a_check() {
    let r = rig(Duration::from_secs(3600));
    let mut checks = r.checks;
    let ep = endpoint(7);
    checks.reconcile([&ep], &settings(100));
    run_for(150).await;
    assert_eq!(r.script.calls(&ep), 1, "the first check is under way");
    tokio::time::timeout(Duration::from_millis(10), checks.stopper().stop())
        .await
        .expect("checkers stopped at once");
}

#[test]
fn reasons_say_what_happened() {
    use EndpointState::*;
    let s = settings(100);
    let timeout = Some(CheckResult::TimedOut);
    assert_eq!(
        checker::reason(Healthy, Unhealthy, &s, timeout),
        "3 health checks failed in a row (last: timed out)"
    );
    assert_eq!(
        checker::reason(Unknown, Healthy, &s, None),
        "2 health checks passed in a row"
    );
    assert!(checker::reason(Healthy, Ejected, &s, None).starts_with("ejected by outlier"));
    assert!(checker::reason(Ejected, Unknown, &s, None).contains("probation"));
    assert!(checker::reason(Ejected, Unhealthy, &s, timeout).contains("active checks fail"));
}

// The verdict counter and the settings.

#[test]
fn unknown_turns_healthy_after_the_healthy_threshold() {
    let mut c = HealthCounter::new(2, 3, Verdict::Unknown);
    assert_eq!(c.observe(true), None);
    assert_eq!(c.observe(true), Some(Verdict::Healthy));
    assert_eq!(c.observe(true), None, "no second transition");
}

#[test]
fn failures_must_come_in_a_row() {
    let mut c = HealthCounter::new(2, 3, Verdict::Healthy);
    assert_eq!(c.observe(false), None);
    assert_eq!(c.observe(false), None);
    assert_eq!(c.observe(true), None, "a pass breaks the run");
    assert_eq!(c.observe(false), None);
    assert_eq!(c.observe(false), None);
    assert_eq!(c.observe(false), Some(Verdict::Unhealthy));
    assert_eq!(c.observe(false), None);
    // Back up: passes in a row, a failure restarts the count.
    assert_eq!(c.observe(true), None);
    assert_eq!(c.observe(false), None);
    assert_eq!(c.observe(true), None);
    assert_eq!(c.observe(true), Some(Verdict::Healthy));
    assert_eq!(c.verdict(), Verdict::Healthy);
}

#[test]
fn unknown_turns_unhealthy_only_after_the_unhealthy_threshold() {
    let mut c = HealthCounter::new(1, 2, Verdict::Unknown);
    assert_eq!(c.observe(false), None);
    assert_eq!(c.observe(false), Some(Verdict::Unhealthy));
}

#[test]
fn zero_thresholds_count_as_one() {
    let mut c = HealthCounter::new(0, 0, Verdict::Unknown);
    assert_eq!(c.observe(false), Some(Verdict::Unhealthy));
    assert_eq!(c.observe(true), Some(Verdict::Healthy));
}

#[test]
fn settings_come_from_the_config_or_name_the_mistake() {
    let mut c = HealthCheckConfig::default();
    let s = CheckSettings::from_config(&c).unwrap();
    assert_eq!(s.path.as_str(), "/health");
    assert!(s.expected.contains(399) && !s.expected.contains(400));
    c.expected_status = "2xx".into();
    assert!(matches!(
        CheckSettings::from_config(&c),
        Err(HealthConfigError::ExpectedStatus(_))
    ));
    c.expected_status = "200".into();
    c.interval = Duration::ZERO;
    assert!(matches!(
        CheckSettings::from_config(&c),
        Err(HealthConfigError::ZeroInterval)
    ));
}
