-- The store's totals (/api/v1/stats, retention by size) from a covering index rather than
-- a scan of every block's index row and filters (docs/adr/0035).
CREATE INDEX IF NOT EXISTS log_blocks_totals
    ON log_blocks (min_received_ns, max_received_ns, message_count, raw_bytes, stored_bytes);
