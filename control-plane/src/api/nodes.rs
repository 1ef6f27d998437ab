//! `POST /api/v1/nodes/heartbeat` and `GET /api/v1/nodes`: the node agents report in
//! (docs/agent.md) and the control plane lists who did and when.
//!
//! The list lives in memory: it is rebuilt from the next round of heartbeats after a
//! restart, which costs at most one interval and needs no store schema.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;
use crate::Error;

/// Missed intervals after which a node is listed as stale.
pub const STALE_AFTER_INTERVALS: u32 = 3;
/// Nodes remembered at most; a heartbeat from one more is refused rather than letting a
/// misbehaving client grow the map without bound.
pub const MAX_NODES: usize = 10_000;
const MAX_NAME_BYTES: usize = 253;
const MAX_INTERVAL_SECONDS: f64 = 86_400.0;

/// What an agent sends.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// The node's name (Kubernetes node name or host name); the key of the list.
    pub node_name: String,
    /// The agent's version.
    pub version: String,
    /// The interface XDP is configured for; empty when none.
    pub interface: String,
    /// The configured capture mode: `auto`, `xdp`, `native`, `generic` or `socket`.
    pub capture_mode: String,
    /// How the program is attached: `native`, `generic`, or null when it is not.
    pub attach_mode: Option<String>,
    /// Whether the attachment is pinned (outlives the agent).
    #[serde(default)]
    pub pinned: bool,
    /// The XDP counters: listener → reason → packets.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub counters: serde_json::Map<String, Value>,
    /// Seconds between heartbeats; the node is stale after three missed.
    pub heartbeat_interval_seconds: f64,
}

struct NodeEntry {
    heartbeat: Heartbeat,
    last_seen: jiff::Timestamp,
    last_seen_at: Instant,
}

/// The nodes heard from, by name.
#[derive(Default)]
pub struct NodeRegistry {
    nodes: Mutex<HashMap<String, NodeEntry>>,
}

impl NodeRegistry {
    fn record(&self, heartbeat: Heartbeat) -> Result<(), Error> {
        let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        if nodes.len() >= MAX_NODES && !nodes.contains_key(&heartbeat.node_name) {
            return Err(Error::BadRequest {
                parameter: "node_name",
                message: format!("already {MAX_NODES} nodes listed; refusing a new one"),
            });
        }
        let entry = NodeEntry { heartbeat, last_seen: jiff::Timestamp::now(), last_seen_at: Instant::now() };
        nodes.insert(entry.heartbeat.node_name.clone(), entry);
        Ok(())
    }

    fn list(&self) -> Vec<Value> {
        let nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut listed: Vec<&NodeEntry> = nodes.values().collect();
        listed.sort_by(|a, b| a.heartbeat.node_name.cmp(&b.heartbeat.node_name));
        listed
            .into_iter()
            .map(|entry| {
                let since = entry.last_seen_at.elapsed();
                let interval = Duration::from_secs_f64(entry.heartbeat.heartbeat_interval_seconds);
                let stale = since > interval * STALE_AFTER_INTERVALS;
                let mut value = serde_json::to_value(&entry.heartbeat).unwrap_or(Value::Null);
                if let Value::Object(object) = &mut value {
                    object.insert("last_seen".into(), entry.last_seen.to_string().into());
                    object.insert("seconds_since_last_seen".into(), json!(since.as_secs_f64()));
                    object.insert("status".into(), if stale { "stale" } else { "up" }.into());
                }
                value
            })
            .collect()
    }
}

fn check(heartbeat: &Heartbeat) -> Result<(), Error> {
    let bad = |parameter, message: &str| Error::BadRequest { parameter, message: message.to_owned() };
    if heartbeat.node_name.trim().is_empty() || heartbeat.node_name.len() > MAX_NAME_BYTES {
        return Err(bad("node_name", "must be 1 to 253 bytes"));
    }
    let interval = heartbeat.heartbeat_interval_seconds;
    if !interval.is_finite() || interval <= 0.0 || interval > MAX_INTERVAL_SECONDS {
        return Err(bad("heartbeat_interval_seconds", "must be above 0 and at most 86400"));
    }
    Ok(())
}

/// Records a node agent's heartbeat.
#[utoipa::path(post, path = "/api/v1/nodes/heartbeat", request_body = Heartbeat, responses(
    (status = 204, description = "Recorded"),
    (status = 400, description = "Not a heartbeat, or a field out of range", body = super::openapi::ErrorAnswer),
))]
pub async fn heartbeat(State(state): State<AppState>, body: Bytes) -> Result<StatusCode, ApiError> {
    let heartbeat: Heartbeat = serde_json::from_slice(&body)
        .map_err(|error| Error::BadRequest { parameter: "body", message: error.to_string() })?;
    check(&heartbeat)?;
    state.nodes.record(heartbeat)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The nodes that sent a heartbeat since the control plane started, `up` or `stale`
/// (no heartbeat for three of its intervals).
#[utoipa::path(get, path = "/api/v1/nodes", responses(
    (status = 200, description = "`{count, nodes: [heartbeat + last_seen, seconds_since_last_seen, status]}`", body = Object),
))]
pub async fn list(State(state): State<AppState>) -> Json<Value> {
    let nodes = state.nodes.list();
    Json(json!({ "count": nodes.len(), "nodes": nodes }))
}
