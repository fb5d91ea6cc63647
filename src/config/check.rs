//! `switchyard check`: validate a file and say so in words (like `nginx -t`).
//!
//! Owns only the text shown to the operator; validation itself is
//! [`super::load`]. The CLI prints the text and exits 0 or 1.

use super::schema::{Config, PoolName, PoolSelector, UpstreamProtocol};
use super::validate::Environment;
use humantime::format_duration;
use std::path::Path;

/// Validate the file at `path`: `(true, summary)` when valid, else
/// `(false, every diagnostic one per line, then "N error(s)")`.
pub fn run(path: &Path) -> (bool, String) {
    match super::load(path) {
        Ok(cfg) => (true, summary(path, &cfg, &Environment::from_process())),
        Err(e) => {
            let diags = e.diagnostics();
            let mut out = String::new();
            for d in &diags {
                out.push_str(&d.to_string());
                out.push('\n');
            }
            let n = diags.len();
            out.push_str(&format!("{n} error{}", if n == 1 { "" } else { "s" }));
            (false, out)
        }
    }
}

/// A few lines an operator can check at a glance.
pub fn summary(path: &Path, cfg: &Config, env: &Environment) -> String {
    let mut s = format!("{}: configuration is valid\n", path.display());
    let mut line = |args: std::fmt::Arguments<'_>| {
        s.push_str(&std::fmt::format(args));
        s.push('\n');
    };
    let listeners: Vec<String> = cfg
        .listeners
        .iter()
        .map(|l| {
            let mut d = l.bind.to_string();
            if l.tls.is_some() {
                d.push_str(" (tls)");
            }
            if let Some(p) = l.pool {
                let p = match p {
                    PoolSelector::Candidate => "candidate",
                    PoolSelector::Blue => "blue",
                    PoolSelector::Green => "green",
                };
                d.push_str(&format!(" (preview: {p})"));
            }
            d
        })
        .collect();
    line(format_args!("listeners: {}", listeners.join(", ")));
    let token = match (&cfg.admin.token_file, env.admin_token_in_env) {
        (Some(f), _) => format!("token from {}", f.display()),
        (None, true) => "token from $SWITCHYARD_ADMIN_TOKEN".into(),
        (None, false) => "no token (loopback only)".into(),
    };
    line(format_args!("admin: {}, {token}", cfg.admin.bind));
    for name in PoolName::ALL {
        let p = cfg.pools.get(name);
        let proto = match p.protocol {
            UpstreamProtocol::Http1 => "http1",
            UpstreamProtocol::H2 => "h2",
        };
        let tls = if p.tls.is_some() { ", tls" } else { "" };
        let n = p.endpoints.len();
        line(format_args!(
            "pool {name}: {n} endpoint{}, {proto}{tls}",
            if n == 1 { "" } else { "s" }
        ));
    }
    let w = cfg.traffic.initial;
    line(format_args!(
        "initial weights: blue {}, green {}",
        w.blue, w.green
    ));
    let h = &cfg.health_check;
    line(format_args!(
        "health check: GET {} every {}, timeout {}, healthy after {}, unhealthy after {}, expects {}",
        h.path,
        format_duration(h.interval),
        format_duration(h.timeout),
        h.healthy_threshold,
        h.unhealthy_threshold,
        h.expected_status
    ));
    let r = &cfg.rollback;
    if r.enabled {
        let mut rules = vec![format!("error rate > {}", r.max_error_rate)];
        if let Some(x) = r.max_error_rate_increase {
            rules.push(format!("error rate > live + {x}"));
        }
        if let Some(d) = r.max_p99_latency {
            rules.push(format!("p99 > {}", format_duration(d)));
        }
        line(format_args!(
            "automatic rollback: {} for {} evaluations in a row (every {}, {} window, at least {} requests, {} grace)",
            rules.join(" or "),
            r.consecutive_breaches,
            format_duration(r.interval),
            format_duration(r.window),
            r.min_requests,
            format_duration(r.grace)
        ));
    } else {
        line(format_args!("automatic rollback: disabled"));
    }
    match &cfg.state_file {
        Some(f) => line(format_args!("state file: {}", f.display())),
        None => line(format_args!(
            "state file: none (weights are not kept across restarts)"
        )),
    }
    s.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    #[test]
    fn valid_file_gets_a_summary() {
        let f = file(
            "pools:\n  blue: {endpoints: [\"127.0.0.1:8001\", \"127.0.0.1:8002\"]}\n  green: {endpoints: [\"127.0.0.1:8011\"], protocol: h2}\nstate_file: null\n",
        );
        let (ok, out) = run(f.path());
        assert!(ok, "{out}");
        assert!(out.contains("configuration is valid"), "{out}");
        assert!(out.contains("listeners: 0.0.0.0:8080"), "{out}");
        assert!(out.contains("pool blue: 2 endpoints, http1"), "{out}");
        assert!(out.contains("pool green: 1 endpoint, h2"), "{out}");
        assert!(out.contains("initial weights: blue 100, green 0"), "{out}");
        assert!(out.contains("health check: GET /health every 2s"), "{out}");
        assert!(
            out.contains("automatic rollback: error rate > 0.01 for 3 evaluations"),
            "{out}"
        );
        assert!(out.contains("state file: none"), "{out}");
    }

    #[test]
    fn summary_names_where_the_admin_token_comes_from() {
        let cfg = crate::config::parse(
            "pools: {blue: {endpoints: [\"127.0.0.1:1\"]}, green: {endpoints: [\"127.0.0.1:2\"]}}",
            "t.yaml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let p = Path::new("t.yaml");
        let with_env = Environment {
            admin_token_in_env: true,
        };
        assert!(summary(p, &cfg, &with_env)
            .contains("admin: 127.0.0.1:9901, token from $SWITCHYARD_ADMIN_TOKEN"));
        let without = Environment::default();
        assert!(
            summary(p, &cfg, &without).contains("admin: 127.0.0.1:9901, no token (loopback only)")
        );
    }

    #[test]
    fn invalid_file_lists_every_error_then_the_count() {
        let f = file("pools:\n  blue: {endpoints: []}\n  green: {endpoints: [\"127.0.0.1:8011\"]}\nretries: {attempts: 11}\n");
        let (ok, out) = run(f.path());
        assert!(!ok);
        let name = f.path().display().to_string();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(
            lines[0].starts_with(&format!("{name}:2:21: pools.blue.endpoints:")),
            "{out}"
        );
        assert!(
            lines[1].starts_with(&format!("{name}:4:21: retries.attempts:")),
            "{out}"
        );
        assert_eq!(lines[2], "2 errors");
    }

    #[test]
    fn unreadable_file_is_one_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("missing.yaml");
        let (ok, out) = run(&path);
        assert!(!ok);
        // The file, then the reason: no `:0:0:` that reads as a position.
        assert!(
            out.starts_with(&format!("{}: cannot read file", path.display())),
            "{out}"
        );
        assert!(out.ends_with("1 error"), "{out}");
    }
}
