//! A log block as the fields of one Redis Stream entry: the index row's fields as decimal
//! text (readable with `XRANGE` when debugging), the filters and the compressed body as
//! raw bytes. `v` names this layout so that a later build can change it and still read
//! (or at least recognise) entries published by this one.

use std::borrow::Cow;
use std::collections::HashMap;

use redis::Value;

use crate::store::EncodedBlock;
use crate::store::block::BlockSummary;
use crate::{Error, Result};

/// The entry layout written by this build.
pub const ENTRY_VERSION: &str = "1";

/// Field names, in the order they are written.
const VERSION: &str = "v";
const BLOCK_ID: &str = "block_id";
const FORMAT_VERSION: &str = "format_version";
const MIN_RECEIVED_NS: &str = "min_received_ns";
const MAX_RECEIVED_NS: &str = "max_received_ns";
const MESSAGE_COUNT: &str = "message_count";
const SEVERITY_MASK: &str = "severity_mask";
const FACILITY_MASK: &str = "facility_mask";
const PARSE_ERROR_COUNT: &str = "parse_error_count";
const RAW_BYTES: &str = "raw_bytes";
const FIELD_FILTER: &str = "field_filter";
const TOKEN_FILTER: &str = "token_filter";
const PAYLOAD: &str = "payload";

/// The entry's fields, borrowing the block's byte fields (the payload is about a
/// megabyte: it is not copied before it is written to the socket).
pub fn block_fields(block: &EncodedBlock) -> Vec<(&'static str, Cow<'_, [u8]>)> {
    let summary = &block.summary;
    let text = |value: String| Cow::Owned(value.into_bytes());
    vec![
        (VERSION, Cow::Borrowed(ENTRY_VERSION.as_bytes())),
        (BLOCK_ID, Cow::Borrowed(summary.block_id.as_bytes())),
        (FORMAT_VERSION, text(summary.format_version.to_string())),
        (MIN_RECEIVED_NS, text(summary.min_received_ns.to_string())),
        (MAX_RECEIVED_NS, text(summary.max_received_ns.to_string())),
        (MESSAGE_COUNT, text(summary.message_count.to_string())),
        (SEVERITY_MASK, text(summary.severity_mask.to_string())),
        (FACILITY_MASK, text(summary.facility_mask.to_string())),
        (PARSE_ERROR_COUNT, text(summary.parse_error_count.to_string())),
        (RAW_BYTES, text(summary.raw_bytes.to_string())),
        (FIELD_FILTER, Cow::Borrowed(&summary.field_filter)),
        (TOKEN_FILTER, Cow::Borrowed(&summary.token_filter)),
        (PAYLOAD, Cow::Borrowed(&block.payload)),
    ]
}

/// What a stream entry turned out to hold.
#[derive(Debug)]
pub enum Entry {
    Block(EncodedBlock),
    /// An entry deleted after it was delivered (Redis then returns it with no fields):
    /// there is nothing left to store.
    Deleted,
}

/// Reads an entry's fields back into a block; a missing or malformed field is an error
/// naming it.
pub fn decode_entry(fields: &HashMap<String, Value>) -> Result<Entry> {
    if fields.is_empty() {
        return Ok(Entry::Deleted);
    }
    let version = text(fields, VERSION)?;
    if version != ENTRY_VERSION {
        return Err(damaged(format!("entry layout {version:?} is not one this build reads")));
    }
    let block_id = text(fields, BLOCK_ID)?;
    if block_id.is_empty() || block_id.len() > 64 {
        return Err(damaged(format!("{BLOCK_ID} {block_id:?} is not a block id")));
    }
    let summary = BlockSummary {
        block_id: block_id.to_owned(),
        format_version: number(fields, FORMAT_VERSION)?,
        min_received_ns: number(fields, MIN_RECEIVED_NS)?,
        max_received_ns: number(fields, MAX_RECEIVED_NS)?,
        message_count: number(fields, MESSAGE_COUNT)?,
        severity_mask: number(fields, SEVERITY_MASK)?,
        facility_mask: number(fields, FACILITY_MASK)?,
        parse_error_count: number(fields, PARSE_ERROR_COUNT)?,
        raw_bytes: number(fields, RAW_BYTES)?,
        field_filter: bytes(fields, FIELD_FILTER)?.to_vec(),
        token_filter: bytes(fields, TOKEN_FILTER)?.to_vec(),
    };
    let payload = bytes(fields, PAYLOAD)?.to_vec();
    Ok(Entry::Block(EncodedBlock { summary, payload }))
}

fn damaged(message: String) -> Error {
    Error::HandoffEntry(message)
}

fn bytes<'a>(fields: &'a HashMap<String, Value>, name: &str) -> Result<&'a [u8]> {
    match fields.get(name) {
        Some(Value::BulkString(bytes)) => Ok(bytes),
        Some(Value::SimpleString(text)) => Ok(text.as_bytes()),
        Some(other) => Err(damaged(format!("field {name} is {other:?}, not a string"))),
        None => Err(damaged(format!("field {name} is missing"))),
    }
}

fn text<'a>(fields: &'a HashMap<String, Value>, name: &str) -> Result<&'a str> {
    std::str::from_utf8(bytes(fields, name)?).map_err(|_| damaged(format!("field {name} is not UTF-8")))
}

fn number<T: std::str::FromStr>(fields: &HashMap<String, Value>, name: &str) -> Result<T> {
    let value = text(fields, name)?;
    value.parse().map_err(|_| damaged(format!("field {name} = {value:?} is not a number in range")))
}

#[cfg(test)]
mod tests {
    use killkrill_dataplane::batch::{BatchLimits, LogBatch};
    use killkrill_dataplane::listener::ListenerKind;
    use killkrill_parsers::syslog::ParseOptions;

    use super::*;
    use crate::store::BlockEncoder;

    fn sample_block() -> EncodedBlock {
        let mut batch = LogBatch::new(ListenerKind::SyslogUdp, &BatchLimits::default());
        let source = "192.0.2.7:514".parse().unwrap();
        for seq in 0..50 {
            let frame =
                format!("<{}>1 2024-01-01T00:00:00Z host-{} app - - - message {seq}", seq % 192, seq % 3);
            batch.push_syslog(frame.as_bytes(), None, source, &ParseOptions::default());
        }
        batch.push_syslog(b"\xff not syslog", None, source, &ParseOptions::default());
        BlockEncoder::new(1).unwrap().encode(batch.iter()).unwrap()
    }

    /// The fields as Redis hands them back: every value a bulk string.
    fn as_read_back(block: &EncodedBlock) -> HashMap<String, Value> {
        block_fields(block)
            .into_iter()
            .map(|(name, value)| (name.to_owned(), Value::BulkString(value.into_owned())))
            .collect()
    }

    #[test]
    fn a_block_survives_the_round_trip_through_stream_fields() {
        let block = sample_block();
        assert!(block.summary.parse_error_count > 0 && block.summary.message_count == 51);
        let Entry::Block(decoded) = decode_entry(&as_read_back(&block)).unwrap() else {
            panic!("a full entry decodes to a block");
        };
        assert_eq!(decoded.summary, block.summary);
        assert_eq!(decoded.payload, block.payload);
        let rows = crate::store::block::decode(&decoded.payload).unwrap();
        assert_eq!(rows.len(), 51, "the payload still decodes");
    }

    #[test]
    fn an_entry_without_fields_is_a_deleted_one() {
        assert!(matches!(decode_entry(&HashMap::new()).unwrap(), Entry::Deleted));
    }

    #[test]
    fn damaged_entries_are_errors_naming_the_field() {
        let block = sample_block();
        let cases: [(&str, Option<Value>, &str); 5] = [
            (PAYLOAD, None, "payload is missing"),
            (MESSAGE_COUNT, Some(Value::BulkString(b"-3".to_vec())), "message_count"),
            (RAW_BYTES, Some(Value::BulkString(b"lots".to_vec())), "raw_bytes"),
            (VERSION, Some(Value::BulkString(b"9".to_vec())), "layout \"9\""),
            (TOKEN_FILTER, Some(Value::Int(3)), "token_filter"),
        ];
        for (field, value, expected) in cases {
            let mut fields = as_read_back(&block);
            match value {
                Some(value) => fields.insert(field.to_owned(), value),
                None => fields.remove(field),
            };
            let error = decode_entry(&fields).unwrap_err().to_string();
            assert!(error.contains(expected), "{field}: {error}");
        }
    }
}
