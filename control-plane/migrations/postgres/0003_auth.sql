-- Users, refresh tokens, API keys, the audit log and the shared auth secrets; the same
-- tables as the SQLite schema (docs/adr/0021).
CREATE TABLE IF NOT EXISTS auth_users (
    username        TEXT    PRIMARY KEY,
    password_hash   TEXT    NOT NULL,
    role            TEXT    NOT NULL,
    created_ns      BIGINT  NOT NULL,
    last_login_ns   BIGINT,
    failed_logins   BIGINT  NOT NULL DEFAULT 0,
    locked_until_ns BIGINT
);

CREATE TABLE IF NOT EXISTS auth_refresh_tokens (
    token_hash  TEXT    PRIMARY KEY,
    username    TEXT    NOT NULL,
    expires_ns  BIGINT  NOT NULL
);
CREATE INDEX IF NOT EXISTS auth_refresh_tokens_by_user ON auth_refresh_tokens (username);

CREATE TABLE IF NOT EXISTS auth_api_keys (
    id           TEXT    PRIMARY KEY,
    name         TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    prefix       TEXT    NOT NULL,
    key_hash     TEXT    NOT NULL UNIQUE,
    created_ns   BIGINT  NOT NULL,
    last_used_ns BIGINT
);

CREATE TABLE IF NOT EXISTS auth_secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS audit_log (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ns   BIGINT  NOT NULL,
    actor   TEXT    NOT NULL,
    role    TEXT,
    action  TEXT    NOT NULL,
    source  TEXT    NOT NULL,
    status  BIGINT  NOT NULL,
    detail  TEXT
);
