//! The reconciler against the fake API server: create, update, no-op, delete with the
//! finalizer, invalid specs, status, and backoff after errors.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use killkrill_operator::controller::{
    self, APPLIED_HASH_ANNOTATION, Context, FINALIZER, RESYNC_DRAINING, RESYNC_PROGRESSING, RESYNC_READY,
};
use killkrill_operator::crd::{Ingestor, ListenerProtocol, ListenerSpec};
use killkrill_operator::telemetry::Metrics;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use crate::fake_api::{FakeApi, Recorded};
use crate::fixtures::{self, NAME, NAMESPACE};

const INGESTOR: &str = "/apis/killkrill.io/v1alpha1/namespaces/logs/ingestors/edge";
const DAEMON_SET: &str = "/apis/apps/v1/namespaces/logs/daemonsets/edge";
const CONFIG_MAP: &str = "/api/v1/namespaces/logs/configmaps/edge-config";
const NETWORK_POLICY: &str = "/apis/networking.k8s.io/v1/namespaces/logs/networkpolicies/edge";
const PDB: &str = "/apis/policy/v1/namespaces/logs/poddisruptionbudgets/edge";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/logs/events";

/// Every owned object's path.
const OWNED: [&str; 8] = [
    "/api/v1/namespaces/logs/serviceaccounts/edge",
    "/apis/rbac.authorization.k8s.io/v1/namespaces/logs/roles/edge",
    "/apis/rbac.authorization.k8s.io/v1/namespaces/logs/rolebindings/edge",
    CONFIG_MAP,
    "/api/v1/namespaces/logs/services/edge",
    DAEMON_SET,
    PDB,
    NETWORK_POLICY,
];

struct Harness {
    fake: FakeApi,
    context: Arc<Context>,
}

impl Harness {
    fn new(ingestor: &Ingestor) -> Self {
        let fake = FakeApi::default();
        fake.insert(INGESTOR, serde_json::to_value(ingestor).expect("serialize Ingestor"));
        let context = Arc::new(Context::new(fake.client(), Arc::new(Metrics::new())));
        Self { fake, context }
    }

    /// The Ingestor as stored now (finalizers, status, resourceVersion).
    fn stored(&self) -> Ingestor {
        serde_json::from_value(self.fake.get(INGESTOR).expect("Ingestor stored"))
            .expect("deserialize Ingestor")
    }

    async fn reconcile(&self, ingestor: Ingestor) -> Result<Action, killkrill_operator::Error> {
        controller::reconcile(Arc::new(ingestor), self.context.clone()).await
    }

    async fn reconcile_stored(&self) -> Result<Action, killkrill_operator::Error> {
        self.reconcile(self.stored()).await
    }

    fn writes(&self) -> Vec<Recorded> {
        self.fake.requests().into_iter().filter(Recorded::is_write).collect()
    }

    /// Server-side applies, as the paths they went to.
    fn applied_paths(&self) -> Vec<String> {
        self.writes()
            .into_iter()
            .filter(|request| {
                request.content_type.starts_with("application/apply-patch")
                    && !request.path.ends_with("/status")
            })
            .map(|request| request.path)
            .collect()
    }

    fn events(&self) -> Vec<Value> {
        self.writes()
            .into_iter()
            .filter(|request| request.path.starts_with(EVENTS))
            .map(|request| request.body)
            .collect()
    }
}

fn condition<'a>(
    ingestor: &'a Ingestor,
    kind: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    ingestor
        .status
        .as_ref()
        .and_then(|status| status.condition(kind))
        .unwrap_or_else(|| panic!("condition {kind} missing in {:?}", ingestor.status))
}

#[tokio::test]
async fn first_reconcile_adds_the_finalizer_applies_every_object_and_reports_status() {
    let harness = Harness::new(&fixtures::ingestor(fixtures::spec()));
    let action = harness.reconcile_stored().await.expect("reconcile");
    // No node has reported yet: check back soon.
    assert_eq!(action, Action::requeue(RESYNC_PROGRESSING));

    let stored = harness.stored();
    assert_eq!(stored.metadata.finalizers, Some(vec![FINALIZER.to_string()]));
    assert_eq!(harness.applied_paths(), OWNED.to_vec(), "every owned object applied once, in order");
    for request in
        harness.writes().iter().filter(|request| request.content_type.starts_with("application/apply-patch"))
    {
        assert!(
            request.query.contains("fieldManager=killkrill-operator") && request.query.contains("force=true"),
            "server-side apply with our field manager, forced: {}?{}",
            request.path,
            request.query
        );
    }
    for request in
        harness.writes().iter().filter(|request| request.content_type.starts_with("application/apply-patch"))
    {
        // Server-side apply needs both in the body.
        assert!(
            request.body["apiVersion"].is_string() && request.body["kind"].is_string(),
            "{}",
            request.path
        );
    }
    for path in OWNED {
        let object = harness.fake.get(path).unwrap_or_else(|| panic!("{path} created"));
        assert!(
            object["metadata"]["annotations"][APPLIED_HASH_ANNOTATION].is_string(),
            "{path} carries the applied hash"
        );
        assert_eq!(
            object["metadata"]["ownerReferences"][0]["uid"],
            fixtures::UID,
            "{path} owned by the Ingestor"
        );
    }

    let status = stored.status.clone().expect("status written");
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!((status.nodes_desired, status.nodes_ready), (0, 0));
    assert_eq!(condition(&stored, "Ready").status, "False");
    assert_eq!(condition(&stored, "Ready").reason, "Pending", "the DaemonSet has no status yet");
    assert_eq!(condition(&stored, "Degraded").status, "False");
    let status_writes: Vec<_> =
        harness.writes().into_iter().filter(|request| request.path == format!("{INGESTOR}/status")).collect();
    assert_eq!(status_writes.len(), 1, "one status write");
    assert!(
        status_writes[0].content_type.starts_with("application/apply-patch"),
        "status by server-side apply"
    );

    let events = harness.events();
    assert_eq!(events.len(), 1, "one Event for the pass: {events:?}");
    assert_eq!(events[0]["reason"], "Applied");
    assert_eq!(events[0]["type"], "Normal");
    assert!(
        events[0]["note"].as_str().unwrap_or_default().contains("created DaemonSet edge"),
        "{}",
        events[0]["note"]
    );
    assert_eq!(events[0]["regarding"]["name"], NAME);
    assert_eq!(events[0]["regarding"]["namespace"], NAMESPACE);
}

#[tokio::test]
async fn reconciling_an_unchanged_ingestor_only_reads() {
    let harness = Harness::new(&fixtures::ingestor(fixtures::spec()));
    harness.reconcile_stored().await.expect("first reconcile");
    harness.fake.clear_requests();

    let action = harness.reconcile_stored().await.expect("second reconcile");
    assert_eq!(action, Action::requeue(RESYNC_PROGRESSING));
    let requests = harness.fake.requests();
    assert!(harness.writes().is_empty(), "no writes on a no-op reconcile: {:?}", harness.writes());
    assert_eq!(requests.len(), OWNED.len(), "one read per owned object and nothing else: {requests:?}");
    let read: Vec<&str> = requests.iter().map(|request| request.path.as_str()).collect();
    assert_eq!(read, OWNED.to_vec());
}

#[tokio::test]
async fn a_spec_change_reapplies_only_the_objects_it_changes() {
    let harness = Harness::new(&fixtures::ingestor(fixtures::spec()));
    harness.reconcile_stored().await.expect("first reconcile");
    let config_before = harness.fake.get(CONFIG_MAP).expect("ConfigMap");
    harness.fake.clear_requests();

    let mut changed = harness.stored();
    changed.spec.listeners.push(ListenerSpec { protocol: ListenerProtocol::Statsd, port: 8125 });
    changed.metadata.generation = Some(2);
    harness.fake.insert(INGESTOR, serde_json::to_value(&changed).expect("serialize"));
    harness.reconcile_stored().await.expect("reconcile after the change");

    assert_eq!(harness.applied_paths(), vec![CONFIG_MAP, DAEMON_SET, NETWORK_POLICY]);
    let config_after = harness.fake.get(CONFIG_MAP).expect("ConfigMap");
    assert_ne!(config_before["data"]["node.toml"], config_after["data"]["node.toml"]);
    assert!(config_after["data"]["node.toml"].as_str().unwrap_or_default().contains("statsd"));
    let daemon_set = harness.fake.get(DAEMON_SET).expect("DaemonSet");
    let ports = &daemon_set["spec"]["template"]["spec"]["containers"][0]["ports"];
    assert!(
        ports
            .as_array()
            .expect("ports")
            .iter()
            .any(|port| port["containerPort"] == 8125 && port["protocol"] == "UDP"),
        "statsd port on the pod: {ports}"
    );

    let events = harness.events();
    assert_eq!(events.len(), 1);
    let note = events[0]["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("updated ConfigMap edge-config") && note.contains("updated DaemonSet edge"),
        "{note}"
    );
    assert_eq!(harness.stored().status.expect("status").observed_generation, Some(2));
}

#[tokio::test]
async fn an_edited_owned_object_is_put_back() {
    let harness = Harness::new(&fixtures::ingestor(fixtures::spec()));
    harness.reconcile_stored().await.expect("first reconcile");
    // Someone replaced the ConfigMap by hand (without our hash annotation).
    harness.fake.insert(
        CONFIG_MAP,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "edge-config"}, "data": {}}),
    );
    harness.fake.clear_requests();

    harness.reconcile_stored().await.expect("reconcile");
    assert_eq!(harness.applied_paths(), vec![CONFIG_MAP]);
    assert!(harness.fake.get(CONFIG_MAP).expect("ConfigMap")["data"]["killkrill.toml"].is_string());
}

#[tokio::test]
async fn status_follows_the_daemon_set() {
    let harness = Harness::new(&fixtures::ingestor(fixtures::spec()));
    harness.reconcile_stored().await.expect("first reconcile");
    let mut daemon_set = harness.fake.get(DAEMON_SET).expect("DaemonSet");
    let generation = daemon_set["metadata"]["generation"].clone();
    daemon_set["status"] = json!({
        "currentNumberScheduled": 3, "desiredNumberScheduled": 3, "numberMisscheduled": 0,
        "numberReady": 3, "updatedNumberScheduled": 3, "observedGeneration": generation,
    });
    harness.fake.insert(DAEMON_SET, daemon_set);

    let action = harness.reconcile_stored().await.expect("reconcile");
    assert_eq!(action, Action::requeue(RESYNC_READY));
    // The next pass sees three nodes in the status and lets only one of them go.
    harness.reconcile_stored().await.expect("reconcile");
    assert_eq!(harness.fake.get(PDB).expect("PDB")["spec"]["minAvailable"], 2);
    let stored = harness.stored();
    let status = stored.status.clone().expect("status");
    assert_eq!((status.nodes_desired, status.nodes_ready), (3, 3));
    assert_eq!(condition(&stored, "Ready").status, "True");
    assert_eq!(condition(&stored, "Ready").reason, "AllNodesReady");
    assert_eq!(condition(&stored, "Progressing").status, "False");

    // One node goes unready: Ready flips, Progressing says why.
    let mut daemon_set = harness.fake.get(DAEMON_SET).expect("DaemonSet");
    daemon_set["status"]["numberReady"] = json!(2);
    harness.fake.insert(DAEMON_SET, daemon_set);
    harness.reconcile_stored().await.expect("reconcile");
    let stored = harness.stored();
    assert_eq!(stored.status.as_ref().expect("status").nodes_ready, 2);
    assert_eq!(condition(&stored, "Ready").status, "False");
    assert_eq!(condition(&stored, "Ready").message, "2 of 3 nodes ready");
    assert_eq!(condition(&stored, "Progressing").status, "True");

    // Nodes scheduled but none matched: NoNodes. Degraded stays False, so it keeps the
    // transition time it had (backdated here to tell it from "now").
    let mut stored_json = harness.fake.get(INGESTOR).expect("Ingestor");
    for condition in stored_json["status"]["conditions"].as_array_mut().expect("conditions") {
        condition["lastTransitionTime"] = json!("2020-01-01T00:00:00Z");
    }
    harness.fake.insert(INGESTOR, stored_json);
    let mut daemon_set = harness.fake.get(DAEMON_SET).expect("DaemonSet");
    daemon_set["status"]["desiredNumberScheduled"] = json!(0);
    daemon_set["status"]["numberReady"] = json!(0);
    harness.fake.insert(DAEMON_SET, daemon_set);
    harness.reconcile_stored().await.expect("reconcile");
    let stored = harness.stored();
    assert_eq!(condition(&stored, "Ready").reason, "NoNodes");
    let since = |kind: &str| condition(&stored, kind).last_transition_time.0.to_string();
    assert_eq!(since("Degraded"), "2020-01-01T00:00:00Z", "an unchanged condition keeps its time");
    assert_eq!(condition(&stored, "Progressing").status, "False");
    assert_ne!(since("Progressing"), "2020-01-01T00:00:00Z", "a changed one is stamped anew");
}

#[tokio::test]
async fn an_invalid_spec_is_reported_as_degraded_with_a_warning_event_and_applies_nothing() {
    let mut spec = fixtures::spec();
    spec.listeners.push(ListenerSpec { protocol: ListenerProtocol::Statsd, port: 70000 });
    spec.data_plane_cores.clear();
    let harness = Harness::new(&fixtures::ingestor(spec));

    let action = harness.reconcile_stored().await.expect("an invalid spec is not a reconcile error");
    assert_eq!(action, Action::await_change());
    assert!(harness.applied_paths().is_empty(), "nothing applied: {:?}", harness.applied_paths());
    let stored = harness.stored();
    let degraded = condition(&stored, "Degraded");
    assert_eq!(degraded.status, "True");
    assert_eq!(degraded.reason, "InvalidSpec");
    assert!(degraded.message.contains("spec.listeners[2].port: 70000 is not a port"), "{}", degraded.message);
    assert!(
        degraded.message.contains("spec.dataPlaneCores: must list at least one core"),
        "{}",
        degraded.message
    );
    assert_eq!(condition(&stored, "Ready").status, "False");
    let events = harness.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "Warning");
    assert_eq!(events[0]["reason"], "InvalidSpec");
    assert!(events[0]["note"].as_str().unwrap_or_default().contains("spec.listeners[2].port"));

    // Reconciling it again writes nothing: no new status, no Event storm.
    harness.fake.clear_requests();
    harness.reconcile_stored().await.expect("second reconcile");
    assert!(harness.writes().is_empty(), "{:?}", harness.writes());
}

#[tokio::test]
async fn deletion_waits_for_the_daemon_set_then_releases_the_finalizer() {
    let harness = Harness::new(&fixtures::ingestor(fixtures::spec()));
    harness.reconcile_stored().await.expect("first reconcile");
    let mut deleting = harness.fake.get(INGESTOR).expect("Ingestor");
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    harness.fake.insert(INGESTOR, deleting);
    harness.fake.clear_requests();

    let action = harness.reconcile_stored().await.expect("clean-up pass");
    assert_eq!(action, Action::requeue(RESYNC_DRAINING));
    let deletes: Vec<_> =
        harness.writes().into_iter().filter(|request| request.method == Method::DELETE).collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].path, DAEMON_SET);
    assert_eq!(deletes[0].body["propagationPolicy"], "Foreground", "pods go before the DaemonSet");
    assert_eq!(
        harness.stored().metadata.finalizers,
        Some(vec![FINALIZER.to_string()]),
        "finalizer held while pods drain"
    );
    assert!(harness.events().iter().any(|event| event["reason"] == "Draining"));

    // Still terminating: wait, without deleting again.
    harness.fake.clear_requests();
    assert_eq!(harness.reconcile_stored().await.expect("pass"), Action::requeue(RESYNC_DRAINING));
    assert!(harness.writes().is_empty(), "{:?}", harness.writes());
    assert_eq!(harness.stored().metadata.finalizers, Some(vec![FINALIZER.to_string()]));

    // The garbage collector removed it: the finalizer goes.
    harness.fake.remove(DAEMON_SET);
    assert_eq!(harness.reconcile_stored().await.expect("last pass"), Action::await_change());
    let finalizers = harness.stored().metadata.finalizers.unwrap_or_default();
    assert!(finalizers.is_empty(), "finalizer removed: {finalizers:?}");
}

#[tokio::test]
async fn deletion_keeps_other_controllers_finalizers() {
    let mut ingestor = fixtures::ingestor(fixtures::spec());
    ingestor.metadata.finalizers = Some(vec!["example.com/other".into(), FINALIZER.into()]);
    ingestor.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-01-01T00:00:00Z".parse().expect("time"),
    ));
    let harness = Harness::new(&ingestor);
    assert_eq!(harness.reconcile_stored().await.expect("pass"), Action::await_change());
    assert_eq!(harness.stored().metadata.finalizers, Some(vec!["example.com/other".to_string()]));
    assert!(harness.fake.paths_under("/apis/apps").is_empty(), "nothing created while deleting");
}

#[tokio::test]
async fn errors_back_off_exponentially_and_success_resets_the_backoff() {
    let harness = Harness::new(&fixtures::ingestor(fixtures::spec()));
    harness.fake.fail(Method::PATCH, "/daemonsets/", 500);

    let mut delays = Vec::new();
    for _ in 0..4 {
        let ingestor = Arc::new(harness.stored());
        let error = harness.reconcile(harness.stored()).await.expect_err("the DaemonSet apply fails");
        assert!(error.to_string().contains("apply DaemonSet logs/edge"), "{error}");
        delays.push(controller::error_policy(ingestor, &error, harness.context.clone()));
    }
    let expected: Vec<Action> =
        [2, 4, 8, 16].into_iter().map(|seconds| Action::requeue(Duration::from_secs(seconds))).collect();
    assert_eq!(delays, expected, "each retry waits twice as long");
    assert!(
        harness.events().iter().any(|event| event["type"] == "Warning" && event["reason"] == "ApplyFailed"),
        "a Warning Event says the apply failed"
    );
    assert!(
        harness
            .context
            .metrics
            .render()
            .contains("killkrill_operator_reconcile_errors_total{reason=\"kubernetes_api\"} 4")
    );

    harness.fake.clear_failures();
    harness.reconcile_stored().await.expect("reconcile succeeds again");
    // The DaemonSet is now applied, so fail its read this time.
    harness.fake.fail(Method::GET, "/daemonsets/", 500);
    let error = harness.reconcile_stored().await.expect_err("fails again");
    let delay = controller::error_policy(Arc::new(harness.stored()), &error, harness.context.clone());
    assert_eq!(delay, Action::requeue(Duration::from_secs(2)), "a success resets the backoff");
}

#[test]
fn backoff_is_capped() {
    let backoff = controller::Backoff::new(Duration::from_secs(2), Duration::from_secs(60));
    let delays: Vec<u64> = (0..10).map(|_| backoff.next_delay("ns/a").as_secs()).collect();
    assert_eq!(delays, vec![2, 4, 8, 16, 32, 60, 60, 60, 60, 60]);
    assert_eq!(backoff.next_delay("ns/b").as_secs(), 2, "per object");
}

#[tokio::test]
async fn the_controller_watches_its_kinds_and_reconciles_what_it_lists() {
    let fake = FakeApi::default();
    fake.insert(INGESTOR, serde_json::to_value(fixtures::ingestor(fixtures::spec())).expect("serialize"));
    let client = fake.client();
    let context = Arc::new(Context::new(client.clone(), Arc::new(Metrics::new())));
    let controller = tokio::spawn(controller::run(client, context, None, std::future::pending()));

    let watched = || {
        let mut paths: Vec<String> = fake
            .requests()
            .into_iter()
            .filter(|request| request.query.contains("watch=true"))
            .map(|request| request.path)
            .collect();
        paths.sort();
        paths.dedup();
        paths
    };
    let reconciled = || {
        fake.get(DAEMON_SET).is_some()
            && fake.get(INGESTOR).is_some_and(|ingestor| ingestor["status"]["conditions"].is_array())
    };
    // Watches open concurrently with the first reconcile: wait for both.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !(reconciled() && watched().len() >= 9) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    controller.abort();
    assert!(reconciled(), "the listed Ingestor was reconciled: {:?}", fake.requests());
    let watched = watched();
    assert_eq!(
        watched,
        vec![
            "/api/v1/configmaps",
            "/api/v1/serviceaccounts",
            "/api/v1/services",
            "/apis/apps/v1/daemonsets",
            "/apis/killkrill.io/v1alpha1/ingestors",
            "/apis/networking.k8s.io/v1/networkpolicies",
            "/apis/policy/v1/poddisruptionbudgets",
            "/apis/rbac.authorization.k8s.io/v1/rolebindings",
            "/apis/rbac.authorization.k8s.io/v1/roles",
        ],
        "the Ingestors and every owned kind"
    );
    let owned_watch = fake
        .requests()
        .into_iter()
        .find(|request| request.path == "/apis/apps/v1/daemonsets" && request.query.contains("watch=true"))
        .expect("DaemonSet watch");
    assert!(
        owned_watch.query.contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dkillkrill-operator"),
        "owned kinds are watched by label only: {}",
        owned_watch.query
    );
}
