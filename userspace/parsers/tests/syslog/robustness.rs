//! Properties that hold for any input: no panic, and every borrowed field points into the
//! frame (the data plane turns fields into offsets by pointer arithmetic).

use killkrill_parsers::json::syslog_to_json;
use killkrill_parsers::syslog::{ParseOptions, SyslogMessage, parse_syslog};

use super::corpus::load_corpus;
use super::utc_options;

/// Panics unless `part` lies inside `frame` (an empty part may sit at its very end).
fn assert_inside(frame: &[u8], part: &[u8], what: &str) {
    let frame_start = frame.as_ptr() as usize;
    let part_start = part.as_ptr() as usize;
    let inside = part_start >= frame_start && part_start + part.len() <= frame_start + frame.len();
    assert!(inside, "{what} is not a sub-slice of the frame {:?}", String::from_utf8_lossy(frame));
}

fn assert_borrows_only_from(frame: &[u8], parsed: &SyslogMessage<'_>) {
    assert_inside(frame, parsed.message, "message");
    let fields = [
        ("hostname", parsed.hostname),
        ("app_name", parsed.app_name),
        ("procid", parsed.procid),
        ("msgid", parsed.msgid),
    ];
    for (what, field) in fields {
        if let Some(text) = field {
            assert_inside(frame, text.as_bytes(), what);
        }
    }
    if let Some(data) = parsed.structured_data {
        assert_inside(frame, data.raw.as_bytes(), "structured data");
        for element in data.elements() {
            assert_inside(frame, element.id.as_bytes(), "SD-ID");
            for (name, value) in element.params() {
                assert_inside(frame, name.as_bytes(), "PARAM-NAME");
                assert_inside(frame, value.raw.as_bytes(), "PARAM-VALUE");
            }
        }
    }
}

/// Parses and renders, checking the borrow invariant; any panic fails the calling test.
fn exercise(frame: &[u8], options: &ParseOptions) {
    let parsed = parse_syslog(frame, options);
    assert_borrows_only_from(frame, &parsed);
    let _ = syslog_to_json(frame, &parsed);
}

#[test]
fn borrowed_fields_lie_inside_the_frame_for_every_corpus_case() {
    for case in load_corpus() {
        // A copy on the heap: a frame that happened to equal a constant must not hide a
        // field borrowed from that constant instead.
        let frame = case.frame.clone();
        exercise(&frame, &case.options);
    }
}

#[test]
fn empty_fields_still_point_into_the_frame() {
    for frame in
        [&b"<13>"[..], b"<13>1 - - - - - -", b"<13>Jun 14 23:00:00 nas app:", b"\n", b"<13>1 - h a 1 M "]
    {
        let frame = frame.to_vec();
        let parsed = parse_syslog(&frame, &utc_options());
        assert_borrows_only_from(&frame, &parsed);
    }
}

#[test]
fn every_prefix_and_single_byte_change_of_the_corpus_parses_without_panic() {
    let options = utc_options();
    for case in load_corpus() {
        let frame = &case.frame;
        for end in 0..=frame.len() {
            exercise(frame.get(..end).expect("prefix"), &options);
        }
        let mut mutated = frame.clone();
        for index in 0..mutated.len() {
            let original = mutated[index];
            for replacement in [b' ', b'[', b']', b'"', b'\\', b'=', b'<', b'\0', b'\xFF', b'9', b'\t'] {
                mutated[index] = replacement;
                exercise(&mutated, &options);
            }
            mutated[index] = original;
        }
    }
}

/// xorshift64: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(bound).expect("bound fits")).expect("index fits")
    }
}

#[test]
fn random_syslog_shaped_frames_parse_without_panic() {
    const PIECES: &[&[u8]] = &[
        b"<",
        b">",
        b"<13>",
        b"<999>",
        b"1 ",
        b" ",
        b"-",
        b"[",
        b"]",
        b"\"",
        b"\\",
        b"=",
        b"x@1",
        b"a",
        b"2024-02-29T10:00:00.5+01:00",
        b"2023-02-29T",
        b"9999-12-31T23:59:59Z",
        b"Feb",
        b" 29 ",
        b"10:00:00",
        b".123456789",
        b"2024",
        b"\xEF\xBB\xBF",
        b"\xFF",
        b"\0",
        b"\n",
        b":",
        b"%ASA-6-302013:",
        b"123: ",
        b"*",
        b"date=",
        b"time=",
        b"devname=",
        b"MSWinEventLog\t",
        b"\t",
        b"[42]",
        b"last message repeated ",
        b" UTC",
        b"+",
        b"Z",
        b"T",
    ];
    let options = utc_options();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut frame = Vec::new();
    for _ in 0..50_000 {
        frame.clear();
        for _ in 0..=rng.below(24) {
            frame.extend_from_slice(PIECES[rng.below(PIECES.len())]);
        }
        exercise(&frame, &options);
    }
}
