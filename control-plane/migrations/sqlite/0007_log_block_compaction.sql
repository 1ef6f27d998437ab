-- Compaction rewrites blocks older than a few minutes grouped by host (docs/adr/0037).
-- 0: a block as the writer cut it; 1: written by compaction; 2: left as it was because
-- it could not be decoded (so compaction does not try it again).
ALTER TABLE log_blocks ADD COLUMN compacted INTEGER NOT NULL DEFAULT 0;
-- What compaction looks for: the oldest blocks not compacted yet.
CREATE INDEX IF NOT EXISTS log_blocks_uncompacted ON log_blocks (compacted, min_received_ns, seq);
-- Ids of blocks compaction rewrote: a block redelivered by the Redis hand-off after its id
-- was compacted away is not stored again. Removed with the data by retention by age.
CREATE TABLE IF NOT EXISTS retired_block_ids (
    block_id        TEXT    NOT NULL PRIMARY KEY,
    max_received_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS retired_block_ids_age ON retired_block_ids (max_received_ns);
-- The totals' covering index gains the flag, for /api/v1/stats.
DROP INDEX IF EXISTS log_blocks_totals;
CREATE INDEX IF NOT EXISTS log_blocks_totals
    ON log_blocks (min_received_ns, max_received_ns, message_count, raw_bytes, stored_bytes, compacted);
