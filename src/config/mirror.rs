//! The `mirror:` section (SPEC.md section 12): which requests are copied to
//! the candidate, how many copies may be out at once, and how the answers
//! are compared.
//!
//! Owns the section's serde types, their defaults, their rules
//! ([`problems`], a pure function of the section) and the JSON paths of
//! `compare.ignore_json` ([`JsonPath`]), which the comparison uses too.
//! Copying and comparing are `proxy::mirror`'s job.

use super::tree::{Issue, Tree};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeSet;

/// The largest `max_body`: a copy's body is held in memory until the
/// candidate has read it.
pub const MAX_MIRROR_BODY: u64 = 16 * 1024 * 1024;
/// The most copies out at once that may be configured.
pub const MAX_MIRROR_INFLIGHT: u32 = 65_536;

/// `mirror:`. With `percent: 0` (the default) nothing is copied.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MirrorConfig {
    /// Share of eligible requests copied to the candidate, 0-100, 0.01 steps.
    pub percent: f64,
    /// Methods copied. Unsafe ones repeat writes on the candidate.
    pub methods: Vec<String>,
    /// Requests with a larger body are not copied.
    pub max_body: ByteSize,
    /// Copies out at once; beyond, a copy is dropped and counted.
    pub max_inflight: u32,
    pub compare: CompareConfig,
    /// Above it (over `rollback.window`), a rollout or switch to the
    /// candidate is refused (409). `null`: never.
    pub max_mismatch_rate: Option<f64>,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig {
            percent: 0.0,
            methods: vec!["GET".into(), "HEAD".into()],
            max_body: ByteSize(64 * 1024),
            max_inflight: 256,
            compare: CompareConfig::default(),
            max_mismatch_rate: None,
        }
    }
}

impl MirrorConfig {
    /// The listed methods that are not safe (RFC 9110 section 9.2.1): their
    /// copies repeat writes on the candidate.
    pub fn unsafe_methods(&self) -> Vec<&str> {
        self.methods
            .iter()
            .map(String::as_str)
            .filter(|m| !matches!(*m, "GET" | "HEAD" | "OPTIONS" | "TRACE"))
            .collect()
    }
}

/// `mirror.compare`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompareConfig {
    pub enabled: bool,
    /// Header fields left out of the comparison (hop-by-hop ones always are).
    pub ignore_headers: Vec<String>,
    /// JSON paths left out of the body comparison, e.g. `$.timestamp`,
    /// `$.items[*].id`; a path covers everything below it.
    pub ignore_json: Vec<String>,
    /// Also copy a sample to a second live endpoint: what differs between
    /// two live answers is noise, not a mismatch.
    pub learn_noise: bool,
}

impl Default for CompareConfig {
    fn default() -> Self {
        CompareConfig {
            enabled: true,
            ignore_headers: vec!["date".into(), "set-cookie".into(), "x-request-id".into()],
            ignore_json: vec!["$.timestamp".into()],
            learn_noise: true,
        }
    }
}

/// What a size is said to be in errors (and how a stand-in finds it).
pub const SIZE_EXPECTED: &str = "size (e.g. 65536, 64KiB, 1MiB)";

/// A size in bytes: a number, or a string such as `64KiB`, `1MiB`, `512B`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// `123`, `64KiB`, `64 KiB`, `1MiB`, `10kB` (1000), `2MB`.
    pub fn parse(s: &str) -> Result<u64, String> {
        let s = s.trim();
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let (num, unit) = s.split_at(digits);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a size: expected e.g. 65536, 64KiB or 1MiB"))?;
        let mul = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1024,
            "MiB" => 1024 * 1024,
            "kB" | "KB" => 1000,
            "MB" => 1_000_000,
            other => {
                return Err(format!(
                    "unknown size unit `{other}`: use B, KiB, MiB, kB or MB"
                ))
            }
        };
        n.checked_mul(mul)
            .ok_or_else(|| format!("`{s}` is too large"))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(SIZE_EXPECTED)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map(ByteSize).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
        }
        // A string (every YAML scalar reads as one here), so a value that
        // could not be read stands in as "0" (see `typed::hole`).
        d.deserialize_str(V)
    }
}

/// One step of a [`JsonPath`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
    /// `.*`: any key.
    AnyKey,
    /// `[*]`: any index.
    AnyIndex,
}

/// A JSON path as `ignore_json` writes it and diffs show it: `$`, then
/// `.key`, `['any key']`, `[3]`, `[*]` or `.*`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct JsonPath(pub Vec<Seg>);

/// The longest `ignore_json` path accepted, in characters.
const MAX_PATH_LEN: usize = 512;

impl JsonPath {
    pub fn parse(s: &str) -> Result<JsonPath, String> {
        if s.len() > MAX_PATH_LEN {
            return Err(format!("is longer than {MAX_PATH_LEN} characters"));
        }
        let Some(mut rest) = s.strip_prefix('$') else {
            return Err(format!("`{s}` must start with `$` (e.g. `$.timestamp`)"));
        };
        let mut segs = Vec::new();
        let bad = |why: &str| Err(format!("`{s}` is not a JSON path: {why}"));
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                let n = r.find(['.', '[']).unwrap_or(r.len());
                let (name, r) = r.split_at(n);
                match name {
                    "" => return bad("an empty key after `.`"),
                    "*" => segs.push(Seg::AnyKey),
                    k => segs.push(Seg::Key(k.to_string())),
                }
                rest = r;
            } else if let Some(r) = rest.strip_prefix('[') {
                let Some(end) = r.find(']') else {
                    return bad("`[` without `]`");
                };
                let (inner, r) = (&r[..end], &r[end + 1..]);
                let quoted = |q: char| inner.strip_prefix(q).and_then(|i| i.strip_suffix(q));
                if inner == "*" {
                    segs.push(Seg::AnyIndex);
                } else if let Some(k) = quoted('\'').or_else(|| quoted('"')) {
                    segs.push(Seg::Key(k.to_string()));
                } else if let Ok(i) = inner.parse::<usize>() {
                    segs.push(Seg::Index(i));
                } else {
                    return bad("inside `[]`: a number, `*` or a quoted key");
                }
                rest = r;
            } else {
                return bad("expected `.` or `[`");
            }
        }
        Ok(JsonPath(segs))
    }

    /// Whether this path (wildcards allowed) covers `concrete`: equal step
    /// by step, or a prefix of it (a path covers everything below it).
    pub fn covers(&self, concrete: &[Seg]) -> bool {
        self.0.len() <= concrete.len()
            && self.0.iter().zip(concrete).all(|(p, c)| match (p, c) {
                (Seg::AnyKey, Seg::Key(_)) | (Seg::AnyIndex, Seg::Index(_)) => true,
                (a, b) => a == b,
            })
    }

    /// The path with every index made `[*]`: what noise is learned as, so
    /// a field noisy in one array element is ignored in all of them.
    pub fn generalized(&self) -> JsonPath {
        JsonPath(
            self.0
                .iter()
                .map(|s| match s {
                    Seg::Index(_) => Seg::AnyIndex,
                    other => other.clone(),
                })
                .collect(),
        )
    }
}

impl std::fmt::Display for JsonPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("$")?;
        for s in &self.0 {
            match s {
                Seg::Key(k)
                    if !k.is_empty()
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
                {
                    write!(f, ".{k}")?
                }
                Seg::Key(k) => write!(f, "[{}]", serde_json::Value::from(k.as_str()))?,
                Seg::Index(i) => write!(f, "[{i}]")?,
                Seg::AnyKey => f.write_str(".*")?,
                Seg::AnyIndex => f.write_str("[*]")?,
            }
        }
        Ok(())
    }
}

/// Methods a copy may have: the registered ones (RFC 9110 and WebDAV's
/// most common); CONNECT never (a tunnel cannot be copied).
const KNOWN_METHODS: &[&str] = &[
    "GET", "HEAD", "OPTIONS", "TRACE", "POST", "PUT", "PATCH", "DELETE", "PROPFIND", "REPORT",
    "SEARCH", "QUERY",
];

/// One broken rule: the dotted path of the value below `mirror`, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

/// Every broken rule of the section, in the order of its keys.
pub fn problems(m: &MirrorConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut push = |path: String, message: String| out.push(Problem { path, message });
    if let Err(e) = super::values::percent(m.percent) {
        push("percent".into(), format!("must be a percentage: {e}"));
    }
    let mut seen = BTreeSet::new();
    for (i, method) in m.methods.iter().enumerate() {
        if !KNOWN_METHODS.contains(&method.as_str()) {
            let hint = if KNOWN_METHODS.contains(&method.to_ascii_uppercase().as_str()) {
                " (methods are upper case)"
            } else {
                ""
            };
            push(
                format!("methods.{i}"),
                format!("`{method}` is not a method that can be copied{hint}"),
            );
        } else if !seen.insert(method.as_str()) {
            push(
                format!("methods.{i}"),
                format!("`{method}` is listed twice"),
            );
        }
    }
    if m.max_body.0 > MAX_MIRROR_BODY {
        push(
            "max_body".into(),
            format!(
                "must be at most 16MiB (a copy's body is held in memory), not {}",
                m.max_body.0
            ),
        );
    }
    if m.max_inflight == 0 || m.max_inflight > MAX_MIRROR_INFLIGHT {
        push(
            "max_inflight".into(),
            format!("must be 1..={MAX_MIRROR_INFLIGHT}"),
        );
    }
    for (i, h) in m.compare.ignore_headers.iter().enumerate() {
        if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
            push(
                format!("compare.ignore_headers.{i}"),
                format!("`{h}` is not a header field name"),
            );
        }
    }
    for (i, p) in m.compare.ignore_json.iter().enumerate() {
        if let Err(e) = JsonPath::parse(p) {
            push(format!("compare.ignore_json.{i}"), e);
        }
    }
    if let Some(r) = m.max_mismatch_rate {
        if !(0.0..=1.0).contains(&r) {
            push(
                "max_mismatch_rate".into(),
                format!("must be a share between 0 and 1 (e.g. 0.01 for 1 %), not {r}"),
            );
        }
    }
    out
}

/// The section's mistakes placed in the file.
pub(super) fn check(m: &MirrorConfig, doc: &Tree, dirty: &BTreeSet<String>) -> Vec<Issue> {
    if dirty.contains("mirror") {
        return Vec::new();
    }
    problems(m)
        .into_iter()
        .map(|p| {
            let path = format!("mirror.{}", p.path);
            let shown = super::tree::display_path(&path);
            Issue::new(doc.value_pos(&path), format!("{shown}: {}", p.message))
        })
        .collect()
}

#[cfg(test)]
mod tests;
