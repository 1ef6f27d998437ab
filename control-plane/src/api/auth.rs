//! `/api/v1/auth/*`: login, refresh, logout, who am I, and the first admin's setup.

use std::net::SocketAddr;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;
use super::guard::{AuditNote, noted};
use crate::auth::secrets::{REFRESH_TOKEN_PREFIX, random_token, sha256_hex};
use crate::auth::tokens::now_s;
use crate::auth::{self, Authenticator, Principal, PrincipalKind, now_ns};
use crate::store::{Role, UserRecord};
use crate::{Error, Result};

/// The body of an API request as `T`; a bad body is a 400 naming `body`.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T> {
    serde_json::from_slice(body)
        .map_err(|error| Error::BadRequest { parameter: "body", message: error.to_string() })
}

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Deserialize, ToSchema)]
pub struct SetupRequest {
    /// The one-time token from the log or `data_dir/setup-token`.
    pub setup_token: String,
    pub username: String,
    pub password: String,
}

/// A user as the API shows it in token answers.
#[derive(Serialize, ToSchema)]
pub struct SessionUser {
    pub username: String,
    pub role: Role,
}

/// Login and refresh answers.
#[derive(Serialize, ToSchema)]
pub struct TokenAnswer {
    /// A JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Opaque; exchange it at /api/v1/auth/refresh before it expires (once: it rotates).
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until `access_token` expires.
    pub expires_in: u64,
    pub user: SessionUser,
}

/// `GET /api/v1/auth/me`.
#[derive(Serialize, ToSchema)]
pub struct MeAnswer {
    pub username: String,
    pub role: Role,
    /// `user` or `api_key`.
    pub kind: String,
}

const BAD_CREDENTIALS: &str = "wrong username or password";

/// Exchanges a username and password for an access and a refresh token.
#[utoipa::path(post, path = "/api/v1/auth/login", request_body = LoginRequest, tag = "auth", responses(
    (status = 200, description = "Logged in", body = TokenAnswer),
    (status = 401, description = "Wrong username or password (the same answer for both)", body = super::openapi::ErrorAnswer),
    (status = 429, description = "Too many attempts (`rate_limited`) or the account is locked (`locked`); see Retry-After", body = super::openapi::ErrorAnswer),
))]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    let request: LoginRequest = match parse_body(&body) {
        Ok(request) => request,
        Err(error) => return ApiError(error).into_response(),
    };
    let note = AuditNote { actor: None, detail: Some(format!("username: {}", request.username)) };
    match login_checked(&state.auth, peer, request).await {
        Ok((answer, principal)) => {
            let mut response = Json(answer).into_response();
            response.extensions_mut().insert(principal);
            noted(response, note)
        }
        Err(error) => noted(ApiError(error).into_response(), note),
    }
}

async fn login_checked(
    auth: &Authenticator,
    peer: SocketAddr,
    request: LoginRequest,
) -> Result<(TokenAnswer, Principal)> {
    if let Err(wait) = auth.limiter.check(peer.ip(), &request.username, Instant::now()) {
        return Err(Error::TooManyAttempts {
            locked: false,
            retry_after_s: wait.as_secs_f64().ceil() as u64,
            message: "too many failed logins; try again later".to_owned(),
        });
    }
    let user = auth.store.user(&request.username).await?;
    let now = now_ns();
    if let Some(until) = user.as_ref().and_then(|user| user.locked_until_ns).filter(|until| *until > now) {
        return Err(locked(until, now));
    }
    let hash = user.as_ref().map(|user| user.password_hash.clone());
    let valid = auth::verify_password(request.password, hash).await?;
    let Some(user) = user.filter(|_| valid) else {
        if let Some(user) = auth.store.user(&request.username).await? {
            let settings = &auth.settings;
            let until = now.saturating_add(i64::try_from(settings.lockout.as_nanos()).unwrap_or(i64::MAX));
            if let Some(until) = auth
                .store
                .record_login_failure(&user.username, i64::from(settings.lockout_threshold), until)
                .await?
            {
                tracing::warn!(
                    username = user.username,
                    locked_until = auth::rfc3339(until),
                    "Account locked after failed logins."
                );
            }
        }
        auth.limiter.record_failure(peer.ip(), &request.username, Instant::now());
        return Err(Error::Unauthorized(BAD_CREDENTIALS));
    };
    auth.store.record_login_success(&user.username, now).await?;
    let principal = Principal { name: user.username.clone(), role: user.role, kind: PrincipalKind::User };
    Ok((issue_tokens(auth, &user).await?, principal))
}

fn locked(until_ns: i64, now_ns: i64) -> Error {
    Error::TooManyAttempts {
        locked: true,
        retry_after_s: u64::try_from((until_ns - now_ns) / 1_000_000_000 + 1).unwrap_or(1),
        message: "this account is locked after repeated failed logins; try again later".to_owned(),
    }
}

async fn issue_tokens(auth: &Authenticator, user: &UserRecord) -> Result<TokenAnswer> {
    let ttl = auth.settings.access_ttl.as_secs();
    let access_token = auth.keys.issue(&user.username, user.role, now_s(), ttl)?;
    let refresh_token = random_token(REFRESH_TOKEN_PREFIX);
    let expires =
        now_ns().saturating_add(i64::try_from(auth.settings.refresh_ttl.as_nanos()).unwrap_or(i64::MAX));
    auth.store.insert_refresh_token(&sha256_hex(&refresh_token), &user.username, expires).await?;
    Ok(TokenAnswer {
        access_token,
        refresh_token,
        token_type: "Bearer",
        expires_in: ttl,
        user: SessionUser { username: user.username.clone(), role: user.role },
    })
}

/// Exchanges a refresh token for new tokens; the old refresh token stops working.
#[utoipa::path(post, path = "/api/v1/auth/refresh", request_body = RefreshRequest, tag = "auth", responses(
    (status = 200, description = "New tokens", body = TokenAnswer),
    (status = 401, description = "Unknown, used, revoked or expired refresh token", body = super::openapi::ErrorAnswer),
))]
pub async fn refresh(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let request: RefreshRequest = parse_body(&body)?;
    let invalid = Error::Unauthorized("invalid or expired refresh token");
    // Taking it removes it, so a token can be exchanged once even with two control planes.
    let Some((username, expires)) =
        state.auth.store.take_refresh_token(&sha256_hex(&request.refresh_token)).await?
    else {
        return Err(invalid.into());
    };
    if expires <= now_ns() {
        return Err(invalid.into());
    }
    let Some(user) = state.auth.store.user(&username).await? else { return Err(invalid.into()) };
    let answer = issue_tokens(&state.auth, &user).await?;
    let principal = Principal { name: user.username, role: user.role, kind: PrincipalKind::User };
    let mut response = Json(answer).into_response();
    response.extensions_mut().insert(principal);
    Ok(response)
}

/// Revokes a refresh token (the access token runs out by itself).
#[utoipa::path(post, path = "/api/v1/auth/logout", request_body = RefreshRequest, tag = "auth",
    security(("bearer" = [])), responses(
    (status = 204, description = "Revoked (also when it was unknown)"),
))]
pub async fn logout(State(state): State<AppState>, body: Bytes) -> Result<StatusCode, ApiError> {
    let request: RefreshRequest = parse_body(&body)?;
    state.auth.store.take_refresh_token(&sha256_hex(&request.refresh_token)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who the credentials belong to.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", security(("bearer" = [])), responses(
    (status = 200, description = "The caller", body = MeAnswer),
))]
pub async fn me(Extension(principal): Extension<Principal>) -> Json<MeAnswer> {
    let kind = match principal.kind {
        PrincipalKind::User => "user",
        PrincipalKind::ApiKey => "api_key",
    };
    Json(MeAnswer { username: principal.name, role: principal.role, kind: kind.to_owned() })
}

/// Creates the first admin with the one-time setup token printed at first start.
#[utoipa::path(post, path = "/api/v1/auth/setup", request_body = SetupRequest, tag = "auth", responses(
    (status = 201, description = "The first admin", body = SessionUser),
    (status = 401, description = "Wrong setup token", body = super::openapi::ErrorAnswer),
    (status = 409, description = "A user exists already", body = super::openapi::ErrorAnswer),
))]
pub async fn setup(State(state): State<AppState>, body: Bytes) -> Response {
    let request: SetupRequest = match parse_body(&body) {
        Ok(request) => request,
        Err(error) => return ApiError(error).into_response(),
    };
    let note = AuditNote { actor: None, detail: Some(format!("username: {}", request.username)) };
    match setup_checked(&state, &request).await {
        Ok(user) => {
            let mut response = (StatusCode::CREATED, Json(user)).into_response();
            response.extensions_mut().insert(Principal {
                name: request.username.clone(),
                role: Role::Admin,
                kind: PrincipalKind::User,
            });
            noted(response, note)
        }
        Err(error) => noted(ApiError(error).into_response(), note),
    }
}

async fn setup_checked(state: &AppState, request: &SetupRequest) -> Result<SessionUser> {
    let store = &state.auth.store;
    let exists = || Error::Conflict("a user exists already; log in instead".to_owned());
    if store.count_users().await? > 0 {
        return Err(exists());
    }
    if !auth::setup_token_matches(store.as_ref(), &request.setup_token).await? {
        return Err(Error::Unauthorized("invalid setup token"));
    }
    auth::check_username(&request.username)?;
    auth::check_password(&request.password)?;
    let user = UserRecord {
        username: request.username.clone(),
        password_hash: auth::hash_password(request.password.clone()).await?,
        role: Role::Admin,
        created_ns: now_ns(),
        last_login_ns: None,
        failed_logins: 0,
        locked_until_ns: None,
    };
    if !store.insert_first_user(&user).await? {
        return Err(exists());
    }
    store.take_secret(auth::SETUP_TOKEN_NAME).await?;
    let _ = std::fs::remove_file(state.data_dir.join(auth::SETUP_TOKEN_FILE));
    tracing::info!(username = user.username, "First admin created with the setup token.");
    Ok(SessionUser { username: user.username, role: Role::Admin })
}
