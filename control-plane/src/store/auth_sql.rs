//! The auth tables (migrations `*_auth.sql`) on SQLite and PostgreSQL: statements written
//! once with `QueryBuilder` and run on whichever pool is open. Changes that must hold
//! against concurrent control planes (last admin, lockout, single-use tokens) are single
//! statements.

use async_trait::async_trait;
use sqlx::{QueryBuilder, Row};

use super::auth::{ApiKeyRecord, AuditRecord, AuthStore, Role, UserChange, UserRecord};
use super::sql::{Pool, SqlStore, on_pool};
use crate::{Error, Result};

const USER_COLUMNS: &str =
    "username, password_hash, role, created_ns, last_login_ns, failed_logins, locked_until_ns";
const KEY_COLUMNS: &str = "id, name, role, prefix, created_ns, last_used_ns";

fn role_of(text: &str) -> Result<Role> {
    text.parse().map_err(|message: String| Error::Internal(format!("stored role: {message}")))
}

macro_rules! user_row {
    ($row:expr) => {{
        let row = $row;
        UserRecord {
            username: row.try_get("username")?,
            password_hash: row.try_get("password_hash")?,
            role: role_of(row.try_get::<&str, _>("role")?)?,
            created_ns: row.try_get("created_ns")?,
            last_login_ns: row.try_get("last_login_ns")?,
            failed_logins: row.try_get("failed_logins")?,
            locked_until_ns: row.try_get("locked_until_ns")?,
        }
    }};
}

macro_rules! key_row {
    ($row:expr) => {{
        let row = $row;
        ApiKeyRecord {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            role: role_of(row.try_get::<&str, _>("role")?)?,
            prefix: row.try_get("prefix")?,
            created_ns: row.try_get("created_ns")?,
            last_used_ns: row.try_get("last_used_ns")?,
        }
    }};
}

impl SqlStore {
    /// Tells a refused change from a missing user, after a guarded statement changed nothing.
    async fn missing_or_last_admin(&self, username: &str) -> Result<UserChange> {
        Ok(if self.user(username).await?.is_some() { UserChange::LastAdmin } else { UserChange::NotFound })
    }
}

#[async_trait]
impl AuthStore for SqlStore {
    async fn count_users(&self) -> Result<i64> {
        on_pool!(&self.pool, pool => {
            Ok(sqlx::query_scalar("SELECT COUNT(*) FROM auth_users").fetch_one(pool).await?)
        })
    }

    async fn user(&self, username: &str) -> Result<Option<UserRecord>> {
        on_pool!(&self.pool, pool => {
            let mut sql = QueryBuilder::new(format!("SELECT {USER_COLUMNS} FROM auth_users WHERE username = "));
            sql.push_bind(username);
            match sql.build().fetch_optional(pool).await? {
                Some(row) => Ok(Some(user_row!(&row))),
                None => Ok(None),
            }
        })
    }

    async fn users(&self) -> Result<Vec<UserRecord>> {
        on_pool!(&self.pool, pool => {
            let rows = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM auth_users ORDER BY username"))
                .fetch_all(pool)
                .await?;
            let mut users = Vec::with_capacity(rows.len());
            for row in &rows {
                users.push(user_row!(row));
            }
            Ok(users)
        })
    }

    async fn insert_user(&self, user: &UserRecord) -> Result<bool> {
        on_pool!(&self.pool, pool => {
            let mut sql = QueryBuilder::new(
                "INSERT INTO auth_users (username, password_hash, role, created_ns) VALUES (",
            );
            sql.separated(", ")
                .push_bind(user.username.as_str())
                .push_bind(user.password_hash.as_str())
                .push_bind(user.role.as_str())
                .push_bind(user.created_ns);
            sql.push(") ON CONFLICT (username) DO NOTHING");
            Ok(sql.build().execute(pool).await?.rows_affected() == 1)
        })
    }

    async fn insert_first_user(&self, user: &UserRecord) -> Result<bool> {
        on_pool!(&self.pool, pool => {
            let mut sql = QueryBuilder::new(
                "INSERT INTO auth_users (username, password_hash, role, created_ns) SELECT ",
            );
            sql.separated(", ")
                .push_bind(user.username.as_str())
                .push_bind(user.password_hash.as_str())
                .push_bind(user.role.as_str())
                .push_bind(user.created_ns);
            sql.push(" WHERE NOT EXISTS (SELECT 1 FROM auth_users) ON CONFLICT (username) DO NOTHING");
            Ok(sql.build().execute(pool).await?.rows_affected() == 1)
        })
    }

    async fn update_user(
        &self,
        username: &str,
        role: Option<Role>,
        password_hash: Option<&str>,
    ) -> Result<UserChange> {
        let changed = on_pool!(&self.pool, pool => {
            let mut sql = QueryBuilder::new("UPDATE auth_users SET role = COALESCE(");
            sql.push_bind(role.map(Role::as_str))
                .push(", role), password_hash = COALESCE(")
                .push_bind(password_hash)
                .push(", password_hash) WHERE username = ")
                .push_bind(username)
                // The one statement checks and changes, so two admins demoting each other
                // at the same time cannot both succeed.
                .push(" AND (role <> 'admin' OR COALESCE(")
                .push_bind(role.map(Role::as_str))
                .push(", 'admin') = 'admin' OR (SELECT COUNT(*) FROM auth_users WHERE role = 'admin') > 1)");
            let changed = sql.build().execute(pool).await?.rows_affected();
            if changed == 1 && password_hash.is_some() {
                // A new password ends the sessions made with the old one.
                let mut tokens = QueryBuilder::new("DELETE FROM auth_refresh_tokens WHERE username = ");
                tokens.push_bind(username);
                tokens.build().execute(pool).await?;
            }
            changed
        });
        if changed == 1 { Ok(UserChange::Done) } else { self.missing_or_last_admin(username).await }
    }

    async fn delete_user(&self, username: &str) -> Result<UserChange> {
        let deleted = on_pool!(&self.pool, pool => {
            let mut sql = QueryBuilder::new("DELETE FROM auth_users WHERE username = ");
            sql.push_bind(username).push(
                " AND (role <> 'admin' OR (SELECT COUNT(*) FROM auth_users WHERE role = 'admin') > 1)",
            );
            let deleted = sql.build().execute(pool).await?.rows_affected();
            if deleted == 1 {
                let mut tokens = QueryBuilder::new("DELETE FROM auth_refresh_tokens WHERE username = ");
                tokens.push_bind(username);
                tokens.build().execute(pool).await?;
            }
            deleted
        });
        if deleted == 1 { Ok(UserChange::Done) } else { self.missing_or_last_admin(username).await }
    }

    async fn record_login_success(&self, username: &str, now_ns: i64) -> Result<()> {
        on_pool!(&self.pool, pool => {
            let mut sql = QueryBuilder::new("UPDATE auth_users SET last_login_ns = ");
            sql.push_bind(now_ns)
                .push(", failed_logins = 0, locked_until_ns = NULL WHERE username = ")
                .push_bind(username);
            sql.build().execute(pool).await?;
        });
        Ok(())
    }

    async fn record_login_failure(
        &self,
        username: &str,
        threshold: i64,
        lock_until_ns: i64,
    ) -> Result<Option<i64>> {
        on_pool!(&self.pool, pool => {
            // Right-hand sides see the old row in both dialects.
            let mut sql = QueryBuilder::new("UPDATE auth_users SET locked_until_ns = CASE WHEN failed_logins + 1 >= ");
            sql.push_bind(threshold)
                .push(" THEN ")
                .push_bind(lock_until_ns)
                .push(" ELSE locked_until_ns END, failed_logins = CASE WHEN failed_logins + 1 >= ")
                .push_bind(threshold)
                .push(" THEN 0 ELSE failed_logins + 1 END WHERE username = ")
                .push_bind(username)
                .push(" RETURNING failed_logins, locked_until_ns");
            let Some(row) = sql.build().fetch_optional(pool).await? else { return Ok(None) };
            let failed: i64 = row.try_get("failed_logins")?;
            let locked: Option<i64> = row.try_get("locked_until_ns")?;
            Ok(if failed == 0 { locked } else { None })
        })
    }

    async fn insert_refresh_token(&self, token_hash: &str, username: &str, expires_ns: i64) -> Result<()> {
        on_pool!(&self.pool, pool => {
            let mut sql =
                QueryBuilder::new("INSERT INTO auth_refresh_tokens (token_hash, username, expires_ns) VALUES (");
            sql.separated(", ").push_bind(token_hash).push_bind(username).push_bind(expires_ns);
            sql.push(")");
            sql.build().execute(pool).await?;
        });
        Ok(())
    }

    async fn take_refresh_token(&self, token_hash: &str) -> Result<Option<(String, i64)>> {
        on_pool!(&self.pool, pool => {
            let mut sql = QueryBuilder::new("DELETE FROM auth_refresh_tokens WHERE token_hash = ");
            sql.push_bind(token_hash).push(" RETURNING username, expires_ns");
            match sql.build().fetch_optional(pool).await? {
                Some(row) => Ok(Some((row.try_get("username")?, row.try_get("expires_ns")?))),
                None => Ok(None),
            }
        })
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord, key_hash: &str) -> Result<()> {
        on_pool!(&self.pool, pool => {
            let mut sql = QueryBuilder::new(
                "INSERT INTO auth_api_keys (id, name, role, prefix, key_hash, created_ns) VALUES (",
            );
            sql.separated(", ")
                .push_bind(key.id.as_str())
                .push_bind(key.name.as_str())
                .push_bind(key.role.as_str())
                .push_bind(key.prefix.as_str())
                .push_bind(key_hash)
                .push_bind(key.created_ns);
            sql.push(")");
            sql.build().execute(pool).await?;
        });
        Ok(())
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        on_pool!(&self.pool, pool => {
            let rows = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM auth_api_keys ORDER BY created_ns, id"))
                .fetch_all(pool)
                .await?;
            let mut keys = Vec::with_capacity(rows.len());
            for row in &rows {
                keys.push(key_row!(row));
            }
            Ok(keys)
        })
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<(ApiKeyRecord, String)>> {
        on_pool!(&self.pool, pool => {
            let mut sql =
                QueryBuilder::new(format!("SELECT {KEY_COLUMNS}, key_hash FROM auth_api_keys WHERE key_hash = "));
            sql.push_bind(key_hash);
            match sql.build().fetch_optional(pool).await? {
                Some(row) => Ok(Some((key_row!(&row), row.try_get("key_hash")?))),
                None => Ok(None),
            }
        })
    }

    async fn touch_api_key(&self, id: &str, now_ns: i64) -> Result<()> {
        on_pool!(&self.pool, pool => {
            let mut sql = QueryBuilder::new("UPDATE auth_api_keys SET last_used_ns = ");
            sql.push_bind(now_ns).push(" WHERE id = ").push_bind(id);
            sql.build().execute(pool).await?;
        });
        Ok(())
    }

    async fn delete_api_key(&self, id: &str) -> Result<bool> {
        on_pool!(&self.pool, pool => {
            let mut sql = QueryBuilder::new("DELETE FROM auth_api_keys WHERE id = ");
            sql.push_bind(id);
            Ok(sql.build().execute(pool).await?.rows_affected() == 1)
        })
    }

    async fn secret(&self, name: &str) -> Result<Option<String>> {
        on_pool!(&self.pool, pool => {
            let mut sql = QueryBuilder::new("SELECT value FROM auth_secrets WHERE name = ");
            sql.push_bind(name);
            Ok(sql.build_query_scalar().fetch_optional(pool).await?)
        })
    }

    async fn put_secret_if_absent(&self, name: &str, value: &str) -> Result<String> {
        on_pool!(&self.pool, pool => {
            let mut sql = QueryBuilder::new("INSERT INTO auth_secrets (name, value) VALUES (");
            sql.separated(", ").push_bind(name).push_bind(value);
            sql.push(") ON CONFLICT (name) DO NOTHING");
            sql.build().execute(pool).await?;
        });
        self.secret(name)
            .await?
            .ok_or_else(|| Error::Internal(format!("secret {name} vanished after insert")))
    }

    async fn take_secret(&self, name: &str) -> Result<Option<String>> {
        on_pool!(&self.pool, pool => {
            let mut sql = QueryBuilder::new("DELETE FROM auth_secrets WHERE name = ");
            sql.push_bind(name).push(" RETURNING value");
            Ok(sql.build_query_scalar().fetch_optional(pool).await?)
        })
    }

    async fn append_audit(&self, entry: &AuditRecord) -> Result<()> {
        on_pool!(&self.pool, pool => {
            let mut sql = QueryBuilder::new(
                "INSERT INTO audit_log (at_ns, actor, role, action, source, status, detail) VALUES (",
            );
            sql.separated(", ")
                .push_bind(entry.at_ns)
                .push_bind(entry.actor.as_str())
                .push_bind(entry.role.map(Role::as_str))
                .push_bind(entry.action.as_str())
                .push_bind(entry.source.as_str())
                .push_bind(i64::from(entry.status))
                .push_bind(entry.detail.as_deref());
            sql.push(")");
            sql.build().execute(pool).await?;
        });
        Ok(())
    }

    async fn audit(&self, limit: i64, before_id: Option<i64>) -> Result<Vec<AuditRecord>> {
        on_pool!(&self.pool, pool => {
            let mut sql = QueryBuilder::new(
                "SELECT id, at_ns, actor, role, action, source, status, detail FROM audit_log WHERE 1 = 1",
            );
            if let Some(before) = before_id {
                sql.push(" AND id < ").push_bind(before);
            }
            sql.push(" ORDER BY id DESC LIMIT ").push_bind(limit);
            let rows = sql.build().fetch_all(pool).await?;
            let mut entries = Vec::with_capacity(rows.len());
            for row in &rows {
                let role: Option<&str> = row.try_get("role")?;
                let status: i64 = row.try_get("status")?;
                entries.push(AuditRecord {
                    id: row.try_get("id")?,
                    at_ns: row.try_get("at_ns")?,
                    actor: row.try_get("actor")?,
                    role: role.map(role_of).transpose()?,
                    action: row.try_get("action")?,
                    source: row.try_get("source")?,
                    status: u16::try_from(status).unwrap_or(0),
                    detail: row.try_get("detail")?,
                });
            }
            Ok(entries)
        })
    }
}
