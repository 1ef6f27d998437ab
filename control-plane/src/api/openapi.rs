//! The OpenAPI document, served at `GET /api/v1/openapi.json`, generated from the
//! handlers' annotations and the row types so that it cannot drift from the code.

use axum::Json;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::store::StoredLog;

/// `GET /api/v1/logs`.
#[derive(Serialize, ToSchema)]
pub struct LogsAnswer {
    pub count: usize,
    pub logs: Vec<StoredLog>,
    /// Pass back as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Every error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorAnswer {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// `bad_request`, `not_found`, `conflict`, `too_large`, `store_unavailable` or `internal`.
    pub code: String,
    /// For a 400, starts with the name of the parameter at fault.
    pub message: String,
}

/// `POST /api/v1/logs`.
#[derive(Serialize, ToSchema)]
pub struct PostAnswer {
    pub accepted: u32,
    pub block_id: String,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Killkrill API", description = "Log and metrics ingestion appliance (docs/api.md)."),
    paths(
        super::logs::search,
        super::ingest::post_logs,
        super::tail::tail,
        super::stats::stats,
        super::sources::sources,
        super::metrics::query,
        super::metrics::names,
        super::nodes::heartbeat,
        super::nodes::list,
        super::config::get_all,
        super::config::get_listeners,
        super::config::put_listeners,
        super::config::get_capture,
        super::config::put_capture,
        super::config::get_sources,
        super::config::put_sources,
        super::config::get_rate_limits,
        super::config::put_rate_limits,
        super::config::get_retention,
        super::config::put_retention,
        super::health::health,
        super::health::ready,
        super::health::metrics,
        openapi_json,
    ),
    components(schemas(
        LogsAnswer,
        ErrorAnswer,
        ErrorDetail,
        PostAnswer,
        StoredLog,
        super::ingest::PostedLog,
        crate::store::SourcesSeen,
        crate::store::SourceSeen,
        super::nodes::Heartbeat,
        crate::live::FullConfig,
        crate::runtime_config::ListenersSetting,
        crate::runtime_config::ListenerSetting,
        crate::runtime_config::ListenerProtocol,
        crate::runtime_config::CaptureSetting,
        crate::runtime_config::CaptureView,
        crate::runtime_config::CaptureModeName,
        crate::runtime_config::SourcesSetting,
        crate::runtime_config::RateLimitsSetting,
        crate::runtime_config::PerSourceLimit,
        crate::runtime_config::RetentionSetting
    ))
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    let mut document = ApiDoc::openapi();
    document.info.version = crate::VERSION.to_owned();
    Json(document)
}
