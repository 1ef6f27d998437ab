//! How small does the store keep a log file? Reads each file given, one message per line
//! (a line without a `<PRI>` gets `<13>`, as a forwarding relay would give it), parses the
//! lines as the syslog listeners do, encodes them as one block per `--block-messages` lines
//! at the arrival level (zstd 1), at compaction's (zstd 9) and at the merge's (zstd 19),
//! and prints the ratio of the frames' bytes to the stored bytes (payload and both Bloom
//! filters; "filters" is their share at zstd 1), beside zstd on the plain text for
//! comparison.
//!
//! ```sh
//! cargo run --release -p killkrill --example block_ratio -- /var/log/syslog other.log
//! ```

use std::net::SocketAddr;

use anyhow::{Context, Result};
use killkrill::store::BlockEncoder;
use killkrill_dataplane::batch::{BatchLimits, LogBatch};
use killkrill_dataplane::listener::ListenerKind;
use killkrill_parsers::syslog::ParseOptions;

fn main() -> Result<()> {
    let mut block_messages = 16_384usize;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--block-messages" {
            block_messages = args.next().context("--block-messages needs a number")?.parse()?;
        } else {
            files.push(arg);
        }
    }
    anyhow::ensure!(!files.is_empty(), "usage: block_ratio [--block-messages N] FILE...");
    println!(
        "{:<24} {:>7} {:>10} {:>6} {:>9} {:>9} {:>9} {:>8} {:>9} {:>9}",
        "file",
        "lines",
        "raw bytes",
        "flags",
        "zstd 1",
        "zstd 9",
        "zstd 19",
        "filters",
        "text z3",
        "text z19"
    );
    for path in files {
        let text = std::fs::read(&path).with_context(|| format!("reading {path}"))?;
        let frames: Vec<Vec<u8>> = text
            .split(|&byte| byte == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
            .filter(|line| !line.is_empty())
            .map(|line| if line.starts_with(b"<") { line.to_vec() } else { [&b"<13>"[..], line].concat() })
            .collect();
        let raw: usize = frames.iter().map(Vec::len).sum();
        let plain = frames.join(&b'\n');
        let mut stored = [0usize; 3];
        let mut flagged = 0u32;
        let mut filters = 0usize;
        for chunk in frames.chunks(block_messages.max(1)) {
            let batch = batch_of(chunk);
            for (slot, level) in [1, 9, 19].into_iter().enumerate() {
                let block = BlockEncoder::new(level)?.encode(batch.iter())?;
                stored[slot] +=
                    block.payload.len() + block.summary.field_filter.len() + block.summary.token_filter.len();
                if slot == 0 {
                    flagged += block.summary.parse_error_count;
                    filters += block.summary.field_filter.len() + block.summary.token_filter.len();
                }
            }
        }
        let zstd_text = |level| zstd::bulk::compress(&plain, level).map(|out| out.len());
        let ratio = |bytes: usize| raw as f64 / bytes.max(1) as f64;
        let name =
            std::path::Path::new(&path).file_name().map_or(path.clone(), |n| n.to_string_lossy().into());
        println!(
            "{:<24} {:>7} {:>10} {:>6} {:>8.2}x {:>8.2}x {:>8.2}x {:>7.0}% {:>8.2}x {:>8.2}x",
            name,
            frames.len(),
            raw,
            flagged,
            ratio(stored[0]),
            ratio(stored[1]),
            ratio(stored[2]),
            100.0 * filters as f64 / stored[0].max(1) as f64,
            ratio(zstd_text(3)?),
            ratio(zstd_text(19)?)
        );
    }
    Ok(())
}

/// One batch of `frames`, received a millisecond apart from one source.
fn batch_of(frames: &[Vec<u8>]) -> LogBatch {
    let limits =
        BatchLimits { max_messages: frames.len().max(1), max_bytes: usize::MAX, ..BatchLimits::default() };
    let mut batch = LogBatch::new(ListenerKind::SyslogTcp, &limits);
    let source: SocketAddr = ([192, 0, 2, 1], 514).into();
    let start = jiff::Timestamp::now().as_nanosecond();
    for (index, frame) in frames.iter().enumerate() {
        let received =
            jiff::Timestamp::from_nanosecond(start + index as i128 * 1_000_000).unwrap_or_default();
        let options = ParseOptions { received_at: received, ..ParseOptions::default() };
        batch.push_syslog(frame, None, source, &options);
    }
    batch
}
