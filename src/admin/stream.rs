//! `GET /api/v1/stream`: the dashboard's live feed, as server-sent events
//! (`text/event-stream`).
//!
//! A stream opens with a snapshot (`status`, then `events`: the newest
//! [`SNAPSHOT_EVENTS`] events, newest first), then forwards as they happen:
//! `event` (one event, its id as the SSE id, never one the snapshot held),
//! `status` (the controller published a change) and `sample` (the traffic
//! of the last second, as in `GET /api/v1/history`). A `status` also goes
//! out every [`HEARTBEAT`] whatever happens: it is the heartbeat, and keeps
//! figures such as requests in flight and held writes current.
//!
//! Nothing here can slow the controller: the feed is a bounded broadcast.
//! A reader that falls [`crate::control::feed::CAPACITY`] changes behind
//! gets a last `lagged` message and its stream ends; the page reconnects
//! and starts again from a snapshot. At most [`MAX_STREAMS`] streams are
//! open at once (more: 503 with `Retry-After`), and every stream ends when
//! the admin API stops, so a stream never holds up a shutdown.

use crate::admin::error::ApiError;
use crate::admin::routes::AdminState;
use crate::control::events::Event;
use crate::control::feed::Change;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

/// Streams open at once, at most.
pub const MAX_STREAMS: usize = 64;
/// A `status` at least this often: the heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// Events in a stream's opening snapshot.
pub const SNAPSHOT_EVENTS: usize = 100;

/// The open streams of one admin listener, and its stop.
#[derive(Debug)]
pub struct Streams {
    open: AtomicUsize,
    stop: CancellationToken,
}

impl Streams {
    /// Streams that end when `stop` is cancelled.
    pub fn new(stop: CancellationToken) -> Arc<Self> {
        Arc::new(Streams {
            open: AtomicUsize::new(0),
            stop,
        })
    }

    /// A place for one more stream, or None when [`MAX_STREAMS`] are open.
    pub fn open(self: &Arc<Self>) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_STREAMS).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }

    pub fn count(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// One open stream's place; given back when the stream is dropped.
#[derive(Debug)]
pub struct Slot(Arc<Streams>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One SSE message: `event` names it, `data` is one line of JSON.
fn frame(event: &str, id: Option<u64>, data: &str) -> Bytes {
    let id = id.map(|i| format!("id: {i}\n")).unwrap_or_default();
    Bytes::from(format!("{id}event: {event}\ndata: {data}\n\n"))
}

fn json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// The messages of one stream, one at a time.
pub struct Frames {
    rx: broadcast::Receiver<Change>,
    status: Box<dyn Fn() -> String + Send + Sync>,
    heartbeat: tokio::time::Interval,
    stop: CancellationToken,
    /// Events up to this id were in the snapshot.
    after_id: u64,
    pending: VecDeque<Bytes>,
    done: bool,
    _slot: Slot,
}

impl Frames {
    /// A stream reading `rx` (subscribed before `recent` was read, so no
    /// event falls between the two), opening with `status()` and `recent`
    /// (newest first).
    pub fn new(
        slot: Slot,
        rx: broadcast::Receiver<Change>,
        recent: Vec<Event>,
        status: Box<dyn Fn() -> String + Send + Sync>,
    ) -> Self {
        let after_id = recent.iter().map(|e| e.id).max().unwrap_or(0);
        let pending = VecDeque::from([
            frame("status", None, &status()),
            frame("events", None, &json(&recent)),
        ]);
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Frames {
            rx,
            status,
            heartbeat,
            stop: slot.0.stop.clone(),
            after_id,
            pending,
            done: false,
            _slot: slot,
        }
    }

    /// The next message; None once the stream has ended.
    pub async fn next(&mut self) -> Option<Bytes> {
        if let Some(f) = self.pending.pop_front() {
            return Some(f);
        }
        // Bounded: every turn either returns or skips an event the
        // snapshot held, and there are at most SNAPSHOT_EVENTS of those.
        loop {
            if self.done {
                return None;
            }
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return None,
                change = self.rx.recv() => match change {
                    Ok(Change::Event(e)) if e.id <= self.after_id => continue,
                    Ok(Change::Event(e)) => return Some(frame("event", Some(e.id), &json(&*e))),
                    Ok(Change::Status) => return Some(frame("status", None, &(self.status)())),
                    Ok(Change::Sample(s)) => return Some(frame("sample", None, &json(&*s))),
                    Err(RecvError::Lagged(missed)) => {
                        self.done = true;
                        let msg = serde_json::json!({
                            "missed": missed,
                            "message": "this stream fell behind and is closed; reconnect for a fresh snapshot",
                        });
                        return Some(frame("lagged", None, &msg.to_string()));
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = self.heartbeat.tick() => return Some(frame("status", None, &(self.status)())),
            }
        }
    }

    /// As a response body.
    pub fn into_body(self) -> Body {
        let stream = futures_util::stream::unfold(self, |mut frames| async move {
            frames
                .next()
                .await
                .map(|b| (Ok::<_, std::convert::Infallible>(b), frames))
        });
        Body::from_stream(stream)
    }
}

pub async fn get_stream(State(st): State<AdminState>) -> Response {
    let Some(slot) = st.streams.open() else {
        let mut resp = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            format!("{MAX_STREAMS} streams are open already; poll GET /api/v1/status instead"),
        )
        .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return resp;
    };
    let rx = st.shared.feed.subscribe();
    let recent = st.shared.events.recent(SNAPSHOT_EVENTS);
    let status = Box::new(move || json(&crate::admin::routes::full_status(&st)));
    let frames = Frames::new(slot, rx, recent, status);
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            // Tells a reverse proxy in front (nginx) not to buffer it.
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        frames.into_body(),
    )
        .into_response()
}

#[cfg(test)]
mod tests;
