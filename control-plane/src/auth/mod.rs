//! Who is calling and what they may do (docs/security.md, docs/adr/0021): password
//! hashing, access tokens (JWT) and refresh tokens, API keys, login throttling and the
//! first admin. HTTP lives in `api::auth` and `api::guard`; storage in `store::auth`.

mod bootstrap;
pub mod key_cache;
mod limiter;
pub mod secrets;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

pub(crate) use bootstrap::setup_token_matches;
pub use bootstrap::{ADMIN_PASSWORD_VARIABLE, ADMIN_USER_VARIABLE, SETUP_TOKEN_FILE, bootstrap};
pub use limiter::LoginLimiter;
pub use tokens::{AccessClaims, JwtKeys};

use crate::config::AuthConfig;
use crate::store::{AuthStore, Role, UserRecord};
use crate::{Error, Result};

/// The name under which the shared JWT signing key is kept in the store.
pub const JWT_SECRET_NAME: &str = "jwt_secret";
/// The name under which the hash of the one-time setup token is kept.
pub const SETUP_TOKEN_NAME: &str = "setup_token";

/// Usernames: letters, digits and `._@-`, 1 to 64 characters.
pub fn check_username(username: &str) -> Result<()> {
    let valid = !username.is_empty()
        && username.len() <= 64
        && username.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(Error::BadRequest {
            parameter: "username",
            message: "1 to 64 characters: letters, digits, '.', '_', '@' or '-'".to_owned(),
        })
    }
}

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted (argon2 takes any length; this bounds the work per login).
pub const MAX_PASSWORD_BYTES: usize = 1024;

pub fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Error::BadRequest {
            parameter: "password",
            message: format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        });
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::BadRequest {
            parameter: "password",
            message: format!("must be at most {MAX_PASSWORD_BYTES} bytes"),
        });
    }
    Ok(())
}

/// Who made a request, once authenticated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// The username, or the API key's name.
    pub name: String,
    pub role: Role,
    pub kind: PrincipalKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    User,
    ApiKey,
}

impl Principal {
    /// How the audit log names it: the username, or `api_key:<name>`.
    pub fn actor(&self) -> String {
        match self.kind {
            PrincipalKind::User => self.name.clone(),
            PrincipalKind::ApiKey => format!("api_key:{}", self.name),
        }
    }
}

/// The settings and keys the API's auth needs, shared by every request.
pub struct Authenticator {
    pub store: Arc<dyn AuthStore>,
    pub keys: JwtKeys,
    pub settings: AuthSettings,
    pub limiter: LoginLimiter,
    /// API keys the store confirmed recently (`auth.api_key_cache_s`).
    pub api_key_cache: key_cache::ApiKeyCache,
}

/// The parts of `auth.*` that requests need, in their units.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub lockout_threshold: u32,
    pub lockout: Duration,
    pub metrics_public: bool,
}

impl AuthSettings {
    pub fn from_config(config: &AuthConfig) -> Self {
        Self {
            access_ttl: Duration::from_secs(config.access_token_ttl_s),
            refresh_ttl: Duration::from_secs(config.refresh_token_ttl_s),
            lockout_threshold: config.lockout_threshold,
            lockout: Duration::from_secs(config.lockout_s),
            metrics_public: config.metrics_public,
        }
    }
}

/// Now, in Unix nanoseconds.
pub fn now_ns() -> i64 {
    i64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX)
}

/// Unix nanoseconds as RFC 3339 (whole seconds are enough for people and audits).
pub fn rfc3339(unix_ns: i64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(unix_ns))
        .map(|at| format!("{:.0}", at))
        .unwrap_or_else(|_| "invalid".to_owned())
}

/// Hashes a password (argon2id, random salt, PHC string). CPU-heavy: runs on the
/// blocking pool.
pub async fn hash_password(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || secrets::hash_password(&password))
        .await
        .map_err(|error| Error::Internal(format!("password hashing stopped: {error}")))?
}

/// Checks a password against a PHC string on the blocking pool. A missing user is checked
/// against a dummy hash, so that the answer takes as long whether the user exists or not.
pub async fn verify_password(password: String, hash: Option<String>) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        let hash = hash.unwrap_or_else(|| secrets::DUMMY_HASH.clone());
        secrets::verify_password(&password, &hash)
    })
    .await
    .map_err(|error| Error::Internal(format!("password check stopped: {error}")))
}

/// Creates a user with a freshly hashed password; false when the name is taken.
pub async fn create_user(store: &dyn AuthStore, username: &str, password: &str, role: Role) -> Result<bool> {
    check_username(username)?;
    check_password(password)?;
    let user = UserRecord {
        username: username.to_owned(),
        password_hash: hash_password(password.to_owned()).await?,
        role,
        created_ns: now_ns(),
        last_login_ns: None,
        failed_logins: 0,
        locked_until_ns: None,
    };
    store.insert_user(&user).await
}
