//! `GET /api/v1/config` and `GET|PUT /api/v1/config/{listeners,capture,sources,
//! rate-limits,retention}`: the live configuration (docs/api.md). Bodies are parsed here
//! so that every error, unknown fields included, names the field at fault; checking and
//! applying is [`crate::live`]'s.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;

use super::AppState;
use super::error::ApiError;
use crate::live::FullConfig;
use crate::runtime_config::{
    CaptureSetting, CaptureView, ListenersSetting, RateLimitsSetting, RetentionSetting, SourcesSetting,
    parse_body,
};

/// Every section.
#[utoipa::path(get, path = "/api/v1/config", responses(
    (status = 200, description = "Every live setting as it runs now", body = FullConfig),
))]
pub async fn get_all(State(state): State<AppState>) -> Json<FullConfig> {
    Json(state.live.full().await)
}

#[utoipa::path(get, path = "/api/v1/config/listeners", responses(
    (status = 200, description = "The running listeners", body = ListenersSetting),
))]
pub async fn get_listeners(State(state): State<AppState>) -> Json<ListenersSetting> {
    Json(state.live.listeners())
}

/// Binds the new listeners, stops the ones left out, leaves the others alone.
#[utoipa::path(put, path = "/api/v1/config/listeners", request_body = ListenersSetting, responses(
    (status = 200, description = "The listeners now running", body = ListenersSetting),
    (status = 400, description = "A field is invalid; nothing changed", body = super::openapi::ErrorAnswer),
    (status = 409, description = "A port could not be bound; the old set keeps running", body = super::openapi::ErrorAnswer),
    (status = 503, description = "The store does not answer; nothing changed", body = super::openapi::ErrorAnswer),
))]
pub async fn put_listeners(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<ListenersSetting>, ApiError> {
    let setting = parse_body(&body)?;
    Ok(Json(state.live.put_listeners(setting).await?))
}

#[utoipa::path(get, path = "/api/v1/config/capture", responses(
    (status = 200, description = "Capture mode and interface, and the capture that runs", body = CaptureView),
))]
pub async fn get_capture(State(state): State<AppState>) -> Json<CaptureView> {
    Json(state.live.capture().await)
}

/// Kept for the next start: `restart_required` says whether it differs from what runs.
#[utoipa::path(put, path = "/api/v1/config/capture", request_body = CaptureSetting, responses(
    (status = 200, description = "The capture setting kept", body = CaptureView),
    (status = 400, description = "A field is invalid; nothing changed", body = super::openapi::ErrorAnswer),
    (status = 503, description = "The store does not answer; nothing changed", body = super::openapi::ErrorAnswer),
))]
pub async fn put_capture(State(state): State<AppState>, body: Bytes) -> Result<Json<CaptureView>, ApiError> {
    let setting = parse_body(&body)?;
    Ok(Json(state.live.put_capture(setting).await?))
}

#[utoipa::path(get, path = "/api/v1/config/sources", responses(
    (status = 200, description = "The allow and deny lists", body = SourcesSetting),
))]
pub async fn get_sources(State(state): State<AppState>) -> Json<SourcesSetting> {
    Json(state.live.sources().await)
}

/// Applied to the XDP maps and the socket listeners at once.
#[utoipa::path(put, path = "/api/v1/config/sources", request_body = SourcesSetting, responses(
    (status = 200, description = "The lists now applied (prefixes spelled with their length)", body = SourcesSetting),
    (status = 400, description = "A field is invalid; nothing changed", body = super::openapi::ErrorAnswer),
    (status = 503, description = "The store does not answer; nothing changed", body = super::openapi::ErrorAnswer),
))]
pub async fn put_sources(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<SourcesSetting>, ApiError> {
    let setting = parse_body(&body)?;
    Ok(Json(state.live.put_sources(setting).await?))
}

#[utoipa::path(get, path = "/api/v1/config/rate-limits", responses(
    (status = 200, description = "The per-source rate limit", body = RateLimitsSetting),
))]
pub async fn get_rate_limits(State(state): State<AppState>) -> Json<RateLimitsSetting> {
    Json(state.live.rate_limits().await)
}

/// Applied to the XDP program and the datagram listeners at once.
#[utoipa::path(put, path = "/api/v1/config/rate-limits", request_body = RateLimitsSetting, responses(
    (status = 200, description = "The limit now applied", body = RateLimitsSetting),
    (status = 400, description = "A field is invalid; nothing changed", body = super::openapi::ErrorAnswer),
    (status = 503, description = "The store does not answer; nothing changed", body = super::openapi::ErrorAnswer),
))]
pub async fn put_rate_limits(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<RateLimitsSetting>, ApiError> {
    let setting = parse_body(&body)?;
    Ok(Json(state.live.put_rate_limits(setting).await?))
}

#[utoipa::path(get, path = "/api/v1/config/retention", responses(
    (status = 200, description = "The retention limits", body = RetentionSetting),
))]
pub async fn get_retention(State(state): State<AppState>) -> Json<RetentionSetting> {
    Json(state.live.retention().await)
}

/// The retention task runs a pass with the new limits at once.
#[utoipa::path(put, path = "/api/v1/config/retention", request_body = RetentionSetting, responses(
    (status = 200, description = "The limits now applied", body = RetentionSetting),
    (status = 400, description = "A field is invalid; nothing changed", body = super::openapi::ErrorAnswer),
    (status = 503, description = "The store does not answer; nothing changed", body = super::openapi::ErrorAnswer),
))]
pub async fn put_retention(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Json<RetentionSetting>, ApiError> {
    let setting = parse_body(&body)?;
    Ok(Json(state.live.put_retention(setting).await?))
}
