//! RFC 6587 framing over a stream cut into reads of varying sizes.
//!
//! Input layout: byte 0 picks `max_frame_bytes` (16..=1024); byte 1 says how many of the
//! following bytes (0..=15) are read sizes, used in turn; the rest is the stream. A size
//! byte of 0 means "everything left in one read". Reads ending mid-prefix, mid-frame or
//! mid-CRLF are where a sans-IO framer goes wrong, and where it could buffer more than
//! docs/tcp-framing.md promises.
//!
//! Asserted, as the framer documents them (and its tests check them on fixed cases):
//! - no frame is longer than `max_frame_bytes`;
//! - once `next_frame` has said `None`, at most `max_frame_bytes` plus a length prefix
//!   stay buffered; right after a feed, that plus the read's length;
//! - `is_hopeless` is sticky;
//! - once `finish` has said `None`, nothing is left buffered;
//! - the frames, flags and counters do not depend on how the stream was cut into reads.

#![no_main]

use killkrill_parsers::framing::{Frame, FrameFlag, SyslogFramer};
use killkrill_parsers::json::frame_to_json;
use libfuzzer_sys::fuzz_target;

/// The longest length prefix: ten digits and the space (`framing.rs` takes more digits
/// as no prefix at all). It also covers a run of up to twenty digits held while waiting to
/// see whether a space follows, since `max_frame_bytes` is at least 16 here.
const LONGEST_PREFIX: usize = 11;

const MAX_SIZE_BYTES: usize = 15;

/// Everything a stream comes out as.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    frames: Vec<(Vec<u8>, Option<FrameFlag>)>,
    framing_errors: u64,
    truncated_frames: u64,
    hopeless: bool,
}

fuzz_target!(|data: &[u8]| {
    let [max_selector, size_count, rest @ ..] = data else {
        return;
    };
    let max_frame_bytes = 16 + usize::from(*max_selector) * (1024 - 16) / 255;
    let size_count = usize::from(*size_count).min(MAX_SIZE_BYTES).min(rest.len());
    let (sizes, stream) = rest.split_at(size_count);

    let reads = cut_into_reads(stream, sizes);
    let in_reads = frame(max_frame_bytes, &reads);
    let whole = frame(max_frame_bytes, &[stream]);
    assert_eq!(in_reads, whole, "the outcome depends on the reads ({} of them)", reads.len());
});

fn cut_into_reads<'a>(mut stream: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let mut reads = Vec::new();
    while !stream.is_empty() {
        let size = match sizes.get(reads.len() % sizes.len().max(1)) {
            Some(&size) if size > 0 => usize::from(size).min(stream.len()),
            _ => stream.len(),
        };
        let (read, after) = stream.split_at(size);
        reads.push(read);
        stream = after;
    }
    reads
}

/// Feeds `reads` one by one, taking frames out after each, then finishes the stream;
/// checks the documented limits all along.
fn frame(max_frame_bytes: usize, reads: &[&[u8]]) -> Outcome {
    let bound = max_frame_bytes + LONGEST_PREFIX;
    let mut framer = SyslogFramer::new(max_frame_bytes);
    let mut frames = Vec::new();
    let mut was_hopeless = false;
    for read in reads {
        framer.feed(read);
        let buffered = framer.buffered_len();
        assert!(
            buffered <= bound + read.len(),
            "{buffered} bytes buffered after a read of {}, max_frame_bytes {max_frame_bytes}",
            read.len()
        );
        while let Some(frame) = framer.next_frame() {
            frames.push(check_frame(&frame, max_frame_bytes));
        }
        let buffered = framer.buffered_len();
        assert!(buffered <= bound, "{buffered} bytes left buffered, max_frame_bytes {max_frame_bytes}");
        was_hopeless = check_hopeless_is_sticky(&framer, was_hopeless);
    }
    while let Some(frame) = framer.finish() {
        frames.push(check_frame(&frame, max_frame_bytes));
    }
    assert_eq!(framer.buffered_len(), 0, "bytes left after finish() said None");
    Outcome {
        frames,
        framing_errors: framer.framing_errors(),
        truncated_frames: framer.truncated_frames(),
        hopeless: check_hopeless_is_sticky(&framer, was_hopeless),
    }
}

fn check_frame(frame: &Frame<'_>, max_frame_bytes: usize) -> (Vec<u8>, Option<FrameFlag>) {
    assert!(
        frame.bytes.len() <= max_frame_bytes,
        "a frame of {} bytes, max_frame_bytes {max_frame_bytes}",
        frame.bytes.len()
    );
    let _ = frame_to_json(frame);
    (frame.bytes.to_vec(), frame.flag)
}

fn check_hopeless_is_sticky(framer: &SyslogFramer, was_hopeless: bool) -> bool {
    let hopeless = framer.is_hopeless();
    assert!(hopeless || !was_hopeless, "is_hopeless() went back to false");
    hopeless
}
