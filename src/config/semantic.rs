//! Checks that need the whole typed [`Config`]: ranges, cross-field rules,
//! files on disk, conflicts between addresses.
//!
//! Each mistake is reported at the value that causes it, or when that value
//! was left to its default, at its nearest written parent. A section in which
//! a value could not be read (see `typed.rs`) is skipped, so its defaults
//! never produce a confusing second error.

use super::schema::{Config, PoolName};
use super::tree::{display_path, Issue, Pos, Tree};
use super::validate::{Environment, StatusRanges};
use super::values;
use std::collections::BTreeSet;
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The most extra tries on another endpoint a request may make.
const MAX_RETRIES: u32 = 10;

/// Bounds of `limits`: hyper reads a request head into a buffer of about
/// 400 KB, so a larger head could never reach the check.
const MAX_HEAD_BYTES: usize = 256 * 1024;
const MIN_HEAD_BYTES: usize = 1024;
const MAX_CONNECTIONS: usize = 1_000_000;

pub(super) fn check(
    cfg: &Config,
    doc: &Tree,
    env: &Environment,
    dirty: &BTreeSet<String>,
) -> Vec<Issue> {
    let mut c = Checker {
        doc,
        dirty,
        issues: Vec::new(),
    };
    type Section<'c> = fn(&mut Checker<'c>, &Config, &Environment);
    let sections: [(&[&str], Section<'_>); 12] = [
        (&["listeners", "admin"], Checker::binds),
        (&["admin"], Checker::admin),
        (&["pools"], Checker::pools),
        (&["health_check"], Checker::health_check),
        (
            &["outlier_detection", "retries", "drain", "timeouts"],
            Checker::upstream,
        ),
        (&["traffic"], Checker::traffic),
        (&["rollout"], Checker::rollout),
        (&["rollback"], Checker::rollback),
        (&["cutover", "pools"], Checker::cutover),
        (&["state_file", "audit_log"], Checker::files),
        (&["log"], Checker::log),
        (&["limits"], Checker::limits),
    ];
    for (needs, run) in sections {
        if needs.iter().all(|s| !c.dirty.contains(*s)) {
            run(&mut c, cfg, env);
        }
    }
    c.issues
}

struct Checker<'a> {
    doc: &'a Tree,
    dirty: &'a BTreeSet<String>,
    issues: Vec<Issue>,
}

impl Checker<'_> {
    fn at(&mut self, pos: Pos, path: &str, msg: impl Display) {
        self.issues
            .push(Issue::new(pos, format!("{}: {msg}", display_path(path))));
    }

    /// A mistake in the value at `path`.
    fn err(&mut self, path: &str, msg: impl Display) {
        let pos = self.doc.value_pos(path);
        self.at(pos, path, msg);
    }

    /// Of several related paths, the first one written in the file, so that
    /// a rule between two values points at the one the operator wrote.
    fn written<'p>(&self, paths: &[&'p str]) -> &'p str {
        paths
            .iter()
            .find(|p| self.doc.node(p).is_some())
            .or(paths.first())
            .copied()
            .unwrap_or("")
    }

    fn result(&mut self, path: &str, r: Result<(), String>) {
        if let Err(e) = r {
            self.err(path, e);
        }
    }

    fn positive(&mut self, path: &str, n: u64) {
        if n == 0 {
            self.err(path, "must be at least 1");
        }
    }

    fn nonzero(&mut self, path: &str, d: Duration) {
        if d.is_zero() {
            self.err(path, "must be longer than 0");
        }
    }

    /// Above 0 and at most `max` (see [`values::MAX_TIMEOUT`] and its kin).
    fn span(&mut self, path: &str, d: Duration, max: Duration) {
        self.nonzero(path, d);
        self.result(path, values::duration_at_most(d, max));
    }

    /// A file the proxy reads: says whether it can be read.
    fn file(&mut self, path: &str, p: &Path) -> bool {
        let r = values::readable_file(p);
        let ok = r.is_ok();
        self.result(path, r);
        ok
    }

    fn binds(&mut self, cfg: &Config, _: &Environment) {
        if cfg.listeners.is_empty() {
            self.err("listeners", "at least one listener is needed");
        }
        let admin = cfg.admin.bind;
        for (i, l) in cfg.listeners.iter().enumerate() {
            let path = format!("listeners.{i}.bind");
            let earlier = cfg.listeners[..i]
                .iter()
                .position(|o| binds_clash(o.bind, l.bind));
            if let Some(j) = earlier {
                let other = cfg.listeners[j].bind;
                let how = if other == l.bind {
                    "is the same as"
                } else {
                    "overlaps"
                };
                self.err(&path, format!("{} {how} listeners[{j}] ({other})", l.bind));
            }
            if binds_clash(admin, l.bind) {
                let how = if admin == l.bind {
                    "is the same as"
                } else {
                    "overlaps"
                };
                self.err(&path, format!("{} {how} the admin bind ({admin})", l.bind));
            }
            if let Some(tls) = &l.tls {
                let cert = self.file(&format!("listeners.{i}.tls.cert"), &tls.cert);
                let key = self.file(&format!("listeners.{i}.tls.key"), &tls.key);
                // Readable is not enough: what would be served is checked
                // as a certificate reload checks it.
                if cert && key {
                    if let Err((key_fault, e)) = super::tls_files::check_cert_files(tls) {
                        let field = if key_fault { "key" } else { "cert" };
                        self.err(&format!("listeners.{i}.tls.{field}"), e);
                    }
                }
            }
        }
    }

    fn admin(&mut self, cfg: &Config, env: &Environment) {
        let a = &cfg.admin;
        match &a.token_file {
            Some(p) => match values::readable_file(p) {
                Err(e) => self.err("admin.token_file", e),
                Ok(()) => match std::fs::read_to_string(p) {
                    Ok(t) if t.trim().is_empty() => {
                        self.err("admin.token_file", format!("`{}` is empty", p.display()))
                    }
                    Ok(_) => {}
                    Err(e) => self.err("admin.token_file", format!("cannot read `{}`: {e}", p.display())),
                },
            },
            None if !a.bind.ip().is_loopback() && !env.admin_token_in_env => self.err(
                "admin.bind",
                format!(
                    "{} is reachable from other hosts: set admin.token_file or $SWITCHYARD_ADMIN_TOKEN",
                    a.bind
                ),
            ),
            None => {}
        }
    }

    fn pools(&mut self, cfg: &Config, _: &Environment) {
        for name in PoolName::ALL {
            let pool = cfg.pools.get(name);
            let base = format!("pools.{name}");
            if pool.endpoints.is_empty() {
                self.err(
                    &format!("{base}.endpoints"),
                    "a pool needs at least one endpoint",
                );
            }
            for (i, ep) in pool.endpoints.iter().enumerate() {
                let path = format!("{base}.endpoints.{i}");
                if let Err(e) = values::endpoint(ep) {
                    self.err(&path, e);
                } else if let Some(j) = pool.endpoints[..i]
                    .iter()
                    .position(|o| o.eq_ignore_ascii_case(ep))
                {
                    self.err(&path, format!("`{ep}` is listed twice (also at index {j})"));
                }
            }
            if let Some(tls) = &pool.tls {
                if let Some(ca) = &tls.ca {
                    let at = format!("{base}.tls.ca");
                    if self.file(&at, ca) {
                        self.result(
                            &at,
                            super::tls_files::ca_roots(ca)
                                .map(drop)
                                .map_err(|e| e.to_string()),
                        );
                    }
                }
                if let Some(sn) = &tls.server_name {
                    if rustls::pki_types::ServerName::try_from(sn.as_str()).is_err() {
                        self.err(
                            &format!("{base}.tls.server_name"),
                            format!("`{sn}` is not a valid DNS name or IP address"),
                        );
                    }
                }
            }
        }
    }

    fn health_check(&mut self, cfg: &Config, _: &Environment) {
        let h = &cfg.health_check;
        if !h.path.starts_with('/') {
            self.err(
                "health_check.path",
                format!("`{}` must start with /", h.path),
            );
        } else if h.path.parse::<http::uri::PathAndQuery>().is_err() {
            self.err(
                "health_check.path",
                format!("`{}` is not a valid request path", h.path),
            );
        }
        self.span(
            "health_check.interval",
            h.interval,
            values::MAX_CHECK_INTERVAL,
        );
        self.span(
            "health_check.timeout",
            h.timeout,
            values::MAX_CHECK_INTERVAL,
        );
        if h.timeout > h.interval && !h.interval.is_zero() {
            let path = self.written(&["health_check.timeout", "health_check.interval"]);
            self.err(
                path,
                format!(
                    "timeout ({}) is longer than interval ({})",
                    crate::config::values::human_duration(h.timeout),
                    crate::config::values::human_duration(h.interval)
                ),
            );
        }
        self.positive("health_check.healthy_threshold", h.healthy_threshold.into());
        self.positive(
            "health_check.unhealthy_threshold",
            h.unhealthy_threshold.into(),
        );
        if let Err(e) = StatusRanges::parse(&h.expected_status) {
            self.err("health_check.expected_status", e);
        }
    }

    fn upstream(&mut self, cfg: &Config, _: &Environment) {
        self.positive(
            "outlier_detection.consecutive_failures",
            cfg.outlier_detection.consecutive_failures.into(),
        );
        if cfg.outlier_detection.max_ejection_percent > 100 {
            self.err(
                "outlier_detection.max_ejection_percent",
                format!(
                    "{} is more than 100",
                    cfg.outlier_detection.max_ejection_percent
                ),
            );
        }
        if cfg.retries.attempts > MAX_RETRIES {
            self.err(
                "retries.attempts",
                format!("{} is more than {MAX_RETRIES}", cfg.retries.attempts),
            );
        }
        self.result(
            "outlier_detection.ejection_time",
            values::duration_at_most(cfg.outlier_detection.ejection_time, values::MAX_TIMEOUT),
        );
        self.span("drain.timeout", cfg.drain.timeout, values::MAX_TIMEOUT);
        let t = &cfg.timeouts;
        self.span("timeouts.connect", t.connect, values::MAX_TIMEOUT);
        self.span("timeouts.request", t.request, values::MAX_TIMEOUT);
        self.span(
            "timeouts.client_header",
            t.client_header,
            values::MAX_TIMEOUT,
        );
        self.span("timeouts.client_body", t.client_body, values::MAX_TIMEOUT);
        self.span(
            "timeouts.upstream_idle",
            t.upstream_idle,
            values::MAX_TIMEOUT,
        );
    }

    fn traffic(&mut self, cfg: &Config, _: &Environment) {
        let t = &cfg.traffic;
        for (pool, msg) in values::weight_problems(t.initial.blue, t.initial.green) {
            match pool {
                Some(p) => self.err(&format!("traffic.initial.{p}"), msg),
                None => self.err("traffic.initial", msg),
            }
        }
        if let Some(sticky) = &t.sticky {
            self.result("traffic.sticky.cookie", values::cookie_name(&sticky.cookie));
            self.span(
                "traffic.sticky.max_age",
                sticky.max_age,
                values::MAX_STICKY_AGE,
            );
        }
        if let Some(h) = &t.override_header {
            self.result("traffic.override_header", values::header_name(h));
        }
    }

    fn rollout(&mut self, cfg: &Config, _: &Environment) {
        let r = &cfg.rollout;
        for (i, msg) in values::step_problems(&r.steps) {
            match i {
                Some(i) => self.err(&format!("rollout.steps.{i}"), msg),
                None => self.err("rollout.steps", msg),
            }
        }
        self.span(
            "rollout.step_interval",
            r.step_interval,
            values::MAX_STEP_INTERVAL,
        );
        self.result(
            "rollout.bake_time",
            values::duration_at_most(r.bake_time, values::MAX_BAKE_TIME),
        );
    }

    fn rollback(&mut self, cfg: &Config, _: &Environment) {
        let r = &cfg.rollback;
        self.span("rollback.interval", r.interval, values::MAX_CHECK_INTERVAL);
        if r.window < Duration::from_secs(1) {
            self.err("rollback.window", "must be at least 1s");
        } else if r.window > values::MAX_TIMEOUT {
            self.result(
                "rollback.window",
                values::duration_at_most(r.window, values::MAX_TIMEOUT),
            );
        } else if r.window < r.interval {
            let path = self.written(&["rollback.window", "rollback.interval"]);
            self.err(
                path,
                format!(
                    "window ({}) is shorter than interval ({})",
                    crate::config::values::human_duration(r.window),
                    crate::config::values::human_duration(r.interval)
                ),
            );
        }
        if !(0.0..=1.0).contains(&r.max_error_rate) {
            self.err(
                "rollback.max_error_rate",
                "must be between 0 and 1 (0.01 is 1%)",
            );
        }
        if let Some(x) = r.max_error_rate_increase {
            if !(0.0..=1.0).contains(&x) {
                self.err(
                    "rollback.max_error_rate_increase",
                    "must be between 0 and 1 (0.005 is 0.5%)",
                );
            }
        }
        if let Some(d) = r.max_p99_latency {
            self.span("rollback.max_p99_latency", d, values::MAX_CHECK_INTERVAL);
        }
        self.positive(
            "rollback.consecutive_breaches",
            r.consecutive_breaches.into(),
        );
        self.result(
            "rollback.grace",
            values::duration_at_most(r.grace, values::MAX_TIMEOUT),
        );
    }

    fn cutover(&mut self, cfg: &Config, _: &Environment) {
        let c = &cfg.cutover;
        self.span("cutover.max_hold", c.max_hold, values::MAX_HOLD);
        self.positive("cutover.max_held_requests", c.max_held_requests as u64);
        if let Some(gate) = &c.gate {
            for p in super::gate::problems(gate, c.hold_writes) {
                let path = match p.path {
                    "" => "cutover.gate".to_string(),
                    rest => format!("cutover.gate.{rest}"),
                };
                self.err(&path, p.message);
            }
            self.span("cutover.gate.timeout", gate.timeout, values::MAX_HOLD);
            self.span(
                "cutover.gate.poll_interval",
                gate.poll_interval,
                values::MAX_HOLD,
            );
        }
        for name in PoolName::ALL {
            let n = cfg.pools.get(name).endpoints.len();
            if n > 0 && c.min_healthy as usize > n {
                self.err(
                    "cutover.min_healthy",
                    format!(
                        "{} is more than the {n} endpoint(s) of pool {name}: every switch to it would be refused",
                        c.min_healthy
                    ),
                );
                break;
            }
        }
    }

    fn files(&mut self, cfg: &Config, _: &Environment) {
        if let Some(p) = &cfg.state_file {
            self.result("state_file", values::writable_location(p));
        }
        if let Some(p) = &cfg.audit_log {
            if cfg.state_file.as_ref() == Some(p) {
                self.err("audit_log", "must not be the same file as state_file");
            } else {
                self.result("audit_log", values::writable_location(p));
            }
        }
    }

    fn log(&mut self, cfg: &Config, _: &Environment) {
        self.result("log.level", values::log_level(&cfg.log.level));
    }

    fn limits(&mut self, cfg: &Config, _: &Environment) {
        let l = &cfg.limits;
        if !(1..=MAX_CONNECTIONS).contains(&l.max_connections) {
            self.err(
                "limits.max_connections",
                format!("must be between 1 and {MAX_CONNECTIONS}"),
            );
        }
        if !(MIN_HEAD_BYTES..=MAX_HEAD_BYTES).contains(&l.max_header_bytes) {
            self.err(
                "limits.max_header_bytes",
                format!("must be between {MIN_HEAD_BYTES} and {MAX_HEAD_BYTES}"),
            );
        } else if !(1..=l.max_header_bytes).contains(&l.max_uri_bytes) {
            let path = self.written(&["limits.max_uri_bytes", "limits.max_header_bytes"]);
            self.err(
                path,
                format!(
                    "max_uri_bytes ({}) must be between 1 and max_header_bytes ({})",
                    l.max_uri_bytes, l.max_header_bytes
                ),
            );
        }
    }
}

/// Whether two sockets cannot both be bound: same port (not 0, which picks a
/// free one), same family, and the same address or one of them the wildcard.
fn binds_clash(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
mod tests;
