//! The `fleet:` section (SPEC.md section 9): where the fleet's etcd is, how
//! this member is named, and the timings of membership and the write fence.
//!
//! Owns the section's serde types, their defaults and their rules. It only
//! describes and checks the section: connecting to etcd is
//! `control::fleet`'s job. The rules are a pure function of the section
//! ([`problems`]), so they are tested without a file; [`check`] places them
//! in the file for `switchyard check`. A binary built without the `fleet`
//! feature refuses a written `fleet` section here, at its key.

use super::tree::{Issue, Tree};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// etcd's smallest lease: ceil(1.5 × election timeout) at its defaults.
pub const MIN_MEMBER_TTL: Duration = Duration::from_secs(2);

/// `fleet:` (absent or `null`: a single proxy).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    pub etcd: EtcdConfig,
    /// Default: `hostname:admin-port` (see [`FleetConfig::member_id_for`]).
    #[serde(default)]
    pub member_id: Option<String>,
    /// The member's lease: silent this long, it has left the fleet.
    #[serde(default = "default_member_ttl", with = "humantime_serde")]
    pub member_ttl: Duration,
    /// Out of touch this long, the member answers writes 503.
    #[serde(default = "default_write_fence", with = "humantime_serde")]
    pub write_fence: Duration,
    /// Members whose stats a rollback verdict needs.
    #[serde(default)]
    pub min_reporting: MinReporting,
}

fn default_member_ttl() -> Duration {
    Duration::from_secs(5)
}

fn default_write_fence() -> Duration {
    Duration::from_secs(3)
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// `http://host:port` or `https://host:port`.
    pub endpoints: Vec<String>,
    /// Every key of the fleet lives under it; one fleet per prefix.
    pub prefix: String,
    #[serde(default)]
    pub tls: Option<EtcdTls>,
    #[serde(default)]
    pub auth: Option<EtcdAuth>,
}

/// TLS to etcd: the CA that signed etcd's certificate, and for mutual TLS
/// this member's certificate and key.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdTls {
    pub ca: PathBuf,
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
}

/// etcd's user authentication; the password is read from a file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdAuth {
    pub user: String,
    pub password_file: PathBuf,
}

/// `all`, `majority` or a number of members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MinReporting {
    All,
    #[default]
    Majority,
    Count(u32),
}

impl MinReporting {
    /// How many of `live` members must have reported.
    pub fn needed(self, live: usize) -> usize {
        match self {
            MinReporting::All => live,
            MinReporting::Majority => live / 2 + 1,
            MinReporting::Count(n) => n as usize,
        }
    }
}

impl Serialize for MinReporting {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MinReporting::All => s.serialize_str("all"),
            MinReporting::Majority => s.serialize_str("majority"),
            MinReporting::Count(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for MinReporting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = MinReporting;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("`all`, `majority` or a number of members")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MinReporting, E> {
                match v {
                    "all" => Ok(MinReporting::All),
                    "majority" => Ok(MinReporting::Majority),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<MinReporting, E> {
                u32::try_from(v)
                    .map(MinReporting::Count)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<MinReporting, E> {
                u64::try_from(v)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
                    .and_then(|v| self.visit_u64(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl FleetConfig {
    /// This member's id: `member_id`, else `hostname:admin-port`.
    pub fn member_id_for(&self, admin: SocketAddr) -> String {
        match &self.member_id {
            Some(id) => id.clone(),
            None => format!("{}:{}", hostname(), admin.port()),
        }
    }
}

/// The machine's host name (Linux), else `localhost`.
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty() && !s.contains('/'))
        .unwrap_or_else(|| "localhost".to_string())
}

/// One broken rule: the dotted path of the value, below `fleet`, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

fn problem(path: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        path: path.into(),
        message: message.into(),
    }
}

/// Whether this binary can run a fleet (`--features fleet`).
pub const SUPPORTED: bool = cfg!(feature = "fleet");

/// The message for a `fleet` section given to a binary built without it.
pub const UNSUPPORTED: &str = "this switchyard was built without fleet support \
     (rebuild with `cargo build --features fleet`, which needs protoc)";

/// Every broken rule of the section, in the order of its keys. Reads the
/// TLS and password files only to say whether they can be read.
pub fn problems(f: &FleetConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    let e = &f.etcd;
    if e.endpoints.is_empty() {
        out.push(problem("etcd.endpoints", "at least one endpoint is needed"));
    }
    for (i, url) in e.endpoints.iter().enumerate() {
        let path = format!("etcd.endpoints.{i}");
        match endpoint_scheme(url) {
            Err(msg) => out.push(problem(path, msg)),
            Ok(https) if https && e.tls.is_none() => out.push(problem(
                path,
                "is https, but `fleet.etcd.tls` is not set (give the CA that signed etcd's certificate)",
            )),
            Ok(https) if !https && e.tls.is_some() => out.push(problem(
                path,
                "is http, but `fleet.etcd.tls` is set: use an https URL",
            )),
            Ok(_) => {}
        }
    }
    if !e.prefix.ends_with('/') {
        out.push(problem(
            "etcd.prefix",
            format!("must end with `/` (e.g. `{}/`)", e.prefix),
        ));
    }
    if let Some(tls) = &e.tls {
        readable(&mut out, "etcd.tls.ca", &tls.ca);
        match (&tls.cert, &tls.key) {
            (Some(c), Some(k)) => {
                readable(&mut out, "etcd.tls.cert", c);
                readable(&mut out, "etcd.tls.key", k);
            }
            (Some(_), None) => out.push(problem("etcd.tls", "`cert` needs `key`")),
            (None, Some(_)) => out.push(problem("etcd.tls", "`key` needs `cert`")),
            (None, None) => {}
        }
    }
    if let Some(auth) = &e.auth {
        if auth.user.trim().is_empty() {
            out.push(problem("etcd.auth.user", "must not be empty"));
        }
        readable(&mut out, "etcd.auth.password_file", &auth.password_file);
    }
    if let Some(id) = &f.member_id {
        if let Err(msg) = member_id_rule(id) {
            out.push(problem("member_id", msg));
        }
    }
    let ttl = f.member_ttl;
    if ttl < MIN_MEMBER_TTL {
        out.push(problem(
            "member_ttl",
            "must be at least 2s (etcd's shortest lease)",
        ));
    } else if ttl.subsec_nanos() != 0 {
        out.push(problem(
            "member_ttl",
            "must be a whole number of seconds (etcd leases count seconds)",
        ));
    }
    if f.write_fence.is_zero() {
        out.push(problem("write_fence", "must be longer than 0"));
    } else if f.write_fence >= ttl {
        out.push(problem(
            "write_fence",
            format!(
                "must be shorter than member_ttl ({}): a member must stop writing before the fleet can count it gone",
                crate::config::values::human_duration(ttl)
            ),
        ));
    }
    if f.min_reporting == MinReporting::Count(0) {
        out.push(problem("min_reporting", "must be at least 1"));
    }
    out
}

/// Whether `url` is an etcd endpoint URL: `Ok(true)` for https.
fn endpoint_scheme(url: &str) -> Result<bool, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("`{url}` must start with http:// or https://")),
    };
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`{url}` has no host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "`{url}` must be scheme://host:port, without a path"
        ));
    }
    Ok(https)
}

/// A member id is part of etcd keys (`members/<id>`, `acks/<hold>/<id>`).
fn member_id_rule(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        Err("must not be empty")
    } else if id.len() > 128 {
        Err("must be at most 128 characters")
    } else if id
        .chars()
        .any(|c| c == '/' || c.is_whitespace() || c.is_control())
    {
        Err("must not contain `/`, spaces or control characters (it is part of etcd keys)")
    } else {
        Ok(())
    }
}

fn readable(out: &mut Vec<Problem>, path: &str, file: &Path) {
    if let Err(msg) = super::values::readable_file(file) {
        out.push(problem(path, msg));
    }
}

/// The section's mistakes placed in the file: all of [`problems`], or when
/// this binary has no fleet support, one at the `fleet` key.
pub(super) fn check(
    fleet: Option<&FleetConfig>,
    doc: &Tree,
    dirty: &BTreeSet<String>,
) -> Vec<Issue> {
    let Some(f) = fleet else {
        return Vec::new();
    };
    if !SUPPORTED {
        let at = doc.key_pos("fleet").unwrap_or(doc.value_pos("fleet"));
        return vec![Issue::new(at, format!("fleet: {UNSUPPORTED}"))];
    }
    if dirty.contains("fleet") {
        return Vec::new();
    }
    problems(f)
        .into_iter()
        .map(|p| {
            let path = format!("fleet.{}", p.path);
            let shown = super::tree::display_path(&path);
            Issue::new(doc.value_pos(&path), format!("{shown}: {}", p.message))
        })
        .collect()
}

#[cfg(test)]
mod tests;
