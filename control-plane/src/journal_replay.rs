//! At start, before any listener runs: what the TCP and TLS listeners of an earlier run
//! journaled and did not see committed (a crash, a kill -9, a shutdown with the store
//! gone) is framed again and stored, then its segments are deleted (docs/adr/0031).

use std::path::Path;

use killkrill_dataplane::batch::{BatchLimits, LogBatch};
use killkrill_dataplane::journal::{journal_dirs, replay_dir};
use killkrill_dataplane::listener::ListenerKind;
use killkrill_parsers::syslog::ParseOptions;

use crate::ingest::BlockSink;
use crate::spool::Spool;
use crate::store::BlockEncoder;
use crate::store::block::MAX_ROWS;
use crate::telemetry::metrics::StoreCounters;
use crate::{Error, Result};

/// What was replayed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    pub segments: usize,
    pub messages: u64,
}

/// The listener a journal directory belongs to, from its name (`syslog-tls-...`).
fn listener_of(dir: &Path) -> ListenerKind {
    let name = dir.file_name().and_then(|name| name.to_str()).unwrap_or_default();
    if name.starts_with(ListenerKind::SyslogTls.label()) {
        ListenerKind::SyslogTls
    } else {
        ListenerKind::SyslogTcp
    }
}

/// Replays every listener journal under `root` into blocks delivered through `sink`
/// (the store, or the spool while it is down, or the Redis Stream), deleting each
/// listener's segments once its messages are delivered.
pub async fn replay_journals(
    root: &Path,
    sink: &BlockSink,
    counters: &StoreCounters,
    spool: Option<&Spool>,
    options: &ParseOptions,
    max_frame_bytes: usize,
    compression_level: i32,
) -> Result<Replayed> {
    let mut replayed = Replayed::default();
    let journal_error = |path: &Path, error: std::io::Error| Error::DataDir {
        path: path.to_owned(),
        message: format!("journal: {error}"),
    };
    for dir in journal_dirs(root).map_err(|error| journal_error(root, error))? {
        let kind = listener_of(&dir);
        let limits =
            BatchLimits { max_messages: MAX_ROWS, max_bytes: usize::MAX >> 1, ..BatchLimits::default() };
        let mut batches = vec![LogBatch::new(kind, &limits)];
        let mut frame_options = options.clone();
        let (summary, segments) = replay_dir(&dir, max_frame_bytes, |frame| {
            if batches.last().is_some_and(|batch| batch.len() >= MAX_ROWS) {
                batches.push(LogBatch::new(kind, &limits));
            }
            frame_options.received_at = frame.received_at;
            if let Some(batch) = batches.last_mut() {
                batch.push_syslog(frame.bytes, frame.flag, frame.peer, &frame_options);
            }
        })
        .map_err(|error| journal_error(&dir, error))?;
        let mut encoder =
            BlockEncoder::new(compression_level).map_err(|error| Error::Internal(error.to_string()))?;
        for batch in batches.iter().filter(|batch| !batch.is_empty()) {
            let block = encoder.encode(batch.iter())?;
            sink.deliver(counters, &block, spool).await;
            replayed.messages += u64::from(block.summary.message_count);
        }
        if summary.segments > 0 {
            tracing::info!(
                listener = kind.label(),
                journal = %dir.display(),
                segments = summary.segments,
                messages = summary.frames,
                torn_segments = summary.torn_segments,
                "Replayed what an earlier run had read and not stored."
            );
        }
        replayed.segments += summary.segments;
        for segment in segments {
            std::fs::remove_file(&segment).map_err(|error| journal_error(&segment, error))?;
        }
        // Empty now; the listener makes it again if it binds the same address.
        let _ = std::fs::remove_dir(&dir);
    }
    Ok(replayed)
}
