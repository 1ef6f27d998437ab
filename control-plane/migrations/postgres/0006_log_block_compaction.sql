-- Compaction rewrites blocks older than a few minutes grouped by host (docs/adr/0037);
-- the same schema as sqlite/0007. compacted: 0 as the writer cut it, 1 written by
-- compaction, 2 left as it was because it could not be decoded.
ALTER TABLE log_blocks ADD COLUMN IF NOT EXISTS compacted BIGINT NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS log_blocks_uncompacted ON log_blocks (compacted, min_received_ns, seq);
CREATE TABLE IF NOT EXISTS retired_block_ids (
    block_id        TEXT   NOT NULL PRIMARY KEY,
    max_received_ns BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS retired_block_ids_age ON retired_block_ids (max_received_ns);
DROP INDEX IF EXISTS log_blocks_totals;
CREATE INDEX IF NOT EXISTS log_blocks_totals
    ON log_blocks (min_received_ns, max_received_ns, message_count, raw_bytes, stored_bytes, compacted);
