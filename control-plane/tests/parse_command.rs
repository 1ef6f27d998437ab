//! `killkrill parse` through the real binary: one JSON object per input line, in order.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::harness::BINARY;

fn parse(args: &[&str], input: &[u8]) -> (i32, Vec<Value>) {
    let mut child = Command::new(BINARY)
        .arg("parse")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    let objects = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    (output.status.code().unwrap_or(-1), objects)
}

#[test]
fn syslog_lines_give_one_object_each_in_order() {
    let input = b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - 'su root' failed\n\
                  <13>Dec 31 23:59:59 host app[7]: late\n\
                  no pri here\n";
    let (code, objects) = parse(&["--format", "syslog", "--received-at", "2025-01-01T00:00:10Z"], input);
    assert_eq!(code, 0);
    assert_eq!(objects.len(), 3);
    assert_eq!(objects[0]["timestamp"], "2003-10-11T22:14:15.003Z");
    assert_eq!(objects[0]["hostname"], "mymachine.example.com");
    assert_eq!(objects[0]["procid"], Value::Null);
    assert_eq!(objects[0]["version"], 1);
    assert_eq!(objects[1]["timestamp"], "2024-12-31T23:59:59Z", "December read in January is last year");
    assert_eq!(objects[1]["procid"], "7");
    assert!(objects[2]["parse_error"].is_string());
    assert_eq!(objects[2]["facility"], 1);
    assert_eq!(objects[2]["severity"], 5);
}

#[test]
fn base64_lines_may_carry_newlines_and_a_bad_line_is_reported_in_place() {
    use base64::Engine as _;
    let datagram = b"<14>Jan  2 03:04:05 host app: two\nlines";
    let mut input = base64::engine::general_purpose::STANDARD.encode(datagram).into_bytes();
    input.extend_from_slice(b"\n%%%\n");
    let (code, objects) = parse(&["--format", "syslog", "--b64", "--timezone", "Europe/Paris"], &input);
    assert_eq!(code, 1, "an undecodable line makes the exit status non-zero");
    assert_eq!(objects.len(), 2);
    assert_eq!(objects[0]["message"], "two\nlines");
    assert!(objects[0]["timestamp"].as_str().unwrap().ends_with("T02:04:05Z"), "{}", objects[0]);
    assert!(objects[1]["error"].is_string());
}

#[test]
fn statsd_and_influx_datagrams_give_items() {
    let (code, objects) = parse(&["--format", "statsd"], b"a:1:2|h|#k:v\nnope\n");
    assert_eq!(code, 0);
    let items = objects[0]["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1]["value"], 2);
    assert_eq!(items[0]["tags"], json!({"k": "v"}));
    assert_eq!(objects[1]["items"][0]["reject"], true);

    let (code, objects) = parse(&["--format", "influx", "--precision", "ms"], b"m,t=1 f=2i 1700000000000\n");
    assert_eq!(code, 0);
    assert_eq!(objects[0]["items"][0]["timestamp_ns"], 1_700_000_000_000_000_000_i64);
    assert_eq!(objects[0]["items"][0]["fields"]["f"], json!({"type": "int", "value": 2}));
}

#[test]
fn frames_reads_one_stream_and_flags_what_is_cut() {
    let (code, objects) = parse(
        &["--format", "frames", "--max-frame-bytes", "8"],
        b"<13>short\n9 <13>abcde<13>this one is long\n<13>tail",
    );
    assert_eq!(code, 0);
    let flags: Vec<&Value> = objects.iter().map(|object| &object["flag"]).collect();
    assert_eq!(flags.last().unwrap().as_str(), Some("incomplete"));
    assert!(flags.iter().any(|flag| flag.as_str() == Some("truncated")), "{objects:?}");
}

#[test]
fn an_unknown_time_zone_is_a_usage_error() {
    let (code, objects) = parse(&["--format", "syslog", "--timezone", "Atlantis/Capital"], b"");
    assert_eq!(code, 2);
    assert!(objects.is_empty());
}
