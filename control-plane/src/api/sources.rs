//! `GET /api/v1/sources`: the hosts and addresses that sent the messages matching the
//! usual filters, with counts and first/last seen; by default over the last hour.

use axum::Json;
use axum::extract::{Query, State};

use super::AppState;
use super::error::ApiError;
use super::logs::{LogsParams, now_ns};
use crate::store::SourcesSeen;

/// Blocks one answer reads at most (about a million messages at the default block size
/// under load); past that the answer says `truncated`.
const MAX_BLOCKS: u64 = 256;
const DEFAULT_WINDOW_NS: i64 = 3_600_000_000_000;

/// Senders of the matching messages, most messages first.
#[utoipa::path(get, path = "/api/v1/sources", params(LogsParams), responses(
    (status = 200, description = "Senders seen; `start` defaults to one hour ago", body = SourcesSeen),
    (status = 400, description = "A filter is wrong", body = super::openapi::ErrorAnswer),
))]
pub async fn sources(
    State(state): State<AppState>,
    Query(params): Query<LogsParams>,
) -> Result<Json<SourcesSeen>, ApiError> {
    let now = now_ns();
    let mut query = params.into_query(now)?;
    if query.start_ns.is_none() {
        query.start_ns = Some(now - DEFAULT_WINDOW_NS);
    }
    Ok(Json(state.store.sources(&query, MAX_BLOCKS).await?))
}
