//! The web UI: the single-page application from `web/`, embedded at build time
//! (control-plane/build.rs) and served at `/` without credentials; the data it shows comes
//! from `/api/v1/`, which is where authentication applies.
//!
//! Files are served by path with their content type; hashed files under `assets/` are
//! cacheable for a year (their name changes with their content), `index.html` is
//! revalidated on every load so that a new binary's UI is picked up at once. Any other GET
//! for a page (the browser asks for `text/html`) gets `index.html`, whose router shows the
//! page; everything else is the API's JSON 404.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// One embedded file of `web/dist`.
pub struct Asset {
    /// Relative to `web/dist`, `/`-separated, e.g. `assets/index-3f9a1c.js`.
    pub path: &'static str,
    pub bytes: &'static [u8],
    /// Quoted content hash.
    pub etag: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/web_ui_assets.rs"));

const INDEX: &str = "index.html";
/// Hashed build output: safe to cache for good.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Everything else, `index.html` first: always ask whether it changed.
const REVALIDATE: &str = "no-cache";
/// The UI loads only its own scripts and styles and talks only to this server.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

/// Whether this binary carries a built UI.
pub fn is_built() -> bool {
    find(INDEX).is_some()
}

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

/// The router's fallback: an embedded file, the application for a page route, or a 404.
pub async fn fallback(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    let is_api = path == "/api" || path.starts_with("/api/");
    if is_api || (method != Method::GET && method != Method::HEAD) {
        return super::error::not_found().await;
    }
    let relative = path.trim_start_matches('/');
    if let Some(asset) = find(relative).filter(|_| !relative.is_empty()) {
        return asset_response(asset, &headers);
    }
    // A missing hashed file is a 404 even for a browser: answering it with the page would
    // hide a stale or broken build behind a confusing script error.
    let wants_page = relative.is_empty() || (!relative.starts_with("assets/") && accepts_html(&headers));
    if !wants_page {
        return super::error::not_found().await;
    }
    match find(INDEX) {
        Some(index) => asset_response(index, &headers),
        None => not_built_page(),
    }
}

fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.split(',').any(|kind| kind.trim().starts_with("text/html")))
}

fn asset_response(asset: &'static Asset, request: &HeaderMap) -> Response {
    let cache = if asset.path.starts_with("assets/") { IMMUTABLE } else { REVALIDATE };
    let not_modified = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.split(',').any(|tag| tag.trim() == asset.etag || tag.trim() == "*"));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = Response::new(Body::from(asset.bytes));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(asset.path)));
        response
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    if asset.path == INDEX {
        add_page_headers(headers);
    }
    response
}

fn add_page_headers(headers: &mut HeaderMap) {
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

/// The content type by file extension, for what a Vite build writes.
fn content_type(path: &str) -> &'static str {
    let extension = path.rsplit_once('.').map_or("", |(_, extension)| extension);
    match extension {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

const NOT_BUILT_PAGE: &str = "<!doctype html>
<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Killkrill: web UI not built</title></head>
<body style=\"font-family: sans-serif; max-width: 40em; margin: 3em auto\">
<h1>Killkrill</h1>
<p>This binary was built without the web UI.</p>
<p>Build it with <code>cargo xtask ui</code> (needs Node.js 18.19 or later and npm;
<code>cargo xtask setup</code> installs them), then build the binary again
(<code>cargo build</code>, or <code>cargo xtask run</code>, which does both).</p>
<p>The REST API under <code>/api/v1/</code> works without it.</p>
</body></html>
";

fn not_built_page() -> Response {
    let mut response = Response::new(Body::from(NOT_BUILT_PAGE));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(REVALIDATE));
    add_page_headers(headers);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("assets/index-AbC123.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("assets/index-AbC123.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("favicon.svg"), "image/svg+xml");
        assert_eq!(content_type("no-extension"), "application/octet-stream");
    }

    #[test]
    fn only_html_accepting_requests_are_pages() {
        let mut headers = HeaderMap::new();
        assert!(!accepts_html(&headers));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!accepts_html(&headers));
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        );
        assert!(accepts_html(&headers));
    }
}
