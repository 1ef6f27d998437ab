//! Realistic message generation, deterministic from a seed.
//!
//! Each message's content is drawn from a generator seeded by `(seed, seq)`, so message
//! `seq` is the same whichever sender thread writes it. Every syslog message carries a
//! marker token (see [`marker`]) and every metric line carries its seq and send time, so
//! loss and latency can be measured from what a receiver stored.

pub mod marker;
mod metrics;
mod pools;
mod rfc3164;
mod rfc5424;

use std::fmt;
use std::str::FromStr;

pub use marker::{Marker, parse_marker, write_marker};

use crate::prng::SplitMix64;

/// Which kind of traffic a [`MessageMix`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MixKind {
    /// RFC 5424 syslog with structured data on most messages.
    Rfc5424,
    /// BSD (RFC 3164) syslog in several vendors' shapes.
    Rfc3164,
    /// Half RFC 5424, half the RFC 3164 vendor mix.
    Mixed,
    /// DogStatsD lines (statsd with `#tags`).
    Statsd,
    /// Influx line protocol.
    Influx,
}

impl MixKind {
    pub const NAMES: &'static str = "rfc5424, rfc3164, mixed, statsd, influx";

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rfc5424 => "rfc5424",
            Self::Rfc3164 => "rfc3164",
            Self::Mixed => "mixed",
            Self::Statsd => "statsd",
            Self::Influx => "influx",
        }
    }

    /// True for the kinds whose messages carry a `kk=` marker.
    pub fn is_syslog(self) -> bool {
        matches!(self, Self::Rfc5424 | Self::Rfc3164 | Self::Mixed)
    }
}

impl fmt::Display for MixKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MixKind {
    type Err = crate::Error;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "rfc5424" => Ok(Self::Rfc5424),
            "rfc3164" => Ok(Self::Rfc3164),
            "mixed" => Ok(Self::Mixed),
            "statsd" => Ok(Self::Statsd),
            "influx" => Ok(Self::Influx),
            _ => {
                Err(crate::Error::UnknownName { what: "mix", value: value.to_owned(), expected: Self::NAMES })
            }
        }
    }
}

/// Smallest and largest syslog message the mix writes, in bytes.
pub const MIN_SYSLOG_BYTES: usize = 80;
pub const MAX_SYSLOG_BYTES: usize = 1500;

/// Writes one message per call; holds no per-message state.
#[derive(Debug, Clone)]
pub struct MessageMix {
    kind: MixKind,
    seed: u64,
    run_id: u32,
}

impl MessageMix {
    pub fn new(kind: MixKind, seed: u64, run_id: u32) -> Self {
        Self { kind, seed, run_id }
    }

    pub fn kind(&self) -> MixKind {
        self.kind
    }

    pub fn run_id(&self) -> u32 {
        self.run_id
    }

    /// Appends message `seq` (no trailing newline) to `out`. Allocates nothing beyond the
    /// growth of `out`, so a sender reusing its buffer allocates nothing per message.
    /// Writes messages `seqs`, each followed by a newline (no message contains one), with
    /// send time zero, as the store benchmark prepares them.
    pub fn write_lines(
        &mut self,
        seqs: std::ops::Range<u64>,
        out: &mut impl std::io::Write,
    ) -> std::io::Result<()> {
        let mut line = Vec::with_capacity(MAX_SYSLOG_BYTES + 1);
        for seq in seqs {
            line.clear();
            self.write_message(seq, 0, &mut line);
            line.push(b'\n');
            out.write_all(&line)?;
        }
        Ok(())
    }

    pub fn write_message(&mut self, seq: u64, send_unix_nanos: u64, out: &mut Vec<u8>) {
        let mut draw = MessageDraw {
            rng: SplitMix64::for_item(self.seed, seq),
            marker: Marker { run_id: self.run_id, seq, send_unix_nanos },
            start: out.len(),
            target_len: 0,
        };
        match self.kind {
            MixKind::Rfc5424 => self.write_syslog(&mut draw, SyslogFormat::Rfc5424, out),
            MixKind::Rfc3164 => self.write_syslog(&mut draw, SyslogFormat::Rfc3164, out),
            MixKind::Mixed => {
                let format = if draw.rng.percent(50) { SyslogFormat::Rfc5424 } else { SyslogFormat::Rfc3164 };
                self.write_syslog(&mut draw, format, out);
            }
            MixKind::Statsd => metrics::write_statsd(&mut draw, out),
            MixKind::Influx => metrics::write_influx(&mut draw, out),
        }
    }

    fn write_syslog(&self, draw: &mut MessageDraw, format: SyslogFormat, out: &mut Vec<u8>) {
        draw.target_len = draw_syslog_size(&mut draw.rng);
        match format {
            SyslogFormat::Rfc5424 => rfc5424::write(draw, out),
            SyslogFormat::Rfc3164 => rfc3164::write(draw, out),
        }
    }
}

#[derive(Clone, Copy)]
enum SyslogFormat {
    Rfc5424,
    Rfc3164,
}

/// The state for writing one message: its generator, marker and drawn size.
pub(crate) struct MessageDraw {
    pub rng: SplitMix64,
    pub marker: Marker,
    /// Where this message starts in the output buffer.
    pub start: usize,
    /// The drawn total size; writers pad the body up to it.
    pub target_len: usize,
}

impl MessageDraw {
    /// Appends plausible words until the message is `target_len - reserve` bytes long, so a
    /// closing suffix of `reserve` bytes lands the message exactly on the drawn size. Does
    /// nothing when the message is already that long.
    pub fn pad_body(&mut self, out: &mut Vec<u8>, reserve: usize) {
        let end = self.start + self.target_len.saturating_sub(reserve);
        while out.len() < end {
            let room = end - out.len();
            let word = self.rng.pick(pools::FILLER_WORDS).as_bytes();
            out.push(b' ');
            let take = word.len().min(room - 1);
            out.extend_from_slice(&word[..take]);
        }
    }
}

/// Sizes from a shape seen in production syslog: mostly short lines, a long tail of
/// verbose ones (stack traces, firewall session records), capped at a typical MTU.
fn draw_syslog_size(rng: &mut SplitMix64) -> usize {
    let bucket = rng.below(100);
    let (low, high) = match bucket {
        0..8 => (MIN_SYSLOG_BYTES, 150),
        8..80 => (150, 400),
        80..97 => (400, 1000),
        _ => (1000, MAX_SYSLOG_BYTES),
    };
    rng.between(low as u64, high as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(kind: MixKind, seed: u64, count: u64) -> Vec<Vec<u8>> {
        let mut mix = MessageMix::new(kind, seed, 9);
        (0..count)
            .map(|seq| {
                let mut out = Vec::new();
                mix.write_message(seq, 1_700_000_000_123_456_789 + seq * 1000, &mut out);
                out
            })
            .collect()
    }

    const ALL: [MixKind; 5] =
        [MixKind::Rfc5424, MixKind::Rfc3164, MixKind::Mixed, MixKind::Statsd, MixKind::Influx];

    #[test]
    fn same_seed_writes_same_messages() {
        for kind in ALL {
            assert_eq!(messages(kind, 42, 200), messages(kind, 42, 200), "{kind}");
            assert_ne!(messages(kind, 42, 200), messages(kind, 43, 200), "{kind}");
        }
    }

    #[test]
    fn message_content_depends_on_seq_not_on_call_order() {
        let mut mix = MessageMix::new(MixKind::Mixed, 5, 1);
        let (mut forward, mut alone) = (Vec::new(), Vec::new());
        for seq in 0..10 {
            forward.clear();
            mix.write_message(seq, 1, &mut forward);
        }
        mix.write_message(9, 1, &mut alone);
        assert_eq!(forward, alone);
    }

    #[test]
    fn syslog_sizes_stay_within_bounds_and_mostly_short() {
        for kind in [MixKind::Rfc5424, MixKind::Rfc3164, MixKind::Mixed] {
            let all = messages(kind, 3, 5000);
            for m in &all {
                assert!((MIN_SYSLOG_BYTES..=MAX_SYSLOG_BYTES).contains(&m.len()), "{kind}: {}", m.len());
                assert!(!m.contains(&b'\n'), "{kind}: {}", String::from_utf8_lossy(m));
            }
            let typical = all.iter().filter(|m| (150..=450).contains(&m.len())).count();
            assert!(typical * 2 > all.len(), "{kind}: only {typical} of {} typical", all.len());
        }
    }

    #[test]
    fn written_lines_are_the_messages_in_seq_order() {
        let mut mix = MessageMix::new(MixKind::Mixed, 7, 1);
        let mut text = Vec::new();
        mix.write_lines(100..600, &mut text).unwrap();
        assert_eq!(text.last(), Some(&b'\n'));
        let lines: Vec<&[u8]> = text[..text.len() - 1].split(|b| *b == b'\n').collect();
        assert_eq!(lines.len(), 500);
        for (line, seq) in lines.iter().zip(100u64..) {
            let mut alone = Vec::new();
            mix.write_message(seq, 0, &mut alone);
            assert_eq!(*line, alone.as_slice());
            assert_eq!(parse_marker(line).map(|m| m.seq), Some(seq));
        }
    }

    #[test]
    fn every_syslog_message_carries_its_marker() {
        for kind in [MixKind::Rfc5424, MixKind::Rfc3164, MixKind::Mixed] {
            for (seq, m) in messages(kind, 11, 3000).iter().enumerate() {
                let marker = parse_marker(m).unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(m)));
                assert_eq!(marker.run_id, 9);
                assert_eq!(marker.seq, seq as u64);
                assert_eq!(marker.send_unix_nanos, 1_700_000_000_123_456_789 + seq as u64 * 1000);
            }
        }
    }

    #[test]
    fn rfc5424_messages_look_like_rfc5424() {
        let all = messages(MixKind::Rfc5424, 1, 2000);
        let mut with_sd = 0;
        for m in &all {
            let text = std::str::from_utf8(m).unwrap();
            let close = text.find('>').unwrap();
            let pri: u32 = text[1..close].parse().unwrap();
            assert!(text.starts_with('<') && pri <= 191, "{text}");
            assert!(text[close + 1..].starts_with("1 20"), "{text}");
            // HEADER is seven space-separated fields before SD.
            let fields: Vec<&str> = text[close + 3..].splitn(7, ' ').collect();
            assert_eq!(fields[0].len(), "2023-11-14T22:13:20.123456Z".len(), "{text}");
            assert!(fields[0].ends_with('Z'));
            if fields[5].starts_with('[') {
                with_sd += 1;
            }
        }
        assert!(with_sd * 2 > all.len(), "only {with_sd} messages with structured data");
    }

    #[test]
    fn rfc3164_mix_covers_the_vendor_shapes() {
        let all: Vec<String> =
            messages(MixKind::Rfc3164, 2, 2000).into_iter().map(|m| String::from_utf8(m).unwrap()).collect();
        for needle in [
            "sshd[",
            "%SYS-5-CONFIG_I",
            "%ASA-6-302013",
            "RT_FLOW_SESSION_CREATE",
            "devname=",
            "Microsoft-Windows-",
        ] {
            assert!(all.iter().any(|m| m.contains(needle)), "no message contains {needle}");
        }
        assert!(all.iter().all(|m| m.starts_with('<')));
    }

    #[test]
    fn metric_lines_carry_seq_and_time() {
        let statsd = messages(MixKind::Statsd, 1, 100);
        for (seq, line) in statsd.iter().enumerate() {
            let text = std::str::from_utf8(line).unwrap();
            assert!(text.contains(&format!("kkseq:{seq},")), "{text}");
            assert!(text.contains('|') && text.contains("|#"), "{text}");
        }
        for (seq, line) in messages(MixKind::Influx, 1, 100).iter().enumerate() {
            let text = std::str::from_utf8(line).unwrap();
            assert!(text.contains(&format!("kkseq={seq}u")), "{text}");
            let timestamp = text.rsplit(' ').next().unwrap();
            assert_eq!(timestamp, (1_700_000_000_123_456_789 + seq as u64 * 1000).to_string());
        }
    }

    /// Counts allocations made by the current thread, so the no-allocation rule is tested
    /// rather than promised.
    mod counting_allocator {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            pub static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
        }

        pub struct Counting;

        // SAFETY: every call is forwarded to the system allocator unchanged.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
                // SAFETY: the caller's contract for `layout` is passed on.
                unsafe { System.alloc(layout) }
            }

            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                // SAFETY: `ptr` came from `System.alloc` above with this layout.
                unsafe { System.dealloc(ptr, layout) }
            }
        }

        #[global_allocator]
        static GLOBAL: Counting = Counting;
    }

    #[test]
    fn writing_messages_allocates_nothing_beyond_the_buffer() {
        for kind in ALL {
            let mut mix = MessageMix::new(kind, 8, 1);
            let mut out = Vec::with_capacity(64 * 1024);
            let before = counting_allocator::ALLOCATIONS.with(|n| n.get());
            for seq in 0..20 {
                mix.write_message(seq, 1_700_000_000_000_000_000, &mut out);
            }
            let after = counting_allocator::ALLOCATIONS.with(|n| n.get());
            assert_eq!(after - before, 0, "{kind} allocated");
        }
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in ALL {
            assert_eq!(kind.to_string().parse::<MixKind>().unwrap(), kind);
        }
        assert!("json".parse::<MixKind>().is_err());
    }
}
