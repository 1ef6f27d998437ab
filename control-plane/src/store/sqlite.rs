//! The embedded default store: one SQLite file in the data directory, WAL mode.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use killkrill_dataplane::batch::LogBatch;
use killkrill_parsers::framing::FrameFlag;
use killkrill_parsers::syslog::{EventTimestamp, SyslogFormat};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{LogQuery, Store, StoredLog};
use crate::Result;

/// Rows per INSERT statement.
const ROWS_PER_INSERT: usize = 256;

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) `data_dir/killkrill.db`, or `url` when given.
    pub async fn open(url: Option<&str>, data_dir: &Path) -> Result<Self> {
        let options = match url {
            Some(url) => SqliteConnectOptions::from_str(url)?,
            None => SqliteConnectOptions::new().filename(data_dir.join("killkrill.db")),
        }
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // WAL with NORMAL keeps every committed transaction across a process crash; only
        // an OS crash or power loss can lose the last ones (see docs/adr/0005).
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        super::migrations::sqlite().await?.run(&pool).await?;
        Ok(Self { pool })
    }
}

fn format_label(format: SyslogFormat) -> &'static str {
    match format {
        SyslogFormat::Rfc5424 => "rfc5424",
        SyslogFormat::Rfc3164 => "rfc3164",
        SyslogFormat::Unknown => "unknown",
    }
}

fn frame_flag_label(flag: FrameFlag) -> &'static str {
    match flag {
        FrameFlag::Truncated => "truncated",
        FrameFlag::Incomplete => "incomplete",
        FrameFlag::FramingError => "framing_error",
    }
}

/// RFC 3339 in UTC with exactly `digits` fractional digits.
pub(crate) fn rfc3339_with_digits(unix_nanos: i64, digits: u8) -> Option<String> {
    let timestamp = jiff::Timestamp::from_nanosecond(i128::from(unix_nanos)).ok()?;
    let digits = digits.min(9);
    Some(format!("{:.*}", usize::from(digits), timestamp))
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn insert_logs(&self, batch: &LogBatch) -> Result<u64> {
        let mut transaction = self.pool.begin().await?;
        let entries: Vec<_> = batch.iter().collect();
        // Many rows per statement: per-statement overhead (parse, bind, step) dominated
        // one-row inserts. 18 columns x 256 rows stays far below SQLite's 32,766 bound
        // parameters.
        for chunk in entries.chunks(ROWS_PER_INSERT) {
            let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO logs (received_at_ns, source, listener, format, facility, severity, version, \
                 event_time_ns, event_time_digits, hostname, app_name, procid, msgid, structured_data, \
                 message, raw, parse_error, frame_flag) ",
            );
            insert.push_values(chunk, |mut row, entry| {
                let timestamp: Option<EventTimestamp> = entry.timestamp();
                let flagged = entry.parse_error().is_some() || entry.frame_flag().is_some();
                row.push_bind(i64::try_from(entry.received_at().as_nanosecond()).unwrap_or(i64::MAX))
                    .push_bind(entry.source().to_string())
                    .push_bind(entry.listener().label())
                    .push_bind(format_label(entry.format()))
                    .push_bind(entry.facility())
                    .push_bind(entry.severity())
                    .push_bind(entry.version())
                    .push_bind(timestamp.map(|t| t.unix_nanos))
                    .push_bind(timestamp.map(|t| t.fractional_digits))
                    .push_bind(entry.hostname())
                    .push_bind(entry.app_name())
                    .push_bind(entry.procid())
                    .push_bind(entry.msgid())
                    .push_bind(entry.structured_data())
                    .push_bind(entry.message())
                    .push_bind(flagged.then(|| entry.raw()))
                    .push_bind(entry.parse_error().map(|e| e.reason()))
                    .push_bind(entry.frame_flag().map(frame_flag_label));
            });
            // Only the full-size statement is worth caching; remainders vary in length.
            insert.build().persistent(chunk.len() == ROWS_PER_INSERT).execute(&mut *transaction).await?;
        }
        transaction.commit().await?;
        Ok(batch.len() as u64)
    }

    async fn query_logs(&self, query: &LogQuery) -> Result<Vec<StoredLog>> {
        let mut sql = String::from(
            "SELECT id, received_at_ns, source, listener, format, facility, severity, version, \
             event_time_ns, event_time_digits, hostname, app_name, procid, msgid, structured_data, \
             message, raw, parse_error FROM logs WHERE 1 = 1",
        );
        for _ in &query.terms {
            sql.push_str(" AND CAST(message AS TEXT) LIKE ? ESCAPE '\\'");
        }
        sql.push_str(" ORDER BY received_at_ns DESC, id DESC LIMIT ?");
        let mut statement = sqlx::query(&sql);
        for term in &query.terms {
            statement = statement.bind(format!("%{}%", escape_like(term)));
        }
        let rows = statement.bind(i64::from(query.limit)).fetch_all(&self.pool).await?;
        rows.into_iter()
            .map(|row| {
                let received_at_ns: i64 = row.try_get("received_at_ns")?;
                let event_time_ns: Option<i64> = row.try_get("event_time_ns")?;
                let event_time_digits: Option<u8> = row.try_get("event_time_digits")?;
                let message: Vec<u8> = row.try_get("message")?;
                let raw: Option<Vec<u8>> = row.try_get("raw")?;
                Ok(StoredLog {
                    id: row.try_get("id")?,
                    received_at: rfc3339_with_digits(received_at_ns, 9).unwrap_or_default(),
                    source: row.try_get("source")?,
                    listener: row.try_get("listener")?,
                    format: row.try_get("format")?,
                    facility: row.try_get("facility")?,
                    severity: row.try_get("severity")?,
                    version: row.try_get("version")?,
                    timestamp: event_time_ns
                        .and_then(|nanos| rfc3339_with_digits(nanos, event_time_digits.unwrap_or(0))),
                    hostname: row.try_get("hostname")?,
                    app_name: row.try_get("app_name")?,
                    procid: row.try_get("procid")?,
                    msgid: row.try_get("msgid")?,
                    structured_data: row.try_get("structured_data")?,
                    message: String::from_utf8_lossy(&message).into_owned(),
                    raw_b64: raw.map(|raw| base64::engine::general_purpose::STANDARD.encode(raw)),
                    parse_error: row.try_get("parse_error")?,
                })
            })
            .collect()
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// Escapes LIKE's wildcards so a search term matches literally.
fn escape_like(term: &str) -> String {
    let mut escaped = String::with_capacity(term.len());
    for character in term.chars() {
        if matches!(character, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_the_senders_precision() {
        assert_eq!(
            rfc3339_with_digits(1_700_000_000_003_000_000, 3).as_deref(),
            Some("2023-11-14T22:13:20.003Z")
        );
        assert_eq!(
            rfc3339_with_digits(1_700_000_000_000_000_000, 0).as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like("50%_a\\b"), "50\\%\\_a\\\\b");
    }
}
