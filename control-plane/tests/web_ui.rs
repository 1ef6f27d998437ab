//! The web UI's files are public and page routes fall back to the application, whether the
//! binary was built with the UI (`cargo xtask ui` first) or without it (no Node.js).

use reqwest::blocking::Client;
use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH};

use crate::harness::Appliance;

const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

fn get(appliance: &Appliance, path: &str, accept: Option<&str>) -> reqwest::blocking::Response {
    let mut request = Client::new().get(appliance.url(path));
    if let Some(accept) = accept {
        request = request.header(ACCEPT, accept);
    }
    request.send().expect("HTTP request")
}

fn header(response: &reqwest::blocking::Response, name: reqwest::header::HeaderName) -> String {
    response.headers().get(name).and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned()
}

#[test]
fn root_page_is_public_html_with_a_content_security_policy() {
    let appliance = Appliance::start();
    let response = get(&appliance, "/", None);
    assert_eq!(response.status(), 200);
    assert!(header(&response, CONTENT_TYPE).starts_with("text/html"));
    assert_eq!(header(&response, CACHE_CONTROL), "no-cache", "a new binary's UI is picked up at once");
    assert!(header(&response, CONTENT_SECURITY_POLICY).contains("default-src 'self'"));
    let body = response.text().expect("body");
    let built = body.contains("/assets/");
    assert!(
        built || body.contains("cargo xtask ui"),
        "either the application or the page saying how to build it: {body}"
    );
}

#[test]
fn page_routes_get_the_application_and_other_unknown_paths_stay_json_404() {
    let appliance = Appliance::start();
    let index = get(&appliance, "/", None).text().expect("body");
    for path in ["/logs", "/logs/65537?at=2026-11-23T10:00:00Z", "/settings", "/users"] {
        let response = get(&appliance, path, Some(BROWSER_ACCEPT));
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.text().expect("body"), index, "{path} is answered with the application");
    }
    // Not a browser navigation, a missing hashed file, an API path: JSON 404s.
    for (path, accept) in [
        ("/logs", Some("application/json")),
        ("/assets/index-missing.js", Some(BROWSER_ACCEPT)),
        ("/api/v2/anything", Some(BROWSER_ACCEPT)),
    ] {
        let response = get(&appliance, path, accept);
        assert_eq!(response.status(), 404, "{path}");
        let body: serde_json::Value = response.json().expect("JSON body");
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    let post = Client::new().post(appliance.url("/settings")).send().expect("POST");
    assert_eq!(post.status(), 404, "only GET reaches the UI");
}

#[test]
fn hashed_assets_have_their_content_type_long_caching_and_an_etag() {
    let appliance = Appliance::start();
    let index = get(&appliance, "/", None).text().expect("body");
    let assets: Vec<&str> = index
        .split('"')
        .filter(|part| part.starts_with("/assets/") && (part.ends_with(".js") || part.ends_with(".css")))
        .collect();
    if !index.contains("/assets/") {
        eprintln!("skipped: this binary was built without the web UI (run `cargo xtask ui`)");
        return;
    }
    assert!(assets.iter().any(|a| a.ends_with(".js")), "index.html loads a script: {index}");
    for asset in assets {
        let response = get(&appliance, asset, None);
        assert_eq!(response.status(), 200, "{asset}");
        let expected = if asset.ends_with(".js") { "text/javascript" } else { "text/css" };
        assert!(header(&response, CONTENT_TYPE).starts_with(expected), "{asset}");
        assert_eq!(header(&response, CACHE_CONTROL), "public, max-age=31536000, immutable");
        let etag = header(&response, ETAG);
        assert!(etag.starts_with('"'), "{asset} has an ETag");
        let again = Client::new()
            .get(appliance.url(asset))
            .header(IF_NONE_MATCH, &etag)
            .send()
            .expect("conditional GET");
        assert_eq!(again.status(), 304, "{asset} is not sent again when unchanged");
    }
}
