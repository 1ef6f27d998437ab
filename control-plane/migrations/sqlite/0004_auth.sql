-- Users, refresh tokens, API keys, the audit log and the shared auth secrets
-- (docs/security.md, docs/adr/0021). Times are Unix nanoseconds; secrets are stored
-- only as hashes (argon2 PHC strings for passwords, SHA-256 hex for tokens and keys).
CREATE TABLE IF NOT EXISTS auth_users (
    username        TEXT    PRIMARY KEY,
    password_hash   TEXT    NOT NULL,
    role            TEXT    NOT NULL,
    created_ns      INTEGER NOT NULL,
    last_login_ns   INTEGER,
    failed_logins   INTEGER NOT NULL DEFAULT 0,
    locked_until_ns INTEGER
);

CREATE TABLE IF NOT EXISTS auth_refresh_tokens (
    token_hash  TEXT    PRIMARY KEY,
    username    TEXT    NOT NULL,
    expires_ns  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS auth_refresh_tokens_by_user ON auth_refresh_tokens (username);

CREATE TABLE IF NOT EXISTS auth_api_keys (
    id           TEXT    PRIMARY KEY,
    name         TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    prefix       TEXT    NOT NULL,
    key_hash     TEXT    NOT NULL UNIQUE,
    created_ns   INTEGER NOT NULL,
    last_used_ns INTEGER
);

-- Secrets every control plane on one store must share (the JWT signing key) and the
-- hash of the one-time setup token.
CREATE TABLE IF NOT EXISTS auth_secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ns   INTEGER NOT NULL,
    actor   TEXT    NOT NULL,
    role    TEXT,
    action  TEXT    NOT NULL,
    source  TEXT    NOT NULL,
    status  INTEGER NOT NULL,
    detail  TEXT
);
