//! The admin API client of `switchyard ctl`: one request, its answer
//! judged (only the admin API's own shapes count as success), and every
//! way it can fail as a [`CtlError`].

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::time::Duration;

/// Where ctl looks for the admin API when told nothing else.
pub const DEFAULT_ADMIN: &str = "http://127.0.0.1:9901";

/// How long ctl waits for an answer.
pub(super) const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// `-c FILE` could not give the admin address or token.
    #[error("cannot take the admin API from {path}: {why}")]
    Config { path: String, why: String },
    /// `--wait`: what was waited for was rolled back or aborted.
    #[error("{0}")]
    RolledBack(String),
    /// `--wait`: it ended in another way, or `--timeout` passed.
    #[error("{0}")]
    WaitEnded(String),
}

/// The exit codes `ctl --help` documents (see [`super::args::AFTER_HELP`]).
pub mod exit {
    pub const OTHER: u8 = 1;
    pub const INVALID: u8 = 2;
    pub const REFUSED: u8 = 3;
    pub const UNAUTHORIZED: u8 = 4;
    pub const UNREACHABLE: u8 = 5;
    pub const ROLLED_BACK: u8 = 6;
}

impl CtlError {
    /// The process's exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Refused { .. } | CtlError::Unreachable { .. } | CtlError::TimedOut { .. } => {
                exit::UNREACHABLE
            }
            CtlError::BadUrl { .. } | CtlError::BadToken | CtlError::Config { .. } => exit::INVALID,
            CtlError::Api { status, .. } => match *status {
                StatusCode::BAD_REQUEST
                | StatusCode::NOT_FOUND
                | StatusCode::PAYLOAD_TOO_LARGE
                | StatusCode::UNPROCESSABLE_ENTITY => exit::INVALID,
                StatusCode::CONFLICT => exit::REFUSED,
                StatusCode::UNAUTHORIZED => exit::UNAUTHORIZED,
                StatusCode::SERVICE_UNAVAILABLE => exit::UNREACHABLE,
                _ => exit::OTHER,
            },
            CtlError::RolledBack(_) => exit::ROLLED_BACK,
            CtlError::Decode(_)
            | CtlError::Output(_)
            | CtlError::NotAdminApi { .. }
            | CtlError::WaitEnded(_) => exit::OTHER,
        }
    }

    /// Worth trying again shortly: the proxy may be restarting.
    pub fn transient(&self) -> bool {
        self.exit_code() == exit::UNREACHABLE
    }
}

pub(super) struct Api {
    base: String,
    /// `Authorization: Bearer TOKEN`, built once and marked sensitive.
    auth: Option<HeaderValue>,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
}

impl Api {
    /// Check the URL and token before any request, so that a mistake in
    /// either is named as such rather than as a failed connection.
    pub(super) fn new(admin: &str, token: Option<&str>) -> Result<Self, CtlError> {
        Ok(Api {
            base: admin_base(admin)?,
            auth: auth_header(token)?,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    pub(super) async fn call(
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
pub(super) fn admin_base(raw: &str) -> Result<String, CtlError> {
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
pub(super) fn auth_header(token: Option<&str>) -> Result<Option<HeaderValue>, CtlError> {
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
pub(super) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// Was the connection refused (nothing listening), as opposed to a timeout,
/// a reset or a name that does not resolve?
pub(super) fn connection_refused(e: &(dyn std::error::Error + 'static)) -> bool {
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
pub(super) enum Answer {
    /// The admin API refused, in its error shape.
    Refused { message: String, body: Value },
    /// Not the admin API's shape at all (wrong port, another server).
    Foreign(String),
}

/// Accept only what the admin API sends: JSON objects, `{"error": {"message"}}`
/// on failure, and on success either `generation` (every state and change
/// answer), `events`, or the mirror's `diffs` with the pool they go `to`. Anything else, even a 200, must not be reported as
/// done: a script would believe the weights changed.
pub(super) fn judge_answer(
    status: StatusCode,
    content_type: &str,
    body: &[u8],
) -> Result<Value, Answer> {
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
    let mirror_diffs = value["diffs"].is_array() && value["to"].is_string();
    if value["generation"].is_u64() || value["events"].is_array() || mirror_diffs {
        Ok(value)
    } else {
        Err(foreign("JSON of another shape"))
    }
}
