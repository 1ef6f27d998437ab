//! What the security model keeps in the store (docs/security.md): users, refresh tokens,
//! API keys, the audit log and the secrets every control plane on one store shares. A
//! sibling of [`super::Store`], implemented once for both SQL dialects in `auth_sql`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Result;

/// What a user or an API key may do; each role can do all that the ones below it can.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads logs, metrics, stats, sources, nodes and configuration.
    Viewer,
    /// Also changes configuration and ingests (node agents use maintainer API keys).
    Maintainer,
    /// Also manages users and API keys and reads the audit log.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Maintainer, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Maintainer => "maintainer",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "viewer" => Ok(Role::Viewer),
            "maintainer" => Ok(Role::Maintainer),
            "admin" => Ok(Role::Admin),
            other => Err(format!("`{other}` is not a role (admin, maintainer or viewer)")),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A user as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub username: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub role: Role,
    pub created_ns: i64,
    pub last_login_ns: Option<i64>,
    /// Consecutive failed logins since the last success or lockout.
    pub failed_logins: i64,
    pub locked_until_ns: Option<i64>,
}

/// An API key as stored (the key itself is never stored; its SHA-256 is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// The first characters of the key, to recognise it in lists.
    pub prefix: String,
    pub created_ns: i64,
    pub last_used_ns: Option<i64>,
}

/// One audited request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Assigned by the store; ignored on insert.
    pub id: i64,
    pub at_ns: i64,
    /// A username, `api_key:<name>` or `anonymous`.
    pub actor: String,
    pub role: Option<Role>,
    /// Method and matched route, e.g. `PUT /api/v1/users/{username}`.
    pub action: String,
    /// The client's address.
    pub source: String,
    pub status: u16,
    pub detail: Option<String>,
}

/// The outcome of changing or removing a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserChange {
    Done,
    NotFound,
    /// Refused: it would leave no admin.
    LastAdmin,
}

#[async_trait]
pub trait AuthStore: Send + Sync {
    async fn count_users(&self) -> Result<i64>;
    async fn user(&self, username: &str) -> Result<Option<UserRecord>>;
    /// Every user, by name.
    async fn users(&self) -> Result<Vec<UserRecord>>;
    /// False when the username is taken.
    async fn insert_user(&self, user: &UserRecord) -> Result<bool>;
    /// Inserts only while the store holds no user at all; false otherwise.
    async fn insert_first_user(&self, user: &UserRecord) -> Result<bool>;
    /// Changes the role and/or the password hash (a new password revokes the user's refresh
    /// tokens); demoting the last admin is refused.
    async fn update_user(
        &self,
        username: &str,
        role: Option<Role>,
        password_hash: Option<&str>,
    ) -> Result<UserChange>;
    /// Removes the user and its refresh tokens; removing the last admin is refused.
    async fn delete_user(&self, username: &str) -> Result<UserChange>;
    /// Records a successful login: last login time, failures reset, lock lifted.
    async fn record_login_success(&self, username: &str, now_ns: i64) -> Result<()>;
    /// Counts a failed login; the `threshold`-th consecutive one locks the account until
    /// `lock_until_ns` (and restarts the count). Returns the lock end when it locked.
    async fn record_login_failure(
        &self,
        username: &str,
        threshold: i64,
        lock_until_ns: i64,
    ) -> Result<Option<i64>>;
    async fn insert_refresh_token(&self, token_hash: &str, username: &str, expires_ns: i64) -> Result<()>;
    /// Removes the token and returns its user and expiry: a token can be taken once.
    async fn take_refresh_token(&self, token_hash: &str) -> Result<Option<(String, i64)>>;
    async fn insert_api_key(&self, key: &ApiKeyRecord, key_hash: &str) -> Result<()>;
    /// Every API key, oldest first.
    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>>;
    /// The key with this SHA-256 (hex), with the stored hash.
    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<(ApiKeyRecord, String)>>;
    async fn touch_api_key(&self, id: &str, now_ns: i64) -> Result<()>;
    /// False when no key has this id.
    async fn delete_api_key(&self, id: &str) -> Result<bool>;
    async fn secret(&self, name: &str) -> Result<Option<String>>;
    /// Stores `value` unless a value is stored already; returns the one kept, so that
    /// control planes starting together agree.
    async fn put_secret_if_absent(&self, name: &str, value: &str) -> Result<String>;
    /// Removes the secret and returns it: it can be taken once.
    async fn take_secret(&self, name: &str) -> Result<Option<String>>;
    async fn append_audit(&self, entry: &AuditRecord) -> Result<()>;
    /// Newest first, at most `limit`, with ids below `before_id` when given.
    async fn audit(&self, limit: i64, before_id: Option<i64>) -> Result<Vec<AuditRecord>>;
}
