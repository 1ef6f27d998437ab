//! The reconciler: from an Ingestor to its owned objects and back to its status.
//!
//! Each pass: make sure the finalizer is there; validate the spec (problems go to a
//! `Degraded` condition and a Warning Event, and nothing is applied); build every owned
//! object; read each live one and server-side apply only those whose applied hash
//! differs, so an unchanged Ingestor costs reads and no writes; derive the status from
//! the DaemonSet and write it through the status subresource only when it changed.
//! Deletion waits, through the finalizer, until the DaemonSet's pods are gone, so every
//! node agent detaches XDP on SIGTERM before the Ingestor disappears.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::crd::{Ingestor, IngestorStatus};
use crate::node_rates::{self, NodeRates, RateProblem};
use crate::resources::{self, API_PORT, OwnedObjects, fnv1a64};
use crate::telemetry::Metrics;
use crate::validate::{InvalidSpec, validate};
use crate::{Error, FIELD_MANAGER, Result};

/// Held on every Ingestor until its DaemonSet's pods are gone (agents detached XDP).
pub const FINALIZER: &str = "killkrill.io/xdp-detach";
/// On every owned object: the hash of what the operator last applied, so that an
/// unchanged object is not written again.
pub const APPLIED_HASH_ANNOTATION: &str = "killkrill.io/applied-hash";
/// The label the operator's watches of owned objects select on.
pub const MANAGED_BY_SELECTOR: &str = "app.kubernetes.io/managed-by=killkrill-operator";

/// Requeue of a healthy Ingestor: a safety net; watches trigger the real work.
pub const RESYNC_READY: Duration = Duration::from_secs(300);
/// Requeue while nodes are still coming up.
pub const RESYNC_PROGRESSING: Duration = Duration::from_secs(30);
/// Requeue while the DaemonSet's pods terminate on deletion.
pub const RESYNC_DRAINING: Duration = Duration::from_secs(5);
/// Requeue of a ready Ingestor that reports its ingest rate: how fresh the rate is.
pub const RESYNC_RATE: Duration = Duration::from_secs(60);

/// Condition types.
pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
/// Present when `spec.apiKeySecretRef` is set: whether the nodes' rates could be read.
pub const INGEST_RATE_REPORTED: &str = "IngestRateReported";

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub reporter: Reporter,
    pub metrics: Arc<Metrics>,
    pub backoff: Backoff,
    /// The client of the control plane's API (`GET /api/v1/nodes`).
    pub http: reqwest::Client,
    /// Where that API is; None: the Ingestor's Service, `http://<name>.<namespace>.svc:8080`.
    pub nodes_base_url: Option<String>,
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            // Set from the downward API in the operator's Deployment.
            instance: std::env::var("POD_NAME").ok(),
        };
        let http = reqwest::Client::builder()
            .user_agent(concat!("killkrill-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self { reporter, client, metrics, backoff: Backoff::default(), http, nodes_base_url: None }
    }

    /// Reads the nodes' rates from `url` instead of the Ingestor's Service (tests, or an
    /// operator running outside the cluster).
    pub fn with_nodes_base_url(mut self, url: impl Into<String>) -> Self {
        self.nodes_base_url = Some(url.into());
        self
    }
}

/// Exponential backoff per object: `base * 2^(failures - 1)`, at most `max`, reset by a
/// successful reconcile.
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_secs(2), Duration::from_secs(300))
    }
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { base, max, failures: Mutex::new(HashMap::new()) }
    }

    /// Counts one more failure of `key` and says how long to wait before the retry.
    pub fn next_delay(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = failures.entry(key.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        let factor = 2u32.saturating_pow(count.saturating_sub(1).min(31));
        self.base.saturating_mul(factor).min(self.max)
    }

    pub fn reset(&self, key: &str) {
        self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(key);
    }
}

/// Runs the controller until `shutdown` resolves (then lets running reconciles finish).
/// `namespace` limits it to one namespace.
pub async fn run(
    client: Client,
    context: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let ingestors: Api<Ingestor> = match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let owned = || watcher::Config::default().labels(MANAGED_BY_SELECTOR);
    Controller::new(ingestors, watcher::Config::default().any_semantic())
        .owns(owned_api::<DaemonSet>(&client, namespace), owned())
        .owns(owned_api::<ConfigMap>(&client, namespace), owned())
        .owns(owned_api::<Service>(&client, namespace), owned())
        .owns(owned_api::<ServiceAccount>(&client, namespace), owned())
        .owns(owned_api::<Role>(&client, namespace), owned())
        .owns(owned_api::<RoleBinding>(&client, namespace), owned())
        .owns(owned_api::<PodDisruptionBudget>(&client, namespace), owned())
        .owns(owned_api::<NetworkPolicy>(&client, namespace), owned())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            use kube::runtime::controller::Error as RunError;
            match result {
                Ok(_) => {}
                // error_policy has logged it already, with the retry delay.
                Err(RunError::ReconcilerFailed(..)) => {}
                // Deleted between the trigger and the reconcile: nothing to do.
                Err(RunError::ObjectNotFound(object)) => {
                    debug!(object = %object, "Object gone before its reconcile.")
                }
                // Watches failing (CRD missing, RBAC, API down): kube retries with backoff,
                // but the user must see why nothing happens.
                Err(error) => warn!(error = %error, "Watch failed; retrying."),
            }
        })
        .await;
}

fn owned_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// `namespace/name`, the key of logs, metrics and the backoff.
pub fn object_key(ingestor: &Ingestor) -> String {
    format!("{}/{}", ingestor.namespace().unwrap_or_default(), ingestor.name_any())
}

/// One reconcile of one Ingestor.
pub async fn reconcile(ingestor: Arc<Ingestor>, context: Arc<Context>) -> Result<Action> {
    let key = object_key(&ingestor);
    let started = Instant::now();
    let span = info_span!("reconcile", ingestor = %key);
    let outcome = reconcile_inner(&ingestor, &context).instrument(span).await;
    context.metrics.observe_reconcile(started.elapsed(), outcome.as_ref().err());
    if outcome.is_ok() {
        context.backoff.reset(&key);
    }
    outcome
}

/// Requeue after a failed reconcile, later each time in a row.
pub fn error_policy(ingestor: Arc<Ingestor>, error: &Error, context: Arc<Context>) -> Action {
    let key = object_key(&ingestor);
    let delay = context.backoff.next_delay(&key);
    warn!(ingestor = %key, error = %error, retry_in_ms = delay.as_millis() as u64, "Reconcile failed.");
    Action::requeue(delay)
}

async fn reconcile_inner(ingestor: &Ingestor, context: &Context) -> Result<Action> {
    let name = ingestor.metadata.name.clone().ok_or(Error::MissingMetadata("metadata.name"))?;
    let namespace = ingestor.namespace().ok_or(Error::MissingMetadata("metadata.namespace"))?;
    let ingestors: Api<Ingestor> = Api::namespaced(context.client.clone(), &namespace);

    if ingestor.metadata.deletion_timestamp.is_some() {
        return clean_up(ingestor, context, &ingestors, &name, &namespace).await;
    }
    if !ingestor.finalizers().iter().any(|finalizer| finalizer == FINALIZER) {
        let mut finalizers = ingestor.finalizers().to_vec();
        finalizers.push(FINALIZER.to_string());
        set_finalizers(&ingestors, ingestor, &name, finalizers).await?;
    }

    if let Err(invalid) = validate(&ingestor.spec) {
        let status = invalid_status(ingestor, &invalid);
        if ingestor.status.as_ref() != Some(&status) {
            write_status(&ingestors, &name, &status).await?;
            publish(context, ingestor, EventType::Warning, "InvalidSpec", "Validate", invalid.to_string())
                .await;
        }
        info!(problems = %invalid, "Spec is invalid; nothing applied.");
        return Ok(Action::await_change());
    }

    let objects = resources::build(ingestor)?;
    let mut changes = Vec::new();
    let daemon_set = match apply_all(context, &namespace, objects, &mut changes).await {
        Ok(daemon_set) => daemon_set,
        Err(error) => {
            publish(context, ingestor, EventType::Warning, "ApplyFailed", "Apply", error.to_string()).await;
            return Err(error);
        }
    };
    if !changes.is_empty() {
        info!(changes = %changes.join(", "), "Applied owned objects.");
        publish(context, ingestor, EventType::Normal, "Applied", "Apply", changes.join(", ")).await;
    }

    let now = Timestamp::now();
    let mut status = observed_status(ingestor, &daemon_set, now);
    let reports_rate = ingestor.spec.api_key_secret_ref.is_some();
    if reports_rate {
        let rates = read_node_rates(ingestor, context, &name, &namespace).await;
        let turned_bad = rate_status(&mut status, ingestor, rates.clone(), now);
        if let (true, Err(problem)) = (turned_bad, &rates) {
            warn!(
                reason = problem.reason(),
                error = problem.message(),
                "Cannot read the nodes' ingest rate."
            );
            let note = format!("status.ingestRate not updated: {}", problem.message());
            publish(context, ingestor, EventType::Warning, problem.reason(), "ReadNodes", note).await;
        }
    } else {
        status.ingest_rate = None;
        status.nodes_reporting = None;
    }
    if ingestor.status.as_ref() != Some(&status) {
        write_status(&ingestors, &name, &status).await?;
    }
    let ready = status.condition(READY).is_some_and(|condition| condition.status == "True");
    Ok(Action::requeue(match (ready, reports_rate) {
        (true, true) => RESYNC_RATE,
        (true, false) => RESYNC_READY,
        (false, _) => RESYNC_PROGRESSING,
    }))
}

/// The nodes' rates, read with the key `spec.apiKeySecretRef` names.
async fn read_node_rates(
    ingestor: &Ingestor,
    context: &Context,
    name: &str,
    namespace: &str,
) -> Result<NodeRates, RateProblem> {
    let Some(reference) = &ingestor.spec.api_key_secret_ref else {
        return Err(RateProblem::NoCredentials("spec.apiKeySecretRef is not set".into()));
    };
    let api_key = node_rates::read_api_key(&context.client, namespace, reference).await?;
    let base_url =
        context.nodes_base_url.clone().unwrap_or_else(|| format!("http://{name}.{namespace}.svc:{API_PORT}"));
    node_rates::fetch(&context.http, &base_url, &api_key).await
}

/// Puts the rates (or, on failure, the last known ones) and the `IngestRateReported`
/// condition into `status`. True when the condition has just turned false (an Event is
/// due then, not on every failed read).
pub fn rate_status(
    status: &mut IngestorStatus,
    ingestor: &Ingestor,
    rates: Result<NodeRates, RateProblem>,
    now: Timestamp,
) -> bool {
    let current = ingestor.status.clone().unwrap_or_default();
    let generation = ingestor.metadata.generation;
    let was_reported = current.condition(INGEST_RATE_REPORTED).map(|condition| condition.status.as_str());
    let reported = match &rates {
        Ok(rates) => {
            status.ingest_rate = Some(rates.ingest_rate);
            status.nodes_reporting = Some(rates.nodes_reporting);
            let message = format!("{} nodes report {} datagrams/s", rates.nodes_reporting, rates.ingest_rate);
            condition(&current, INGEST_RATE_REPORTED, true, "Reported", &message, generation, now)
        }
        Err(problem) => {
            // The last figures stay, marked old by the condition.
            status.ingest_rate = current.ingest_rate;
            status.nodes_reporting = current.nodes_reporting;
            let message = truncate(problem.message().to_string(), 1000);
            condition(&current, INGEST_RATE_REPORTED, false, problem.reason(), &message, generation, now)
        }
    };
    status.conditions.push(reported);
    rates.is_err() && was_reported != Some("False")
}

/// Applies every owned object that differs from what is live; returns the live DaemonSet.
async fn apply_all(
    context: &Context,
    namespace: &str,
    objects: OwnedObjects,
    changes: &mut Vec<String>,
) -> Result<DaemonSet> {
    let client = &context.client;
    apply_if_changed(client, namespace, objects.service_account, changes).await?;
    apply_if_changed(client, namespace, objects.role, changes).await?;
    apply_if_changed(client, namespace, objects.role_binding, changes).await?;
    apply_if_changed(client, namespace, objects.config_map, changes).await?;
    apply_if_changed(client, namespace, objects.service, changes).await?;
    let daemon_set = apply_if_changed(client, namespace, objects.daemon_set, changes).await?;
    apply_if_changed(client, namespace, objects.pod_disruption_budget, changes).await?;
    apply_if_changed(client, namespace, objects.network_policy, changes).await?;
    Ok(daemon_set)
}

/// Reads the live object; applies `desired` (server-side, forced, our field manager)
/// only when it is missing or carries another applied hash. Returns the live object.
async fn apply_if_changed<K>(
    client: &Client,
    namespace: &str,
    mut desired: K,
    changes: &mut Vec<String>,
) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let kind = K::kind(&()).to_string();
    let name = desired.name_any();
    let hash = applied_hash(&desired, &kind)?;
    desired.annotations_mut().insert(APPLIED_HASH_ANNOTATION.into(), hash.clone());

    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let live = api.get_opt(&name).await.map_err(Error::kube(format!("read {kind} {namespace}/{name}")))?;
    let verb = match &live {
        Some(live)
            if live.meta().deletion_timestamp.is_none()
                && live.annotations().get(APPLIED_HASH_ANNOTATION) == Some(&hash) =>
        {
            return Ok(live.clone());
        }
        Some(_) => "updated",
        None => "created",
    };
    let applied = api
        .patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&desired))
        .await
        .map_err(Error::kube(format!("apply {kind} {namespace}/{name}")))?;
    changes.push(format!("{verb} {kind} {name}"));
    Ok(applied)
}

fn applied_hash<K: Serialize>(object: &K, kind: &str) -> Result<String> {
    let bytes = serde_json::to_vec(object)
        .map_err(|error| Error::Serialize { what: kind.to_string(), message: error.to_string() })?;
    Ok(format!("{:016x}", fnv1a64(&bytes)))
}

/// On deletion: delete the DaemonSet in the foreground and hold the finalizer until it
/// (and so every pod, whose agent detaches XDP on SIGTERM) is gone.
async fn clean_up(
    ingestor: &Ingestor,
    context: &Context,
    ingestors: &Api<Ingestor>,
    name: &str,
    namespace: &str,
) -> Result<Action> {
    if !ingestor.finalizers().iter().any(|finalizer| finalizer == FINALIZER) {
        return Ok(Action::await_change());
    }
    let daemon_sets: Api<DaemonSet> = Api::namespaced(context.client.clone(), namespace);
    let live =
        daemon_sets.get_opt(name).await.map_err(Error::kube(format!("read DaemonSet {namespace}/{name}")))?;
    let owned_by_us = |daemon_set: &DaemonSet| {
        daemon_set.owner_references().iter().any(|owner| Some(&owner.uid) == ingestor.metadata.uid.as_ref())
    };
    if let Some(daemon_set) = live.filter(owned_by_us) {
        if daemon_set.metadata.deletion_timestamp.is_none() {
            daemon_sets
                .delete(name, &DeleteParams::foreground())
                .await
                .map_err(Error::kube(format!("delete DaemonSet {namespace}/{name}")))?;
            let note = "deleting the DaemonSet; waiting for every node agent to detach XDP".to_string();
            publish(context, ingestor, EventType::Normal, "Draining", "Delete", note).await;
            info!("Deleting the DaemonSet before releasing the Ingestor.");
        }
        return Ok(Action::requeue(RESYNC_DRAINING));
    }
    let remaining: Vec<String> =
        ingestor.finalizers().iter().filter(|finalizer| *finalizer != FINALIZER).cloned().collect();
    set_finalizers(ingestors, ingestor, name, remaining).await?;
    info!("Data plane gone; finalizer removed.");
    Ok(Action::await_change())
}

/// A merge patch of the finalizer list, guarded by the resourceVersion we read, so a
/// concurrent change makes it fail (and retry) instead of dropping someone's finalizer.
async fn set_finalizers(
    api: &Api<Ingestor>,
    ingestor: &Ingestor,
    name: &str,
    finalizers: Vec<String>,
) -> Result<()> {
    let patch = json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": ingestor.resource_version(),
        }
    });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::kube(format!("update finalizers of Ingestor {name}")))?;
    Ok(())
}

async fn write_status(api: &Api<Ingestor>, name: &str, status: &IngestorStatus) -> Result<()> {
    let patch = json!({
        "apiVersion": "killkrill.io/v1alpha1",
        "kind": "Ingestor",
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(Error::kube(format!("write status of Ingestor {name}")))?;
    Ok(())
}

/// Events are for people; failing to record one must not fail the reconcile.
async fn publish(
    context: &Context,
    ingestor: &Ingestor,
    kind: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    // The Events API limits the note to 1 kB.
    let note = truncate(note, 1000);
    let event = Event {
        type_: kind,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    // A fresh Recorder each time: a shared one folds every later Event with the same
    // reason into the first (its cache key leaves the note out), so "Applied" would keep
    // the first pass's note forever. Events are only published on real changes, so there
    // is no storm to fold.
    let recorder = Recorder::new(context.client.clone(), context.reporter.clone());
    if let Err(error) = recorder.publish(&event, &ingestor.object_ref(&())).await {
        warn!(error = %error, reason, "Could not record an Event.");
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// Status of an Ingestor whose spec failed validation.
pub fn invalid_status(ingestor: &Ingestor, invalid: &InvalidSpec) -> IngestorStatus {
    let current = ingestor.status.clone().unwrap_or_default();
    let generation = ingestor.metadata.generation;
    let now = Timestamp::now();
    let message = truncate(invalid.to_string(), 1000);
    IngestorStatus {
        conditions: vec![
            condition(
                &current,
                READY,
                false,
                "InvalidSpec",
                "the spec is invalid; see Degraded",
                generation,
                now,
            ),
            condition(
                &current,
                PROGRESSING,
                false,
                "InvalidSpec",
                "nothing applied until the spec is fixed",
                generation,
                now,
            ),
            condition(&current, DEGRADED, true, "InvalidSpec", &message, generation, now),
        ],
        observed_generation: generation,
        ..current
    }
}

/// Status from the live DaemonSet. `now` stamps conditions whose status changed.
pub fn observed_status(ingestor: &Ingestor, daemon_set: &DaemonSet, now: Timestamp) -> IngestorStatus {
    let current = ingestor.status.clone().unwrap_or_default();
    let generation = ingestor.metadata.generation;
    let ds_status = daemon_set.status.clone().unwrap_or_default();
    let desired = ds_status.desired_number_scheduled;
    let ready = ds_status.number_ready;
    let updated = ds_status.updated_number_scheduled.unwrap_or(0);
    let rolled_out = ds_status.observed_generation.is_some()
        && ds_status.observed_generation >= daemon_set.metadata.generation
        && updated >= desired;

    let reported = daemon_set.status.is_some() && ds_status.observed_generation.is_some();
    let (is_ready, ready_reason, ready_message) = if !reported {
        (false, "Pending", "the DaemonSet controller has not reported yet".to_string())
    } else if desired == 0 {
        (false, "NoNodes", "no node matches the node selector and tolerations".to_string())
    } else if ready >= desired {
        (true, "AllNodesReady", format!("{ready} of {desired} nodes ready"))
    } else {
        (false, "NodesNotReady", format!("{ready} of {desired} nodes ready"))
    };
    let (is_progressing, progressing_reason, progressing_message) = if !rolled_out || ready < desired {
        (true, "RollingOut", format!("{updated} of {desired} nodes run the current spec"))
    } else {
        (false, "RolloutComplete", format!("{desired} nodes run the current spec"))
    };
    IngestorStatus {
        conditions: vec![
            condition(&current, READY, is_ready, ready_reason, &ready_message, generation, now),
            condition(
                &current,
                PROGRESSING,
                is_progressing,
                progressing_reason,
                &progressing_message,
                generation,
                now,
            ),
            condition(
                &current,
                DEGRADED,
                false,
                "AsExpected",
                "the spec is valid and applied",
                generation,
                now,
            ),
        ],
        observed_generation: generation,
        nodes_desired: desired,
        nodes_ready: ready,
        ingest_rate: current.ingest_rate,
        nodes_reporting: current.nodes_reporting,
    }
}

/// A condition, keeping the previous transition time when its status did not change.
fn condition(
    current: &IngestorStatus,
    kind: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" };
    let last_transition_time = match current.condition(kind) {
        Some(previous) if previous.status == status => previous.last_transition_time.clone(),
        _ => Time(now),
    };
    Condition {
        type_: kind.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time,
    }
}
