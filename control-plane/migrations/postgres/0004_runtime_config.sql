-- Live configuration (docs/adr/0024): one row per section changed through
-- PUT /api/v1/config/*, laid over the file configuration at start. Control planes
-- sharing this database read it at start.
CREATE TABLE IF NOT EXISTS runtime_config (
    key        TEXT PRIMARY KEY,
    -- The section as the API answers it (JSON).
    value      TEXT NOT NULL,
    -- RFC 3339, UTC.
    updated_at TEXT NOT NULL,
    -- Who changed it (the authenticated principal), when known.
    updated_by TEXT
);
