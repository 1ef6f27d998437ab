-- Aggregated metrics (docs/adr/0018): one row per series (name, kind, sorted tags), a
-- tag index onto series, and one row per series, listener and flush interval. Points of
-- several listeners (cores) for the same series and interval are merged at query time.
CREATE TABLE IF NOT EXISTS metric_series (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    name  TEXT NOT NULL,
    kind  TEXT NOT NULL,
    -- The tags as a JSON object with sorted keys: one spelling per tag set.
    tags  TEXT NOT NULL,
    UNIQUE (name, kind, tags)
);

-- The tag index: which series carry key=value.
CREATE TABLE IF NOT EXISTS metric_series_tags (
    key       TEXT    NOT NULL,
    value     TEXT    NOT NULL,
    series_id INTEGER NOT NULL REFERENCES metric_series (id),
    PRIMARY KEY (key, value, series_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS metric_points (
    series_id    INTEGER NOT NULL REFERENCES metric_series (id),
    -- Start of the flush interval, Unix nanoseconds, and its length.
    start_ns     INTEGER NOT NULL,
    interval_ns  INTEGER NOT NULL,
    listener     TEXT    NOT NULL,
    sample_count REAL    NOT NULL,
    value_sum    REAL    NOT NULL,
    value_min    REAL    NOT NULL,
    value_max    REAL    NOT NULL,
    value_last   REAL    NOT NULL,
    p50          REAL,
    p90          REAL,
    p99          REAL,
    -- The interval's histogram (timers, histograms, distributions, Influx fields), so that
    -- quantiles over several points are exact rather than averaged.
    histogram    BLOB
);
CREATE INDEX IF NOT EXISTS metric_points_series_time ON metric_points (series_id, start_ns);
CREATE INDEX IF NOT EXISTS metric_points_time ON metric_points (start_ns);
