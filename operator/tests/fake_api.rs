//! A small in-memory Kubernetes API server behind a `tower_test` mock service, as
//! kube-rs's controller examples test reconcilers: the client sends real HTTP requests,
//! the fake answers them from a map of objects by path and records every request, so a
//! test can assert what was written and how many requests a reconcile made.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

/// A response body: whole, or a watch stream that stays open and quiet (the objects
/// come from the list before it; tests that need changes call `reconcile` directly).
pub enum FakeBody {
    Full(Option<Bytes>),
    OpenWatch,
}

impl http_body::Body for FakeBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|bytes| Ok(Frame::data(bytes)))),
            Self::OpenWatch => Poll::Pending,
        }
    }
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

impl Recorded {
    pub fn is_write(&self) -> bool {
        self.method != Method::GET
    }
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    requests: Vec<Recorded>,
    /// (method, path fragment, status): answer matching requests with this error.
    failures: Vec<(Method, String, u16)>,
    resource_version: u64,
}

/// The fake API server; clones share state.
#[derive(Clone, Default)]
pub struct FakeApi(Arc<Mutex<State>>);

impl FakeApi {
    /// A client whose every request this fake answers.
    pub fn client(&self) -> Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<FakeBody>>();
        let fake = self.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let response = fake.handle(request).await;
                send.send_response(response);
            }
        });
        Client::new(service, "default")
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().expect("fake API state")
    }

    pub fn insert(&self, path: &str, object: Value) {
        let mut state = self.state();
        state.resource_version += 1;
        let mut object = object;
        object["metadata"]["resourceVersion"] = json!(state.resource_version.to_string());
        state.objects.insert(path.to_string(), object);
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.state().objects.get(path).cloned()
    }

    pub fn remove(&self, path: &str) -> Option<Value> {
        self.state().objects.remove(path)
    }

    /// Every object stored under `prefix`.
    pub fn paths_under(&self, prefix: &str) -> Vec<String> {
        self.state().objects.keys().filter(|path| path.starts_with(prefix)).cloned().collect()
    }

    /// Answer requests of `method` whose path contains `fragment` with `status`.
    pub fn fail(&self, method: Method, fragment: &str, status: u16) {
        self.state().failures.push((method, fragment.to_string(), status));
    }

    pub fn clear_failures(&self) {
        self.state().failures.clear();
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// Forget the requests so far (the objects stay).
    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    async fn handle(&self, request: Request<Body>) -> Response<FakeBody> {
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        let query_for_record = query.clone();
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = request.into_body().collect_bytes().await.expect("request body");
        let body: Value =
            if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };

        let mut state = self.state();
        state.requests.push(Recorded {
            method: method.clone(),
            path: path.clone(),
            query: query_for_record,
            content_type: content_type.clone(),
            body: body.clone(),
        });
        let injected = state
            .failures
            .iter()
            .find(|(fail_method, fragment, _)| *fail_method == method && path.contains(fragment.as_str()))
            .map(|(_, _, status)| *status);
        if let Some(status) = injected {
            return status_response(status, "InternalError", "injected failure");
        }

        match method {
            Method::GET if query.contains("watch=true") || query.contains("watch=1") => Response::builder()
                .status(StatusCode::OK)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(FakeBody::OpenWatch)
                .expect("response"),
            Method::GET => match state.objects.get(&path) {
                Some(object) => json_response(StatusCode::OK, object),
                None if is_collection(&path) => {
                    let items: Vec<Value> = state
                        .objects
                        .iter()
                        .filter(|(object_path, _)| {
                            collection_of(object_path).as_deref() == Some(path.as_str())
                                || parent(object_path) == path
                        })
                        .map(|(_, object)| object.clone())
                        .collect();
                    let list = json!({
                        "apiVersion": "v1",
                        "kind": "List",
                        "metadata": {"resourceVersion": state.resource_version.to_string()},
                        "items": items,
                    });
                    json_response(StatusCode::OK, &list)
                }
                None => status_response(404, "NotFound", &format!("{path} not found")),
            },
            Method::POST => {
                let name = body["metadata"]["name"].as_str().unwrap_or("unnamed").to_string();
                state.resource_version += 1;
                let mut object = body;
                object["metadata"]["resourceVersion"] = json!(state.resource_version.to_string());
                state.objects.insert(format!("{path}/{name}"), object.clone());
                json_response(StatusCode::CREATED, &object)
            }
            Method::PATCH => patch(&mut state, &path, &content_type, body),
            Method::DELETE => match state.objects.get_mut(&path) {
                Some(object) => {
                    // Foreground deletion: the object stays, marked, until its dependents go.
                    object["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
                    let object = object.clone();
                    json_response(StatusCode::OK, &object)
                }
                None => status_response(404, "NotFound", &format!("{path} not found")),
            },
            _ => status_response(405, "MethodNotAllowed", "unsupported"),
        }
    }
}

/// A list URL: `/api/v1/configmaps`, `/apis/apps/v1/daemonsets`, or the same under
/// `/namespaces/<ns>/` (an object URL has one more segment).
fn is_collection(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let base = if segments.first() == Some(&"api") { 2 } else { 3 };
    let namespaced = segments.get(base) == Some(&"namespaces");
    segments.len() == base + 1 + if namespaced { 2 } else { 0 }
}

/// The cluster-wide list URL an object's URL belongs to.
fn collection_of(object_path: &str) -> Option<String> {
    let (prefix, rest) = object_path.split_once("/namespaces/")?;
    let (_, resource_and_name) = rest.split_once('/')?;
    let (resource, _) = resource_and_name.split_once('/')?;
    Some(format!("{prefix}/{resource}"))
}

fn parent(object_path: &str) -> &str {
    object_path.rsplit_once('/').map_or(object_path, |(parent, _)| parent)
}

fn patch(state: &mut State, path: &str, content_type: &str, body: Value) -> Response<FakeBody> {
    state.resource_version += 1;
    let resource_version = state.resource_version.to_string();
    if let Some(object_path) = path.strip_suffix("/status") {
        let Some(object) = state.objects.get_mut(object_path) else {
            return status_response(404, "NotFound", "no object for this status");
        };
        object["status"] = body["status"].clone();
        object["metadata"]["resourceVersion"] = json!(resource_version);
        return json_response(StatusCode::OK, &object.clone());
    }
    if content_type.starts_with("application/apply-patch") {
        let previous = state.objects.get(path).cloned();
        let mut object = body;
        let generation =
            previous.as_ref().and_then(|old| old["metadata"]["generation"].as_i64()).unwrap_or(0);
        let spec_changed = previous.as_ref().is_none_or(|old| old.get("spec") != object.get("spec"));
        object["metadata"]["generation"] = json!(if spec_changed { generation + 1 } else { generation });
        object["metadata"]["uid"] = json!(format!("uid-{path}"));
        object["metadata"]["resourceVersion"] = json!(resource_version);
        if let Some(status) = previous.and_then(|old| old.get("status").cloned()) {
            object["status"] = status;
        }
        state.objects.insert(path.to_string(), object.clone());
        return json_response(StatusCode::OK, &object);
    }
    // A JSON merge patch (RFC 7386), with the resourceVersion precondition the API
    // server applies when the patch names one.
    let Some(object) = state.objects.get_mut(path) else {
        return status_response(404, "NotFound", &format!("{path} not found"));
    };
    if let Some(expected) = body["metadata"]["resourceVersion"].as_str()
        && object["metadata"]["resourceVersion"].as_str() != Some(expected)
    {
        return status_response(409, "Conflict", "the object has been modified");
    }
    merge(object, &body);
    object["metadata"]["resourceVersion"] = json!(resource_version);
    json_response(StatusCode::OK, &object.clone())
}

fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            for (key, value) in fields {
                if value.is_null() {
                    target.as_object_mut().expect("object").remove(key);
                } else {
                    merge(&mut target[key.as_str()], value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<FakeBody> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(FakeBody::Full(Some(Bytes::from(serde_json::to_vec(body).expect("serialize")))))
        .expect("response")
}

fn status_response(code: u16, reason: &str, message: &str) -> Response<FakeBody> {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    json_response(StatusCode::from_u16(code).expect("status code"), &body)
}
