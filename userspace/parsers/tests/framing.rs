//! framing conformance tests.
//!
//! Every case is run fed whole, fed byte by byte and split in two at every position:
//! the frames must not depend on how the stream was cut into reads.

use crate::corpus::check_corpus;

use killkrill_parsers::framing::{Frame, FrameFlag, HOPELESS_CONSECUTIVE_ERRORS, SyslogFramer};
use killkrill_parsers::json::frame_to_json;
use serde_json::{Value, json};

const TRUNCATED: Option<FrameFlag> = Some(FrameFlag::Truncated);
const INCOMPLETE: Option<FrameFlag> = Some(FrameFlag::Incomplete);
const FRAMING_ERROR: Option<FrameFlag> = Some(FrameFlag::FramingError);

/// What a whole stream comes out as.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    frames: Vec<(Vec<u8>, Option<FrameFlag>)>,
    framing_errors: u64,
    truncated_frames: u64,
    hopeless: bool,
}

fn collect(framer: &mut SyslogFramer, frames: &mut Vec<(Vec<u8>, Option<FrameFlag>)>) {
    while let Some(Frame { bytes, flag }) = framer.next_frame() {
        frames.push((bytes.to_vec(), flag));
    }
}

fn run_in_reads<'a>(max_frame_bytes: usize, reads: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut framer = SyslogFramer::new(max_frame_bytes);
    let mut frames = Vec::new();
    for read in reads {
        framer.feed(read);
        collect(&mut framer, &mut frames);
    }
    while let Some(Frame { bytes, flag }) = framer.finish() {
        frames.push((bytes.to_vec(), flag));
    }
    Outcome {
        frames,
        framing_errors: framer.framing_errors(),
        truncated_frames: framer.truncated_frames(),
        hopeless: framer.is_hopeless(),
    }
}

/// Runs `stream` whole, byte by byte and split at every position; all must agree.
fn run_every_split(max_frame_bytes: usize, stream: &[u8]) -> Outcome {
    let whole = run_in_reads(max_frame_bytes, [stream]);
    let byte_by_byte = run_in_reads(max_frame_bytes, stream.chunks(1));
    assert_eq!(byte_by_byte, whole, "fed byte by byte: {:?}", String::from_utf8_lossy(stream));
    for split in 0..=stream.len() {
        let (head, tail) = stream.split_at(split);
        let two_reads = run_in_reads(max_frame_bytes, [head, tail]);
        assert_eq!(two_reads, whole, "split at {split}: {:?}", String::from_utf8_lossy(stream));
    }
    whole
}

struct Case {
    name: &'static str,
    max_frame_bytes: usize,
    stream: &'static [u8],
    frames: &'static [(&'static [u8], Option<FrameFlag>)],
    framing_errors: u64,
}

const CASES: &[Case] = &[
    Case {
        name: "octet_counted_frames_are_cut_by_their_length",
        max_frame_bytes: 1024,
        stream: b"11 <13>1 hello12 <14>1 world!",
        frames: &[(b"<13>1 hello", None), (b"<14>1 world!", None)],
        framing_errors: 0,
    },
    Case {
        name: "octet_counted_frame_may_contain_newlines",
        max_frame_bytes: 1024,
        stream: b"15 <13>line1\nline2",
        frames: &[(b"<13>line1\nline2", None)],
        framing_errors: 0,
    },
    Case {
        name: "lf_ends_a_frame",
        max_frame_bytes: 1024,
        stream: b"<13>one\n<13>two\n",
        frames: &[(b"<13>one", None), (b"<13>two", None)],
        framing_errors: 0,
    },
    Case {
        name: "crlf_ends_a_frame_without_its_cr",
        max_frame_bytes: 1024,
        stream: b"<13>one\r\n<13>two\r\n",
        frames: &[(b"<13>one", None), (b"<13>two", None)],
        framing_errors: 0,
    },
    Case {
        name: "nul_ends_a_frame",
        max_frame_bytes: 1024,
        stream: b"<13>one\0<13>two\0",
        frames: &[(b"<13>one", None), (b"<13>two", None)],
        framing_errors: 0,
    },
    Case {
        name: "a_cr_not_before_lf_is_kept",
        max_frame_bytes: 1024,
        stream: b"<13>a\rb\n<13>c\r\0",
        frames: &[(b"<13>a\rb", None), (b"<13>c\r", None)],
        framing_errors: 0,
    },
    Case {
        name: "framings_mix_frame_by_frame_in_one_stream",
        max_frame_bytes: 1024,
        stream: b"6 <1>abc<2>lf\n6 <3>def<4>crlf\r\n<5>nul\x006 <6>ghi",
        frames: &[
            (b"<1>abc", None),
            (b"<2>lf", None),
            (b"<3>def", None),
            (b"<4>crlf", None),
            (b"<5>nul", None),
            (b"<6>ghi", None),
        ],
        framing_errors: 0,
    },
    Case {
        name: "trailer_after_octet_counted_frame_is_ignored",
        max_frame_bytes: 1024,
        stream: b"6 <1>abc\n6 <2>def\r\n",
        frames: &[(b"<1>abc", None), (b"<2>def", None)],
        framing_errors: 0,
    },
    Case {
        name: "empty_lines_yield_no_frame",
        max_frame_bytes: 1024,
        stream: b"\n\r\n\0\n<13>x\n\n",
        frames: &[(b"<13>x", None)],
        framing_errors: 0,
    },
    Case {
        name: "line_starting_with_digits_and_space_without_angle_is_a_line",
        max_frame_bytes: 1024,
        stream: b"123 abc\n",
        frames: &[(b"123 abc", None)],
        framing_errors: 0,
    },
    Case {
        name: "line_starting_with_digits_is_a_line",
        max_frame_bytes: 1024,
        stream: b"2024-01-02 service started\n42\n",
        frames: &[(b"2024-01-02 service started", None), (b"42", None)],
        framing_errors: 0,
    },
    Case {
        name: "line_of_many_digits_is_a_line",
        max_frame_bytes: 1024,
        stream: b"1234567890123456789012345 <x\n",
        frames: &[(b"1234567890123456789012345 <x", None)],
        framing_errors: 0,
    },
    Case {
        name: "line_without_priority_is_a_line",
        max_frame_bytes: 1024,
        stream: b"plain text\n",
        frames: &[(b"plain text", None)],
        framing_errors: 0,
    },
    Case {
        name: "oversize_line_is_truncated_and_its_rest_skipped",
        max_frame_bytes: 8,
        stream: b"<13>abcdefghijkl\n<13>ok\n",
        frames: &[(b"<13>abcd", TRUNCATED), (b"<13>ok", None)],
        framing_errors: 0,
    },
    Case {
        name: "line_of_exactly_the_maximum_is_whole_even_with_crlf",
        max_frame_bytes: 8,
        stream: b"<13>abcd\r\n<13>abcd\n",
        frames: &[(b"<13>abcd", None), (b"<13>abcd", None)],
        framing_errors: 0,
    },
    Case {
        name: "line_one_past_the_maximum_is_truncated",
        max_frame_bytes: 8,
        stream: b"<13>abcde\n<13>f\n",
        frames: &[(b"<13>abcd", TRUNCATED), (b"<13>f", None)],
        framing_errors: 0,
    },
    Case {
        name: "oversize_octet_counted_frame_is_truncated_and_its_rest_skipped",
        max_frame_bytes: 8,
        stream: b"16 <13>abcdefghijkl5 <1>ok",
        frames: &[(b"<13>abcd", TRUNCATED), (b"<1>ok", None)],
        framing_errors: 0,
    },
    Case {
        name: "oversize_octet_counted_frame_rest_may_hold_trailers",
        max_frame_bytes: 4,
        stream: b"10 <1>a\nb\nc\n\n5 <2>xy",
        frames: &[(b"<1>a", TRUNCATED), (b"<2>x", TRUNCATED)],
        framing_errors: 0,
    },
    Case {
        name: "too_short_length_is_a_framing_error_then_recovers",
        max_frame_bytes: 1024,
        stream: b"5 <13>1 hello world\n<14>next\n",
        frames: &[(b"<13>1", None), (b" hello world", FRAMING_ERROR), (b"<14>next", None)],
        framing_errors: 1,
    },
    Case {
        name: "too_long_length_swallows_the_next_frame_then_recovers",
        max_frame_bytes: 1024,
        stream: b"9 <1>abc6 <2>def garbage\n<3>ok\n",
        frames: &[(b"<1>abc6 <", None), (b"2>def garbage", FRAMING_ERROR), (b"<3>ok", None)],
        framing_errors: 1,
    },
    Case {
        name: "zero_length_is_a_framing_error",
        max_frame_bytes: 1024,
        stream: b"0 <13>x\n<13>y\n",
        frames: &[(b"0 <13>x", FRAMING_ERROR), (b"<13>y", None)],
        framing_errors: 1,
    },
    Case {
        name: "leading_zero_length_is_a_framing_error",
        max_frame_bytes: 1024,
        stream: b"05 <1>a\n",
        frames: &[(b"05 <1>a", FRAMING_ERROR)],
        framing_errors: 1,
    },
    Case {
        name: "eleven_digit_length_is_a_framing_error",
        max_frame_bytes: 1024,
        stream: b"12345678901 <1>a\n<2>b\n",
        frames: &[(b"12345678901 <1>a", FRAMING_ERROR), (b"<2>b", None)],
        framing_errors: 1,
    },
    Case {
        name: "stream_ending_inside_octet_counted_frame_yields_incomplete_body",
        max_frame_bytes: 1024,
        stream: b"6 <1>abc20 <2>partial",
        frames: &[(b"<1>abc", None), (b"<2>partial", INCOMPLETE)],
        framing_errors: 0,
    },
    Case {
        name: "stream_ending_inside_a_line_yields_incomplete_line",
        max_frame_bytes: 1024,
        stream: b"<1>whole\n<2>partial",
        frames: &[(b"<1>whole", None), (b"<2>partial", INCOMPLETE)],
        framing_errors: 0,
    },
    Case {
        name: "stream_ending_in_a_length_prefix_yields_it_incomplete",
        max_frame_bytes: 1024,
        stream: b"<1>whole\n12",
        frames: &[(b"<1>whole", None), (b"12", INCOMPLETE)],
        framing_errors: 0,
    },
    Case {
        name: "stream_ending_inside_skipped_rest_yields_nothing_more",
        max_frame_bytes: 4,
        stream: b"<1>abcdefgh",
        frames: &[(b"<1>a", TRUNCATED)],
        framing_errors: 0,
    },
    Case {
        name: "empty_stream_yields_nothing",
        max_frame_bytes: 1024,
        stream: b"",
        frames: &[],
        framing_errors: 0,
    },
];

#[test]
fn conformance_cases_hold_for_every_way_of_cutting_the_stream() {
    for case in CASES {
        let outcome = run_every_split(case.max_frame_bytes, case.stream);
        let expected: Vec<(Vec<u8>, Option<FrameFlag>)> =
            case.frames.iter().map(|(bytes, flag)| (bytes.to_vec(), *flag)).collect();
        assert_eq!(outcome.frames, expected, "{}", case.name);
        assert_eq!(outcome.framing_errors, case.framing_errors, "{}", case.name);
        let truncated = case.frames.iter().filter(|(_, flag)| *flag == TRUNCATED).count();
        assert_eq!(outcome.truncated_frames, truncated as u64, "{}", case.name);
        assert!(!outcome.hopeless, "{}", case.name);
    }
}

#[test]
fn frame_is_returned_as_soon_as_its_last_byte_arrives() {
    let mut framer = SyslogFramer::new(1024);
    framer.feed(b"6 <1>ab");
    assert_eq!(framer.next_frame(), None);
    framer.feed(b"c<2>x");
    assert_eq!(framer.next_frame(), Some(Frame { bytes: b"<1>abc", flag: None }));
    assert_eq!(framer.next_frame(), None);
    assert_eq!(framer.buffered_len(), 4);
    framer.feed(b"\n");
    assert_eq!(framer.next_frame(), Some(Frame { bytes: b"<2>x", flag: None }));
    assert_eq!(framer.buffered_len(), 0);
}

#[test]
fn buffer_stays_bounded_while_peer_sends_an_endless_line() {
    let max_frame_bytes = 256;
    let mut framer = SyslogFramer::new(max_frame_bytes);
    let read = [b'x'; 4096];
    let mut frames = Vec::new();
    for _ in 0..1000 {
        framer.feed(&read);
        collect(&mut framer, &mut frames);
        assert!(framer.buffered_len() <= max_frame_bytes + 2, "buffered {}", framer.buffered_len());
    }
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].1, TRUNCATED);
    framer.feed(b"\n<1>after\n");
    collect(&mut framer, &mut frames);
    assert_eq!(frames.last(), Some(&(b"<1>after".to_vec(), None)));
}

#[test]
fn buffer_stays_bounded_while_peer_announces_a_huge_octet_count() {
    let max_frame_bytes = 256;
    let mut framer = SyslogFramer::new(max_frame_bytes);
    framer.feed(b"9999999999 <1>");
    let read = [b'x'; 4096];
    let mut frames = Vec::new();
    for _ in 0..1000 {
        framer.feed(&read);
        collect(&mut framer, &mut frames);
        assert!(framer.buffered_len() <= max_frame_bytes + 12, "buffered {}", framer.buffered_len());
    }
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0.len(), max_frame_bytes);
    assert_eq!(frames[0].1, TRUNCATED);
    assert!(!framer.is_hopeless());
}

#[test]
fn resynchronisation_without_any_trailer_is_hopeless() {
    let max_frame_bytes = 64;
    let mut framer = SyslogFramer::new(max_frame_bytes);
    let mut frames = Vec::new();
    framer.feed(b"3 <1>abcdefgh");
    framer.feed(&[b'y'; 200]);
    collect(&mut framer, &mut frames);
    assert_eq!(frames[0], (b"<1>".to_vec(), None));
    assert_eq!(frames[1].1, FRAMING_ERROR);
    assert_eq!(frames[1].0.len(), max_frame_bytes);
    assert!(framer.is_hopeless());
    assert_eq!(framer.framing_errors(), 1);
}

#[test]
fn consecutive_framing_errors_make_the_stream_hopeless() {
    let mut framer = SyslogFramer::new(1024);
    let mut frames = Vec::new();
    for round in 1..=HOPELESS_CONSECUTIVE_ERRORS {
        framer.feed(b"0 <1>bad\n");
        collect(&mut framer, &mut frames);
        assert_eq!(framer.is_hopeless(), round == HOPELESS_CONSECUTIVE_ERRORS, "after {round} errors");
    }
    framer.feed(b"<1>good\n");
    collect(&mut framer, &mut frames);
    assert!(framer.is_hopeless(), "hopeless is sticky");
    assert_eq!(frames.last(), Some(&(b"<1>good".to_vec(), None)), "the framer keeps framing");
}

#[test]
fn a_clean_frame_between_framing_errors_resets_the_hopeless_count() {
    let mut framer = SyslogFramer::new(1024);
    let mut frames = Vec::new();
    for _ in 0..HOPELESS_CONSECUTIVE_ERRORS * 2 {
        framer.feed(b"0 <1>bad\n<1>good\n");
        collect(&mut framer, &mut frames);
    }
    assert!(!framer.is_hopeless());
    assert_eq!(framer.framing_errors(), u64::from(HOPELESS_CONSECUTIVE_ERRORS) * 2);
}

#[test]
fn many_frames_in_one_large_feed_come_out_whole() {
    let mut stream = Vec::new();
    for index in 0..1000 {
        let message = format!("<134>1 2024-01-01T00:00:00Z host app {index} - - message {index}");
        if index % 2 == 0 {
            stream.extend_from_slice(format!("{} {message}", message.len()).as_bytes());
        } else {
            stream.extend_from_slice(message.as_bytes());
            stream.push(b'\n');
        }
    }
    let outcome = run_in_reads(1024, stream.chunks(4096));
    assert_eq!(outcome.frames.len(), 1000);
    for (index, (bytes, flag)) in outcome.frames.iter().enumerate() {
        assert_eq!(*flag, None);
        assert!(bytes.ends_with(format!("message {index}").as_bytes()));
    }
}

#[test]
fn frame_json_has_base64_message_and_flag_name() {
    let frame = Frame { bytes: b"<13>hi", flag: None };
    assert_eq!(frame_to_json(&frame), json!({"message_b64": "PDEzPmhp", "flag": null}));
    for (flag, name) in [
        (FrameFlag::Truncated, "truncated"),
        (FrameFlag::Incomplete, "incomplete"),
        (FrameFlag::FramingError, "framing_error"),
    ] {
        let frame = Frame { bytes: b"", flag: Some(flag) };
        assert_eq!(frame_to_json(&frame), json!({"message_b64": "", "flag": name}));
    }
}

/// Each `NAME.stream` in tests/data/framing has a `NAME.json`:
/// `{"max_frame_bytes", "frames": [frame JSON...], "framing_errors", "hopeless"}`.
#[test]
fn corpus_streams_frame_as_recorded() {
    check_corpus("framing", "stream", |stream, expected| {
        let max_frame_bytes = expected["max_frame_bytes"].as_u64().expect("max_frame_bytes") as usize;
        let outcome = run_every_split(max_frame_bytes, stream);
        let frames: Vec<Value> =
            outcome.frames.iter().map(|(bytes, flag)| frame_to_json(&Frame { bytes, flag: *flag })).collect();
        json!({
            "max_frame_bytes": max_frame_bytes,
            "frames": frames,
            "framing_errors": outcome.framing_errors,
            "hopeless": outcome.hopeless,
        })
    });
}
