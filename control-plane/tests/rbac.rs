//! The RBAC matrix through the real binary: every route the API serves (from its OpenAPI
//! document, which `query::openapi_document_lists_every_endpoint_and_each_answers` holds to
//! the router) × every kind of credential, checked against `killkrill::api::policy`, the
//! one table the guard consults.

use std::time::Duration;

use killkrill::api::policy::{self, Access, ROUTES};
use killkrill::auth::JwtKeys;
use killkrill::store::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::Appliance;

const SECRET: &str = "rbac-matrix-secret-of-at-least-32-bytes!";

/// One way of (not) authenticating, and the role it carries when it is valid.
struct Credential {
    name: &'static str,
    header: Option<String>,
    role: Option<Role>,
}

/// Creates a user with `role` through the API and logs in as it.
fn user_token(appliance: &Appliance, username: &str, role: &str) -> String {
    let password = format!("{username}-password-long");
    let response = appliance
        .client()
        .post(appliance.url("/api/v1/users"))
        .json(&json!({ "username": username, "password": password, "role": role }))
        .send()
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().unwrap());
    appliance.login(username, &password)
}

fn credentials(appliance: &Appliance) -> Vec<Credential> {
    let admin = appliance.login("admin", crate::harness::ADMIN_PASSWORD);
    let maintainer = user_token(appliance, "rbac-maintainer", "maintainer");
    let viewer = user_token(appliance, "rbac-viewer", "viewer");
    let key = |role: &str| appliance.create_api_key_with(&admin, &format!("rbac-{role}"), role);
    let now = u64::try_from(jiff::Timestamp::now().as_second()).unwrap();
    let keys = JwtKeys::from_secret(SECRET.as_bytes());
    let expired = keys.issue("admin", Role::Admin, now - 7200, 900).unwrap();
    let foreign = JwtKeys::from_secret(b"another-secret-entirely-32-bytes-long")
        .issue("admin", Role::Admin, now, 900)
        .unwrap();
    let bearer = |token: &str| Some(format!("Bearer {token}"));
    vec![
        Credential { name: "admin user", header: bearer(&admin), role: Some(Role::Admin) },
        Credential { name: "maintainer user", header: bearer(&maintainer), role: Some(Role::Maintainer) },
        Credential { name: "viewer user", header: bearer(&viewer), role: Some(Role::Viewer) },
        Credential { name: "admin API key", header: bearer(&key("admin")), role: Some(Role::Admin) },
        Credential {
            name: "maintainer API key",
            header: bearer(&key("maintainer")),
            role: Some(Role::Maintainer),
        },
        Credential { name: "viewer API key", header: bearer(&key("viewer")), role: Some(Role::Viewer) },
        Credential { name: "no credentials", header: None, role: None },
        Credential { name: "malformed token", header: bearer("not-a-token"), role: None },
        Credential {
            name: "unknown API key",
            header: bearer("kk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            role: None,
        },
        Credential { name: "basic scheme", header: Some("Basic YWRtaW46YWRtaW4=".to_owned()), role: None },
        Credential { name: "expired token", header: bearer(&expired), role: None },
        Credential { name: "token of another secret", header: bearer(&foreign), role: None },
    ]
}

/// The documented operations, with path parameters filled in.
fn operations(appliance: &Appliance) -> Vec<(Method, String, String)> {
    let (status, document) = appliance.get_json("/api/v1/openapi.json");
    assert_eq!(status, 200);
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let concrete = path.replace("{username}", "rbac-nobody").replace("{id}", "0000000000000000");
            operations.push((method, path.clone(), concrete));
        }
    }
    // Every row of the table is served, except rows for routes other work adds.
    for row in ROUTES.iter().filter(|row| !row.path.ends_with("/*")) {
        let pending =
            [("GET", "/api/v1/config"), ("POST", "/api/v1/metrics"), ("POST", "/api/v1/prom/write")];
        if pending.contains(&(row.method, row.path)) {
            continue;
        }
        assert!(
            operations.iter().any(|(method, path, _)| method.as_str() == row.method && path == row.path),
            "{} {} is in policy::ROUTES but not served",
            row.method,
            row.path
        );
    }
    operations
}

#[test]
fn every_route_answers_every_credential_as_the_policy_says() {
    let temp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start_with_env(
        &temp.path().join("data"),
        &[],
        &[("KILLKRILL_AUTH__JWT_SECRET", SECRET), ("KILLKRILL_AUTH__LOGIN_FAILURES_PER_MINUTE", "1000")],
    );
    let credentials = credentials(&appliance);
    let operations = operations(&appliance);
    assert!(operations.len() >= 25, "{operations:?}");
    // Short timeout: the live tail streams; only its status line matters.
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut checked = 0;
    for (method, route, path) in &operations {
        let access = policy::access(method, route)
            .unwrap_or_else(|| panic!("{method} {route} is served but has no row in policy::ROUTES"));
        for credential in &credentials {
            let mut request = client.request(method.clone(), appliance.url(path));
            if let Some(header) = &credential.header {
                request = request.header("authorization", header);
            }
            if matches!(*method, Method::POST | Method::PUT) {
                // An empty object: authorized calls may answer 400 for what is missing.
                request = request.header("content-type", "application/json").body("{}");
            }
            let status = request.send().unwrap().status().as_u16();
            let what = format!("{method} {path} with {}", credential.name);
            match (access, credential.role) {
                (Access::Public | Access::Metrics, _) => {
                    assert!(![401, 403].contains(&status), "{what}: public, got {status}");
                }
                (Access::Role(_), None) => assert_eq!(status, 401, "{what}"),
                (Access::Role(needed), Some(role)) if role >= needed => {
                    assert!(![401, 403].contains(&status), "{what}: got {status}");
                    // Only routes with a parameter may not find what they name.
                    if !route.contains('{') {
                        assert!(![404, 405].contains(&status), "{what}: got {status}");
                    }
                }
                (Access::Role(_), Some(_)) => assert_eq!(status, 403, "{what}"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, operations.len() * credentials.len());
    // Unknown routes under /api/v1 are 404 with or without credentials, never 401.
    for header in [None, Some("Bearer not-a-token")] {
        let mut request = client.get(appliance.url("/api/v1/no-such-route"));
        if let Some(header) = header {
            request = request.header("authorization", header);
        }
        let response = request.send().unwrap();
        assert_eq!(response.status(), 404);
        assert_eq!(response.json::<Value>().unwrap()["error"]["code"], "not_found");
    }
}

#[test]
fn answers_say_unauthorized_or_forbidden_in_the_error_shape() {
    let appliance = Appliance::start();
    let response = reqwest::blocking::get(appliance.url("/api/v1/stats")).unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    let viewer = appliance.create_api_key_with(appliance.token.as_deref().unwrap(), "reader", "viewer");
    let response = reqwest::blocking::Client::new()
        .get(appliance.url("/api/v1/audit"))
        .bearer_auth(&viewer)
        .send()
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("admin"), "{body}");
    // A method a route does not take is 405, with or without credentials, and no error.
    for bearer in [None, appliance.token.as_deref()] {
        let mut request = reqwest::blocking::Client::new().delete(appliance.url("/api/v1/logs"));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        assert_eq!(request.send().unwrap().status(), 405);
    }
}

#[test]
fn metrics_need_a_viewer_when_not_public() {
    let temp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start_with_env(
        &temp.path().join("data"),
        &[],
        &[("KILLKRILL_AUTH__METRICS_PUBLIC", "false")],
    );
    let viewer = appliance.create_api_key_with(appliance.token.as_deref().unwrap(), "scraper", "viewer");
    for url in [appliance.url("/metrics"), format!("http://{}/metrics", appliance.metrics)] {
        assert_eq!(reqwest::blocking::get(&url).unwrap().status(), 401, "{url}");
        let response = reqwest::blocking::Client::new().get(&url).bearer_auth(&viewer).send().unwrap();
        assert_eq!(response.status(), 200, "{url}");
        assert!(response.text().unwrap().contains("http_requests_total"));
    }
    // Health stays public on both ports.
    assert_eq!(reqwest::blocking::get(appliance.url("/health")).unwrap().status(), 200);
    let health = format!("http://{}/health", appliance.metrics);
    assert_eq!(reqwest::blocking::get(health).unwrap().status(), 200);
}
