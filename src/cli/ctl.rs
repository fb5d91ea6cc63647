//! `switchyard ctl`: a client of the admin API. Human-readable output by
//! default, `--json` for scripts, and a non-zero exit with the server's
//! message on any error.

use super::render::{render_change, render_events, render_status};
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
    Weights { blue: f64, green: f64 },
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
    /// Something answered, but not the admin API: often the proxy listener
    /// (8080) instead of the admin port (9901), whose application may well
    /// answer 200 to anything.
    #[error("not a switchyard admin API at {url}: {why}")]
    NotAdminApi { url: String, why: String },
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
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| CtlError::Decode(e.to_string()))?
            .to_bytes();
        judge_answer(status, &content_type, &body).map_err(|answer| match answer {
            Answer::Refused { message } => CtlError::Api { status, message },
            Answer::Foreign(why) => CtlError::NotAdminApi {
                url: self.base.clone(),
                why,
            },
        })
    }
}

/// Why an answer is not a success.
#[derive(Debug, PartialEq)]
enum Answer {
    /// The admin API refused, in its error shape.
    Refused { message: String },
    /// Not the admin API's shape at all (wrong port, another server).
    Foreign(String),
}

/// Accept only what the admin API sends: JSON objects, `{"error": {"message"}}`
/// on failure, and on success either `generation` (every state and change
/// answer) or `events`. Anything else, even a 200, must not be reported as
/// done: a script would believe the weights changed.
fn judge_answer(status: StatusCode, content_type: &str, body: &[u8]) -> Result<Value, Answer> {
    let foreign = |what: &str| Answer::Foreign(format!("it answered {status} with {what}"));
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        let shown = if mime.is_empty() {
            "no content type"
        } else {
            mime
        };
        return Err(foreign(shown));
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return Err(foreign("JSON that is not an object")),
    };
    if !status.is_success() {
        return match value["error"]["message"].as_str() {
            Some(m) => Err(Answer::Refused {
                message: m.to_string(),
            }),
            None => Err(foreign("JSON without an error message")),
        };
    }
    if value["generation"].is_u64() || value["events"].is_array() {
        Ok(value)
    } else {
        Err(foreign("JSON of another shape"))
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
        CtlCmd::Weights { blue, green } => (
            Method::PUT,
            "/api/v1/weights".into(),
            Some(json!({"blue": blue, "green": green})),
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

    const JSON: &str = "application/json";

    #[test]
    fn only_the_admin_api_shape_is_success() {
        let ok = |status, ct, body: &str| judge_answer(status, ct, body.as_bytes());
        assert!(ok(StatusCode::OK, JSON, r#"{"generation": 3}"#).is_ok());
        assert!(ok(
            StatusCode::OK,
            "Application/JSON; charset=utf-8",
            r#"{"events": []}"#
        )
        .is_ok());
        // An application's 200 (the proxy port, an SPA catch-all) is not success.
        for (ct, body) in [
            ("text/plain", "blue-1"),
            ("", "{\"generation\": 3}"),
            (JSON, "\"xxxx\""),
            (JSON, "[1, 2]"),
            (JSON, "{\"status\": \"ok\"}"),
            (JSON, "not json"),
        ] {
            match ok(StatusCode::OK, ct, body) {
                Err(Answer::Foreign(why)) => assert!(why.contains("200"), "{why}"),
                other => panic!("{ct} {body}: {other:?}"),
            }
        }
        assert_eq!(
            ok(
                StatusCode::UNPROCESSABLE_ENTITY,
                JSON,
                r#"{"error": {"code": "invalid", "message": "sum is 99"}}"#
            ),
            Err(Answer::Refused {
                message: "sum is 99".into()
            })
        );
        assert!(matches!(
            ok(StatusCode::NOT_FOUND, "text/html", "<h1>nope</h1>"),
            Err(Answer::Foreign(_))
        ));
    }
}
