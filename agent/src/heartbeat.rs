//! The heartbeat: `POST <control_plane_url>/api/v1/nodes/heartbeat` every interval with
//! the node's name, capture mode, attachment and counters, authenticated with the
//! configured maintainer API key. A failure is logged once when it
//! starts and once when it ends, counted, and shown in `/health`; the next beat retries.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::agent::Agent;

pub const HEARTBEAT_PATH: &str = "/api/v1/nodes/heartbeat";

pub async fn run(agent: Arc<Agent>, period: Duration, mut stop: watch::Receiver<bool>) {
    let base = agent.config().control_plane_url;
    if base.is_empty() {
        tracing::info!("No control_plane_url: no heartbeat.");
        return;
    }
    let url = format!("{}{HEARTBEAT_PATH}", base.trim_end_matches('/'));
    let client = match control_plane_client(period) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(error = %error, "Cannot build the heartbeat client; no heartbeat.");
            return;
        }
    };
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let body = agent.heartbeat_body();
        // Read per beat: a configuration reload may bring a new key.
        let api_key = agent.config().api_key;
        let mut request = client.post(&url).json(&body);
        if !api_key.is_empty() {
            request = request.bearer_auth(&api_key.0);
        }
        let outcome = match request.send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) if matches!(response.status().as_u16(), 401 | 403) => Err(format!(
                "the control plane answered {}: set api_key ({}) to a maintainer API key",
                response.status(),
                crate::config::API_KEY_VARIABLE
            )),
            Ok(response) => Err(format!("the control plane answered {}", response.status())),
            Err(error) => Err(format!("cannot reach the control plane: {error}")),
        };
        match outcome {
            Ok(()) => {
                if failing {
                    tracing::info!(url = %url, "Heartbeats reach the control plane again.");
                    failing = false;
                }
                agent.record_heartbeat(None);
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(url = %url, error = %error, "Heartbeat failed; retrying every interval.");
                    failing = true;
                }
                agent.record_heartbeat(Some(error));
            }
        }
    }
}

/// The HTTP client for the control plane (heartbeats and configuration polls): a request
/// may take at most one `period`, and 5 s.
pub(crate) fn control_plane_client(period: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(period.min(Duration::from_secs(5)))
        .user_agent(concat!("killkrill-agent/", env!("CARGO_PKG_VERSION")))
        .build()
}
