//! `status.ingestRate`: the operator reads `GET /api/v1/nodes` from the control plane
//! behind the Ingestor's Service, with the API key `spec.apiKeySecretRef` names, and sums
//! the rates the node agents put in their heartbeats. A failure here is reported (a
//! condition, an Event), never a reconcile failure: the data plane runs either way.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::Value;

use crate::crd::SecretKeyRef;

/// The path read.
pub const NODES_PATH: &str = "/api/v1/nodes";
/// How long one read may take: a reconcile must stay well under a second when the
/// control plane does not answer.
pub const READ_TIMEOUT: Duration = Duration::from_millis(800);

/// What the nodes reported, summed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeRates {
    /// Datagrams a second over the reporting nodes, to one decimal.
    pub ingest_rate: f64,
    pub nodes_reporting: i32,
}

/// Why there is no rate this time; `reason()` is the condition's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RateProblem {
    /// The Secret or its key is missing or not text.
    NoCredentials(String),
    /// The control plane did not answer, or not with 200.
    Unreachable(String),
    /// It answered something that is not a node list.
    BadAnswer(String),
}

impl RateProblem {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoCredentials(_) => "NoCredentials",
            Self::Unreachable(_) => "ControlPlaneUnreachable",
            Self::BadAnswer(_) => "BadAnswer",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Self::NoCredentials(message) | Self::Unreachable(message) | Self::BadAnswer(message) => message,
        }
    }
}

/// The API key from the Secret `reference` names, in `namespace`.
pub async fn read_api_key(
    client: &kube::Client,
    namespace: &str,
    reference: &SecretKeyRef,
) -> Result<String, RateProblem> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets.get_opt(&reference.name).await.map_err(|error| {
        RateProblem::NoCredentials(format!("reading Secret {namespace}/{}: {error}", reference.name))
    })?;
    let secret = secret.ok_or_else(|| {
        RateProblem::NoCredentials(format!("Secret {namespace}/{} does not exist", reference.name))
    })?;
    let bytes = secret.data.as_ref().and_then(|data| data.get(&reference.key)).ok_or_else(|| {
        RateProblem::NoCredentials(format!(
            "Secret {namespace}/{} has no key {:?}",
            reference.name, reference.key
        ))
    })?;
    let key = String::from_utf8(bytes.0.clone()).map_err(|_| {
        RateProblem::NoCredentials(format!(
            "key {:?} of Secret {namespace}/{} is not text",
            reference.key, reference.name
        ))
    })?;
    Ok(key.trim().to_owned())
}

/// Reads `<base_url>/api/v1/nodes` with the key and sums the rates.
pub async fn fetch(http: &reqwest::Client, base_url: &str, api_key: &str) -> Result<NodeRates, RateProblem> {
    let url = format!("{}{NODES_PATH}", base_url.trim_end_matches('/'));
    let response = http
        .get(&url)
        .bearer_auth(api_key)
        .timeout(READ_TIMEOUT)
        .send()
        .await
        .map_err(|error| RateProblem::Unreachable(format!("GET {url}: {error}")))?;
    let status = response.status();
    if !status.is_success() {
        return Err(RateProblem::Unreachable(format!("GET {url} answered {status}")));
    }
    let document: Value = response
        .json()
        .await
        .map_err(|error| RateProblem::BadAnswer(format!("GET {url}: not JSON: {error}")))?;
    sum(&document).map_err(|message| RateProblem::BadAnswer(format!("GET {url}: {message}")))
}

/// Sums `ingest_rate` over the nodes listed `up`; stale nodes and nodes without a rate
/// (socket capture, agents before the field) are left out.
pub fn sum(document: &Value) -> Result<NodeRates, String> {
    let nodes = document["nodes"].as_array().ok_or("no \"nodes\" list")?;
    let mut total = 0.0;
    let mut reporting = 0;
    for node in nodes {
        if node["status"] != "up" {
            continue;
        }
        match &node["ingest_rate"] {
            Value::Null => {}
            Value::Number(rate) => match rate.as_f64() {
                Some(rate) if rate.is_finite() && rate >= 0.0 => {
                    total += rate;
                    reporting += 1;
                }
                _ => return Err(format!("node {} has an ingest_rate out of range", node["node_name"])),
            },
            _ => return Err(format!("node {} has an ingest_rate that is not a number", node["node_name"])),
        }
    }
    Ok(NodeRates { ingest_rate: (total * 10.0).round() / 10.0, nodes_reporting: reporting })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rates_of_up_nodes_are_summed() {
        let document = json!({"count": 4, "nodes": [
            {"node_name": "a", "status": "up", "ingest_rate": 1200.25},
            {"node_name": "b", "status": "up", "ingest_rate": 800.0},
            {"node_name": "c", "status": "stale", "ingest_rate": 5000.0},
            {"node_name": "d", "status": "up", "ingest_rate": null},
            {"node_name": "e", "status": "up"},
        ]});
        assert_eq!(sum(&document).unwrap(), NodeRates { ingest_rate: 2000.3, nodes_reporting: 2 });
        assert_eq!(
            sum(&json!({"count": 0, "nodes": []})).unwrap(),
            NodeRates { ingest_rate: 0.0, nodes_reporting: 0 }
        );
    }

    #[test]
    fn answers_that_are_not_node_lists_are_refused() {
        assert!(sum(&json!({"error": {"code": "unauthorized"}})).unwrap_err().contains("nodes"));
        let bad = json!({"nodes": [{"node_name": "a", "status": "up", "ingest_rate": "fast"}]});
        assert!(sum(&bad).unwrap_err().contains("not a number"));
        let negative = json!({"nodes": [{"node_name": "a", "status": "up", "ingest_rate": -1.0}]});
        assert!(sum(&negative).unwrap_err().contains("out of range"));
    }
}
