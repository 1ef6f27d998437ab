//! The block store on SQLite and PostgreSQL. Both keep the same table; the statements are
//! written once with `QueryBuilder` (which knows each dialect's placeholders) and run on
//! whichever pool is open, through `on_pool!`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row};

use super::answer_cache::AnswerCache;
use super::block::{self, DecodedBlock, EncodedBlock, RefColumn};
use super::block_cache::{self, BlockCache, CachedBlock};
use super::query::{BlockCandidate, Cursor, LogQuery, Order, Plan};
use super::shared_reads::{SharedReads, Turn};
use super::{
    BlockMeta, BlockTier, LogPage, MetricStore as _, Removed, Retention, RuntimeConfigEntry, SharedPage,
    SourceSeen, SourcesSeen, Store, StoreStats, StoredLog,
};
use crate::{Error, Result};

/// Index rows read per round trip while looking for matching blocks: few at first (a
/// page of the newest messages is usually in the first blocks), four times more each
/// round after, up to 256 on SQLite and 1,024 on PostgreSQL, where each round is a round
/// trip (an hour of 100 M messages a day is about 4,200 rows; docs/adr/0051).
const FIRST_ROUND_CANDIDATES: i64 = 16;
const SQLITE_CANDIDATES_PER_ROUND: i64 = 256;
const POSTGRES_CANDIDATES_PER_ROUND: i64 = 1024;
/// On PostgreSQL a search reads the payloads of the blocks it will decode next in one
/// statement: 1, then 2, 4 and at most this many at a time. Each statement is a round
/// trip there; the cap bounds what a search reads ahead and may not need once its page is
/// full. SQLite reads one at a time: a statement is a call in this process, and reading
/// ahead only delays the next decode (docs/adr/0050).
const MAX_POSTGRES_PAYLOADS_PER_READ: usize = 8;

/// How much of the SQLite file reads map rather than copy (a 64-bit address space has
/// room; a larger file reads its remainder as before).
const SQLITE_MMAP_BYTES: u64 = 16 << 30;

pub(super) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same statement-building code against either pool.
macro_rules! on_pool {
    ($pool:expr, $name:ident => $body:expr) => {
        match $pool {
            Pool::Sqlite($name) => $body,
            Pool::Postgres($name) => $body,
        }
    };
}
pub(super) use on_pool;

/// Pushes onto `sql` (a `SELECT ... FROM log_blocks`) the conditions, order and limit of a
/// read of candidate blocks: up to `limit` index rows of blocks that may match, in the
/// query's order, after `after`.
macro_rules! push_candidate_filters {
    ($sql:expr, $query:expr, $after:expr, $limit:expr) => {{
        let (sql, query, after): (&mut QueryBuilder<_>, &LogQuery, Option<(i64, i64)>) =
            (&mut $sql, $query, $after);
        sql.push(" WHERE 1 = 1");
        // The bound on the column the rows are read in order of goes to its index; the
        // other is written `+column` so that SQLite's planner cannot pick an index on it
        // (log_blocks_totals starts with both columns and looks attractive): that plan
        // reads every block of the range and sorts them, 250 ms for a day of 100 M
        // messages in 50,000 compacted blocks, where the ordered index read stops
        // after a page (ADR 0037). `+x` is a no-op for PostgreSQL.
        let (max_column, min_column) = match query.order {
            Order::Descending => ("max_received_ns", "+min_received_ns"),
            Order::Ascending => ("+max_received_ns", "min_received_ns"),
        };
        if let Some(start) = query.start_ns {
            sql.push(format_args!(" AND {max_column} >= ")).push_bind(start);
        }
        if let Some(end) = query.end_ns {
            sql.push(format_args!(" AND {min_column} < ")).push_bind(end);
        }
        if let Some(mask) = query.severity_mask {
            sql.push(" AND (severity_mask & ").push_bind(i64::from(mask)).push(") <> 0");
        }
        if let Some(mask) = query.facility_mask {
            sql.push(" AND (facility_mask & ").push_bind(i64::from(mask)).push(") <> 0");
        }
        if let Some((low, high)) = query.block_seqs {
            // Blocks committed since a look (the live tail): compaction's blocks hold
            // old messages under new sequence numbers, never new ones (ADR 0037): only
            // blocks as the writer cut them (an undecodable one was one of those).
            sql.push(" AND seq > ").push_bind(low).push(" AND seq <= ").push_bind(high);
            sql.push(" AND compacted IN (0, 2)");
        }
        let (bound_column, comparison, direction) = match query.order {
            Order::Descending => ("max_received_ns", "<", "DESC"),
            Order::Ascending => ("min_received_ns", ">", "ASC"),
        };
        if let Some(cursor) = query.cursor {
            match query.order {
                Order::Descending => sql.push(" AND +min_received_ns <= ").push_bind(cursor.received_ns),
                Order::Ascending => sql.push(" AND +max_received_ns >= ").push_bind(cursor.received_ns),
            };
        }
        if let Some((bound, seq)) = after {
            // A row value, with a plain range beside it, rather than `a < x OR (a = x AND
            // seq < y)`: SQLite 3.46 answers that OR with a union over the index and a
            // sort of every block of the range (213 ms for a day of 50,000 blocks).
            sql.push(format_args!(" AND {bound_column} {comparison}= "))
                .push_bind(bound)
                .push(format_args!(" AND ({bound_column}, seq) {comparison} ("))
                .push_bind(bound)
                .push(", ")
                .push_bind(seq)
                .push(")");
        }
        sql.push(format_args!(" ORDER BY {bound_column} {direction}, seq {direction} LIMIT "))
            .push_bind($limit);
    }};
}

pub struct SqlStore {
    pub(super) pool: Pool,
    /// Blocks decoded by recent searches (`store/block_cache.rs`).
    decoded: Arc<BlockCache>,
    /// Answers of recent searches (`store/answer_cache.rs`).
    answers: AnswerCache,
    /// First rounds of index rows being read for identical searches (`store/shared_reads.rs`).
    first_rounds: SharedReads<Vec<i64>>,
    /// Metric series ids known to this process (`store/metrics_sql.rs`).
    pub(super) series_ids: super::metrics_sql::SeriesIds,
}

impl SqlStore {
    /// Opens (creating if needed) `data_dir/killkrill.db`, or `url` when given.
    pub async fn open_sqlite(url: Option<&str>, data_dir: &Path) -> Result<Self> {
        let options = match url {
            Some(url) => SqliteConnectOptions::from_str(url)?,
            None => SqliteConnectOptions::new().filename(data_dir.join("killkrill.db")),
        }
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // WAL with NORMAL keeps every committed transaction across a process crash; only
        // an OS crash or power loss can lose the last ones (see docs/adr/0005).
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        // Searches read index rows and blocks through a memory map instead of a read
        // system call and a copy per page (docs/adr/0042); the map is address space,
        // the pages are the OS's page cache either way.
        .pragma("mmap_size", SQLITE_MMAP_BYTES.to_string());
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            // A connection to a local file does not go away: pinging it before each use
            // (sqlx's default) only costs a round trip to its worker thread per statement.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        super::migrations::sqlite().await?.run(&pool).await?;
        Ok(Self {
            pool: Pool::Sqlite(pool),
            decoded: Arc::default(),
            answers: AnswerCache::default(),
            first_rounds: SharedReads::default(),
            series_ids: Default::default(),
        })
    }

    pub async fn open_postgres(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            // Short: a store outage should reach the spool quickly, not after a long wait.
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options)
            .await?;
        super::migrations::postgres().await?.run(&pool).await?;
        Ok(Self {
            pool: Pool::Postgres(pool),
            decoded: Arc::default(),
            answers: AnswerCache::default(),
            first_rounds: SharedReads::default(),
            series_ids: Default::default(),
        })
    }

    /// Reads up to `limit` index rows of blocks that may match, in the query's order, after
    /// `after`.
    async fn candidates(
        &self,
        query: &LogQuery,
        plan: &Plan,
        after: Option<(i64, i64)>,
        limit: i64,
        uses_cache: bool,
    ) -> Result<Vec<BlockCandidate>> {
        // Filters pruning will not read stay in the table.
        let (field_filter, token_filter) = (plan.needs_field_filter(), plan.needs_token_filter());
        if !token_filter {
            let mut candidates = self.candidate_times(query, after, limit).await?;
            if field_filter {
                self.read_field_filters(&mut candidates, uses_cache).await?;
            }
            return Ok(candidates);
        }
        // With both, the word filters come second, for the blocks whose host, app and
        // source filter lets them through: a compacted block's word filter is several
        // times its field filter (3 to 4 times since ADR 0056, 10 before), and a search of
        // one host keeps about one block in 70 (docs/adr/0051).
        let columns = if field_filter { ", field_filter" } else { ", token_filter" };
        let mut candidates = on_pool!(&self.pool, pool => {
            let mut sql = QueryBuilder::new(format!(
                "SELECT seq, min_received_ns, max_received_ns{columns} FROM log_blocks",
            ));
            push_candidate_filters!(sql, query, after, limit);
            let rows = sql.build().fetch_all(pool).await?;
            rows.iter()
                .map(|row| {
                    Ok(BlockCandidate {
                        seq: row.try_get("seq")?,
                        min_received_ns: row.try_get("min_received_ns")?,
                        max_received_ns: row.try_get("max_received_ns")?,
                        field_filter: if field_filter { row.try_get("field_filter")? } else { Vec::new() },
                        token_filter: if field_filter { Vec::new() } else { row.try_get("token_filter")? },
                    })
                })
                .collect::<Result<Vec<_>>>()
        })?;
        if field_filter {
            // A block refused by its field filter keeps an empty word filter: it is
            // refused all the same. One gone since (retention) keeps one too, and its
            // payload read finds nothing.
            let wanted: Vec<i64> = candidates
                .iter()
                .filter(|candidate| query.fields_may_match(plan, candidate))
                .map(|candidate| candidate.seq)
                .collect();
            let mut filters = self.column_of(&wanted, "token_filter").await?;
            for candidate in &mut candidates {
                if let Some(filter) = filters.remove(&candidate.seq) {
                    candidate.token_filter = filter;
                }
            }
        }
        Ok(candidates)
    }

    /// One bytes column (`field_filter`, `token_filter`, `payload`) of the blocks `seqs`,
    /// by sequence number; a block gone (retention) since its index row was read is
    /// missing from the answer.
    async fn column_of(&self, seqs: &[i64], column: &'static str) -> Result<HashMap<i64, Vec<u8>>> {
        if seqs.is_empty() {
            return Ok(HashMap::new());
        }
        Ok(on_pool!(&self.pool, pool => {
            let mut sql = QueryBuilder::new(format!("SELECT seq, {column} FROM log_blocks WHERE seq IN ("));
            let mut list = sql.separated(", ");
            for seq in seqs {
                list.push_bind(*seq);
            }
            sql.push(")");
            let rows = sql.build().fetch_all(pool).await?;
            rows.iter()
                .map(|row| Ok((row.try_get("seq")?, row.try_get(column)?)))
                .collect::<Result<HashMap<_, _>>>()?
        }))
    }

    /// The host, app and source filters of `candidates`, read for the blocks that are not
    /// decoded in the cache (all of them unless `uses_cache`). A decoded block needs none:
    /// its name index finds its rows of a host or app exactly, at once, and an empty filter
    /// lets the block through. Reading the filter (8 KiB a block) of 16 blocks per search
    /// through sqlx was the largest copy of a host search (docs/adr/0042).
    async fn read_field_filters(&self, candidates: &mut [BlockCandidate], uses_cache: bool) -> Result<()> {
        let wanted: Vec<i64> = candidates
            .iter()
            .filter(|candidate| !uses_cache || !self.decoded.contains(candidate.seq))
            .map(|candidate| candidate.seq)
            .collect();
        let mut filters = self.column_of(&wanted, "field_filter").await?;
        for candidate in candidates {
            if let Some(filter) = filters.remove(&candidate.seq) {
                candidate.field_filter = filter;
            }
        }
        Ok(())
    }

    /// `candidates` for a search that reads no filter: the sequence numbers and times of
    /// the index rows as one text value of one row. sqlx's SQLite driver hands every row
    /// from its worker thread to the search through a channel and copies every value; a
    /// search of the newest messages spent a third of the server's time there, reading 16
    /// rows of three numbers (docs/adr/0042).
    async fn candidate_times(
        &self,
        query: &LogQuery,
        after: Option<(i64, i64)>,
        limit: i64,
    ) -> Result<Vec<BlockCandidate>> {
        let list = match &self.pool {
            Pool::Sqlite(_) => "group_concat",
            Pool::Postgres(_) => "string_agg",
        };
        let text: Option<String> = on_pool!(&self.pool, pool => {
            let mut sql = QueryBuilder::new(format!(
                "SELECT {list}(CAST(seq AS TEXT) || ' ' || CAST(min_received_ns AS TEXT) || ' ' \
                 || CAST(max_received_ns AS TEXT), ',') AS round \
                 FROM (SELECT seq, min_received_ns, max_received_ns FROM log_blocks",
            ));
            push_candidate_filters!(sql, query, after, limit);
            sql.push(") AS candidates");
            let row = sql.build().fetch_one(pool).await?;
            row.try_get("round")?
        });
        let bad = |entry: &str| Error::Internal(format!("an index row `{entry}`"));
        let mut candidates = text
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let mut numbers = entry.split(' ').map(str::parse::<i64>);
                match (numbers.next(), numbers.next(), numbers.next(), numbers.next()) {
                    (Some(Ok(seq)), Some(Ok(min_received_ns)), Some(Ok(max_received_ns)), None) => {
                        Ok(BlockCandidate {
                            seq,
                            min_received_ns,
                            max_received_ns,
                            field_filter: Vec::new(),
                            token_filter: Vec::new(),
                        })
                    }
                    _ => Err(bad(entry)),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        // An aggregate need not keep the order of the rows it reads: sorted again as the
        // statement orders them.
        match query.order {
            Order::Descending => candidates.sort_unstable_by_key(|candidate| {
                std::cmp::Reverse((candidate.max_received_ns, candidate.seq))
            }),
            Order::Ascending => {
                candidates.sort_unstable_by_key(|candidate| (candidate.min_received_ns, candidate.seq))
            }
        }
        Ok(candidates)
    }

    /// The sequence numbers of the first round's index rows, sorted: one row of one text
    /// value, much cheaper than the rows themselves (sqlx copies every value of every row),
    /// which is all a repeated search needs to know whether its kept answer holds.
    /// `connected` runs once a connection is held, just before the statement.
    async fn first_round_seqs(&self, query: &LogQuery, connected: impl FnOnce() + Send) -> Result<Vec<i64>> {
        let list = match &self.pool {
            Pool::Sqlite(_) => "group_concat(seq)",
            Pool::Postgres(_) => "string_agg(CAST(seq AS TEXT), ',')",
        };
        let text: Option<String> = on_pool!(&self.pool, pool => {
            let mut sql = QueryBuilder::new(format!("SELECT {list} AS seqs FROM (SELECT seq FROM log_blocks"));
            push_candidate_filters!(sql, query, None, FIRST_ROUND_CANDIDATES);
            sql.push(") AS first_round");
            let mut connection = pool.acquire().await?;
            connected();
            let row = sql.build().fetch_one(&mut *connection).await?;
            row.try_get("seqs")?
        });
        let mut seqs = text
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .filter(|seq| !seq.is_empty())
            .map(|seq| {
                seq.parse::<i64>().map_err(|_| Error::Internal(format!("a block sequence number `{seq}`")))
            })
            .collect::<Result<Vec<_>>>()?;
        seqs.sort_unstable();
        Ok(seqs)
    }

    /// Runs a search whose first round of index rows has been read.
    async fn search(
        &self,
        query: &LogQuery,
        plan: &Plan,
        first_round: Vec<BlockCandidate>,
    ) -> Result<Searched> {
        // One row more than asked tells whether there is a next page.
        let wanted = query.limit as usize + 1;
        let better = |a: &RowKey, b: &RowKey| match query.order {
            Order::Descending => b.cmp(a),
            Order::Ascending => a.cmp(b),
        };
        // Rows are made into `StoredLog`s only once the page is settled: blocks decoded
        // side by side find more rows than the page keeps.
        let mut found: Vec<(RowKey, FoundRow)> = Vec::new();
        let mut decoding = std::collections::VecDeque::new();
        let decoders = decoders_per_query();
        let mut decoded = 0usize;
        let mut after;
        let mut round_limit = FIRST_ROUND_CANDIDATES;
        let mut candidates = first_round;
        let mut rounds = 1;
        // False when a block went (retention) between its index row and its payload.
        let mut every_block_read = true;
        // Payloads read ahead of their decoding, and how many the next read takes.
        let mut read_ahead: HashMap<i64, Vec<u8>> = HashMap::new();
        let mut payloads_per_read = 1;
        'rounds: while let Some(last) = candidates.last() {
            after = Some(match query.order {
                Order::Descending => (last.max_received_ns, last.seq),
                Order::Ascending => (last.min_received_ns, last.seq),
            });
            let round = std::mem::take(&mut candidates);
            let round_len = round.len();
            for (index, candidate) in round.iter().enumerate() {
                if found.len() >= wanted {
                    found.sort_by(|a, b| better(&a.0, &b.0));
                    found.truncate(wanted);
                    // Every row of this and later blocks sorts after the worst row kept.
                    let worst = found[wanted - 1].0.0;
                    let done = match query.order {
                        Order::Descending => worst > candidate.max_received_ns,
                        Order::Ascending => worst < candidate.min_received_ns,
                    };
                    if done {
                        break 'rounds;
                    }
                }
                if !query.may_match(plan, candidate) {
                    continue;
                }
                let job = match self.decoded.get(candidate.seq) {
                    // A decoded block without a word filter to run: binary searches and the
                    // rows of one host or app, microseconds, cheaper than the hand-off to a
                    // blocking thread and back (docs/adr/0042).
                    Some(block) if query.text.is_empty() => BlockJob::Done(Ok(found_rows(
                        &block,
                        block_rows(query, candidate.seq, &block, wanted),
                    ))),
                    Some(block) => {
                        matching_rows(query.clone(), candidate.seq, BlockSource::Decoded(block), wanted)
                    }
                    None => {
                        if !read_ahead.contains_key(&candidate.seq) {
                            // This block and the next ones of the round that will need
                            // their payloads, in one statement.
                            let next_seqs = round[index + 1..]
                                .iter()
                                .filter(|next| {
                                    query.may_match(plan, next) && !self.decoded.contains(next.seq)
                                })
                                .map(|next| next.seq);
                            let seqs: Vec<i64> = std::iter::once(candidate.seq)
                                .chain(next_seqs)
                                .take(payloads_per_read)
                                .collect();
                            read_ahead.extend(self.payloads(&seqs).await?);
                            payloads_per_read = (payloads_per_read * 2).min(self.max_payloads_per_read());
                        }
                        match read_ahead.remove(&candidate.seq) {
                            Some(payload) => matching_rows(
                                query.clone(),
                                candidate.seq,
                                BlockSource::Payload(payload, self.decoded.clone()),
                                wanted,
                            ),
                            None => {
                                every_block_read = false;
                                continue;
                            }
                        }
                    }
                };
                decoding.push_back(job);
                // The first block alone (it often fills the page: no work wasted on a
                // busy server); after it, several at once. The stopping rule above judges
                // by the rows found so far; blocks still decoding can only better them,
                // so it stays right (a few blocks more than needed may be decoded).
                while decoding.len() >= if decoded == 0 { 1 } else { decoders } {
                    let Some(job) = decoding.pop_front() else { break };
                    found.extend(joined(job).await?);
                    decoded += 1;
                }
            }
            if (round_len as i64) < round_limit {
                break;
            }
            round_limit = (round_limit * 4).min(self.candidates_per_round());
            candidates = self.candidates(query, plan, after, round_limit, true).await?;
            rounds += 1;
        }
        for job in decoding {
            found.extend(joined(job).await?);
        }
        found.sort_by(|a, b| better(&a.0, &b.0));
        let has_more = found.len() > query.limit as usize;
        found.truncate(query.limit as usize);
        let next_cursor = has_more
            .then(|| found.last().map(|((received_ns, id), _)| Cursor { received_ns: *received_ns, id: *id }))
            .flatten();
        Ok(Searched {
            page: LogPage {
                logs: found
                    .into_iter()
                    .map(|(key, found)| stored_log(&found.block.block, found.row, key.1))
                    .collect(),
                next_cursor,
            },
            settled_by_first_round: rounds == 1 && every_block_read,
        })
    }

    fn candidates_per_round(&self) -> i64 {
        match self.pool {
            Pool::Sqlite(_) => SQLITE_CANDIDATES_PER_ROUND,
            Pool::Postgres(_) => POSTGRES_CANDIDATES_PER_ROUND,
        }
    }

    fn max_payloads_per_read(&self) -> usize {
        match self.pool {
            Pool::Sqlite(_) => 1,
            Pool::Postgres(_) => MAX_POSTGRES_PAYLOADS_PER_READ,
        }
    }

    /// The payloads of these blocks, by sequence number; a block gone (retention) since its
    /// index row was read is missing from the answer.
    async fn payloads(&self, seqs: &[i64]) -> Result<HashMap<i64, Vec<u8>>> {
        if let [seq] = seqs {
            return Ok(self.payload(*seq).await?.map(|payload| (*seq, payload)).into_iter().collect());
        }
        self.column_of(seqs, "payload").await
    }

    async fn payload(&self, seq: i64) -> Result<Option<Vec<u8>>> {
        on_pool!(&self.pool, pool => {
            let mut sql = QueryBuilder::new("SELECT payload FROM log_blocks WHERE seq = ");
            sql.push_bind(seq);
            let row = sql.build().fetch_optional(pool).await?;
            row.map(|row| row.try_get::<Vec<u8>, _>("payload")).transpose().map_err(Error::from)
        })
    }
}

/// The statement that stores one block: skipped when a block with the same id is stored,
/// or was stored and then compacted away (`retired_block_ids`), so a redelivered block is
/// stored once. A macro, so that the same text builds for either pool.
macro_rules! insert_block_statement {
    ($encoded:expr, $compacted:expr) => {{
        let encoded: &EncodedBlock = $encoded;
        let summary = &encoded.summary;
        let stored_bytes =
            (encoded.payload.len() + summary.field_filter.len() + summary.token_filter.len()) as i64;
        let mut sql = QueryBuilder::new(
            "INSERT INTO log_blocks (block_id, format_version, min_received_ns, max_received_ns, \
             message_count, severity_mask, facility_mask, parse_error_count, raw_bytes, stored_bytes, \
             field_filter, token_filter, payload, compacted) SELECT ",
        );
        let mut values = sql.separated(", ");
        values
            .push_bind(summary.block_id.as_str())
            .push_bind(i64::from(summary.format_version))
            .push_bind(summary.min_received_ns)
            .push_bind(summary.max_received_ns)
            .push_bind(i64::from(summary.message_count))
            .push_bind(i64::from(summary.severity_mask))
            .push_bind(i64::from(summary.facility_mask))
            .push_bind(i64::from(summary.parse_error_count))
            .push_bind(i64::try_from(summary.raw_bytes).unwrap_or(i64::MAX))
            .push_bind(stored_bytes)
            .push_bind(summary.field_filter.as_slice())
            .push_bind(summary.token_filter.as_slice())
            .push_bind(encoded.payload.as_slice())
            .push_bind($compacted);
        // SQLite needs the WHERE to read ON CONFLICT as the upsert clause.
        sql.push(" WHERE NOT EXISTS (SELECT 1 FROM retired_block_ids WHERE block_id = ")
            .push_bind(summary.block_id.as_str())
            .push(") ON CONFLICT (block_id) DO NOTHING");
        sql
    }};
}

/// A search's answer, and whether the blocks of its first round alone settled it (then an
/// identical search over the same first round gets the same answer).
struct Searched {
    page: LogPage,
    settled_by_first_round: bool,
}

/// Sort key of a result row: receive time, then id.
type RowKey = (i64, i64);

fn stored_log(block: &DecodedBlock, row: usize, id: i64) -> StoredLog {
    let flagged = block.raw(row);
    StoredLog {
        id,
        received_at: super::rfc3339_with_digits(block.received_ns[row], 9).unwrap_or_default(),
        source: block.source(row),
        listener: block.listener(row).to_owned(),
        format: block.format(row).to_owned(),
        facility: block.facility(row),
        severity: block.severity(row),
        version: block.version(row),
        timestamp: block
            .event_time(row)
            .and_then(|(nanos, digits)| super::rfc3339_with_digits(nanos, digits)),
        hostname: block.text(RefColumn::Hostname, row).map(str::to_owned),
        app_name: block.text(RefColumn::AppName, row).map(str::to_owned),
        procid: block.text(RefColumn::Procid, row).map(str::to_owned),
        msgid: block.text(RefColumn::Msgid, row).map(str::to_owned),
        structured_data: block.structured_data(row).map(str::to_owned),
        message: match block.message(row) {
            Cow::Borrowed(text) => String::from_utf8_lossy(text).into_owned(),
            Cow::Owned(text) => String::from_utf8(text)
                .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned()),
        },
        raw_b64: flagged.map(|raw| base64::engine::general_purpose::STANDARD.encode(raw)),
        parse_error: block.text(RefColumn::ParseError, row).map(str::to_owned),
        frame_flag: block.text(RefColumn::FrameFlag, row).map(str::to_owned),
    }
}

/// Decodes a block off the async threads (a block is about a megabyte of zstd) and
/// returns its matching rows: only the `wanted` best in the query's order, since no page
/// needs more from one block.
fn matching_rows(query: LogQuery, seq: i64, block: BlockSource, wanted: usize) -> BlockJob {
    BlockJob::Running(tokio::task::spawn_blocking(move || {
        let cached = match block {
            BlockSource::Decoded(block) => block,
            BlockSource::Payload(payload, cache) => {
                let decoded = Arc::new(CachedBlock::new(block::decode(&payload)?));
                cache.insert(seq, decoded.clone(), block_cache::body_bytes(&payload));
                decoded
            }
        };
        Ok(found_rows(&cached, block_rows(&query, seq, &cached, wanted)))
    }))
}

/// A matching row of a decoded block, not yet made into a `StoredLog`.
struct FoundRow {
    block: Arc<CachedBlock>,
    row: usize,
}

fn found_rows(block: &Arc<CachedBlock>, matched: Vec<(RowKey, usize)>) -> Vec<(RowKey, FoundRow)> {
    matched.into_iter().map(|(key, row)| (key, FoundRow { block: block.clone(), row })).collect()
}

/// The `wanted` best matching rows of a decoded block, with their keys.
fn block_rows(query: &LogQuery, seq: i64, cached: &CachedBlock, wanted: usize) -> Vec<(RowKey, usize)> {
    let block = &cached.block;
    let wanted = wanted.max(1);
    // A host or app filter names the only rows worth a look (the host's when both).
    let named = if !query.hosts.is_empty() {
        Some(cached.rows_named(RefColumn::Hostname, &query.hosts))
    } else if !query.apps.is_empty() {
        Some(cached.rows_named(RefColumn::AppName, &query.apps))
    } else {
        None
    };
    if cached.in_time_order {
        first_matches_in_time_order(query, block, seq, named.as_deref(), wanted)
    } else {
        let rows: Box<dyn DoubleEndedIterator<Item = usize>> = match &named {
            Some(rows) => Box::new(rows.iter().map(|&row| row as usize)),
            None => Box::new(0..block.len()),
        };
        best_matches(query, block, seq, rows, wanted)
    }
}

/// A block's part of a search: running on a blocking thread, or done already.
enum BlockJob {
    Running(tokio::task::JoinHandle<Result<Vec<(RowKey, FoundRow)>>>),
    Done(Result<Vec<(RowKey, FoundRow)>>),
}

/// A row's sort key: receive time, then its id (the block's sequence number and the row).
fn row_key(block: &DecodedBlock, seq: i64, row: usize) -> RowKey {
    (block.received_ns[row], (seq << 16) | row as i64)
}

/// The `wanted` best matching rows of a block whose rows lie in order of receive time:
/// their keys then rise with the row number, so the rows inside the search's time range
/// and cursor are found by binary search, and the first `wanted` that match, walking in
/// the search's order, are the best ones. `named`: the only rows that may match
/// (ascending), when a host or app filter says so.
fn first_matches_in_time_order(
    query: &LogQuery,
    block: &DecodedBlock,
    seq: i64,
    named: Option<&[u32]>,
    wanted: usize,
) -> Vec<(RowKey, usize)> {
    let rows = block.len();
    // The first row whose key is not below `bound` (rows ascend by key).
    let first_at_or_after = |bound: RowKey| {
        let (mut low, mut high) = (0, rows);
        while low < high {
            let middle = low + (high - low) / 2;
            if row_key(block, seq, middle) < bound {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low
    };
    let mut low = query.start_ns.map_or(0, |start| first_at_or_after((start, i64::MIN)));
    let mut high = query.end_ns.map_or(rows, |end| first_at_or_after((end, i64::MIN)));
    if let Some(cursor) = query.cursor {
        match query.order {
            Order::Descending => high = high.min(first_at_or_after((cursor.received_ns, cursor.id))),
            // Rows after the cursor's (keys are whole numbers).
            Order::Ascending => {
                low = low.max(first_at_or_after((cursor.received_ns, cursor.id.saturating_add(1))));
            }
        }
    }
    let high = high.max(low);
    let range: Box<dyn DoubleEndedIterator<Item = usize>> = match named {
        Some(named) => {
            let from = named.partition_point(|&row| (row as usize) < low);
            let to = named.partition_point(|&row| (row as usize) < high);
            Box::new(named[from..to].iter().map(|&row| row as usize))
        }
        None => Box::new(low..high),
    };
    let range: Box<dyn Iterator<Item = usize>> = match query.order {
        Order::Descending => Box::new(range.rev()),
        Order::Ascending => range,
    };
    let mut matched = Vec::with_capacity(wanted);
    let mut text = query.block_text(block);
    for row in range {
        // The full check still runs: the bounds above only spare rows it would refuse.
        let key = row_key(block, seq, row);
        if query.matches(block, row, key.1, &mut text) {
            matched.push((key, row));
            if matched.len() == wanted {
                break;
            }
        }
    }
    matched
}

/// The `wanted` best matching rows of a block in any row order.
fn best_matches(
    query: &LogQuery,
    block: &DecodedBlock,
    seq: i64,
    rows: Box<dyn DoubleEndedIterator<Item = usize> + '_>,
    wanted: usize,
) -> Vec<(RowKey, usize)> {
    // Best first in the query's order.
    let order = query.order;
    let best_first = move |a: &(RowKey, usize), b: &(RowKey, usize)| match order {
        Order::Descending => b.0.cmp(&a.0),
        Order::Ascending => a.0.cmp(&b.0),
    };
    let keep_best = |matched: &mut Vec<(RowKey, usize)>| {
        if matched.len() > wanted {
            matched.select_nth_unstable_by(wanted - 1, best_first);
            matched.truncate(wanted);
        }
    };
    // Rows lie roughly in arrival order: walking them best first lets the worst row
    // kept so far rule out the rest by their key alone, before any filter runs.
    let rows: Box<dyn Iterator<Item = usize>> = match order {
        Order::Descending => Box::new(rows.rev()),
        Order::Ascending => rows,
    };
    let mut matched: Vec<(RowKey, usize)> = Vec::new();
    let mut worst_kept: Option<(RowKey, usize)> = None;
    let mut text = query.block_text(block);
    for row in rows {
        let key = row_key(block, seq, row);
        if worst_kept.is_some_and(|worst| best_first(&(key, row), &worst).is_ge()) {
            continue;
        }
        if !query.matches(block, row, key.1, &mut text) {
            continue;
        }
        matched.push((key, row));
        if matched.len() >= 2 * wanted {
            keep_best(&mut matched);
            worst_kept = matched.get(wanted - 1).copied();
        }
    }
    keep_best(&mut matched);
    matched
}

/// A block to search: decoded already, or its payload and where to keep it once decoded.
enum BlockSource {
    Decoded(Arc<CachedBlock>),
    Payload(Vec<u8>, Arc<BlockCache>),
}

/// Blocks decoded at once by one search: the decoding of one overlaps the reading of the
/// next, and several cores share a search that must read many blocks.
fn decoders_per_query() -> usize {
    // Asked once: the answer reads the cgroup's CPU limit from files, a few system calls
    // that were 2% of the server's time when asked per search (docs/adr/0042).
    static DECODERS: OnceLock<usize> = OnceLock::new();
    *DECODERS.get_or_init(|| std::thread::available_parallelism().map_or(2, usize::from).clamp(2, 8))
}

async fn joined(job: BlockJob) -> Result<Vec<(RowKey, FoundRow)>> {
    match job {
        BlockJob::Running(job) => {
            job.await.map_err(|error| Error::Internal(format!("block decoder stopped: {error}")))?
        }
        BlockJob::Done(rows) => rows,
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<()> {
        on_pool!(&self.pool, pool => { sqlx::query("SELECT 1").execute(pool).await?; });
        Ok(())
    }

    async fn insert_block(&self, encoded: &EncodedBlock) -> Result<bool> {
        on_pool!(&self.pool, pool => {
            let result = insert_block_statement!(encoded, 0i64).build().execute(pool).await?;
            Ok(result.rows_affected() == 1)
        })
    }

    async fn query_logs(&self, query: &LogQuery) -> Result<LogPage> {
        let plan = query.plan();
        let first_round = self.candidates(query, &plan, None, FIRST_ROUND_CANDIDATES, true).await?;
        Ok(self.search(query, &plan, first_round).await?.page)
    }

    async fn query_logs_shared(&self, query: &LogQuery) -> Result<Arc<SharedPage>> {
        let plan = query.plan();
        // Which blocks the first round names tells whether a kept answer still holds
        // (store/answer_cache.rs). Identical searches arriving together share that read
        // (store/shared_reads.rs). A search with no answer kept (a search not asked
        // lately: most distinct searches) has nothing to check and skips the read: one
        // statement per search instead of two (docs/adr/0042).
        if self.answers.holds(query) {
            let first_seqs = match self.first_rounds.join(query) {
                Turn::Lead(mut leader) => {
                    leader.turn().await;
                    let seqs = Arc::new(self.first_round_seqs(query, || leader.close()).await?);
                    leader.publish(seqs.clone());
                    seqs
                }
                Turn::Follow(follower) => match follower.rows().await {
                    Some(seqs) => seqs,
                    None => Arc::new(self.first_round_seqs(query, || ()).await?),
                },
            };
            if let Some(page) = self.answers.get(query, &first_seqs) {
                return Ok(page);
            }
        }
        let first_round = self.candidates(query, &plan, None, FIRST_ROUND_CANDIDATES, true).await?;
        // Read again: blocks may have come or gone since.
        let mut first_seqs: Vec<i64> = first_round.iter().map(|candidate| candidate.seq).collect();
        first_seqs.sort_unstable();
        let searched = self.search(query, &plan, first_round).await?;
        let page = Arc::new(SharedPage::new(searched.page));
        if searched.settled_by_first_round {
            self.answers.insert(query, first_seqs, page.clone());
        }
        Ok(page)
    }

    async fn sources(&self, query: &LogQuery, max_blocks: u64) -> Result<SourcesSeen> {
        let query = LogQuery { order: Order::Descending, cursor: None, ..query.clone() };
        let plan = query.plan();
        // (hostname, address) -> (messages, first, last)
        let mut seen: HashMap<(Option<String>, String), (u64, i64, i64)> = HashMap::new();
        let mut blocks_read = 0;
        let mut truncated = false;
        let mut after = None;
        'rounds: loop {
            // Decodes every block it reads itself: the filters of every block prune.
            let candidates =
                self.candidates(&query, &plan, after, self.candidates_per_round(), false).await?;
            let Some(last) = candidates.last() else { break };
            after = Some((last.max_received_ns, last.seq));
            let round_len = candidates.len();
            for candidate in candidates {
                if !query.may_match(&plan, &candidate) {
                    continue;
                }
                if blocks_read == max_blocks {
                    truncated = true;
                    break 'rounds;
                }
                let Some(payload) = self.payload(candidate.seq).await? else { continue };
                blocks_read += 1;
                let (seq, block_query) = (candidate.seq, query.clone());
                let found = tokio::task::spawn_blocking(move || {
                    let block = block::decode(&payload)?;
                    let mut found: HashMap<(Option<String>, String), (u64, i64, i64)> = HashMap::new();
                    let mut text = block_query.block_text(&block);
                    for row in 0..block.len() {
                        if !block_query.matches(&block, row, (seq << 16) | row as i64, &mut text) {
                            continue;
                        }
                        let key = (
                            block.text(RefColumn::Hostname, row).map(str::to_owned),
                            block.source_ip(row).map_or_else(|| block.source(row), |ip| ip.to_string()),
                        );
                        let received = block.received_ns[row];
                        let entry = found.entry(key).or_insert((0, received, received));
                        entry.0 += 1;
                        entry.1 = entry.1.min(received);
                        entry.2 = entry.2.max(received);
                    }
                    Ok::<_, Error>(found)
                })
                .await
                .map_err(|error| Error::Internal(format!("block decoder stopped: {error}")))??;
                for (key, (messages, first, last)) in found {
                    let entry = seen.entry(key).or_insert((0, first, last));
                    entry.0 += messages;
                    entry.1 = entry.1.min(first);
                    entry.2 = entry.2.max(last);
                }
            }
            if (round_len as i64) < self.candidates_per_round() {
                break;
            }
        }
        let time = |nanos| super::rfc3339_with_digits(nanos, 9).unwrap_or_default();
        let mut sources: Vec<SourceSeen> = seen
            .into_iter()
            .map(|((hostname, address), (messages, first, last))| SourceSeen {
                hostname,
                address,
                messages,
                first_seen: time(first),
                last_seen: time(last),
            })
            .collect();
        sources.sort_by(|a, b| {
            b.messages
                .cmp(&a.messages)
                .then_with(|| a.hostname.cmp(&b.hostname))
                .then_with(|| a.address.cmp(&b.address))
        });
        Ok(SourcesSeen { sources, blocks_read, truncated })
    }

    async fn stats(&self) -> Result<StoreStats> {
        on_pool!(&self.pool, pool => {
            let row = sqlx::query(
                // SUM of a BIGINT is NUMERIC on PostgreSQL: cast back so both read as i64.
                "SELECT COUNT(*) AS blocks, CAST(COALESCE(SUM(message_count), 0) AS BIGINT) AS messages, \
                 CAST(COALESCE(SUM(raw_bytes), 0) AS BIGINT) AS raw_bytes, \
                 CAST(COALESCE(SUM(stored_bytes), 0) AS BIGINT) AS stored_bytes, \
                 MIN(min_received_ns) AS oldest, MAX(max_received_ns) AS newest, \
                 CAST(COALESCE(SUM(CASE WHEN compacted IN (1, 3) THEN 1 ELSE 0 END), 0) AS BIGINT) AS compacted, \
                 CAST(COALESCE(SUM(CASE WHEN compacted = 3 THEN 1 ELSE 0 END), 0) AS BIGINT) AS merged \
                 FROM log_blocks",
            )
            .fetch_one(pool)
            .await?;
            Ok(StoreStats {
                blocks: row.try_get::<i64, _>("blocks")?,
                messages: row.try_get("messages")?,
                raw_bytes: row.try_get("raw_bytes")?,
                stored_bytes: row.try_get("stored_bytes")?,
                oldest_received_ns: row.try_get("oldest")?,
                newest_received_ns: row.try_get("newest")?,
                compacted_blocks: row.try_get("compacted")?,
                merged_blocks: row.try_get("merged")?,
            })
        })
    }

    async fn newest_block_seq(&self) -> Result<Option<i64>> {
        on_pool!(&self.pool, pool => {
            let row = sqlx::query("SELECT MAX(seq) AS seq FROM log_blocks").fetch_one(pool).await?;
            Ok(row.try_get::<Option<i64>, _>("seq")?)
        })
    }

    async fn enforce_retention(&self, retention: &Retention, now_ns: i64) -> Result<Removed> {
        let mut removed = Removed::default();
        if let Some(max_age) = retention.metric_max_age_ns {
            removed.metric_points = self.remove_metrics_before(now_ns.saturating_sub(max_age)).await?;
        }
        if let Some(max_age) = retention.max_age_ns {
            let cutoff = now_ns.saturating_sub(max_age);
            on_pool!(&self.pool, pool => {
                let mut sql = QueryBuilder::new(
                    "DELETE FROM log_blocks WHERE max_received_ns < ",
                );
                sql.push_bind(cutoff).push(" RETURNING message_count, stored_bytes");
                let rows = sql.build().fetch_all(pool).await?;
                // A redelivered block this old would be removed again at once.
                let mut retired = QueryBuilder::new("DELETE FROM retired_block_ids WHERE max_received_ns < ");
                retired.push_bind(cutoff);
                retired.build().execute(pool).await?;
                for row in rows {
                    removed.blocks += 1;
                    removed.messages += row.try_get::<i64, _>("message_count")? as u64;
                    removed.stored_bytes += row.try_get::<i64, _>("stored_bytes")? as u64;
                }
            });
        }
        if let Some(max_bytes) = retention.max_bytes {
            let stored = self.stats().await?.stored_bytes;
            let mut excess = stored - max_bytes;
            while excess > 0 {
                // Oldest first, a bounded number per statement so a large backlog does not
                // hold the write lock for long.
                let oldest: Vec<(i64, i64, i64)> = on_pool!(&self.pool, pool => {
                    let rows = sqlx::query(
                        "SELECT seq, message_count, stored_bytes FROM log_blocks \
                         ORDER BY max_received_ns ASC, seq ASC LIMIT 256",
                    )
                    .fetch_all(pool)
                    .await?;
                    rows.iter()
                        .map(|row| Ok((row.try_get("seq")?, row.try_get("message_count")?, row.try_get("stored_bytes")?)))
                        .collect::<Result<Vec<_>>>()?
                });
                if oldest.is_empty() {
                    break;
                }
                let mut doomed = Vec::new();
                for (seq, messages, bytes) in oldest {
                    if excess <= 0 {
                        break;
                    }
                    doomed.push(seq);
                    excess -= bytes;
                    removed.blocks += 1;
                    removed.messages += messages as u64;
                    removed.stored_bytes += bytes as u64;
                }
                on_pool!(&self.pool, pool => {
                    let mut sql = QueryBuilder::new("DELETE FROM log_blocks WHERE seq IN (");
                    let mut list = sql.separated(", ");
                    for seq in &doomed {
                        list.push_bind(*seq);
                    }
                    sql.push(")");
                    sql.build().execute(pool).await?;
                });
            }
        }
        Ok(removed)
    }

    async fn compaction_candidates(&self, tier: BlockTier, limit: i64) -> Result<Vec<BlockMeta>> {
        on_pool!(&self.pool, pool => {
            let mut sql = QueryBuilder::new(
                "SELECT seq, block_id, min_received_ns, max_received_ns, message_count, raw_bytes, stored_bytes \
                 FROM log_blocks WHERE compacted = ",
            );
            sql.push_bind(tier.column())
                .push(" ORDER BY min_received_ns ASC, seq ASC LIMIT ")
                .push_bind(limit);
            let rows = sql.build().fetch_all(pool).await?;
            rows.iter()
                .map(|row| {
                    Ok(BlockMeta {
                        seq: row.try_get("seq")?,
                        block_id: row.try_get("block_id")?,
                        min_received_ns: row.try_get("min_received_ns")?,
                        max_received_ns: row.try_get("max_received_ns")?,
                        message_count: row.try_get("message_count")?,
                        raw_bytes: row.try_get("raw_bytes")?,
                        stored_bytes: row.try_get("stored_bytes")?,
                    })
                })
                .collect()
        })
    }

    async fn block_payload(&self, seq: i64) -> Result<Option<Vec<u8>>> {
        self.payload(seq).await
    }

    async fn replace_blocks(
        &self,
        old: &[BlockMeta],
        from: BlockTier,
        new: &[EncodedBlock],
        to: BlockTier,
    ) -> Result<bool> {
        if old.is_empty() {
            return Ok(false);
        }
        on_pool!(&self.pool, pool => {
            let mut transaction = pool.begin().await?;
            let mut sql = QueryBuilder::new("DELETE FROM log_blocks WHERE compacted = ");
            sql.push_bind(from.column()).push(" AND seq IN (");
            let mut list = sql.separated(", ");
            for block in old {
                list.push_bind(block.seq);
            }
            sql.push(")");
            let deleted = sql.build().execute(&mut *transaction).await?.rows_affected();
            if deleted != old.len() as u64 {
                transaction.rollback().await?;
                return Ok(false);
            }
            for chunk in old.chunks(256) {
                let mut sql = QueryBuilder::new("INSERT INTO retired_block_ids (block_id, max_received_ns) ");
                sql.push_values(chunk, |mut values, block| {
                    values.push_bind(block.block_id.as_str()).push_bind(block.max_received_ns);
                });
                sql.push(" ON CONFLICT (block_id) DO NOTHING");
                sql.build().execute(&mut *transaction).await?;
            }
            for block in new {
                insert_block_statement!(block, to.column()).build().execute(&mut *transaction).await?;
            }
            transaction.commit().await?;
            Ok(true)
        })
    }

    async fn mark_undecodable(&self, seq: i64, from: BlockTier) -> Result<()> {
        on_pool!(&self.pool, pool => {
            let mut sql = QueryBuilder::new("UPDATE log_blocks SET compacted = ");
            sql.push_bind(BlockTier::Undecodable.column()).push(" WHERE compacted = ").push_bind(from.column());
            sql.push(" AND seq = ").push_bind(seq);
            sql.build().execute(pool).await?;
        });
        Ok(())
    }

    async fn runtime_config(&self) -> Result<Vec<RuntimeConfigEntry>> {
        on_pool!(&self.pool, pool => {
            let rows = sqlx::query(
                "SELECT key, value, updated_at, updated_by FROM runtime_config ORDER BY key",
            )
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(RuntimeConfigEntry {
                        key: row.try_get("key")?,
                        value: row.try_get("value")?,
                        updated_at: row.try_get("updated_at")?,
                        updated_by: row.try_get("updated_by")?,
                    })
                })
                .collect()
        })
    }

    async fn put_runtime_config(&self, entry: &RuntimeConfigEntry) -> Result<()> {
        on_pool!(&self.pool, pool => {
            let mut sql = QueryBuilder::new("INSERT INTO runtime_config (key, value, updated_at, updated_by) VALUES (");
            let mut values = sql.separated(", ");
            values.push_bind(&entry.key);
            values.push_bind(&entry.value);
            values.push_bind(&entry.updated_at);
            values.push_bind(&entry.updated_by);
            sql.push(
                ") ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                 updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            );
            sql.build().execute(pool).await?;
        });
        Ok(())
    }

    async fn delete_runtime_config(&self, key: &str) -> Result<bool> {
        let deleted = on_pool!(&self.pool, pool => {
            let mut sql = QueryBuilder::new("DELETE FROM runtime_config WHERE key = ");
            sql.push_bind(key);
            sql.build().execute(pool).await?.rows_affected()
        });
        Ok(deleted > 0)
    }

    async fn close(&self) {
        on_pool!(&self.pool, pool => pool.close().await);
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use killkrill_dataplane::batch::{BatchLimits, LogBatch};
    use killkrill_dataplane::listener::ListenerKind;
    use killkrill_parsers::syslog::ParseOptions;

    use super::*;

    const BASE_NS: i64 = 1_700_000_000_000_000_000;
    const SEQ: i64 = 7;

    /// A block of 600 messages from 7 hosts and 3 apps, received `step(row)` after BASE_NS.
    fn block(step: impl Fn(usize) -> i64) -> CachedBlock {
        let limits = BatchLimits { max_messages: 1 << 16, max_bytes: 64 << 20, ..BatchLimits::default() };
        let mut batch = LogBatch::new(ListenerKind::SyslogUdp, &limits);
        for row in 0..600 {
            let frame = format!(
                "<{}>1 2023-11-14T22:13:20Z Host-{} {} 1 - - message {row}",
                8 + row % 8,
                row % 7,
                ["sshd", "cron", "nginx"][row % 3]
            );
            let options = ParseOptions {
                received_at: jiff::Timestamp::from_nanosecond(i128::from(BASE_NS + step(row))).unwrap(),
                ..ParseOptions::default()
            };
            batch.push_syslog(
                frame.as_bytes(),
                None,
                "192.0.2.1:514".parse::<SocketAddr>().unwrap(),
                &options,
            );
        }
        let encoded = block::BlockEncoder::new(1).unwrap().encode(batch.iter()).unwrap();
        CachedBlock::new(block::decode(&encoded.payload).unwrap())
    }

    fn searches() -> Vec<LogQuery> {
        let mut searches = Vec::new();
        for order in [Order::Descending, Order::Ascending] {
            for limit in [1, 5, 40, 1000] {
                let base = LogQuery { limit, order, ..LogQuery::default() };
                searches.push(base.clone());
                searches.push(LogQuery { hosts: vec!["host-3".into()], ..base.clone() });
                searches.push(LogQuery { hosts: vec!["HOST-3".into(), "host-5".into()], ..base.clone() });
                searches.push(LogQuery { apps: vec!["cron".into()], ..base.clone() });
                searches.push(LogQuery {
                    hosts: vec!["host-1".into()],
                    apps: vec!["nginx".into()],
                    ..base.clone()
                });
                searches.push(LogQuery { hosts: vec!["nobody".into()], ..base.clone() });
                searches.push(LogQuery { severity_mask: Some(0b1000), ..base.clone() });
                searches.push(LogQuery {
                    start_ns: Some(BASE_NS + 100),
                    end_ns: Some(BASE_NS + 420),
                    ..base.clone()
                });
                for (received_ns, row) in [(150, 150), (150, 0), (299, 600), (0, 0), (10_000, 3)] {
                    let cursor = Some(Cursor { received_ns: BASE_NS + received_ns, id: (SEQ << 16) | row });
                    searches.push(LogQuery { cursor, ..base.clone() });
                    searches.push(LogQuery { cursor, apps: vec!["sshd".into()], ..base.clone() });
                }
            }
        }
        searches
    }

    /// The rows of a block in time order, found by binary search and name index, are
    /// the rows the walk over every row finds, for every kind of filter.
    #[test]
    fn a_block_in_time_order_gives_the_rows_of_the_full_walk() {
        // Several rows share each receive time, as a busy listener gives them.
        for cached in [block(|row| row as i64), block(|row| row as i64 / 3)] {
            assert!(cached.in_time_order);
            for query in searches() {
                let wanted = query.limit as usize + 1;
                let walked =
                    best_matches(&query, &cached.block, SEQ, Box::new(0..cached.block.len()), wanted);
                let fast = block_rows(&query, SEQ, &cached, wanted);
                let mut walked: Vec<RowKey> = walked.into_iter().map(|(key, _)| key).collect();
                let mut fast: Vec<RowKey> = fast.into_iter().map(|(key, _)| key).collect();
                walked.sort_unstable();
                fast.sort_unstable();
                assert_eq!(fast, walked, "{query:?}");
            }
        }
    }

    /// A block out of time order (compaction's) takes the walk, the host's rows only.
    #[test]
    fn a_block_out_of_time_order_gives_the_best_rows() {
        let cached = block(|row| ((row * 7919) % 600) as i64);
        assert!(!cached.in_time_order);
        for query in searches() {
            let wanted = query.limit as usize + 1;
            let mut expected: Vec<RowKey> = (0..cached.block.len())
                .map(|row| row_key(&cached.block, SEQ, row))
                .filter(|key| {
                    query.matches(
                        &cached.block,
                        (key.1 & 0xffff) as usize,
                        key.1,
                        &mut query.block_text(&cached.block),
                    )
                })
                .collect();
            expected.sort_unstable();
            if query.order == Order::Descending {
                expected.reverse();
            }
            expected.truncate(wanted);
            expected.sort_unstable();
            let mut found: Vec<RowKey> =
                block_rows(&query, SEQ, &cached, wanted).into_iter().map(|(key, _)| key).collect();
            found.sort_unstable();
            assert_eq!(found, expected, "{query:?}");
        }
    }
}
