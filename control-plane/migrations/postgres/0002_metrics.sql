-- Aggregated metrics (docs/adr/0018); the same tables as the SQLite schema.
CREATE TABLE IF NOT EXISTS metric_series (
    id    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name  TEXT NOT NULL,
    kind  TEXT NOT NULL,
    tags  TEXT NOT NULL,
    UNIQUE (name, kind, tags)
);

CREATE TABLE IF NOT EXISTS metric_series_tags (
    key       TEXT   NOT NULL,
    value     TEXT   NOT NULL,
    series_id BIGINT NOT NULL REFERENCES metric_series (id),
    PRIMARY KEY (key, value, series_id)
);

CREATE TABLE IF NOT EXISTS metric_points (
    series_id    BIGINT           NOT NULL REFERENCES metric_series (id),
    start_ns     BIGINT           NOT NULL,
    interval_ns  BIGINT           NOT NULL,
    listener     TEXT             NOT NULL,
    sample_count DOUBLE PRECISION NOT NULL,
    value_sum    DOUBLE PRECISION NOT NULL,
    value_min    DOUBLE PRECISION NOT NULL,
    value_max    DOUBLE PRECISION NOT NULL,
    value_last   DOUBLE PRECISION NOT NULL,
    p50          DOUBLE PRECISION,
    p90          DOUBLE PRECISION,
    p99          DOUBLE PRECISION,
    histogram    BYTEA
);
CREATE INDEX IF NOT EXISTS metric_points_series_time ON metric_points (series_id, start_ns);
CREATE INDEX IF NOT EXISTS metric_points_time ON metric_points (start_ns);
