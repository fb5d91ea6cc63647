use super::*;
use std::future::poll_fn;

/// A timer parking after `park_after`, for heads of `header_timeout`.
fn timer_for(park_after: Duration, header_timeout: Duration) -> (ParkTimer, Arc<ConnWatch>) {
    let watch = Arc::new(ConnWatch::default());
    let t = ParkTimer {
        watch: watch.clone(),
        park_after,
        header_timeout,
    };
    (t, watch)
}

/// Poll `sleep` once: whether it has ended.
async fn ended(sleep: &mut Pin<Box<dyn Sleep>>) -> bool {
    poll_fn(|cx| Poll::Ready(sleep.as_mut().poll(cx).is_ready())).await
}

fn timer(park_after: Duration) -> (ParkTimer, Arc<ConnWatch>) {
    timer_for(park_after, Duration::from_secs(10))
}

fn in_(d: Duration) -> std::time::Instant {
    (Instant::now() + d).into_std()
}

#[tokio::test(start_paused = true)]
async fn the_head_timer_raises_park_due_at_the_delay_and_ends_at_the_deadline() {
    let (t, watch) = timer(Duration::from_secs(1));
    watch.flushed.store(true, Ordering::Relaxed);
    let mut sleep = t.sleep_until(in_(Duration::from_secs(10)));
    assert!(!ended(&mut sleep).await);
    assert!(!watch.park_ready());
    tokio::time::advance(Duration::from_millis(999)).await;
    assert!(!ended(&mut sleep).await);
    assert!(!watch.park_ready(), "due before the delay");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(
        !ended(&mut sleep).await,
        "the park delay ended the head's wait"
    );
    assert!(watch.park_ready());
    // Unflushed writes hold it back.
    watch.flushed.store(false, Ordering::Relaxed);
    assert!(!watch.park_ready());
    watch.flushed.store(true, Ordering::Relaxed);
    tokio::time::advance(Duration::from_millis(8_999)).await;
    assert!(!ended(&mut sleep).await);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(ended(&mut sleep).await, "the deadline passed");
    // The head came (hyper drops its timer): nothing is due any more.
    drop(sleep);
    assert!(!watch.park_ready());
    assert_eq!(watch.head_deadline(), None);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_before_the_delay_never_parks() {
    let (t, watch) = timer_for(Duration::from_secs(1), Duration::from_millis(500));
    watch.flushed.store(true, Ordering::Relaxed);
    let mut sleep = t.sleep_until(in_(Duration::from_millis(500)));
    tokio::time::advance(Duration::from_millis(500)).await;
    assert!(ended(&mut sleep).await);
    assert!(!watch.park_ready());
}

#[tokio::test(start_paused = true)]
async fn the_deadline_is_carried_across_a_park() {
    let (t, watch) = timer(Duration::from_secs(1));
    let deadline = in_(Duration::from_secs(10));
    let sleep = t.sleep_until(deadline);
    assert_eq!(watch.head_deadline(), Some(deadline));
    // Parked: the deadline is read, then hyper's timer goes with hyper.
    let carried = watch.head_deadline().unwrap();
    drop(sleep);
    tokio::time::advance(Duration::from_secs(4)).await;
    watch.carry_deadline(carried);
    // The new connection asks for a fresh 10 s: it gets the 6 s left.
    let mut sleep = t.sleep_until(in_(Duration::from_secs(10)));
    assert_eq!(watch.head_deadline(), Some(deadline));
    tokio::time::advance(Duration::from_millis(5_999)).await;
    assert!(!ended(&mut sleep).await);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(ended(&mut sleep).await, "the carried deadline was not kept");
    drop(sleep);
    // The next head has its own deadline again.
    let _sleep = t.sleep_until(in_(Duration::from_secs(10)));
    assert_eq!(watch.head_deadline(), Some(in_(Duration::from_secs(10))));
}
