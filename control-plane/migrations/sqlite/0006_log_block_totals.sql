-- The store's totals (/api/v1/stats, retention by size) from a covering index: a full scan
-- of log_blocks reads every row's Bloom filters with it (tens of kilobytes a block), so
-- at 100 million messages the totals took about 50 ms; the index is a few hundred
-- kilobytes (docs/adr/0035).
CREATE INDEX IF NOT EXISTS log_blocks_totals
    ON log_blocks (min_received_ns, max_received_ns, message_count, raw_bytes, stored_bytes);
