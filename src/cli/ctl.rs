//! `switchyard ctl`: a client of the admin API. Human-readable output by
//! default, `--json` for scripts, and a non-zero exit with the server's
//! message on any error.

use crate::config::PoolName;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// Admin API base URL.
    #[arg(
        long,
        env = "SWITCHYARD_ADMIN",
        default_value = "http://127.0.0.1:9901",
        global = true
    )]
    pub admin: String,
    /// Bearer token for the admin API.
    #[arg(
        long,
        env = "SWITCHYARD_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub token: Option<String>,
    /// Print the API's JSON answer instead of a summary.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub cmd: CtlCmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum CtlCmd {
    /// Phase, weights, rollout, health and live figures.
    Status,
    /// A live view of status, refreshed every second (Ctrl-C ends it).
    Watch,
    /// Set a manual split, e.g. `weights 90 10`.
    Weights {
        blue: f64,
        green: f64,
        /// Give traffic to a rollback-locked pool all the same.
        #[arg(long)]
        force: bool,
    },
    /// Instant switch to a pool.
    Switch {
        to: PoolName,
        /// Switch even if the target is unhealthy or rollback-locked.
        #[arg(long)]
        force: bool,
    },
    /// Step-by-step rollouts.
    #[command(subcommand)]
    Rollout(RolloutCmd),
    /// Everything back to the previous live pool, now.
    Rollback {
        #[arg(long)]
        reason: Option<String>,
    },
    /// Clear the rollback lock.
    Rearm,
    /// The audit log, newest first.
    Events {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Reload the config file now.
    Reload,
}

#[derive(Debug, clap::Subcommand)]
pub enum RolloutCmd {
    Start {
        to: PoolName,
        /// Candidate percentage at each step, e.g. 10,25,50,100.
        #[arg(long, value_delimiter = ',')]
        steps: Option<Vec<f64>>,
        /// Time between steps, e.g. 30s.
        #[arg(long)]
        interval: Option<String>,
    },
    Pause,
    Resume,
    Promote,
    Abort,
}

/// Why a ctl call failed; printed as is.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("cannot reach the admin API at {url}: {reason} (is switchyard running?)")]
    Unreachable { url: String, reason: String },
    #[error("bad admin URL {0:?}")]
    BadUrl(String),
    #[error("{status}: {message}")]
    Api { status: StatusCode, message: String },
    #[error("unexpected answer from the admin API: {0}")]
    Decode(String),
}

struct Api {
    base: String,
    token: Option<String>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Api {
    fn new(base: &str, token: Option<String>) -> Self {
        Api {
            base: base.trim_end_matches('/').to_string(),
            token,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CtlError> {
        let url = format!("{}{}", self.base, path);
        let mut b = Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            b = b.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let bytes = match &body {
            Some(v) => {
                b = b.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let req = b
            .body(Full::new(bytes))
            .map_err(|_| CtlError::BadUrl(url.clone()))?;
        let resp = tokio::time::timeout(Duration::from_secs(30), self.client.request(req))
            .await
            .map_err(|_| CtlError::Unreachable {
                url: self.base.clone(),
                reason: "timed out".into(),
            })?
            .map_err(|e| CtlError::Unreachable {
                url: self.base.clone(),
                reason: std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| e.to_string()),
            })?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| CtlError::Decode(e.to_string()))?
            .to_bytes();
        let value: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).trim().to_string()));
        if !status.is_success() {
            let message = value["error"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| value.to_string());
            return Err(CtlError::Api { status, message });
        }
        Ok(value)
    }
}

pub fn main(args: CtlArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard ctl: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: CtlArgs) -> Result<(), CtlError> {
    let api = Api::new(&args.admin, args.token.clone());
    let (method, path, body) = match &args.cmd {
        CtlCmd::Status => (Method::GET, "/api/v1/status".to_string(), None),
        CtlCmd::Watch => return watch(&api).await,
        CtlCmd::Weights { blue, green, force } => (
            Method::PUT,
            "/api/v1/weights".into(),
            Some(json!({"blue": blue, "green": green, "force": force})),
        ),
        CtlCmd::Switch { to, force } => (
            Method::POST,
            "/api/v1/switch".into(),
            Some(json!({"to": to, "force": force})),
        ),
        CtlCmd::Rollout(r) => match r {
            RolloutCmd::Start {
                to,
                steps,
                interval,
            } => {
                let mut b = json!({"to": to});
                if let Some(s) = steps {
                    b["steps"] = json!(s);
                }
                if let Some(i) = interval {
                    b["step_interval"] = json!(i);
                }
                (Method::POST, "/api/v1/rollout".into(), Some(b))
            }
            RolloutCmd::Pause => (Method::POST, "/api/v1/rollout/pause".into(), None),
            RolloutCmd::Resume => (Method::POST, "/api/v1/rollout/resume".into(), None),
            RolloutCmd::Promote => (Method::POST, "/api/v1/rollout/promote".into(), None),
            RolloutCmd::Abort => (Method::POST, "/api/v1/rollout/abort".into(), None),
        },
        CtlCmd::Rollback { reason } => (
            Method::POST,
            "/api/v1/rollback".into(),
            Some(match reason {
                Some(r) => json!({"reason": r}),
                None => json!({}),
            }),
        ),
        CtlCmd::Rearm => (Method::POST, "/api/v1/rearm".into(), None),
        CtlCmd::Events { limit } => (Method::GET, format!("/api/v1/events?limit={limit}"), None),
        CtlCmd::Reload => (Method::POST, "/api/v1/reload".into(), None),
    };
    let value = api.call(method, &path, body).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return Ok(());
    }
    match &args.cmd {
        CtlCmd::Status => print!("{}", render_status(&value)),
        CtlCmd::Events { .. } => print!("{}", render_events(&value)),
        _ => println!("{}", render_change(&value)),
    }
    Ok(())
}

fn pct(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn bar(green: f64, width: usize) -> String {
    let g = ((green / 100.0) * width as f64).round() as usize;
    format!(
        "{}{}",
        "#".repeat(width.saturating_sub(g)),
        "=".repeat(g.min(width))
    )
}

fn ms(v: &Value) -> String {
    v.as_f64()
        .map(|x| format!("{x:.1}ms"))
        .unwrap_or_else(|| "-".into())
}

/// A human summary of `GET /api/v1/status`.
pub fn render_status(s: &Value) -> String {
    let mut out = String::new();
    let w = &s["weights"];
    out.push_str(&format!(
        "phase {}   live {}   candidate {}   generation {}\n",
        s["phase"].as_str().unwrap_or("?"),
        s["live"].as_str().unwrap_or("?"),
        s["candidate"].as_str().unwrap_or("?"),
        s["generation"]
    ));
    out.push_str(&format!(
        "weights  blue {:>6.2}% [{}] green {:>6.2}%\n",
        pct(&w["blue"]),
        bar(pct(&w["green"]), 40),
        pct(&w["green"])
    ));
    if let Some(r) = s["rollout"].as_object() {
        let steps: Vec<String> = r
            .get("steps")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().map(|x| format!("{}", pct(x))).collect())
            .unwrap_or_default();
        let paused = r.get("paused").and_then(|v| v.as_bool()).unwrap_or(false);
        let next = match r.get("next_step_at").and_then(|v| v.as_str()) {
            _ if paused => "paused".to_string(),
            Some(t) => format!("next step at {t}"),
            None => "waiting for promote".to_string(),
        };
        out.push_str(&format!(
            "rollout  to {} step {}/{} ({}%) of {}; {}\n",
            r.get("to").and_then(|v| v.as_str()).unwrap_or("?"),
            r.get("step").cloned().unwrap_or(Value::Null),
            steps.len(),
            r.get("percent").map(pct).unwrap_or(0.0),
            steps.join(","),
            next
        ));
    }
    if let Some(b) = s["bake"].as_object() {
        out.push_str(&format!(
            "baking   {} until {} (rollback still armed)\n",
            b.get("pool").and_then(|v| v.as_str()).unwrap_or("?"),
            b.get("until").and_then(|v| v.as_str()).unwrap_or("?"),
        ));
    }
    if let Some(l) = s["rollback_lock"].as_object() {
        out.push_str(&format!(
            "LOCKED   rollback lock on {} since {}: {}\n",
            l.get("pool").and_then(|v| v.as_str()).unwrap_or("?"),
            l.get("since").and_then(|v| v.as_str()).unwrap_or("?"),
            l.get("reason").and_then(|v| v.as_str()).unwrap_or("?"),
        ));
    }
    for pool in ["blue", "green"] {
        let p = &s["pools"][pool];
        let st = &p["stats"];
        let eps = p["endpoints"].as_array().map(Vec::len).unwrap_or(0);
        out.push_str(&format!(
            "{pool:<6} healthy {}/{}  in flight {}  {:.1} req/s  errors {:.2}%  p50 {}  p99 {}\n",
            p["healthy"],
            eps,
            p["inflight"],
            st["rps"].as_f64().unwrap_or(0.0),
            st["error_rate"].as_f64().unwrap_or(0.0) * 100.0,
            ms(&st["p50_ms"]),
            ms(&st["p99_ms"]),
        ));
        for e in p["endpoints"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "         {:<22} {:<9} in flight {}\n",
                e["address"].as_str().unwrap_or("?"),
                e["state"].as_str().unwrap_or("?"),
                e["inflight"]
            ));
        }
    }
    if let Some(err) = s["config"]["last_error"].as_object() {
        out.push_str(&format!(
            "config   last reload FAILED at line {} column {}: {}\n",
            err.get("line").cloned().unwrap_or(Value::Null),
            err.get("column").cloned().unwrap_or(Value::Null),
            err.get("message").and_then(|v| v.as_str()).unwrap_or("?")
        ));
    }
    out
}

fn render_events(v: &Value) -> String {
    let mut out = String::new();
    let list = v["events"].as_array().or_else(|| v.as_array());
    for e in list.into_iter().flatten() {
        out.push_str(&format!(
            "{} #{} {:<18} by {:<6} {}\n",
            e["time"].as_str().unwrap_or("?"),
            e["id"],
            e["kind"].as_str().unwrap_or("?"),
            e["actor"].as_str().unwrap_or("?"),
            e["reason"].as_str().unwrap_or(""),
        ));
    }
    out
}

fn render_change(v: &Value) -> String {
    let mut parts = Vec::new();
    for key in ["outcome", "phase", "live"] {
        if let Some(s) = v[key].as_str() {
            parts.push(format!("{key} {s}"));
        }
    }
    if v["weights"].is_object() {
        parts.push(format!(
            "weights blue {}% green {}%",
            pct(&v["weights"]["blue"]),
            pct(&v["weights"]["green"])
        ));
    }
    for key in [
        "held_requests",
        "hold_ms",
        "drain_ms",
        "gate_ms",
        "generation",
    ] {
        if !v[key].is_null() {
            parts.push(format!("{key} {}", v[key]));
        }
    }
    if parts.is_empty() {
        v.to_string()
    } else {
        format!("ok: {}", parts.join(", "))
    }
}

async fn watch(api: &Api) -> Result<(), CtlError> {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => {
                println!();
                return Ok(());
            }
        }
        let s = api.call(Method::GET, "/api/v1/status", None).await?;
        // Clear the screen and draw from the top left.
        print!("\x1b[2J\x1b[H{}", render_status(&s));
        println!("\n(refreshing every second; Ctrl-C to stop)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_rendering_shows_the_split_and_pools() {
        let s = json!({
            "phase": "paused", "live": "blue", "candidate": "green", "generation": 4,
            "weights": {"blue": 90.0, "green": 10.0}, "rollout": null, "rollback_lock": null,
            "pools": {
                "blue": {"healthy": 2, "inflight": 1, "stats": {"rps": 5.0, "error_rate": 0.0, "p50_ms": 1.0, "p99_ms": 2.0},
                         "endpoints": [{"address": "127.0.0.1:1", "state": "healthy", "inflight": 1}]},
                "green": {"healthy": 0, "inflight": 0, "stats": {}, "endpoints": []}
            },
            "config": {"last_error": {"message": "bad", "line": 3, "column": 5}}
        });
        let out = render_status(&s);
        assert!(out.contains("phase paused"), "{out}");
        assert!(out.contains("blue  90.00%"), "{out}");
        assert!(out.contains("green  10.00%"), "{out}");
        assert!(out.contains("127.0.0.1:1"), "{out}");
        assert!(out.contains("line 3 column 5"), "{out}");
    }
}
