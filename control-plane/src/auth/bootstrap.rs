//! The first admin (docs/security.md): there is no default password. At start-up, while
//! the store holds no user, the admin comes from `KILLKRILL_ADMIN_PASSWORD`; failing that
//! a one-time setup token is printed in the log and written to `data_dir/setup-token`
//! (mode 0600), to be used once with `POST /api/v1/auth/setup`.

use std::io::Write as _;
use std::path::Path;

use super::secrets::{constant_time_eq, random_token, sha256_hex};
use super::{Error, Result, SETUP_TOKEN_NAME};
use crate::store::{AuthStore, Role, UserRecord};

pub const ADMIN_PASSWORD_VARIABLE: &str = "KILLKRILL_ADMIN_PASSWORD";
pub const ADMIN_USER_VARIABLE: &str = "KILLKRILL_ADMIN_USER";
/// In the data directory.
pub const SETUP_TOKEN_FILE: &str = "setup-token";
const SETUP_TOKEN_PREFIX: &str = "kks_";

/// Makes sure that someone can become admin: see the module comment.
pub async fn bootstrap(store: &dyn AuthStore, data_dir: &Path) -> Result<()> {
    let token_file = data_dir.join(SETUP_TOKEN_FILE);
    if store.count_users().await? > 0 {
        // A token from before the first user is useless now; do not leave it lying about.
        let _ = std::fs::remove_file(&token_file);
        return Ok(());
    }
    if let Some(password) = std::env::var(ADMIN_PASSWORD_VARIABLE).ok().filter(|p| !p.is_empty()) {
        let username = std::env::var(ADMIN_USER_VARIABLE).ok().filter(|u| !u.is_empty());
        let username = username.as_deref().unwrap_or("admin");
        let named = |variable: &str, error: Error| match error {
            Error::BadRequest { message, .. } => Error::Config(format!("{variable}: {message}")),
            other => other,
        };
        super::check_username(username).map_err(|error| named(ADMIN_USER_VARIABLE, error))?;
        super::check_password(&password).map_err(|error| named(ADMIN_PASSWORD_VARIABLE, error))?;
        let user = UserRecord {
            username: username.to_owned(),
            password_hash: super::hash_password(password).await?,
            role: Role::Admin,
            created_ns: super::now_ns(),
            last_login_ns: None,
            failed_logins: 0,
            locked_until_ns: None,
        };
        if store.insert_first_user(&user).await? {
            tracing::info!(username, "First admin created from {ADMIN_PASSWORD_VARIABLE}.");
        }
        return Ok(());
    }
    // A token written by an earlier start of this process, still unused, is shown again.
    if let Ok(earlier) = std::fs::read_to_string(&token_file)
        && let Some(stored) = store.secret(SETUP_TOKEN_NAME).await?
        && constant_time_eq(&sha256_hex(earlier.trim()), &stored)
    {
        announce(earlier.trim(), &token_file);
        return Ok(());
    }
    let token = random_token(SETUP_TOKEN_PREFIX);
    let hash = sha256_hex(&token);
    let kept = store.put_secret_if_absent(SETUP_TOKEN_NAME, &hash).await?;
    if !constant_time_eq(&kept, &hash) {
        tracing::warn!(
            file = SETUP_TOKEN_FILE,
            "No user exists and another control plane on this store issued the setup token: \
             use the one in its log or its data directory, or set {ADMIN_PASSWORD_VARIABLE}."
        );
        return Ok(());
    }
    write_private(&token_file, &token).map_err(|error| Error::DataDir {
        path: token_file.clone(),
        message: format!("cannot write: {error}"),
    })?;
    announce(&token, &token_file);
    Ok(())
}

fn announce(token: &str, file: &Path) {
    // The one secret that is logged, on purpose: it is how the first admin is made when
    // no password was given, it works once, and only while no user exists.
    tracing::warn!(
        setup_token = token,
        file = %file.display(),
        "No user exists: create the first admin with POST /api/v1/auth/setup and this one-time setup token."
    );
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

/// Whether `token` is the current setup token (constant-time on the hashes).
pub(crate) async fn setup_token_matches(store: &dyn AuthStore, token: &str) -> Result<bool> {
    Ok(match store.secret(SETUP_TOKEN_NAME).await? {
        Some(stored) => constant_time_eq(&sha256_hex(token), &stored),
        None => false,
    })
}
