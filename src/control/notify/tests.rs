//! Notifications as logic: the signature, the bodies, the retries under a
//! paused clock, the queue that drops instead of waiting, and whose events
//! a fleet member sends. The real webhook receiver is in `tests/e2e/notify.rs`.

use super::*;
use crate::control::events::{Actor, EventKind};
use crate::routing::Weights;
use crate::telemetry::metrics::Metrics;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::time::Instant;

fn entry(url: &str, events: &[&str], format: NotifyFormat) -> NotifyConfig {
    NotifyConfig {
        url: url.into(),
        events: events.iter().map(|s| s.to_string()).collect(),
        secret_file: None,
        format,
    }
}

fn rollback() -> Event {
    let mut e = Event::new(EventKind::Rollback, Actor::Auto)
        .weights(Weights::with_percent(PoolName::Blue, 100.0))
        .reason("check: check orders failed 3 times in a row");
    e.id = 7;
    e
}

#[test]
fn the_signature_is_the_hmac_sha256_of_the_body_in_hex() {
    // RFC 4231, test case 2.
    assert_eq!(
        signature(b"Jefe", b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn json_is_the_event_and_slack_is_one_line_of_text() {
    let e = rollback();
    let json: serde_json::Value =
        serde_json::from_slice(&body(&entry("http://h/", &[], NotifyFormat::Json), &e)).unwrap();
    assert_eq!(json, serde_json::to_value(&e).unwrap());
    assert_eq!(json["kind"], "rollback");
    let slack: serde_json::Value =
        serde_json::from_slice(&body(&entry("http://h/", &[], NotifyFormat::Slack), &e)).unwrap();
    assert_eq!(
        slack,
        serde_json::json!({"text": "switchyard: rollback by auto (blue 100, green 0): check: check orders failed 3 times in a row"})
    );
}

#[test]
fn a_secret_that_cannot_be_read_is_no_unsigned_post() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = entry("http://h/", &["rollback"], NotifyFormat::Json);
    cfg.secret_file = Some(dir.path().join("gone"));
    let err = headers(&cfg, b"{}").expect_err("no secret");
    assert!(err.contains("not sent unsigned"), "{err}");
    std::fs::write(dir.path().join("gone"), "s3cret\n").unwrap();
    let h = headers(&cfg, b"{}").expect("signed");
    // The trailing newline is not part of the key.
    assert_eq!(h[SIGNATURE_HEADER], signature(b"s3cret", b"{}").as_str());
}

/// A scripted receiver: each try takes the next answer.
fn script(answers: &[Try]) -> impl FnMut() -> std::future::Ready<Try> {
    let answers = Mutex::new(
        answers
            .iter()
            .map(|t| match t {
                Try::Status(s) => Try::Status(*s),
                Try::Transport(e) => Try::Transport(e.clone()),
            })
            .collect::<VecDeque<_>>(),
    );
    move || {
        let next = answers.lock().unwrap().pop_front();
        std::future::ready(next.unwrap_or(Try::Status(200)))
    }
}

#[tokio::test(start_paused = true)]
async fn five_hundreds_and_transport_errors_are_retried_with_a_doubling_backoff() {
    let p = Policy::default();
    let t0 = Instant::now();
    let got = with_retries(p, script(&[Try::Status(500), Try::Status(500)])).await;
    assert_eq!(got, Delivered::Sent { tries: 3 });
    assert_eq!(t0.elapsed(), Duration::from_millis(250 + 500));

    let t0 = Instant::now();
    let refused = Try::Transport("connect: refused".into());
    let got = with_retries(p, script(&[refused, Try::Status(429)])).await;
    assert_eq!(got, Delivered::Sent { tries: 3 });
    assert_eq!(t0.elapsed(), Duration::from_millis(750));
}

#[tokio::test(start_paused = true)]
async fn a_receiver_that_keeps_failing_is_given_up_after_the_last_try() {
    let p = Policy::default();
    let t0 = Instant::now();
    let mut tries = 0;
    let got = with_retries(p, || {
        tries += 1;
        std::future::ready(Try::Status(503))
    })
    .await;
    assert_eq!(got, Delivered::Failed("answered 503 after 5 tries".into()));
    assert_eq!(tries, 5);
    // 250 + 500 + 1000 + 2000: no wait after the last try.
    assert_eq!(t0.elapsed(), Duration::from_millis(3750));
}

#[tokio::test(start_paused = true)]
async fn a_client_error_is_not_retried() {
    let t0 = Instant::now();
    let got = with_retries(Policy::default(), script(&[Try::Status(404)])).await;
    assert_eq!(got, Delivered::Failed("answered 404".into()));
    assert_eq!(t0.elapsed(), Duration::ZERO);
}

/// The lanes are offered events without ever waiting: on this one-thread
/// runtime no worker runs until the test yields, so the queue holds
/// exactly [`QUEUE`] and the rest are dropped and counted.
#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_waiting() {
    let metrics = Metrics::new();
    let mut lanes = Lanes::new(Policy::default(), metrics.analysis.clone());
    let entries = [
        entry("http://127.0.0.1:9/a", &["rollback"], NotifyFormat::Json),
        entry(
            "http://127.0.0.1:9/b",
            &["switch_completed"],
            NotifyFormat::Json,
        ),
    ];
    let e = Arc::new(rollback());
    for _ in 0..QUEUE + 3 {
        lanes.offer(&entries, &e);
    }
    assert_eq!(metrics.analysis.notifications("dropped"), 3);
    // Only the entry that lists the kind got a lane.
    assert_eq!(lanes.lanes.len(), 1);
    assert_eq!(lanes.lanes[0].cfg.url, "http://127.0.0.1:9/a");
    // A reload without the entry closes its lane; the other one opens on its kind.
    let switched = Arc::new(Event::new(EventKind::SwitchCompleted, Actor::Admin));
    lanes.offer(&entries[1..], &switched);
    assert_eq!(lanes.lanes.len(), 1);
    assert_eq!(lanes.lanes[0].cfg.url, "http://127.0.0.1:9/b");
    assert_eq!(metrics.analysis.notifications("dropped"), 3);
}

#[test]
fn a_fleet_member_sends_its_own_decisions_and_its_local_events() {
    let mut e = rollback();
    assert!(ours(&e, None));
    assert!(ours(&e, Some("a:1")), "a local event, no member named");
    e.member = Some("b:2".into());
    assert!(!ours(&e, Some("a:1")));
    assert!(ours(&e, Some("b:2")));
}
