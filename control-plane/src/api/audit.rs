//! `GET /api/v1/audit` (admin): the audit log, newest first, a page at a time.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;
use crate::Error;
use crate::auth::rfc3339;
use crate::store::Role;

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1_000;

#[derive(Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    /// RFC 3339.
    pub at: String,
    /// A username, `api_key:<name>` or `anonymous`.
    pub actor: String,
    pub role: Option<Role>,
    /// Method and route, e.g. `PUT /api/v1/users/{username}`.
    pub action: String,
    /// The client's address.
    pub source: String,
    /// The HTTP status of the answer.
    pub status: u16,
    pub detail: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditAnswer {
    pub entries: Vec<AuditEntry>,
    /// Pass back as `cursor` for older entries; null on the last page.
    pub next_cursor: Option<String>,
}

/// Audited requests, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "admin", security(("bearer" = [])),
    params(
        ("limit" = Option<i64>, Query, description = "Entries per page, 1 to 1000 (default 100)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the page before"),
    ),
    responses(
        (status = 200, description = "One page", body = AuditAnswer),
        (status = 400, description = "Bad limit or cursor", body = super::openapi::ErrorAnswer),
    ))]
pub async fn audit(
    State(state): State<AppState>,
    Query(parameters): Query<HashMap<String, String>>,
) -> Result<Json<AuditAnswer>, ApiError> {
    let limit = match parameters.get("limit") {
        None => DEFAULT_LIMIT,
        Some(text) => {
            text.parse::<i64>().ok().filter(|limit| (1..=MAX_LIMIT).contains(limit)).ok_or_else(|| {
                Error::BadRequest { parameter: "limit", message: format!("must be 1 to {MAX_LIMIT}") }
            })?
        }
    };
    let before = match parameters.get("cursor") {
        None => None,
        Some(text) => Some(text.parse::<i64>().map_err(|_| Error::BadRequest {
            parameter: "cursor",
            message: "not a cursor from an earlier answer".to_owned(),
        })?),
    };
    let mut records = state.auth.store.audit(limit + 1, before).await?;
    let more = records.len() as i64 > limit;
    records.truncate(limit as usize);
    let next_cursor = more.then(|| records.last().map(|record| record.id.to_string())).flatten();
    let entries = records
        .into_iter()
        .map(|record| AuditEntry {
            id: record.id,
            at: rfc3339(record.at_ns),
            actor: record.actor,
            role: record.role,
            action: record.action,
            source: record.source,
            status: record.status,
            detail: record.detail,
        })
        .collect();
    Ok(Json(AuditAnswer { entries, next_cursor }))
}
