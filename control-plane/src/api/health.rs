//! `/health` (liveness), `/ready` (readiness) and `/metrics`, as CONVENTIONS.md shapes them.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::AppState;
use crate::telemetry::process_disk_percent_used;
use crate::{SERVICE_NAME, VERSION};

/// Disk usage above which the appliance reports itself degraded and not ready.
const DISK_FULL_PERCENT: f64 = 95.0;
const STORE_PING_TIMEOUT: Duration = Duration::from_millis(800);

fn check(ok: bool, message: impl Into<String>) -> Value {
    json!({ "status": if ok { "ok" } else { "error" }, "message": message.into() })
}

async fn checks(state: &AppState) -> (bool, Map<String, Value>) {
    let mut checks = Map::new();
    let store_ok = match tokio::time::timeout(STORE_PING_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => {
            checks.insert("store".into(), check(true, "store answers"));
            true
        }
        Ok(Err(error)) => {
            checks.insert("store".into(), check(false, error.to_string()));
            false
        }
        Err(_) => {
            checks.insert("store".into(), check(false, "store did not answer in time"));
            false
        }
    };
    let listeners_up = state.listeners_up.load(Ordering::Acquire);
    let listeners = state.listeners.read().map(|l| l.len()).unwrap_or(0);
    checks.insert(
        "listeners".into(),
        check(
            listeners_up,
            if listeners_up { format!("{listeners} listening") } else { "starting".to_owned() },
        ),
    );
    let disk_ok = match process_disk_percent_used(&state.data_dir) {
        Some(percent) => {
            let ok = percent < DISK_FULL_PERCENT;
            let mut disk = check(ok, format!("{percent:.1}% used"));
            disk["percent_used"] = json!((percent * 10.0).round() / 10.0);
            checks.insert("disk".into(), disk);
            ok
        }
        None => {
            checks.insert("disk".into(), check(false, "cannot read file system usage"));
            false
        }
    };
    (store_ok && listeners_up && disk_ok, checks)
}

/// Liveness: 200 while the process runs, with each check's status.
#[utoipa::path(get, path = "/health", responses((status = 200, description = "healthy or degraded", body = Object)))]
pub async fn health(State(state): State<AppState>) -> Response {
    let (all_ok, checks) = checks(&state).await;
    Json(json!({
        "status": if all_ok { "healthy" } else { "degraded" },
        "service": SERVICE_NAME,
        "version": VERSION,
        "timestamp": jiff::Timestamp::now().to_string(),
        "checks": checks,
    }))
    .into_response()
}

/// Readiness: 200 when every check passes, 503 otherwise.
#[utoipa::path(get, path = "/ready", responses(
    (status = 200, description = "Ready", body = Object),
    (status = 503, description = "Not ready", body = Object),
))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let (ready, checks) = checks(&state).await;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "ready": ready,
        "service": SERVICE_NAME,
        "timestamp": jiff::Timestamp::now().to_string(),
        "checks": checks,
    });
    (status, Json(body)).into_response()
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(),
    )
        .into_response()
}
