//! Comparing two answers to the same request (SPEC.md section 12): the
//! status, the header fields (less hop-by-hop ones and `ignore_headers`),
//! and the body: JSON structurally (key order ignored, `ignore_json` paths
//! left out), anything else byte for byte; a body longer than
//! [`COMPARE_CAP`] by its length and SHA-256 digest.
//!
//! A pure function of the two answers, so it is fuzzed
//! (`fuzz_targets/mirror_compare.rs`) and unit-tested. Values are shown
//! cut to [`SHOWN_MAX`] characters; `set-cookie` and other credentials
//! never. Whether a difference is noise is the caller's question
//! ([`Difference::key`] names the field as noise is learned).

use crate::config::mirror::{JsonPath, Seg};
use crate::routing::mirror::ComparePlan;
use crate::telemetry::mirror::FieldDiff;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName};
use serde_json::Value;

/// Body bytes compared byte for byte (or parsed as JSON); beyond, only the
/// length and digest are.
pub const COMPARE_CAP: usize = 64 * 1024;
/// Characters of a value shown in a diff.
pub const SHOWN_MAX: usize = 200;
/// Differences reported for one copy; more are summed up in one last entry.
pub const FIELDS_MAX: usize = 16;
/// JSON nesting walked; deeper values are compared whole.
const DEPTH_MAX: usize = 64;

/// What was read of one body: its first [`COMPARE_CAP`] bytes, its length,
/// and, when it was longer than that, the digest of all of it (a body read
/// whole is digested only if a summary needs it: SHA-256 was a quarter of
/// what a copy of a small answer cost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub head: Bytes,
    pub len: u64,
    pub digest: Option<[u8; 32]>,
}

/// SHA-256 of `body`.
pub fn sha256(body: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, body).as_ref());
    out
}

impl Captured {
    /// A body held whole (tests, the fuzz target).
    pub fn whole(body: &[u8]) -> Captured {
        Captured {
            head: Bytes::copy_from_slice(&body[..body.len().min(COMPARE_CAP)]),
            len: body.len() as u64,
            digest: (body.len() > COMPARE_CAP).then(|| sha256(body)),
        }
    }

    /// The digest of the whole body.
    fn digest(&self) -> [u8; 32] {
        self.digest.unwrap_or_else(|| sha256(&self.head))
    }

    fn complete(&self) -> bool {
        self.len == self.head.len() as u64
    }

    fn summary(&self) -> String {
        let hex: String = self.digest()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{} bytes, sha256 {hex}…", self.len)
    }
}

/// One answer: what is compared of it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Captured,
}

/// A difference found, with the name it is learned as noise under (JSON
/// indices made `[*]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub key: String,
    pub diff: FieldDiff,
}

/// Header fields never compared: hop-by-hop ones (RFC 9110 section 7.6.1),
/// and the length, which differs only when the body does (or its framing).
fn never_compared(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "content-length"
    )
}

/// Header values never shown: credentials.
fn hidden(name: &HeaderName) -> bool {
    matches!(
        *name,
        header::SET_COOKIE
            | header::COOKIE
            | header::AUTHORIZATION
            | header::PROXY_AUTHORIZATION
            | header::WWW_AUTHENTICATE
            | header::PROXY_AUTHENTICATE
    )
}

fn cut(s: &str) -> String {
    match s.char_indices().nth(SHOWN_MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Every difference between `live` and `candidate` under `plan`, at most
/// [`FIELDS_MAX`] (then one `…` entry saying how many more).
pub fn compare(live: &Answer, candidate: &Answer, plan: &ComparePlan) -> Vec<Difference> {
    let mut out = Found::default();
    if live.status != candidate.status {
        out.push(
            "status".into(),
            live.status.to_string(),
            candidate.status.to_string(),
        );
    }
    headers(&live.headers, &candidate.headers, plan, &mut out);
    body(&live.body, &candidate.body, plan, &mut out);
    out.finish()
}

#[derive(Default)]
struct Found {
    list: Vec<Difference>,
    more: usize,
}

impl Found {
    fn push(&mut self, key: String, live: String, candidate: String) {
        self.push_as(key.clone(), key, live, candidate);
    }

    fn push_as(&mut self, key: String, field: String, live: String, candidate: String) {
        if self.list.len() == FIELDS_MAX {
            self.more += 1;
            return;
        }
        self.list.push(Difference {
            key,
            diff: FieldDiff {
                field,
                live: cut(&live),
                candidate: cut(&candidate),
            },
        });
    }

    fn finish(mut self) -> Vec<Difference> {
        if self.more > 0 {
            let n = self.more.to_string();
            self.list.push(Difference {
                key: "…".into(),
                diff: FieldDiff {
                    field: "…".into(),
                    live: format!("{n} more differences"),
                    candidate: format!("{n} more differences"),
                },
            });
        }
        self.list
    }
}

fn headers(a: &HeaderMap, b: &HeaderMap, plan: &ComparePlan, out: &mut Found) {
    let mut names: Vec<&HeaderName> = a.keys().chain(b.keys()).collect();
    names.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    names.dedup();
    for name in names {
        if never_compared(name) || plan.ignore_headers.contains(name) {
            continue;
        }
        // The same values: nothing to write out (most fields, most copies).
        if a.get_all(name).iter().eq(b.get_all(name).iter()) {
            continue;
        }
        let joined = |m: &HeaderMap| -> Option<String> {
            let mut vals = m.get_all(name).iter().peekable();
            vals.peek()?;
            Some(
                vals.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        };
        let (x, y) = (joined(a), joined(b));
        if x == y {
            continue;
        }
        let show = |v: Option<String>| match v {
            None => "(absent)".to_string(),
            Some(_) if hidden(name) => "(hidden)".to_string(),
            Some(v) => v,
        };
        out.push(format!("header:{name}"), show(x), show(y));
    }
}

fn body(a: &Captured, b: &Captured, plan: &ComparePlan, out: &mut Found) {
    if !(a.complete() && b.complete()) {
        if a.len != b.len || a.digest() != b.digest() {
            out.push("body".into(), a.summary(), b.summary());
        }
        return;
    }
    if a.head == b.head {
        return;
    }
    if let (Some(x), Some(y)) = (json(&a.head), json(&b.head)) {
        let mut path = Vec::new();
        walk(&x, &y, &mut path, plan, out);
        return;
    }
    out.push(
        "body".into(),
        String::from_utf8_lossy(&a.head).into_owned(),
        String::from_utf8_lossy(&b.head).into_owned(),
    );
}

/// The body as JSON, when it is an object or an array.
fn json(body: &[u8]) -> Option<Value> {
    let first = body.iter().find(|c| !c.is_ascii_whitespace())?;
    if !matches!(first, b'{' | b'[') {
        return None;
    }
    serde_json::from_slice(body).ok()
}

fn shown(v: Option<&Value>) -> String {
    match v {
        None => "(absent)".into(),
        Some(v) => v.to_string(),
    }
}

fn walk(a: &Value, b: &Value, path: &mut Vec<Seg>, plan: &ComparePlan, out: &mut Found) {
    if plan.ignore_json.iter().any(|p| p.covers(path)) {
        return;
    }
    let deep = path.len() >= DEPTH_MAX;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) if !deep => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                path.push(Seg::Key(k.clone()));
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => walk(p, q, path, plan, out),
                    (p, q) => leaf(p, q, path, plan, out),
                }
                path.pop();
            }
        }
        (Value::Array(x), Value::Array(y)) if !deep => {
            for i in 0..x.len().max(y.len()) {
                path.push(Seg::Index(i));
                match (x.get(i), y.get(i)) {
                    (Some(p), Some(q)) => walk(p, q, path, plan, out),
                    (p, q) => leaf(p, q, path, plan, out),
                }
                path.pop();
            }
        }
        _ if a == b => {}
        _ => leaf(Some(a), Some(b), path, plan, out),
    }
}

fn leaf(a: Option<&Value>, b: Option<&Value>, path: &[Seg], plan: &ComparePlan, out: &mut Found) {
    if plan.ignore_json.iter().any(|p| p.covers(path)) {
        return;
    }
    let concrete = JsonPath(path.to_vec());
    out.push_as(
        concrete.generalized().to_string(),
        concrete.to_string(),
        shown(a),
        shown(b),
    );
}

#[cfg(test)]
mod tests;
