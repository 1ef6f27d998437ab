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
    /// Datagrams a second the node's XDP program admitted to steered ports over the last
    /// interval; null (or absent, from agents before it) when not known. The operator
    /// sums it into the Ingestor's `status.ingestRate`.
    #[serde(default)]
    pub ingest_rate: Option<f64>,
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

    /// Every node, as listed at `now`.
    fn list_at(&self, now: Instant) -> Vec<Value> {
        let nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut listed: Vec<&NodeEntry> = nodes.values().collect();
        listed.sort_by(|a, b| a.heartbeat.node_name.cmp(&b.heartbeat.node_name));
        listed
            .into_iter()
            .map(|entry| {
                let since = now.saturating_duration_since(entry.last_seen_at);
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
    if heartbeat.ingest_rate.is_some_and(|rate| !rate.is_finite() || rate < 0.0) {
        return Err(bad("ingest_rate", "must be a finite number, 0 or more"));
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
    let nodes = state.nodes.list_at(Instant::now());
    Json(json!({ "count": nodes.len(), "nodes": nodes }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(name: &str, interval: f64) -> Heartbeat {
        Heartbeat {
            node_name: name.to_owned(),
            version: "0.1.0".to_owned(),
            interface: "eth0".to_owned(),
            capture_mode: "auto".to_owned(),
            attach_mode: Some("native".to_owned()),
            pinned: true,
            counters: serde_json::Map::new(),
            heartbeat_interval_seconds: interval,
            ingest_rate: Some(12.5),
        }
    }

    #[test]
    fn a_node_goes_stale_after_three_of_its_own_intervals() {
        let registry = NodeRegistry::default();
        registry.record(beat("b-fast", 1.0)).unwrap();
        registry.record(beat("a-slow", 10.0)).unwrap();
        let status = |after: Duration| -> Vec<(String, String)> {
            registry
                .list_at(Instant::now() + after)
                .iter()
                .map(|node| {
                    (
                        node["node_name"].as_str().unwrap().to_owned(),
                        node["status"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        };
        assert_eq!(status(Duration::ZERO), [("a-slow".into(), "up".into()), ("b-fast".into(), "up".into())]);
        assert_eq!(
            status(Duration::from_secs(4)),
            [("a-slow".into(), "up".into()), ("b-fast".into(), "stale".into())]
        );
        assert_eq!(
            status(Duration::from_secs(31)),
            [("a-slow".into(), "stale".into()), ("b-fast".into(), "stale".into())]
        );
        // A new heartbeat brings it back.
        registry.record(beat("b-fast", 1.0)).unwrap();
        assert_eq!(status(Duration::ZERO)[1].1, "up");
    }

    #[test]
    fn heartbeats_out_of_range_are_refused_naming_the_field() {
        for (heartbeat, field) in [
            (beat("", 1.0), "node_name"),
            (beat(&"n".repeat(254), 1.0), "node_name"),
            (beat("a", 0.0), "heartbeat_interval_seconds"),
            (beat("a", f64::NAN), "heartbeat_interval_seconds"),
            (beat("a", 86_401.0), "heartbeat_interval_seconds"),
            (Heartbeat { ingest_rate: Some(-1.0), ..beat("a", 1.0) }, "ingest_rate"),
            (Heartbeat { ingest_rate: Some(f64::INFINITY), ..beat("a", 1.0) }, "ingest_rate"),
        ] {
            match check(&heartbeat) {
                Err(Error::BadRequest { parameter, .. }) => assert_eq!(parameter, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        check(&beat("node-a", 10.0)).unwrap();
        check(&Heartbeat { ingest_rate: None, ..beat("node-a", 10.0) }).unwrap();
        // Agents from before the rate existed send no such field.
        let old: Heartbeat = serde_json::from_value(json!({
            "node_name": "old", "version": "0.1.0", "interface": "eth0", "capture_mode": "auto",
            "attach_mode": null, "heartbeat_interval_seconds": 10.0,
        }))
        .unwrap();
        assert_eq!(old.ingest_rate, None);
    }

    #[test]
    fn the_registry_is_bounded() {
        let registry = NodeRegistry::default();
        for index in 0..MAX_NODES {
            registry.record(beat(&format!("n{index}"), 1.0)).unwrap();
        }
        assert!(registry.record(beat("one-more", 1.0)).is_err());
        registry.record(beat("n0", 1.0)).expect("a known node may still report");
    }
}
