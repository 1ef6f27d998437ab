//! The one place where errors become HTTP answers. Clients get a stable JSON shape,
//! `{"error": {"code", "message"}}`; details of internal failures go to the log only.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::Error;

pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        Self(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match &self.0 {
            Error::BadRequest { parameter, message } => {
                (StatusCode::BAD_REQUEST, "bad_request", format!("{parameter}: {message}"))
            }
            Error::InvalidField { field, message } => {
                (StatusCode::BAD_REQUEST, "bad_request", format!("{field}: {message}"))
            }
            Error::Conflict(message) => (StatusCode::CONFLICT, "conflict", message.clone()),
            Error::TooLarge(message) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", message.clone()),
            Error::Unauthorized(message) => (StatusCode::UNAUTHORIZED, "unauthorized", (*message).to_owned()),
            Error::Forbidden(message) => (StatusCode::FORBIDDEN, "forbidden", message.clone()),
            Error::NotFound(message) => (StatusCode::NOT_FOUND, "not_found", message.clone()),
            Error::TooManyAttempts { locked, retry_after_s, message } => {
                let code = if *locked { "locked" } else { "rate_limited" };
                let mut response = (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(json!({ "error": { "code": code, "message": message } })),
                )
                    .into_response();
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, (*retry_after_s).max(1).into());
                return response;
            }
            Error::Store(_) | Error::Migration(_) => {
                tracing::error!(error = %self.0, "Store request failed.");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the store is not answering".to_owned(),
                )
            }
            other => {
                tracing::error!(error = %other, "Request failed.");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error".to_owned())
            }
        };
        let mut response =
            (status, Json(json!({ "error": { "code": code, "message": message } }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// 404 for any route that does not exist, in the same shape.
pub async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": { "code": "not_found", "message": "no such endpoint" } })))
        .into_response()
}
