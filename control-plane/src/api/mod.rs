//! The HTTP surface: `/health`, `/ready`, `/metrics`, the REST API under `/api/v1/` and the
//! web UI at `/`.

mod admin;
mod audit;
mod auth;
mod config;
pub mod error;
pub mod guard;
mod health;
mod ingest;
mod logs;
pub mod metrics;
pub mod metrics_ingest;
pub mod nodes;
pub mod openapi;
pub mod policy;
mod sources;
mod stats;
mod tail;
pub mod web_ui;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use killkrill_dataplane::counters::SharedListenerCounters;
use killkrill_dataplane::listener::ListenerInfo;
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument as _;

use crate::store::Store;
use crate::telemetry::metrics::{HttpLabels, HttpRouteLabels, Metrics, StoreCounters};

/// What every handler can reach, behind one `Arc`: the router and each middleware clone
/// the state for every request, and a clone of the fields (a dozen `Arc`s and a path) was
/// 5% of the server's CPU at 15,000 requests/s (docs/adr/0038).
#[derive(Clone)]
pub struct AppState(Arc<AppStateFields>);

impl AppState {
    pub fn new(fields: AppStateFields) -> Self {
        Self(Arc::new(fields))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateFields;

    fn deref(&self) -> &AppStateFields {
        &self.0
    }
}

/// The fields of [`AppState`].
pub struct AppStateFields {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// Raised once the data plane's listeners are bound and running.
    pub listeners_up: Arc<AtomicBool>,
    pub listeners: Arc<RwLock<Vec<ListenerInfo>>>,
    pub data_dir: PathBuf,
    /// The data plane's per-listener counters, for `/api/v1/stats`.
    pub listener_counters: SharedListenerCounters,
    pub store_counters: Arc<StoreCounters>,
    /// `sqlite` or `postgres`.
    pub store_backend: &'static str,
    /// Whether background compaction runs (`store.compaction.enabled`).
    pub compaction_enabled: bool,
    /// The capture path and XDP program now (they change with `PUT /api/v1/config/capture`).
    pub capture: killkrill_dataplane::SharedCapture,
    /// The node agents heard from (`/api/v1/nodes`).
    pub nodes: Arc<nodes::NodeRegistry>,
    /// Bounds the ingest requests in progress; past it, 429.
    pub ingest_slots: IngestSlots,
    pub metric_ingest: Arc<metrics_ingest::MetricIngest>,
    /// Users, tokens, API keys and the audit log.
    pub auth: Arc<crate::auth::Authenticator>,
    /// The live settings (`/api/v1/config`).
    pub live: Arc<crate::live::LiveConfig>,
    /// The data plane's runtime and cores, settled at start-up.
    pub runtime: Arc<killkrill_dataplane::cores::RuntimeStatus>,
}

/// How many ingest requests (`POST /api/v1/logs`, `/metrics`, `/prom/write`) may be in
/// progress at once. Each holds its body and a block or points in memory until its commit,
/// so an unbounded number would let a burst of clients exhaust memory; a client past the
/// bound gets 429 with Retry-After and sends again.
#[derive(Clone, Debug)]
pub struct IngestSlots(Arc<tokio::sync::Semaphore>);

impl IngestSlots {
    pub fn new(slots: usize) -> Self {
        Self(Arc::new(tokio::sync::Semaphore::new(slots.max(1))))
    }

    /// A slot held until the request is answered, or `Error::Busy`.
    pub fn acquire(&self) -> Result<tokio::sync::OwnedSemaphorePermit, crate::Error> {
        self.0.clone().try_acquire_owned().map_err(|_| {
            crate::Error::Busy("too many ingest requests in progress; send again shortly".to_owned())
        })
    }
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The full API router.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/logs", get(logs::search).post(ingest::post_logs))
        .route("/logs/tail", get(tail::tail))
        .route("/metrics", get(metrics::query).post(metrics_ingest::post_metrics))
        .route("/prom/write", axum::routing::post(metrics_ingest::prom_write))
        .route("/metrics/names", get(metrics::names))
        .route("/stats", get(stats::stats))
        .route("/sources", get(sources::sources))
        .route("/nodes", get(nodes::list))
        .route("/nodes/heartbeat", axum::routing::post(nodes::heartbeat))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/me", get(auth::me))
        .route("/auth/setup", post(auth::setup))
        .route("/users", get(admin::list_users).post(admin::create_user))
        .route("/users/{username}", put(admin::update_user).delete(admin::delete_user))
        .route("/api-keys", get(admin::list_api_keys).post(admin::create_api_key))
        .route("/api-keys/{id}", axum::routing::delete(admin::delete_api_key))
        .route("/audit", get(audit::audit))
        .route("/config", get(config::get_all))
        .route("/config/listeners", get(config::get_listeners).put(config::put_listeners))
        .route("/config/capture", get(config::get_capture).put(config::put_capture))
        .route("/config/sources", get(config::get_sources).put(config::put_sources))
        .route("/config/rate-limits", get(config::get_rate_limits).put(config::put_rate_limits))
        .route("/config/retention", get(config::get_retention).put(config::put_retention));
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .nest("/api/v1", api.layer(axum::extract::DefaultBodyLimit::max(ingest::MAX_BODY_BYTES)))
        // Every matched route passes the guard (policy::ROUTES); unknown paths reach the
        // fallback without it: the web UI's files and page routes (public), or a JSON 404.
        .route_layer(middleware::from_fn_with_state(state.clone(), guard::guard))
        .fallback(web_ui::fallback)
        .layer(middleware::from_fn_with_state(state.clone(), guard::audit))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::SERVICE_UNAVAILABLE, REQUEST_TIMEOUT))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The scrape-only router for the separate metrics port.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), guard::guard))
        .fallback(error::not_found)
        .with_state(state)
}

static REQUEST_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// Gives each request an id and a span, and records the HTTP metrics and a log line.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    // The matched route keeps the endpoint label bounded; unknown paths share one label.
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .filter(|value| value.len() <= 64)
        .map_or_else(
            || format!("{:x}-{:x}", std::process::id(), REQUEST_SEQUENCE.fetch_add(1, Ordering::Relaxed)),
            str::to_owned,
        );
    let path = request.uri().path().to_owned();
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
    span.in_scope(|| {
        if path.starts_with("/api/") {
            tracing::info!(method, path, status, duration_ms, "Request answered.");
        } else {
            tracing::debug!(method, path, status, duration_ms, "Request answered.");
        }
    });
    let mut response = response;
    if let Ok(value) = request_id.parse() {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}
