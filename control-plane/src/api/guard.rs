//! The two middlewares of the security model: `guard` authenticates the caller and checks
//! its role against `policy::ROUTES` for every matched route; `audit` records every
//! mutating request under /api/v1/ with who, what, from where and the answer.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

use super::AppState;
use super::error::ApiError;
use super::policy::{self, Access};
use crate::auth::secrets::{API_KEY_PREFIX, constant_time_eq, sha256_hex};
use crate::auth::{Authenticator, Principal, PrincipalKind, now_ns};
use crate::store::{AuditRecord, Role};
use crate::{Error, Result};

/// How often an API key's `last_used_at` is written, at most (a write per request would
/// make every ingest call a store write).
const KEY_TOUCH_INTERVAL_NS: i64 = 60_000_000_000;

/// What a handler adds to its answer for the audit log.
#[derive(Clone, Debug, Default)]
pub struct AuditNote {
    /// Who acted, when the handler knows better than the credentials (a login).
    pub actor: Option<String>,
    /// What was acted on, never a secret (e.g. `username: ada`).
    pub detail: Option<String>,
}

/// Answers `response` with `note` attached for the audit middleware.
pub fn noted(mut response: Response, note: AuditNote) -> Response {
    response.extensions_mut().insert(note);
    response
}

/// Authentication and authorization for every matched route.
pub async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(route) = request.extensions().get::<MatchedPath>().map(|path| path.as_str().to_owned()) else {
        return next.run(request).await;
    };
    let needed = match policy::access(request.method(), &route) {
        Some(Access::Public) => return next.run(request).await,
        Some(Access::Metrics) if state.auth.settings.metrics_public => return next.run(request).await,
        Some(Access::Metrics) => Role::Viewer,
        Some(Access::Role(role)) => role,
        // The web UI's files and other routes outside the API are public.
        None if !route.starts_with("/api/") => return next.run(request).await,
        // Another method of a known route: answered as the router would, without running
        // anything behind it.
        None if policy::route_known(&route) => {
            return (axum::http::StatusCode::METHOD_NOT_ALLOWED, axum::Json(serde_json::json!({
                "error": { "code": "method_not_allowed", "message": "this route does not take that method" }
            })))
                .into_response();
        }
        None => {
            tracing::error!(method = %request.method(), route, "Route has no access policy; refused.");
            return ApiError(Error::Forbidden("this route has no access policy".to_owned())).into_response();
        }
    };
    let principal = match authenticate(&state.auth, request.headers()).await {
        Ok(principal) => principal,
        Err(error) => return ApiError(error).into_response(),
    };
    if principal.role < needed {
        let mut response =
            ApiError(Error::Forbidden(format!("this needs the {needed} role; you have {}", principal.role)))
                .into_response();
        response.extensions_mut().insert(principal);
        return response;
    }
    request.extensions_mut().insert(principal.clone());
    let mut response = next.run(request).await;
    response.extensions_mut().insert(principal);
    response
}

/// The caller named by `Authorization: Bearer <token>`: an API key (`kk_...`) or an access
/// token. Never logs or echoes the credential.
pub async fn authenticate(auth: &Authenticator, headers: &HeaderMap) -> Result<Principal> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(Error::Unauthorized("credentials needed: send `Authorization: Bearer <token>`"))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or(Error::Unauthorized("the Authorization header must be `Bearer <token>`"))?;
    if token.starts_with(API_KEY_PREFIX) {
        let hash = sha256_hex(token);
        // A key the store confirmed moments ago (docs/adr/0035); only confirmed keys are
        // kept, so a wrong key always reaches the store.
        let key = match auth.api_key_cache.get(&hash) {
            Some(key) => key,
            None => {
                let generation = auth.api_key_cache.generation();
                let Some((key, stored)) = auth.store.api_key_by_hash(&hash).await? else {
                    return Err(Error::Unauthorized("invalid API key"));
                };
                // The lookup found it by hash already; compare again in constant time so
                // that nothing depends on how the store compares.
                if !constant_time_eq(&stored, &hash) {
                    return Err(Error::Unauthorized("invalid API key"));
                }
                auth.api_key_cache.insert(&hash, key.clone(), generation);
                key
            }
        };
        let now = now_ns();
        if key.last_used_ns.is_none_or(|used| now - used > KEY_TOUCH_INTERVAL_NS) {
            auth.api_key_cache.touched(&hash, now);
            if let Err(error) = auth.store.touch_api_key(&key.id, now).await {
                tracing::warn!(error = %error, "Cannot record when an API key was used.");
            }
        }
        return Ok(Principal { name: key.name, role: key.role, kind: PrincipalKind::ApiKey });
    }
    let claims = auth.keys.verify(token).ok_or(Error::Unauthorized("invalid or expired token"))?;
    Ok(Principal { name: claims.sub, role: claims.role, kind: PrincipalKind::User })
}

/// Records every mutating request under /api/v1/ that reached a route.
pub async fn audit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let mutating = matches!(method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE);
    let route = request.extensions().get::<MatchedPath>().map(|path| path.as_str().to_owned());
    let Some(route) = route.filter(|route| mutating && route.starts_with("/api/v1/")) else {
        return next.run(request).await;
    };
    let source = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |ConnectInfo(address)| address.ip().to_string());
    let response = next.run(request).await;
    let principal = response.extensions().get::<Principal>();
    let note = response.extensions().get::<AuditNote>().cloned().unwrap_or_default();
    let record = AuditRecord {
        id: 0,
        at_ns: now_ns(),
        actor: note
            .actor
            .or_else(|| principal.map(Principal::actor))
            .unwrap_or_else(|| "anonymous".to_owned()),
        role: principal.map(|principal| principal.role),
        action: format!("{method} {route}"),
        source,
        status: response.status().as_u16(),
        detail: note.detail,
    };
    if let Err(error) = state.auth.store.append_audit(&record).await {
        tracing::error!(error = %error, action = record.action, "Audit entry not stored.");
    }
    response
}
