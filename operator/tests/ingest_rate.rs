//! `status.ingestRate`: with `spec.apiKeySecretRef` set, a reconcile reads the API key from
//! the Secret (fake API server), `GET /api/v1/nodes` from the control plane (a stand-in
//! served by the test, which checks the bearer key) and writes the sum of the nodes'
//! rates through the status subresource. A control plane that cannot be reached, or a
//! missing Secret, is a False `IngestRateReported` condition and one Warning Event, never
//! a failed reconcile.

use std::sync::{Arc, Mutex};

use http::Method;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use killkrill_operator::controller::{self, Context, INGEST_RATE_REPORTED, RESYNC_RATE};
use killkrill_operator::crd::{Ingestor, SecretKeyRef};
use killkrill_operator::telemetry::Metrics;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use crate::fake_api::FakeApi;
use crate::fixtures;

const INGESTOR: &str = "/apis/killkrill.io/v1alpha1/namespaces/logs/ingestors/edge";
const DAEMON_SET: &str = "/apis/apps/v1/namespaces/logs/daemonsets/edge";
const SECRET: &str = "/api/v1/namespaces/logs/secrets/killkrill-api";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/logs/events";
const KEY: &str = "kk_operator-test-key";

/// A stand-in `GET /api/v1/nodes` on 127.0.0.1: answers `nodes` to the right bearer key,
/// 401 otherwise, and keeps every Authorization header it saw.
struct FakeNodes {
    url: String,
    nodes: Arc<Mutex<Value>>,
    authorizations: Arc<Mutex<Vec<String>>>,
}

impl FakeNodes {
    async fn start(nodes: Value) -> Self {
        use axum::http::{HeaderMap, StatusCode};
        let nodes = Arc::new(Mutex::new(nodes));
        let authorizations = Arc::new(Mutex::new(Vec::new()));
        let router = axum::Router::new().route(
            "/api/v1/nodes",
            axum::routing::get({
                let (nodes, authorizations) = (nodes.clone(), authorizations.clone());
                move |headers: HeaderMap| async move {
                    let header =
                        headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    authorizations.lock().unwrap().push(header.clone());
                    if header != format!("Bearer {KEY}") {
                        return Err(StatusCode::UNAUTHORIZED);
                    }
                    Ok(axum::Json(nodes.lock().unwrap().clone()))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url, nodes, authorizations }
    }
}

fn spec_with_key() -> killkrill_operator::crd::IngestorSpec {
    killkrill_operator::crd::IngestorSpec {
        api_key_secret_ref: Some(SecretKeyRef { name: "killkrill-api".into(), key: "api-key".into() }),
        ..fixtures::spec()
    }
}

fn insert_secret(fake: &FakeApi, key: &str) {
    let mut secret = Secret::default();
    secret.metadata.name = Some("killkrill-api".into());
    secret.metadata.namespace = Some("logs".into());
    secret.data = Some([("api-key".to_string(), ByteString(key.as_bytes().to_vec()))].into());
    fake.insert(SECRET, serde_json::to_value(secret).unwrap());
}

/// The DaemonSet reports every node ready, so the Ingestor is Ready.
fn all_nodes_ready(fake: &FakeApi, nodes: i32) {
    let mut daemon_set = fake.get(DAEMON_SET).expect("DaemonSet");
    let generation = daemon_set["metadata"]["generation"].clone();
    daemon_set["status"] = json!({
        "currentNumberScheduled": nodes, "desiredNumberScheduled": nodes, "numberMisscheduled": 0,
        "numberReady": nodes, "updatedNumberScheduled": nodes, "observedGeneration": generation,
    });
    fake.insert(DAEMON_SET, daemon_set);
}

fn stored(fake: &FakeApi) -> Ingestor {
    serde_json::from_value(fake.get(INGESTOR).expect("Ingestor")).unwrap()
}

async fn reconcile(fake: &FakeApi, context: &Arc<Context>) -> Result<Action, killkrill_operator::Error> {
    controller::reconcile(Arc::new(stored(fake)), context.clone()).await
}

fn events(fake: &FakeApi) -> Vec<Value> {
    fake.requests()
        .into_iter()
        .filter(|request| request.method == Method::POST && request.path.starts_with(EVENTS))
        .map(|request| request.body)
        .collect()
}

fn rate_condition(ingestor: &Ingestor) -> (String, String, String) {
    let condition = ingestor
        .status
        .as_ref()
        .and_then(|status| status.condition(INGEST_RATE_REPORTED))
        .unwrap_or_else(|| panic!("no {INGEST_RATE_REPORTED} in {:?}", ingestor.status));
    (condition.status.clone(), condition.reason.clone(), condition.message.clone())
}

#[tokio::test]
async fn the_nodes_rates_are_summed_into_the_status() {
    let nodes = FakeNodes::start(json!({"count": 3, "nodes": [
        {"node_name": "node-a", "status": "up", "ingest_rate": 1500.5},
        {"node_name": "node-b", "status": "up", "ingest_rate": 499.5},
        {"node_name": "node-c", "status": "stale", "ingest_rate": 9000.0},
    ]}))
    .await;
    let fake = FakeApi::default();
    fake.insert(INGESTOR, serde_json::to_value(fixtures::ingestor(spec_with_key())).unwrap());
    insert_secret(&fake, KEY);
    let context =
        Arc::new(Context::new(fake.client(), Arc::new(Metrics::new())).with_nodes_base_url(&nodes.url));

    reconcile(&fake, &context).await.expect("first reconcile");
    all_nodes_ready(&fake, 2);
    let action = reconcile(&fake, &context).await.expect("reconcile");
    assert_eq!(action, Action::requeue(RESYNC_RATE), "a ready Ingestor comes back for fresh figures");
    let status = stored(&fake).status.expect("status");
    assert_eq!(status.ingest_rate, Some(2000.0), "the stale node is left out");
    assert_eq!(status.nodes_reporting, Some(2));
    let (reported, reason, message) = rate_condition(&stored(&fake));
    assert_eq!((reported.as_str(), reason.as_str()), ("True", "Reported"));
    assert!(message.contains("2 nodes"), "{message}");
    let authorizations = nodes.authorizations.lock().unwrap().clone();
    assert!(!authorizations.is_empty() && authorizations.iter().all(|h| h == &format!("Bearer {KEY}")));
    // Written through the status subresource.
    let status_writes: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|request| request.path == format!("{INGESTOR}/status"))
        .map(|request| request.body)
        .collect();
    assert!(status_writes.iter().any(|body| body["status"]["ingestRate"] == 2000.0), "{status_writes:?}");

    // Unchanged figures: no write (after the pass that sizes the PDB for the two nodes).
    // New figures: a status write.
    reconcile(&fake, &context).await.expect("reconcile");
    fake.clear_requests();
    reconcile(&fake, &context).await.expect("reconcile");
    assert!(fake.requests().iter().all(|request| !request.is_write()), "nothing changed, nothing written");
    *nodes.nodes.lock().unwrap() =
        json!({"count": 1, "nodes": [{"node_name": "node-a", "status": "up", "ingest_rate": 42.0}]});
    reconcile(&fake, &context).await.expect("reconcile");
    assert_eq!(stored(&fake).status.unwrap().ingest_rate, Some(42.0));
}

#[tokio::test]
async fn an_unreachable_control_plane_is_a_condition_and_one_event_not_a_failure() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let fake = FakeApi::default();
    let mut ingestor = fixtures::ingestor(spec_with_key());
    // Figures from an earlier read stay, marked stale by the condition.
    ingestor.status = Some(killkrill_operator::crd::IngestorStatus {
        ingest_rate: Some(77.0),
        nodes_reporting: Some(1),
        ..Default::default()
    });
    fake.insert(INGESTOR, serde_json::to_value(ingestor).unwrap());
    insert_secret(&fake, KEY);
    let context = Arc::new(Context::new(fake.client(), Arc::new(Metrics::new())).with_nodes_base_url(&url));

    reconcile(&fake, &context).await.expect("an unreachable control plane does not fail the reconcile");
    let status = stored(&fake).status.expect("status");
    assert_eq!(status.ingest_rate, Some(77.0));
    let (reported, reason, message) = rate_condition(&stored(&fake));
    assert_eq!((reported.as_str(), reason.as_str()), ("False", "ControlPlaneUnreachable"));
    assert!(message.contains("/api/v1/nodes"), "{message}");
    let warnings: Vec<Value> =
        events(&fake).into_iter().filter(|event| event["reason"] == "ControlPlaneUnreachable").collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["type"], "Warning");

    // Still unreachable: no second Event.
    reconcile(&fake, &context).await.expect("reconcile");
    let warnings =
        events(&fake).into_iter().filter(|event| event["reason"] == "ControlPlaneUnreachable").count();
    assert_eq!(warnings, 1, "an Event when it turns bad, not on every pass");
}

#[tokio::test]
async fn a_missing_secret_or_a_wrong_key_is_reported() {
    let nodes = FakeNodes::start(json!({"count": 0, "nodes": []})).await;
    let fake = FakeApi::default();
    fake.insert(INGESTOR, serde_json::to_value(fixtures::ingestor(spec_with_key())).unwrap());
    let context =
        Arc::new(Context::new(fake.client(), Arc::new(Metrics::new())).with_nodes_base_url(&nodes.url));

    reconcile(&fake, &context).await.expect("no Secret is not a reconcile failure");
    let (reported, reason, message) = rate_condition(&stored(&fake));
    assert_eq!((reported.as_str(), reason.as_str()), ("False", "NoCredentials"));
    assert!(message.contains("killkrill-api") && message.contains("does not exist"), "{message}");
    assert!(nodes.authorizations.lock().unwrap().is_empty(), "no request without a key");

    insert_secret(&fake, "kk_wrong");
    reconcile(&fake, &context).await.expect("reconcile");
    let (reported, reason, message) = rate_condition(&stored(&fake));
    assert_eq!((reported.as_str(), reason.as_str()), ("False", "ControlPlaneUnreachable"));
    assert!(message.contains("401"), "{message}");

    insert_secret(&fake, KEY);
    reconcile(&fake, &context).await.expect("reconcile");
    let status = stored(&fake).status.expect("status");
    assert_eq!((status.ingest_rate, status.nodes_reporting), (Some(0.0), Some(0)));
    assert_eq!(rate_condition(&stored(&fake)).0, "True");
}

#[tokio::test]
async fn without_a_key_reference_no_rate_is_read_or_reported() {
    let fake = FakeApi::default();
    fake.insert(INGESTOR, serde_json::to_value(fixtures::ingestor(fixtures::spec())).unwrap());
    let context = Arc::new(
        Context::new(fake.client(), Arc::new(Metrics::new())).with_nodes_base_url("http://127.0.0.1:1"),
    );
    reconcile(&fake, &context).await.expect("reconcile");
    let status = stored(&fake).status.expect("status");
    assert_eq!(status.ingest_rate, None);
    assert!(status.condition(INGEST_RATE_REPORTED).is_none());
}
