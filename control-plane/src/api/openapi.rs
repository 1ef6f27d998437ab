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
    /// `bad_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`, `rate_limited`,
    /// `locked`, `too_large`, `store_unavailable` or `internal`.
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
        super::auth::login,
        super::auth::refresh,
        super::auth::logout,
        super::auth::me,
        super::auth::setup,
        super::admin::list_users,
        super::admin::create_user,
        super::admin::update_user,
        super::admin::delete_user,
        super::admin::list_api_keys,
        super::admin::create_api_key,
        super::admin::delete_api_key,
        super::audit::audit,
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
        crate::store::Role,
        super::auth::LoginRequest,
        super::auth::RefreshRequest,
        super::auth::SetupRequest,
        super::auth::SessionUser,
        super::auth::TokenAnswer,
        super::auth::MeAnswer,
        super::admin::UserAnswer,
        super::admin::UsersAnswer,
        super::admin::NewUser,
        super::admin::UserUpdate,
        super::admin::ApiKeyAnswer,
        super::admin::ApiKeysAnswer,
        super::admin::NewApiKey,
        super::admin::CreatedApiKey,
        super::audit::AuditEntry,
        super::audit::AuditAnswer,
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
    )),
    modifiers(&BearerSecurity),
    // Every operation needs a bearer token unless it says otherwise (docs/security.md).
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// The `bearer` scheme: a JWT access token from /api/v1/auth/login, or an API key.
struct BearerSecurity;

impl utoipa::Modify for BearerSecurity {
    fn modify(&self, document: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = document.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT or API key (kk_...)")
                    .description(Some("`Authorization: Bearer <access token or API key>`"))
                    .build(),
            ),
        );
        // Public operations say so with an empty requirement list.
        for (path, item) in document.paths.paths.iter_mut() {
            for (method, operation) in [
                (axum::http::Method::GET, item.get.as_mut()),
                (axum::http::Method::POST, item.post.as_mut()),
                (axum::http::Method::PUT, item.put.as_mut()),
                (axum::http::Method::DELETE, item.delete.as_mut()),
            ] {
                let Some(operation) = operation else { continue };
                let public = matches!(
                    super::policy::access(&method, path),
                    Some(super::policy::Access::Public | super::policy::Access::Metrics)
                );
                if public {
                    operation.security = Some(Vec::new());
                }
            }
        }
    }
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    let mut document = ApiDoc::openapi();
    document.info.version = crate::VERSION.to_owned();
    Json(document)
}
