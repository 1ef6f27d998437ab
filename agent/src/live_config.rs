//! The control plane's live configuration: every `config_poll_interval` the agent reads
//! `GET /api/v1/config/sources` and `GET /api/v1/config/rate-limits` (with the API key as
//! a bearer token) and writes what changed into the XDP maps, through the same path as a
//! SIGHUP reload. Once the control plane has answered, its allow/deny lists and rate limit
//! replace the file's; the steered ports stay the file's (the listeners are the node's).
//! A poll that fails changes nothing: the last lists stay in force (docs/agent.md).

use std::sync::Arc;
use std::time::Duration;

use killkrill_dataplane::xdp::{RateLimit, SourcePrefix, XdpSteering, parse_prefixes};
use reqwest::StatusCode;
use serde::Deserialize;
use tokio::sync::watch;

use crate::agent::Agent;

pub const SOURCES_PATH: &str = "/api/v1/config/sources";
pub const RATE_LIMITS_PATH: &str = "/api/v1/config/rate-limits";

/// `GET /api/v1/config/sources`. Fields the agent does not know are ignored, so a newer
/// control plane can add some.
#[derive(Debug, Deserialize)]
struct SourcesDocument {
    allow: Vec<String>,
    deny: Vec<String>,
}

/// `GET /api/v1/config/rate-limits`.
#[derive(Debug, Deserialize)]
struct RateLimitsDocument {
    per_source: Option<PerSourceLimit>,
}

#[derive(Debug, Deserialize)]
struct PerSourceLimit {
    messages_per_second: u64,
    burst: u64,
}

/// What the control plane says the maps should hold, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFilters {
    pub allow: Vec<SourcePrefix>,
    pub deny: Vec<SourcePrefix>,
    pub rate_limit: Option<RateLimit>,
}

impl RemoteFilters {
    /// `filters` (the file's) with the lists and rate limit replaced by these; the ports
    /// stay the file's.
    pub fn over(&self, filters: crate::config::Filters) -> crate::config::Filters {
        crate::config::Filters {
            allow: self.allow.clone(),
            deny: self.deny.clone(),
            rate_limit: self.rate_limit,
            ..filters
        }
    }

    /// Parses and checks the two documents; the error names the field at fault.
    pub fn from_documents(sources: &[u8], rate_limits: &[u8]) -> Result<Self, String> {
        let sources: SourcesDocument =
            serde_json::from_slice(sources).map_err(|error| format!("{SOURCES_PATH}: {error}"))?;
        let rate_limits: RateLimitsDocument =
            serde_json::from_slice(rate_limits).map_err(|error| format!("{RATE_LIMITS_PATH}: {error}"))?;
        let allow = parse_prefixes(&sources.allow).map_err(|error| format!("sources.allow: {error}"))?;
        let deny = parse_prefixes(&sources.deny).map_err(|error| format!("sources.deny: {error}"))?;
        let rate_limit = match rate_limits.per_source {
            None => None,
            Some(PerSourceLimit { messages_per_second: 0, .. }) => {
                return Err(
                    "rate_limits.per_source.messages_per_second must be above 0 (null: no limit)".into()
                );
            }
            Some(PerSourceLimit { messages_per_second, burst }) => {
                // burst 0 means "as many as the rate", as in the agent's file.
                let limit = RateLimit {
                    per_second: messages_per_second,
                    burst: if burst == 0 { messages_per_second } else { burst },
                };
                XdpSteering::check_rate_limit(&limit)
                    .map_err(|error| format!("rate_limits.per_source: {error}"))?;
                Some(limit)
            }
        };
        Ok(Self { allow, deny, rate_limit })
    }
}

/// Why a poll did not give new filters.
#[derive(Debug)]
enum PollError {
    /// 404: a control plane without live configuration; the file's lists stay.
    NotServed,
    Failed(String),
}

async fn get(client: &reqwest::Client, url: &str, api_key: &str) -> Result<Vec<u8>, PollError> {
    let mut request = client.get(url);
    if !api_key.is_empty() {
        request = request.bearer_auth(api_key);
    }
    let response = request
        .send()
        .await
        .map_err(|error| PollError::Failed(format!("cannot reach the control plane: {error}")))?;
    match response.status() {
        status if status.is_success() => response
            .bytes()
            .await
            .map(|body| body.to_vec())
            .map_err(|error| PollError::Failed(format!("reading {url}: {error}"))),
        StatusCode::NOT_FOUND => Err(PollError::NotServed),
        status @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => Err(PollError::Failed(format!(
            "the control plane answered {status}: set api_key (or KILLKRILL_API_KEY) to a maintainer's API key"
        ))),
        status => Err(PollError::Failed(format!("the control plane answered {status} for {url}"))),
    }
}

async fn poll(client: &reqwest::Client, base: &str, api_key: &str) -> Result<RemoteFilters, PollError> {
    let sources = get(client, &format!("{base}{SOURCES_PATH}"), api_key).await?;
    let rate_limits = get(client, &format!("{base}{RATE_LIMITS_PATH}"), api_key).await?;
    RemoteFilters::from_documents(&sources, &rate_limits).map_err(PollError::Failed)
}

/// Polls every `period` until `stop`; the first poll is at once.
pub async fn run(agent: Arc<Agent>, period: Duration, mut stop: watch::Receiver<bool>) {
    let base = agent.config().control_plane_url.trim_end_matches('/').to_owned();
    if base.is_empty() {
        tracing::info!("No control_plane_url: the allow/deny lists and rate limit come from the file only.");
        return;
    }
    let client = match crate::heartbeat::control_plane_client(period) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(error = %error, "Cannot build the configuration client; the file's lists stay.");
            return;
        }
    };
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The last outcome logged, so a lasting state is said once, not every interval.
    let mut last_problem: Option<String> = None;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        // Read each time: a reload may have changed the key.
        let api_key = agent.config().api_key;
        let outcome = match poll(&client, &base, &api_key.0).await {
            Ok(remote) => agent.apply_remote(remote).map_err(|error| format!("applying it failed: {error}")),
            Err(PollError::NotServed) => Err(format!(
                "the control plane at {base} serves no {SOURCES_PATH} or {RATE_LIMITS_PATH}; the file's lists stay"
            )),
            Err(PollError::Failed(error)) => Err(error),
        };
        match outcome {
            Ok(()) => {
                if last_problem.take().is_some() {
                    tracing::info!(url = %base, "The control plane's configuration is read again.");
                }
            }
            Err(problem) => {
                agent.record_config_poll_failure();
                if last_problem.as_deref() != Some(problem.as_str()) {
                    tracing::warn!(url = %base, error = %problem, "Reading the control plane's configuration failed; the lists in force stay.");
                }
                last_problem = Some(problem);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_in_the_contracts_shape_are_read() {
        let remote = RemoteFilters::from_documents(
            br#"{"allow":["10.0.0.0/8","2001:db8::/32"],"deny":["10.1.2.3/32"]}"#,
            br#"{"per_source":{"messages_per_second":500,"burst":1000}}"#,
        )
        .unwrap();
        assert_eq!(remote.allow, parse_prefixes(&["10.0.0.0/8", "2001:db8::/32"]).unwrap());
        assert_eq!(remote.deny, parse_prefixes(&["10.1.2.3/32"]).unwrap());
        assert_eq!(remote.rate_limit, Some(RateLimit { per_second: 500, burst: 1000 }));
        let open = RemoteFilters::from_documents(
            br#"{"allow":[],"deny":[],"updated_by":"someone"}"#,
            br#"{"per_source":null}"#,
        )
        .unwrap();
        assert_eq!(open, RemoteFilters { allow: vec![], deny: vec![], rate_limit: None });
        let burst_defaults = RemoteFilters::from_documents(
            br#"{"allow":[],"deny":[]}"#,
            br#"{"per_source":{"messages_per_second":7,"burst":0}}"#,
        )
        .unwrap();
        assert_eq!(burst_defaults.rate_limit, Some(RateLimit { per_second: 7, burst: 7 }));
    }

    #[test]
    fn bad_documents_are_refused_naming_the_field() {
        let good_sources = br#"{"allow":[],"deny":[]}"#.as_slice();
        let no_limit = br#"{"per_source":null}"#.as_slice();
        let cases: [(&[u8], &[u8], &str); 5] = [
            (br#"{"allow":["10.0.0.0/33"],"deny":[]}"#, no_limit, "sources.allow"),
            (br#"{"allow":[],"deny":["nonsense"]}"#, no_limit, "sources.deny"),
            (br#"{"deny":[]}"#, no_limit, SOURCES_PATH),
            (good_sources, br#"{"per_source":{"messages_per_second":0,"burst":1}}"#, "messages_per_second"),
            (
                good_sources,
                br#"{"per_source":{"messages_per_second":2000000000,"burst":1}}"#,
                "rate_limits.per_source",
            ),
        ];
        for (sources, rate_limits, field) in cases {
            let error = RemoteFilters::from_documents(sources, rate_limits).unwrap_err();
            assert!(error.contains(field), "{field}: {error}");
        }
    }
}
