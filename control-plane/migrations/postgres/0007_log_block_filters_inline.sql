-- The Bloom filters stay in the table's row (docs/adr/0050). A compacted block's row with
-- its filters is a little over the 2 KiB at which PostgreSQL starts moving values out of
-- line: with the default storage the token filter went to TOAST, and each candidate row a
-- search read cost a second index look-up. MAIN moves them out only when the row would not
-- fit in a page. Rows already stored keep their layout until compaction or retention
-- replaces them; the statement changes the catalogue only, whatever the table's size.
ALTER TABLE log_blocks
    ALTER COLUMN field_filter SET STORAGE MAIN,
    ALTER COLUMN token_filter SET STORAGE MAIN;
