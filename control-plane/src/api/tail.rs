//! `GET /api/v1/logs/tail`: server-sent events, one `log` event per stored message that
//! matches the same filters as `GET /api/v1/logs`, from the moment the client connects.
//!
//! The tail follows block sequence numbers: after each commit (or every second) it reads
//! the blocks committed since its last look, with the search's own matching, so the tail
//! and the search can never disagree about what matches.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;

use super::AppState;
use super::error::ApiError;
use super::logs::{LogsParams, now_ns};
use crate::store::{LogQuery, Order, Store, StoredLog};
use crate::telemetry::metrics::StoreCounters;

/// Rows read per query while catching up.
const PAGE: u32 = 5_000;
/// Looks for new blocks at least this often, commit notifications or not (a writer in
/// another process, behind Redis, does not notify this one).
const POLL: Duration = Duration::from_secs(1);

struct Tail {
    store: Arc<dyn Store>,
    counters: Arc<StoreCounters>,
    query: LogQuery,
    last_seq: i64,
    pending: VecDeque<StoredLog>,
}

impl Tail {
    /// Reads every matching row of the blocks committed since the last look.
    async fn catch_up(&mut self) -> crate::Result<()> {
        let Some(newest) = self.store.newest_block_seq().await? else { return Ok(()) };
        if newest <= self.last_seq {
            return Ok(());
        }
        let mut query = LogQuery {
            block_seqs: Some((self.last_seq, newest)),
            order: Order::Ascending,
            limit: PAGE,
            cursor: None,
            ..self.query.clone()
        };
        loop {
            let page = self.store.query_logs(&query).await?;
            self.pending.extend(page.logs);
            match page.next_cursor {
                Some(cursor) => query.cursor = Some(cursor),
                None => break,
            }
        }
        self.last_seq = newest;
        Ok(())
    }

    async fn next_event(&mut self) -> Event {
        loop {
            if let Some(log) = self.pending.pop_front() {
                match Event::default().event("log").id(log.id.to_string()).json_data(&log) {
                    Ok(event) => return event,
                    Err(error) => {
                        tracing::warn!(error = %error, "A tailed message could not be encoded.");
                        continue;
                    }
                }
            }
            // Registered before looking, so a commit between the look and the wait still
            // wakes us.
            let counters = self.counters.clone();
            let committed = counters.committed.notified();
            tokio::pin!(committed);
            committed.as_mut().enable();
            if let Err(error) = self.catch_up().await {
                tracing::warn!(error = %error, "Live tail could not read the store; retrying.");
                tokio::time::sleep(POLL).await;
                continue;
            }
            if self.pending.is_empty() {
                let _ = tokio::time::timeout(POLL, committed).await;
            }
        }
    }
}

/// New matching messages as server-sent events (`event: log`, `data:` the row as JSON).
#[utoipa::path(get, path = "/api/v1/logs/tail", params(LogsParams), responses(
    (status = 200, description = "An endless text/event-stream", content_type = "text/event-stream", body = String),
    (status = 400, description = "A filter is wrong", body = super::openapi::ErrorAnswer),
))]
pub async fn tail(
    State(state): State<AppState>,
    Query(params): Query<LogsParams>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let query = params.into_query(now_ns())?;
    let last_seq = state.store.newest_block_seq().await?.unwrap_or(0);
    let tail = Tail {
        store: state.store.clone(),
        counters: state.store_counters.clone(),
        query,
        last_seq,
        pending: VecDeque::new(),
    };
    let events = futures_util::stream::unfold(tail, |mut tail| async move {
        let event = tail.next_event().await;
        Some((Ok(event), tail))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
