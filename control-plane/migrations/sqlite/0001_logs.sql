-- First log table: one row per message. The block store (compressed columnar blocks
-- with an index row each) replaces the row layout behind the same Store interface.
CREATE TABLE IF NOT EXISTS logs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at_ns    INTEGER NOT NULL,
    source            TEXT    NOT NULL,
    listener          TEXT    NOT NULL,
    format            TEXT    NOT NULL,
    facility          INTEGER,
    severity          INTEGER,
    version           INTEGER,
    event_time_ns     INTEGER,
    event_time_digits INTEGER,
    hostname          TEXT,
    app_name          TEXT,
    procid            TEXT,
    msgid             TEXT,
    structured_data   TEXT,
    message           BLOB    NOT NULL,
    -- The frame exactly as received, kept for messages that did not parse cleanly.
    raw               BLOB,
    parse_error       TEXT,
    frame_flag        TEXT
);
CREATE INDEX IF NOT EXISTS logs_received_at ON logs (received_at_ns);
