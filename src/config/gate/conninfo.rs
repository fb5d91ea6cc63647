//! libpq-style connection strings for the PostgreSQL gate (SPEC.md
//! section 13): `host=127.0.0.1 port=5432 user=switchyard dbname=postgres`
//! or `postgresql://switchyard@127.0.0.1:5432/postgres?sslmode=require`.
//!
//! `tokio-postgres` reads most of libpq's keys but refuses the ones about
//! certificate files; this module takes out the keys it handles itself
//! (`sslmode`'s verifying values, `sslrootcert`, `passfile`) and leaves the
//! rest for `tokio_postgres::Config`. Pure: no file is read, nothing
//! connects.

use std::path::PathBuf;

/// Whether and how the connection uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// `sslmode` unset, `disable`, `allow` or `prefer`: plain TCP. TLS is
    /// used only when asked for, and then always verified.
    Off,
    /// `require`, `verify-ca` or `verify-full`: TLS, the server's
    /// certificate checked against `sslrootcert` (else the system's roots)
    /// and the host name, as libpq's `verify-full` does.
    Verified,
}

/// A connection string taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// The string less the keys below, for `tokio_postgres::Config`.
    pub rest: String,
    pub tls: TlsMode,
    /// `sslrootcert`: a PEM file of the CA(s) that signed the server's certificate.
    pub root_cert: Option<PathBuf>,
    /// `passfile`: a password file in the `.pgpass` format.
    pub passfile: Option<PathBuf>,
}

/// Parse `s`, then check what is left with `tokio_postgres` (unknown keys,
/// bad values) and that it names a host.
pub fn parse(s: &str) -> Result<ConnInfo, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("is empty: give e.g. \"host=127.0.0.1 port=5432 user=app dbname=app\"".into());
    }
    let (pairs, uri) = if let Some(rest) = strip_scheme(s) {
        let (base, query) = rest.split_once('?').unwrap_or((rest, ""));
        (query_pairs(query)?, Some(base))
    } else {
        (keyword_pairs(s)?, None)
    };
    let mut info = ConnInfo {
        rest: String::new(),
        tls: TlsMode::Off,
        root_cert: None,
        passfile: None,
    };
    let mut kept = Vec::new();
    for (k, v) in pairs {
        match k.as_str() {
            "sslmode" => {
                info.tls = match v.as_str() {
                    "disable" | "allow" | "prefer" => TlsMode::Off,
                    "require" | "verify-ca" | "verify-full" => TlsMode::Verified,
                    other => return Err(format!("sslmode `{other}` is not one of disable, allow, prefer, require, verify-ca, verify-full")),
                };
                // What tokio-postgres itself does: plain, or TLS required.
                let mode = if info.tls == TlsMode::Verified {
                    "require"
                } else {
                    "disable"
                };
                kept.push(("sslmode".to_string(), mode.to_string()));
            }
            "sslrootcert" => info.root_cert = Some(PathBuf::from(v)),
            "passfile" => info.passfile = Some(PathBuf::from(v)),
            "sslcert" | "sslkey" | "sslcrl" | "sslpassword" => {
                return Err(format!(
                    "`{k}` is not supported (client certificates): use a password"
                ))
            }
            _ => kept.push((k, v)),
        }
    }
    info.rest = match uri {
        Some(base) => {
            let query: Vec<String> = kept
                .iter()
                .map(|(k, v)| format!("{k}={}", encode(v)))
                .collect();
            if query.is_empty() {
                base.to_string()
            } else {
                format!("{base}?{}", query.join("&"))
            }
        }
        None => kept
            .iter()
            .map(|(k, v)| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
            .collect::<Vec<_>>()
            .join(" "),
    };
    let cfg: tokio_postgres::Config = info.rest.parse().map_err(|e| with_source(&e))?;
    if cfg.get_hosts().is_empty() && cfg.get_hostaddrs().is_empty() {
        return Err("names no host: add host=... (e.g. host=127.0.0.1)".into());
    }
    if info.root_cert.is_some() && info.tls == TlsMode::Off {
        return Err(
            "sslrootcert is given but sslmode does not ask for TLS: add sslmode=verify-full".into(),
        );
    }
    Ok(info)
}

/// An error with its sources, `: `-joined: tokio-postgres keeps the
/// detail (`unknown option `colour``, the server's message) in them.
pub fn with_source(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    for _ in 0..8 {
        let Some(s) = next else { break };
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

fn strip_scheme(s: &str) -> Option<&str> {
    ["postgresql://", "postgres://"]
        .iter()
        .find_map(|p| s.strip_prefix(p).map(|_| s))
}

/// `key=value` pairs separated by spaces; values may be single-quoted, and
/// a backslash escapes the next character (libpq's rules).
fn keyword_pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut it = s.chars().peekable();
    loop {
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        if it.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = it.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        if it.next() != Some('=') {
            return Err(format!("`{key}` has no `=value`"));
        }
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if it.next_if_eq(&'\'').is_some() {
            loop {
                match it.next() {
                    Some('\\') => value.extend(it.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(format!("the value of `{key}` has no closing quote")),
                }
            }
        } else {
            while let Some(c) = it.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(it.next());
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

/// The query of a URI: `a=1&b=2`, percent-decoded.
fn query_pairs(q: &str) -> Result<Vec<(String, String)>, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| format!("`{p}` in the URI's query has no `=value`"))?;
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

fn decode(s: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("`{s}` has a bad %-escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{s}` is not UTF-8 once decoded"))
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_keep_what_tokio_postgres_reads_and_take_the_tls_keys() {
        let i = parse("host=127.0.0.1 port = 5433 user=app dbname='my db' sslmode=verify-full sslrootcert=/etc/ca.pem passfile=/p")
            .unwrap();
        assert_eq!(i.tls, TlsMode::Verified);
        assert_eq!(i.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(i.passfile, Some(PathBuf::from("/p")));
        assert_eq!(
            i.rest,
            "host='127.0.0.1' port='5433' user='app' dbname='my db' sslmode='require'"
        );
        let cfg: tokio_postgres::Config = i.rest.parse().unwrap();
        assert_eq!(cfg.get_dbname(), Some("my db"));
        assert_eq!(cfg.get_ports(), &[5433]);
    }

    #[test]
    fn quotes_and_backslashes_follow_libpq() {
        let i = parse(r"host=h password='it\'s' user=a\ b").unwrap();
        let cfg: tokio_postgres::Config = i.rest.parse().unwrap();
        assert_eq!(cfg.get_password(), Some(&b"it's"[..]));
        assert_eq!(cfg.get_user(), Some("a b"));
    }

    #[test]
    fn uris_keep_their_query_less_the_tls_keys() {
        let i = parse("postgresql://app@127.0.0.1:5433/db?sslmode=require&sslrootcert=%2Ftmp%2Fca.pem&application_name=sy")
            .unwrap();
        assert_eq!(i.tls, TlsMode::Verified);
        assert_eq!(i.root_cert, Some(PathBuf::from("/tmp/ca.pem")));
        assert_eq!(
            i.rest,
            "postgresql://app@127.0.0.1:5433/db?sslmode=require&application_name=sy"
        );
        assert_eq!(parse("postgres://h/db").unwrap().tls, TlsMode::Off);
    }

    #[test]
    fn mistakes_are_named() {
        for (s, want) in [
            ("", "is empty"),
            ("host=h port", "`port` has no `=value`"),
            ("host='h", "no closing quote"),
            ("user=a", "names no host"),
            ("host=h colour=blue", "colour"),
            ("host=h sslmode=sometimes", "sslmode `sometimes`"),
            ("host=h sslrootcert=/ca.pem", "sslrootcert is given"),
            ("host=h sslcert=/c.pem", "not supported"),
            ("postgresql://h/db?x", "no `=value`"),
            ("postgresql://h/db?a=%zz", "bad %-escape"),
        ] {
            let e = parse(s).unwrap_err();
            assert!(e.contains(want), "{s}: {e}");
        }
    }
}
