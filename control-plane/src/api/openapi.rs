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
    /// `bad_request`, `not_found`, `too_large`, `busy`, `store_unavailable` or `internal`.
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

/// `POST /api/v1/metrics`.
#[derive(Serialize, ToSchema)]
pub struct MetricPostAnswer {
    /// Lines read (Prometheus: sample lines).
    pub lines: u64,
    /// Samples folded into points.
    pub samples: u64,
    /// Lines or samples not stored: events, service checks, string fields, values that
    /// are not numbers, series past the per-request limit.
    pub ignored: u64,
    /// Points stored (one per series and interval).
    pub points: u64,
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
        super::metrics_ingest::post_metrics,
        super::metrics_ingest::prom_write,
        super::nodes::heartbeat,
        super::nodes::list,
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
        MetricPostAnswer,
        StoredLog,
        super::ingest::PostedLog,
        crate::store::SourcesSeen,
        crate::store::SourceSeen,
        super::nodes::Heartbeat
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
