//! `switchyard ctl`: a client of the admin API. Human-readable output by
//! default, `--json` for scripts, and a non-zero exit with the server's
//! message on any error.

use super::output;
use super::render::{render_change, render_events, render_maintenance, render_status};
use crate::config::PoolName;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

/// Where ctl looks for the admin API when told nothing else.
pub const DEFAULT_ADMIN: &str = "http://127.0.0.1:9901";

/// How long ctl waits for an answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// Admin API base URL.
    #[arg(
        long,
        env = "SWITCHYARD_ADMIN",
        default_value = DEFAULT_ADMIN,
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
    /// Fleet mode: this member, the leader and every member's figures.
    Fleet,
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
    /// Maintenance of one endpoint: drain it, or enable it again.
    #[command(subcommand)]
    Endpoint(EndpointCmd),
    /// Copies of live requests to the candidate (SPEC.md section 12).
    #[command(subcommand)]
    Mirror(MirrorCmd),
}

#[derive(Debug, clap::Subcommand)]
pub enum MirrorCmd {
    /// The last mismatches, newest first: each request line and every
    /// differing field with both values; then the fields learned as noise.
    Diffs {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum EndpointCmd {
    /// Take no new requests; those in flight finish. Status shows `draining`.
    Drain {
        /// The endpoint as the config writes it, e.g. 127.0.0.1:8001.
        address: String,
    },
    /// Take requests again after a drain.
    Enable {
        /// The endpoint as the config writes it, e.g. 127.0.0.1:8001.
        address: String,
    },
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
    /// Nothing listens there: the one case where the hint fits.
    #[error("cannot reach the admin API at {url}: {reason} (is switchyard running?)")]
    Refused { url: String, reason: String },
    #[error("cannot reach the admin API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("no answer from the admin API at {url} within {}s", .after.as_secs())]
    TimedOut { url: String, after: Duration },
    #[error("bad admin URL {url:?}: {why}")]
    BadUrl { url: String, why: String },
    #[error("bad admin token: it has characters an HTTP header cannot carry (control characters or non-ASCII)")]
    BadToken,
    /// The admin API refused; `body` is its JSON answer, for `--json`.
    #[error("{status}: {message}")]
    Api {
        status: StatusCode,
        message: String,
        body: Value,
    },
    #[error("unexpected answer from the admin API: {0}")]
    Decode(String),
    /// Printing failed (a reader that closed the pipe is one case: see
    /// [`super::output::reader_gone`]).
    #[error("cannot print the answer: {0}")]
    Output(#[source] std::io::Error),
    /// Something answered, but not the admin API: often the proxy listener
    /// (8080) instead of the admin port (9901), whose application may well
    /// answer 200 to anything.
    #[error("not a switchyard admin API at {url}: {why}")]
    NotAdminApi { url: String, why: String },
}

struct Api {
    base: String,
    /// `Authorization: Bearer TOKEN`, built once and marked sensitive.
    auth: Option<HeaderValue>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Api {
    /// Check the URL and token before any request, so that a mistake in
    /// either is named as such rather than as a failed connection.
    fn new(admin: &str, token: Option<&str>) -> Result<Self, CtlError> {
        Ok(Api {
            base: admin_base(admin)?,
            auth: auth_header(token)?,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CtlError> {
        let url = format!("{}{}", self.base, path);
        let mut b = Request::builder().method(method).uri(&url);
        if let Some(auth) = &self.auth {
            b = b.header(http::header::AUTHORIZATION, auth.clone());
        }
        let bytes = match &body {
            Some(v) => {
                b = b.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let req = b.body(Full::new(bytes)).map_err(|e| CtlError::BadUrl {
            url: url.clone(),
            why: e.to_string(),
        })?;
        let resp = tokio::time::timeout(ANSWER_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| CtlError::TimedOut {
                url: self.base.clone(),
                after: ANSWER_TIMEOUT,
            })?
            .map_err(|e| {
                let url = self.base.clone();
                let reason = root_cause(&e);
                if connection_refused(&e) {
                    CtlError::Refused { url, reason }
                } else {
                    CtlError::Unreachable { url, reason }
                }
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
            Answer::Refused { message, body } => CtlError::Api {
                status,
                message,
                body,
            },
            Answer::Foreign(why) => CtlError::NotAdminApi {
                url: self.base.clone(),
                why,
            },
        })
    }
}

/// The admin base URL from `--admin` or `$SWITCHYARD_ADMIN`, checked. Blank
/// means the default: `SWITCHYARD_ADMIN=` in a script or an env file means
/// "not set", not "no URL".
fn admin_base(raw: &str) -> Result<String, CtlError> {
    let raw = raw.trim();
    let base = if raw.is_empty() { DEFAULT_ADMIN } else { raw }.trim_end_matches('/');
    let bad = |why: String| CtlError::BadUrl {
        url: base.to_string(),
        why,
    };
    let uri: http::Uri = base.parse().map_err(|e| bad(format!("{e}")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(bad(
                "the admin API serves plain HTTP; use http://".to_string()
            ))
        }
        Some(other) => {
            return Err(bad(format!(
                "scheme {other}:// is not supported; use http://"
            )))
        }
        None => return Err(bad(format!("missing http:// (write http://{base})"))),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host".to_string()));
    }
    Ok(base.to_string())
}

/// The `Authorization` header for a token from `--token` or
/// `$SWITCHYARD_ADMIN_TOKEN`, trimmed and blank-means-none as the server
/// reads its own (a token from `$(cat file)` or a Secret often ends in a
/// newline).
fn auth_header(token: Option<&str>) -> Result<Option<HeaderValue>, CtlError> {
    let Some(token) = crate::config::validate::admin_token_value(token) else {
        return Ok(None);
    };
    let mut v =
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| CtlError::BadToken)?;
    v.set_sensitive(true);
    Ok(Some(v))
}

/// The innermost cause: "Connection refused (os error 111)" says more than
/// the layers above it ("client error (Connect)", "tcp connect error").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// Was the connection refused (nothing listening), as opposed to a timeout,
/// a reset or a name that does not resolve?
fn connection_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Why an answer is not a success.
#[derive(Debug, PartialEq)]
enum Answer {
    /// The admin API refused, in its error shape.
    Refused { message: String, body: Value },
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
                body: value.clone(),
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
            output::err(&format!("cannot start the runtime: {e}\n"));
            return ExitCode::FAILURE;
        }
    };
    let json = args.json;
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader has what it wanted (`ctl status | head -1`): the
        // request itself succeeded.
        Err(CtlError::Output(e)) if output::reader_gone(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // A script asked for JSON: it gets the API's error document
            // (code, message, and for a reload every error's line and
            // column) on stdout; people still read the message on stderr.
            if let (true, CtlError::Api { body, .. }) = (json, &e) {
                if let Err(w) = output::out(&pretty(body)) {
                    if !output::reader_gone(&w) {
                        output::err(&format!("switchyard ctl: cannot print the answer: {w}\n"));
                    }
                }
            }
            output::err(&format!("switchyard ctl: {e}\n"));
            ExitCode::FAILURE
        }
    }
}

async fn run(args: CtlArgs) -> Result<(), CtlError> {
    let api = Api::new(&args.admin, args.token.as_deref())?;
    let (method, path, body) = match &args.cmd {
        CtlCmd::Status => (Method::GET, "/api/v1/status".to_string(), None),
        CtlCmd::Fleet => {
            let value = api.call(Method::GET, "/api/v1/status", None).await?;
            let fleet = value.get("fleet").cloned().unwrap_or(Value::Null);
            let text = if args.json {
                pretty(&fleet)
            } else {
                crate::cli::render::render_fleet(&fleet)
            };
            return print(&text);
        }
        CtlCmd::Watch => return watch(&api, args.json).await,
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
        CtlCmd::Mirror(MirrorCmd::Diffs { limit }) => (
            Method::GET,
            format!("/api/v1/mirror/diffs?limit={limit}"),
            None,
        ),
        CtlCmd::Endpoint(e) => {
            let (action, address) = match e {
                EndpointCmd::Drain { address } => ("drain", address),
                EndpointCmd::Enable { address } => ("enable", address),
            };
            let path = format!("/api/v1/endpoints/{}/{action}", path_segment(address));
            (Method::POST, path, None)
        }
    };
    let value = api.call(method, &path, body).await?;
    let text = if args.json {
        pretty(&value)
    } else {
        match &args.cmd {
            CtlCmd::Status => render_status(&value),
            CtlCmd::Events { .. } => render_events(&value),
            CtlCmd::Endpoint(_) => render_maintenance(&value),
            CtlCmd::Mirror(_) => crate::cli::mirror::render_diffs(&value),
            _ => format!("{}\n", render_change(&value)),
        }
    };
    print(&text)
}

/// `text` as one path segment: anything but letters, digits and `.:-_~`
/// percent-encoded, so an address cannot reach another route.
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b".:-_~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An API document as `--json` prints it.
fn pretty(v: &Value) -> String {
    format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default())
}

fn print(text: &str) -> Result<(), CtlError> {
    output::out(text).map_err(CtlError::Output)
}
/// Refresh the status every second. Only a terminal gets the screen
/// cleared and redrawn; into a file or a pipe those escapes are noise, so
/// each refresh is appended as plain text, or with `--json` as one JSON
/// line (a stream a script can read line by line).
async fn watch(api: &Api, json: bool) -> Result<(), CtlError> {
    let terminal = !json && std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => return if terminal { print("\n") } else { Ok(()) },
        }
        let s = api.call(Method::GET, "/api/v1/status", None).await?;
        print(&if json {
            format!("{s}\n")
        } else if terminal {
            // Clear the screen and draw from the top left.
            format!(
                "\x1b[2J\x1b[H{}\n(refreshing every second; Ctrl-C to stop)\n",
                render_status(&s)
            )
        } else {
            format!("{}\n", render_status(&s))
        })?;
    }
}

#[cfg(test)]
mod tests;
