//! `/health`, `/ready` and `/metrics` (../shared/CONVENTIONS.md), on the API port and on
//! the metrics port.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tracing::Instrument as _;

use crate::telemetry::{HttpLabels, HttpRouteLabels, Metrics};
use crate::{SERVICE_NAME, VERSION};

/// What the operator last learnt about the Kubernetes API: can it list Ingestors?
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiCheck {
    /// Not asked yet.
    Pending,
    Ok,
    Failed(String),
}

/// What the handlers can reach.
#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub kubernetes: Arc<RwLock<ApiCheck>>,
}

impl HttpState {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics, kubernetes: Arc::new(RwLock::new(ApiCheck::Pending)) }
    }

    pub fn set_kubernetes(&self, check: ApiCheck) {
        *self.kubernetes.write().unwrap_or_else(std::sync::PoisonError::into_inner) = check;
    }

    fn kubernetes_check(&self) -> (bool, Value) {
        let check = self.kubernetes.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        match check {
            ApiCheck::Ok => (true, json!({"status": "ok", "message": "Ingestors can be listed"})),
            ApiCheck::Pending => (false, json!({"status": "error", "message": "not checked yet"})),
            ApiCheck::Failed(message) => (false, json!({"status": "error", "message": message})),
        }
    }
}

/// The router served on both ports.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn health(State(state): State<HttpState>) -> Response {
    let (ok, kubernetes) = state.kubernetes_check();
    axum::Json(json!({
        "status": if ok { "healthy" } else { "degraded" },
        "service": SERVICE_NAME,
        "version": VERSION,
        "timestamp": jiff::Timestamp::now().to_string(),
        "checks": { "kubernetes": kubernetes },
    }))
    .into_response()
}

async fn ready(State(state): State<HttpState>) -> Response {
    let (ok, kubernetes) = state.kubernetes_check();
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "ready": ok,
        "service": SERVICE_NAME,
        "timestamp": jiff::Timestamp::now().to_string(),
        "checks": { "kubernetes": kubernetes },
    });
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(state): State<HttpState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"error": {"code": "not_found", "message": "no such endpoint"}})),
    )
        .into_response()
}

static REQUEST_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Records the HTTP metrics and a debug log line per request (probes and scrapes only).
async fn observe(State(state): State<HttpState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let path = request.uri().path().to_owned();
    let request_id =
        format!("{:x}-{:x}", std::process::id(), REQUEST_SEQUENCE.fetch_add(1, Ordering::Relaxed));
    let span = tracing::info_span!("http_request", request_id = %request_id);
    state.metrics.http_active.inc();
    let response = next.run(request).instrument(span.clone()).await;
    state.metrics.http_active.dec();
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    let labels = HttpLabels { method: method.clone(), endpoint: endpoint.clone(), status };
    state.metrics.http_requests.get_or_create(&labels).inc();
    if status >= 500 {
        state.metrics.http_errors.get_or_create(&labels).inc();
    }
    state
        .metrics
        .http_duration
        .get_or_create(&HttpRouteLabels { method: method.clone(), endpoint })
        .observe(elapsed.as_secs_f64());
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    span.in_scope(|| tracing::debug!(method, path, status, duration_ms, "Request answered."));
    response
}
