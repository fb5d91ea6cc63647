//! Admin API routes and their middleware (auth, body limit, JSON errors).

use crate::admin::auth;
use crate::admin::error::ApiError;
use crate::admin::status;
use crate::config::PoolName;
use crate::control::controller::{Actor, ControllerHandle};
use crate::control::Shared;
use crate::control::{Command, RolloutAction};
use crate::routing::Weights;
use arc_swap::ArcSwapOption;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::Path;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Largest admin request body accepted (413 beyond).
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Clone)]
pub struct AdminState {
    pub shared: Arc<Shared>,
    pub controller: ControllerHandle,
    /// The bearer token in force. A reload replaces it when the content of
    /// `admin.token_file` changed (a rotated Kubernetes Secret), so it is
    /// read per request, as cheaply as the routing table.
    pub token: Arc<ArcSwapOption<String>>,
    /// The certificates of the TLS listeners, for status.
    pub certs: Arc<[Arc<crate::proxy::listener_tls::CertStore>]>,
    /// The dashboard's open streams (`GET /api/v1/stream`).
    pub streams: Arc<crate::admin::stream::Streams>,
    /// The dashboard's traffic history (`GET /api/v1/history`).
    pub history: Arc<crate::telemetry::history::History>,
}

pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/api/v1/status", get(get_status))
        .route("/api/v1/weights", put(put_weights))
        .route("/api/v1/switch", post(post_switch))
        .route("/api/v1/rollout", post(post_rollout))
        .route("/api/v1/rollout/{action}", post(post_rollout_action))
        .route("/api/v1/rollback", post(post_rollback))
        .route("/api/v1/rearm", post(post_rearm))
        .route("/api/v1/reload", post(post_reload))
        .route(
            "/api/v1/endpoints/{address}/{action}",
            post(post_endpoint_action),
        )
        .route("/metrics", get(metrics))
        .route("/api/v1/events", get(get_events))
        .route("/api/v1/explain", get(get_explain))
        .route("/api/v1/mirror/diffs", get(get_mirror_diffs))
        .route("/api/v1/stream", get(crate::admin::stream::get_stream))
        .route("/api/v1/history", get(crate::admin::history::get_history))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        // The API router's fallback does not cover these two routes: without
        // it, `POST /healthz` is a 405 with an empty body.
        .method_not_allowed_fallback(method_not_allowed)
        // The page asks for the token itself: it holds nothing secret.
        .merge(crate::admin::dashboard::routes())
        .merge(api)
        .with_state(state)
}

async fn require_token(State(st): State<AdminState>, req: Request, next: Next) -> Response {
    if req.uri().query().is_some_and(auth::names_a_credential) {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "token_in_query",
            "a credential in the URL is refused (URLs end up in logs and histories): send Authorization: Bearer TOKEN",
        )
        .into_response();
    }
    if let Some(token) = st.token.load().as_deref() {
        // Read per request: `metrics_public` follows reloads too.
        let public = req.uri().path() == "/metrics" && st.shared.config.load().admin.metrics_public;
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if !public && !auth::authorized(given, token) {
            // RFC 6750 section 3: a 401 names the scheme it wants.
            let mut resp = ApiError::unauthorized().into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return resp;
        }
    }
    next.run(req).await
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this path",
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(st): State<AdminState>) -> Response {
    match status::ready(&st.shared) {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(st): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.shared.metrics.encode(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    limit: Option<usize>,
}

async fn get_events(
    State(st): State<AdminState>,
    q: Result<axum::extract::Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let q = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q
        .limit
        .unwrap_or(100)
        .min(crate::control::events::RING_CAPACITY);
    let events = st.shared.events.recent(limit);
    Ok(Json(serde_json::json!({ "events": events })))
}

async fn get_mirror_diffs(
    State(st): State<AdminState>,
    q: Result<axum::extract::Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<crate::admin::mirror::MirrorDiffs>, ApiError> {
    let q = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(crate::telemetry::mirror::DIFFS_KEPT);
    Ok(Json(crate::admin::mirror::diffs(&st.shared, limit)))
}

/// Every rollback rule and check now (SPEC.md section 10, "Explanations").
async fn get_explain(
    State(st): State<AdminState>,
) -> Result<Json<crate::control::explain::Explanation>, ApiError> {
    let e = command(&st, |reply| Command::Explain { reply }).await?;
    Ok(Json(*e))
}

async fn get_status(State(st): State<AdminState>) -> Json<status::Status> {
    Json(full_status(&st))
}

/// What `GET /api/v1/status` answers (the stream sends the same).
pub fn full_status(st: &AdminState) -> status::Status {
    let mut s = status::status(&st.shared);
    s.tls = st.certs.iter().map(|c| c.status()).collect();
    s
}

/// Parse a JSON body whatever its `Content-Type` (operators type `curl -d`):
/// 413 when too large, 400 when malformed, 422 when well-formed but wrong.
/// An empty body reads as `{}`, so bodies whose fields are all optional may be left out.
pub fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let bytes = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("request body larger than {MAX_BODY} bytes"),
            ))
        }
        Err(e) => return Err(ApiError::bad_request(e.body_text())),
    };
    parse_json(&bytes)
}

/// The JSON part of [`json_body`]: 400 when malformed, 422 when well-formed
/// but wrong.
fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    let value: serde_json::Value = serde_json::from_slice(text)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    // serde would also take an array for a struct, its fields by position.
    if !value.is_object() {
        return Err(ApiError::unprocessable("the body must be a JSON object"));
    }
    T::deserialize(value).map_err(|e| ApiError::unprocessable(e.to_string()))
}

/// The admin routes that read a JSON body.
pub const BODY_ROUTES: [&str; 10] = [
    "/api/v1/weights",
    "/api/v1/switch",
    "/api/v1/rollout",
    "/api/v1/rollout/pause",
    "/api/v1/rollout/resume",
    "/api/v1/rollout/promote",
    "/api/v1/rollout/abort",
    "/api/v1/rollback",
    "/api/v1/rearm",
    "/api/v1/reload",
];

/// Read `bytes` as the body of `route` the way its handler does, through
/// every check made before a command reaches the controller (size, JSON,
/// types, unknown fields, weights and steps). `Err` is the answer a client
/// would get. For property tests and fuzzing; `route` is one of [`BODY_ROUTES`].
pub fn parse_body(route: &str, bytes: &[u8]) -> Result<(), ApiError> {
    if bytes.len() > MAX_BODY {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("request body larger than {MAX_BODY} bytes"),
        ));
    }
    match route {
        "/api/v1/weights" => {
            let b: WeightsBody = parse_json(bytes)?;
            crate::config::validate::validate_weights(b.blue, b.green)
                .map_err(ApiError::unprocessable)?;
            Weights::from_config(&crate::config::WeightsConfig {
                blue: b.blue,
                green: b.green,
            });
        }
        "/api/v1/switch" => parse_json::<SwitchBody>(bytes).map(|_| ())?,
        "/api/v1/rollout" => {
            let b: RolloutBody = parse_json(bytes)?;
            if let Some(steps) = &b.steps {
                crate::config::validate_steps(steps).map_err(ApiError::unprocessable)?;
            }
        }
        "/api/v1/rollback" => parse_json::<RollbackBody>(bytes).map(|_| ())?,
        _ => parse_json::<GenerationBody>(bytes).map(|_| ())?,
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightsBody {
    blue: f64,
    green: f64,
    /// Give a rollback-locked pool traffic all the same.
    #[serde(default)]
    force: bool,
    #[serde(default)]
    if_generation: Option<u64>,
}

async fn put_weights(
    State(st): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let b: WeightsBody = json_body(body)?;
    crate::config::validate::validate_weights(b.blue, b.green).map_err(ApiError::unprocessable)?;
    let weights = Weights::from_config(&crate::config::WeightsConfig {
        blue: b.blue,
        green: b.green,
    });
    let view = command(&st, |reply| Command::SetWeights {
        weights,
        force: b.force,
        if_generation: b.if_generation,
        actor: Actor::Admin,
        reply,
    })
    .await?;
    Ok(to_json(view))
}

/// Send a change to the controller. It answers at once even while a
/// switch holds writes (the hold is a state of its loop, not a wait): a
/// change it cannot make then is refused by the controller itself (409).
async fn command<T>(
    st: &AdminState,
    make: impl FnOnce(crate::control::controller::Reply<T>) -> Command,
) -> Result<T, ApiError> {
    Ok(st.controller.request(make).await?)
}

fn to_json<T: serde::Serialize>(v: T) -> Json<serde_json::Value> {
    Json(serde_json::to_value(v).unwrap_or_default())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchBody {
    to: PoolName,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    if_generation: Option<u64>,
}

async fn post_switch(
    State(st): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let b: SwitchBody = json_body(body)?;
    let report = command(&st, |reply| Command::Switch {
        to: b.to,
        force: b.force,
        if_generation: b.if_generation,
        actor: Actor::Admin,
        reply,
    })
    .await?;
    Ok(to_json(report))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RolloutBody {
    to: PoolName,
    #[serde(default)]
    steps: Option<Vec<f64>>,
    #[serde(default, deserialize_with = "duration")]
    step_interval: Option<Duration>,
    #[serde(default)]
    if_generation: Option<u64>,
}

async fn post_rollout(
    State(st): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let b: RolloutBody = json_body(body)?;
    let view = command(&st, |reply| Command::RolloutStart {
        to: b.to,
        steps: b.steps,
        step_interval: b.step_interval,
        if_generation: b.if_generation,
        reply,
    })
    .await?;
    Ok(to_json(view))
}

/// An optional duration such as `"30s"`, refused in the config check's
/// words: the API and `check` tell an operator the same thing.
fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    crate::config::parse_duration(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// Bodies that carry nothing but the optional generation check.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerationBody {
    #[serde(default)]
    if_generation: Option<u64>,
}

async fn post_rollout_action(
    State(st): State<AdminState>,
    Path(action): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let action = match action.as_str() {
        "pause" => RolloutAction::Pause,
        "resume" => RolloutAction::Resume,
        "promote" => RolloutAction::Promote,
        "abort" => RolloutAction::Abort,
        _ => return Err(ApiError::not_found()),
    };
    let b: GenerationBody = json_body(body)?;
    let view = command(&st, |reply| Command::Rollout {
        action,
        if_generation: b.if_generation,
        reply,
    })
    .await?;
    Ok(to_json(view))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    if_generation: Option<u64>,
}

async fn post_rollback(
    State(st): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let b: RollbackBody = json_body(body)?;
    let view = command(&st, |reply| Command::Rollback {
        reason: b.reason,
        if_generation: b.if_generation,
        reply,
    })
    .await?;
    Ok(to_json(view))
}

async fn post_rearm(
    State(st): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let b: GenerationBody = json_body(body)?;
    let view = command(&st, |reply| Command::Rearm {
        if_generation: b.if_generation,
        reply,
    })
    .await?;
    Ok(to_json(view))
}

async fn post_reload(
    State(st): State<AdminState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let b: GenerationBody = json_body(body)?;
    let report = command(&st, |reply| Command::Reload {
        actor: Actor::Admin,
        if_generation: b.if_generation,
        reply: Some(reply),
    })
    .await?;
    Ok(to_json(report))
}

/// The body of a drain or an enable: nothing, or `{}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaintenanceBody {}

/// `POST /api/v1/endpoints/{address}/drain` and `.../enable`: maintenance
/// of one endpoint, by its address as the config writes it.
async fn post_endpoint_action(
    State(st): State<AdminState>,
    Path((address, action)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let drain = match action.as_str() {
        "drain" => true,
        "enable" => false,
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no action {other:?} on an endpoint: drain or enable"),
            ))
        }
    };
    let MaintenanceBody {} = json_body(body)?;
    let report = command(&st, |reply| Command::Maintenance {
        address,
        drain,
        reply,
    })
    .await?;
    Ok(to_json(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_duration_is_explained_as_the_config_check_does() {
        let e = parse_json::<RolloutBody>(br#"{"to": "green", "step_interval": "5"}"#)
            .expect_err("no unit");
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            e.message.contains("durations look like 250ms, 2s or 1m"),
            "{}",
            e.message
        );
        let b: RolloutBody =
            parse_json(br#"{"to": "green", "step_interval": "30s"}"#).expect("valid");
        assert_eq!(b.step_interval, Some(Duration::from_secs(30)));
        let b: RolloutBody =
            parse_json(br#"{"to": "green", "step_interval": null}"#).expect("valid");
        assert_eq!(b.step_interval, None);
        let b: RolloutBody = parse_json(br#"{"to": "green"}"#).expect("valid");
        assert_eq!(b.step_interval, None);
    }
}
