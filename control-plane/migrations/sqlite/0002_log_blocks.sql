-- Logs move to compressed columnar blocks with one index row each (docs/adr/0016).
-- The row table of 0.1 development builds is dropped: no release shipped with it.
DROP TABLE IF EXISTS logs;

CREATE TABLE IF NOT EXISTS log_blocks (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Random 128-bit id in hex: a block delivered twice is stored once.
    block_id          TEXT    NOT NULL UNIQUE,
    format_version    INTEGER NOT NULL,
    min_received_ns   INTEGER NOT NULL,
    max_received_ns   INTEGER NOT NULL,
    message_count     INTEGER NOT NULL,
    -- Bit n: some message has severity n (bit 8: none).
    severity_mask     INTEGER NOT NULL,
    -- Bit n: some message has facility n (bit 24: none).
    facility_mask     INTEGER NOT NULL,
    parse_error_count INTEGER NOT NULL,
    raw_bytes         INTEGER NOT NULL,
    stored_bytes      INTEGER NOT NULL,
    -- Bloom filters over hosts, apps and source addresses, and over message words.
    field_filter      BLOB    NOT NULL,
    token_filter      BLOB    NOT NULL,
    -- Last, so that reading the index columns does not touch its overflow pages.
    payload           BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS log_blocks_newest ON log_blocks (max_received_ns, seq);
CREATE INDEX IF NOT EXISTS log_blocks_oldest ON log_blocks (min_received_ns, seq);
