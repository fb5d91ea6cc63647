//! Mirroring with response comparison (SPEC.md section 12): a share of the
//! live pool's requests is copied to the candidate, and the candidate's
//! answer is compared with the one the client got.
//!
//! The request path only decides ([`consider`]: one branch when mirroring
//! is off, a method check and a draw when on) and, for a copied request,
//! takes a copy slot, records the body as it streams ([`RequestBody::Teed`])
//! and taps the live answer ([`tap::LiveTap`]). Everything else runs in the
//! copy's own task ([`Copy::run`]): wait for the whole request body, send
//! the copy to a candidate endpoint (once, never retried, within
//! `timeouts.request`), read its answer up to the comparison cap, with
//! `learn_noise` send a sample of the safe ones (GET, HEAD: a write is
//! never repeated on the live pool) also to a second live endpoint, compare,
//! and record. The client's answer never waits on any of it; a copy that
//! cannot get a slot (`max_inflight` out) is dropped and counted.
//!
//! Copies do not count in the candidate's statistics, so they cannot
//! trigger (or hide) an automatic rollback; they carry
//! `x-switchyard-mirror: 1`.

pub mod compare;
pub mod tap;

use crate::config::{PoolName, UpstreamProtocol};
use crate::proxy::headers;
use crate::routing::mirror::{ComparePlan, MirrorPlan};
use crate::routing::{Pool, RoutingTable};
use crate::telemetry::mirror::{CopySlot, MirrorDiff};
use crate::upstream::copied::{CopiedBody, Recorded, RequestBody, Tee};
use crate::upstream::request_body::ClientBody;
use compare::Answer;
use http::{HeaderName, HeaderValue, Request};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::Arc;
use tap::{Capture, LiveAnswer, LiveTap};
use tokio::sync::oneshot;

pub const X_SWITCHYARD_MIRROR: HeaderName = HeaderName::from_static("x-switchyard-mirror");

/// One copy in ten also goes to a second live endpoint to learn noise,
/// and every copy until [`NOISE_FIRST`] have.
const NOISE_ONE_IN: u32 = 10;
const NOISE_FIRST: u64 = 20;

/// Copy this request? When so, its body (recorded) and the tap for the
/// live answer; else the body as it was. `pool` is where it was routed.
#[inline]
pub(super) fn consider(
    table: &Arc<RoutingTable>,
    pool: PoolName,
    parts: &http::request::Parts,
    body: Incoming,
    is_upgrade: bool,
    served_by: usize,
) -> (RequestBody, Option<Box<LiveTap>>) {
    let Some(plan) = &table.settings.mirror else {
        return (RequestBody::Client(body), None);
    };
    let upper = match body.is_end_stream() {
        true => Some(0),
        false => body.size_hint().upper(),
    };
    if is_upgrade
        || pool == table.candidate()
        || !plan.wants(&parts.method, upper, fastrand::u32(..10_000))
    {
        return (RequestBody::Client(body), None);
    }
    start(table, plan, parts, body, served_by)
}

/// Take a slot and start the copy's task.
#[cold]
fn start(
    table: &Arc<RoutingTable>,
    plan: &Arc<MirrorPlan>,
    parts: &http::request::Parts,
    body: Incoming,
    served_by: usize,
) -> (RequestBody, Option<Box<LiveTap>>) {
    let record = &table.pool(table.candidate()).runtime.mirror;
    let Some(slot) = record.try_begin(plan.max_inflight) else {
        return (RequestBody::Client(body), None);
    };
    let (body, recorded) = if body.is_end_stream() {
        let (tx, rx) = oneshot::channel();
        let _ready = tx.send(Recorded::from(Vec::new()));
        (RequestBody::Client(body), rx)
    } else {
        let (tee, rx) = Tee::new(plan.max_body);
        (RequestBody::Teed(body, tee), rx)
    };
    let (tap, live) = LiveTap::new();
    let mut head = http::Request::new(());
    *head.method_mut() = parts.method.clone();
    *head.uri_mut() = parts.uri.clone();
    *head.headers_mut() = parts.headers.clone();
    head.headers_mut()
        .insert(X_SWITCHYARD_MIRROR, HeaderValue::from_static("1"));
    let copy = Copy {
        slot,
        table: table.clone(),
        plan: plan.clone(),
        head: head.into_parts().0,
        recorded,
        live,
        served_by,
    };
    tokio::spawn(copy.run());
    (body, Some(tap))
}

/// One copy, in its own task.
struct Copy {
    slot: CopySlot,
    table: Arc<RoutingTable>,
    plan: Arc<MirrorPlan>,
    head: http::request::Parts,
    recorded: oneshot::Receiver<Recorded>,
    live: oneshot::Receiver<LiveAnswer>,
    /// The live endpoint that answered the client: a noise sample goes to
    /// another one when there is one.
    served_by: usize,
}

/// Why a copy was not compared (logged at debug: copies fail quietly).
#[derive(Debug, thiserror::Error)]
enum CopyError {
    #[error("the client's request body did not arrive whole")]
    NoBody,
    #[error("no available endpoint in pool {0}")]
    NoEndpoint(PoolName),
    #[error("{0}")]
    Connect(#[from] crate::upstream::connector::ConnectError),
    #[error("{0}")]
    Upstream(#[from] crate::upstream::UpstreamError),
    #[error("no answer within timeouts.request")]
    Timeout,
    #[error("the live answer did not arrive whole")]
    NoLiveAnswer,
}

impl Copy {
    async fn run(self) {
        let Copy {
            slot,
            table,
            plan,
            head,
            recorded,
            live,
            served_by,
        } = self;
        let record = table.pool(table.candidate()).runtime.mirror.clone();
        let started = tokio::time::Instant::now();
        let result = compared(&table, &plan, &head, (recorded, live, served_by), &record).await;
        drop(slot);
        match result {
            Ok(diff) => record.compared(crate::clock::now_ms(), started.elapsed(), diff),
            Err(e) => {
                tracing::debug!(error = %e, target = %head.uri, "mirrored copy not compared");
                record.failed();
            }
        }
    }
}

/// Send the copy, and with `learn_noise` sometimes a second live one,
/// then compare: `None` for a match.
async fn compared(
    table: &RoutingTable,
    plan: &MirrorPlan,
    head: &http::request::Parts,
    (recorded, live, served_by): (
        oneshot::Receiver<Recorded>,
        oneshot::Receiver<LiveAnswer>,
        usize,
    ),
    record: &crate::telemetry::mirror::MirrorRecord,
) -> Result<Option<MirrorDiff>, CopyError> {
    let body = recorded.await.map_err(|_| CopyError::NoBody)?;
    let candidate = table.pool(table.candidate());
    let Some(rules) = &plan.compare else {
        send(table, candidate, head, &body, 0).await?;
        return Ok(None);
    };
    // A noise sample repeats the request on the live pool: never a write.
    let sample = rules.learn_noise
        && head.method.is_safe()
        && (record.compared_total() < NOISE_FIRST || fastrand::u32(..NOISE_ONE_IN) == 0);
    let second = async {
        match sample {
            true => {
                let other = if served_by < 64 { 1u64 << served_by } else { 0 };
                send(table, table.pool(table.live), head, &body, other)
                    .await
                    .ok()
            }
            false => None,
        }
    };
    let (theirs, second) = tokio::join!(send(table, candidate, head, &body, 0), second);
    let theirs = theirs?;
    // A live answer still streaming after the request timeout (a long
    // poll, an event stream) is not waited for: the slot is needed.
    let live = tokio::time::timeout(table.settings.request_timeout, live)
        .await
        .map_err(|_| CopyError::Timeout)?
        .map_err(|_| CopyError::NoLiveAnswer)?;
    let ours = Answer {
        status: live.status,
        headers: live.headers,
        body: live.body.finish(),
    };
    if let Some(second) = second {
        learn(record, &ours, &second, rules, head);
    }
    let noise = record.noise();
    let fields: Vec<_> = compare::compare(&ours, &theirs, rules)
        .into_iter()
        .filter(|d| !noise.contains(&d.key))
        .map(|d| d.diff)
        .collect();
    Ok((!fields.is_empty()).then(|| MirrorDiff {
        time: crate::clock::rfc3339(crate::clock::unix_ms()),
        request: request_line(head),
        fields,
    }))
}

/// What differs between two live answers is noise from now on.
fn learn(
    record: &crate::telemetry::mirror::MirrorRecord,
    a: &Answer,
    b: &Answer,
    rules: &ComparePlan,
    head: &http::request::Parts,
) {
    // Two live answers with different statuses say nothing about fields.
    if a.status != b.status {
        return;
    }
    let keys = compare::compare(a, b, rules).into_iter().map(|d| d.key);
    let fresh = record.learn(keys);
    if !fresh.is_empty() {
        tracing::info!(fields = ?fresh, target = %head.uri, "mirror: learned as noise (they differ between two live answers)");
    }
}

/// Send the copy to an endpoint of `pool`, preferably not one in `avoid`
/// (bit i: endpoint i), and read its answer (the body up to the
/// comparison cap), all within `timeouts.request`.
async fn send(
    table: &RoutingTable,
    pool: &Pool,
    head: &http::request::Parts,
    body: &Recorded,
    avoid: u64,
) -> Result<Answer, CopyError> {
    let settings = &table.settings;
    let now = crate::clock::now_ms();
    let idx = pool
        .pick_endpoint(now, avoid)
        .or_else(|| pool.pick_endpoint(now, 0))
        .ok_or(CopyError::NoEndpoint(pool.name))?;
    let ep = &pool.endpoints[idx];
    let mut parts = head.clone();
    if pool.protocol == UpstreamProtocol::H2 {
        headers::to_http2(&mut parts, pool.connector.scheme(), &ep.authority);
    }
    let copied = RequestBody::Copy(CopiedBody::new(body.clone()));
    let req = Request::from_parts(parts, ClientBody::new(copied, settings.client_body_idle));
    let exchange = async {
        let conn = pool
            .connector
            .acquire(ep, now, settings.upstream_idle_ms, false)
            .await?;
        let (_keep, sent) = conn.send(req);
        let resp = sent.await.map_err(|e| e.error)?;
        let (parts, mut rbody) = resp.into_parts();
        let mut capture = Capture::default();
        while let Some(frame) = rbody.frame().await {
            if let Ok(data) = frame?.into_data() {
                capture.feed(&data);
            }
        }
        if let Some(conn) = rbody.take_conn() {
            ep.put_idle(conn, crate::clock::now_ms());
        }
        Ok::<_, CopyError>(Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: capture.finish(),
        })
    };
    tokio::time::timeout(settings.request_timeout, exchange)
        .await
        .map_err(|_| CopyError::Timeout)?
}

/// `GET /path?q HTTP/1.1` as a diff shows it: values of query parameters
/// that look like credentials hidden.
pub fn request_line(head: &http::request::Parts) -> String {
    let path = head.uri.path();
    let query = head.uri.query().map(|q| {
        q.split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if credential_like(k) => format!("{k}=(hidden)"),
                _ => kv.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    let target = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let line = format!("{} {target} {:?}", head.method, head.version);
    compare_cut(&line)
}

fn compare_cut(s: &str) -> String {
    match s.char_indices().nth(compare::SHOWN_MAX * 2) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn credential_like(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "token",
        "key",
        "secret",
        "pass",
        "auth",
        "session",
        "sig",
        "credential",
        "code",
    ]
    .iter()
    .any(|w| k.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_line_hides_credential_like_query_values() {
        let (head, ()) = http::Request::get("/a/b?x=1&api_key=s3cret&Token=t&y")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(
            request_line(&head),
            "GET /a/b?x=1&api_key=(hidden)&Token=(hidden)&y HTTP/1.1"
        );
    }
}
