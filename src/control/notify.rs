//! Notifications (SPEC.md section 10, `notify`): every event of a listed
//! kind, manual ones too, POSTed to each URL as JSON (the event, as
//! `GET /api/v1/events` shows it) or Slack's `{"text": ...}`, signed with
//! `X-Switchyard-Signature: sha256=<hex HMAC-SHA256 of the body>` when the
//! entry names a `secret_file`.
//!
//! Nothing here runs on the controller's loop or a request's path. The
//! dispatcher task reads the change feed (whose send never waits) and hands
//! each event to one lane per `notify` entry: a bounded queue
//! ([`QUEUE`]) that is offered the event with `try_send`, so a slow or dead
//! receiver only fills its own lane, and a full lane drops the event and
//! counts it (`switchyard_notifications_total{result="dropped"}`). A lane's
//! worker delivers its events in order; a transport error, a timeout, a 5xx
//! or a 429 is retried after a doubling back-off ([`Policy`]), then given up
//! (`result="failed"`); any other answer ends the delivery (2xx: `sent`,
//! else `failed`).
//!
//! The entries are read from the config in force at each event, so a reload
//! applies to the next event; a lane whose entry is gone finishes its queue
//! and stops. The secret is read from its file at each delivery (a rotated
//! secret applies at once); a secret that cannot be read is a failed
//! delivery, never an unsigned one.
//!
//! Fleet mode: every member records the fleet's events, so an event decided
//! by another member (its `member` field) is that member's to send.

use crate::config::analysis::{read_secret, NotifyConfig, NotifyFormat};
use crate::config::PoolName;
use crate::control::events::Event;
use crate::control::feed::Change;
use crate::control::Shared;
use crate::telemetry::metrics::AnalysisMetrics;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// Events a lane holds before it drops.
pub const QUEUE: usize = 64;

/// The header that carries the body's HMAC.
pub const SIGNATURE_HEADER: &str = "x-switchyard-signature";

/// How one delivery is tried.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// The wait after the first failed try; doubled after each, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// One try's bound: connect, send, answer.
    pub timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            attempts: 5,
            backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(4),
            timeout: Duration::from_secs(5),
        }
    }
}

/// How a delivery ended; `as_str` is the `result` label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// A 2xx, after `tries` tries.
    Sent { tries: u32 },
    /// Given up: why.
    Failed(String),
}

/// What one try got.
#[derive(Debug)]
pub enum Try {
    Status(u16),
    /// No answer (connect, TLS, timeout): why.
    Transport(String),
}

/// Try `once` until it answers 2xx, a status worth no retry, or
/// `policy.attempts` are spent, waiting the back-off between tries.
pub async fn with_retries<F, Fut>(policy: Policy, mut once: F) -> Delivered
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Try>,
{
    let mut wait = policy.backoff;
    let mut why = String::from("no try");
    for tries in 1..=policy.attempts.max(1) {
        match once().await {
            Try::Status(s) if (200..300).contains(&s) => return Delivered::Sent { tries },
            Try::Status(s) if s >= 500 || s == 429 => why = format!("answered {s}"),
            Try::Status(s) => return Delivered::Failed(format!("answered {s}")),
            Try::Transport(e) => why = e,
        }
        if tries < policy.attempts {
            // A retry back-off: the receiver is down or busy; asking again
            // at once would only add to its load.
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(policy.max_backoff);
        }
    }
    Delivered::Failed(format!("{why} after {} tries", policy.attempts.max(1)))
}

/// The body `cfg` sends for `event`.
pub fn body(cfg: &NotifyConfig, event: &Event) -> Bytes {
    let value = match cfg.format {
        NotifyFormat::Json => serde_json::to_value(event).unwrap_or_default(),
        NotifyFormat::Slack => serde_json::json!({ "text": text(event) }),
    };
    Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
}

/// One line for a chat: `switchyard: rollback by auto (blue 100, green 0): check: ...`.
pub fn text(event: &Event) -> String {
    let mut s = format!("switchyard: {} by {}", event.kind, event.actor);
    if let Some(m) = &event.member {
        s.push_str(&format!(" on {m}"));
    }
    if let Some(w) = &event.weights {
        let (b, g) = (w.percent(PoolName::Blue), w.percent(PoolName::Green));
        s.push_str(&format!(" (blue {b}, green {g})"));
    }
    if let Some(r) = event.reason.as_deref().filter(|r| !r.is_empty()) {
        s.push_str(": ");
        s.push_str(r);
    }
    s
}

/// `sha256=<hex>` of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, body);
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256=");
    for b in tag.as_ref() {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// The headers of `cfg`'s POST of `body`; Err when its secret cannot be read.
fn headers(cfg: &NotifyConfig, body: &[u8]) -> Result<HeaderMap, String> {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(path) = &cfg.secret_file {
        let secret = read_secret(path).ok_or_else(|| {
            format!(
                "secret_file {} cannot be read or is empty: not sent unsigned",
                path.display()
            )
        })?;
        let v = HeaderValue::from_str(&signature(&secret, body)).map_err(|e| e.to_string())?;
        h.insert(SIGNATURE_HEADER, v);
    }
    Ok(h)
}

/// Deliver `event` to `cfg.url`, retrying per `policy`, and count the result.
pub async fn deliver(cfg: &NotifyConfig, event: &Event, policy: Policy, m: &AnalysisMetrics) {
    let body = body(cfg, event);
    let result = match headers(cfg, &body) {
        Err(why) => Delivered::Failed(why),
        Ok(h) => {
            with_retries(policy, || {
                let (h, body) = (h.clone(), body.clone());
                async move {
                    match crate::upstream::outbound::call(
                        Method::POST,
                        &cfg.url,
                        h,
                        body,
                        policy.timeout,
                    )
                    .await
                    {
                        Ok(a) => Try::Status(a.status),
                        Err(e) => Try::Transport(e.to_string()),
                    }
                }
            })
            .await
        }
    };
    match result {
        Delivered::Sent { tries } => {
            tracing::debug!(url = %cfg.url, kind = %event.kind, id = event.id, tries, "notification sent");
            m.notification("sent");
        }
        Delivered::Failed(why) => {
            tracing::warn!(url = %cfg.url, kind = %event.kind, id = event.id, %why, "notification given up");
            m.notification("failed");
        }
    }
}

/// One `notify` entry's queue; its worker ends when the sender is dropped.
pub struct Lane {
    cfg: NotifyConfig,
    tx: mpsc::Sender<Arc<Event>>,
}

impl Lane {
    /// A lane and its worker, delivering with `policy`.
    pub fn spawn(cfg: NotifyConfig, policy: Policy, m: AnalysisMetrics) -> Lane {
        let (tx, mut rx) = mpsc::channel::<Arc<Event>>(QUEUE);
        let worker_cfg = cfg.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                deliver(&worker_cfg, &e, policy, &m).await;
            }
        });
        Lane { cfg, tx }
    }
}

/// The lanes of the entries in force.
pub struct Lanes {
    lanes: Vec<Lane>,
    policy: Policy,
    metrics: AnalysisMetrics,
}

impl Lanes {
    pub fn new(policy: Policy, metrics: AnalysisMetrics) -> Self {
        Lanes {
            lanes: Vec::new(),
            policy,
            metrics,
        }
    }

    /// Offer `event` to every entry of `entries` that lists its kind; never
    /// waits. Lanes of entries no longer listed are closed first.
    pub fn offer(&mut self, entries: &[NotifyConfig], event: &Arc<Event>) {
        self.lanes.retain(|l| entries.contains(&l.cfg));
        let kind = event.kind.to_string();
        for cfg in entries.iter().filter(|c| c.events.contains(&kind)) {
            let i = match self.lanes.iter().position(|l| &l.cfg == cfg) {
                Some(i) => i,
                None => {
                    let lane = Lane::spawn(cfg.clone(), self.policy, self.metrics.clone());
                    self.lanes.push(lane);
                    self.lanes.len() - 1
                }
            };
            if self.lanes[i].tx.try_send(event.clone()).is_err() {
                tracing::warn!(url = %cfg.url, kind = %kind, id = event.id, "notification queue full: dropped");
                self.metrics.notification("dropped");
            }
        }
    }
}

/// Whether this member sends `event`: fleet mode leaves another member's
/// decisions to that member.
pub fn ours(event: &Event, me: Option<&str>) -> bool {
    match (&event.member, me) {
        (Some(m), Some(me)) => m == me,
        _ => true,
    }
}

/// The dispatcher: from `feed` (subscribed before the first event) to the
/// lanes, until the shared state is gone.
pub fn spawn(
    mut feed: broadcast::Receiver<Change>,
    shared: Weak<Shared>,
    me: Option<String>,
    metrics: AnalysisMetrics,
) {
    tokio::spawn(async move {
        let mut lanes = Lanes::new(Policy::default(), metrics);
        loop {
            let event = match feed.recv().await {
                Ok(Change::Event(e)) => e,
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    // Not reached in practice: this loop never waits but
                    // on the feed. Say so rather than guess which were events.
                    tracing::error!(missed = n, "notifications fell behind the change feed");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if !ours(&event, me.as_deref()) {
                continue;
            }
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let cfg = shared.config.load();
            drop(shared);
            if !cfg.notify.is_empty() {
                lanes.offer(&cfg.notify, &event);
            }
        }
    });
}

#[cfg(test)]
mod tests;
