//! `GET /api/v1/logs`: search stored messages.

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::Error;
use crate::store::LogQuery;

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 10_000;

#[derive(Debug, Deserialize)]
pub struct LogsParams {
    /// Words that must all appear in the message.
    q: Option<String>,
    /// Rows to return (1 to 10,000; default 100).
    limit: Option<String>,
}

impl LogsParams {
    fn into_query(self) -> Result<LogQuery, Error> {
        let limit = match self.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(text) => match text.parse::<u32>() {
                Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => limit,
                _ => {
                    return Err(Error::BadRequest {
                        parameter: "limit",
                        message: format!("`{text}` is not a number between 1 and {MAX_LIMIT}"),
                    });
                }
            },
        };
        let terms = self.q.unwrap_or_default().split_whitespace().map(str::to_owned).collect();
        Ok(LogQuery { terms, limit })
    }
}

pub async fn search(
    State(state): State<AppState>,
    Query(params): Query<LogsParams>,
) -> Result<Json<Value>, ApiError> {
    let query = params.into_query()?;
    let logs = state.store.query_logs(&query).await?;
    Ok(Json(json!({ "count": logs.len(), "logs": logs })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_is_checked_and_named() {
        let params = LogsParams { q: None, limit: Some("0".into()) };
        let error = params.into_query().unwrap_err().to_string();
        assert!(error.contains("limit"), "{error}");
        let params = LogsParams { q: Some("a  b".into()), limit: None };
        let query = params.into_query().unwrap();
        assert_eq!(query.terms, ["a", "b"]);
        assert_eq!(query.limit, DEFAULT_LIMIT);
    }
}
