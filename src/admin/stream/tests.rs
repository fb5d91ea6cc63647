use super::*;
use crate::control::events::{Actor, EventKind};
use crate::control::feed::{Feed, CAPACITY};
use std::sync::atomic::AtomicU64;

fn event(id: u64) -> Event {
    let mut e = Event::new(EventKind::WeightsChanged, Actor::Admin);
    e.id = id;
    e
}

/// A stream on `feed` whose status is `{"n": N}`, N counting the calls.
fn frames(streams: &Arc<Streams>, feed: &Feed, recent: Vec<Event>) -> Frames {
    let calls = AtomicU64::new(0);
    let status = Box::new(move || format!("{{\"n\":{}}}", calls.fetch_add(1, Ordering::Relaxed)));
    Frames::new(
        streams.open().expect("room"),
        feed.subscribe(),
        recent,
        status,
    )
}

fn text(b: Option<Bytes>) -> String {
    String::from_utf8(b.expect("a message").to_vec()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_stream_opens_with_a_snapshot_then_forwards_events_in_order() {
    let streams = Streams::new(CancellationToken::new());
    let feed = Feed::default();
    let mut f = frames(&streams, &feed, vec![event(4), event(3)]);
    // Sent before the stream reads: event 4 was in the snapshot already.
    for id in [4, 5, 6, 7] {
        feed.send(Change::Event(Arc::new(event(id))));
    }
    feed.send(Change::Status);
    assert_eq!(text(f.next().await), "event: status\ndata: {\"n\":0}\n\n");
    let snapshot = text(f.next().await);
    assert!(
        snapshot.starts_with("event: events\ndata: [{\"id\":4,"),
        "{snapshot}"
    );
    for id in [5, 6, 7] {
        let m = text(f.next().await);
        assert!(
            m.starts_with(&format!("id: {id}\nevent: event\ndata: {{\"id\":{id},")),
            "{m}"
        );
        assert!(
            m.ends_with("\n\n") && m.matches('\n').count() == 4,
            "one line of JSON: {m}"
        );
    }
    assert_eq!(text(f.next().await), "event: status\ndata: {\"n\":1}\n\n");
}

#[tokio::test(start_paused = true)]
async fn a_quiet_stream_still_sends_a_status_every_heartbeat() {
    let streams = Streams::new(CancellationToken::new());
    let feed = Feed::default();
    let mut f = frames(&streams, &feed, Vec::new());
    f.next().await;
    f.next().await;
    let start = tokio::time::Instant::now();
    for n in 1..=3u64 {
        assert_eq!(
            text(f.next().await),
            format!("event: status\ndata: {{\"n\":{n}}}\n\n")
        );
        assert_eq!(start.elapsed(), HEARTBEAT * n as u32);
    }
}

#[tokio::test(start_paused = true)]
async fn a_reader_that_lags_is_told_and_closed_while_the_feed_goes_on() {
    let streams = Streams::new(CancellationToken::new());
    let feed = Feed::default();
    let mut slow = frames(&streams, &feed, Vec::new());
    let mut quick = frames(&streams, &feed, Vec::new());
    for _ in 0..2 {
        slow.next().await;
        quick.next().await;
    }
    let sent = CAPACITY + 10;
    for id in 1..=sent as u64 {
        feed.send(Change::Event(Arc::new(event(id))));
        // The quick reader keeps up, one message per change.
        assert!(text(quick.next().await).starts_with(&format!("id: {id}\n")));
    }
    let told = text(slow.next().await);
    assert!(
        told.starts_with("event: lagged\ndata: {\"message\""),
        "{told}"
    );
    assert!(told.contains("\"missed\":10"), "{told}");
    assert_eq!(slow.next().await, None);
    assert_eq!(streams.count(), 2);
    drop(slow);
    assert_eq!(streams.count(), 1, "a closed stream gives its place back");
}

#[tokio::test(start_paused = true)]
async fn streams_are_capped_and_end_when_the_admin_api_stops() {
    let stop = CancellationToken::new();
    let streams = Streams::new(stop.clone());
    let feed = Feed::default();
    let mut open: Vec<Frames> = (0..MAX_STREAMS)
        .map(|_| frames(&streams, &feed, Vec::new()))
        .collect();
    assert!(streams.open().is_none(), "one too many");
    open.pop();
    let extra = streams.open().expect("a place came free");
    drop(extra);
    let f = &mut open[0];
    f.next().await;
    f.next().await;
    stop.cancel();
    assert_eq!(f.next().await, None);
}
