//! RFC 6587 framing for syslog over TCP: octet counting and non-transparent framing.
//!
//! The framer is sans-IO: the listener feeds it whatever each read returned and takes
//! frames out until `next_frame` says `None`. Frames are slices of the framer's own
//! buffer, so a frame that arrived whole is never copied a second time.
//!
//! How each frame is recognised (decided per frame, so one stream may mix both):
//! - `LENGTH SP <` with LENGTH a decimal number of one to ten digits, the first not `0`,
//!   is octet counting (RFC 6587 §3.4.1); the frame is the LENGTH bytes after the space.
//!   The `<` is required because a plain line may well start with digits and a space
//!   (`123 abc`); such a line is read as a non-transparent frame.
//! - Anything else is non-transparent framing (§3.4.2), ended by LF, CRLF or NUL.
//!   Empty frames (a lone trailer) yield nothing.
//!
//! Bad length prefixes: `0 <`, a leading zero, or more than ten digits before ` <` are
//! framing errors. A frame that follows an octet-counted frame and starts with neither a
//! length prefix, `<` nor a trailer shows that the previous length was wrong. In both cases
//! the framer resynchronises at the next LF or NUL: the bytes up to it come out as one
//! frame flagged [`FrameFlag::FramingError`], and the error is counted.
//!
//! The stream is hopeless ([`SyslogFramer::is_hopeless`]) when a resynchronisation finds
//! no LF or NUL within `max_frame_bytes` (a stream without trailers offers nothing to
//! resynchronise on), or after [`HOPELESS_CONSECUTIVE_ERRORS`] framing errors with no
//! clean frame between them. The framer keeps framing; closing is the caller's call.

use std::ops::Range;

/// A length prefix longer than this is a framing error, not a length: ten digits are
/// already 10 GB, far past any sane `max_frame_bytes`.
const MAX_LENGTH_DIGITS: usize = 10;

/// Past this many leading digits the line is not a length prefix at all; stops a long
/// digit run from being buffered while waiting for the space.
const MAX_SCANNED_DIGITS: usize = 20;

/// Framing errors in a row, without a clean frame between, after which the stream is
/// considered hopeless.
pub const HOPELESS_CONSECUTIVE_ERRORS: u32 = 8;

/// What happened to a frame on its way out of the byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameFlag {
    /// Longer than the configured maximum; the frame holds the first `max_frame_bytes`.
    Truncated,
    /// The stream ended inside this frame.
    Incomplete,
    /// A bad octet count; the framer resynchronised after it.
    FramingError,
}

impl FrameFlag {
    /// Stable snake_case name, for counters and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FrameFlag::Truncated => "truncated",
            FrameFlag::Incomplete => "incomplete",
            FrameFlag::FramingError => "framing_error",
        }
    }
}

/// One frame cut out of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub bytes: &'a [u8],
    pub flag: Option<FrameFlag>,
}

/// Bytes of an oversize frame still to be thrown away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Discard {
    Nothing,
    /// The rest of an octet-counted frame: exactly this many bytes.
    Octets(usize),
    /// The rest of a non-transparent frame: up to and including the next LF or NUL.
    ToTrailer,
}

/// How the bytes at a frame start read as an octet-counting prefix.
enum LengthPrefix {
    /// Not enough bytes yet to tell.
    NeedMore,
    /// Not a length prefix: the frame is non-transparent.
    Absent,
    /// Looks like a length prefix but cannot be one.
    Bad,
    Counted {
        prefix_len: usize,
        length: usize,
    },
}

/// The outcome of trying to cut one frame at the current position.
enum Cut {
    NeedMore,
    /// A lone trailer: consumed, no frame.
    Empty,
    Frame(Range<usize>, Option<FrameFlag>),
}

/// Sans-IO framer: feed it whatever each read returned, then take frames out.
///
/// After `next_frame` has returned `None`, at most about `max_frame_bytes` plus a length
/// prefix stay buffered, whatever the peer sends: oversize frames are cut at the maximum
/// and the rest is discarded as it arrives.
#[derive(Debug)]
pub struct SyslogFramer {
    max_frame_bytes: usize,
    buffer: Vec<u8>,
    consumed: usize,
    discard: Discard,
    /// The previous frame was octet-counted, so the next one must start like a frame.
    after_octet_counted: bool,
    framing_errors: u64,
    truncated_frames: u64,
    consecutive_errors: u32,
    hopeless: bool,
}

impl SyslogFramer {
    /// `max_frame_bytes` is the longest frame passed on whole (at least 1).
    pub fn new(max_frame_bytes: usize) -> Self {
        Self {
            max_frame_bytes: max_frame_bytes.max(1),
            buffer: Vec::new(),
            consumed: 0,
            discard: Discard::Nothing,
            after_octet_counted: false,
            framing_errors: 0,
            truncated_frames: 0,
            consecutive_errors: 0,
            hopeless: false,
        }
    }

    /// Appends bytes read from the stream.
    pub fn feed(&mut self, input: &[u8]) {
        self.compact();
        let mut input = input;
        // Throw away the tail of an oversize frame before it is ever copied, so that a
        // peer sending one endless frame costs nothing but the scan.
        if self.buffer.is_empty() {
            match self.discard {
                Discard::Nothing => {}
                Discard::Octets(remaining) => {
                    let dropped = remaining.min(input.len());
                    input = &input[dropped..];
                    self.discard = if dropped == remaining {
                        Discard::Nothing
                    } else {
                        Discard::Octets(remaining - dropped)
                    };
                }
                Discard::ToTrailer => match find_trailer(input) {
                    Some(trailer) => {
                        input = &input[trailer + 1..];
                        self.discard = Discard::Nothing;
                    }
                    None => return,
                },
            }
        }
        self.buffer.extend_from_slice(input);
    }

    /// The next complete frame, if the buffered bytes hold one.
    pub fn next_frame(&mut self) -> Option<Frame<'_>> {
        let (span, flag) = self.next_span()?;
        Some(Frame { bytes: &self.buffer[span], flag })
    }

    /// At end of stream: the remaining complete frames, one per call, then what is left,
    /// flagged `Incomplete`, then `None`.
    pub fn finish(&mut self) -> Option<Frame<'_>> {
        if let Some((span, flag)) = self.next_span() {
            return Some(Frame { bytes: &self.buffer[span], flag });
        }
        let span = self.incomplete_tail()?;
        Some(Frame { bytes: &self.buffer[span], flag: Some(FrameFlag::Incomplete) })
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn buffered_len(&self) -> usize {
        self.buffer.len() - self.consumed
    }

    /// The bytes buffered but not yet returned as a frame (complete frames not taken yet,
    /// then the partial last one). Feeding them to a fresh framer gives the same frames,
    /// except while an oversize frame's tail is being discarded.
    pub fn buffered(&self) -> &[u8] {
        &self.buffer[self.consumed..]
    }

    /// Framing errors seen so far (bad length prefixes and resynchronisations).
    pub fn framing_errors(&self) -> u64 {
        self.framing_errors
    }

    /// Frames cut at `max_frame_bytes` so far.
    pub fn truncated_frames(&self) -> u64 {
        self.truncated_frames
    }

    /// The stream cannot be resynchronised; the caller should close the connection.
    /// Sticky once set.
    pub fn is_hopeless(&self) -> bool {
        self.hopeless
    }

    fn compact(&mut self) {
        if self.consumed == 0 {
            return;
        }
        if self.consumed == self.buffer.len() {
            self.buffer.clear();
        } else {
            self.buffer.copy_within(self.consumed.., 0);
            self.buffer.truncate(self.buffer.len() - self.consumed);
        }
        self.consumed = 0;
    }

    fn next_span(&mut self) -> Option<(Range<usize>, Option<FrameFlag>)> {
        loop {
            if !self.discard_pending() {
                return None;
            }
            let pending = &self.buffer[self.consumed..];
            let &first = pending.first()?;
            let cut = match first {
                b'\n' | b'\0' => {
                    self.consumed += 1;
                    continue;
                }
                b'0'..=b'9' => match read_length_prefix(pending) {
                    LengthPrefix::NeedMore => return None,
                    LengthPrefix::Counted { prefix_len, length } => {
                        self.cut_octet_counted(prefix_len, length)
                    }
                    LengthPrefix::Bad => self.cut_trailer_delimited(true),
                    LengthPrefix::Absent => self.cut_trailer_delimited(self.after_octet_counted),
                },
                b'<' | b'\r' => self.cut_trailer_delimited(false),
                _ => self.cut_trailer_delimited(self.after_octet_counted),
            };
            match cut {
                Cut::NeedMore => return None,
                Cut::Empty => continue,
                Cut::Frame(span, flag) => {
                    self.note_frame(flag);
                    return Some((span, flag));
                }
            }
        }
    }

    /// Drops what is left of an oversize frame; false while more of it is still to come.
    fn discard_pending(&mut self) -> bool {
        let pending = &self.buffer[self.consumed..];
        match self.discard {
            Discard::Nothing => true,
            Discard::Octets(remaining) => {
                let dropped = remaining.min(pending.len());
                self.consumed += dropped;
                if dropped < remaining {
                    self.discard = Discard::Octets(remaining - dropped);
                    return false;
                }
                self.discard = Discard::Nothing;
                true
            }
            Discard::ToTrailer => match find_trailer(pending) {
                Some(trailer) => {
                    self.consumed += trailer + 1;
                    self.discard = Discard::Nothing;
                    true
                }
                None => {
                    self.consumed = self.buffer.len();
                    false
                }
            },
        }
    }

    fn note_frame(&mut self, flag: Option<FrameFlag>) {
        match flag {
            Some(FrameFlag::FramingError) => {
                self.framing_errors += 1;
                self.consecutive_errors += 1;
                if self.consecutive_errors >= HOPELESS_CONSECUTIVE_ERRORS {
                    self.hopeless = true;
                }
            }
            Some(FrameFlag::Truncated) => {
                self.truncated_frames += 1;
                self.consecutive_errors = 0;
            }
            Some(FrameFlag::Incomplete) | None => self.consecutive_errors = 0,
        }
    }

    fn cut_octet_counted(&mut self, prefix_len: usize, length: usize) -> Cut {
        let body_start = self.consumed + prefix_len;
        let available = self.buffer.len() - body_start;
        let kept = length.min(self.max_frame_bytes);
        // Waiting for `kept` bytes, not `length`, keeps the buffer bounded by the
        // maximum even when the peer announces gigabytes.
        if available < kept {
            return Cut::NeedMore;
        }
        self.consumed = body_start + kept;
        self.after_octet_counted = true;
        if kept < length {
            self.discard = Discard::Octets(length - kept);
            return Cut::Frame(body_start..body_start + kept, Some(FrameFlag::Truncated));
        }
        Cut::Frame(body_start..body_start + kept, None)
    }

    /// A frame ended by LF, CRLF or NUL; `resynchronising` flags it as a framing error.
    fn cut_trailer_delimited(&mut self, resynchronising: bool) -> Cut {
        let start = self.consumed;
        let pending = &self.buffer[start..];
        // Two bytes past the maximum: a frame of exactly the maximum may end in CRLF.
        let window = &pending[..pending.len().min(self.max_frame_bytes + 2)];
        let Some(trailer) = find_trailer(window) else {
            if window.len() < self.max_frame_bytes + 2 {
                return Cut::NeedMore;
            }
            if resynchronising {
                // Nothing to resynchronise on within a whole frame's worth of bytes.
                self.hopeless = true;
            }
            self.consumed = start + window.len();
            self.discard = Discard::ToTrailer;
            self.after_octet_counted = false;
            let flag = if resynchronising { FrameFlag::FramingError } else { FrameFlag::Truncated };
            return Cut::Frame(start..start + self.max_frame_bytes, Some(flag));
        };
        self.consumed = start + trailer + 1;
        let mut frame = &window[..trailer];
        if window[trailer] == b'\n' {
            frame = frame.strip_suffix(b"\r").unwrap_or(frame);
        }
        if frame.is_empty() {
            return Cut::Empty;
        }
        self.after_octet_counted = false;
        let kept = frame.len().min(self.max_frame_bytes);
        let flag = if resynchronising {
            Some(FrameFlag::FramingError)
        } else if kept < frame.len() {
            Some(FrameFlag::Truncated)
        } else {
            None
        };
        Cut::Frame(start..start + kept, flag)
    }

    /// Everything still buffered, as the body of the frame the stream ended in.
    fn incomplete_tail(&mut self) -> Option<Range<usize>> {
        let start = self.consumed;
        let end = self.buffer.len();
        self.consumed = end;
        self.after_octet_counted = false;
        if self.discard != Discard::Nothing {
            self.discard = Discard::Nothing;
            return None;
        }
        if start == end {
            return None;
        }
        let body_start = match read_length_prefix(&self.buffer[start..end]) {
            LengthPrefix::Counted { prefix_len, .. } => start + prefix_len,
            LengthPrefix::NeedMore | LengthPrefix::Absent | LengthPrefix::Bad => start,
        };
        let body_end = end.min(body_start + self.max_frame_bytes);
        self.note_frame(Some(FrameFlag::Incomplete));
        Some(body_start..body_end)
    }
}

fn find_trailer(bytes: &[u8]) -> Option<usize> {
    memchr::memchr2(b'\n', b'\0', bytes)
}

fn read_length_prefix(pending: &[u8]) -> LengthPrefix {
    let digits = pending.iter().take(MAX_SCANNED_DIGITS + 1).take_while(|byte| byte.is_ascii_digit()).count();
    if digits == 0 || digits > MAX_SCANNED_DIGITS {
        return LengthPrefix::Absent;
    }
    match pending.get(digits) {
        None => return LengthPrefix::NeedMore,
        Some(b' ') => {}
        Some(_) => return LengthPrefix::Absent,
    }
    match pending.get(digits + 1) {
        None => return LengthPrefix::NeedMore,
        Some(b'<') => {}
        Some(_) => return LengthPrefix::Absent,
    }
    // RFC 6587 MSG-LEN is NONZERO-DIGIT *DIGIT.
    if digits > MAX_LENGTH_DIGITS || pending[0] == b'0' {
        return LengthPrefix::Bad;
    }
    let length = pending[..digits].iter().fold(0u64, |length, digit| length * 10 + u64::from(digit - b'0'));
    match usize::try_from(length) {
        Ok(length) => LengthPrefix::Counted { prefix_len: digits + 1, length },
        Err(_) => LengthPrefix::Bad,
    }
}
