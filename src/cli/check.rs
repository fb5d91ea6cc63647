//! `switchyard check`: validate a file and say so in words (like `nginx -t`),
//! or in JSON for scripts (`--format json`).
//!
//! Validation itself is [`crate::config::load`]; this module owns the text
//! shown to the operator, including what a start would restore from the
//! state file (read only, through [`file::peek`]).

use super::output;
use crate::config::schema::{Config, PoolName, PoolSelector, UpstreamProtocol};
use crate::config::values::human_duration as human;
use crate::config::{self, Diagnostic, Environment};
use crate::control::store::file;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Config file (default: $SWITCHYARD_CONFIG, then ./switchyard.yaml).
    #[arg(
        short,
        long,
        env = "SWITCHYARD_CONFIG",
        default_value = super::DEFAULT_CONFIG,
        value_parser = super::config_path
    )]
    pub config: PathBuf,
    /// `text`: a summary, or every error on stderr; `json`: one document on
    /// stdout either way ({"valid", "errors": [{file, line, column,
    /// message}], "summary", "stored_state"}). The exit code is the same.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// What `check` found.
#[derive(Debug)]
pub struct Report {
    pub file: String,
    /// Every mistake in the file; empty when it is valid.
    pub errors: Vec<Diagnostic>,
    /// A valid file's summary, one line each.
    pub summary: Vec<String>,
    /// A valid file's state store: what a start would restore.
    pub stored: Option<Stored>,
}

/// What the state file holds, as a start would read it.
#[derive(Debug)]
pub struct Stored {
    pub path: Option<PathBuf>,
    /// `Ok(None)`: nothing stored (or no state file).
    pub state: Result<Option<crate::control::document::StateDoc>, String>,
    /// The stored weights differ from `traffic.initial`.
    pub overrides: bool,
}

pub fn main(args: CheckArgs) -> ExitCode {
    let report = run(&args.config);
    let ok = report.errors.is_empty();
    let printed = match args.format {
        Format::Json => output::out(&format!("{}\n", report.json())),
        Format::Text if ok => output::out(&format!("{}\n", report.text())),
        Format::Text => {
            output::err(&format!("{}\n", report.text()));
            Ok(())
        }
    };
    match printed {
        Err(e) if !output::reader_gone(&e) => {
            output::err(&format!("switchyard check: cannot print the report: {e}\n"));
            ExitCode::FAILURE
        }
        _ if ok => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// Validate the file at `path` and say what a start would do with it.
pub fn run(path: &Path) -> Report {
    let file = path.display().to_string();
    match config::load(path) {
        Ok(cfg) => {
            let stored = stored(&cfg);
            let mut summary = summary(&cfg, &Environment::from_process());
            summary.insert(summary.len() - 2, stored.line(&cfg));
            Report {
                file,
                errors: Vec::new(),
                summary,
                stored: Some(stored),
            }
        }
        Err(e) => Report {
            file,
            errors: e.diagnostics(),
            summary: Vec::new(),
            stored: None,
        },
    }
}

impl Report {
    /// The text: `FILE: configuration is valid` and the summary, or every
    /// error, one per line, then `N error(s)`.
    pub fn text(&self) -> String {
        if self.errors.is_empty() {
            let mut s = format!("{}: configuration is valid", self.file);
            for l in &self.summary {
                s.push('\n');
                s.push_str(l);
            }
            return s;
        }
        let mut out = String::new();
        for d in &self.errors {
            out.push_str(&d.to_string());
            out.push('\n');
        }
        let n = self.errors.len();
        out.push_str(&format!("{n} error{}", if n == 1 { "" } else { "s" }));
        out
    }

    pub fn json(&self) -> serde_json::Value {
        let stored = self.stored.as_ref().map(|s| {
            let (state, problem) = match &s.state {
                Ok(Some(doc)) => (
                    json!({
                        "generation": doc.generation,
                        "live": doc.live.as_str(),
                        "weights": {
                            "blue": doc.weights.percent(PoolName::Blue),
                            "green": doc.weights.percent(PoolName::Green),
                        },
                        "saved_at": doc.saved_at,
                    }),
                    None,
                ),
                Ok(None) => (serde_json::Value::Null, None),
                Err(why) => (serde_json::Value::Null, Some(why.clone())),
            };
            json!({
                "path": s.path,
                "state": state,
                "problem": problem,
                "overrides_initial": s.overrides,
            })
        });
        json!({
            "file": self.file,
            "valid": self.errors.is_empty(),
            "errors": self.errors,
            "summary": self.summary,
            "stored_state": stored,
        })
    }
}

fn stored(cfg: &Config) -> Stored {
    let state = match &cfg.state_file {
        Some(p) => file::peek(p),
        None => Ok(None),
    };
    let initial = crate::routing::Weights::from_config(&cfg.traffic.initial);
    let overrides = matches!(&state, Ok(Some(doc)) if doc.weights != initial);
    Stored {
        path: cfg.state_file.clone(),
        state,
        overrides,
    }
}

impl Stored {
    /// The summary's `stored state:` line.
    fn line(&self, cfg: &Config) -> String {
        let w = &cfg.traffic.initial;
        let initial = format!("traffic.initial (blue {}, green {})", w.blue, w.green);
        let fleet = if cfg.fleet.is_some() {
            " (fleet mode: etcd's state comes first; this file is its cache)"
        } else {
            ""
        };
        let Some(path) = &self.path else {
            return format!(
                "stored state: none (state_file: null); every start begins at {initial}"
            );
        };
        let path = path.display();
        match &self.state {
            Ok(None) => format!(
                "stored state: nothing yet in {path}; a start begins at {initial}{fleet}"
            ),
            Ok(Some(doc)) if self.overrides => format!(
                "stored state: {path} holds {}; a start restores it, NOT {initial}{fleet}",
                doc.describe()
            ),
            Ok(Some(doc)) => format!(
                "stored state: {path} holds {}; a start restores it (the weights of {initial}){fleet}",
                doc.describe()
            ),
            Err(why) => format!(
                "stored state: {path} is unusable ({why}); a start sets it aside and begins at {initial}{fleet}"
            ),
        }
    }
}

/// A few lines an operator can check at a glance; the last two are the
/// state file and the audit log (the stored state goes before them).
pub fn summary(cfg: &Config, env: &Environment) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = |args: std::fmt::Arguments<'_>| out.push(std::fmt::format(args));
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
        human(h.interval),
        human(h.timeout),
        h.healthy_threshold,
        h.unhealthy_threshold,
        h.expected_status
    ));
    let r = &cfg.rollout;
    let steps: Vec<String> = r.steps.iter().map(f64::to_string).collect();
    line(format_args!(
        "rollout: {} % every {}, then {}",
        steps.join(", "),
        human(r.step_interval),
        if r.auto_promote {
            format!("a bake of {}", human(r.bake_time))
        } else {
            "wait for `ctl promote`".to_string()
        }
    ));
    let r = &cfg.rollback;
    if r.enabled {
        let mut rules = vec![format!("error rate > {}", r.max_error_rate)];
        if let Some(x) = r.max_error_rate_increase {
            rules.push(format!("error rate > live + {x}"));
        }
        if let Some(d) = r.max_p99_latency {
            rules.push(format!("p99 > {}", human(d)));
        }
        line(format_args!(
            "automatic rollback: {} for {} evaluations in a row (every {}, {} window, at least {} requests, {} grace)",
            rules.join(" or "),
            r.consecutive_breaches,
            human(r.interval),
            human(r.window),
            r.min_requests,
            human(r.grace)
        ));
    } else {
        line(format_args!("automatic rollback: disabled"));
    }
    let c = &cfg.cutover;
    let gate = match &c.gate {
        Some(g) => {
            // Never the connection strings: they may hold a password.
            let what = match (&g.url, &g.postgres) {
                (Some(url), _) => url.clone(),
                (None, Some(pg)) => format!(
                    "PostgreSQL replica caught up (max_lag_bytes {}){}",
                    pg.max_lag_bytes,
                    if pg.promote { ", then promoted" } else { "" }
                ),
                (None, None) => "?".into(),
            };
            format!(
                ", gate {what} (polled every {}, timeout {})",
                human(g.poll_interval),
                human(g.timeout)
            )
        }
        None => String::new(),
    };
    if c.hold_writes {
        line(format_args!(
            "switch: writes held at most {} (up to {} requests){gate}",
            human(c.max_hold),
            c.max_held_requests
        ));
    } else {
        line(format_args!(
            "switch: instant, writes not held (max_hold {}){gate}",
            human(c.max_hold)
        ));
    }
    match &cfg.state_file {
        Some(f) => line(format_args!("state file: {}", f.display())),
        None => line(format_args!(
            "state file: none (weights are not kept across restarts)"
        )),
    }
    match &cfg.audit_log {
        Some(f) => line(format_args!("audit log: {}", f.display())),
        None => line(format_args!("audit log: none")),
    }
    out
}

#[cfg(test)]
mod tests;
