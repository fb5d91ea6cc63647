//! `cutover.gate` (SPEC.md sections 5 and 13): what a held switch waits
//! for before it flips. Either a URL that must answer 2xx, or PostgreSQL
//! streaming replication caught up, read from log sequence numbers, with
//! the replica's promotion in the same step.
//!
//! Owns the section's serde types, defaults and rules. It only describes
//! and checks: connecting to the databases is `control::gate`'s job, and a
//! database that cannot be reached when the file is checked is no error
//! (it is one when a switch runs). The rules are a pure function of the
//! section ([`problems`]); `semantic` places them in the file.

pub mod conninfo;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// How long a switch waits, once promotion has begun, for the replica to
/// leave recovery. Promotion cannot be undone, so the switch flips then
/// whatever the answer; a held write waits at most this much longer than
/// `max_hold` ([`super::CutoverConfig::hold_bound`]).
pub const PROMOTE_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    /// Polled with GET until it answers 2xx.
    #[serde(default)]
    pub url: Option<String>,
    /// PostgreSQL replication caught up (instead of `url`).
    #[serde(default)]
    pub postgres: Option<PostgresGate>,
    /// One gate request or database query at most this long.
    #[serde(default = "default_gate_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_gate_poll", with = "humantime_serde")]
    pub poll_interval: Duration,
}

fn default_gate_timeout() -> Duration {
    Duration::from_millis(500)
}

fn default_gate_poll() -> Duration {
    Duration::from_millis(100)
}

/// `cutover.gate.postgres`: the primary the blue side writes to and its
/// streaming replica the green side will use.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresGate {
    /// libpq-style connection string (see [`conninfo`]).
    pub primary: String,
    pub replica: String,
    /// A `.pgpass`-format file; else `passfile=` in the string, then
    /// `$PGPASSWORD`, `$PGPASSFILE`, `~/.pgpass`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Caught up when the replica has replayed all but this many bytes of
    /// the primary's WAL as it stood after the in-flight writes drained.
    #[serde(default)]
    pub max_lag_bytes: u64,
    /// Promote the replica (`pg_promote`) before the flip.
    #[serde(default)]
    pub promote: bool,
}

/// One broken rule: the dotted path of the value below `cutover.gate`, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: &'static str,
    pub message: String,
}

fn problem(path: &'static str, message: impl Into<String>) -> Problem {
    Problem {
        path,
        message: message.into(),
    }
}

/// Every broken rule of the gate, given whether writes are held. Reads
/// the password file only to say whether it can be read.
pub fn problems(g: &GateConfig, hold_writes: bool) -> Vec<Problem> {
    let mut out = Vec::new();
    match (&g.url, &g.postgres) {
        (None, None) => out.push(problem("", "needs `url` or `postgres`")),
        (Some(_), Some(_)) => out.push(problem("postgres", "give `url` or `postgres`, not both")),
        (Some(url), None) => {
            if let Err(e) = super::values::gate_url(url) {
                out.push(problem("url", e));
            }
        }
        (None, Some(pg)) => postgres_problems(pg, hold_writes, &mut out),
    }
    out
}

fn postgres_problems(pg: &PostgresGate, hold_writes: bool, out: &mut Vec<Problem>) {
    let primary = conninfo::parse(&pg.primary);
    let replica = conninfo::parse(&pg.replica);
    for (path, r) in [
        ("postgres.primary", &primary),
        ("postgres.replica", &replica),
    ] {
        if let Err(e) = r {
            out.push(problem(path, e.clone()));
        }
    }
    if let (Ok(p), Ok(r)) = (&primary, &replica) {
        if same_server(&p.rest, &r.rest) {
            out.push(problem(
                "postgres.replica",
                "names the same server as `primary`: give the streaming replica",
            ));
        }
        for (path, info) in [("postgres.primary", p), ("postgres.replica", r)] {
            for file in [&info.root_cert, &info.passfile].into_iter().flatten() {
                if let Err(mut e) = super::values::readable_file(file) {
                    if file.is_relative() {
                        // libpq's rule, unlike the config's own paths:
                        // say so, or a path that works by hand fails under systemd.
                        let cwd = std::env::current_dir().unwrap_or_default();
                        e += &format!(
                            " (a relative path in a connection string is read from the working directory, {}, as libpq does: write it absolute)",
                            cwd.display()
                        );
                    }
                    out.push(problem(path, e));
                }
            }
        }
    }
    if let Some(file) = &pg.password_file {
        if let Err(e) = super::values::readable_file(file) {
            out.push(problem("postgres.password_file", e));
        }
    }
    if !hold_writes {
        let what = if pg.promote {
            "promote needs cutover.hold_writes: true (writes must wait while the replica becomes the primary)"
        } else {
            "is only consulted during a write hold: set cutover.hold_writes: true"
        };
        let path = if pg.promote {
            "postgres.promote"
        } else {
            "postgres"
        };
        out.push(problem(path, what));
    }
}

/// Whether two parsed strings point at the same host and port.
fn same_server(a: &str, b: &str) -> bool {
    let (Ok(a), Ok(b)) = (
        a.parse::<tokio_postgres::Config>(),
        b.parse::<tokio_postgres::Config>(),
    ) else {
        return false;
    };
    a.get_hosts() == b.get_hosts()
        && a.get_hostaddrs() == b.get_hostaddrs()
        && a.get_ports() == b.get_ports()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(primary: &str, replica: &str, promote: bool) -> GateConfig {
        GateConfig {
            url: None,
            postgres: Some(PostgresGate {
                primary: primary.into(),
                replica: replica.into(),
                password_file: None,
                max_lag_bytes: 0,
                promote,
            }),
            timeout: default_gate_timeout(),
            poll_interval: default_gate_poll(),
        }
    }

    fn paths(p: &[Problem]) -> Vec<&'static str> {
        p.iter().map(|p| p.path).collect()
    }

    #[test]
    fn a_gate_is_a_url_or_postgres() {
        let mut g = pg(
            "host=127.0.0.1 port=5432",
            "host=127.0.0.1 port=5433",
            false,
        );
        assert!(problems(&g, true).is_empty());
        g.url = Some("http://127.0.0.1:7000/ok".into());
        assert_eq!(paths(&problems(&g, true)), ["postgres"]);
        g.postgres = None;
        assert!(problems(&g, true).is_empty());
        g.url = None;
        assert_eq!(problems(&g, true)[0].message, "needs `url` or `postgres`");
    }

    #[test]
    fn postgres_rules_point_at_their_key() {
        let g = pg(
            "host=127.0.0.1 port=5432",
            "host=127.0.0.1 port=5432",
            false,
        );
        assert_eq!(paths(&problems(&g, true)), ["postgres.replica"]);
        let g = pg("port=5432", "host=127.0.0.1 port=nope", false);
        assert_eq!(
            paths(&problems(&g, true)),
            ["postgres.primary", "postgres.replica"]
        );
        let g = pg("host=127.0.0.1", "host=127.0.0.1 port=5433", true);
        let p = problems(&g, false);
        assert_eq!(paths(&p), ["postgres.promote"]);
        assert!(p[0].message.contains("hold_writes"), "{p:?}");
        let g = pg("host=127.0.0.1", "host=127.0.0.1 port=5433", false);
        assert_eq!(paths(&problems(&g, false)), ["postgres"]);
        let mut g = pg(
            "host=127.0.0.1 passfile=/nonexistent/pgpass",
            "host=127.0.0.1 port=5433",
            false,
        );
        assert_eq!(paths(&problems(&g, true)), ["postgres.primary"]);
        let rel = pg(
            "host=127.0.0.1 sslmode=verify-full sslrootcert=no-such-ca.pem",
            "host=127.0.0.1 port=5433",
            false,
        );
        let p = problems(&rel, true);
        assert_eq!(paths(&p), ["postgres.primary"]);
        assert!(p[0].message.contains("working directory"), "{p:?}");
        if let Some(p) = g.postgres.as_mut() {
            p.primary = "host=127.0.0.1".into();
            p.password_file = Some("/nonexistent/pgpass".into());
        }
        assert_eq!(paths(&problems(&g, true)), ["postgres.password_file"]);
    }
}
