//! `/health`, `/ready` and `/metrics` (Prometheus text) on `health_listen`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::agent::Agent;
use crate::capture::CaptureStatus;
use crate::{SERVICE_NAME, VERSION};

pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(agent)
}

/// Serves until `stop` turns true.
pub async fn serve(listener: TcpListener, agent: Arc<Agent>, mut stop: watch::Receiver<bool>) {
    let shutdown = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    if let Err(error) = axum::serve(listener, router(agent)).with_graceful_shutdown(shutdown).await {
        tracing::error!(error = %error, "The health server failed.");
    }
}

fn xdp_check(status: &CaptureStatus) -> serde_json::Value {
    match status {
        CaptureStatus::Off => {
            json!({ "status": "ok", "message": "XDP not wanted (socket mode or no interface)" })
        }
        CaptureStatus::Attached { interface, mode, pinned, .. } => json!({
            "status": "ok",
            "message": format!("attached to {interface} ({mode}{})", if *pinned { ", pinned" } else { "" }),
        }),
        CaptureStatus::Failed { reason } => json!({ "status": "error", "message": reason }),
    }
}

async fn health(State(agent): State<Arc<Agent>>) -> Json<serde_json::Value> {
    let (status, _) = agent.capture_snapshot();
    let xdp = xdp_check(&status);
    let control_plane = match agent.last_heartbeat_error() {
        None => {
            json!({ "status": "ok", "message": format!("{} heartbeats sent", agent.heartbeats_ok.load(Ordering::Relaxed)) })
        }
        Some(error) => json!({ "status": "error", "message": error }),
    };
    let healthy = xdp["status"] == "ok" && control_plane["status"] == "ok";
    Json(json!({
        "status": if healthy { "healthy" } else { "degraded" },
        "service": SERVICE_NAME,
        "version": VERSION,
        "timestamp": jiff::Timestamp::now().to_string(),
        "checks": { "xdp": xdp, "control_plane": control_plane },
    }))
}

/// Ready once started: XDP is attached, or not wanted, or (in `auto`) refused, in which
/// case the appliance runs on its sockets and the agent still reports.
async fn ready(State(agent): State<Arc<Agent>>) -> Json<serde_json::Value> {
    let (status, _) = agent.capture_snapshot();
    Json(json!({
        "ready": true,
        "service": SERVICE_NAME,
        "timestamp": jiff::Timestamp::now().to_string(),
        "checks": { "xdp": xdp_check(&status) },
    }))
}

async fn metrics(State(agent): State<Arc<Agent>>) -> Response {
    let (status, counters) = agent.capture_snapshot();
    let mut text = String::with_capacity(4096);
    let _ =
        writeln!(text, "# HELP killkrill_agent_xdp_attached 1 when the XDP program is attached, by mode.");
    let _ = writeln!(text, "# TYPE killkrill_agent_xdp_attached gauge");
    for mode in ["native", "generic"] {
        let value = u8::from(status.attach_mode().is_some_and(|attached| attached.label() == mode));
        let _ = writeln!(text, "killkrill_agent_xdp_attached{{mode=\"{mode}\"}} {value}");
    }
    if let Some(counters) = counters {
        let _ = writeln!(
            text,
            "# HELP killkrill_xdp_packets_total Packets the XDP program saw, by listener and verdict."
        );
        let _ = writeln!(text, "# TYPE killkrill_xdp_packets_total counter");
        for (listener, reason, value) in counters.iter() {
            let _ = writeln!(
                text,
                "killkrill_xdp_packets_total{{listener=\"{}\",reason=\"{}\"}} {value}",
                listener.label(),
                reason.label()
            );
        }
    }
    for (name, help, pairs) in [
        (
            "killkrill_agent_config_reloads_total",
            "Configuration reloads (SIGHUP), by result.",
            [("ok", &agent.reloads_ok), ("error", &agent.reloads_failed)],
        ),
        (
            "killkrill_agent_heartbeats_total",
            "Heartbeats sent to the control plane, by result.",
            [("ok", &agent.heartbeats_ok), ("error", &agent.heartbeats_failed)],
        ),
    ] {
        let _ = writeln!(text, "# HELP {name} {help}");
        let _ = writeln!(text, "# TYPE {name} counter");
        for (result, counter) in pairs {
            let _ = writeln!(text, "{name}{{result=\"{result}\"}} {}", counter.load(Ordering::Relaxed));
        }
    }
    for (name, help, pairs) in [(
        "killkrill_agent_config_polls_total",
        "Polls of the control plane's live configuration, by result.",
        [
            ("applied", &agent.config_polls_applied),
            ("unchanged", &agent.config_polls_unchanged),
            ("error", &agent.config_polls_failed),
        ],
    )] {
        let _ = writeln!(text, "# HELP {name} {help}");
        let _ = writeln!(text, "# TYPE {name} counter");
        for (result, counter) in pairs {
            let _ = writeln!(text, "{name}{{result=\"{result}\"}} {}", counter.load(Ordering::Relaxed));
        }
    }
    if let Some((resident, cpu_seconds)) = process_figures() {
        let _ = writeln!(text, "# HELP process_resident_memory_bytes Resident memory size in bytes.");
        let _ = writeln!(text, "# TYPE process_resident_memory_bytes gauge");
        let _ = writeln!(text, "process_resident_memory_bytes {resident}");
        let _ = writeln!(text, "# HELP process_cpu_seconds_total User and system CPU time spent in seconds.");
        let _ = writeln!(text, "# TYPE process_cpu_seconds_total counter");
        let _ = writeln!(text, "process_cpu_seconds_total {cpu_seconds}");
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// Resident bytes and CPU seconds of this process, from /proc.
pub fn process_figures() -> Option<(u64, f64)> {
    // SAFETY: sysconf has no preconditions.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
    // SAFETY: as above.
    let ticks = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok().filter(|t| *t > 0)?;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces and parentheses).
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some((resident_pages * page, (user + system) as f64 / ticks as f64))
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": { "code": "not_found", "message": "no such endpoint" } })))
        .into_response()
}
