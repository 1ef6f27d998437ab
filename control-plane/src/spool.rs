//! The local spool: when the store cannot take a block, the writer puts it in a file under
//! the data directory instead (synced before the batches are released), and a drainer
//! commits spooled blocks once the store answers again. Ingest goes on through a store
//! outage, bounded by `store.spool_max_bytes`; past that the writer waits for the store
//! (back pressure, as without a spool). Spooled blocks survive a crash and are drained at
//! the next start.
//!
//! File layout (`<receive time>-<block id>.kkspool`), little-endian:
//! `b"KKSPOOL1"`, then the summary fields (block id as 16 bytes, format version u8,
//! min/max received i64, count, masks, parse errors u32, raw bytes u64), the field filter,
//! the token filter and the payload each as a u32/u32/u64 length and bytes, and last an
//! XXH3-64 of everything before it. A file that fails the check is moved aside to `bad/`,
//! counted and logged, never retried forever.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::store::Store;
use crate::store::block::{BlockSummary, EncodedBlock};
use crate::telemetry::metrics::StoreCounters;

const MAGIC: &[u8; 8] = b"KKSPOOL1";
const EXTENSION: &str = "kkspool";
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Looks for spooled files at least this often.
const POLL: Duration = Duration::from_secs(1);

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    used_bytes: AtomicU64,
    files: AtomicU64,
    counters: Arc<StoreCounters>,
    wake: Notify,
}

impl Spool {
    /// Opens (creating) the spool directory, counting what a previous run left there.
    pub fn open(dir: &Path, max_bytes: u64, counters: Arc<StoreCounters>) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut used = 0;
        let mut files = 0;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            match path.extension().and_then(|e| e.to_str()) {
                Some(EXTENSION) => {
                    used += std::fs::metadata(&path)?.len();
                    files += 1;
                }
                // A write cut short by a crash: its batches were never released.
                Some("tmp") => std::fs::remove_file(&path)?,
                _ => {}
            }
        }
        counters.spool_bytes.store(used, Ordering::Relaxed);
        counters.spool_blocks.store(files, Ordering::Relaxed);
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
            used_bytes: AtomicU64::new(used),
            files: AtomicU64::new(files),
            counters,
            wake: Notify::new(),
        })
    }

    /// Blocks waiting in the spool.
    pub fn pending(&self) -> u64 {
        self.files.load(Ordering::Relaxed)
    }

    /// Writes the block durably (file and directory synced). False when the spool has no
    /// room for it. Blocking I/O: call it from a blocking context.
    pub fn put(&self, block: &EncodedBlock) -> std::io::Result<bool> {
        let bytes = encode(block);
        let size = bytes.len() as u64;
        if self.used_bytes.load(Ordering::Relaxed) + size > self.max_bytes {
            self.counters.spool_full.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        let name = format!("{:020}-{}", block.summary.max_received_ns.max(0), block.summary.block_id);
        let temporary = self.dir.join(format!("{name}.tmp"));
        let path = self.dir.join(format!("{name}.{EXTENSION}"));
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        self.used_bytes.fetch_add(size, Ordering::Relaxed);
        self.files.fetch_add(1, Ordering::Relaxed);
        let counters = &self.counters;
        counters.spool_bytes.store(self.used_bytes.load(Ordering::Relaxed), Ordering::Relaxed);
        counters.spool_blocks.store(self.pending(), Ordering::Relaxed);
        counters.spooled_blocks.fetch_add(1, Ordering::Relaxed);
        counters.spooled_messages.fetch_add(u64::from(block.summary.message_count), Ordering::Relaxed);
        self.wake.notify_one();
        Ok(true)
    }

    fn spooled_files(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().and_then(|e| e.to_str()) == Some(EXTENSION))
            .collect();
        files.sort();
        Ok(files)
    }

    fn forget(&self, path: &Path, size: u64) {
        if std::fs::remove_file(path).is_ok() {
            self.used_bytes.fetch_sub(size.min(self.used_bytes.load(Ordering::Relaxed)), Ordering::Relaxed);
            self.files.fetch_sub(1.min(self.pending()), Ordering::Relaxed);
        }
        self.counters.spool_bytes.store(self.used_bytes.load(Ordering::Relaxed), Ordering::Relaxed);
        self.counters.spool_blocks.store(self.pending(), Ordering::Relaxed);
    }

    /// Commits spooled blocks, oldest first, until `stop`; waits for the store with
    /// back-off while it is down. What is left at shutdown is drained at the next start.
    pub async fn drain(self: Arc<Self>, store: Arc<dyn Store>, mut stop: watch::Receiver<bool>) {
        let mut delay = RETRY_FIRST;
        loop {
            let files = match self.spooled_files() {
                Ok(files) => files,
                Err(error) => {
                    tracing::error!(error = %error, dir = %self.dir.display(), "Cannot list the spool.");
                    Vec::new()
                }
            };
            let mut store_down = false;
            for path in &files {
                if *stop.borrow() {
                    return;
                }
                let bytes = match std::fs::read(path) {
                    Ok(bytes) => bytes,
                    Err(error) => {
                        tracing::error!(error = %error, file = %path.display(), "Cannot read a spooled block.");
                        continue;
                    }
                };
                let Some(block) = decode(&bytes) else {
                    self.set_aside(path, bytes.len() as u64);
                    continue;
                };
                match store.insert_block(&block).await {
                    Ok(_) => {
                        self.counters.count_committed(&block);
                        self.counters.drained_blocks.fetch_add(1, Ordering::Relaxed);
                        self.forget(path, bytes.len() as u64);
                        delay = RETRY_FIRST;
                    }
                    Err(error) => {
                        self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %error, spooled = self.pending(), retry_in_ms = delay.as_millis() as u64, "Store still down; the spool waits.");
                        store_down = true;
                        break;
                    }
                }
            }
            let wait = if store_down {
                let wait = delay;
                delay = (delay * 2).min(RETRY_MAX);
                wait
            } else {
                POLL
            };
            if !files.is_empty() && !store_down && self.pending() == 0 {
                tracing::info!("Spool drained: every spooled block is in the store.");
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified(), if !store_down => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Moves a damaged file to `bad/`, so it is kept for inspection and not retried.
    fn set_aside(&self, path: &Path, size: u64) {
        self.counters.spool_damaged.fetch_add(1, Ordering::Relaxed);
        let bad = self.dir.join("bad");
        let moved = std::fs::create_dir_all(&bad)
            .and_then(|()| std::fs::rename(path, bad.join(path.file_name().unwrap_or_default())));
        tracing::error!(file = %path.display(), moved = moved.is_ok(), "A spooled block is damaged; moved to bad/.");
        if moved.is_ok() {
            self.used_bytes.fetch_sub(size.min(self.used_bytes.load(Ordering::Relaxed)), Ordering::Relaxed);
            self.files.fetch_sub(1.min(self.pending()), Ordering::Relaxed);
            self.counters.spool_bytes.store(self.used_bytes.load(Ordering::Relaxed), Ordering::Relaxed);
            self.counters.spool_blocks.store(self.pending(), Ordering::Relaxed);
        }
    }
}

fn put_bytes_u32(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn encode(block: &EncodedBlock) -> Vec<u8> {
    let summary = &block.summary;
    let mut out = Vec::with_capacity(block.payload.len() + summary.token_filter.len() + 256);
    out.extend_from_slice(MAGIC);
    put_bytes_u32(&mut out, summary.block_id.as_bytes());
    out.push(summary.format_version);
    out.extend_from_slice(&summary.min_received_ns.to_le_bytes());
    out.extend_from_slice(&summary.max_received_ns.to_le_bytes());
    for value in
        [summary.message_count, summary.severity_mask, summary.facility_mask, summary.parse_error_count]
    {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out.extend_from_slice(&summary.raw_bytes.to_le_bytes());
    put_bytes_u32(&mut out, &summary.field_filter);
    put_bytes_u32(&mut out, &summary.token_filter);
    out.extend_from_slice(&(block.payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&block.payload);
    let check = xxhash_rust::xxh3::xxh3_64(&out);
    out.extend_from_slice(&check.to_le_bytes());
    out
}

/// Reads fields in order, refusing to run past the end.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.rest.split_at_checked(len)?;
        self.rest = tail;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn bytes_u32(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
    }
}

/// Reads a spool file back; None when it is damaged in any way.
fn decode(bytes: &[u8]) -> Option<EncodedBlock> {
    let (body, check) = bytes.split_at_checked(bytes.len().checked_sub(8)?)?;
    if xxhash_rust::xxh3::xxh3_64(body).to_le_bytes() != check {
        return None;
    }
    let mut fields = Fields { rest: body.strip_prefix(MAGIC.as_slice())? };
    let block_id = String::from_utf8(fields.bytes_u32()?.to_vec()).ok()?;
    let format_version = fields.take(1)?[0];
    let min_received_ns = fields.i64()?;
    let max_received_ns = fields.i64()?;
    let message_count = fields.u32()?;
    let severity_mask = fields.u32()?;
    let facility_mask = fields.u32()?;
    let parse_error_count = fields.u32()?;
    let raw_bytes = fields.u64()?;
    let field_filter = fields.bytes_u32()?.to_vec();
    let token_filter = fields.bytes_u32()?.to_vec();
    let payload_len = usize::try_from(fields.u64()?).ok()?;
    let payload = fields.take(payload_len)?.to_vec();
    if !fields.rest.is_empty() {
        return None;
    }
    Some(EncodedBlock {
        summary: BlockSummary {
            block_id,
            format_version,
            min_received_ns,
            max_received_ns,
            message_count,
            severity_mask,
            facility_mask,
            parse_error_count,
            raw_bytes,
            field_filter,
            token_filter,
        },
        payload,
    })
}

#[cfg(test)]
mod tests {
    use killkrill_dataplane::batch::{BatchLimits, LogBatch};
    use killkrill_dataplane::listener::ListenerKind;
    use killkrill_parsers::syslog::ParseOptions;

    use super::*;
    use crate::store::BlockEncoder;

    fn block(words: &str) -> EncodedBlock {
        let mut batch = LogBatch::new(ListenerKind::SyslogUdp, &BatchLimits::default());
        for n in 0..20 {
            let frame = format!("<13>1 - host app - - - {words} {n}");
            batch.push_syslog(
                frame.as_bytes(),
                None,
                "192.0.2.1:514".parse().unwrap(),
                &ParseOptions::default(),
            );
        }
        BlockEncoder::new(1).unwrap().encode(batch.iter()).unwrap()
    }

    #[test]
    fn a_spooled_block_reads_back_whole_and_damage_is_caught() {
        let original = block("spool round trip");
        let bytes = encode(&original);
        let back = decode(&bytes).unwrap();
        assert_eq!(back.summary, original.summary);
        assert_eq!(back.payload, original.payload);
        for cut in [0, 7, 8, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_none(), "cut at {cut}");
        }
        for position in (0..bytes.len()).step_by(97) {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x40;
            assert!(decode(&damaged).is_none(), "flip at {position}");
        }
    }

    #[test]
    fn the_spool_is_bounded_and_counts_what_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let counters = Arc::new(StoreCounters::default());
        let one = encode(&block("bounded")).len() as u64;
        let spool = Spool::open(dir.path(), one * 2 + 10, counters.clone()).unwrap();
        assert!(spool.put(&block("bounded")).unwrap());
        assert!(spool.put(&block("bounded")).unwrap());
        assert!(!spool.put(&block("bounded")).unwrap(), "a third block does not fit");
        assert_eq!(spool.pending(), 2);
        assert_eq!(counters.spool_full.load(Ordering::Relaxed), 1);
        assert_eq!(counters.spooled_messages.load(Ordering::Relaxed), 40);
        // A leftover temporary file (a crash mid-write) is removed; spooled files are kept.
        std::fs::write(dir.path().join("x.tmp"), b"half").unwrap();
        let reopened = Spool::open(dir.path(), one * 2 + 10, Arc::new(StoreCounters::default())).unwrap();
        assert_eq!(reopened.pending(), 2);
        assert!(!dir.path().join("x.tmp").exists());
    }
}
