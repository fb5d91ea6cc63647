//! The admin API's error shape: `{"error": {"code", "message"}}` with the
//! status SPEC.md section 3 gives each kind of refusal.

use crate::control::CommandError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra detail, e.g. every diagnostic of a rejected config.
    pub errors: Option<serde_json::Value>,
    /// The switch report of an aborted switch.
    pub report: Option<serde_json::Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            errors: None,
            report: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        )
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        let message = e.to_string();
        match e {
            CommandError::StaleGeneration { .. } => {
                ApiError::new(StatusCode::CONFLICT, "stale_generation", message)
            }
            CommandError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            CommandError::SwitchAborted(report) => {
                let mut err = ApiError::new(StatusCode::CONFLICT, "switch_aborted", message);
                err.report = serde_json::to_value(report).ok();
                err
            }
            CommandError::Invalid(_) => ApiError::unprocessable(message),
            CommandError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
            CommandError::ConfigInvalid(diags) => {
                let mut err =
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_config", message);
                err.errors = serde_json::to_value(diags).ok();
                err
            }
            CommandError::Stopped => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
            // Only a shared store (fleet mode) is ever out of reach.
            CommandError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "fleet_unavailable",
                message,
            ),
            CommandError::Store(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
            CommandError::Build(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        if let Some(errors) = self.errors {
            body["error"]["errors"] = errors;
        }
        if let Some(report) = self.report {
            body["error"]["report"] = report;
        }
        let mut resp = (self.status, Json(body)).into_response();
        if self.code == "fleet_unavailable" {
            // Out of touch with the fleet's etcd: try again shortly.
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}
