use super::*;

#[test]
fn idle_slots_come_in_blocks_of_1248_bytes_42_kib_for_a_full_pool() {
    // What the comment on IDLE_CAPACITY counts on: growing UpstreamConn
    // (say, unboxing the HTTP/1.1 connection) grows every block of 31
    // slots, and a full pool by 1024 times the growth.
    assert_eq!(IdlePool::<UpstreamConn>::SLOT_BYTES, 40);
    assert_eq!(IdlePool::<UpstreamConn>::BLOCK_BYTES, 1248);
    let full_blocks = IDLE_CAPACITY.div_ceil(IdlePool::<UpstreamConn>::BLOCK_SLOTS);
    assert_eq!(full_blocks, 34);
    assert_eq!(full_blocks * IdlePool::<UpstreamConn>::BLOCK_BYTES, 42_432);
}

#[test]
fn a_peak_is_kept_for_five_sweeps_and_one_connection_always() {
    let mut w = PeakWindow::default();
    assert_eq!(w.push(0), 1);
    assert_eq!(w.push(8), 8);
    for _ in 0..4 {
        assert_eq!(w.push(1), 8);
    }
    assert_eq!(w.push(1), 1);
    assert_eq!(w.push(3), 3);
    for _ in 0..10 {
        w.push(0);
    }
    assert_eq!(w.push(0), 1);
    assert_eq!(w.push(-1), 1);
}

#[test]
fn failures_in_a_row_eject_and_success_resets() {
    let ep = Endpoint::new(PoolName::Blue, "127.0.0.1:1").unwrap();
    assert!(!ep.record_failure(1000, 3, 500, || true));
    assert!(!ep.record_failure(1000, 3, 500, || true));
    ep.record_success();
    assert!(!ep.record_failure(1000, 3, 500, || true));
    assert!(!ep.record_failure(1000, 3, 500, || true));
    assert!(ep.is_available(1000));
    assert!(ep.record_failure(1000, 3, 500, || true));
    assert_eq!(ep.state(1000), EndpointState::Ejected);
    assert!(!ep.is_available(1499));
    // Back on probation once the ejection time has passed.
    assert!(ep.is_available(1500));
    assert_eq!(ep.state(1500), EndpointState::Unknown);
    assert!(ep.on_probation(1500));
}

#[test]
fn on_probation_one_failure_ejects_again_and_a_success_ends_it() {
    let ep = Endpoint::new(PoolName::Blue, "127.0.0.1:1").unwrap();
    for _ in 0..3 {
        ep.record_failure(0, 3, 100, || true);
    }
    assert_eq!(ep.state(50), EndpointState::Ejected);
    // A straggler failing during the ejection does not extend it.
    assert!(!ep.record_failure(50, 3, 100, || true));
    assert_eq!(ep.ejected_until_ms(), 100);
    // Back: the first failure ejects again at once.
    assert!(ep.record_failure(100, 3, 100, || true));
    assert_eq!(ep.state(150), EndpointState::Ejected);
    // Back again, and a success ends the probation: the threshold rules again.
    ep.record_success();
    assert!(!ep.on_probation(200));
    assert!(!ep.record_failure(200, 3, 100, || true));
    assert!(ep.is_available(200));
}

#[tokio::test]
async fn an_ejection_wakes_the_watcher_even_when_nobody_waited_yet() {
    let ep = Endpoint::new(PoolName::Blue, "127.0.0.1:1").unwrap();
    assert!(ep.record_failure(0, 1, 100, || true));
    tokio::time::timeout(std::time::Duration::from_secs(1), ep.ejected())
        .await
        .expect("the ejection was signalled");
}

#[test]
fn check_results_round_trip_through_the_atomic() {
    let ep = Endpoint::new(PoolName::Blue, "127.0.0.1:1").unwrap();
    assert_eq!(ep.last_check_result(), None);
    for r in [
        CheckResult::Status(503),
        CheckResult::ConnectFailed,
        CheckResult::TimedOut,
        CheckResult::ProtocolError,
    ] {
        ep.record_check(7, false, r);
        assert_eq!(ep.last_check_result(), Some(r));
    }
    assert_eq!(CheckResult::Status(200).to_string(), "status 200");
}

#[test]
fn health_and_drain_decide_availability() {
    let ep = Endpoint::new(PoolName::Green, "127.0.0.1:1").unwrap();
    assert_eq!(ep.state(0), EndpointState::Unknown);
    assert!(ep.is_available(0));
    assert!(ep.set_healthy(false));
    assert!(!ep.set_healthy(false));
    assert!(!ep.is_available(0));
    assert_eq!(ep.state(0), EndpointState::Unhealthy);
    assert!(ep.set_healthy(true));
    assert_eq!(ep.state(0), EndpointState::Healthy);
    ep.set_removed();
    assert!(!ep.is_available(0));
    assert_eq!(ep.state(0), EndpointState::Draining);
}

#[test]
fn maintenance_drains_until_enabled_and_is_not_removal() {
    let ep = Endpoint::new(PoolName::Blue, "127.0.0.1:1").unwrap();
    assert!(ep.set_healthy(true));
    assert!(ep.set_maintenance(true), "first drain changes the flag");
    assert!(!ep.set_maintenance(true), "a second drain changes nothing");
    assert!(!ep.is_available(0));
    assert_eq!(ep.state(0), EndpointState::Draining);
    assert!(ep.in_maintenance());
    assert!(!ep.is_removed(), "a reload must still carry it over");
    assert_eq!(ep.health_state(0), EndpointState::Healthy);
    assert!(ep.set_maintenance(false));
    assert!(!ep.set_maintenance(false));
    assert!(ep.is_available(0));
    assert_eq!(ep.state(0), EndpointState::Healthy);
    // Removal wins over an enable: a removed endpoint never serves again.
    ep.set_maintenance(true);
    ep.set_removed();
    ep.set_maintenance(false);
    assert!(!ep.is_available(0));
    assert_eq!(ep.state(0), EndpointState::Draining);
}
