//! Administration (admin role): `/api/v1/users*` and `/api/v1/api-keys*`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::parse_body;
use super::error::ApiError;
use super::guard::{AuditNote, noted};
use crate::auth::secrets::{API_KEY_PREFIX, API_KEY_VISIBLE_CHARS, random_id, random_token, sha256_hex};
use crate::auth::{self, now_ns, rfc3339};
use crate::store::{ApiKeyRecord, Role, UserChange, UserRecord};
use crate::{Error, Result};

/// A user as the API shows it (never the password hash).
#[derive(Serialize, ToSchema)]
pub struct UserAnswer {
    pub username: String,
    pub role: Role,
    /// RFC 3339.
    pub created_at: String,
    pub last_login_at: Option<String>,
    /// Set while the account is locked after failed logins.
    pub locked_until: Option<String>,
}

impl UserAnswer {
    fn of(user: &UserRecord) -> Self {
        let now = now_ns();
        Self {
            username: user.username.clone(),
            role: user.role,
            created_at: rfc3339(user.created_ns),
            last_login_at: user.last_login_ns.map(rfc3339),
            locked_until: user.locked_until_ns.filter(|until| *until > now).map(rfc3339),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct UsersAnswer {
    pub users: Vec<UserAnswer>,
}

#[derive(Deserialize, ToSchema)]
pub struct NewUser {
    pub username: String,
    pub password: String,
    pub role: Role,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    pub role: Option<Role>,
    pub password: Option<String>,
}

/// Every user, by name.
#[utoipa::path(get, path = "/api/v1/users", tag = "admin", security(("bearer" = [])), responses(
    (status = 200, description = "Users", body = UsersAnswer),
))]
pub async fn list_users(State(state): State<AppState>) -> Result<Json<UsersAnswer>, ApiError> {
    let users = state.auth.store.users().await?;
    Ok(Json(UsersAnswer { users: users.iter().map(UserAnswer::of).collect() }))
}

/// Creates a user.
#[utoipa::path(post, path = "/api/v1/users", request_body = NewUser, tag = "admin", security(("bearer" = [])), responses(
    (status = 201, description = "Created", body = UserAnswer),
    (status = 400, description = "Bad username, password or role", body = super::openapi::ErrorAnswer),
    (status = 409, description = "The username is taken", body = super::openapi::ErrorAnswer),
))]
pub async fn create_user(State(state): State<AppState>, body: Bytes) -> Response {
    let request: NewUser = match parse_body(&body) {
        Ok(request) => request,
        Err(error) => return ApiError(error).into_response(),
    };
    let note = user_note(&request.username, Some(request.role), false);
    let result = async {
        if !auth::create_user(state.auth.store.as_ref(), &request.username, &request.password, request.role)
            .await?
        {
            return Err(Error::Conflict(format!("user {} exists already", request.username)));
        }
        let user = state.auth.store.user(&request.username).await?;
        user.ok_or_else(|| Error::Internal("a user just created is missing".to_owned()))
    }
    .await;
    match result {
        Ok(user) => noted((StatusCode::CREATED, Json(UserAnswer::of(&user))).into_response(), note),
        Err(error) => noted(ApiError(error).into_response(), note),
    }
}

fn user_note(username: &str, role: Option<Role>, password: bool) -> AuditNote {
    let mut detail = format!("username: {username}");
    if let Some(role) = role {
        detail.push_str(&format!(", role: {role}"));
    }
    if password {
        detail.push_str(", password changed");
    }
    AuditNote { actor: None, detail: Some(detail) }
}

fn user_change(change: UserChange, username: &str) -> Result<()> {
    match change {
        UserChange::Done => Ok(()),
        UserChange::NotFound => Err(Error::NotFound(format!("no user {username}"))),
        UserChange::LastAdmin => {
            Err(Error::Conflict(format!("{username} is the last admin; make another admin first")))
        }
    }
}

/// Changes a user's role and/or password.
#[utoipa::path(put, path = "/api/v1/users/{username}", request_body = UserUpdate, tag = "admin",
    params(("username" = String, Path)), security(("bearer" = [])), responses(
    (status = 200, description = "Changed", body = UserAnswer),
    (status = 404, description = "No such user", body = super::openapi::ErrorAnswer),
    (status = 409, description = "It would demote the last admin", body = super::openapi::ErrorAnswer),
))]
pub async fn update_user(
    State(state): State<AppState>,
    Path(username): Path<String>,
    body: Bytes,
) -> Response {
    let request: UserUpdate = match parse_body(&body) {
        Ok(request) => request,
        Err(error) => return noted(ApiError(error).into_response(), user_note(&username, None, false)),
    };
    let note = user_note(&username, request.role, request.password.is_some());
    let result = async {
        if request.role.is_none() && request.password.is_none() {
            return Err(Error::BadRequest {
                parameter: "body",
                message: "give role and/or password".to_owned(),
            });
        }
        let hash = match request.password {
            Some(password) => {
                auth::check_password(&password)?;
                Some(auth::hash_password(password).await?)
            }
            None => None,
        };
        user_change(
            state.auth.store.update_user(&username, request.role, hash.as_deref()).await?,
            &username,
        )?;
        let user = state.auth.store.user(&username).await?;
        user.ok_or_else(|| Error::NotFound(format!("no user {username}")))
    }
    .await;
    match result {
        Ok(user) => noted(Json(UserAnswer::of(&user)).into_response(), note),
        Err(error) => noted(ApiError(error).into_response(), note),
    }
}

/// Removes a user and revokes its refresh tokens.
#[utoipa::path(delete, path = "/api/v1/users/{username}", tag = "admin",
    params(("username" = String, Path)), security(("bearer" = [])), responses(
    (status = 204, description = "Removed"),
    (status = 404, description = "No such user", body = super::openapi::ErrorAnswer),
    (status = 409, description = "It is the last admin", body = super::openapi::ErrorAnswer),
))]
pub async fn delete_user(State(state): State<AppState>, Path(username): Path<String>) -> Response {
    let note = user_note(&username, None, false);
    let result = async { user_change(state.auth.store.delete_user(&username).await?, &username) }.await;
    match result {
        Ok(()) => noted(StatusCode::NO_CONTENT.into_response(), note),
        Err(error) => noted(ApiError(error).into_response(), note),
    }
}

/// An API key as listed (the key itself is shown only when created).
#[derive(Serialize, ToSchema)]
pub struct ApiKeyAnswer {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// The key's first characters.
    pub prefix: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

impl ApiKeyAnswer {
    fn of(key: &ApiKeyRecord) -> Self {
        Self {
            id: key.id.clone(),
            name: key.name.clone(),
            role: key.role,
            prefix: key.prefix.clone(),
            created_at: rfc3339(key.created_ns),
            last_used_at: key.last_used_ns.map(rfc3339),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeysAnswer {
    pub api_keys: Vec<ApiKeyAnswer>,
}

#[derive(Deserialize, ToSchema)]
pub struct NewApiKey {
    /// What the key is for (1 to 64 characters), e.g. `agent-node-7`.
    pub name: String,
    pub role: Role,
}

/// The answer to creating a key: the only time `key` is shown.
#[derive(Serialize, ToSchema)]
pub struct CreatedApiKey {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub prefix: String,
    pub created_at: String,
    /// The key, for `Authorization: Bearer`; it cannot be shown again.
    pub key: String,
}

/// Every API key, oldest first.
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "admin", security(("bearer" = [])), responses(
    (status = 200, description = "API keys", body = ApiKeysAnswer),
))]
pub async fn list_api_keys(State(state): State<AppState>) -> Result<Json<ApiKeysAnswer>, ApiError> {
    let keys = state.auth.store.api_keys().await?;
    Ok(Json(ApiKeysAnswer { api_keys: keys.iter().map(ApiKeyAnswer::of).collect() }))
}

/// Creates an API key with a role; the answer is the only place the key appears.
#[utoipa::path(post, path = "/api/v1/api-keys", request_body = NewApiKey, tag = "admin", security(("bearer" = [])), responses(
    (status = 201, description = "Created", body = CreatedApiKey),
    (status = 400, description = "Bad name or role", body = super::openapi::ErrorAnswer),
))]
pub async fn create_api_key(State(state): State<AppState>, body: Bytes) -> Response {
    let request: NewApiKey = match parse_body(&body) {
        Ok(request) => request,
        Err(error) => return ApiError(error).into_response(),
    };
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        let error =
            Error::BadRequest { parameter: "name", message: "1 to 64 printable characters".to_owned() };
        return ApiError(error).into_response();
    }
    let key = random_token(API_KEY_PREFIX);
    let record = ApiKeyRecord {
        id: random_id(),
        name: name.to_owned(),
        role: request.role,
        prefix: key[..API_KEY_VISIBLE_CHARS].to_owned(),
        created_ns: now_ns(),
        last_used_ns: None,
    };
    let note = AuditNote {
        actor: None,
        detail: Some(format!("api_key: {} ({}), role: {}", record.name, record.id, record.role)),
    };
    if let Err(error) = state.auth.store.insert_api_key(&record, &sha256_hex(&key)).await {
        return noted(ApiError(error).into_response(), note);
    }
    let answer = CreatedApiKey {
        id: record.id,
        name: record.name,
        role: record.role,
        prefix: record.prefix,
        created_at: rfc3339(record.created_ns),
        key,
    };
    noted((StatusCode::CREATED, Json(answer)).into_response(), note)
}

/// Deletes an API key: it stops working at once.
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "admin",
    params(("id" = String, Path)), security(("bearer" = [])), responses(
    (status = 204, description = "Deleted"),
    (status = 404, description = "No such key", body = super::openapi::ErrorAnswer),
))]
pub async fn delete_api_key(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let note = AuditNote { actor: None, detail: Some(format!("api_key id: {id}")) };
    let result = async {
        if state.auth.store.delete_api_key(&id).await? {
            // Requests after this answer must not find the key remembered.
            state.auth.api_key_cache.remove_id(&id);
            Ok(())
        } else {
            Err(Error::NotFound(format!("no API key {id}")))
        }
    }
    .await;
    match result {
        Ok(()) => noted(StatusCode::NO_CONTENT.into_response(), note),
        Err(error) => noted(ApiError(error).into_response(), note),
    }
}
