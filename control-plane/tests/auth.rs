//! Users, sessions, API keys, the first admin, lockout, audit and TLS through the real
//! binary (docs/security.md).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};

use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::cli::{assert_clear_failure, serve};
use crate::harness::{ADMIN_PASSWORD, Appliance, BINARY};

fn send(
    appliance: &Appliance,
    method: reqwest::Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = Client::new().request(method, appliance.url(path));
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn post(appliance: &Appliance, path: &str, bearer: Option<&str>, body: Value) -> (u16, Value) {
    send(appliance, reqwest::Method::POST, path, bearer, Some(body))
}

fn get(appliance: &Appliance, path: &str, bearer: &str) -> (u16, Value) {
    send(appliance, reqwest::Method::GET, path, Some(bearer), None)
}

fn admin_key(appliance: &Appliance) -> &str {
    appliance.token.as_deref().expect("the harness made an admin key")
}

fn create_user(appliance: &Appliance, username: &str, password: &str, role: &str) {
    let body = json!({ "username": username, "password": password, "role": role });
    let (status, answer) = post(appliance, "/api/v1/users", Some(admin_key(appliance)), body);
    assert_eq!(status, 201, "{answer}");
}

#[test]
fn login_refresh_rotates_and_logout_revokes() {
    let appliance = Appliance::start();
    let login = json!({ "username": "admin", "password": ADMIN_PASSWORD });
    let (status, session) = post(&appliance, "/api/v1/auth/login", None, login);
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["token_type"], "Bearer");
    assert_eq!(session["expires_in"], 900);
    assert_eq!(session["user"], json!({ "username": "admin", "role": "admin" }));
    let access = session["access_token"].as_str().unwrap();
    let refresh = session["refresh_token"].as_str().unwrap();
    let (status, me) = get(&appliance, "/api/v1/auth/me", access);
    assert_eq!((status, me), (200, json!({ "username": "admin", "role": "admin", "kind": "user" })));

    let (status, renewed) =
        post(&appliance, "/api/v1/auth/refresh", None, json!({ "refresh_token": refresh }));
    assert_eq!(status, 200, "{renewed}");
    let new_refresh = renewed["refresh_token"].as_str().unwrap();
    assert_ne!(new_refresh, refresh);
    assert_eq!(get(&appliance, "/api/v1/auth/me", renewed["access_token"].as_str().unwrap()).0, 200);
    let (status, body) = post(&appliance, "/api/v1/auth/refresh", None, json!({ "refresh_token": refresh }));
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("unauthorized")),
        "a used refresh token is dead"
    );

    let (status, _) =
        post(&appliance, "/api/v1/auth/logout", Some(access), json!({ "refresh_token": new_refresh }));
    assert_eq!(status, 204);
    let (status, _) = post(&appliance, "/api/v1/auth/refresh", None, json!({ "refresh_token": new_refresh }));
    assert_eq!(status, 401, "logout revokes the refresh token");

    // Wrong password and unknown user get the same answer.
    let (status, wrong) = appliance.login_answer("admin", "not-the-password");
    let (status_unknown, unknown) = appliance.login_answer("nobody-at-all", "not-the-password");
    assert_eq!((status, status_unknown), (401, 401));
    assert_eq!(wrong, unknown);
}

#[test]
fn repeated_failures_lock_the_account_in_the_store() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let env = [
        ("KILLKRILL_AUTH__LOCKOUT_THRESHOLD", "3"),
        ("KILLKRILL_AUTH__LOCKOUT_S", "600"),
        ("KILLKRILL_AUTH__LOGIN_FAILURES_PER_MINUTE", "1000"),
    ];
    let appliance = Appliance::start_with_env(&data_dir, &[], &env);
    create_user(&appliance, "ada", "ada-password-long", "maintainer");
    for _ in 0..3 {
        assert_eq!(appliance.login_answer("ada", "wrong-password-x").0, 401);
    }
    let response = Client::new()
        .post(appliance.url("/api/v1/auth/login"))
        .json(&json!({ "username": "ada", "password": "ada-password-long" }))
        .send()
        .unwrap();
    assert_eq!(response.status(), 429, "locked even with the right password");
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((590..=601).contains(&retry_after), "{retry_after}");
    assert_eq!(response.json::<Value>().unwrap()["error"]["code"], "locked");
    let (_, users) = get(&appliance, "/api/v1/users", admin_key(&appliance));
    let ada = users["users"].as_array().unwrap().iter().find(|u| u["username"] == "ada").unwrap().clone();
    assert!(ada["locked_until"].is_string(), "{ada}");
    let token = appliance.token.clone();
    appliance.terminate();

    // Another control plane on the same store sees the lock.
    let appliance = Appliance::start_with_env(&data_dir, &[], &env);
    let (status, body) = appliance.login_answer("ada", "ada-password-long");
    assert_eq!((status, &body["error"]["code"]), (429, &json!("locked")));
    // Other users are not affected, and the old control plane's API key still works.
    assert_eq!(get(&appliance, "/api/v1/stats", token.as_deref().unwrap()).0, 200);
}

#[test]
fn logins_are_rate_limited_per_address_and_username() {
    let temp = tempfile::tempdir().unwrap();
    let appliance = Appliance::start_with_env(
        &temp.path().join("data"),
        &[],
        &[("KILLKRILL_AUTH__LOGIN_FAILURES_PER_MINUTE", "4")],
    );
    // Only failures count: the harness's own login did not.
    for _ in 0..4 {
        assert_eq!(appliance.login_answer("ghost", "wrong-password-x").0, 401);
    }
    for username in ["ghost", "someone-else"] {
        let response = Client::new()
            .post(appliance.url("/api/v1/auth/login"))
            .json(&json!({ "username": username, "password": "wrong-password-x" }))
            .send()
            .unwrap();
        assert_eq!(response.status(), 429, "{username}");
        let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        assert_eq!(response.json::<Value>().unwrap()["error"]["code"], "rate_limited");
    }
}

#[test]
fn the_setup_token_makes_the_first_admin_once() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let mut appliance = Appliance::start_with_env(&data_dir, &[], &[("KILLKRILL_ADMIN_PASSWORD", "")]);
    assert!(appliance.token.is_none());
    let line = appliance
        .wait_for_log(
            "No user exists: create the first admin with POST /api/v1/auth/setup and this one-time setup token.",
            std::time::Duration::from_secs(5),
        )
        .expect("the setup token is announced");
    let token = line["setup_token"].as_str().unwrap().to_owned();
    let file = data_dir.join("setup-token");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), token);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);

    let setup = |setup_token: &str, password: &str| {
        let body = json!({ "setup_token": setup_token, "username": "root", "password": password });
        post(&appliance, "/api/v1/auth/setup", None, body)
    };
    assert_eq!(setup("kks_wrong", "root-password-long").0, 401);
    let (status, body) = setup(&token, "short");
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().starts_with("password"), "{body}");
    let (status, body) = setup(&token, "root-password-long");
    assert_eq!((status, body), (201, json!({ "username": "root", "role": "admin" })));
    assert_eq!(setup(&token, "root-password-long").0, 409, "used once");
    assert!(!file.exists(), "the token file is removed once used");
    let access = appliance.login("root", "root-password-long");
    assert_eq!(get(&appliance, "/api/v1/auth/me", &access).1["role"], "admin");
}

#[test]
fn the_admin_password_variable_makes_the_first_admin() {
    let temp = tempfile::tempdir().unwrap();
    let env = [("KILLKRILL_ADMIN_USER", "chief"), ("KILLKRILL_ADMIN_PASSWORD", "chief-password-long")];
    let appliance = Appliance::start_with_env(&temp.path().join("data"), &[], &env);
    assert!(appliance.token.is_some(), "the harness logged in as chief");
    let access = appliance.login("chief", "chief-password-long");
    assert_eq!(get(&appliance, "/api/v1/auth/me", &access).1["username"], "chief");
    assert!(!temp.path().join("data/setup-token").exists());
    // A password too short to be one is refused at start, naming the variable.
    let output = serve(&[], &[("KILLKRILL_ADMIN_PASSWORD", "short")]);
    assert_clear_failure(&output, 2, "KILLKRILL_ADMIN_PASSWORD");
}

fn admin_create(data_dir: &std::path::Path, username: &str, password: &str) -> std::process::Output {
    let mut child = Command::new(BINARY)
        .args([
            "admin",
            "create",
            "--username",
            username,
            "--role",
            "admin",
            "--password-stdin",
            "--data-dir",
        ])
        .arg(data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn admin_create_works_on_the_store_without_a_server() {
    let temp = tempfile::tempdir().unwrap();
    let data_dir = temp.path().join("data");
    let output = admin_create(&data_dir, "ops", "ops-password-long");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_clear_failure(&admin_create(&data_dir, "ops", "ops-password-long"), 1, "exists already");
    assert_clear_failure(&admin_create(&data_dir, "ops2", "short"), 2, "password");
    let appliance = Appliance::start_with_env(&data_dir, &[], &[("KILLKRILL_ADMIN_PASSWORD", "")]);
    let access = appliance.login("ops", "ops-password-long");
    assert_eq!(get(&appliance, "/api/v1/auth/me", &access).1["role"], "admin");
    assert!(
        appliance.log_lines.iter().all(|line| line.get("setup_token").is_none()),
        "no setup token once a user exists"
    );
}

#[test]
fn api_keys_are_shown_once_carry_their_role_and_die_when_deleted() {
    let appliance = Appliance::start();
    let admin = admin_key(&appliance);
    let (status, created) =
        post(&appliance, "/api/v1/api-keys", Some(admin), json!({ "name": "grafana", "role": "viewer" }));
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("kk_") && key.len() >= 40, "{key}");
    assert_eq!(created["prefix"].as_str().unwrap(), &key[..10]);
    let id = created["id"].as_str().unwrap().to_owned();

    assert_eq!(get(&appliance, "/api/v1/stats", &key).0, 200);
    let (_, me) = get(&appliance, "/api/v1/auth/me", &key);
    assert_eq!(me, json!({ "username": "grafana", "role": "viewer", "kind": "api_key" }));
    let (status, _) = post(&appliance, "/api/v1/logs", Some(&key), json!([{ "message": "nope" }]));
    assert_eq!(status, 403, "a viewer key cannot ingest");

    let (_, list) = get(&appliance, "/api/v1/api-keys", admin);
    let listed =
        list["api_keys"].as_array().unwrap().iter().find(|k| k["id"] == id.as_str()).unwrap().clone();
    assert_eq!(listed["prefix"], created["prefix"]);
    assert!(listed.get("key").is_none(), "never shown again: {listed}");
    assert!(listed["last_used_at"].is_string(), "{listed}");
    assert!(!list.to_string().contains(&key[10..]));

    // A search repeated (its answer kept by the store's answer cache) ...
    for _ in 0..2 {
        assert_eq!(get(&appliance, "/api/v1/logs?limit=10", &key).0, 200);
    }
    let (status, _) =
        send(&appliance, reqwest::Method::DELETE, &format!("/api/v1/api-keys/{id}"), Some(admin), None);
    assert_eq!(status, 204);
    assert_eq!(get(&appliance, "/api/v1/stats", &key).0, 401);
    // ... is refused like everything else once the key is gone.
    assert_eq!(get(&appliance, "/api/v1/logs?limit=10", &key).0, 401);
    let (status, _) =
        send(&appliance, reqwest::Method::DELETE, &format!("/api/v1/api-keys/{id}"), Some(admin), None);
    assert_eq!(status, 404);
}

#[test]
fn the_last_admin_can_be_neither_deleted_nor_demoted() {
    let appliance = Appliance::start();
    let admin = admin_key(&appliance);
    let delete = |username: &str| {
        send(&appliance, reqwest::Method::DELETE, &format!("/api/v1/users/{username}"), Some(admin), None)
    };
    let demote = |username: &str| {
        send(
            &appliance,
            reqwest::Method::PUT,
            &format!("/api/v1/users/{username}"),
            Some(admin),
            Some(json!({ "role": "viewer" })),
        )
    };
    assert_eq!(delete("admin").0, 409);
    let (status, body) = demote("admin");
    assert_eq!((status, &body["error"]["code"]), (409, &json!("conflict")), "{body}");
    create_user(&appliance, "second", "second-password-long", "admin");
    let (status, body) = demote("admin");
    assert_eq!((status, &body["role"]), (200, &json!("viewer")), "{body}");
    assert_eq!(delete("second").0, 409, "second is now the last admin");
    assert_eq!(delete("admin").0, 204);
    assert_eq!(delete("admin").0, 404);
    let (status, body) = post(
        &appliance,
        "/api/v1/users",
        Some(admin),
        json!({ "username": "second", "password": "x-password-long", "role": "viewer" }),
    );
    assert_eq!((status, &body["error"]["code"]), (409, &json!("conflict")));
    let (status, body) = post(
        &appliance,
        "/api/v1/users",
        Some(admin),
        json!({ "username": "bad name", "password": "x-password-long", "role": "viewer" }),
    );
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap().starts_with("username"), "{body}");
}

#[test]
fn audit_records_who_did_what_from_where_and_no_secret_reaches_the_log() {
    let appliance = Appliance::start();
    let admin = admin_key(&appliance).to_owned();
    create_user(&appliance, "eve", "eve-password-long", "viewer");
    let (status, _) = send(
        &appliance,
        reqwest::Method::PUT,
        "/api/v1/users/eve",
        Some(&admin),
        Some(json!({ "role": "maintainer", "password": "eve-new-password" })),
    );
    assert_eq!(status, 200);
    assert_eq!(appliance.login_answer("eve", "wrong-password-x").0, 401);

    let (status, page) = get(&appliance, "/api/v1/audit?limit=2", &admin);
    assert_eq!(status, 200, "{page}");
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let failed = &entries[0];
    assert_eq!(failed["action"], "POST /api/v1/auth/login");
    assert_eq!((failed["actor"].as_str(), failed["status"].as_u64()), (Some("anonymous"), Some(401)));
    assert_eq!(failed["detail"], "username: eve");
    assert_eq!(failed["source"], "127.0.0.1");
    assert!(failed["role"].is_null());
    let put = &entries[1];
    assert_eq!(put["action"], "PUT /api/v1/users/{username}");
    assert_eq!((put["actor"].as_str(), put["role"].as_str()), (Some("api_key:harness"), Some("admin")));
    assert_eq!(put["status"], 200);
    assert_eq!(put["detail"], "username: eve, role: maintainer, password changed");
    assert!(entries[0]["id"].as_i64() > entries[1]["id"].as_i64(), "newest first");

    let cursor = page["next_cursor"].as_str().expect("more pages");
    let (_, older) = get(&appliance, &format!("/api/v1/audit?limit=1&cursor={cursor}"), &admin);
    let created = &older["entries"][0];
    assert_eq!(created["action"], "POST /api/v1/users");
    assert_eq!(created["status"], 201);
    assert_eq!(created["detail"], "username: eve, role: viewer");
    assert!(created["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(get(&appliance, "/api/v1/audit?limit=0", &admin).0, 400);

    // Reads are not audited; every entry so far is a mutation.
    let (_, all) = get(&appliance, "/api/v1/audit?limit=1000", &admin);
    assert!(
        all["entries"].as_array().unwrap().iter().all(|e| !e["action"].as_str().unwrap().starts_with("GET"))
    );
    // No password, key or token in the log.
    let log = serde_json::to_string(&appliance.log_lines).unwrap();
    for secret in [ADMIN_PASSWORD, "eve-password-long", "eve-new-password", "wrong-password-x", &admin] {
        assert!(!log.contains(secret), "{secret} reached the log");
    }
}

/// A GET or POST over HTTPS with a rustls client trusting the test CA: (status, body).
fn https(
    certificates: &crate::tls::Certificates,
    address: std::net::SocketAddr,
    request: &str,
) -> (u16, String) {
    let config = certificates.client_config(None, false);
    let socket = TcpStream::connect(address).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = rustls::StreamOwned::new(rustls::ClientConnection::new(config, name).unwrap(), socket);
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    (status, body)
}

#[test]
fn the_api_serves_https_with_the_configured_certificate() {
    let certificates = crate::tls::Certificates::new();
    let data_dir = certificates.path("api-data");
    let (cert, key) = (certificates.path("server.pem"), certificates.path("server.key"));
    let appliance = Appliance::start_in(
        &data_dir,
        &["--api-tls-cert", cert.to_str().unwrap(), "--api-tls-key", key.to_str().unwrap()],
    );
    assert_eq!(appliance.scheme, "https");
    let host = format!("Host: localhost:{}\r\nConnection: close\r\n", appliance.api.port());
    let (status, body) = https(&certificates, appliance.api, &format!("GET /health HTTP/1.1\r\n{host}\r\n"));
    assert_eq!(status, 200, "{body}");
    let login = json!({ "username": "admin", "password": ADMIN_PASSWORD }).to_string();
    let request = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\n{host}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{login}",
        login.len()
    );
    let (status, body) = https(&certificates, appliance.api, &request);
    assert_eq!(status, 200, "{body}");
    let token: Value = serde_json::from_str(&body).unwrap();
    let token = token["access_token"].as_str().unwrap();
    let request = format!("GET /api/v1/auth/me HTTP/1.1\r\n{host}Authorization: Bearer {token}\r\n\r\n");
    let (status, body) = https(&certificates, appliance.api, &request);
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()["username"].clone()),
        (200, json!("admin"))
    );
    // Plain HTTP to the HTTPS port gets no answer.
    assert!(reqwest::blocking::get(format!("http://{}/health", appliance.api)).is_err());
    // `killkrill query` over HTTPS, trusting the test CA.
    let server = format!("https://localhost:{}", appliance.api.port());
    let ca = certificates.path("ca.pem");
    let query = |ca: Option<&std::path::Path>| {
        let mut command = Command::new(BINARY);
        command.args(["query", "--server", &server, "--token", token, "--json"]);
        if let Some(ca) = ca {
            command.arg("--ca-cert").arg(ca);
        }
        command.args(["logs", "-q", "nothing-matches-this"]).env_remove("KILLKRILL_CA_CERT").output().unwrap()
    };
    let output = query(Some(&ca));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let output = query(None);
    assert_eq!(output.status.code(), Some(1), "an unknown CA is refused");
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot reach"));
}

#[test]
fn plain_http_off_loopback_needs_allow_http() {
    let output = serve(&["--api-listen", "0.0.0.0:0"], &[]);
    assert_clear_failure(&output, 2, "api.allow_http");
    assert!(String::from_utf8_lossy(&output.stderr).contains("api.tls_cert"));
    let output =
        serve(&["--api-listen", "127.0.0.1:0"], &[("KILLKRILL_API__TLS_CERT", "/nonexistent/cert.pem")]);
    assert_clear_failure(&output, 2, "api.tls_key");
    let temp = tempfile::tempdir().unwrap();
    let appliance =
        Appliance::start_in(&temp.path().join("data"), &["--api-listen", "0.0.0.0:0", "--api-allow-http"]);
    assert_eq!(appliance.get_json("/api/v1/auth/me").1["username"], "harness");
}
