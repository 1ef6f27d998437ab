//! Table-driven cases from tests/data/syslog/*.json, checked through `syslog_to_json`.
//!
//! Each file holds `{"about": ..., "cases": [...]}`; a case has a `name`, the frame as
//! `input` (text) or `input_b64` (any bytes), optional `received_at`, `time_zone_hours` or
//! `time_zone_posix`, and `expected`: keys that must equal the rendered JSON.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jiff::tz::{self, TimeZone};
use killkrill_parsers::json::syslog_to_json;
use killkrill_parsers::syslog::{ParseOptions, parse_syslog};
use serde_json::Value;

use super::{DEFAULT_RECEIVED_AT, options_at};

/// The keys every rendering carries, whatever the input.
const REQUIRED_KEYS: [&str; 14] = [
    "facility",
    "severity",
    "version",
    "timestamp",
    "hostname",
    "app_name",
    "procid",
    "msgid",
    "structured_data",
    "message",
    "message_b64",
    "raw_b64",
    "parse_error",
    "format",
];

pub(crate) struct CorpusCase {
    pub(crate) name: String,
    pub(crate) frame: Vec<u8>,
    pub(crate) options: ParseOptions,
    pub(crate) expected: serde_json::Map<String, Value>,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/syslog")
}

pub(crate) fn load_corpus() -> Vec<CorpusCase> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("corpus directory exists")
        .map(|entry| entry.expect("corpus entry readable").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    let mut cases = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).expect("corpus file readable");
        let file: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let stem = path.file_stem().and_then(|stem| stem.to_str()).unwrap_or_default().to_owned();
        for case in file["cases"].as_array().expect("a cases array") {
            cases.push(read_case(&stem, case));
        }
    }
    cases
}

fn read_case(file: &str, case: &Value) -> CorpusCase {
    let name = format!("{file}/{}", case["name"].as_str().expect("case name"));
    let frame = match (case.get("input"), case.get("input_b64")) {
        (Some(Value::String(text)), None) => text.as_bytes().to_vec(),
        (None, Some(Value::String(encoded))) => STANDARD.decode(encoded).expect("input_b64 decodes"),
        _ => panic!("{name}: exactly one of input, input_b64"),
    };
    let time_zone = match (case.get("time_zone_hours"), case.get("time_zone_posix")) {
        (Some(hours), None) => {
            let hours = i8::try_from(hours.as_i64().expect("hours")).expect("hours fit");
            TimeZone::fixed(tz::offset(hours))
        }
        (None, Some(posix)) => TimeZone::posix(posix.as_str().expect("posix string")).expect("posix zone"),
        (None, None) => TimeZone::UTC,
        _ => panic!("{name}: one time zone at most"),
    };
    let received_at = case.get("received_at").and_then(Value::as_str).unwrap_or(DEFAULT_RECEIVED_AT);
    let expected = case["expected"].as_object().expect("expected object").clone();
    CorpusCase { name, frame, options: options_at(received_at, time_zone), expected }
}

#[test]
fn corpus_renders_the_expected_json_for_every_case() {
    let cases = load_corpus();
    assert!(cases.len() >= 100, "corpus unexpectedly small: {}", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let parsed = parse_syslog(&case.frame, &case.options);
        let rendered = syslog_to_json(&case.frame, &parsed);
        for (key, expected) in &case.expected {
            if rendered.get(key) != Some(expected) {
                failures.push(format!("{}: {key}: expected {expected}, got {}", case.name, rendered[key]));
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn corpus_renderings_carry_every_key_and_the_exact_bytes() {
    for case in load_corpus() {
        let parsed = parse_syslog(&case.frame, &case.options);
        let rendered = syslog_to_json(&case.frame, &parsed);
        for key in REQUIRED_KEYS {
            assert!(rendered.get(key).is_some(), "{}: no {key}", case.name);
        }
        assert_eq!(rendered["raw_b64"], STANDARD.encode(&case.frame), "{}", case.name);
        assert_eq!(rendered["message_b64"], STANDARD.encode(parsed.message), "{}", case.name);
        let message_text = rendered["message"].as_str().unwrap_or_default();
        assert_eq!(message_text, String::from_utf8_lossy(parsed.message), "{}", case.name);
    }
}

#[test]
fn corpus_every_case_pins_every_field() {
    // A case that leaves a field out would let a regression in that field pass unnoticed.
    for case in load_corpus() {
        for key in REQUIRED_KEYS.iter().filter(|key| !key.ends_with("_b64")) {
            assert!(case.expected.contains_key(*key), "{}: expected lacks {key}", case.name);
        }
    }
}
