-- Compressed columnar log blocks with one index row each (docs/adr/0016); the same
-- columns as the SQLite schema.
CREATE TABLE IF NOT EXISTS log_blocks (
    seq               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    block_id          TEXT    NOT NULL UNIQUE,
    format_version    BIGINT  NOT NULL,
    min_received_ns   BIGINT  NOT NULL,
    max_received_ns   BIGINT  NOT NULL,
    message_count     BIGINT  NOT NULL,
    severity_mask     BIGINT  NOT NULL,
    facility_mask     BIGINT  NOT NULL,
    parse_error_count BIGINT  NOT NULL,
    raw_bytes         BIGINT  NOT NULL,
    stored_bytes      BIGINT  NOT NULL,
    field_filter      BYTEA   NOT NULL,
    token_filter      BYTEA   NOT NULL,
    -- Compressed already: keep TOAST from trying again.
    payload           BYTEA   NOT NULL
);
ALTER TABLE log_blocks ALTER COLUMN payload SET STORAGE EXTERNAL;
CREATE INDEX IF NOT EXISTS log_blocks_newest ON log_blocks (max_received_ns, seq);
CREATE INDEX IF NOT EXISTS log_blocks_oldest ON log_blocks (min_received_ns, seq);
