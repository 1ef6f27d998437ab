//! `GET /api/v1/stats`: what the appliance has taken in, dropped and stored, by listener
//! and stage, which capture path it uses, and what the store holds.

use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use killkrill_dataplane::capture::{CaptureStatus, XdpProgram};
use killkrill_dataplane::cores::RuntimeStatus;
use killkrill_dataplane::counters::ListenerCounters;
use killkrill_dataplane::listener::ListenerKind;
use serde_json::{Map, Value, json};

use super::AppState;
use super::error::ApiError;
use crate::store::rfc3339_with_digits;

fn listener_stats(counters: &ListenerCounters) -> Value {
    let read = ListenerCounters::read;
    let mut stats = json!({
        "listener": counters.listener.label(),
        "capture": counters.capture.label(),
        "received_messages": read(&counters.received_messages),
        "received_bytes": read(&counters.received_bytes),
        "parse_errors": read(&counters.parse_errors),
        "handed_off_batches": read(&counters.handed_off_batches),
        "receive_errors": read(&counters.receive_errors),
        "journal_errors": read(&counters.journal_errors),
        "dropped": {
            "capture_ring_full": read(&counters.dropped_capture_full),
            "handoff_ring_full": read(&counters.dropped_handoff_full),
            "shutdown_store_gone": read(&counters.dropped_shutdown),
            "denied": read(&counters.dropped_denied),
            "rate_limited": read(&counters.dropped_rate_limited),
        },
        "frames_flagged": {
            "truncated": read(&counters.truncated_frames),
            "incomplete": read(&counters.incomplete_frames),
            "framing_error": read(&counters.framing_errors),
        },
        "connections": {
            "accepted": read(&counters.connections_accepted),
            "closed": read(&counters.connections_closed),
            "closed_hopeless": read(&counters.connections_closed_hopeless),
        },
    });
    if let Some(choice) = counters.socket_receive() {
        stats["socket_receive"] = json!(choice.method.label());
        stats["socket_receive_fallback"] = json!(choice.fallback);
    }
    if counters.listener == ListenerKind::SyslogTls {
        stats["tls_handshakes"] = json!({
            "completed": read(&counters.tls_handshakes_completed),
            "failed": read(&counters.tls_handshake_failures),
            "client_certificate_rejected": read(&counters.tls_client_certificates_rejected),
            "timed_out": read(&counters.tls_handshake_timeouts),
        });
    }
    stats
}

fn capture_stats(status: &CaptureStatus) -> Value {
    match status {
        CaptureStatus::Socket { fallback } => {
            json!({ "path": status.label(), "summary": status.summary(), "fallback_reason": fallback })
        }
        CaptureStatus::Xdp { interface, attach, queues, program } => json!({
            "path": status.label(),
            "summary": status.summary(),
            "program": program.label(),
            "pin_dir": match program {
                XdpProgram::Agent { pin_dir } => Some(pin_dir.display().to_string()),
                XdpProgram::Own => None,
            },
            "interface": interface,
            "attach": attach.label(),
            "queues": queues.iter().map(|(queue, bind)| json!({ "queue": queue, "bind": bind.label() })).collect::<Vec<_>>(),
        }),
    }
}

/// The data plane's runtime: `glommio` or `threads`, why not glommio, its cores, and the
/// CPUs the control plane runs on (the rest).
fn runtime_stats(status: &RuntimeStatus) -> Value {
    json!({
        "kind": status.kind.label(),
        "fallback_reason": status.fallback_reason,
        "cores": status.cores.iter().map(|core| json!({ "cpu": core.cpu, "node": core.node })).collect::<Vec<_>>(),
        "control_plane_cpus": status.control_plane_cpus,
    })
}

/// Intake, drops, capture path and store figures (docs/api.md shows the shape).
#[utoipa::path(get, path = "/api/v1/stats", responses(
    (status = 200, description = "Counters by listener and stage, capture path, store figures", body = Object),
    (status = 503, description = "The store does not answer", body = super::openapi::ErrorAnswer),
))]
pub async fn stats(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let store = state.store.stats().await?;
    let time = |nanos: Option<i64>| nanos.and_then(|nanos| rfc3339_with_digits(nanos, 9));
    let writer = &state.store_counters;
    let capture = state.capture.read().unwrap_or_else(PoisonError::into_inner).clone();
    let xdp = capture.xdp.as_ref().and_then(|xdp| {
        let counters = xdp.lock().unwrap_or_else(PoisonError::into_inner).counters().ok()?;
        let mut by_listener: Map<String, Value> = Map::new();
        for (listener, reason, value) in counters.iter() {
            let entry = by_listener.entry(listener.label()).or_insert_with(|| json!({}));
            entry[reason.label()] = json!(value);
        }
        Some(Value::Object(by_listener))
    });
    Ok(Json(json!({
        "capture": capture_stats(&capture.status),
        "runtime": runtime_stats(&state.runtime),
        "listeners": killkrill_dataplane::counters::snapshot(&state.listener_counters).iter().map(|c| listener_stats(c)).collect::<Vec<_>>(),
        "xdp": xdp,
        "writer": {
            "stored_messages": writer.stored_messages.load(Ordering::Relaxed),
            "stored_batches": writer.stored_batches.load(Ordering::Relaxed),
            "stored_blocks": writer.stored_blocks.load(Ordering::Relaxed),
            "write_errors": writer.write_errors.load(Ordering::Relaxed),
        },
        "spool": {
            "blocks": writer.spool_blocks.load(Ordering::Relaxed),
            "bytes": writer.spool_bytes.load(Ordering::Relaxed),
            "written_blocks": writer.spooled_blocks.load(Ordering::Relaxed),
            "written_messages": writer.spooled_messages.load(Ordering::Relaxed),
            "drained_blocks": writer.drained_blocks.load(Ordering::Relaxed),
            "full": writer.spool_full.load(Ordering::Relaxed),
            "damaged": writer.spool_damaged.load(Ordering::Relaxed),
        },
        "store": {
            "backend": state.store_backend,
            "blocks": store.blocks,
            "messages": store.messages,
            "raw_bytes": store.raw_bytes,
            "stored_bytes": store.stored_bytes,
            "compression_ratio": if store.stored_bytes > 0 { store.raw_bytes as f64 / store.stored_bytes as f64 } else { 0.0 },
            "oldest_received_at": time(store.oldest_received_ns),
            "newest_received_at": time(store.newest_received_ns),
            "compacted_blocks": store.compacted_blocks,
            "merged_blocks": store.merged_blocks,
        },
        "compaction": {
            "enabled": state.compaction_enabled,
            "windows": writer.compaction_windows.load(Ordering::Relaxed),
            "merged_windows": writer.compaction_merged_windows.load(Ordering::Relaxed),
            "blocks_read": writer.compaction_blocks_read.load(Ordering::Relaxed),
            "blocks_written": writer.compaction_blocks_written.load(Ordering::Relaxed),
            "messages": writer.compaction_messages.load(Ordering::Relaxed),
            "undecodable_blocks": writer.compaction_undecodable_blocks.load(Ordering::Relaxed),
            "errors": writer.compaction_errors.load(Ordering::Relaxed),
            "seconds": writer.compaction_micros.load(Ordering::Relaxed) as f64 / 1e6,
        },
    })))
}
